//! One name per function, whatever wrote the symbol.
//!
//! The same Rust function is named differently by the two symbol manglings
//! rustc has used (and by DWARF, which some platforms' symbolizers read):
//!
//! | legacy (`_ZN`, most stable toolchains) | v0 (`_R`, newer and Debian's) |
//! |---|---|
//! | `store::Folder::open` | `<store::Folder>::open` |
//! | `alloc::vec::Vec<T,A>::push` | `<alloc::vec::Vec<u8>>::push` |
//! | `store::open::{{closure}}` | `store::open::{closure#0}` |
//! | `store::open::h0123456789abcdef` | `store::open` (hash hidden) |
//! | `core::ptr::drop_in_place<store::Folder>` | `core::ptr::drop_in_place::<store::Folder>` |
//!
//! [`canonical`] maps both to one form, the legacy one without generic
//! arguments (`store::Folder::open`, `alloc::vec::Vec::push`,
//! `store::open::{{closure}}`, `core::ptr::drop_in_place`), so that a leak has
//! one signature on Linux and on Windows, with any toolchain, and a
//! `function:` suppression written against one run matches the other. C++
//! names (`Folder::GetContentsTable()`) pass through unchanged, but for an
//! import thunk's `__imp_` prefix.

/// The canonical form of a demangled function name (see the module docs).
/// Canonical names map to themselves.
pub fn canonical(function: &str) -> String {
    let f = function.strip_prefix("__imp_").unwrap_or(function);
    let f = crate::signature::strip_hash(f);
    if !f.contains(['<', '{', '[']) || is_cpp(f) {
        return f.to_owned();
    }
    let f = drop_disambiguators(f);
    let f = namespaces(&f);
    let f = drop_generic_args(&f);
    unwrap_inherent(&f)
}

/// An Itanium-demangled C++ name: a parameter list at the end, or an
/// anonymous namespace. Its template arguments are part of the name.
fn is_cpp(f: &str) -> bool {
    f.ends_with(')') || f.ends_with(") const") || f.contains("(anonymous namespace)")
}

