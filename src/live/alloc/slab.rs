//! Records of blocks kept by index, for an allocator that keeps a word with
//! each block (the C ABI's trailer; `track_alloc_indexed`): the record's
//! index goes in that word, so the block's free finds its record without
//! a lookup.
//!
//! The live table hashes a block's address to a slot anywhere in tens of
//! MiB: in a program that keeps thousands of blocks alive and frees them
//! later, each insert and each remove touched a line (and a page) of its
//! own, about half of what mapileak cost the C++ whole-program benchmark.
//! Here a thread takes the index its last free gave back, so the records
//! in use stay as few lines as there are live blocks, in the order they
//! were used.
//!
//! ```text
//!  alloc ─► index: this thread's cache ─► else a batch from the pool
//!           ─► else a batch never used ─► record (key written last)
//!  free  ─► record at the block's index, if its key is the block's
//!           ─► cleared ─► index to this thread's cache (full: half to the pool)
//!  visit ─► every record below the high-water mark
//! ```
//!
//! Index 0 is none. Only a block's freer clears its record (as in the live
//! table), and an index is in one cache or the pool at a time, so a record
//! is written by one thread at a time; the pool's spin lock is held for a
//! batch's copy, never across an allocation, and waited for only briefly. Keys are stored inverted, as
//! in the live table, so leak checkers do not take them for references.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::spin;
use crate::backend::vmem::{Lazy, Zeroed};

/// One block: its address (inverted; 0: free), `session << 32 | stack`,
/// size.
struct Record {
    key: AtomicUsize,
    origin: AtomicU64,
    size: AtomicU64,
}

// SAFETY: three atomics: valid when zero (free), `Sync`, 8-byte aligned.
unsafe impl Zeroed for Record {}

static RECORDS: Lazy<Record> = Lazy::new();
/// Indexes given back by threads, `POOL_LEN` of them (under `POOL_LOCK`).
static POOL: Lazy<AtomicU32> = Lazy::new();
static POOL_LOCK: AtomicBool = AtomicBool::new(false);
static POOL_LEN: AtomicUsize = AtomicUsize::new(0);
/// Indexes handed out so far, from 1 (may run past the capacity).
static HIGH: AtomicUsize = AtomicUsize::new(1);

/// Indexes a thread keeps at most, and moves to or from the pool at once.
const CACHE: usize = 64;
const BATCH: usize = CACHE / 2;

/// The records, reserved on first use; `None` when refused.
fn records() -> Option<&'static [Record]> {
    RECORDS.get_or_map(wanted)
}

/// As many as the live table's (`MAPILEAK_LIVE_BLOCKS`), between 4,096
/// and 4,194,304 (the index then fits the trailer's 24 bits on 32-bit
/// Windows).
fn wanted() -> usize {
    crate::backend::env::live_blocks().clamp(1 << 12, 1 << 22)
}

/// Records `addr` (`size` bytes, made in `session` at `stack`): its index,
/// or `None` when there is no room (or no memory for the records).
#[inline(always)]
pub(super) fn insert(addr: usize, session: u32, stack: u32, size: u64) -> Option<u32> {
    let all = records()?;
    let index = cache::take().or_else(|| refill(all))?;
    let record = all.get(index as usize)?;
    record.size.store(size, Ordering::Relaxed);
    record.origin.store(
        u64::from(session) << 32 | u64::from(stack),
        Ordering::Relaxed,
    );
    // Release: whoever finds the key finds the rest.
    record.key.store(!addr, Ordering::Release);
    Some(index)
}

/// Takes the record of `addr` at `index` out: its `(session, stack,
/// size)`; `None` when that record is not `addr`'s (an index the caller
/// kept wrong). Call it only for a block this thread is freeing.
#[inline(always)]
pub(super) fn remove(index: u32, addr: usize) -> Option<(u32, u32, u64)> {
    let record = RECORDS.get()?.get(index as usize).filter(|_| index != 0)?;
    if record.key.load(Ordering::Acquire) != !addr {
        return None;
    }
    let origin = record.origin.load(Ordering::Relaxed);
    let size = record.size.load(Ordering::Relaxed);
    // Release: the next owner of the index writes after our reads.
    record.key.store(0, Ordering::Release);
    cache::give(index);
    Some(((origin >> 32) as u32, origin as u32, size))
}

/// Visits every live record as `(address, session, stack, size)`. Lock
/// free: a block allocated or freed meanwhile may be seen or not, never
/// with another block's data.
pub(super) fn for_each(mut f: impl FnMut(usize, u32, u32, u64)) {
    let Some(all) = RECORDS.get() else {
        return;
    };
    let high = HIGH.load(Ordering::Acquire).min(all.len());
    for record in all.iter().take(high).skip(1) {
        let key = record.key.load(Ordering::Acquire);
        if key == 0 {
            continue;
        }
        let origin = record.origin.load(Ordering::Acquire);
        let size = record.size.load(Ordering::Acquire);
        // Still the same block: its data was not replaced while we read.
        if record.key.load(Ordering::Relaxed) == key {
            f(!key, (origin >> 32) as u32, origin as u32, size);
        }
    }
}

