//! The hook behind [`TrackingAllocator`](crate::TrackingAllocator): it counts every block and
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
//! locks are the live table's per-shard spin locks, taken to insert (an
//! atomic flag; no parking, so no allocation when a thread waits; removes
//! take none, see [`table`]). A thread-local re-entrancy guard, reset
//! on unwind, passes any allocation made while the hook runs straight
//! through. The live table stores each block's address inverted, so leak
//! checkers (valgrind, LeakSanitizer) do not see it as a reference.
//!
//! `realloc` keeps a block's origin: the moved block keeps the session and
//! stack of its first allocation, with its new size — the site that created
//! a growing `Vec` is the one to blame, not the push that grew it.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::{context, stack};

/// The counters live in per-thread slots, updated with plain loads and
/// stores (no locked instruction on the hot path) and summed when read.
/// A thread's slot goes back to a free list when the thread ends, for the
/// next thread to continue; threads beyond [`SLOTS`] at once share the last
/// slot, updated atomically.
mod counters {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    pub(super) const SLOTS: usize = 256;

    /// What one thread did. Each quantity that goes up and down has one
    /// counter per direction: an alloc and the free that follows it then
    /// update different words, and neither waits for the other's store.
    /// One cache line per slot: two threads never write the same line (with
    /// two 32-byte slots a line, counting cost 3x `System` on two threads).
    #[repr(align(64))]
    pub(super) struct Slot {
        pub allocs: AtomicU64,
        pub frees: AtomicU64,
        /// Bytes allocated (and grown by `realloc`) on this thread.
        pub bytes_in: AtomicU64,
        /// Bytes freed (and shrunk by `realloc`) on this thread.
        pub bytes_out: AtomicU64,
    }

