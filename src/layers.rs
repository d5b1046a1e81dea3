//! The crate's modules form layers: a module names only modules of lower
//! layers (or of its own, without a circle), and nothing names the crate
//! root. This test reads every source file of `src/`, `lib.rs` included,
//! and every `use` form (nested groups, `self`, `super`, renames) and
//! every qualified `crate::`/`super::`/`self::` path in code, and fails
//! naming the import that breaks the order.
//!
//! ```text
//!  9 lib                         declares and re-exports, nothing else
//!  8 session, lifecycle, object, the public API: thin types that forward
//!    heap, buffers, id, config   to the backend chosen in lib.rs
//!  7 live::session, ::lifecycle, the live backend's API side, and what
//!    ::object, ::exit, ::fork,   runs around the whole process
//!    ::testing; off
//!  6 live::logoff                the Logoff pipeline's driver
//!  5 live::snapshot, ::emit      take ─► analyse, build ─► outputs
//!  4 live::rules, ::analysis,    pure phases over the snapshot, symbol
//!    ::symbolize                 lookup (report time only)
//!  3 live::heap, ::buffers       the recorder's write side: hook, tables,
//!  2 live::registry, ::alloc,    objects and sessions, the environment
//!    ::env
//!  1 live::stack, ::vmem,        capture and leaves
//!    ::context, ::trace, ::once
//!  0 live, ::finding, ::life,    shared words: no module of the crate
//!    outcome, protocol, chains,  above them
//!    settings, kind, count,
//!    config_env, buffer_abi, sync
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module's layer (see the module documentation).
const LAYERS: &[(&str, u8)] = &[
    ("lib", 9),
    ("layers", 9),
    ("same_api_in_every_build", 9),
    ("doc_links", 9),
    ("session", 8),
    ("lifecycle", 8),
    ("object", 8),
    ("heap", 8),
    ("buffers", 8),
    ("id", 8),
    ("config", 8),
    ("live::session", 7),
    ("live::lifecycle", 7),
    ("live::object", 7),
    ("live::exit", 7),
    ("live::fork", 7),
    ("live::testing", 7),
    ("live::watch", 7),
    ("off", 7),
    ("live::logoff", 6),
    ("live::snapshot", 5),
    ("live::emit", 5),
    ("live::rules", 4),
    ("live::analysis", 4),
    ("live::symbolize", 4),
    ("live::heap", 3),
    ("live::buffers", 3),
    ("live::registry", 2),
    ("live::alloc", 2),
    ("live::env", 2),
    ("live::stack", 1),
    ("live::vmem", 1),
    ("live::once", 1),
    ("live::context", 1),
    ("live::trace", 1),
    ("live", 0),
    ("live::finding", 0),
    ("live::life", 0),
    ("outcome", 0),
    ("protocol", 0),
    ("chains", 0),
    ("settings", 0),
    ("kind", 0),
    ("count", 0),
    ("config_env", 0),
    ("buffer_abi", 0),
    ("sync", 0),
];

/// The modules the Logoff's analysis and outputs run in: they read the
/// snapshot, never the recorder's live state.
const READ_THE_SNAPSHOT_ONLY: &[&str] = &["live::rules", "live::analysis", "live::emit"];
const RECORDER_STATE: &[&str] = &["live::registry", "live::alloc", "chains"];

/// A source file: the module it belongs to (a module's own submodule files,
/// `src/live/stack/fp.rs`, are part of it) and its path in the crate.
struct Source {
    node: String,
    /// The module path of the file itself (`["live", "stack", "fp"]`).
    path: Vec<String>,
    text: String,
}

fn sources(src: &Path) -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let rel = file.strip_prefix(src).unwrap().with_extension("");
            let mut path: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if path.last().is_some_and(|l| l == "mod") {
                path.pop();
            }
            if path == ["lib"] {
                path.clear();
            }
            let text = std::fs::read_to_string(&file).unwrap();
            Source {
                node: node_of(&path),
                path,
                text,
            }
        })
        .collect()
}

