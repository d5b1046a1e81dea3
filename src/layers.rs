//! The crate's modules form layers: no module names a module that names it
//! back, directly or around a circle. This test reads the sources and fails
//! on a circle, naming it.
//!
//! ```text
//!  session, lifecycle          the public API: logons, the provider's life
//!    └► logoff                 the pipeline driver (and the exit report)
//!         └► snapshot ► emit   take ─► analyse, build ─► outputs
//!  object, buffers, alloc      capture: tracked objects, MAPI buffers, heap
//!    └► registry, rules        the recorder's state; rules over it
//!  stack, vmem, config, kind   stacks, tables, settings, kinds
//!  context, trace              leaves: the current session, quiet, stderr
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules of `src/` each module's code names (through `crate::x`,
/// including items `lib.rs` re-exports from `x`, and `use crate::{x, ...}`;
/// comments and doc links aside).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") {
            let mut text = std::fs::read_to_string(&path).unwrap();
            // A module's own submodules (`src/stack/fp.rs`) are part of it.
            if let Ok(dir) = std::fs::read_dir(src.join(name)) {
                for sub in dir {
                    text += &std::fs::read_to_string(sub.unwrap().path()).unwrap();
                }
            }
            sources.insert(name.to_owned(), text);
        }
    }
    let lib = sources.remove("lib").unwrap();
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    // `pub use module::{A, b}` in lib.rs: `crate::A` names `module`.
    let mut exported: BTreeMap<String, String> = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        if modules.contains(module) {
            for item in items.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if !item.is_empty() {
                    exported.insert(item.to_owned(), module.to_owned());
                }
            }
        }
    }
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut graph = BTreeMap::new();
    for (name, text) in &sources {
        // Code only: a doc link is not a dependency.
        let text: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .flat_map(|l| [l, "\n"])
            .collect();
        let mut named = BTreeSet::new();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let mut found = Vec::new();
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                found.extend(group[..end].split(',').map(|p| word(p.trim())));
            } else {
                found.push(word(rest));
            }
            for w in found {
                if modules.contains(&w) {
                    named.insert(w);
                } else if let Some(m) = exported.get(&w) {
                    named.insert(m.clone());
                }
            }
        }
        named.remove(name);
        graph.insert(name.clone(), named);
    }
    graph
}

/// A circle through `from`, if there is one.
fn circle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    let at = path.last().unwrap().clone();
    for next in &graph[&at] {
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

#[test]
fn no_module_names_a_module_that_names_it_back() {
    let graph = graph();
    assert!(
        graph["session"].contains("logoff"),
        "the reader sees names: {graph:#?}"
    );
    assert!(
        graph["object"].contains("id"),
        "re-exports count (crate::ObjectId is id's): {graph:#?}"
    );
    let mut done = BTreeSet::new();
    for start in graph.keys() {
        if let Some(c) = circle(&graph, &mut vec![start.clone()], &mut done) {
            panic!("modules in a circle: {}", c.join(" -> "));
        }
    }
    for leaf in ["context", "trace", "analysis"] {
        assert!(graph[leaf].is_empty(), "{leaf} names {:?}", graph[leaf]);
    }
}
