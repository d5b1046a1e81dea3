//! What the gate accepts: a reviewed baseline of known leaks by signature,
//! and suppressions with reasons.
//!
//! # Baseline format
//!
//! One line per signature, sorted by what it names, then signature, so a
//! change reads as a small diff in review:
//!
//! ```text
//! # mapileak baseline v1: accepted leaks by signature, with counts.
//! # signature       count  what
//! 873f733f4210f5a4  1      leak IMAPITable "contents of Inbox" at store::refresh_unread_count
//! ```
//!
//! The count is how many occurrences (over all reports the gate reads) are
//! accepted; one more fails. Text after the count is for people.
//!
//! # Suppression format
//!
//! One entry per line, `FIELD:PATTERN reason: WHY`; `#` starts a comment.
//!
//! ```text
//! kind:IMAPITable                reason: the host keeps its preview table (bug 1234)
//! rule:subscription-open         reason: Outlook unsubscribes after Logoff
//! signature:873f733f4210f5a4     reason: fixed in 2.1, not backported
//! function:*refresh_unread_count reason: a known leak in the vendor SDK
//! ```
//!
//! `kind` matches a leaked object's kind, `rule` a finding's rule,
//! `signature` any item's signature, `function` any frame of its stack (as
//! LeakSanitizer's `leak:` lines do). Patterns are globs: `*` any run of
//! characters, `?` one character; anything else must match exactly. The
//! reason is required.

use std::collections::BTreeMap;

use mapileak_reports::text::UNKNOWN_PLACE;

use crate::items::{Error, Item};

/// Accepted counts by signature.
#[derive(Debug, Default)]
pub struct Baseline {
    pub counts: BTreeMap<String, u64>,
}

impl Baseline {
    pub fn parse(text: &str, file: &str) -> Result<Baseline, Error> {
        let mut counts = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let sig = parts.next().unwrap_or_default();
            let count = parts.next().and_then(|c| c.parse::<u64>().ok());
            match count {
                Some(c) if is_signature(sig) => {
                    let total: &mut u64 = counts.entry(sig.to_owned()).or_insert(0);
                    *total = total.saturating_add(c);
                }
                _ => {
                    return Err(Error(format!(
                        "{file}:{}: not a baseline line (expected `SIGNATURE COUNT what...`)",
                        n + 1
                    )));
                }
            }
        }
        Ok(Baseline { counts })
    }

    /// The baseline accepting exactly `items`.
    pub fn render(items: &[Item<'_>]) -> String {
        let mut rows: BTreeMap<(String, &str), u64> = BTreeMap::new();
        for i in items {
            let what = format!("{} {} at {}", i.what.as_str(), i.title, short_site(i));
            *rows.entry((what, i.signature)).or_insert(0) += 1;
        }
        let mut out = String::from(
            "# mapileak baseline v1: accepted leaks by signature, with counts.\n\
             # Written by `mapileak gate --write-baseline`; review changes like code.\n\
             # signature       count  what\n",
        );
        for ((what, sig), count) in rows {
            out.push_str(&format!(
                "{sig}  {count:<5}  {}\n",
                controls_as_spaces(&what)
            ));
        }
        out
    }
}

fn short_site(i: &Item<'_>) -> String {
    i.top_frame()
        .map_or_else(|| UNKNOWN_PLACE.to_owned(), |f| f.function.clone())
}

/// `s` with each control character a space (a column of the list stays
/// on its line).
fn controls_as_spaces(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn is_signature(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Which part of an item a suppression looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Kind,
    Rule,
    Signature,
    Function,
}

/// One suppression entry.
#[derive(Debug)]
pub struct Suppression {
    pub line: usize,
    pub field: Field,
    pub pattern: String,
    /// `pattern`, ready to match.
    compiled: Pattern,
    pub reason: String,
    /// How many items it suppressed in this run.
    pub hits: usize,
}

impl Suppression {
    pub fn parse_file(text: &str, file: &str) -> Result<Vec<Suppression>, Error> {
        let mut out = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |what: &str| Error(format!("{file}:{}: {what}", n + 1));
            let (entry, reason) = match line.split_once("reason:") {
                Some((e, r)) if !r.trim().is_empty() => (e.trim(), r.trim()),
                _ => {
                    return Err(at(
                        "a suppression needs a reason (`FIELD:PATTERN reason: why`)",
                    ));
                }
            };
            let (field, pattern) = entry.split_once(':').ok_or_else(|| {
                at("expected `kind:`, `rule:`, `signature:` or `function:` before the pattern")
            })?;
            let field = match field.trim() {
                "kind" => Field::Kind,
                "rule" => Field::Rule,
                "signature" => Field::Signature,
                "function" => Field::Function,
                other => {
                    return Err(at(&format!(
                        "unknown field `{other}` (kind, rule, signature, function)"
                    )));
                }
            };
            let pattern = pattern.trim();
            if pattern.is_empty() || pattern.contains(char::is_whitespace) {
                return Err(at("the pattern is empty or contains spaces"));
            }
            out.push(Suppression {
                line: n + 1,
                field,
                compiled: Pattern::new(pattern),
                pattern: pattern.to_owned(),
                reason: reason.to_owned(),
                hits: 0,
            });
        }
        Ok(out)
    }

    ///
    /// A stack is shared by many items (a report's 100,000 leaks come from
    /// a few thousand call paths): a `function:` suppression is matched
    /// against each distinct stack once, the answer kept in `seen`.
    pub fn matches(&self, item: &Item<'_>, seen: &mut StackAnswers) -> bool {
        let p = &self.compiled;
        match self.field {
            Field::Kind => item.kind.is_some_and(|k| p.matches(k)),
            Field::Rule => item.rule.is_some_and(|r| p.matches(r)),
            Field::Signature => p.matches(item.signature),
            Field::Function => item.stack.is_some_and(|stack| {
                *seen
                    .entry((self.line, std::ptr::from_ref(stack)))
                    .or_insert_with(|| self.matches_stack(stack))
            }),
        }
    }

    /// For a `function:` suppression, whether a frame of `stack` matches.
    pub fn matches_stack(&self, stack: &mapileak_reports::Stack) -> bool {
        stack
            .frames
            .iter()
            .any(|f| self.compiled.matches(&f.function))
    }

    /// `kind:IMAPITable`, as written.
    pub fn entry(&self) -> String {
        let field = match self.field {
            Field::Kind => "kind",
            Field::Rule => "rule",
            Field::Signature => "signature",
            Field::Function => "function",
        };
        format!("{field}:{}", self.pattern)
    }
}