    pub(super) static SLOT: [Slot; SLOTS] = [const {
        Slot {
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }; SLOTS];
    /// Slots never given out yet start here.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    /// Slots whose thread ended, one bit each (the shared last one never).
    /// Without it a host that starts and ends threads all day (a thread
    /// pool) would soon have every new thread on the shared slot: two
    /// threads counting then cost 10x `System`, not 1.4x.
    static FREE: [AtomicU64; SLOTS / 64] = [const { AtomicU64::new(0) }; SLOTS / 64];
    pub(super) static UNTRACKED: AtomicU64 = AtomicU64::new(0);

    thread_local! {
        /// This thread's slot: its address, with [`SHARED`] set when other
        /// threads update it too (the last, shared slot), and [`SCOPED`]
        /// while the thread is in a session's scope; no address until the
        /// thread's first allocation. One word, so one load per call tells
        /// a counted-only allocation from one to look at further. No
        /// destructor: it stays readable while the thread ends.
        static MINE: Cell<usize> = const { Cell::new(0) };
        /// Gives the slot back when the thread ends.
        static GIVE_BACK: GiveBack = const { GiveBack(Cell::new(usize::MAX)) };
    }

    const SHARED: usize = 1;
    /// The thread is in a session's scope: its allocations may be attributed.
    const SCOPED: usize = 2;
    /// The slot's address, without the tags.
    const ADDRESS: usize = !(SHARED | SCOPED);

    /// Tags this thread's word as in a session's scope, or not.
    pub(crate) fn set_scoped(scoped: bool) {
        let _ = MINE.try_with(|m| {
            let tags = if scoped { SCOPED } else { 0 };
            m.set(m.get() & !SCOPED | tags);
        });
    }

    /// The index of a thread's own slot, returned to [`FREE`] when the
    /// thread's locals are destroyed.
    struct GiveBack(Cell<usize>);

    impl Drop for GiveBack {
        fn drop(&mut self) {
            let i = self.0.get();
            if i < SLOTS - 1 {
                // What the thread still allocates while it ends goes to the
                // shared slot; then the slot is free. Release: the next
                // owner reads this thread's last counts.
                let _ = MINE.try_with(|m| m.set(SHARED | m.get() & SCOPED));
                FREE[i / 64].fetch_or(1 << (i % 64), Ordering::Release);
            }
        }
    }

    /// A free slot, if a thread gave one back. Acquire: the counts its last
    /// owner stored are seen.
    fn reuse() -> Option<usize> {
        for (w, word) in FREE.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                match word.compare_exchange_weak(
                    bits,
                    bits & !(1 << bit),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(w * 64 + bit),
                    Err(now) => bits = now,
                }
            }
        }
        None
    }

    /// This thread's slot, whether it is shared, and whether the thread is
    /// in a session's scope.
    #[inline(always)]
    pub(super) fn slot() -> (&'static Slot, bool, bool) {
        let mine = MINE.try_with(Cell::get).unwrap_or(0);
        let scoped = mine & SCOPED != 0;
        let own = mine & !SCOPED;
        if own & SHARED != 0 || own == 0 {
            let (slot, shared) = first_use();
            return (slot, shared, scoped);
        }
        // SAFETY: an address without the shared tag was stored by
        // `first_use` from a reference to an element of the static `SLOT`.
        (unsafe { &*(own as *const Slot) }, false, scoped)
    }

    /// Gives the thread its slot; and the shared slot, every time, to
    /// threads beyond [`SLOTS`], ending, or without thread-local storage
    /// left.
    #[cold]
    fn first_use() -> (&'static Slot, bool) {
        let mine = MINE
            .try_with(|m| {
                if m.get() & ADDRESS == 0 && m.get() & SHARED == 0 {
                    let scoped = m.get() & SCOPED;
                    let i = reuse()
                        .unwrap_or_else(|| NEXT.fetch_add(1, Ordering::Relaxed).min(SLOTS - 1));
                    if i == SLOTS - 1 {
                        m.set(&SLOT[i] as *const Slot as usize | SHARED | scoped);
                    } else {
                        // Set before the give-back is registered: that may
                        // allocate (std's list of destructors), and the
                        // allocation must find the slot taken.
                        m.set(&SLOT[i] as *const Slot as usize | scoped);
                        if GIVE_BACK.try_with(|g| g.0.set(i)).is_err() {
                            // Ending already: no destructor will run.
                            m.set(SHARED | scoped);
                            FREE[i / 64].fetch_or(1 << (i % 64), Ordering::Release);
                        }
                    }
                }
                m.get()
            })
            .unwrap_or(SHARED);
        if mine & SHARED != 0 {
            (&SLOT[SLOTS - 1], true)
        } else {
            // SAFETY: as in `slot`.
            (unsafe { &*((mine & ADDRESS) as *const Slot) }, false)
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

    /// Counts an allocation; whether the thread is in a session's scope.
    #[inline(always)]
    pub(super) fn alloc(size: usize) -> bool {
        let (slot, shared, scoped) = slot();
        bump(&slot.allocs, 1, shared);
        bump(&slot.bytes_in, size as u64, shared);
        scoped
    }

    #[inline(always)]
    pub(super) fn free(size: usize) {
        let (slot, shared, _) = slot();
        bump(&slot.frees, 1, shared);
        bump(&slot.bytes_out, size as u64, shared);
    }

    #[inline(always)]
    pub(super) fn resize(old: usize, new: usize) {
        let (slot, shared, _) = slot();
        if new >= old {
            bump(&slot.bytes_in, (new - old) as u64, shared);
        } else {
            bump(&slot.bytes_out, (old - new) as u64, shared);
        }
    }

    /// `(allocs, frees, live bytes)`.
    pub(super) fn sum() -> (u64, u64, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SLOT.iter()
            .fold((0, 0, 0), |(a, f, b): (u64, u64, u64), s| {
                (
                    a.wrapping_add(get(&s.allocs)),
                    f.wrapping_add(get(&s.frees)),
                    b.wrapping_add(get(&s.bytes_in).wrapping_sub(get(&s.bytes_out))),
                )
            })
    }
}

/// The counters now, in `HeapStats`' order: allocs, frees, live bytes,
/// attributed blocks, untracked blocks, table capacity. (Counting the
/// attributed blocks visits the live table.)
pub(crate) fn stats() -> [u64; 6] {
    let (allocs, frees, bytes) = counters::sum();
    let mut attributed = 0;
    table::for_each(|_, _, _, _| attributed += 1);
    slab::for_each(|_, _, _, _| attributed += 1);
    [
        allocs,
        frees,
        bytes,
        attributed,
        counters::UNTRACKED.load(Ordering::Relaxed),
        table::capacity() as u64,
    ]
}

/// Tells the allocation path whether this thread is in a session's scope
/// (only then does it look for the session).
pub(crate) fn set_scoped(scoped: bool) {
    counters::set_scoped(scoped);
}

/// Whether this thread's counters are the shared slot.
#[cfg(feature = "test-hooks")]
pub(crate) fn counters_shared() -> bool {
    counters::slot().1
}

/// Runs `f` holding a live-table shard's lock and the records' pool lock
/// (fault injection: see `testing`).
#[cfg(feature = "test-hooks")]
pub(crate) fn with_table_locked(f: impl FnOnce()) {
    table::with_shard_locked(|| slab::with_pool_locked(f));
}

/// Whether the system refused to reserve the live table (or the records
/// kept by index).
pub(crate) fn table_refused() -> bool {
    table::refused() || slab::refused()
}

/// Attributed blocks the live table had no room for, so far.
pub(crate) fn untracked() -> u64 {
    counters::UNTRACKED.load(Ordering::Relaxed)
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
    let s = context::current_id();
    if s == 0 || context::is_quiet() || !super::env::live_fast() {
        0
    } else {
        s
    }
}

// The hook's entry points. `TrackingAllocator<A>` is generic, so its
// methods are compiled in the provider's crate: in a provider's debug
// build, unoptimized. In builds with debug assertions these functions are
// therefore kept out of line, compiled once in mapileak (optimized by the
// profile override docs/rust-providers.md recommends: counting went from 4.8x to ~1.1x
// `System` that way); without debug assertions they are inlined.
#[cfg_attr(debug_assertions, inline(never))]
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn on_alloc(ptr: *mut u8, size: usize) {
    after_alloc(ptr, size);
}

/// What every allocation records (inlined into its callers in mapileak).
#[inline(always)]
fn after_alloc(ptr: *mut u8, size: usize) {
    if counters::alloc(size) {
        let session = attributable();
        if session != 0 {
            record(ptr as usize, session, size);
        }
    }
}

#[inline(never)]
fn record(addr: usize, session: u64, size: usize) {
    let Some(_guard) = Reentry::enter() else {
        return;
    };
    let stack = stack::capture_here();
    remember(addr, session as u32, stack, size as u64);
}

/// Puts a block in the live table, or counts it as untracked.
#[inline(always)]
fn remember(addr: usize, session: u32, stack: stack::StackId, size: u64) {
    if !table::insert(addr, session, stack, size) {
        counters::UNTRACKED.fetch_add(1, Ordering::Relaxed);
    }
}

/// [`on_alloc`] for a block whose record is kept by index
/// (`track_alloc_indexed`): the index, 0 when none was kept.
#[cfg_attr(debug_assertions, inline(never))]
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn on_alloc_indexed(ptr: *mut u8, size: usize) -> u32 {
    if counters::alloc(size) {
        let session = attributable();
        if session != 0 {
            return record_indexed(ptr as usize, session, size);
        }
    }
    0
}

#[inline(never)]
fn record_indexed(addr: usize, session: u64, size: usize) -> u32 {
    let Some(_guard) = Reentry::enter() else {
        return 0;
    };
    let stack = stack::capture_here();
    slab::insert(addr, session as u32, stack, size as u64).unwrap_or_else(|| {
        counters::UNTRACKED.fetch_add(1, Ordering::Relaxed);
        0
    })
}

/// [`on_free`] for a block [`on_alloc_indexed`] kept at `index`.
#[cfg_attr(debug_assertions, inline(never))]
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn on_free_indexed(ptr: *mut u8, size: usize, index: u32) {
    counters::free(size);
    if index != 0 {
        slab::remove(index, ptr as usize);
    }
}

/// Takes a block out of the live table: its `(session, stack, size)`.
#[inline(always)]
fn forget(addr: usize) -> Option<(u32, stack::StackId, u64)> {
    if !table::any() {
        return None;
    }
    table::remove(addr)
}

#[cfg_attr(debug_assertions, inline(never))]
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn on_free(ptr: *mut u8, size: usize) {
    before_free(ptr, size);
}

/// What every free records (inlined into its callers in mapileak).
#[inline(always)]
fn before_free(ptr: *mut u8, size: usize) {
    counters::free(size);
    forget(ptr as usize);
}

/// `TrackingAllocator::system()`'s hot calls whole, System included: out of
/// line (compiled in mapileak) with debug assertions, inlined without.
pub(crate) mod system {
    use std::alloc::{GlobalAlloc, Layout, System};

    /// # Safety
    ///
    /// `GlobalAlloc::alloc`'s contract.
    #[cfg_attr(debug_assertions, inline(never))]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub(crate) unsafe fn alloc(layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            super::after_alloc(p, layout.size());
        }
        p
    }

    /// # Safety
    ///
    /// `GlobalAlloc::dealloc`'s contract, for a block from [`alloc`].
    #[cfg_attr(debug_assertions, inline(never))]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub(crate) unsafe fn dealloc(ptr: *mut u8, layout: Layout) {
        super::before_free(ptr, layout.size());
        // SAFETY: the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[cfg_attr(debug_assertions, inline(never))]
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn before_realloc(ptr: *mut u8) -> Option<(u32, stack::StackId, u64)> {
    forget(ptr as usize)
}

