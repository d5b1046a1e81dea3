//! Run-time settings: `MAPILEAK`, `MAPILEAK_DIR`, `MAPILEAK_HISTORY`,
//! `MAPILEAK_LIVE_BLOCKS`, and their API counterparts, which win over the
//! environment.

use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::Mode;

/// 0: not read yet; then 1 + Mode as u8.
static MODE: AtomicU8 = AtomicU8::new(0);
static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
/// 0: not set (`MAPILEAK_HTML` decides); 1: off; 2: on.
static HTML: AtomicU8 = AtomicU8::new(0);
static ENV: Once = Once::new();
/// `MAPILEAK_TRACE_ROOTS`: leak roots (and findings) with a trace line each.
static TRACE_ROOTS: AtomicUsize = AtomicUsize::new(20);
/// `MAPILEAK_LIVE_BLOCKS`: the live table's size when it is reserved.
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(1 << 20);

/// How many blocks the allocator's live table is to hold
/// (`MAPILEAK_LIVE_BLOCKS`); read when the table is reserved, in the
/// allocator hook, so it never reads the environment itself.
#[inline]
pub(crate) fn live_blocks() -> usize {
    LIVE_BLOCKS.load(Ordering::Relaxed)
}

/// Reads the environment once: the mode, and the kinds `MAPILEAK_HISTORY`
/// names. A bad value is reported once on stderr, never fatal.
pub(crate) fn init() {
    ENV.call_once(|| {
        if let Ok(v) = std::env::var("MAPILEAK") {
            match Mode::parse(&v) {
                Some(m) => {
                    let _ =
                        MODE.compare_exchange(0, 1 + m as u8, Ordering::Relaxed, Ordering::Relaxed);
                }
                None => crate::trace::line(format_args!(
                    "MAPILEAK={v:?} is not off, summary or full; using full"
                )),
            }
        }
        if let Ok(v) = std::env::var("MAPILEAK_LIVE_BLOCKS") {
            match v.trim().replace('_', "").parse::<usize>() {
                Ok(n) if n > 0 => LIVE_BLOCKS.store(n, Ordering::Relaxed),
                _ => crate::trace::line(format_args!(
                    "MAPILEAK_LIVE_BLOCKS={v:?} is not a number of blocks; using {}",
                    live_blocks()
                )),
            }
        }
        if let Ok(v) = std::env::var("MAPILEAK_TRACE_ROOTS") {
            match v.trim() {
                all if all.eq_ignore_ascii_case("all") => {
                    TRACE_ROOTS.store(usize::MAX, Ordering::Relaxed)
                }
                n => match n.parse::<usize>() {
                    Ok(n) => TRACE_ROOTS.store(n, Ordering::Relaxed),
                    Err(_) => crate::trace::line(format_args!(
                        "MAPILEAK_TRACE_ROOTS={v:?} is not a number or `all`; using {}",
                        TRACE_ROOTS.load(Ordering::Relaxed)
                    )),
                },
            }
        }
        if let Ok(v) = std::env::var("MAPILEAK_HISTORY") {
            let unknown = crate::kind::apply_history_env(&v);
            if let Some(first) = unknown.first() {
                // One line, however many: they may be kinds a C or C++
                // provider makes later by name.
                let shown: Vec<String> = unknown.iter().take(5).map(|n| format!("{n:?}")).collect();
                crate::trace::line(format_args!(
                    "MAPILEAK_HISTORY: no declared kind is named {}{} (history applies to objects a C or C++ provider makes by {})",
                    shown.join(", "),
                    if unknown.len() > 5 { format!(" and {} more", unknown.len() - 5) } else { String::new() },
                    if unknown.len() == 1 { format!("the name {first:?}") } else { "those names".to_owned() },
                ));
            }
        }
    });
}

/// Whether recording is on, without reading the environment: for the
/// allocator hook (sessions exist only after [`init`] ran).
#[inline(always)]
pub(crate) fn live_fast() -> bool {
    MODE.load(Ordering::Relaxed) != 1
}

/// The current mode: [`set_mode`]'s, else `MAPILEAK`'s, else [`Mode::Full`];
/// always [`Mode::Off`] in a build without the instrumentation.
pub fn mode() -> Mode {
    if !crate::LIVE {
        return Mode::Off;
    }
    init();
    match MODE.load(Ordering::Relaxed) {
        1 => Mode::Off,
        2 => Mode::Summary,
        _ => Mode::Full,
    }
}

/// Sets the mode for the rest of the process, over `MAPILEAK`.
pub fn set_mode(mode: Mode) {
    init();
    MODE.store(1 + mode as u8, Ordering::Relaxed);
}

/// Where report files go: [`set_output_dir`]'s, else `MAPILEAK_DIR`, else
/// the user's own `mapileak` directory in the system's temporary directory
/// (`/tmp/mapileak-<uid>` on Unix, `%TEMP%\mapileak` on Windows, where
/// `%TEMP%` is per user).
pub fn output_dir() -> PathBuf {
    crate::config_env::output_dir(chosen_dir())
}

