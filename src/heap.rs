//! The heap's public face, one definition in every build:
//! [`TrackingAllocator`], [`HeapStats`], [`heap_stats`], [`track_alloc`],
//! [`track_free`], and the C heap's findings. The hook behind them (the
//! backend's `heap` and `alloc`: counters, stacks, the live table) is live
//! only with the instrumentation; without it the allocator forwards every
//! call and the rest answers zero.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

use mapileak_reports::Rule;

use crate::backend::{self, heap as imp};

/// Counts every block; attributes blocks allocated in a session's scope.
/// Without the instrumentation it passes every call straight to its inner
/// allocator (and is zero-sized over `System`).
///
/// ```
/// #[global_allocator]
/// static ALLOC: mapileak::TrackingAllocator = mapileak::TrackingAllocator::system();
///
/// fn main() {
///     let session = mapileak::Session::logon(mapileak::ProviderKind::Transport, "SMTP");
///     {
///         let _scope = session.enter();
///         std::mem::forget(vec![0u8; 64]); // attributed to the session
///     }
///     # #[cfg(debug_assertions)]
///     assert_eq!(session.transport_logoff().report.summary.heap_bytes, 64);
/// }
/// ```
#[derive(Debug)]
pub struct TrackingAllocator<A = System> {
    inner: A,
    /// Made by [`TrackingAllocator::system`], so `A` is `System`: every call
    /// goes to one function compiled in mapileak, allocation included (in a
    /// provider's debug build the generic path, and `System`'s own, run
    /// unoptimized in the provider's crate).
    system: imp::SystemFlag,
}

impl TrackingAllocator<System> {
    /// Wraps the system allocator.
    pub const fn system() -> Self {
        TrackingAllocator {
            inner: System,
            system: imp::SYSTEM,
        }
    }
}

impl<A> TrackingAllocator<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        TrackingAllocator {
            inner,
            system: imp::NOT_SYSTEM,
        }
    }
}

/// Process-wide heap counters, from the first allocation on.
/// All zero without the instrumentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeapStats {
    /// Blocks allocated (`alloc`, `alloc_zeroed`; a `realloc` counts as neither).
    pub allocs: u64,
    /// Blocks freed.
    pub frees: u64,
    /// Bytes currently allocated.
    pub live_bytes: u64,
    /// Live blocks attributed to a session.
    pub attributed_blocks: u64,
    /// Attributed blocks the live table had no room for (not reported).
    pub untracked: u64,
    /// Blocks the live table holds at most (`MAPILEAK_LIVE_BLOCKS`); its
    /// memory is reserved at the first attributed block, not before.
    pub table_capacity: u64,
}

/// The counters now. (Counting the attributed blocks visits the live table.)
pub fn heap_stats() -> HeapStats {
    let [
        allocs,
        frees,
        live_bytes,
        attributed_blocks,
        untracked,
        table_capacity,
    ] = imp::stats();
    HeapStats {
        allocs,
        frees,
        live_bytes,
        attributed_blocks,
        untracked,
        table_capacity,
    }
}

/// Records a block from an allocator mapileak does not wrap — a C or C++
/// heap (the C ABI's `mapileak_malloc`, a replaced `operator new`), a
/// provider's own arena: counted like a global-allocator block and, made in
/// a session's scope, attributed to it with the caller's stack, so Logoff
/// reports it if it is still alive. `ptr` is only an address here (null is
/// ignored); pair each call with [`track_free`] before the block is reused.
/// Nothing, without the instrumentation.
#[inline]
pub fn track_alloc(ptr: *const u8, size: usize) {
    if !ptr.is_null() {
        imp::on_alloc(ptr.cast_mut(), size);
    }
}

/// The block at `ptr`, recorded by [`track_alloc`] with `size` bytes, is
/// being freed (null is ignored).
#[inline]
pub fn track_free(ptr: *const u8, size: usize) {
    if !ptr.is_null() {
        imp::on_free(ptr.cast_mut(), size);
    }
}

/// For the C ABI (hidden): an allocator with locks of its own has the
/// `fork` handlers take them too (Unix), so a child forked while another
/// thread held one does not wait for it for good. `prepare` runs before
/// mapileak's own locks are taken, `release` after they are released, in
/// parent and child; only the first pair is kept. Registers the handlers.
#[doc(hidden)]
pub fn hold_across_fork(prepare: fn(), release: fn()) {
    backend::fork::hold_also(prepare, release);
}

