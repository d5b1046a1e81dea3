//! The MAPI buffer functions' C ABI, shared by both backends.

use std::ffi::c_void;

/// `MAPIAllocateBuffer`.
pub type AllocateBufferFn = unsafe extern "system" fn(cb: u32, buffer: *mut *mut c_void) -> i32;
/// `MAPIAllocateMore`.
pub type AllocateMoreFn =
    unsafe extern "system" fn(cb: u32, object: *mut c_void, buffer: *mut *mut c_void) -> i32;
/// `MAPIFreeBuffer`.
pub type FreeBufferFn = unsafe extern "system" fn(buffer: *mut c_void) -> u32;

/// `MAPI_E_NOT_ENOUGH_MEMORY` (`E_OUTOFMEMORY`).
pub const MAPI_E_NOT_ENOUGH_MEMORY: i32 = 0x8007_000E_u32 as i32;
/// `MAPI_E_INVALID_PARAMETER` (`E_INVALIDARG`).
pub const MAPI_E_INVALID_PARAMETER: i32 = 0x8007_0057_u32 as i32;
