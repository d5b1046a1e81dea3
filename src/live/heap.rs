//! The live allocator path behind `crate::heap`: every call goes through
//! the hook (`alloc`); blocks of `System` through one function compiled
//! here, so a provider's unoptimized debug build does not slow it.

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

/// Whether the allocator hands its calls to [`system_alloc`] and
/// [`system_dealloc`] (it wraps `System`).
#[inline(always)]
pub(crate) fn via_system(flag: SystemFlag) -> bool {
    flag
}

pub(crate) use alloc::after_realloc;
pub(crate) use alloc::before_realloc;
pub(crate) use alloc::system::{alloc as system_alloc, dealloc as system_dealloc};
pub(crate) use alloc::{on_alloc, on_alloc_indexed, on_free, on_free_indexed, stats};

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