/// v0's crate disambiguators, `store[1a2b3c4d]::open`, shown by `{:?}`.
fn drop_disambiguators(f: &str) -> String {
    let mut out = String::with_capacity(f.len());
    let mut rest = f;
    while let Some(i) = rest.find('[') {
        let tail = &rest[i + 1..];
        let hex = tail.bytes().take_while(u8::is_ascii_hexdigit).count();
        let is_tag = hex > 0
            && tail.as_bytes().get(hex) == Some(&b']')
            && rest[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..i]);
        if is_tag {
            rest = &tail[hex + 1..];
        } else {
            out.push('[');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// v0's `{closure#0}`, `{shim:vtable#0}` ... in legacy's spelling.
fn namespaces(f: &str) -> String {
    let mut out = String::with_capacity(f.len());
    let mut rest = f;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") {
            // Already legacy: `{{closure}}`.
            let end = tail.find("}}").map_or(tail.len(), |e| e + 2);
            out.push_str(&tail[..end]);
            rest = &tail[end..];
            continue;
        }
        let Some(end) = tail.find('}') else {
            out.push_str(tail);
            return out;
        };
        let inner = &tail[1..end];
        let name = inner.split('#').next().unwrap_or(inner);
        if name.starts_with("shim:") && out.ends_with("::") {
            // Legacy writes shims straight after the name: `f{{vtable.shim}}`.
            out.truncate(out.len() - 2);
        }
        out.push_str(match name {
            "closure" => "{{closure}}",
            "constant" => "{{constant}}",
            "shim:vtable" => "{{vtable.shim}}",
            "shim:reify" => "{{reify.shim}}",
            _ => &tail[..=end],
        });
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Drops every generic argument list: `Vec<T,A>` and `Vec<u8>` are both
/// `Vec`, `f::<u8>` is `f`. Qualified paths (`<A as B>::f`) keep their
/// brackets: theirs open where a type starts, not after a name.
fn drop_generic_args(f: &str) -> String {
    let bytes = f.as_bytes();
    let mut out = String::with_capacity(f.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let after_name = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let turbofish = c == b'<' && f[..i].ends_with("::") && !f[i..].starts_with("<impl ");
        if c == b'<' && (after_name || turbofish) {
            if turbofish {
                out.truncate(out.len() - 2);
            }
            i = skip_angle(bytes, i);
            continue;
        }
        let ch = f[i..].chars().next().unwrap_or('?');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The index after the `>` that closes the `<` at `open` (`->` is not one).
fn skip_angle(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'<' => depth += 1,
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b'>' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

/// `<store::Folder>::open` (v0's inherent method) is `store::Folder::open`;
/// `<A as B>::f`, `<[T]>::f` and `<&A>::f` stay.
fn unwrap_inherent(f: &str) -> String {
    if !f.starts_with('<') {
        return f.to_owned();
    }
    let end = skip_angle(f.as_bytes(), 0);
    let (head, tail) = (&f[1..end.saturating_sub(1)], &f[end..]);
    if head.is_empty() || head.contains(['<', '(', '[', '&', '*', ' ']) || !tail.starts_with("::") {
        return f.to_owned();
    }
    format!("{head}{tail}")
}

/// Frames of the capture machinery itself: mapileak's functions (the C
/// ABI's exports and crate, and the C++ wrappers in namespace `mapileak`
/// too), the unwinder, the allocation plumbing between the caller and the
/// hook, and the panic guard around each C ABI call.
pub fn is_capture_frame(function: &str) -> bool {
    let f = function.trim_start_matches('<');
    f.starts_with("backtrace::")
        || (f.starts_with("mapileak::") && !f.contains("::tests::"))
        // A C++ function template's name starts with its return type
        // (`unsigned int mapileak::RefCount::Release<Table>(Table*)`).
        || f.split('(').next().is_some_and(|head| {
            head.split(' ')
                .skip(1)
                .any(|w| w.starts_with("mapileak::"))
        })
        || f.starts_with("mapileak_c::")
        // The C ABI's exports (`mapileak_object_new`): C names, no path.
        || (f.starts_with("mapileak_") && !f.contains("::"))
        || f.starts_with("__rust")
        || f.starts_with("__rdl_")
        || f.starts_with("alloc::alloc::")
        || f.starts_with("std::panicking::")
        || f.starts_with("std::panic::catch_unwind")
        || f.starts_with("core::panic::unwind_safe::")
        // A C++ provider's operator new and delete, replaced by
        // mapileak.hpp's macro.
        || f.starts_with("operator new")
        || f.starts_with("operator delete")
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn legacy_and_v0_names_meet() {
        let pairs = [
            (
                "mapileak_samples::life::LogonCore::logon",
                "<mapileak_samples::life::LogonCore>::logon",
            ),
            ("alloc::vec::Vec<T,A>::push", "<alloc::vec::Vec<u8>>::push"),
            ("store::open::{{closure}}", "store::open::{closure#0}"),
            ("store::open::h0123456789abcdef", "store::open"),
            (
                "core::ptr::drop_in_place<mapileak::lifecycle::Support<store::Sup>>",
                "core::ptr::drop_in_place::<mapileak::lifecycle::Support<store::Sup>>",
            ),
            (
                "<alloc::vec::Vec<T,A> as core::ops::drop::Drop>::drop",
                "<alloc::vec::Vec<u8> as core::ops::drop::Drop>::drop",
            ),
            (
                "<F as core::ops::function::FnOnce<()>>::call_once{{vtable.shim}}",
                "<F as core::ops::function::FnOnce<()>>::call_once::{shim:vtable#0}",
            ),
            ("store[5f3a9c1d]::open", "store::open"),
            ("store_[5f3a9c1d]::open", "store_::open"),
            ("store::f::{{constant}}", "store::f::{constant#0}"),
            ("store::f{{reify.shim}}", "store::f::{shim:reify#0}"),
            (
                "<store::Table as windows_core::com_object::ComObjectInner>::into_object",
                "<store::Table as windows_core::com_object::ComObjectInner>::into_object",
            ),
        ];
        for (legacy, v0) in pairs {
            let (a, b) = (canonical(legacy), canonical(v0));
            assert_eq!(a, b, "{legacy} / {v0}");
            assert_eq!(canonical(&a), a, "canonical names map to themselves");
        }
        assert_eq!(
            canonical("<mapileak_samples::life::LogonCore>::logon"),
            "mapileak_samples::life::LogonCore::logon"
        );
        assert_eq!(
            canonical("alloc::vec::Vec<T,A>::push"),
            "alloc::vec::Vec::push"
        );
        for (name, expected) in [
            (
                "store::open::{{closure}}::{{closure}}",
                "store::open::{{closure}}::{{closure}}",
            ),
            (
                "store::open::{closure#1}::inner",
                "store::open::{{closure}}::inner",
            ),
            // An empty legacy namespace, kept as it is.
            ("store::f::{{}}", "store::f::{{}}"),
            // A name ending in `_` before its generics.
            ("store::Row_<u8>::new", "store::Row_::new"),
            // `->` inside generics does not close them.
            ("store::call<fn() -> u8>::run", "store::call::run"),
            // Unclosed generics: dropped to the end, no panic.
            ("store::Vec<u8", "store::Vec"),
        ] {
            assert_eq!(canonical(name), expected, "{name}");
        }
    }

    /// Brackets that are not v0's crate disambiguators stay.
    #[test]
    fn only_disambiguators_are_dropped() {
        for name in [
            "store::f[abc",
            "store::f[]",
            "store::f[xyz]",
            "<[12]>::len",
            "core::slice::<impl [T]>::sort",
        ] {
            assert_eq!(canonical(name), name);
        }
    }

    #[test]
    fn other_names_pass_through() {
        for name in [
            "Folder::GetContentsTable()",
            "Folder::QueryInterface(char const*, void**)",
            "(anonymous namespace)::Table::Table()",
            "operator new(unsigned long)",
            "main",
            "?? (0x1234)",
            "std::vector<int>::push_back(int const&)",
            "std::vector<int>::size() const",
            "core::slice::<impl [T]>::sort",
            "<[T]>::sort",
            "<&store::Folder as core::fmt::Debug>::fmt",
        ] {
            assert_eq!(canonical(name), name);
        }
        assert_eq!(canonical("__imp_malloc"), "malloc");
    }
}
