//! The settings' storage, in every build: the mode, the report directory,
//! the HTML page, the traced roots. The public functions are in `config`;
//! the environment is read by the backend (`live/env.rs`), which stores
//! what it reads here.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::sync::Mutex;

/// How much mapileak does, from `MAPILEAK` (contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `off`: objects are not recorded, nothing is reported or written.
    Off,
    /// `summary`: objects are recorded; at Logoff one summary event and the
    /// report files.
    Summary,
    /// `full` (the default): as `summary`, plus one event per leak root and
    /// per finding, with its creation stack.
    Full,
}

impl Mode {
    /// Parses `off`, `summary` or `full` (any case).
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "0" => Some(Mode::Off),
            "summary" => Some(Mode::Summary),
            "full" | "on" | "1" | "" => Some(Mode::Full),
            _ => None,
        }
    }
}

/// 0: not set yet; then 1 + Mode as u8.
pub(crate) static MODE: AtomicU8 = AtomicU8::new(0);
/// [`set_dir`]'s directory.
pub(crate) static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
/// 0: not set (`MAPILEAK_HTML` decides); 1: off; 2: on.
static HTML: AtomicU8 = AtomicU8::new(0);
/// 0: not set (`MAPILEAK_SYMBOLS` decides); 1: names in the process; 2: offline.
static OFFLINE: AtomicU8 = AtomicU8::new(0);
/// Leak roots (and findings) with a trace line each.
pub(crate) static TRACE_ROOTS: AtomicUsize = AtomicUsize::new(20);

/// Stores `mode`, over what the environment said.
pub(crate) fn set_mode(mode: Mode) {
    MODE.store(1 + mode as u8, Ordering::Relaxed);
}

/// The directory set, else `MAPILEAK_DIR`.
pub(crate) fn chosen_dir() -> Option<PathBuf> {
    // Never held for long; at process end its holder may have been ended
    // in the middle, and then the variable's directory is used.
    DIR.try_lock_for(std::time::Duration::from_millis(200))
        .and_then(|dir| dir.clone())
        .or_else(crate::config_env::from_env)
}

/// Stores the report directory; empty: none.
pub(crate) fn set_dir(dir: PathBuf) {
    *DIR.lock() = (!dir.as_os_str().is_empty()).then_some(dir);
}

/// Whether an HTML page is written: set, else `MAPILEAK_HTML`.
pub(crate) fn html() -> bool {
    match HTML.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => std::env::var("MAPILEAK_HTML").is_ok_and(|v| html_choice(&v) == Some(true)),
    }
}

/// A `MAPILEAK_HTML` value: a page or none; `None` when it is neither
/// (the default then: none).
pub(crate) fn html_choice(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Some(true),
        "" | "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Stores the HTML choice.
pub(crate) fn set_html(on: bool) {
    HTML.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// Whether reports are written with raw addresses, for `mapileak
/// symbolize` to name later: set, else `MAPILEAK_SYMBOLS=offline`.
pub(crate) fn offline_symbols() -> bool {
    match OFFLINE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => std::env::var("MAPILEAK_SYMBOLS").is_ok_and(|v| offline_choice(&v) == Some(true)),
    }
}

/// A `MAPILEAK_SYMBOLS` value: offline or inline; `None` when it is
/// neither (the default then: inline).
pub(crate) fn offline_choice(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "offline" => Some(true),
        "" | "inline" => Some(false),
        _ => None,
    }
}

/// Stores the offline-symbols choice.
pub(crate) fn set_offline_symbols(on: bool) {
    OFFLINE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// The traced roots stored.
pub(crate) fn trace_roots() -> usize {
    TRACE_ROOTS.load(Ordering::Relaxed)
}

/// Stores the traced roots.
pub(crate) fn set_trace_roots(n: usize) {
    TRACE_ROOTS.store(n, Ordering::Relaxed);
}