fn chosen_dir() -> Option<PathBuf> {
    // Never held for long; at process end its holder may have been ended
    // in the middle, and then the variable's directory is used.
    DIR.try_lock_for(std::time::Duration::from_millis(200))
        .and_then(|dir| dir.clone())
        .or_else(crate::config_env::from_env)
}

/// A report directory refused, and why.
pub(crate) struct Refused {
    pub dir: PathBuf,
    pub error: std::io::Error,
}

/// The directory to write a report into, made if missing. The default one
/// lives in a directory other users can write to (`/tmp`), so it is made
/// private (mode 0700) and used only if it is a real directory (not a
/// symlink), owned by this user, and closed to others; otherwise it is
/// refused and nothing is written. A directory the user chose (Unix) is
/// refused when someone else could have planted it: a symlink, or a
/// directory, owned by another user (root aside), or a directory anyone may
/// write to without the sticky bit.
pub(crate) fn report_dir() -> Result<PathBuf, Refused> {
    if let Some(dir) = chosen_dir() {
        return chosen_dir_is_safe(&dir)
            .map(|()| dir.clone())
            .map_err(|error| Refused { dir, error });
    }
    let dir = crate::config_env::default_dir();
    private_dir(&dir)
        .map(|()| dir.clone())
        .map_err(|error| Refused { dir, error })
}

#[cfg(unix)]
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let meta = std::fs::symlink_metadata(dir)?;
    let uid = crate::config_env::uid();
    let unsafe_dir = |why: &str| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("not safe for reports: {why}; remove it, or set MAPILEAK_DIR"),
        ))
    };
    if !meta.file_type().is_dir() {
        return unsafe_dir("not a directory (a symlink?)");
    }
    if meta.uid() != uid {
        return unsafe_dir(&format!(
            "owned by uid {}, not by this user ({uid})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return unsafe_dir("other users can write to it");
    }
    Ok(())
}

#[cfg(unix)]
fn chosen_dir_is_safe(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(dir)?;
    let uid = crate::config_env::uid();
    let unsafe_dir = |why: String| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("MAPILEAK_DIR is not safe for reports: {why}"),
        ))
    };
    let link = std::fs::symlink_metadata(dir)?;
    if link.file_type().is_symlink() && link.uid() != uid && link.uid() != 0 {
        return unsafe_dir(format!("a symlink owned by uid {}", link.uid()));
    }
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return unsafe_dir("not a directory".to_owned());
    }
    if meta.uid() != uid && meta.uid() != 0 {
        return unsafe_dir(format!(
            "owned by uid {}, not by this user ({uid})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0 {
        return unsafe_dir("anyone can write to it (and it has no sticky bit)".to_owned());
    }
    Ok(())
}

#[cfg(not(unix))]
fn chosen_dir_is_safe(_dir: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(not(unix))]
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    // `%TEMP%` is the user's own profile directory on Windows.
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
thread_local! {
    static HELD_FOR_FORK: std::cell::RefCell<Option<parking_lot::MutexGuard<'static, Option<PathBuf>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Takes the report directory's lock and keeps it on this thread (before `fork`).
#[cfg(unix)]
pub(crate) fn hold_for_fork() {
    let held = DIR.lock();
    let _ = HELD_FOR_FORK.try_with(|h| *h.borrow_mut() = Some(held));
}

/// Releases what `hold_for_fork` took (after `fork`).
#[cfg(unix)]
pub(crate) fn release_after_fork() {
    // The guards drop here, releasing the locks.
    drop(HELD_FOR_FORK.try_with(|h| h.borrow_mut().take()));
}

/// Sets the report directory for the rest of the process, over `MAPILEAK_DIR`.
/// An empty path means the default again (`MAPILEAK_DIR`, else the user's
/// own directory), as an empty `MAPILEAK_DIR` does.
pub fn set_output_dir(dir: impl Into<PathBuf>) {
    let dir = dir.into();
    *DIR.lock() = (!dir.as_os_str().is_empty()).then_some(dir);
}

/// Whether an HTML page is written next to each JSON report:
/// [`set_html`]'s choice, else `MAPILEAK_HTML` (`1`, `on`, `true`), else no.
pub fn html() -> bool {
    match HTML.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => std::env::var("MAPILEAK_HTML").is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "on" | "true" | "yes"
            )
        }),
    }
}

/// Writes (or stops writing) an HTML page next to each JSON report, over `MAPILEAK_HTML`.
pub fn set_html(on: bool) {
    HTML.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// How many leak roots, and how many findings, get a trace line each in
/// `full` mode: the largest roots first; one more line counts the rest and
/// names the report. [`set_trace_roots`]'s, else `MAPILEAK_TRACE_ROOTS`
/// (a number or `all`), else 20.
pub fn trace_roots() -> usize {
    init();
    TRACE_ROOTS.load(Ordering::Relaxed)
}

/// Sets [`trace_roots`] for the rest of the process (`usize::MAX`: all).
pub fn set_trace_roots(n: usize) {
    init();
    TRACE_ROOTS.store(n, Ordering::Relaxed);
}