/// The records' capacity (what `MAPILEAK_LIVE_BLOCKS` asks for until they
/// are reserved).
pub(super) fn capacity() -> usize {
    RECORDS.get().map_or_else(wanted, <[Record]>::len)
}

/// Whether the system refused to reserve the records.
pub(super) fn refused() -> bool {
    RECORDS.refused()
}

/// An index for this thread when its cache is empty: a batch from the
/// pool, else a batch never handed out; `None` when all are in use.
#[cold]
fn refill(all: &[Record]) -> Option<u32> {
    let mut batch = [0u32; BATCH];
    let mut n = pool::take(&mut batch);
    // Once every index was handed out, the mark is only read: adding to it
    // on every allocation of a full host would wrap it on 32-bit Windows
    // within days, and hand out indexes in use.
    if n == 0 && HIGH.load(Ordering::Relaxed) < all.len() {
        let start = HIGH.fetch_add(BATCH, Ordering::AcqRel);
        n = all.len().saturating_sub(start).min(BATCH);
        for (k, slot) in batch.iter_mut().take(n).enumerate() {
            *slot = (start + k) as u32;
        }
    }
    let (first, rest) = batch[..n].split_first()?;
    for &index in rest {
        cache::give(index);
    }
    Some(*first)
}

/// Holds the pool's lock while the process forks (the child then finds it
/// free).
#[cfg(unix)]
pub(crate) fn lock_for_fork() {
    spin::lock(&POOL_LOCK);
}

/// Releases what [`lock_for_fork`] took.
#[cfg(unix)]
pub(crate) fn unlock_after_fork() {
    spin::unlock(&POOL_LOCK);
}

/// Runs `f` holding the pool's lock (fault injection: see `testing`).
#[cfg(feature = "test-hooks")]
pub(crate) fn with_pool_locked(f: impl FnOnce()) {
    spin::lock(&POOL_LOCK);
    f();
    spin::unlock(&POOL_LOCK);
}

/// Free indexes no thread holds. Taking or giving a batch waits for the
/// lock only briefly: a free must not hang on a holder that never lets go
/// (a thread ended inside it at process end). Then indexes given are
/// dropped (their records stay free, unused) and none are taken (fresh
/// ones are).
mod pool {
    use super::{BATCH, POOL, POOL_LEN, POOL_LOCK, spin};
    use std::sync::atomic::Ordering;

    /// Moves up to a batch of indexes into `out`: how many.
    pub(super) fn take(out: &mut [u32; BATCH]) -> usize {
        let Some(pool) = POOL.get() else {
            return 0;
        };
        if !spin::lock_briefly(&POOL_LOCK) {
            return 0;
        }
        let len = POOL_LEN.load(Ordering::Relaxed);
        let n = len.min(BATCH);
        for (k, slot) in out.iter_mut().take(n).enumerate() {
            *slot = pool[len - 1 - k].load(Ordering::Relaxed);
        }
        POOL_LEN.store(len - n, Ordering::Relaxed);
        spin::unlock(&POOL_LOCK);
        n
    }

    /// Puts `indexes` in the pool (room for every index there is: each
    /// one is in the pool at most once).
    pub(super) fn give(indexes: &[u32]) {
        let Some(pool) = POOL.get_or_map(super::capacity) else {
            return;
        };
        if !spin::lock_briefly(&POOL_LOCK) {
            return;
        }
        let len = POOL_LEN.load(Ordering::Relaxed);
        let n = indexes.len().min(pool.len() - len);
        for (k, &index) in indexes.iter().take(n).enumerate() {
            pool[len + k].store(index, Ordering::Relaxed);
        }
        POOL_LEN.store(len + n, Ordering::Relaxed);
        spin::unlock(&POOL_LOCK);
    }
}

/// A thread's own free indexes: most recent last, taken first.
mod cache {
    use super::{BATCH, CACHE, Cell, pool};

    struct Cache {
        indexes: [Cell<u32>; CACHE],
        len: Cell<usize>,
        /// Whether the thread-local destructor that gives the indexes back
        /// is registered, or has run (then nothing is kept here).
        state: Cell<u8>,
    }

    const UNREGISTERED: u8 = 0;
    const OPEN: u8 = 1;
    const CLOSED: u8 = 2;

    thread_local! {
        static CACHE_OF: Cache = const {
            Cache {
                indexes: [const { Cell::new(0) }; CACHE],
                len: Cell::new(0),
                state: Cell::new(UNREGISTERED),
            }
        };
        static GIVE_BACK: GiveBack = const { GiveBack };
    }

