//! The environment, read once with the instrumentation: `MAPILEAK`,
//! `MAPILEAK_LIVE_BLOCKS`, `MAPILEAK_TRACE_ROOTS`, `MAPILEAK_HISTORY`
//! (into `crate::settings`; `MAPILEAK_SYMBOLS` and `MAPILEAK_HTML` only
//! checked), and the report directory's safety checks.
#![allow(unsafe_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::once::Once;
use crate::settings::{self, MODE, Mode, TRACE_ROOTS, chosen_dir};

static ENV: Once = Once::new("environment");
/// `MAPILEAK_LIVE_BLOCKS`: the live table's size when it is reserved. By
/// default a million blocks (24 MiB of address space) on 64-bit systems,
/// half a million (12 MiB) on 32-bit ones.
#[cfg(target_pointer_width = "64")]
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(1 << 20);
#[cfg(not(target_pointer_width = "64"))]
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(1 << 19);

/// How many blocks the allocator's live table is to hold
/// (`MAPILEAK_LIVE_BLOCKS`); read when the table is reserved, in the
/// allocator hook, so it never reads the environment itself.
#[inline]
pub(crate) fn live_blocks() -> usize {
    LIVE_BLOCKS.load(Ordering::Relaxed)
}

/// `MAPILEAK_SNAPSHOT_EVERY=<seconds>`: the period of the periodic
/// snapshots (none when unset; a bad value says so in one line).
pub(crate) fn snapshot_every() -> Option<std::time::Duration> {
    let v = std::env::var("MAPILEAK_SNAPSHOT_EVERY").ok()?;
    match v.trim().parse::<f64>() {
        Ok(s) if (0.01..=1e9).contains(&s) => Some(std::time::Duration::from_secs_f64(s)),
        _ => {
            crate::backend::trace::line(format_args!(
                "MAPILEAK_SNAPSHOT_EVERY={v:?} is not a number of seconds (0.01 or more); no periodic snapshots"
            ));
            None
        }
    }
}

/// `MAPILEAK_SNAPSHOT_SIGNAL`: the signal that asks for a snapshot
/// (`USR1`, `SIGUSR2`, a number), or none (unset, or a bad value, which
/// says so in one line).
#[cfg(unix)]
pub(crate) fn snapshot_signal() -> Option<std::ffi::c_int> {
    let v = std::env::var("MAPILEAK_SNAPSHOT_SIGNAL").ok()?;
    let name = v.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let signal = match name {
        "USR1" => Some(libc::SIGUSR1),
        "USR2" => Some(libc::SIGUSR2),
        n => n.parse::<std::ffi::c_int>().ok().filter(|&n| {
            n > 0 && n < 65 && n != libc::SIGKILL && n != libc::SIGSTOP && n != libc::SIGSEGV
        }),
    };
    if signal.is_none() {
        crate::backend::trace::line(format_args!(
            "MAPILEAK_SNAPSHOT_SIGNAL={v:?} is not USR1, USR2 or a signal number; snapshot requests are off"
        ));
    }
    signal
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
                None => crate::backend::trace::line(format_args!(
                    "MAPILEAK={v:?} is not off, summary or full; using full"
                )),
            }
        }
        if let Ok(v) = std::env::var("MAPILEAK_LIVE_BLOCKS") {
            match v.trim().replace('_', "").parse::<usize>() {
                Ok(n) if n > 0 => LIVE_BLOCKS.store(n, Ordering::Relaxed),
                _ => crate::backend::trace::line(format_args!(
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
                    Err(_) => crate::backend::trace::line(format_args!(
                        "MAPILEAK_TRACE_ROOTS={v:?} is not a number or `all`; using {}",
                        TRACE_ROOTS.load(Ordering::Relaxed)
                    )),
                },
            }
        }
        check_choices();
        if let Ok(v) = std::env::var("MAPILEAK_HISTORY") {
            let unknown = crate::kind::apply_history(&v, false);
            if let Some(first) = unknown.first() {
                // One line, however many: they may be kinds a C or C++
                // provider makes later by name.
                let shown: Vec<String> = unknown.iter().take(5).map(|n| format!("{n:?}")).collect();
                crate::backend::trace::line(format_args!(
                    "MAPILEAK_HISTORY: no declared kind is named {}{} (history applies to objects a C or C++ provider makes by {})",
                    shown.join(", "),
                    if unknown.len() > 5 { format!(" and {} more", unknown.len() - 5) } else { String::new() },
                    if unknown.len() == 1 { format!("the name {first:?}") } else { "those names".to_owned() },
                ));
            }
        }
    });
}

/// `MAPILEAK_SYMBOLS` and `MAPILEAK_HTML` are read where they are used
/// (`crate::settings`); a value that is neither of their choices says so
/// here, once: a mistyped `offline` would otherwise read the debug info in
/// the host (a 32-bit Outlook) without a word.
fn check_choices() {
    if let Ok(v) = std::env::var("MAPILEAK_SYMBOLS")
        && settings::offline_choice(&v).is_none()
    {
        crate::backend::trace::line(format_args!(
            "MAPILEAK_SYMBOLS={v:?} is not inline or offline; using inline"
        ));
    }
    if let Ok(v) = std::env::var("MAPILEAK_HTML")
        && settings::html_choice(&v).is_none()
    {
        crate::backend::trace::line(format_args!(
            "MAPILEAK_HTML={v:?} is not 1 or 0; no HTML page"
        ));
    }
}

/// The current mode, the environment read first.
pub(crate) fn mode() -> Mode {
    init();
    match MODE.load(Ordering::Relaxed) {
        1 => Mode::Off,
        2 => Mode::Summary,
        _ => Mode::Full,
    }
}

/// How many leak roots get a trace line each, the environment read first.
pub(crate) fn trace_roots() -> usize {
    init();
    settings::trace_roots()
}

/// Whether recording is on, without reading the environment: for the
/// allocator hook (sessions exist only after [`init`] ran).
#[inline(always)]
pub(crate) fn live_fast() -> bool {
    MODE.load(Ordering::Relaxed) != 1
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
    let uid = uid();
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
    let uid = uid();
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
static HELD_FOR_FORK: crate::sync::ForkHeld<crate::sync::MutexGuard<'static, Option<PathBuf>>> =
    crate::sync::ForkHeld::new();

/// Takes the report directory's lock and keeps it until
/// `release_after_fork` (before `fork`).
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn hold_for_fork() {
    let held = settings::DIR.lock();
    // SAFETY: guards of locks just taken, which every user of the slot
    // takes first.
    unsafe { HELD_FOR_FORK.keep(held) };
}

/// Releases what `hold_for_fork` took (after `fork`).
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn release_after_fork() {
    // The guards drop here, releasing the locks.
    // SAFETY: the thread of `hold_for_fork`, still holding its locks.
    drop(unsafe { HELD_FOR_FORK.take() });
}

/// The current user's id.
#[cfg(unix)]
fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}
