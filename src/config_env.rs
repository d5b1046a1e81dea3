//! The report directory as the environment names it, in every build.
#![allow(unsafe_code)]

use std::path::PathBuf;

/// `set` (from `set_output_dir`), else `MAPILEAK_DIR` (unless empty), else
/// [`default_dir`].
pub(crate) fn output_dir(set: Option<PathBuf>) -> PathBuf {
    set.or_else(from_env).unwrap_or_else(default_dir)
}

/// `MAPILEAK_DIR`, when set and not empty.
pub(crate) fn from_env() -> Option<PathBuf> {
    std::env::var_os("MAPILEAK_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// The user's own directory in the system's temporary directory:
/// `mapileak-<uid>` on Unix (`/tmp` is shared), `mapileak` on Windows
/// (`%TEMP%` is per user).
#[cfg(unix)]
pub(crate) fn default_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("mapileak-{uid}"))
}

/// The user's own directory in the system's temporary directory:
/// `mapileak-<uid>` on Unix (`/tmp` is shared), `mapileak` on Windows
/// (`%TEMP%` is per user).
#[cfg(not(unix))]
pub(crate) fn default_dir() -> PathBuf {
    std::env::temp_dir().join("mapileak")
}
