//! [`TrackingAllocator`]: a `GlobalAlloc` that counts every block and
//! attributes the blocks a logon allocates to its session, with their
//! allocation stack, so Logoff reports the ones still alive.
//!
//! ```text
//!  alloc ──► inner.alloc ──► counters ──► session scope current? ──no──► done
//!                                          │ yes (and not mapileak's own code,
//!                                          │      and not re-entered)
//!                                          ▼
//!                             capture stack (frame pointers) ─► intern ─► live table
//!  dealloc ─► live table remove (if anything is attributed) ─► inner.dealloc
//! ```
//!
//! Inside the hook nothing allocates, nothing calls `tracing`, and the only
//! locks are per-shard spin locks (an atomic flag; no parking, so no
//! allocation when a thread waits). A thread-local re-entrancy guard, reset
//! on unwind, passes any allocation made while the hook runs straight
//! through. The live table stores each block's address inverted, so leak
//! checkers (valgrind, LeakSanitizer) do not see it as a reference.
//!
//! `realloc` keeps a block's origin: the moved block keeps the session and
//! stack of its first allocation, with its new size — the site that created
//! a growing `Vec` is the one to blame, not the push that grew it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::{quiet, session, stack};

/// Counts every block; attributes blocks allocated in a session's scope.
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
pub struct TrackingAllocator<A = System> {
    inner: A,
}

impl TrackingAllocator<System> {
    /// Wraps the system allocator.
    pub const fn system() -> Self {
        TrackingAllocator { inner: System }
    }
}

impl<A> TrackingAllocator<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        TrackingAllocator { inner }
    }
}

/// Process-wide heap counters, from the first allocation on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// The counters live in per-thread slots, updated with plain loads and
/// stores (no locked instruction on the hot path) and summed when read.
/// Threads beyond [`SLOTS`] share the last slot, updated atomically.
mod counters {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    pub(super) const SLOTS: usize = 256;

    pub(super) struct Slot {
        pub allocs: AtomicU64,
        pub frees: AtomicU64,
        /// Bytes allocated minus bytes freed on this thread (wrapping).
        pub bytes: AtomicU64,
    }

