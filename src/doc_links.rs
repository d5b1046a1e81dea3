//! Every relative link of the README, the changelog and `docs/` leads
//! somewhere: its file exists, and its `#anchor`, if any, is a heading there.

use std::path::{Path, PathBuf};

/// The Markdown links of `text` (`[label](target)`), code aside.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Inline code (`...`) is not a link.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, p)| p)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].trim().to_owned());
            rest = &after[end..];
        }
    }
    out
}

/// A heading's anchor as GitHub makes it: lower case, spaces to `-`,
/// punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// What is wrong with the links of `file` (its text `text`), one line each.
fn broken(file: &Path, text: &str) -> Vec<String> {
    let dir = file.parent().unwrap();
    let mut bad = Vec::new();
    for link in links(text) {
        if link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match link.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (link.as_str(), None),
        };
        let target = if path.is_empty() {
            file.to_owned()
        } else {
            dir.join(path)
        };
        if !target.exists() {
            bad.push(format!("{}: ({link}) leads to no file", file.display()));
            continue;
        }
        if let Some(anchor) = anchor {
            let headings = std::fs::read_to_string(&target).unwrap_or_default();
            let found = headings
                .lines()
                .filter_map(|l| l.strip_prefix('#'))
                .any(|h| slug(h.trim_start_matches('#')) == anchor);
            if !found {
                bad.push(format!("{}: ({link}) names no heading", file.display()));
            }
        }
    }
    bad
}

fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("CHANGELOG.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let files = documents();
    assert!(files.len() >= 10, "{files:?}");
    let mut bad = Vec::new();
    let mut seen = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        seen += links(&text).len();
        bad.extend(broken(file, &text));
    }
    assert!(seen >= 20, "only {seen} links read: is the reader broken?");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // The check itself: a link to a missing file, a missing heading, and
    // one in code (not a link).
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let planted = "[a](docs/nothing.md) [b](docs/rules.md#no-such-heading) `[c](nowhere.md)`\n";
    assert_eq!(
        broken(&readme, planted).len(),
        2,
        "{:?}",
        broken(&readme, planted)
    );
    assert!(broken(&readme, "[q](#quick-start)").is_empty());
}