    /// The index this thread gave back last.
    #[inline]
    pub(super) fn take() -> Option<u32> {
        CACHE_OF
            .try_with(|c| {
                let len = c.len.get().checked_sub(1)?;
                c.len.set(len);
                Some(c.indexes[len].get())
            })
            .ok()
            .flatten()
    }

    /// Keeps `index` for this thread's next record; half the cache goes to
    /// the pool when it is full, all of it (and this index) once the
    /// thread has ended.
    #[inline]
    pub(super) fn give(index: u32) {
        let kept = CACHE_OF.try_with(|c| {
            if c.state.get() != OPEN && !open(c) {
                return false;
            }
            let mut len = c.len.get();
            if len == CACHE {
                let spill: [u32; BATCH] = std::array::from_fn(|k| c.indexes[k].get());
                pool::give(&spill);
                for k in 0..CACHE - BATCH {
                    c.indexes[k].set(c.indexes[k + BATCH].get());
                }
                len -= BATCH;
            }
            c.indexes[len].set(index);
            c.len.set(len + 1);
            true
        });
        if kept != Ok(true) {
            pool::give(&[index]);
        }
    }

    /// Registers the destructor that gives the cache back, once; `false`
    /// when the thread is ending (nothing may be kept then).
    #[cold]
    fn open(c: &Cache) -> bool {
        if c.state.get() == UNREGISTERED {
            // May allocate (std's list of destructors): nothing is held.
            let registered = GIVE_BACK.try_with(|_| ()).is_ok();
            c.state.set(if registered { OPEN } else { CLOSED });
        }
        c.state.get() == OPEN
    }

    struct GiveBack;

    impl Drop for GiveBack {
        fn drop(&mut self) {
            let _ = CACHE_OF.try_with(|c| {
                c.state.set(CLOSED);
                let len = c.len.replace(0);
                let all: [u32; CACHE] = std::array::from_fn(|k| c.indexes[k].get());
                pool::give(&all[..len]);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses the tests use (never touched: only keys).
    const BASE: usize = 0x5a00_0000;

    fn live(addr: usize) -> Vec<(u32, u32, u64)> {
        let mut found = Vec::new();
        for_each(|a, session, stack, size| {
            if a == addr {
                found.push((session, stack, size));
            }
        });
        found
    }

    #[test]
    fn a_record_is_found_by_its_index_once_and_its_index_reused_first() {
        std::thread::spawn(|| {
            let a = insert(BASE, 3, 9, 40).unwrap();
            let b = insert(BASE + 64, 3, 10, 8).unwrap();
            assert_ne!(a, 0);
            assert_ne!(a, b);
            assert_eq!(live(BASE), [(3, 9, 40)]);
            assert_eq!(remove(b, BASE), None, "another block's index");
            assert_eq!(remove(a, BASE + 16), None, "another address");
            assert_eq!(remove(a, BASE), Some((3, 9, 40)));
            assert_eq!(remove(a, BASE), None, "removed once");
            assert_eq!(live(BASE), []);
            assert_eq!(remove(0, BASE), None, "index 0 is none");
            // The next record takes the index just given back.
            assert_eq!(insert(BASE + 128, 4, 11, 16), Some(a));
            assert_eq!(remove(a, BASE + 128), Some((4, 11, 16)));
            assert_eq!(remove(b, BASE + 64), Some((3, 10, 8)));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn indexes_move_between_threads_through_the_pool_and_none_is_handed_out_twice() {
        // Blocks made on one thread and freed on another, more than a
        // cache holds, and threads that end with full caches: every live
        // record keeps its own index.
        let made: Vec<(usize, u32)> = std::thread::spawn(|| {
            (0..1000)
                .map(|i| {
                    let addr = BASE + 0x10_0000 + i * 32;
                    (addr, insert(addr, 5, i as u32, 32).unwrap())
                })
                .collect()
        })
        .join()
        .unwrap();
        let (gone, kept) = made.split_at(600);
        let gone = gone.to_vec();
        std::thread::spawn(move || {
            for &(addr, index) in &gone {
                assert!(remove(index, addr).is_some(), "{addr:#x}");
            }
        })
        .join()
        .unwrap();
        let again: Vec<(usize, u32)> = std::thread::spawn(|| {
            (0..600)
                .map(|i| {
                    let addr = BASE + 0x20_0000 + i * 32;
                    (addr, insert(addr, 6, i as u32, 16).unwrap())
                })
                .collect()
        })
        .join()
        .unwrap();
        let mut indexes: Vec<u32> = kept.iter().chain(&again).map(|&(_, i)| i).collect();
        indexes.sort_unstable();
        indexes.dedup();
        assert_eq!(indexes.len(), 1000, "an index handed out twice");
        for &(addr, index) in kept.iter().chain(&again) {
            assert_eq!(live(addr).len(), 1, "{addr:#x}");
            assert!(remove(index, addr).is_some(), "{addr:#x}");
        }
    }
}