/// `q` is the moved block (null: the old one stays, still ours).
#[cfg_attr(debug_assertions, inline(never))]
#[cfg_attr(not(debug_assertions), inline(always))]
pub(crate) fn after_realloc(
    ptr: *mut u8,
    q: *mut u8,
    old_size: usize,
    new_size: usize,
    origin: Option<(u32, stack::StackId, u64)>,
) {
    if q.is_null() {
        if let Some((session, stack, _)) = origin {
            remember(ptr as usize, session, stack, old_size as u64);
        }
        return;
    }
    counters::resize(old_size, new_size);
    if let Some((session, stack, _)) = origin {
        remember(q as usize, session, stack, new_size as u64);
    }
}

/// A live attributed block: `(address, session, stack, bytes)`.
pub(crate) type LiveBlock = (usize, u64, stack::StackId, u64);

/// The live attributed blocks of the sessions `pick` accepts.
///
/// The visit holds a shard's spin lock, so it must not allocate (a realloc
/// would re-enter the table): the vector is sized first, and entries beyond
/// its capacity (blocks attributed meanwhile) are counted, not pushed.
pub(crate) fn live_blocks(pick: impl Fn(u64) -> bool) -> (Vec<LiveBlock>, u64) {
    live_blocks_within(pick, None).unwrap_or_default()
}

