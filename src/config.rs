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
                "all" => TRACE_ROOTS.store(usize::MAX, Ordering::Relaxed),
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
            for name in crate::kind::apply_history_env(&v) {
                crate::trace::line(format_args!(
                    "MAPILEAK_HISTORY names {name:?}, which no declared kind has"
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

/// The current mode: [`set_mode`]'s, else `MAPILEAK`'s, else [`Mode::Full`].
pub fn mode() -> Mode {
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
/// `mapileak` in the system's temporary directory (`/tmp/mapileak`,
/// `%TEMP%\mapileak`).
pub fn output_dir() -> PathBuf {
    if let Some(dir) = DIR.lock().clone() {
        return dir;
    }
    match std::env::var_os("MAPILEAK_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => std::env::temp_dir().join("mapileak"),
    }
}

/// Sets the report directory for the rest of the process, over `MAPILEAK_DIR`.
pub fn set_output_dir(dir: impl Into<PathBuf>) {
    *DIR.lock() = Some(dir.into());
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
