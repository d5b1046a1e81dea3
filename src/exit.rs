//! The process-end report: an `atexit` hook, registered at the first logon
//! or provider init, that runs [`process_exit`](crate::process_exit).
//!
//! It runs when `main` returns, on `std::process::exit`, and after a panic
//! that unwinds out of `main` (the runtime then exits with 101). It does not
//! run on `abort`, a panic with `panic = "abort"`, or a fatal signal. A
//! provider DLL on Windows should call `process_exit` from its
//! `DLL_PROCESS_DETACH` handling, where the C runtime's `atexit` of a DLL
//! also runs.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::sync::Once;

static REGISTER: Once = Once::new();

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> c_int;
}

extern "C" fn at_exit() {
    // Nothing may unwind out of an `extern "C"` callback of the C runtime.
    let _ = std::panic::catch_unwind(crate::process_exit);
}

pub(crate) fn register() {
    REGISTER.call_once(|| {
        // SAFETY: `atexit` is the C runtime's, with this signature on every
        // platform Rust's std supports; `at_exit` is a plain `extern "C" fn`
        // of static lifetime that never unwinds.
        let _ = unsafe { atexit(at_exit) };
    });
}
