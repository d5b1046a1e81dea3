//! The crate's public API, listed from its sources and compared with the
//! committed listing `api.txt`: report v1 grows (new fields, new rules,
//! new events) and never renames or removes, so a line of the listing that
//! disappears is a breaking change for the crates that read reports, and
//! fails here. A line that appears is new API: look at it, then write the
//! listing again with `MAPILEAK_BLESS_API=1 cargo test -p mapileak-reports api`.
//!
//! Listed: each public item with its signature (a function's parameters
//! and return type, a constant's type), each public field and enum variant,
//! each public method, each trait implemented (derived or written), and
//! whether a type is `#[non_exhaustive]`. Doc comments, private items and
//! test code are not API.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// `text` with comments and string literals blanked (line breaks kept).
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = b.clone();
    let mut blank = |from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let mut i = 0;
    let at = |k: usize| b.get(k).copied().unwrap_or('\0');
    while i < b.len() {
        let word_before = i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_');
        if b[i] == '/' && at(i + 1) == '/' {
            let end = (i..b.len()).find(|&j| b[j] == '\n').unwrap_or(b.len());
            blank(i, end);
            i = end;
        } else if b[i] == 'r' && !word_before && (at(i + 1) == '"' || at(i + 1) == '#') {
            let hashes = (i + 1..b.len()).take_while(|&j| b[j] == '#').count();
            if at(i + 1 + hashes) != '"' {
                i += 1;
                continue;
            }
            let mut j = i + 2 + hashes;
            while j < b.len() && !(b[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#')) {
                j += 1;
            }
            blank(i, j + 1 + hashes);
            i = j + 1 + hashes;
        } else if b[i] == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                j += if b[j] == '\\' { 2 } else { 1 };
            }
            blank(i, j + 1);
            i = j + 1;
        } else if b[i] == '\'' && (at(i + 2) == '\'' || at(i + 1) == '\\') {
            let end = (i + 2..b.len())
                .find(|&j| b[j] == '\'')
                .map_or(b.len(), |j| j + 1);
            blank(i, end);
            i = end;
        } else {
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// An item's head: its attributes, its text up to `{`, `;` or `,`, and
/// the brace depth it is at.
struct Head {
    attrs: Vec<String>,
    text: String,
    /// Whether a block (`{ ... }`) follows.
    block: bool,
    depth: usize,
}

/// `text` with its whitespace squashed, in one spelling whatever rustfmt
/// does: `f( a, b, )` is `f(a, b)`.
fn squash(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("( ", "(")
        .replace(", )", ")")
        .replace(",)", ")")
        .replace(", }", " }")
}

/// Every head in `code`, at every depth.
fn heads(code: &str) -> Vec<Head> {
    let chars: Vec<char> = code.chars().collect();
    let mut heads = Vec::new();
    let (mut i, mut depth) = (0, 0usize);
    while i < chars.len() {
        match chars[i] {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if c.is_whitespace() => {}
            _ => {
                let end = head_end(&chars, i);
                let mut text = chars[i..end].iter().collect::<String>();
                // A `use` group (`pub use read::{a, b};`) is one head, to its `;`.
                let mut end = end;
                if text.trim_start().starts_with("pub use") && chars.get(end) == Some(&'{') {
                    while end < chars.len() && chars[end] != ';' {
                        end += 1;
                    }
                    text = chars[i..end].iter().collect();
                }
                let (attrs, text) = split_attributes(&squash(&text));
                let block = chars.get(end) == Some(&'{');
                heads.push(Head {
                    attrs,
                    text,
                    block,
                    depth,
                });
                // A block's `{` and a closing `}` are counted above.
                i = if block || chars.get(end) == Some(&'}') {
                    end
                } else {
                    end + 1
                };
                continue;
            }
        }
        i += 1;
    }
    heads
}

/// Where the head starting at `start` ends: at `{`, `;` or `}`, or at a
/// `,` outside brackets (a field, a variant).
fn head_end(chars: &[char], start: usize) -> usize {
    let mut nested = 0i32;
    let mut j = start;
    while j < chars.len() {
        match chars[j] {
            '{' | '}' => break,
            ';' if nested <= 0 => break,
            // A shift, not two generics (`256 << 20`).
            '<' if chars.get(j + 1) == Some(&'<') => j += 1,
            '(' | '[' | '<' => nested += 1,
            ')' | ']' => nested -= 1,
            '>' if j == 0 || chars[j - 1] != '-' => nested -= 1,
            ',' if nested <= 0 => break,
            _ => {}
        }
        j += 1;
    }
    j
}

/// `#[a] #[b(c)] item` as its attributes and the rest.
fn split_attributes(head: &str) -> (Vec<String>, String) {
    let mut attrs = Vec::new();
    let mut rest = head;
    while let Some(r) = rest.strip_prefix("#[") {
        let mut level = 1;
        let end = r
            .char_indices()
            .find(|&(_, ch)| {
                match ch {
                    '[' => level += 1,
                    ']' => level -= 1,
                    _ => {}
                }
                level == 0
            })
            .map_or(r.len(), |(k, _)| k);
        attrs.push(format!("#[{}]", &r[..end]));
        rest = r[(end + 1).min(r.len())..].trim_start();
    }
    (attrs, rest.to_owned())
}

/// A constant's value may change; its name and type may not.
fn declaration(text: &str) -> &str {
    if text.starts_with("pub const") || text.starts_with("pub static") {
        text.split(" =").next().unwrap_or(text).trim_end()
    } else {
        text
    }
}

/// One line per piece of public API in `code` (of module `module`).
fn list(module: &str, code: &str, out: &mut BTreeSet<String>) {
    // The item each head is in (opened at a depth), and the depth of a
    // body being skipped (a function's, a private item's, test code).
    let mut scopes: Vec<(usize, String)> = Vec::new();
    let mut skipping: Option<usize> = None;
    let mut attrs: Vec<String> = Vec::new();
    for head in heads(code) {
        if skipping.is_some_and(|d| head.depth > d) {
            continue;
        }
        skipping = None;
        scopes.retain(|(d, _)| *d <= head.depth);
        attrs.extend(head.attrs.iter().cloned());
        if head.text.is_empty() {
            continue;
        }
        let taken = std::mem::take(&mut attrs);
        let item = Item {
            module,
            head: &head,
            attrs: &taken,
            scope: scopes.last().map(|(_, s)| s.as_str()),
        };
        match item.record(out) {
            Next::Open(name) => scopes.push((head.depth + 1, name)),
            Next::Skip => skipping = Some(head.depth),
            Next::Continue => {}
        }
    }
}

/// What follows an item's head.
enum Next {
    /// Its block holds listed items (a struct's fields, an impl's methods).
    Open(String),
    /// Its block is not API (a function body, a private item, test code).
    Skip,
    Continue,
}

/// One head, where it is.
struct Item<'a> {
    module: &'a str,
    head: &'a Head,
    attrs: &'a [String],
    /// The struct, enum or impl it is in.
    scope: Option<&'a str>,
}