/// [`live_blocks`], each shard's lock waited for at most `wait` (`None`:
/// as long as it takes); `None` when one was not free in time.
pub(crate) fn live_blocks_within(
    pick: impl Fn(u64) -> bool,
    wait: Option<std::time::Duration>,
) -> Option<(Vec<LiveBlock>, u64)> {
    let mut len = 0;
    if !table::for_each_within(wait, |_, _, _, _| len += 1) {
        return None;
    }
    slab::for_each(|_, _, _, _| len += 1);
    if len == 0 {
        return Some((Vec::new(), 0));
    }
    let mut out = Vec::with_capacity(len + len / 4 + 1024);
    let mut missed = 0;
    let mut take = |addr, session, stack, size| {
        if pick(u64::from(session)) {
            if out.len() < out.capacity() {
                out.push((addr, u64::from(session), stack, size));
            } else {
                missed += 1;
            }
        }
    };
    let complete = table::for_each_within(wait, &mut take);
    slab::for_each(&mut take);
    complete.then_some((out, missed))
}

/// Which of `blocks` hold one of `tags` (the words tracked objects carry,
/// `registry::memory_tag`) in their first [`SCAN_BYTES`]: those blocks are
/// leaked objects' own memory.
///
/// A block may be freed by another thread while this runs, so its memory is
/// not touched directly: the kernel copies it (`process_vm_readv` on this
/// process) and reports a range that is gone as an error instead of a
/// fault (`ReadProcessMemory` on Windows). Where neither is available every
/// block counts as not holding one.
pub(crate) fn holding_tags(blocks: &[LiveBlock], tags: &HashSet<u64>) -> Vec<bool> {
    let mut found = vec![false; blocks.len()];
    if tags.is_empty() {
        return found;
    }
    // Read in batches (one system call for many blocks on Linux: a
    // snapshot of a million blocks is a few thousand calls, not a million).
    let mut batch: Vec<(usize, usize, usize)> = Vec::with_capacity(self_read::BATCH);
    let mut buf = Vec::new();
    let mut scan = |batch: &mut Vec<(usize, usize, usize)>| {
        let mut at = 0;
        while at < batch.len() {
            let part = &batch[at..];
            buf.resize(part.iter().map(|b| b.2).sum(), 0);
            // The ranges read whole, from the first: a range that is gone
            // (freed meanwhile) ends the call, and is passed over.
            let read = self_read::read_many(part.iter().map(|&(_, a, l)| (a, l)), &mut buf);
            let mut offset = 0;
            for &(i, _, len) in &part[..read] {
                found[i] = buf[offset..offset + len]
                    .chunks_exact(8)
                    .any(|w| tags.contains(&u64::from_ne_bytes(w.try_into().unwrap_or_default())));
                offset += len;
            }
            at += read + 1;
        }
        batch.clear();
    };
    for (i, &(addr, _, _, size)) in blocks.iter().enumerate() {
        let len = (size as usize).min(SCAN_BYTES) & !7;
        if len == 0 || addr % 8 != 0 {
            continue;
        }
        batch.push((i, addr, len));
        if batch.len() == self_read::BATCH {
            scan(&mut batch);
        }
    }
    scan(&mut batch);
    found
}

