//! Which module holds an address, and where it was loaded: `dladdr` on
//! Unix, `GetModuleHandleExW` on Windows. The module's file is then read
//! by `mapileak_reports::symbols`.
#![allow(unsafe_code)]

use std::path::PathBuf;

/// The file of the module holding `addr` (a return address: the call is
/// just before it), and its load address.
pub(super) fn module_of(addr: usize) -> Option<(PathBuf, usize)> {
    os::module_of(addr.checked_sub(1)?)
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
