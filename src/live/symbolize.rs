//! Symbol lookup, at report time only: the interned stacks (`stack`)
//! turned into report stacks, each address resolved once. Unlike capture,
//! this allocates, reads debug info and takes the unwinder's lock, so the
//! allocator hook never comes here. Process end and `fork` know when a
//! thread is inside it (`symbolizer_free_within`, `hold_for_fork`).

use std::collections::HashMap;

use mapileak_reports::names::canonical;
use mapileak_reports::{Frame, Stack, StackId};

use super::stack::frames;

/// Turns interned stacks into report stacks, resolving each address once.
#[derive(Default)]
pub(crate) struct Symbolizer {
    cache: HashMap<usize, Vec<Frame>>,
}

impl Symbolizer {
    /// The report form of stack `id`: inlined frames expanded, mapileak's own
    /// frames (the capture machinery, the allocator hook) dropped from the top.
    pub(crate) fn stack(&mut self, id: StackId) -> Stack {
        let mut out = Vec::new();
        for addr in frames(id) {
            let resolved = self.cache.entry(addr).or_insert_with(|| resolve(addr));
            out.extend(resolved.iter().cloned());
        }
        let own = out
            .iter()
            .take_while(|f| is_capture_frame(&f.function))
            .count();
        out.drain(..own);
        Stack::new(id, out)
    }
}