impl Item<'_> {
    /// Lists what the head says; tells what to do with its block.
    fn record(&self, out: &mut BTreeSet<String>) -> Next {
        let (module, text) = (self.module, self.head.text.as_str());
        let skip = if self.head.block {
            Next::Skip
        } else {
            Next::Continue
        };
        if self
            .attrs
            .iter()
            .any(|a| a == "#[cfg(test)]" || a == "#[doc(hidden)]")
        {
            return skip;
        }
        match self.scope {
            None => self.top_level(out),
            Some(s) if s.starts_with("struct") => {
                if let Some(field) = text.strip_prefix("pub ") {
                    out.insert(format!("{module}: {s}.{field}"));
                }
                Next::Continue
            }
            Some(s) if s.starts_with("enum") => {
                out.insert(format!("{module}: {s}::{text}"));
                skip
            }
            Some(s) => {
                if text.starts_with("pub ") && s.starts_with("impl") {
                    out.insert(format!("{module}: {s}: {}", declaration(text)));
                }
                skip
            }
        }
    }

    /// An item at the module's top level.
    fn top_level(&self, out: &mut BTreeSet<String>) -> Next {
        let (module, text) = (self.module, self.head.text.as_str());
        let skip = if self.head.block {
            Next::Skip
        } else {
            Next::Continue
        };
        if text.starts_with("impl") {
            // `impl Trait for Type` is API; an inherent impl's methods are.
            if text.contains(" for ") {
                out.insert(format!("{module}: {}", text.trim_end_matches(" where")));
            }
            let ty = text.rsplit(' ').next().unwrap_or_default();
            return Next::Open(format!("impl {ty}"));
        }
        if !text.starts_with("pub ") {
            return skip;
        }
        for kw in ["struct", "enum"] {
            let Some((_, rest)) = text.split_once(&format!("pub {kw} ")) else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let mark = if self.attrs.iter().any(|a| a == "#[non_exhaustive]") {
                "#[non_exhaustive] "
            } else {
                ""
            };
            out.insert(format!("{module}: {mark}{text}"));
            for d in self.derives() {
                out.insert(format!("{module}: impl {d} for {name}"));
            }
            return Next::Open(format!("{kw} {name}"));
        }
        // A re-exported group, one line per name.
        if let Some((path, group)) = text
            .strip_prefix("pub use ")
            .and_then(|h| h.split_once("::{"))
        {
            for name in group.trim_end_matches('}').split(',').map(str::trim) {
                if !name.is_empty() {
                    out.insert(format!("{module}: pub use {path}::{name}"));
                }
            }
            return Next::Continue;
        }
        out.insert(format!("{module}: {}", declaration(text)));
        skip
    }

    /// The traits its `#[derive]`s implement.
    fn derives(&self) -> Vec<String> {
        self.attrs
            .iter()
            .filter_map(|a| a.strip_prefix("#[derive(")?.strip_suffix(")]"))
            .flat_map(|d| d.split(',').map(|t| t.trim().to_owned()))
            .filter(|t| !t.is_empty())
            .collect()
    }
}