/// The graph's node for a module path: a top module, or a backend module.
fn node_of(path: &[String]) -> String {
    match path {
        [] => "lib".to_owned(),
        [backend, sub, ..] if backend == "live" => format!("live::{sub}"),
        [first, ..] => first.clone(),
    }
}

/// `text` with comments, string and char literals blanked (offsets kept).
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = b.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = |k: usize| b.get(i + k).copied().unwrap_or('\0');
        if b[i] == '/' && rest(1) == '/' {
            let end = (i..b.len()).find(|&j| b[j] == '\n').unwrap_or(b.len());
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == '/' && rest(1) == '*' {
            let end = (i + 2..b.len())
                .find(|&j| b[j] == '*' && b.get(j + 1) == Some(&'/'))
                .map_or(b.len(), |j| j + 2);
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == 'r'
            && (rest(1) == '"' || (rest(1) == '#' && (rest(2) == '"' || rest(2) == '#')))
            && (i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '_'))
        {
            let hashes = (i + 1..b.len()).take_while(|&j| b[j] == '#').count();
            let open = i + 1 + hashes;
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body: String = b[open + 1..].iter().collect();
            let len = body
                .find(&close)
                .map_or(body.len(), |k| body[..k].chars().count());
            let end = open + 1 + len + 1 + hashes;
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                j += if b[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if b[i] == '\'' {
            // A char literal ('x', '\n', '\u{1F600}'), not a lifetime ('a).
            let end = if rest(1) == '\\' {
                (i + 2..b.len()).find(|&j| b[j] == '\'').map(|j| j + 1)
            } else if rest(2) == '\'' {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// Where the block opened by the `{` at `open` closes (the end of `code`
/// when it does not).
fn closing(code: &str, open: usize) -> usize {
    let mut depth = 0;
    for (k, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + k;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// The inline modules of a file (`mod tests { ... }`): name and byte range.
fn inline_modules(code: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for (at, _) in code.match_indices("mod ") {
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue;
        }
        let rest = &code[at + 4..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let after = rest[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        let open = at + 4 + rest.find('{').unwrap();
        found.push((name, open..closing(code, open)));
    }
    found
}

/// The paths a `use` tree names (`a::{b, c::{self, d as e}, f::*}`).
fn use_paths(tree: &str) -> Vec<Vec<String>> {
    let tokens: Vec<String> = {
        let mut t = Vec::new();
        let mut word = String::new();
        let mut chars = tree.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_alphanumeric() || c == '_' {
                word.push(c);
                continue;
            }
            if !word.is_empty() {
                t.push(std::mem::take(&mut word));
            }
            match c {
                ':' if chars.peek() == Some(&':') => {
                    chars.next();
                    t.push("::".to_owned());
                }
                '{' | '}' | ',' | '*' => t.push(c.to_string()),
                _ => {}
            }
        }
        if !word.is_empty() {
            t.push(word);
        }
        t
    };
    fn tree_at(tokens: &[String], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        while *i < tokens.len() {
            let t = tokens[*i].as_str();
            match t {
                "::" => *i += 1,
                "{" => {
                    *i += 1;
                    loop {
                        tree_at(tokens, i, &path, out);
                        match tokens.get(*i).map(String::as_str) {
                            Some(",") => *i += 1,
                            Some("}") => {
                                *i += 1;
                                return;
                            }
                            _ => return,
                        }
                        if tokens.get(*i).map(String::as_str) == Some("}") {
                            *i += 1;
                            return;
                        }
                    }
                }
                "," | "}" => break,
                "*" => {
                    *i += 1;
                    break;
                }
                "as" => {
                    *i += 2;
                    break;
                }
                "self" if !path.is_empty() => *i += 1,
                word => {
                    path.push(word.to_owned());
                    *i += 1;
                }
            }
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    tree_at(&tokens, &mut i, &[], &mut out);
    out
}

/// The module paths `code` names: its `use` trees (relative ones from the
/// module `at` is in) and its qualified `crate::`, `super::`, `self::` paths.
fn named_paths(code: &str, base: &[String]) -> Vec<Vec<String>> {
    let inline = inline_modules(code);
    let module_at = |at: usize| -> Vec<String> {
        let mut path = base.to_vec();
        let mut enclosing: Vec<&(String, std::ops::Range<usize>)> =
            inline.iter().filter(|(_, r)| r.contains(&at)).collect();
        enclosing.sort_by_key(|(_, r)| r.start);
        path.extend(enclosing.into_iter().map(|(n, _)| n.clone()));
        path
    };
    let resolve = |segments: Vec<String>, at: usize, relative: bool| -> Option<Vec<String>> {
        let here = module_at(at);
        let mut path = here.clone();
        let mut rest = segments.as_slice();
        match rest.first().map(String::as_str) {
            Some("crate") => {
                path.clear();
                rest = &rest[1..];
            }
            Some("super") => {
                while rest.first().is_some_and(|s| s == "super") {
                    path.pop();
                    rest = &rest[1..];
                }
            }
            Some("self") => rest = &rest[1..],
            _ if relative => {}
            _ => return None,
        }
        path.extend(rest.iter().cloned());
        Some(path)
    };
    // Test modules may name whatever they test.
    let in_tests = |at: usize| inline.iter().any(|(n, r)| n == "tests" && r.contains(&at));
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for (at, _) in code.match_indices("use ") {
        if in_tests(at) {
            continue;
        }
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            continue;
        };
        for path in use_paths(&code[at + 4..at + end]) {
            found.extend(resolve(path, at, true));
        }
    }
    for anchor in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(anchor) {
            if in_tests(at) {
                continue;
            }
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            // Words joined by `::`: the path ends at the first piece with
            // more than a word in it (`exiting();` ends `exit::exiting`).
            let mut segments: Vec<String> = Vec::new();
            for piece in code[at..].split("::") {
                let word: String = piece
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let whole = word.len() == piece.len();
                if !word.is_empty() {
                    segments.push(word);
                }
                if !whole || segments.is_empty() {
                    break;
                }
            }
            found.extend(resolve(segments, at, false));
        }
    }
    found
}

/// Which module each import names: `from -> {to: the import, as written}`.
fn graph(sources: &[Source]) -> BTreeMap<String, BTreeMap<String, String>> {
    let modules: BTreeSet<String> = sources.iter().map(|s| s.node.clone()).collect();
    let lib = sources.iter().find(|s| s.node == "lib").unwrap();
    let lib_code = code_only(&lib.text);
    // What lib.rs re-exports (`pub use heap::{A, b}`), and defines itself.
    let mut items: BTreeMap<String, String> = BTreeMap::new();
    for path in named_paths(&lib_code, &[]) {
        if let [module, .., item] = path.as_slice()
            && module != "mapileak_reports"
        {
            let node = if module == "backend" {
                node_of(&["live".to_owned(), path[1].clone()])
            } else {
                module.clone()
            };
            if modules.contains(&node) {
                items.insert(item.clone(), node);
            }
        }
    }
    for line in lib_code.lines() {
        let line = line.trim_start().trim_start_matches("pub ");
        for kw in ["const ", "static ", "fn ", "struct ", "enum ", "type "] {
            if let Some(rest) = line.strip_prefix(kw) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                items.insert(name, "lib".to_owned());
            }
        }
    }
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for source in sources {
        let code = code_only(&source.text);
        let edges = graph.entry(source.node.clone()).or_default();
        for path in named_paths(&code, &source.path) {
            let mut path = path;
            if path.first().is_some_and(|p| p == "backend") {
                path[0] = "live".to_owned();
            }
            let Some(first) = path.first() else { continue };
            let node = if first == "live" {
                match path.get(1) {
                    Some(sub) if modules.contains(&format!("live::{sub}")) => {
                        format!("live::{sub}")
                    }
                    _ => "live".to_owned(),
                }
            } else if modules.contains(first) && path.len() > 1 {
                first.clone()
            } else if let Some(node) = items.get(first) {
                node.clone()
            } else if modules.contains(first) {
                first.clone()
            } else {
                continue;
            };
            if node != source.node {
                edges.entry(node).or_insert_with(|| path.join("::"));
            }
        }
    }
    graph
}

/// What breaks the layers, one line each.
fn violations(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut bad = Vec::new();
    for (from, edges) in graph {
        let Some(&here) = layer.get(from.as_str()) else {
            bad.push(format!("module {from} has no layer in LAYERS"));
            continue;
        };
        for (to, written) in edges {
            if to == "lib" && from != "lib" {
                bad.push(format!("{from} imports from the crate root: {written}"));
                continue;
            }
            match layer.get(to.as_str()) {
                Some(&there) if there > here => bad.push(format!(
                    "{from} (layer {here}) names {to} (layer {there}), above it: {written}"
                )),
                Some(_) => {}
                None => {}
            }
            if READ_THE_SNAPSHOT_ONLY.contains(&from.as_str())
                && RECORDER_STATE.contains(&to.as_str())
            {
                bad.push(format!("{from} reads the recorder's state: {written}"));
            }
        }
    }
    // A circle among modules of one layer.
    fn circle(
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        let at = path.last().unwrap().clone();
        for next in graph.get(&at).into_iter().flat_map(|e| e.keys()) {
            if let Some(i) = path.iter().position(|p| p == next) {
                let mut c = path[i..].to_vec();
                c.push(next.clone());
                return Some(c);
            }
            if done.contains(next) {
                continue;
            }
            path.push(next.clone());
            if let Some(c) = circle(graph, path, done) {
                return Some(c);
            }
            path.pop();
        }
        done.insert(at);
        None
    }
    let mut done = BTreeSet::new();
    for start in graph.keys() {
        if let Some(c) = circle(graph, &mut vec![start.clone()], &mut done) {
            bad.push(format!("modules in a circle: {}", c.join(" -> ")));
            break;
        }
    }
    bad
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_module_names_only_modules_below_it() {
    let sources = sources(&src());
    let graph = graph(&sources);
    // The reader sees what it claims to: a nested group
    // (`use super::registry::{self, ...}`), a `super::` path in code, a
    // re-exported item (`crate::Logoff` is outcome's) and lib.rs itself.
    let sees = |from: &str, to: &str| graph.get(from).is_some_and(|e| e.contains_key(to));
    assert!(sees("live::object", "live::registry"), "{graph:#?}");
    assert!(sees("live::object", "live::session"), "{graph:#?}");
    assert!(sees("live::session", "outcome"), "{graph:#?}");
    assert!(
        sees("lib", "live::testing") || !cfg!(feature = "test-hooks") || sees("lib", "live"),
        "{graph:#?}"
    );
    assert!(sees("lib", "heap"), "{graph:#?}");
    let bad = violations(&graph);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // lib.rs declares modules and re-exports; it defines nothing.
    let lib = code_only(&sources.iter().find(|s| s.node == "lib").unwrap().text);
    let defined: Vec<&str> = lib
        .lines()
        .map(|l| l.trim().trim_start_matches("pub "))
        .filter(|l| {
            [
                "fn ",
                "const ",
                "static ",
                "struct ",
                "enum ",
                "type ",
                "impl ",
                "trait ",
                "macro_rules!",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .collect();
    assert!(defined.is_empty(), "lib.rs defines {defined:?}");
}

/// The test above can fail: an upward import planted in a copy of the
/// sources, in a nested group, is caught; so is a circle, and an import
/// from the crate root.
#[test]
fn a_planted_upward_import_or_circle_is_caught() {
    // What breaks the layers once each line is put at the top of its module.
    let plant_all = |lines: &[(&str, &str)]| -> Vec<String> {
        let mut sources = sources(&src());
        for (node, line) in lines {
            let s = sources.iter_mut().find(|s| s.node == *node).unwrap();
            s.text = format!("{line}\n{}", s.text);
        }
        violations(&graph(&sources))
    };
    let plant = |node: &str, line: &str| plant_all(&[(node, line)]);
    let upward = plant(
        "live::registry",
        "use crate::backend::{stack::{self}, logoff::report};",
    );
    assert!(
        upward
            .iter()
            .any(|v| v.contains("live::registry (layer 2) names live::logoff")),
        "{upward:#?}"
    );
    let both = plant_all(&[
        ("live::context", "use super::trace::line;"),
        ("live::trace", "fn f() { super::context::leave(0) }"),
    ]);
    assert!(
        both.iter().any(|v| v.starts_with("modules in a circle")),
        "{both:#?}"
    );
    // lib.rs defines nothing; an item planted there is the crate root's.
    let root = plant_all(&[
        ("lib", "pub const PLANTED: u8 = 0;"),
        ("live::emit", "use crate::PLANTED;"),
    ]);
    assert!(
        root.iter()
            .any(|v| v == "live::emit imports from the crate root: PLANTED"),
        "{root:#?}"
    );
    let reads = plant(
        "live::rules",
        "fn f() { let _ = crate::backend::registry::is_live; }",
    );
    assert!(
        reads
            .iter()
            .any(|v| v.starts_with("live::rules reads the recorder's state")),
        "{reads:#?}"
    );
    // Comments, strings and doc links are not imports.
    let quiet = plant(
        "live::registry",
        "// use crate::backend::logoff;\nconst S: &str = \"crate::backend::logoff\";\n/// [`x`](crate::backend::logoff)",
    );
    assert_eq!(quiet, violations(&graph(&sources(&src()))));
}

/// The longest a function may be: a reader holds it in one screen. A
/// longer one says why it must be one piece, in a comment above it that
/// contains "one piece".
const MAX_FUNCTION_LINES: usize = 80;

/// Functions (`fn name`) of `code` over [`MAX_FUNCTION_LINES`], test
/// modules aside: `(name, first line, lines)`.
fn long_functions(text: &str) -> Vec<(String, usize, usize)> {
    let code = code_only(text);
    let tests: Vec<std::ops::Range<usize>> = inline_modules(&code)
        .into_iter()
        .filter(|(n, _)| n == "tests")
        .map(|(_, r)| r)
        .collect();
    let bytes = code.as_bytes();
    let mut long = Vec::new();
    for (at, _) in code.match_indices("fn ") {
        if (at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_'))
            || tests.iter().any(|r| r.contains(&at))
        {
            continue;
        }
        let name: String = code[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The body: the first `{` outside the signature's brackets (a
        // declaration without one ends at `;`).
        let mut nested = 0i32;
        let mut open = None;
        for (k, c) in code[at..].char_indices() {
            match c {
                '(' | '[' => nested += 1,
                ')' | ']' => nested -= 1,
                ';' if nested <= 0 => break,
                '{' if nested <= 0 => {
                    open = Some(at + k);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let close = closing(&code, open);
        let first = code[..at].matches('\n').count() + 1;
        let lines = code[at..close].matches('\n').count() + 1;
        // The comment lines right above it (the original text's).
        let above: Vec<&str> = text
            .lines()
            .take(first - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .take_while(|l| {
                let l = l.trim_start();
                l.starts_with("//") || l.starts_with("#[") || l.starts_with("pub") || l.is_empty()
            })
            .collect();
        let explained = above.iter().any(|l| l.contains("one piece"));
        if lines > MAX_FUNCTION_LINES && !explained {
            long.push((name, first, lines));
        }
    }
    long
}

#[test]
fn no_function_is_longer_than_a_reader_can_hold() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut long = Vec::new();
    for dir in ["src", "reports/src", "probe/src"] {
        let mut files = Vec::new();
        let mut dirs = vec![root.join(dir)];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs")
                {
                    files.push(path);
                }
            }
        }
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (name, line, lines) in long_functions(&text) {
                long.push(format!("{}:{line} {name}: {lines} lines", file.display()));
            }
        }
    }
    long.sort();
    assert!(
        long.is_empty(),
        "over {MAX_FUNCTION_LINES} lines (split it where it changes phase, or say above it why it must be one piece):\n{}",
        long.join("\n")
    );
    // The measure itself: a planted long function is caught, an explained one is not.
    let body = "    let x = 1;\n".repeat(MAX_FUNCTION_LINES);
    let planted = format!("fn long() {{\n{body}}}\n");
    assert_eq!(long_functions(&planted).len(), 1);
    let explained = format!("// It must be one piece: the hot loop.\n{planted}");
    assert!(long_functions(&explained).is_empty());
}