/// The answers of `function:` suppressions per stack: (suppression's
/// line, stack) to whether a frame matched.
pub type StackAnswers = std::collections::HashMap<(usize, *const mapileak_reports::Stack), bool>;

/// `*` matches any run of characters, `?` one; the rest literally.
#[cfg(test)]
fn glob(pattern: &str, text: &str) -> bool {
    Pattern::new(pattern).matches(text)
}

/// A glob pattern, split into characters once; matched against a name
/// character by character, with no allocation.
#[derive(Debug)]
struct Pattern {
    chars: Vec<char>,
}

impl Pattern {
    fn new(pattern: &str) -> Pattern {
        Pattern {
            chars: pattern.chars().collect(),
        }
    }

    fn matches(&self, text: &str) -> bool {
        glob_in(&self.chars, text)
    }
}

/// Whether `t` matches the pattern `p` (`*` any run, `?` one character).
fn glob_in(p: &[char], t: &str) -> bool {
    // Iterative matcher with backtracking to the last `*`: linear memory,
    // no recursion, no exponential blow-up on hostile patterns. `ti` is a
    // byte offset into `t`, always at a character boundary.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(c) = t[ti..].chars().next() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == c) {
            pi += 1;
            ti += c.len_utf8();
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            // The `*` takes one more character.
            let next = st + t[st..].chars().next().map_or(1, char::len_utf8);
            pi = sp + 1;
            ti = next;
            star = Some((sp, next));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(
            "*refresh_unread_count",
            "mapileak_samples::store::refresh_unread_count"
        ));
        assert!(glob("IMAPI*", "IMAPITable"));
        assert!(glob("I?essage", "IMessage"));
        assert!(!glob("IMAPI*", "IMessage"));
        assert!(!glob("store", "store::open"));
        assert!(glob("*", ""));
        assert!(!glob(&"*a".repeat(50), &"a".repeat(40)));
        // `?` is one character, not one byte, in a name that is not ASCII
        // (an ASCII pattern against it takes the character path).
        assert!(glob("Pr?fung::open", "Prüfung::open"));
        assert!(glob("?", "é"));
        assert!(!glob("??", "é"));
    }

    #[test]
    fn suppressions_need_a_reason_and_a_known_field() {
        assert!(
            Suppression::parse_file("kind:IMAPITable", "s")
                .unwrap_err()
                .0
                .contains("s:1: a suppression needs a reason")
        );
        assert!(
            Suppression::parse_file("# c\nleak:x reason: y", "s")
                .unwrap_err()
                .0
                .starts_with("s:2: unknown field")
        );
        // A pattern must be one word, and there must be one.
        for bad in [
            "kind: reason: r",
            "kind:IMAPI Table reason: r",
            "rule reason: r",
        ] {
            assert!(Suppression::parse_file(bad, "s").is_err(), "{bad}");
        }
        let s = Suppression::parse_file(
            "kind:IMAPITable reason: r\nrule:over-* reason: r\nsignature:0123* reason: r",
            "s",
        )
        .unwrap();
        let fields: Vec<(Field, String)> = s.iter().map(|x| (x.field, x.entry())).collect();
        assert_eq!(
            fields,
            [
                (Field::Kind, "kind:IMAPITable".to_owned()),
                (Field::Rule, "rule:over-*".to_owned()),
                (Field::Signature, "signature:0123*".to_owned()),
            ]
        );
        let s = Suppression::parse_file("function:*open* reason: vendor SDK", "s").unwrap();
        assert_eq!(
            (s[0].field, s[0].pattern.as_str(), s[0].reason.as_str()),
            (Field::Function, "*open*", "vendor SDK")
        );
    }

    #[test]
    fn baseline_lines() {
        let b = Baseline::parse("# x\n873f733f4210f5a4  2  leak IMAPITable\n", "b").unwrap();
        assert_eq!(b.counts["873f733f4210f5a4"], 2);
        assert!(
            Baseline::parse("zzz 1", "b")
                .unwrap_err()
                .0
                .starts_with("b:1:")
        );
    }
}
