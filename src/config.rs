//! Run-time settings, the public functions: the mode, the report
//! directory, the HTML page, the traced roots. Each one set here wins over
//! the environment (`MAPILEAK`, `MAPILEAK_DIR`, `MAPILEAK_HTML`,
//! `MAPILEAK_TRACE_ROOTS`), which the live backend reads once
//! (`live/env.rs`; a release build reads nothing).

use std::path::PathBuf;

use crate::backend::env as imp;
use crate::settings;

pub use crate::settings::Mode;

/// The current mode: [`set_mode`]'s, else `MAPILEAK`'s, else [`Mode::Full`];
/// always [`Mode::Off`] in a build without the instrumentation.
pub fn mode() -> Mode {
    imp::mode()
}

/// Sets the mode for the rest of the process, over `MAPILEAK`.
pub fn set_mode(mode: Mode) {
    imp::init();
    settings::set_mode(mode);
}

/// Where report files go: [`set_output_dir`]'s, else `MAPILEAK_DIR`, else
/// the user's own `mapileak` directory in the system's temporary directory
/// (`/tmp/mapileak-<uid>` on Unix, `%TEMP%\mapileak` on Windows, where
/// `%TEMP%` is per user).
pub fn output_dir() -> PathBuf {
    crate::config_env::output_dir(settings::chosen_dir())
}

/// Sets the report directory for the rest of the process, over `MAPILEAK_DIR`.
/// An empty path means the default again (`MAPILEAK_DIR`, else the user's
/// own directory), as an empty `MAPILEAK_DIR` does.
pub fn set_output_dir(dir: impl Into<PathBuf>) {
    settings::set_dir(dir.into());
}

/// Whether an HTML page is written next to each JSON report:
/// [`set_html`]'s choice, else `MAPILEAK_HTML` (`1`, `on`, `true`), else no.
pub fn html() -> bool {
    settings::html()
}

/// Writes (or stops writing) an HTML page next to each JSON report, over `MAPILEAK_HTML`.
pub fn set_html(on: bool) {
    settings::set_html(on);
}

/// Whether reports are written with raw return addresses and each module's
/// identity instead of names: [`set_offline_symbols`]'s choice, else
/// `MAPILEAK_SYMBOLS` (`offline`; `inline`, the default, names frames in
/// the process). For a memory-starved host (a 32-bit Outlook): the Logoff
/// then reads no debug info, and `mapileak symbolize` (or `render`,
/// `gate`) names the frames later on the developer's machine, from the
/// same builds of the modules.
pub fn offline_symbols() -> bool {
    settings::offline_symbols()
}

/// Writes reports with raw addresses (`true`) or names (`false`), over
/// `MAPILEAK_SYMBOLS`.
pub fn set_offline_symbols(on: bool) {
    settings::set_offline_symbols(on);
}

/// How many leak roots, and how many findings, get a trace line each in
/// `full` mode: the largest roots first; one more line counts the rest and
/// names the report. [`set_trace_roots`]'s, else `MAPILEAK_TRACE_ROOTS`
/// (a number or `all`), else 20.
pub fn trace_roots() -> usize {
    imp::init();
    settings::trace_roots()
}

/// Sets [`trace_roots`] for the rest of the process (`usize::MAX`: all).
pub fn set_trace_roots(n: usize) {
    imp::init();
    settings::set_trace_roots(n);
}
