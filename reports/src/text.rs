//! Text from a report or a provider (labels, function and file names, JSON
//! values quoted in errors) on its way to a log line: control characters
//! and line breaks shown, never acted on. A label holding
//! `"\n::error file=x::"` must not start a line of its own in a CI log,
//! where it would be taken for a workflow command.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Where a line says a stack is when it has no frame to name.
pub const UNKNOWN_PLACE: &str = "an unknown place";

/// `s` on one line: `\n`, `\r`, `\t` as those two characters, other control
/// characters (C0, DEL, C1) and the Unicode line and paragraph separators
/// as `\u{..}`. Text without them is returned as it is.
pub fn one_line(s: &str) -> Cow<'_, str> {
    let special = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !s.contains(special) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if special(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn line_breaks_and_controls_are_shown_not_kept() {
        let hostile = "inbox\n::error file=a.rs,line=1::pwned\r\x1b[31m\u{2028}x\ty";
        let shown = one_line(hostile);
        assert!(
            !shown.contains(['\n', '\r', '\x1b', '\u{2028}', '\t']),
            "{shown}"
        );
        assert_eq!(
            shown,
            "inbox\\n::error file=a.rs,line=1::pwned\\r\\u{1b}[31m\\u{2028}x\\ty"
        );
        assert!(matches!(
            one_line("plain label"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
