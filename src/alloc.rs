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

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
static UNTRACKED: AtomicU64 = AtomicU64::new(0);

/// The counters now.
pub fn heap_stats() -> HeapStats {
    HeapStats {
        allocs: ALLOCS.load(Ordering::Relaxed),
        frees: FREES.load(Ordering::Relaxed),
        live_bytes: LIVE_BYTES.load(Ordering::Relaxed),
        attributed_blocks: table::LEN.load(Ordering::Relaxed) as u64,
        untracked: UNTRACKED.load(Ordering::Relaxed),
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
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    LIVE_BYTES.fetch_add(size as u64, Ordering::Relaxed);
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
        UNTRACKED.fetch_add(1, Ordering::Relaxed);
    }
}

#[inline(always)]
fn on_free(ptr: *mut u8, size: usize) {
    FREES.fetch_add(1, Ordering::Relaxed);
    LIVE_BYTES.fetch_sub(size as u64, Ordering::Relaxed);
    if table::LEN.load(Ordering::Relaxed) != 0 {
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
        let origin = if table::LEN.load(Ordering::Relaxed) != 0 {
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
        LIVE_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        if let Some((session, stack, _)) = origin
            && !table::insert(q as usize, session, stack, new_size as u64)
        {
            UNTRACKED.fetch_add(1, Ordering::Relaxed);
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
    let len = table::LEN.load(Ordering::Relaxed);
    if len == 0 {
        return (Vec::new(), 0);
    }
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

    pub(super) static LEN: AtomicUsize = AtomicUsize::new(0);

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
        let _g = shard.lock();
        if shard.len.load(Ordering::Relaxed) >= MAX_FILL {
            return false;
        }
        loop {
            let slot = &shard.slots[i];
            let k = slot.key.load(Ordering::Relaxed);
            if k == 0 || k == key {
                if k == 0 {
                    shard.len.fetch_add(1, Ordering::Relaxed);
                    LEN.fetch_add(1, Ordering::Relaxed);
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
        shard.len.fetch_sub(1, Ordering::Relaxed);
        LEN.fetch_sub(1, Ordering::Relaxed);
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
