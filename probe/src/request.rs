//! `mapileak snapshot PID`: asks a running process with mapileak to write a
//! snapshot, through the channel the library opens at its first logon
//! (`src/live/watch.rs`). A request can do nothing but that.
#![allow(unsafe_code)]

use crate::items::Error;

/// Asks process `pid` for a snapshot; the reports go to its own report
/// directory.
pub fn snapshot(pid: u32) -> Result<(), Error> {
    platform::ask(pid)
}

#[cfg(unix)]
mod platform {
    use super::Error;

    pub(super) fn ask(pid: u32) -> Result<(), Error> {
        let signal = signal_of(pid)?;
        // The signal's default action ends the process: send it only when
        // the process has its handler installed (it logged on).
        if !catches(pid, signal)? {
            return Err(Error(format!(
                "process {pid} does not handle signal {signal} yet: mapileak installs its handler at the first logon"
            )));
        }
        let target =
            libc::pid_t::try_from(pid).map_err(|_| Error(format!("{pid}: not a process id")))?;
        // SAFETY: kill has no memory preconditions.
        if unsafe { libc::kill(target, signal) } != 0 {
            return Err(Error(format!(
                "cannot signal process {pid}: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    /// The signal process `pid` takes requests on (its
    /// `MAPILEAK_SNAPSHOT_SIGNAL`).
    fn signal_of(pid: u32) -> Result<libc::c_int, Error> {
        let path = format!("/proc/{pid}/environ");
        let environ = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error(format!("no process {pid}")),
            std::io::ErrorKind::PermissionDenied => Error(format!(
                "cannot read process {pid}'s environment: only its own user may ask it for a snapshot"
            )),
            _ => Error(format!("{path}: cannot read: {e}")),
        })?;
        let value = environ
            .split(|&b| b == 0)
            .find_map(|v| v.strip_prefix(b"MAPILEAK_SNAPSHOT_SIGNAL="))
            .ok_or_else(|| {
                Error(format!(
                    "process {pid} takes no snapshot requests: start it with MAPILEAK_SNAPSHOT_SIGNAL=USR2 (docs/growth.md)"
                ))
            })?;
        let value = String::from_utf8_lossy(value).trim().to_ascii_uppercase();
        let name = value.strip_prefix("SIG").unwrap_or(&value);
        match name {
            "USR1" => Ok(libc::SIGUSR1),
            "USR2" => Ok(libc::SIGUSR2),
            n => n.parse().map_err(|_| {
                Error(format!(
                    "process {pid}'s MAPILEAK_SNAPSHOT_SIGNAL={value:?} is not USR1, USR2 or a number"
                ))
            }),
        }
    }

    /// Whether process `pid` has a handler for `signal` (`SigCgt` in its
    /// status).
    fn catches(pid: u32, signal: libc::c_int) -> Result<bool, Error> {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path)
            .map_err(|e| Error(format!("{path}: cannot read: {e}")))?;
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .ok_or_else(|| Error(format!("{path}: no SigCgt line")))?;
        Ok(signal > 0 && signal <= 64 && mask & (1u64 << (signal - 1)) != 0)
    }
}

#[cfg(windows)]
mod platform {
    use std::ffi::c_void;

    use super::Error;

    const EVENT_MODIFY_STATE: u32 = 0x0002;
    const ERROR_FILE_NOT_FOUND: i32 = 2;

    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn OpenEventW(access: u32, inherit: i32, name: *const u16) -> *mut c_void;
        fn SetEvent(event: *mut c_void) -> i32;
        fn CloseHandle(handle: *mut c_void) -> i32;
    }

    /// Each copy of mapileak in the process (one per provider DLL built
    /// with it) has its event: `Local\mapileak-snapshot-<pid>`, then
    /// `-<pid>-2` ... `-<pid>-16`. All are signalled.
    pub(super) fn ask(pid: u32) -> Result<(), Error> {
        let mut asked = 0;
        for copy in 1..=16 {
            let name = if copy == 1 {
                format!("Local\\mapileak-snapshot-{pid}")
            } else {
                format!("Local\\mapileak-snapshot-{pid}-{copy}")
            };
            match signal(&name) {
                Ok(()) => asked += 1,
                Err(None) => {}
                Err(Some(e)) => return Err(Error(format!("cannot signal {name}: {e}"))),
            }
        }
        if asked == 0 {
            return Err(Error(format!(
                "process {pid} takes no snapshot requests: no event Local\\mapileak-snapshot-{pid} (it is not running, has not logged on yet, or is not a debug build with mapileak)"
            )));
        }
        Ok(())
    }

    /// Sets the event `name`; `Err(None)` when there is none.
    fn signal(name: &str) -> Result<(), Option<std::io::Error>> {
        let wide: Vec<u16> = name.encode_utf16().chain(Some(0)).collect();
        // SAFETY: a NUL-terminated name; the handle is closed below.
        let event = unsafe { OpenEventW(EVENT_MODIFY_STATE, 0, wide.as_ptr()) };
        if event.is_null() {
            let e = std::io::Error::last_os_error();
            return Err((e.raw_os_error() != Some(ERROR_FILE_NOT_FOUND)).then_some(e));
        }
        // SAFETY: a handle just opened with EVENT_MODIFY_STATE.
        let set = unsafe { SetEvent(event) };
        let e = std::io::Error::last_os_error();
        // SAFETY: closed once.
        unsafe { CloseHandle(event) };
        if set == 0 { Err(Some(e)) } else { Ok(()) }
    }
}
