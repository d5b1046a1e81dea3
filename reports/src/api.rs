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

/// One line per piece of public API in `code` (of module `module`).
fn list(module: &str, code: &str, out: &mut BTreeSet<String>) {
    // One spelling whatever rustfmt does: `f( a, b, )` is `f(a, b)`.
    let squash = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("( ", "(")
            .replace(", )", ")")
            .replace(",)", ")")
            .replace(", }", " }")
    };
    let chars: Vec<char> = code.chars().collect();
    // The item containing each position: (depth it opened at, its name).
    let mut scopes: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut attrs: Vec<String> = Vec::new();
    let mut i = 0;
    let mut skip_to_depth: Option<usize> = None;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            depth += 1;
            i += 1;
            continue;
        }
        if c == '}' {
            depth = depth.saturating_sub(1);
            while scopes.last().is_some_and(|(d, _)| *d > depth) {
                scopes.pop();
            }
            if skip_to_depth == Some(depth) {
                skip_to_depth = None;
            }
            i += 1;
            continue;
        }
        if c.is_whitespace() || skip_to_depth.is_some() {
            i += 1;
            continue;
        }
        // One statement or item head: up to `{`, `;` or `,` (a field or variant).
        let start = i;
        let mut j = i;
        let mut paren = 0i32;
        while j < chars.len() {
            match chars[j] {
                '(' | '[' | '<' => paren += 1,
                ')' | ']' | '>' if chars[j - 1] != '-' => paren -= 1,
                '{' | ';' if paren <= 0 => break,
                ',' if paren <= 0 => break,
                '}' => break,
                _ => {}
            }
            j += 1;
        }
        // A `use` group (`pub use read::{a, b};`) is one head, to its `;`.
        if chars[start..j]
            .iter()
            .collect::<String>()
            .trim_start()
            .starts_with("pub use")
            && chars.get(j) == Some(&'{')
        {
            while j < chars.len() && chars[j] != ';' {
                j += 1;
            }
        }
        let head: String = squash(&chars[start..j].iter().collect::<String>());
        let ends_block = chars.get(j) == Some(&'{');
        i = if ends_block || chars.get(j) == Some(&'}') {
            j
        } else {
            j + 1
        };
        if head.starts_with("#[") {
            // Attributes come one per head here only when they end the
            // head; split `#[a] #[b] item` into attributes and the rest.
            let mut rest = head.as_str();
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
            if rest.is_empty() {
                continue;
            }
            handle(
                module,
                rest,
                ends_block,
                depth,
                &mut scopes,
                &mut attrs,
                out,
                &mut skip_to_depth,
            );
        } else {
            handle(
                module,
                &head,
                ends_block,
                depth,
                &mut scopes,
                &mut attrs,
                out,
                &mut skip_to_depth,
            );
        }
    }
}

/// Records the item `head` (its attributes in `attrs`) at `depth`.
#[allow(clippy::too_many_arguments)]
fn handle(
    module: &str,
    head: &str,
    ends_block: bool,
    depth: usize,
    scopes: &mut Vec<(usize, String)>,
    attrs: &mut Vec<String>,
    out: &mut BTreeSet<String>,
    skip_to_depth: &mut Option<usize>,
) {
    let taken = std::mem::take(attrs);
    let test_only = taken.iter().any(|a| a == "#[cfg(test)]");
    let hidden = taken.iter().any(|a| a == "#[doc(hidden)]");
    let scope = scopes.last().map(|(_, s)| s.clone());
    let opens = |name: String, scopes: &mut Vec<(usize, String)>| {
        if ends_block {
            scopes.push((depth + 1, name));
        }
    };
    if test_only || hidden {
        if ends_block {
            *skip_to_depth = Some(depth);
        }
        return;
    }
    let name_after = |kw: &str| -> String {
        head.split_once(kw)
            .map(|(_, r)| {
                r.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            })
            .unwrap_or_default()
    };
    let derives: Vec<String> = taken
        .iter()
        .filter_map(|a| {
            a.strip_prefix("#[derive(")?
                .strip_suffix(")]")
                .map(str::to_owned)
        })
        .flat_map(|d| {
            d.split(',')
                .map(|t| t.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let non_exhaustive = taken.iter().any(|a| a == "#[non_exhaustive]");
    match scope.as_deref() {
        None => {
            if head.starts_with("impl") {
                // `impl Trait for Type` is API; an inherent impl's methods are.
                let generic_free = head.trim_end_matches(" where").to_owned();
                if head.contains(" for ") {
                    out.insert(format!("{module}: {generic_free}"));
                }
                let ty = head.rsplit(' ').next().unwrap_or_default().to_owned();
                opens(format!("impl {ty}"), scopes);
                return;
            }
            if !head.starts_with("pub ") {
                if ends_block {
                    *skip_to_depth = Some(depth);
                }
                return;
            }
            for kw in ["struct ", "enum "] {
                if head.contains(&format!("pub {kw}")) {
                    let name = name_after(kw);
                    let mark = if non_exhaustive {
                        "#[non_exhaustive] "
                    } else {
                        ""
                    };
                    out.insert(format!("{module}: {mark}{head}"));
                    for d in &derives {
                        out.insert(format!("{module}: impl {d} for {name}"));
                    }
                    opens(format!("{} {name}", kw.trim()), scopes);
                    return;
                }
            }
            // A re-exported group, one line per name.
            if let Some((path, group)) = head
                .strip_prefix("pub use ")
                .and_then(|h| h.split_once("::{"))
            {
                for name in group.trim_end_matches('}').split(',').map(str::trim) {
                    if !name.is_empty() {
                        out.insert(format!("{module}: pub use {path}::{name}"));
                    }
                }
                return;
            }
            // A constant's value may change; its name and type may not.
            let head = if head.starts_with("pub const") || head.starts_with("pub static") {
                head.split('=').next().unwrap_or(head).trim_end()
            } else {
                head
            };
            out.insert(format!("{module}: {head}"));
            if ends_block {
                *skip_to_depth = Some(depth);
            }
        }
        Some(s) if s.starts_with("struct") => {
            if let Some(field) = head.strip_prefix("pub ") {
                out.insert(format!("{module}: {s}.{field}"));
            }
        }
        Some(s) if s.starts_with("enum") => {
            out.insert(format!("{module}: {s}::{head}"));
            if ends_block {
                *skip_to_depth = Some(depth);
            }
        }
        Some(s) => {
            if head.starts_with("pub ") && s.starts_with("impl") {
                out.insert(format!("{module}: {s}: {head}"));
            }
            if ends_block {
                *skip_to_depth = Some(depth);
            }
        }
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
    if std::env::var_os("MAPILEAK_BLESS_API").is_some() {
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