/// The listing of the crate as its sources are now.
fn current() -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<PathBuf> = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("tests.rs")
                && !path.ends_with("api.rs")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = BTreeSet::new();
    for file in files {
        let module = file
            .strip_prefix(&src)
            .unwrap()
            .with_extension("")
            .to_string_lossy()
            .replace(['/', '\\'], "::");
        list(
            &module,
            &code_only(&std::fs::read_to_string(&file).unwrap()),
            &mut out,
        );
    }
    out.into_iter().map(|l| l + "\n").collect()
}

#[test]
fn the_public_api_only_grows() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("api.txt");
    let now = current();
    if std::env::var("MAPILEAK_BLESS_API").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let was: BTreeSet<&str> = committed.lines().collect();
    let is: BTreeSet<&str> = now.lines().collect();
    let gone: Vec<&str> = was.difference(&is).copied().collect();
    let new: Vec<&str> = is.difference(&was).copied().collect();
    assert!(
        gone.is_empty(),
        "breaking change to mapileak-reports' public API (report v1 only grows):\n  {}\n(if it is meant, bless the listing: MAPILEAK_BLESS_API=1 cargo test -p mapileak-reports api)",
        gone.join("\n  ")
    );
    assert!(
        new.is_empty(),
        "new public API, not in reports/api.txt yet:\n  {}\nlook at it, then: MAPILEAK_BLESS_API=1 cargo test -p mapileak-reports api",
        new.join("\n  ")
    );
}

#[test]
fn the_listing_sees_what_breaks() {
    let listed = |code: &str| {
        let mut out = BTreeSet::new();
        list("m", &code_only(code), &mut out);
        out
    };
    let before = listed(
        "/// doc { with braces }\n#[derive(Debug, Clone)]\n#[non_exhaustive]\npub struct Report {\n    /// \"quoted\" }\n    pub id: u64,\n    private: u8,\n}\nimpl Report {\n    pub fn new(id: u64) -> Self { let s = \"}\"; todo!() }\n    fn private(&self) {}\n}\npub enum Event { Logoff, Exit }\n#[cfg(test)]\nmod tests { pub fn hidden() {} }\n",
    );
    let expected: BTreeSet<String> = [
        "m: #[non_exhaustive] pub struct Report",
        "m: impl Debug for Report",
        "m: impl Clone for Report",
        "m: struct Report.id: u64",
        "m: impl Report: pub fn new(id: u64) -> Self",
        "m: pub enum Event",
        "m: enum Event::Logoff",
        "m: enum Event::Exit",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(before, expected);
    // A renamed field, a dropped derive, a changed signature: all seen.
    let after = listed(
        "#[derive(Debug)]\npub struct Report {\n    pub ident: u64,\n}\nimpl Report {\n    pub fn new(id: u32) -> Self { todo!() }\n}\npub enum Event { Logoff, Exit }\n",
    );
    let gone: Vec<&String> = before.difference(&after).collect();
    assert_eq!(gone.len(), 4, "{gone:#?}");
}
