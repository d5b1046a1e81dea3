//! Fuller C++ names from the symbol table, at report time.
//!
//! For a function in an anonymous namespace (or a `static` one), the debug
//! info GCC writes has no linkage name: the symbolizer then knows it only
//! as `QueryInterface`, not `(anonymous namespace)::Folder::QueryInterface(char
//! const*, void**)`, and signatures and `function:` suppressions lose the
//! class. The image's symbol table still has the mangled name. This module
//! finds the module holding an address (`dladdr` on Unix,
//! `GetModuleHandleExW` on Windows), reads its symbol table once (the
//! `object` crate, which the symbolizer already uses) and demangles the
//! symbol containing the address.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use object::{Object, ObjectKind, ObjectSymbol};
use parking_lot::Mutex;

/// One module's function symbols: `(address, size, demangled name)`, by
/// address, in the module's own address space.
struct Symbols {
    /// Added to a runtime address minus the load base: the module's own
    /// addresses (0 for an ELF executable, whose symbols are absolute).
    rebase: Option<u64>,
    sorted: Vec<(u64, u64, String)>,
}

/// Modules read so far, by path: read once per process.
fn cache() -> &'static Mutex<HashMap<PathBuf, Arc<Symbols>>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<Symbols>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The demangled symbol-table name of the function holding `addr` (a return
/// address: the call is just before it), if one is found.
pub(super) fn name_at(addr: usize) -> Option<String> {
    let addr = addr.checked_sub(1)? as u64;
    let (path, base) = os::module_of(addr as usize)?;
    let symbols = {
        let mut cache = cache().lock();
        match cache.get(&path) {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(read(&path)?);
                cache.insert(path, s.clone());
                s
            }
        }
    };
    let key = match symbols.rebase {
        None => addr,
        Some(r) => addr.checked_sub(base as u64)?.checked_add(r)?,
    };
    let i = symbols
        .sorted
        .partition_point(|&(a, _, _)| a <= key)
        .checked_sub(1)?;
    let (start, size, name) = &symbols.sorted[i];
    (size == &0 || key < start + size).then(|| name.clone())
}

fn read(path: &std::path::Path) -> Option<Symbols> {
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let rebase = match (file.format(), file.kind()) {
        (object::BinaryFormat::Elf, ObjectKind::Executable) => None,
        _ => Some(file.relative_address_base()),
    };
    let mut sorted: Vec<(u64, u64, String)> = file
        .symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
        .filter_map(|s| {
            let raw = s.name_bytes().ok()?;
            let name = super::undecorated(format!("{:#}", backtrace::SymbolName::new(raw)));
            Some((s.address(), s.size(), name))
        })
        .collect();
    sorted.sort_by_key(|&(a, _, _)| a);
    Some(Symbols { rebase, sorted })
}

#[cfg(unix)]
mod os {
    use std::ffi::CStr;
    use std::path::PathBuf;

    /// The file of the module holding `addr`, and its load base.
    pub(super) fn module_of(addr: usize) -> Option<(PathBuf, usize)> {
        let mut info: libc::Dl_info = unsafe_zeroed();
        // SAFETY: dladdr only reads `addr` as a number and fills `info`.
        if unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } == 0 {
            return None;
        }
        let base = info.dli_fbase as usize;
        let named = (!info.dli_fname.is_null())
            // SAFETY: a non-null dli_fname is a NUL-terminated string the
            // loader owns for as long as the module is loaded.
            .then(|| {
                unsafe { CStr::from_ptr(info.dli_fname) }
                    .to_string_lossy()
                    .into_owned()
            })
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.exists());
        // The main program is often named as it was started (not a path).
        let path = named.or_else(|| std::env::current_exe().ok())?;
        Some((path, base))
    }

    fn unsafe_zeroed() -> libc::Dl_info {
        // SAFETY: Dl_info is plain data (pointers): all-zero is valid.
        unsafe { std::mem::zeroed() }
    }
}

#[cfg(windows)]
mod os {
    use std::ffi::c_void;
    use std::os::windows::ffi::OsStringExt;
    use std::path::PathBuf;

    const FROM_ADDRESS: u32 = 0x4;
    const UNCHANGED_REFCOUNT: u32 = 0x2;

    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn GetModuleHandleExW(flags: u32, name: *const c_void, module: *mut *mut c_void) -> i32;
        fn GetModuleFileNameW(module: *mut c_void, name: *mut u16, size: u32) -> u32;
    }

    /// The file of the module holding `addr`, and its load base.
    pub(super) fn module_of(addr: usize) -> Option<(PathBuf, usize)> {
        let mut module = std::ptr::null_mut();
        // SAFETY: FROM_ADDRESS reads `addr` as an address inside a module;
        // UNCHANGED_REFCOUNT takes no reference to release.
        let ok = unsafe {
            GetModuleHandleExW(
                FROM_ADDRESS | UNCHANGED_REFCOUNT,
                addr as *const c_void,
                &mut module,
            )
        };
        if ok == 0 || module.is_null() {
            return None;
        }
        let mut buf = vec![0u16; 1024];
        // SAFETY: `buf` has room for `buf.len()` UTF-16 units.
        let n = unsafe { GetModuleFileNameW(module, buf.as_mut_ptr(), buf.len() as u32) } as usize;
        if n == 0 || n >= buf.len() {
            return None;
        }
        let path = PathBuf::from(std::ffi::OsString::from_wide(&buf[..n]));
        // An HMODULE is the module's load address.
        Some((path, module as usize))
    }
}

#[cfg(not(any(unix, windows)))]
mod os {
    pub(super) fn module_of(_addr: usize) -> Option<(std::path::PathBuf, usize)> {
        None
    }
}
