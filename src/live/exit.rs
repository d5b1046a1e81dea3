//! The process-end report: an `atexit` hook, registered at the first logon
//! or provider init, that runs [`process_exit`](super::logoff::process_exit).
//!
//! It runs when `main` returns, on `std::process::exit`, and after a panic
//! that unwinds out of `main` (the runtime then exits with 101). It does not
//! run on `abort`, a panic with `panic = "abort"`, or a fatal signal.
//!
//! On Windows `std::process::exit` is `ExitProcess`, which runs no `atexit`
//! handler of an executable; what it does run, in every image, is the TLS
//! callbacks with `DLL_PROCESS_DETACH`. So the image mapileak is linked into
//! (the provider DLL, or a test's executable) gets one: the report is written
//! at `ExitProcess` and when a provider DLL is unloaded (`FreeLibrary`), once.
//! A C or C++ provider that links the static library calls `process_exit`
//! from `DllMain` itself.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

use super::once::Once;

static REGISTER: Once = Once::new("process hooks");
/// Claimed before `atexit` is called: a forked child that takes the
/// registration over from its parent's thread never registers twice.
static AT_EXIT: AtomicBool = AtomicBool::new(false);

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> c_int;
}

extern "C" fn at_exit() {
    super::context::set_exiting();
    // Nothing may unwind out of an `extern "C"` callback of the C runtime.
    let _ = std::panic::catch_unwind(super::logoff::process_exit);
}

/// Windows: a TLS callback of the image mapileak is linked into. The loader
/// calls it under its lock, after `ExitProcess` has ended the other threads,
/// so [`process_exit`](super::logoff::process_exit) waits on no lock without a limit.
#[cfg(windows)]
mod detach {
    use std::ffi::c_void;

    const DLL_PROCESS_DETACH: u32 = 0;

    // The loader runs every pointer in the `.CRT$XL*` sections (between
    // `.CRT$XLA` and `.CRT$XLZ`) as a TLS callback; `#[used]` keeps it in.
    #[used]
    #[unsafe(link_section = ".CRT$XLM")]
    pub(super) static ON_DETACH: unsafe extern "system" fn(*mut c_void, u32, *mut c_void) =
        on_detach;

    unsafe extern "system" fn on_detach(_image: *mut c_void, reason: u32, _reserved: *mut c_void) {
        if reason == DLL_PROCESS_DETACH && super::REGISTER.is_completed() {
            // The snapshot wait's callback is code of this image: cancel it
            // (without waiting) before the image goes.
            crate::backend::watch::stop();
            super::at_exit();
        }
    }

    unsafe extern "C" {
        /// The C runtime's TLS directory, which holds the callback array.
        #[link_name = "_tls_used"]
        static TLS_USED: u8;
    }

    /// Keeps the callback and the TLS directory in the image: the linker
    /// drops sections nothing refers to, `#[used]` or not (std does the same
    /// for its own callback).
    pub(super) fn keep() {
        // SAFETY: volatile reads of two statics the linker provides: a byte
        // of the TLS directory and the callback pointer, both readable.
        unsafe {
            std::ptr::from_ref(&TLS_USED).read_volatile();
            std::ptr::from_ref(&ON_DETACH).read_volatile();
        }
    }
}

pub(crate) fn register() {
    REGISTER.call_once(|| {
        crate::backend::fork::register();
        if !AT_EXIT.swap(true, Ordering::AcqRel) {
            // SAFETY: `atexit` is the C runtime's, with this signature on
            // every platform Rust's std supports; `at_exit` is a plain
            // `extern "C" fn` of static lifetime that never unwinds.
            let _ = unsafe { atexit(at_exit) };
        }
        #[cfg(windows)]
        detach::keep();
    });
}
