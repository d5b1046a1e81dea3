//! Leak signatures: a stable name for "this leak", equal across runs, ASLR
//! and rebuilds, used as the key of baselines and suppressions.
//!
//! A signature hashes what leaked (an object kind, `heap`, `buffer`, a rule
//! id) and the function names of the first [`DEPTH`] frames of its stack that
//! belong to the provider or its libraries. Runtime frames (`std`, `core`,
//! `alloc`, the C runtime), mapileak's own frames and windows-core's vtable
//! trampolines are passed over: they say
//! nothing about which leak it is, and allocation paths through `alloc` differ
//! between toolchains. No addresses, files or lines go in, so moving code
//! inside a function keeps its leaks' signatures. Names are hashed in their
//! [canonical](crate::names::canonical) form, so a report written with
//! either Rust mangling, on Linux or on Windows, gives the same signatures.

use crate::Frame;

/// How many frames of a stack a signature covers.
pub const DEPTH: usize = 5;

/// Where a frame's code comes from, for signatures and for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The provider under test (anything not listed below).
    Provider,
    /// A library the provider uses: windows-core, mapileak, backtrace, tracing...
    Library,
    /// The Rust runtime and standard library, the C runtime, the test harness.
    Runtime,
}

const LIBRARY_PREFIXES: &[&str] = &[
    "mapileak::",
    "mapileak_reports::",
    "mapileak_c::",
    "backtrace::",
    "windows_core::",
    "windows_implement::",
    "tracing::",
    "tracing_core::",
    "parking_lot::",
    "inventory::",
];

const RUNTIME_PREFIXES: &[&str] = &["std::", "core::", "alloc::", "test::", "__rust", "__libc"];

const RUNTIME_NAMES: &[&str] = &[
    "main",
    "_start",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "??",
];

/// Classifies a demangled function name.
///
/// For `<A as B>::f` and `<A>::f`, the crates of `A` and `B` decide: a
/// provider type or trait makes it provider code (its `Drop`, its COM
/// interface implementation), else a library, else the runtime. Primitive
/// and function types (`u8`, `fn() -> T`) name no crate and are passed over.
pub fn origin(function: &str) -> Origin {
    match qualified(function) {
        Some(parts) => {
            let found: Vec<Origin> = parts
                .into_iter()
                .filter(|p| is_path(p))
                .map(path_origin)
                .collect();
            if found.contains(&Origin::Provider) {
                Origin::Provider
            } else if found.contains(&Origin::Library) {
                Origin::Library
            } else {
                Origin::Runtime
            }
        }
        None => path_origin(function),
    }
}

/// `A` and `B` of `<A as B>::rest` (or just `A` of `<A>::rest`).
fn qualified(function: &str) -> Option<Vec<&str>> {
    let inner = function.strip_prefix('<')?;
    let mut depth = 0usize;
    let mut prev = ' ';
    for (i, c) in inner.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if prev == '-' => {}
            '>' if depth == 0 => {
                let head = &inner[..i];
                return Some(split_as(head));
            }
            '>' => depth -= 1,
            _ => {}
        }
        prev = c;
    }
    None
}

/// Splits `A as B` at the top-level ` as `.
///
/// The `>` of a function type's `->` needs no case of its own here: it can
/// only lower the depth early (never below 0), and an inner ` as ` always
/// sits inside a `<` of its own, so it is never seen at depth 0.
fn split_as(head: &str) -> Vec<&str> {
    let mut depth = 0usize;
    let bytes = head.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'<' => depth += 1,
            b'>' => depth = depth.saturating_sub(1),
            b' ' if depth == 0 && head[i..].starts_with(" as ") => {
                return vec![&head[..i], &head[i + 4..]];
            }
            _ => {}
        }
    }
    vec![head]
}

/// Whether `t` names a path (`crate::Type`), after `&`, `&mut`, `dyn`, `*const`.
fn is_path(t: &str) -> bool {
    let t = t
        .trim_start_matches(['&', '*'])
        .trim_start_matches("mut ")
        .trim_start_matches("const ")
        .trim_start_matches("dyn ");
    t.starts_with(|c: char| c.is_alphabetic() || c == '_')
        && !t.starts_with("fn(")
        && t.contains("::")
}