    pub(super) static SLOT: [Slot; SLOTS] = [const {
        Slot {
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }; SLOTS];
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    pub(super) static UNTRACKED: AtomicU64 = AtomicU64::new(0);

    thread_local! {
        /// This thread's slot + 1; 0 until its first allocation.
        static MINE: Cell<usize> = const { Cell::new(0) };
    }

    #[inline(always)]
    fn slot() -> (usize, bool) {
        let i = MINE.try_with(|m| {
            let i = m.get();
            if i != 0 {
                return i - 1;
            }
            let i = NEXT.fetch_add(1, Ordering::Relaxed).min(SLOTS - 1);
            m.set(i + 1);
            i
        });
        match i {
            Ok(i) => (i, i == SLOTS - 1),
            // Thread-local storage is gone (thread exit): the shared slot.
            Err(_) => (SLOTS - 1, true),
        }
    }

    #[inline(always)]
    fn bump(c: &AtomicU64, by: u64, shared: bool) {
        if shared {
            c.fetch_add(by, Ordering::Relaxed);
        } else {
            // Only this thread writes its slot: a plain load and store.
            c.store(
                c.load(Ordering::Relaxed).wrapping_add(by),
                Ordering::Relaxed,
            );
        }
    }

    #[inline(always)]
    pub(super) fn alloc(size: usize) {
        let (i, shared) = slot();
        bump(&SLOT[i].allocs, 1, shared);
        bump(&SLOT[i].bytes, size as u64, shared);
    }

    #[inline(always)]
    pub(super) fn free(size: usize) {
        let (i, shared) = slot();
        bump(&SLOT[i].frees, 1, shared);
        bump(&SLOT[i].bytes, (size as u64).wrapping_neg(), shared);
    }

    #[inline(always)]
    pub(super) fn resize(old: usize, new: usize) {
        let (i, shared) = slot();
        bump(
            &SLOT[i].bytes,
            (new as u64).wrapping_sub(old as u64),
            shared,
        );
    }

    pub(super) fn sum() -> (u64, u64, u64) {
        SLOT.iter().fold((0u64, 0u64, 0u64), |(a, f, b), s| {
            (
                a.wrapping_add(s.allocs.load(Ordering::Relaxed)),
                f.wrapping_add(s.frees.load(Ordering::Relaxed)),
                b.wrapping_add(s.bytes.load(Ordering::Relaxed)),
            )
        })
    }
}

/// The counters now.
pub fn heap_stats() -> HeapStats {
    let (allocs, frees, bytes) = counters::sum();
    HeapStats {
        allocs,
        frees,
        live_bytes: bytes,
        attributed_blocks: table::len() as u64,
        untracked: counters::UNTRACKED.load(Ordering::Relaxed),
    }
}

thread_local! {
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// The re-entrancy guard: `None` when the hook is already running on this
/// thread (or its thread-local storage is gone).
struct Reentry(());

impl Reentry {
    #[inline(always)]
    fn enter() -> Option<Reentry> {
        match IN_HOOK.try_with(|h| h.replace(true)) {
            Ok(false) => Some(Reentry(())),
            _ => None,
        }
    }
}

impl Drop for Reentry {
    #[inline(always)]
    fn drop(&mut self) {
        let _ = IN_HOOK.try_with(|h| h.set(false));
    }
}

/// The session an allocation belongs to right now, or 0.
#[inline(always)]
fn attributable() -> u64 {
    let s = session::current_id();
    if s == 0 || quiet::is_quiet() || !crate::config::live_fast() {
        0
    } else {
        s
    }
}

#[inline(always)]
fn on_alloc(ptr: *mut u8, size: usize) {
    counters::alloc(size);
    let session = attributable();
    if session != 0 {
        record(ptr as usize, session, size);
    }
}

#[inline(never)]
fn record(addr: usize, session: u64, size: usize) {
    let Some(_guard) = Reentry::enter() else {
        return;
    };
    let stack = stack::capture();
    if !table::insert(addr, session as u32, stack, size as u64) {
        counters::UNTRACKED.fetch_add(1, Ordering::Relaxed);
    }
}

#[inline(always)]
fn on_free(ptr: *mut u8, size: usize) {
    counters::free(size);
    if table::ANY.load(Ordering::Relaxed) {
        table::remove(ptr as usize);
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments
// unchanged and returns its result; the bookkeeping around the calls never
// touches the blocks' memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackingAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            on_alloc(p, layout.size());
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            on_alloc(p, layout.size());
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Forget the block before it can be handed out again.
        on_free(ptr, layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Take the record out first: once `inner.realloc` returns, the old
        // address may already belong to another thread's new block.
        let origin = if table::ANY.load(Ordering::Relaxed) {
            table::remove(ptr as usize)
        } else {
            None
        };
        // SAFETY: forwarded with the caller's guarantees.
        let q = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if q.is_null() {
            // The old block is still valid and still ours.
            if let Some((session, stack, _)) = origin {
                table::insert(ptr as usize, session, stack, layout.size() as u64);
            }
            return q;
        }
        counters::resize(layout.size(), new_size);
        if let Some((session, stack, _)) = origin
            && !table::insert(q as usize, session, stack, new_size as u64)
        {
            counters::UNTRACKED.fetch_add(1, Ordering::Relaxed);
        }
        q
    }
}

/// The live attributed blocks of the sessions `pick` accepts: `(stack, bytes)` each.
///
/// The visit holds a shard's spin lock, so it must not allocate (a realloc
/// would re-enter the table): the vector is sized first, and entries beyond
/// its capacity (blocks attributed meanwhile) are counted, not pushed.
pub(crate) fn live_blocks(pick: impl Fn(u64) -> bool) -> (Vec<(stack::StackId, u64)>, u64) {
    if !table::ANY.load(Ordering::Relaxed) {
        return (Vec::new(), 0);
    }
    let len = table::len();
    let mut out = Vec::with_capacity(len + len / 4 + 1024);
    let mut missed = 0;
    table::for_each(|session, stack, size| {
        if pick(u64::from(session)) {
            if out.len() < out.capacity() {
                out.push((stack, size));
            } else {
                missed += 1;
            }
        }
    });
    (out, missed)
}

mod table {
    //! The live table: 64 shards of open addressing with backward-shift
    //! deletion, each under a spin lock. Fixed size, in static memory.
    use super::*;

    const SHARDS: usize = 64;
    const PER_SHARD: usize = 1 << 14;
    /// A shard stops accepting at 7/8 full: probes stay short.
    const MAX_FILL: usize = PER_SHARD / 8 * 7;

    /// Set at the first insert and never cleared: until then, frees need
    /// not look in the table at all.
    pub(super) static ANY: AtomicBool = AtomicBool::new(false);

    /// Live entries in all shards (a sum, for statistics).
    pub(super) fn len() -> usize {
        TABLE.iter().map(|s| s.len.load(Ordering::Relaxed)).sum()
    }

    struct Slot {
        /// `!address`; 0 when empty.
        key: AtomicUsize,
        session: AtomicU32,
        stack: AtomicU32,
        size: AtomicU64,
    }

    struct Shard {
        lock: AtomicBool,
        len: AtomicUsize,
        slots: [Slot; PER_SHARD],
    }

    static TABLE: [Shard; SHARDS] = [const {
        Shard {
            lock: AtomicBool::new(false),
            len: AtomicUsize::new(0),
            slots: [const {
                Slot {
                    key: AtomicUsize::new(0),
                    session: AtomicU32::new(0),
                    stack: AtomicU32::new(0),
                    size: AtomicU64::new(0),
                }
            }; PER_SHARD],
        }
    }; SHARDS];

    struct Locked<'a>(&'a Shard);

    impl Shard {
        fn lock(&self) -> Locked<'_> {
            let mut spins = 0u32;
            while self
                .lock
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    // A syscall, not a parking lot: nothing allocates.
                    std::thread::yield_now();
                }
            }
            Locked(self)
        }
    }

    impl Drop for Locked<'_> {
        fn drop(&mut self) {
            self.0.lock.store(false, Ordering::Release);
        }
    }

    fn place(addr: usize) -> (&'static Shard, usize) {
        let h = ((addr >> 4) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (&TABLE[(h >> 58) as usize], (h as usize) & (PER_SHARD - 1))
    }

    pub(super) fn insert(addr: usize, session: u32, stack: u32, size: u64) -> bool {
        let key = !addr;
        let (shard, mut i) = place(addr);
        if !ANY.load(Ordering::Relaxed) {
            ANY.store(true, Ordering::Relaxed);
        }
        let _g = shard.lock();
        if shard.len.load(Ordering::Relaxed) >= MAX_FILL {
            return false;
        }
        loop {
            let slot = &shard.slots[i];
            let k = slot.key.load(Ordering::Relaxed);
            if k == 0 || k == key {
                if k == 0 {
                    // Under the shard lock: a plain load and store.
                    shard
                        .len
                        .store(shard.len.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                }
                slot.key.store(key, Ordering::Relaxed);
                slot.session.store(session, Ordering::Relaxed);
                slot.stack.store(stack, Ordering::Relaxed);
                slot.size.store(size, Ordering::Relaxed);
                return true;
            }
            i = (i + 1) & (PER_SHARD - 1);
        }
    }

    /// Removes `addr`; returns its `(session, stack, size)` if it was there.
    pub(super) fn remove(addr: usize) -> Option<(u32, u32, u64)> {
        let key = !addr;
        let (shard, mut i) = place(addr);
        // An empty shard cannot hold it: skip the lock. (A block's insert
        // happened-before its free, through whatever handed the pointer over.)
        if shard.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let _g = shard.lock();
        loop {
            let k = shard.slots[i].key.load(Ordering::Relaxed);
            if k == 0 {
                return None;
            }
            if k == key {
                break;
            }
            i = (i + 1) & (PER_SHARD - 1);
        }
        let s = &shard.slots[i];
        let found = (
            s.session.load(Ordering::Relaxed),
            s.stack.load(Ordering::Relaxed),
            s.size.load(Ordering::Relaxed),
        );
        // Backward-shift deletion: pull later entries of the probe run into
        // the hole, so lookups never need tombstones.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & (PER_SHARD - 1);
            let k = shard.slots[j].key.load(Ordering::Relaxed);
            if k == 0 {
                break;
            }
            let home = place(!k).1;
            let dist_j = j.wrapping_sub(home) & (PER_SHARD - 1);
            let dist_hole = hole.wrapping_sub(home) & (PER_SHARD - 1);
            if dist_hole <= dist_j {
                let (from, to) = (&shard.slots[j], &shard.slots[hole]);
                to.key.store(k, Ordering::Relaxed);
                to.session
                    .store(from.session.load(Ordering::Relaxed), Ordering::Relaxed);
                to.stack
                    .store(from.stack.load(Ordering::Relaxed), Ordering::Relaxed);
                to.size
                    .store(from.size.load(Ordering::Relaxed), Ordering::Relaxed);
                hole = j;
            }
        }
        shard.slots[hole].key.store(0, Ordering::Relaxed);
        shard
            .len
            .store(shard.len.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        Some(found)
    }

    /// Visits every live entry, one shard at a time.
    pub(super) fn for_each(mut f: impl FnMut(u32, u32, u64)) {
        for shard in &TABLE {
            if shard.len.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let _g = shard.lock();
            for s in &shard.slots {
                if s.key.load(Ordering::Relaxed) != 0 {
                    f(
                        s.session.load(Ordering::Relaxed),
                        s.stack.load(Ordering::Relaxed),
                        s.size.load(Ordering::Relaxed),
                    );
                }
            }
        }
    }
}
