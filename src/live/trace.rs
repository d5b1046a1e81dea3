//! Where a line goes when no `tracing` subscriber is installed: where MAPI's
//! own `DebugTrace` goes. On Windows that is the debugger output
//! (`OutputDebugStringW`: a debugger, or DebugView inside Outlook, shows it)
//! and stderr; elsewhere stderr. A failed write is dropped: instrumentation
//! must not panic the host (as `eprintln!` would on a broken pipe).

/// Writes `mapileak: {line}`, on one line: a label with a line break in it
/// cannot start a line of its own (see `mapileak_reports::text`).
pub(crate) fn line(line: std::fmt::Arguments<'_>) {
    let text = text(line);
    stderr::write(text.as_bytes());
    debugger::write(&text);
}

/// The standard error stream, written without `std::io::stderr()`'s lock:
/// at process end a thread ended while printing holds it for good.
#[allow(unsafe_code)]
mod stderr {
    #[cfg(unix)]
    pub(super) fn write(mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // SAFETY: `bytes` is valid for reading its length; fd 2 is only
            // written to (a closed one fails with EBADF).
            let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
            match usize::try_from(n) {
                Ok(n) if n > 0 => bytes = &bytes[n.min(bytes.len())..],
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
                _ => return,
            }
        }
    }

    #[cfg(windows)]
    pub(super) fn write(mut bytes: &[u8]) {
        const STD_ERROR_HANDLE: u32 = -12i32 as u32;
        #[link(name = "kernel32")]
        unsafe extern "system" {
            fn GetStdHandle(which: u32) -> *mut std::ffi::c_void;
            fn WriteFile(
                file: *mut std::ffi::c_void,
                buffer: *const u8,
                len: u32,
                written: *mut u32,
                overlapped: *mut std::ffi::c_void,
            ) -> i32;
        }
        // SAFETY: no arguments; a missing handle is null or -1, checked.
        let handle = unsafe { GetStdHandle(STD_ERROR_HANDLE) };
        if handle.is_null() || handle as isize == -1 {
            return;
        }
        while !bytes.is_empty() {
            let mut written = 0u32;
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            // SAFETY: `bytes` is valid for reading `len` bytes, `written`
            // for writing; no overlapped I/O.
            let ok = unsafe {
                WriteFile(
                    handle,
                    bytes.as_ptr(),
                    len,
                    &mut written,
                    std::ptr::null_mut(),
                )
            };
            if ok == 0 || written == 0 {
                return;
            }
            bytes = &bytes[(written as usize).min(bytes.len())..];
        }
    }

    #[cfg(not(any(unix, windows)))]
    pub(super) fn write(bytes: &[u8]) {
        use std::io::Write;
        let _ = std::io::stderr().write_all(bytes);
    }
}

/// The text of one trace line, newline included.
fn text(line: std::fmt::Arguments<'_>) -> String {
    let line = line.to_string();
    format!("mapileak: {}\n", mapileak_reports::text::one_line(&line))
}

#[cfg(windows)]
#[allow(unsafe_code)]
mod debugger {
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn OutputDebugStringW(output: *const u16);
    }

    pub(super) fn write(text: &str) {
        let wide: Vec<u16> = text.encode_utf16().chain(std::iter::once(0)).collect();
        // SAFETY: `wide` is a NUL-terminated UTF-16 string that outlives the
        // call; OutputDebugStringW only reads it.
        unsafe { OutputDebugStringW(wide.as_ptr()) }
    }
}

#[cfg(not(windows))]
mod debugger {
    pub(super) fn write(_text: &str) {}
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_label_with_line_breaks_stays_on_its_line() {
        let label = "Inbox\n::error file=x.rs::forged\r\nmapileak: leaked nothing";
        let t = super::text(format_args!("leaked IMAPITable \"{label}\""));
        assert_eq!(t.matches('\n').count(), 1, "{t:?}");
        assert!(t.ends_with('\n') && t.starts_with("mapileak: leaked IMAPITable"));
        assert!(t.contains("Inbox\\n::error"), "{t:?}");
    }
}