fn path_origin(path: &str) -> Origin {
    let name = path
        .trim_start_matches(['&', '*'])
        .trim_start_matches("mut ")
        .trim_start_matches("const ")
        .trim_start_matches("dyn ");
    if LIBRARY_PREFIXES.iter().any(|p| name.starts_with(p)) || is_c_abi(name) {
        Origin::Library
    } else if RUNTIME_PREFIXES.iter().any(|p| name.starts_with(p)) || RUNTIME_NAMES.contains(&name)
    {
        Origin::Runtime
    } else {
        Origin::Provider
    }
}

/// One of the C ABI's exported functions (`mapileak_object_new`): C names,
/// no path.
fn is_c_abi(function: &str) -> bool {
    function.starts_with("mapileak_") && !function.contains("::")
}

/// The function name without a trailing `::h0123456789abcdef` hash.
pub fn strip_hash(function: &str) -> &str {
    match function.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => function,
    }
}

/// The signature of `what` created at `frames` (innermost first).
pub fn compute(what: &str, frames: &[Frame]) -> String {
    let mut h = Fnv::new();
    h.write(what.as_bytes());
    for f in frames
        .iter()
        .filter(|f| counts_in_signature(&f.function))
        .take(DEPTH)
    {
        h.write(&[0]);
        h.write(crate::names::canonical(&f.function).as_bytes());
    }
    format!("{:016x}", h.0)
}

/// Runtime frames, mapileak's own, and windows-core's generated vtable
/// trampolines (`IFoo_Vtbl::new::Method`, which only forward to the
/// implementation) say nothing about which leak it is.
fn counts_in_signature(function: &str) -> bool {
    origin(function) != Origin::Runtime
        && !function.trim_start_matches('<').starts_with("mapileak::")
        && !is_cpp_template_of_mapileak(function)
        && !function.starts_with("mapileak_c::")
        && !is_c_abi(function)
        && !function.contains("_Vtbl::new::")
}

/// A C++ function template of mapileak.hpp: its demangled name starts
/// with the return type (`unsigned int mapileak::RefCount::Release<T>(T*)`).
fn is_cpp_template_of_mapileak(function: &str) -> bool {
    function
        .split('(')
        .next()
        .is_some_and(|head| head.split(' ').skip(1).any(|w| w.starts_with("mapileak::")))
}

