//! Where a line goes when no `tracing` subscriber is installed: where MAPI's
//! own `DebugTrace` goes. On Windows that is the debugger output
//! (`OutputDebugStringW`: a debugger, or DebugView inside Outlook, shows it)
//! and stderr; elsewhere stderr. A failed write is dropped: instrumentation
//! must not panic the host (as `eprintln!` would on a broken pipe).

use std::io::Write;

/// Writes `mapileak: {line}`, on one line: a label with a line break in it
/// cannot start a line of its own (see `mapileak_reports::text`).
pub(crate) fn line(line: std::fmt::Arguments<'_>) {
    let line = line.to_string();
    let text = format!("mapileak: {}\n", mapileak_reports::text::one_line(&line));
    let _ = std::io::stderr().write_all(text.as_bytes());
    debugger::write(&text);
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