/// Threads inside the symbolizer (`backtrace::resolve`, which holds its own
/// lock): process end waits for none of them beyond a moment.
static RESOLVING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether no thread is inside the symbolizer, waiting up to `wait` for
/// the ones that are: at process end a thread ended there holds its lock
/// for good.
pub(crate) fn symbolizer_free_within(wait: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    while RESOLVING.load(std::sync::atomic::Ordering::Acquire) != 0 {
        if start.elapsed() >= wait {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    true
}

/// Whether naming frames would first load a library: with MSVC the
/// symbolizer is dbghelp.dll, loaded on first use, and process end may run
/// under the loader lock (a DLL's detach), where loading one can deadlock.
/// (mingw builds read DWARF from the image file: nothing is loaded.)
#[cfg(all(windows, target_env = "msvc"))]
#[allow(unsafe_code)]
pub(crate) fn symbolizer_would_load_library() -> bool {
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn GetModuleHandleW(name: *const u16) -> *mut std::ffi::c_void;
    }
    let name: Vec<u16> = "dbghelp.dll\0".encode_utf16().collect();
    // SAFETY: a NUL-terminated UTF-16 name; the call only reads it and
    // takes no reference on the module.
    unsafe { GetModuleHandleW(name.as_ptr()) }.is_null()
}

/// Whether naming frames would first load a library: never here.
#[cfg(not(all(windows, target_env = "msvc")))]
pub(crate) fn symbolizer_would_load_library() -> bool {
    false
}

/// Runs `f` counted as inside the symbolizer (fault injection: see `testing`).
#[cfg(feature = "test-hooks")]
pub(crate) fn as_if_resolving(f: impl FnOnce()) {
    let _resolving = Resolving::enter();
    f();
}

/// Counts a thread in the symbolizer while it lives.
struct Resolving;

impl Resolving {
    fn enter() -> Resolving {
        RESOLVING.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Resolving
    }
}

impl Drop for Resolving {
    fn drop(&mut self) {
        RESOLVING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Held (shared) while a thread symbolizes: `fork` takes it exclusively,
/// so no thread is inside `backtrace::resolve` (and its own lock) at fork.
static SYMBOLIZER: parking_lot::RwLock<()> = parking_lot::RwLock::new(());

#[cfg(unix)]
thread_local! {
    static HELD_FOR_FORK: std::cell::RefCell<Option<parking_lot::RwLockWriteGuard<'static, ()>>> =
        const { std::cell::RefCell::new(None) };
}

/// Takes the symbolizer (waiting for the threads inside it) and keeps it on this thread (before `fork`).
#[cfg(unix)]
pub(crate) fn hold_for_fork() {
    let held = SYMBOLIZER.write();
    let _ = HELD_FOR_FORK.try_with(|h| *h.borrow_mut() = Some(held));
}

/// Releases what `hold_for_fork` took (after `fork`).
#[cfg(unix)]
pub(crate) fn release_after_fork() {
    // The guards drop here, releasing the locks.
    drop(HELD_FOR_FORK.try_with(|h| h.borrow_mut().take()));
}

fn resolve(addr: usize) -> Vec<Frame> {
    let _gate = SYMBOLIZER.read();
    let _resolving = Resolving::enter();
    let mut frames = Vec::new();
    backtrace::resolve(addr as *mut std::ffi::c_void, |symbol| {
        // One name per function on every platform and toolchain: legacy
        // and v0 manglings (and DWARF's names) meet in one form.
        let function = symbol
            .name()
            .map(|n| canonical(&undecorated(format!("{n:#}"))))
            .unwrap_or_else(|| "??".to_owned());
        frames.push(Frame::new(
            function,
            symbol.filename().map(|p| p.display().to_string()),
            symbol.lineno(),
        ));
    });
    // The function itself (the last of its inlined frames): a C++ function
    // the debug info names without its class or namespace (an anonymous
    // namespace's, a static one) gets the symbol table's fuller name.
    if let Some(outer) = frames.last_mut()
        && is_cpp_source(outer.file.as_deref())
        && !outer.function.contains("::")
        && let Some(full) = symtab::name_at(addr)
        && (full.starts_with(&format!("{}(", outer.function))
            || full.contains(&format!("::{}(", outer.function)))
    {
        outer.function = full;
    }
    if frames.is_empty() {
        frames.push(Frame::new(format!("?? ({addr:#x})"), None, None));
    }
    frames
}

/// A name as the source wrote it. On 32-bit Windows a symbol-table name
/// (what a frame without debug info gets, such as the optimized C ABI's) is
/// decorated: `_name` (cdecl), `_name@8` (stdcall), `@name@8` (fastcall),
/// and a mangled C++ name has one underscore more (`__Z...`). Elsewhere
/// names are as written.
#[cfg(all(windows, target_arch = "x86"))]
fn undecorated(name: String) -> String {
    /// `name@8` without its `@8` (a __stdcall function's argument bytes).
    fn stdcall(n: &str) -> &str {
        match n.rsplit_once('@') {
            Some((head, bytes))
                if !bytes.is_empty() && bytes.bytes().all(|c| c.is_ascii_digit()) =>
            {
                head
            }
            _ => n,
        }
    }
    // A C++ method MAPI calls is __stdcall too: `__ZN...@12`.
    if let Some(mangled) = name.strip_prefix('_').filter(|m| m.starts_with("_Z")) {
        let mangled = stdcall(mangled);
        let demangled = format!("{:#}", backtrace::SymbolName::new(mangled.as_bytes()));
        return if demangled == mangled {
            name
        } else {
            demangled
        };
    }
    let bare = match name.as_bytes().first() {
        Some(b'_' | b'@') => stdcall(&name[1..]),
        _ => return name,
    };
    let plain = !bare.is_empty() && bare.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if plain { bare.to_owned() } else { name }
}

#[cfg(not(all(windows, target_arch = "x86")))]
fn undecorated(name: String) -> String {
    name
}

/// A C++ source or header file, by its extension.
fn is_cpp_source(file: Option<&str>) -> bool {
    file.and_then(|f| f.rsplit_once('.'))
        .is_some_and(|(_, ext)| {
            matches!(ext, "cpp" | "cc" | "cxx" | "C" | "hpp" | "hh" | "hxx" | "h")
        })
}

mod symtab;

/// Frames of the capture machinery itself: mapileak's functions (the C
/// ABI's exports and crate, and the C++ wrappers in namespace `mapileak`
/// too), the unwinder, the allocation plumbing between the caller and the
/// hook, and the panic guard around each C ABI call.
fn is_capture_frame(function: &str) -> bool {
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