/// How much of each block [`holding_tags`] reads.
const SCAN_BYTES: usize = 4096;

#[cfg(target_os = "linux")]
mod self_read {
    /// Ranges per system call (the kernel takes up to `IOV_MAX`, 1024).
    pub(super) const BATCH: usize = 512;

    /// Copies the `(address, length)` ranges of this process, one after
    /// the other, into `buf` (their total length); returns how many of them,
    /// from the first, were read whole (the rest are not read).
    pub(super) fn read_many(ranges: impl Iterator<Item = (usize, usize)>, buf: &mut [u8]) -> usize {
        let mut local = Vec::with_capacity(BATCH);
        let mut remote = Vec::with_capacity(BATCH);
        let mut offset = 0;
        for (addr, len) in ranges.take(BATCH) {
            let Some(dest) = buf.get_mut(offset..offset + len) else {
                break;
            };
            local.push(libc::iovec {
                iov_base: dest.as_mut_ptr().cast(),
                iov_len: len,
            });
            remote.push(libc::iovec {
                iov_base: addr as *mut libc::c_void,
                iov_len: len,
            });
            offset += len;
        }
        let count = libc::c_ulong::try_from(local.len()).unwrap_or(0);
        // SAFETY: each local iovec is a distinct part of `buf`, valid for
        // its length; the kernel writes only there. The source ranges are
        // checked by the kernel (the copy stops at the first one that is
        // unmapped), never dereferenced by this process.
        let n = unsafe {
            libc::process_vm_readv(
                libc::getpid(),
                local.as_ptr(),
                count,
                remote.as_ptr(),
                count,
                0,
            )
        };
        // Whole ranges covered by the bytes copied.
        let mut left = usize::try_from(n).unwrap_or(0);
        local
            .iter()
            .take_while(|v| {
                let whole = left >= v.iov_len;
                left = left.saturating_sub(v.iov_len);
                whole
            })
            .count()
    }
}

