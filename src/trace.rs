//! Where a line goes when no `tracing` subscriber is installed: where MAPI's
//! own `DebugTrace` goes. On Windows that is the debugger output
//! (`OutputDebugStringW`: a debugger, or DebugView inside Outlook, shows it)
//! and stderr; elsewhere stderr. A failed write is dropped: instrumentation
//! must not panic the host (as `eprintln!` would on a broken pipe).

use std::io::Write;

/// Writes `mapileak: {line}`, on one line: a label with a line break in it
/// cannot start a line of its own (see `mapileak_reports::text`).
pub(crate) fn line(line: std::fmt::Arguments<'_>) {
    let text = text(line);
    let _ = std::io::stderr().write_all(text.as_bytes());
    debugger::write(&text);
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