/// [`track_alloc`] for an allocator that keeps a word with each block (a
/// header or a trailer, as the C ABI's heap does): the block's record is
/// kept by index, and the index — 0 when nothing was recorded — is what
/// the caller keeps with the block and hands to [`track_free_indexed`],
/// which then finds the record without a lookup. Indexes are reused, the
/// one freed last first: records in use stay few lines of memory.
#[inline]
pub fn track_alloc_indexed(ptr: *const u8, size: usize) -> u32 {
    if ptr.is_null() {
        return 0;
    }
    imp::on_alloc_indexed(ptr.cast_mut(), size)
}

/// The block at `ptr`, recorded by [`track_alloc_indexed`] with `size`
/// bytes at `index`, is being freed (null is ignored). An index that is
/// not `ptr`'s record is ignored.
#[inline]
pub fn track_free_indexed(ptr: *const u8, size: usize, index: u32) {
    if !ptr.is_null() {
        imp::on_free_indexed(ptr.cast_mut(), size, index);
    }
}

/// A heap block of `size` bytes that `allocated_with` made was freed with
/// `freed_with` (a C or C++ provider's heap: a `new[]` block freed with
/// `free`, a `malloc` block with `delete`): an `alloc-dealloc-mismatch`
/// finding at the calling stack, for the thread's current session. The
/// caller frees the block as its allocator requires. Not for an allocator
/// hook: it captures a stack and records the finding.
#[inline(never)]
pub fn dealloc_mismatch(size: usize, allocated_with: &str, freed_with: &str) {
    imp::finding(Rule::AllocDeallocMismatch, || {
        format!(
            "{freed_with} on a {size}-byte block from {allocated_with}: the block was freed as its allocator requires"
        )
    });
}

/// A heap block of `size` bytes was freed a second time with `freed_with`
/// (the caller did not pass it on): a `heap-double-free` finding at the
/// calling stack, as [`dealloc_mismatch`].
#[inline(never)]
pub fn double_free(size: usize, freed_with: &str) {
    imp::finding(Rule::HeapDoubleFree, || {
        format!("{freed_with} on a {size}-byte block freed already (not passed on)")
    });
}

/// `freed_with` got `address`, which cannot be a heap block (the caller did
/// not pass it on): a `heap-bad-free` finding at the calling stack, as
/// [`dealloc_mismatch`].
#[inline(never)]
pub fn bad_free(address: usize, freed_with: &str) {
    imp::finding(Rule::HeapBadFree, || {
        format!("{freed_with}({address:#x}): not the address of a heap block (not passed on)")
    });
}

// SAFETY: every method forwards to `inner` with the caller's arguments
// unchanged and returns its result; the bookkeeping around the calls never
// touches the blocks' memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackingAllocator<A> {
    // These methods are generic, so a provider's debug build compiles them
    // unoptimized in its own crate: each calls mapileak's (optimized)
    // functions directly, one call deep, and for `System` hands the whole
    // call to one of them.
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if imp::via_system(self.system) {
            // SAFETY: the caller's guarantees, for System (`system()` made it).
            return unsafe { imp::system_alloc(layout) };
        }
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            imp::on_alloc(p, layout.size());
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            imp::on_alloc(p, layout.size());
        }
        p
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if imp::via_system(self.system) {
            // SAFETY: the caller's guarantees, for System.
            return unsafe { imp::system_dealloc(ptr, layout) };
        }
        // Forget the block before it can be handed out again.
        imp::on_free(ptr, layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Take the record out first: once `inner.realloc` returns, the old
        // address may already belong to another thread's new block.
        let origin = imp::before_realloc(ptr);
        // SAFETY: forwarded with the caller's guarantees.
        let q = unsafe { self.inner.realloc(ptr, layout, new_size) };
        imp::after_realloc(ptr, q, layout.size(), new_size, origin);
        q
    }
}

// The promise of release builds.
const _: () = assert!(backend::LIVE || size_of::<TrackingAllocator>() == 0);