/// FNV-1a, 64 bits: tiny, and its output is fixed forever (std's hashers are not).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(f: &str) -> Frame {
        Frame {
            function: f.to_owned(),
            file: Some("x.rs".into()),
            line: Some(1),
        }
    }

    /// Qualified paths (`<A as B>::f`): the crates of `A` and `B` decide,
    /// read through nested generics, `->` in function types and qualified
    /// paths inside the generics.
    #[test]
    fn qualified_paths_are_read_through_their_generics() {
        for (function, expected) in [
            // A provider trait on a std type: provider code.
            (
                "<std::collections::HashMap<u32, fn() -> store::Row> as store::Cache>::get",
                Origin::Provider,
            ),
            ("<fn() -> u8 as store::Trait>::call", Origin::Provider),
            // A generic argument's crate does not count, the outer type's does.
            (
                "<core::vec::Vec<store::Row> as mapileak::Tracked>::f",
                Origin::Library,
            ),
            (
                "<core::HashMap<u8, store::X> as mapileak::Trait>::f",
                Origin::Library,
            ),
            // An ` as ` inside the generics is not the one that splits.
            (
                "<mapileak::Wrap<<u8 as store::Foo>::Out> as core::ops::Deref>::deref",
                Origin::Library,
            ),
            (
                "<&mut mapileak::X as core::fmt::Debug>::fmt",
                Origin::Library,
            ),
            (
                "<alloc::vec::Vec<u8> as core::clone::Clone>::clone",
                Origin::Runtime,
            ),
            (
                "<store::Folder<alloc::vec::Vec<u8>>>::open",
                Origin::Provider,
            ),
            // Tuples and slices name no crate; a leading `_` is a crate's.
            ("<(store::A, u8) as core::fmt::Debug>::fmt", Origin::Runtime),
            ("<_store::X as core::clone::Clone>::clone", Origin::Provider),
        ] {
            assert_eq!(origin(function), expected, "{function}");
        }
    }

    #[test]
    fn only_a_rustc_hash_is_stripped() {
        assert_eq!(strip_hash("store::open::h0123456789abcdef"), "store::open");
        for kept in [
            "store::handle",            // a name that starts with h
            "store::hzzzzzzzzzzzzzzzz", // 16 characters, not hex
            "store::h0123",             // hex, not 16 of them
            "store::open",
        ] {
            assert_eq!(strip_hash(kept), kept);
        }
    }

    #[test]
    fn signature_ignores_runtime_frames_files_and_hashes() {
        let a = [
            frame("alloc::vec::Vec<T>::push"),
            frame("store::open::h0123456789abcdef"),
            frame("main"),
        ];
        let b = [Frame {
            line: Some(99),
            ..frame("store::open")
        }];
        assert_eq!(compute("IMAPITable", &a), compute("IMAPITable", &b));
    }

    #[test]
    fn vtable_trampolines_do_not_use_up_the_depth() {
        let via = |caller: &str| {
            [
                frame("store::Table::open"),
                frame("<store::Folder_Impl as mapi::IMAPIFolder_Impl>::GetContentsTable"),
                frame("mapi::IMAPIFolder_Vtbl::new::GetContentsTable"),
                frame("mapi::IMAPIFolder::GetContentsTable"),
                frame(caller),
            ]
        };
        assert_ne!(
            compute("IMAPITable", &via("store::refresh")),
            compute("IMAPITable", &via("store::search"))
        );
    }

    #[test]
    fn signature_separates_kinds_and_functions() {
        let s = [frame("store::open")];
        assert_ne!(compute("IMAPITable", &s), compute("IMessage", &s));
        assert_ne!(
            compute("IMessage", &s),
            compute("IMessage", &[frame("store::other")])
        );
    }

    #[test]
    fn fnv_is_the_published_function() {
        // Published FNV-1a 64 test vector for "a".
        let mut h = Fnv::new();
        h.write(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn c_abi_frames_are_mapileak_but_crates_named_mapileak_something_are_not() {
        assert_eq!(origin("mapileak_object_new"), Origin::Library);
        assert_eq!(origin("mapileak_c::count_in"), Origin::Library);
        assert_eq!(origin("mapileak_samples::store::open"), Origin::Provider);
        let via = |top: &str| {
            compute(
                "IMAPITable",
                &[frame(top), frame("Folder::GetContentsTable()")],
            )
        };
        assert_eq!(via("mapileak_object_new"), via("mapileak_c::guard"));
        assert_ne!(
            via("mapileak_object_new"),
            via("mapileak_samples::store::open")
        );
    }

    #[test]
    fn origins() {
        assert_eq!(origin("<mapileak::RefCount>::add_ref"), Origin::Library);
        assert_eq!(origin("std::rt::lang_start"), Origin::Runtime);
        assert_eq!(origin("main"), Origin::Runtime);
        assert_eq!(origin("mainline::open"), Origin::Provider);
        assert_eq!(origin("leaky_store::main"), Origin::Provider);
        assert_eq!(
            origin("<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem"),
            Origin::Runtime
        );
        assert_eq!(
            origin("<alloc::raw_vec::RawVecInner>::try_allocate_in"),
            Origin::Runtime
        );
        assert_eq!(
            origin("<store::Folder_Impl as mapi::IMAPIFolder_Impl>::GetContentsTable"),
            Origin::Provider
        );
        assert_eq!(
            origin("<store::Store as core::ops::drop::Drop>::drop"),
            Origin::Provider
        );
        assert_eq!(
            origin(
                "<fn() -> core::result::Result<(), alloc::string::String> as core::ops::function::FnOnce<()>>::call_once"
            ),
            Origin::Runtime
        );
        assert_eq!(origin("<windows_core::ComObject<T>>::new"), Origin::Library);
    }

    #[test]
    fn mapileak_hpp_templates_are_not_the_providers_frames() {
        assert!(!counts_in_signature(
            "unsigned int mapileak::RefCount::Release<Table>(Table*)"
        ));
        assert!(counts_in_signature(
            "void Folder::Use<mapileak::RefCount>(mapileak::RefCount*)"
        ));
    }
}