#[cfg(windows)]
mod self_read {
    use std::ffi::c_void;

    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn GetCurrentProcess() -> *mut c_void;
        fn ReadProcessMemory(
            process: *mut c_void,
            base: *const c_void,
            buf: *mut c_void,
            len: usize,
            read: *mut usize,
        ) -> i32;
    }

    /// Ranges per call of [`read_many`].
    pub(super) const BATCH: usize = 512;

    /// [`read`] for each range in turn, into `buf`: how many, from the
    /// first, were read whole.
    pub(super) fn read_many(ranges: impl Iterator<Item = (usize, usize)>, buf: &mut [u8]) -> usize {
        let mut offset = 0;
        let mut read_whole = 0;
        for (addr, len) in ranges.take(BATCH) {
            let Some(dest) = buf.get_mut(offset..offset + len) else {
                break;
            };
            if !read(addr, dest) {
                break;
            }
            read_whole += 1;
            offset += len;
        }
        read_whole
    }

    /// Copies `buf.len()` bytes at `addr` of this process into `buf`;
    /// `false` when the range is not (all) readable.
    fn read(addr: usize, buf: &mut [u8]) -> bool {
        let mut n = 0usize;
        // SAFETY: the system writes at most `buf.len()` bytes into `buf`,
        // which is valid for that, and checks the source range itself (a
        // decommitted or freed range is an error, not a fault);
        // `GetCurrentProcess` is a constant pseudo-handle.
        let ok = unsafe {
            ReadProcessMemory(
                GetCurrentProcess(),
                addr as *const c_void,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut n,
            )
        };
        ok != 0 && n == buf.len()
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod self_read {
    pub(super) const BATCH: usize = 512;

    /// Nothing can be read safely here: no range is read.
    pub(super) fn read_many(_: impl Iterator<Item = (usize, usize)>, _: &mut [u8]) -> usize {
        0
    }
}

mod slab;
mod table;

/// The spin locks of the live table's shards and of the records' pool: an
/// atomic flag, so waiting never parks (parking can allocate), and nothing
/// in the allocator hook can deadlock on one.
mod spin {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    #[inline(always)]
    fn try_lock(flag: &AtomicBool) -> bool {
        flag.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[inline(always)]
    pub(super) fn lock(flag: &AtomicBool) {
        let mut spins = 0u32;
        while !try_lock(flag) {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                // A syscall, not a parking lot: nothing allocates.
                std::thread::yield_now();
            }
        }
    }

    /// [`lock`], given up after a short while (some spins, some yields):
    /// whether it was taken. For a lock held for a few copies at most,
    /// where a holder that never lets go (a thread ended by the system
    /// inside it, at process end) must not stop the caller.
    pub(super) fn lock_briefly(flag: &AtomicBool) -> bool {
        for spins in 0..128 {
            if try_lock(flag) {
                return true;
            }
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        false
    }

    /// [`lock`], given up after `wait`: whether it was taken.
    pub(super) fn lock_within(flag: &AtomicBool, wait: Duration) -> bool {
        let start = Instant::now();
        while !try_lock(flag) {
            if start.elapsed() >= wait {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    #[inline(always)]
    pub(super) fn unlock(flag: &AtomicBool) {
        flag.store(false, Ordering::Release);
    }
}

/// Takes the live table's and the records' locks (before `fork`: the child
/// then finds none held by a thread that is not there). Allocates nothing.
#[cfg(unix)]
pub(crate) fn lock_all_for_fork() {
    table::lock_all_for_fork();
    slab::lock_for_fork();
}

/// Releases what [`lock_all_for_fork`] took (after `fork`, in the parent
/// and in the child).
#[cfg(unix)]
pub(crate) fn unlock_all_after_fork() {
    slab::unlock_after_fork();
    table::unlock_all_after_fork();
}

#[cfg(test)]
mod tests {
    use super::counters;

    #[test]
    fn counts_stay_exact_with_more_threads_than_slots() {
        const THREADS: usize = counters::SLOTS + 40;
        let before = counters::sum();
        let grown = |_| {
            for _ in 0..100 {
                counters::alloc(48);
                counters::resize(48, 64);
            }
        };
        std::thread::scope(|s| {
            for t in 0..THREADS {
                s.spawn(move || grown(t));
            }
        });
        let mid = counters::sum();
        let ops = (THREADS * 100) as u64;
        assert_eq!(mid.0 - before.0, ops, "allocs");
        assert_eq!(
            mid.2.wrapping_sub(before.2),
            ops * 64,
            "live bytes after growing"
        );
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..100 {
                        counters::free(64);
                    }
                });
            }
        });
        let after = counters::sum();
        assert_eq!(after.1 - before.1, ops, "frees");
        assert_eq!(
            after.2.wrapping_sub(before.2),
            0,
            "live bytes after the frees"
        );
    }
}
