//! The live allocator path behind `crate::heap`: every call goes through
//! the hook (`alloc`); blocks of `System` through one function compiled
//! here, so a provider's unoptimized debug build does not slow it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};

use mapileak_reports::Rule;

use crate::settings::Mode;

use super::env;

use super::alloc;
use super::context::{self, Quiet};
use super::finding::PendingFinding;
use super::registry;

/// Whether a `TrackingAllocator` wraps `System` (made by `system()`).
pub(crate) type SystemFlag = bool;
pub(crate) const SYSTEM: SystemFlag = true;
pub(crate) const NOT_SYSTEM: SystemFlag = false;

/// # Safety
///
/// `GlobalAlloc::alloc`'s contract; `system` only when `inner` is `System`.
#[inline]
pub(crate) unsafe fn alloc<A: GlobalAlloc>(inner: &A, system: bool, layout: Layout) -> *mut u8 {
    if system {
        // SAFETY: the caller's guarantees, for System.
        return unsafe { alloc::system::alloc(layout) };
    }
    // SAFETY: forwarded with the caller's guarantees.
    let p = unsafe { inner.alloc(layout) };
    if !p.is_null() {
        alloc::on_alloc(p, layout.size());
    }
    p
}

/// # Safety
///
/// `GlobalAlloc::alloc_zeroed`'s contract.
#[inline]
pub(crate) unsafe fn alloc_zeroed<A: GlobalAlloc>(inner: &A, layout: Layout) -> *mut u8 {
    // SAFETY: forwarded with the caller's guarantees.
    let p = unsafe { inner.alloc_zeroed(layout) };
    if !p.is_null() {
        alloc::on_alloc(p, layout.size());
    }
    p
}

/// # Safety
///
/// `GlobalAlloc::dealloc`'s contract; `system` only when `inner` is `System`.
#[inline]
pub(crate) unsafe fn dealloc<A: GlobalAlloc>(
    inner: &A,
    system: bool,
    ptr: *mut u8,
    layout: Layout,
) {
    if system {
        // SAFETY: the caller's guarantees, for System.
        return unsafe { alloc::system::dealloc(ptr, layout) };
    }
    // Forget the block before it can be handed out again.
    alloc::on_free(ptr, layout.size());
    // SAFETY: forwarded with the caller's guarantees.
    unsafe { inner.dealloc(ptr, layout) }
}

/// # Safety
///
/// `GlobalAlloc::realloc`'s contract.
#[inline]
pub(crate) unsafe fn realloc<A: GlobalAlloc>(
    inner: &A,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    // Take the record out first: once `inner.realloc` returns, the old
    // address may already belong to another thread's new block.
    let origin = alloc::before_realloc(ptr);
    // SAFETY: forwarded with the caller's guarantees.
    let q = unsafe { inner.realloc(ptr, layout, new_size) };
    alloc::after_realloc(ptr, q, layout.size(), new_size, origin);
    q
}

pub(crate) use alloc::{on_alloc, on_free, stats};

/// A C heap finding (`rule`) at the calling stack, for the thread's
/// current session.
pub(crate) fn finding(rule: Rule, message: impl FnOnce() -> String) {
    let _quiet = Quiet::new();
    if env::mode() == Mode::Off {
        return;
    }
    let stack = super::stack::capture();
    let finding = PendingFinding::new(rule, message(), stack);
    registry::add_finding(context::current_id(), finding);
}
