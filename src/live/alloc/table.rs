//! The live table: attributed blocks by address, in memory reserved from
//! the system when the first attributed block comes (`vmem`), sized by
//! `MAPILEAK_LIVE_BLOCKS`, never grown or given back.
//!
//! 64 shards of open addressing with linear probing. An insert takes its
//! shard's spin lock; a remove takes none, because only the thread that frees
//! a block removes its entry, and a remove only turns that entry's key into a
//! tombstone. So the common alloc+free costs one locked instruction, not two.
//!
//! ```text
//!  key:  EMPTY ──insert (locked)──► !addr ──remove (no lock)──► TOMB
//!          ▲                                                      │
//!          └────── sweep (locked), when no live run needs it ─────┤
//!                                       insert (locked) reuses ◄──┘
//! ```
//!
//! Invariants: a live key sits at most [`PROBE`] slots after its home slot,
//! and no slot between its home and it is EMPTY. Removes never write EMPTY,
//! and the sweep writes it only where no live key's run passes, so a remove
//! always finds its key. Lookups stop at the first EMPTY slot; the sweep keeps
//! tombstones from lengthening them. Keys are stored inverted (`!addr`), so
//! leak checkers (valgrind, LeakSanitizer) do not take them for references.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::backend::vmem::{Lazy, Zeroed};

const SHARDS: usize = 64;
/// The longest probe run: an insert that finds no free slot within it gives
/// up (the block is counted as untracked), and a lookup stops there.
const PROBE: usize = 32;
/// A lookup that had to look this far asks for a sweep.
const LONG: usize = 8;
/// A sweep that freed fewer than one slot in this many was not worth it:
/// the shard is full of live blocks. The next ones wait [`COOLDOWN`] inserts.
const WORTH: usize = 64;
const COOLDOWN: u32 = 4096;
/// Slots per shard: a power of two, at most this (the sweep's bitmap of
/// crossed slots lives on the stack).
const MAX_PER_SHARD: usize = 1 << 16;
const MIN_PER_SHARD: usize = 1 << 6;

const EMPTY: usize = 0;
const TOMB: usize = 1;

/// Whether a block was ever recorded (the table exists): until then, frees
/// need not look in the table at all.
#[inline(always)]
pub(super) fn any() -> bool {
    SLOTS.get().is_some()
}

/// Whether the system refused to reserve the table.
pub(super) fn refused() -> bool {
    SLOTS.refused()
}

/// The slots the table was reserved with, or would be now: the setting
/// (`MAPILEAK_LIVE_BLOCKS`), rounded to a power of two between 4,096 and
/// 4,194,304.
pub(super) fn capacity() -> usize {
    SLOTS.get().map_or_else(slots_wanted, <[Slot]>::len)
}

fn slots_wanted() -> usize {
    per_shard_for(crate::backend::env::live_blocks()) * SHARDS
}

fn per_shard_for(blocks: usize) -> usize {
    (blocks / SHARDS)
        .clamp(MIN_PER_SHARD, MAX_PER_SHARD)
        .next_power_of_two()
}

/// One live block: its address (inverted), `session << 32 | stack`, size.
struct Slot {
    key: AtomicUsize,
    origin: AtomicU64,
    size: AtomicU64,
}

// SAFETY: three atomics: valid when zero (EMPTY), `Sync`, 8-byte aligned.
unsafe impl Zeroed for Slot {}

struct Shard {
    lock: AtomicBool,
    /// Set by a lookup that probed [`LONG`] slots or more: the shard's next
    /// insert sweeps its tombstones.
    dirty: AtomicBool,
    /// Dirty inserts to go before `dirty` is heeded again (under the lock).
    cooldown: AtomicU32,
}

static SHARD: [Shard; SHARDS] = [const {
    Shard {
        lock: AtomicBool::new(false),
        dirty: AtomicBool::new(false),
        cooldown: AtomicU32::new(0),
    }
}; SHARDS];

/// Every shard's slots, back to back (reserved on first use).
static SLOTS: Lazy<Slot> = Lazy::new();

/// A shard and its slots.
#[derive(Clone, Copy)]
struct Part {
    shard: &'static Shard,
    slots: &'static [Slot],
}

impl Part {
    #[inline(always)]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }
}

/// A held shard lock: an atomic flag, so waiting never parks (parking can
/// allocate), and nothing in the allocator hook can deadlock on it.
struct Locked(Part);

impl Part {
    #[inline(always)]
    fn lock(self) -> Locked {
        let mut spins = 0u32;
        while self
            .shard
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

    /// [`Part::lock`], given up after `wait`.
    fn try_lock_for(self, wait: std::time::Duration) -> Option<Locked> {
        let start = std::time::Instant::now();
        while self
            .shard
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            if start.elapsed() >= wait {
                return None;
            }
            std::thread::yield_now();
        }
        Some(Locked(self))
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        self.0.shard.lock.store(false, Ordering::Release);
    }
}

/// The shard `addr` belongs to, and its home slot there, in a table of
/// `1 << shift` slots.
#[inline(always)]
fn home(all: &'static [Slot], shift: u32, addr: usize) -> (Part, usize) {
    let per_shift = shift - SHARDS.trailing_zeros();
    let h = ((addr >> 4) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let n = (h >> 58) as usize;
    let first = n << per_shift;
    let part = Part {
        shard: &SHARD[n],
        slots: &all[first..first + (1 << per_shift)],
    };
    (part, (h as usize) & ((1 << per_shift) - 1))
}

/// [`home`] in a mapped table.
fn home_in(all: &'static [Slot], addr: usize) -> (Part, usize) {
    home(all, all.len().trailing_zeros(), addr)
}

/// Records a live block; `false` when its probe run has no room (or the
/// table could not be reserved).
#[inline(always)]
pub(super) fn insert(addr: usize, session: u32, stack: u32, size: u64) -> bool {
    let Some((all, shift)) = SLOTS.get_pow2().or_else(|| {
        SLOTS.get_or_map(slots_wanted)?;
        SLOTS.get_pow2()
    }) else {
        return false;
    };
    let (part, home) = home(all, shift, addr);
    let guard = part.lock();
    if part.shard.dirty.load(Ordering::Relaxed) {
        maybe_sweep(&guard);
    }
    let mask = part.mask();
    for k in 0..PROBE {
        let slot = &part.slots[(home + k) & mask];
        // Acquire: a remove's reads of this slot come before its tombstone.
        let key = slot.key.load(Ordering::Acquire);
        if key == EMPTY || key == TOMB {
            slot.origin.store(
                u64::from(session) << 32 | u64::from(stack),
                Ordering::Relaxed,
            );
            slot.size.store(size, Ordering::Relaxed);
            // Release: whoever finds the key finds the data.
            slot.key.store(!addr, Ordering::Release);
            return true;
        }
    }
    false
}

/// Removes `addr`; returns its `(session, stack, size)` if it was there.
/// Call it only for a block this thread is freeing (or moving).
pub(super) fn remove(addr: usize) -> Option<(u32, u32, u64)> {
    let (all, shift) = SLOTS.get_pow2()?;
    let (part, home) = home(all, shift, addr);
    let want = !addr;
    let mask = part.mask();
    for k in 0..PROBE {
        let slot = &part.slots[(home + k) & mask];
        let key = slot.key.load(Ordering::Acquire);
        if key == want {
            if k >= LONG {
                part.shard.dirty.store(true, Ordering::Relaxed);
            }
            let origin = slot.origin.load(Ordering::Relaxed);
            let size = slot.size.load(Ordering::Relaxed);
            // Nobody else writes a live key: inserts take only EMPTY and
            // TOMB slots, and only this block's freer removes it.
            slot.key.store(TOMB, Ordering::Release);
            return Some(((origin >> 32) as u32, origin as u32, size));
        }
        if key == EMPTY {
            if k >= LONG {
                part.shard.dirty.store(true, Ordering::Relaxed);
            }
            return None;
        }
    }
    part.shard.dirty.store(true, Ordering::Relaxed);
    None
}

/// Sweeps a dirty shard, unless a recent sweep found it full of live blocks.
#[cold]
fn maybe_sweep(locked: &Locked) {
    let cooldown = &locked.0.shard.cooldown;
    match cooldown.load(Ordering::Relaxed) {
        0 => sweep(locked),
        n => cooldown.store(n - 1, Ordering::Relaxed),
    }
}

/// Turns into EMPTY every tombstone that no live key's probe run crosses.
fn sweep(locked: &Locked) {
    let Part { shard, slots } = locked.0;
    let mask = locked.0.mask();
    let all = SLOTS.get().unwrap_or_default();
    shard.dirty.store(false, Ordering::Relaxed);
    // One bit per slot: crossed by some live key's run. On the stack (8 KiB
    // at most): nothing here allocates.
    let mut crossed = [0u64; MAX_PER_SHARD / 64];
    for (at, slot) in slots.iter().enumerate() {
        let key = slot.key.load(Ordering::Acquire);
        if key == EMPTY || key == TOMB {
            continue;
        }
        let mut i = home_in(all, !key).1;
        while i != at {
            crossed[i / 64] |= 1 << (i % 64);
            i = (i + 1) & mask;
        }
    }
    // A key removed since it was seen only leaves its run marked: the sweep
    // errs towards keeping a tombstone. Inserts wait for the lock we hold.
    let mut freed = 0usize;
    for (at, slot) in slots.iter().enumerate() {
        if crossed[at / 64] & (1 << (at % 64)) == 0 && slot.key.load(Ordering::Relaxed) == TOMB {
            slot.key.store(EMPTY, Ordering::Relaxed);
            freed += 1;
        }
    }
    if freed < slots.len() / WORTH {
        shard.cooldown.store(COOLDOWN, Ordering::Relaxed);
    }
}

/// Takes every shard's lock (before `fork`: the child then finds none
/// held by a thread that is not there). Allocates nothing.
#[cfg(unix)]
pub(crate) fn lock_all_for_fork() {
    for shard in &SHARD {
        while shard
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
    }
}

/// Releases what [`lock_all_for_fork`] took (after `fork`, in the parent
/// and in the child).
#[cfg(unix)]
pub(crate) fn unlock_all_after_fork() {
    for shard in &SHARD {
        shard.lock.store(false, Ordering::Release);
    }
}

/// Runs `f` holding the first shard's lock (fault injection: see `testing`).
#[cfg(feature = "test-hooks")]
pub(crate) fn with_shard_locked(f: impl FnOnce()) {
    let shard = &SHARD[0];
    while shard
        .lock
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
    f();
    shard.lock.store(false, Ordering::Release);
}

/// Visits every live entry as `(address, session, stack, size)`, one shard
/// at a time.
pub(super) fn for_each(f: impl FnMut(usize, u32, u32, u64)) {
    for_each_within(None, f);
}

/// [`for_each`], each shard's lock waited for at most `wait` (`None`: as
/// long as it takes); `false` when one was not free in time (the shards
/// before it were visited).
pub(super) fn for_each_within(
    wait: Option<std::time::Duration>,
    mut f: impl FnMut(usize, u32, u32, u64),
) -> bool {
    let Some(all) = SLOTS.get() else {
        return true;
    };
    let per = all.len() / SHARDS;
    for (n, shard) in SHARD.iter().enumerate() {
        let part = Part {
            shard,
            slots: &all[n * per..(n + 1) * per],
        };
        let _g = match wait {
            None => part.lock(),
            Some(d) => match part.try_lock_for(d) {
                Some(g) => g,
                None => return false,
            },
        };
        for slot in part.slots {
            let key = slot.key.load(Ordering::Acquire);
            if key != EMPTY && key != TOMB {
                let origin = slot.origin.load(Ordering::Relaxed);
                f(
                    !key,
                    (origin >> 32) as u32,
                    origin as u32,
                    slot.size.load(Ordering::Relaxed),
                );
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`home`] in the table, reserved if it was not yet.
    fn at(addr: usize) -> (Part, usize) {
        let all = SLOTS.get_or_map(slots_wanted).unwrap();
        home_in(all, addr)
    }

    /// Heap-like addresses the tests use (never touched: only keys).
    #[cfg(target_pointer_width = "64")]
    const HIGH: usize = 0x7f00_0000_0000;
    #[cfg(target_pointer_width = "64")]
    const LOWER: usize = 0x7e00_0000_0000;
    #[cfg(not(target_pointer_width = "64"))]
    const HIGH: usize = 0x7f00_0000;
    #[cfg(not(target_pointer_width = "64"))]
    const LOWER: usize = 0x6e00_0000;

    /// Addresses that all land in one shard, from one home slot on.
    fn crowd(n: usize) -> Vec<usize> {
        let (part, slot) = at(HIGH);
        (0..)
            .map(|i| HIGH + i * 16)
            .filter(|&a| {
                let (p, h) = at(a);
                std::ptr::eq(p.shard, part.shard) && h == slot
            })
            .take(n)
            .collect()
    }

    #[test]
    fn removes_find_keys_past_tombstones_and_sweeps_keep_them_findable() {
        let addrs = crowd(PROBE + 1);
        for (i, &a) in addrs[..PROBE].iter().enumerate() {
            assert!(insert(a, 7, i as u32 + 1, 16), "slot {i}");
        }
        assert!(!insert(addrs[PROBE], 7, 99, 16), "a full run refuses");
        // Every other entry goes: tombstones in front of live keys.
        for &a in addrs[..PROBE].iter().step_by(2) {
            assert!(remove(a).is_some());
        }
        assert_eq!(remove(addrs[0]), None, "removed once");
        let (shard, _) = at(addrs[0]);
        sweep(&shard.lock());
        for (i, &a) in addrs[..PROBE].iter().enumerate().skip(1).step_by(2) {
            assert_eq!(remove(a), Some((7, i as u32 + 1, 16)), "entry {i}");
        }
        // Nothing live crosses the run now: the sweep empties it all.
        sweep(&shard.lock());
        let (_, slot) = at(addrs[0]);
        for k in 0..PROBE {
            let key = shard.slots[(slot + k) & shard.mask()]
                .key
                .load(Ordering::Relaxed);
            assert_eq!(key, EMPTY, "slot {k}");
        }
    }

    #[test]
    fn removes_racing_inserts_and_sweeps_lose_no_key() {
        // Four threads with six addresses each, all homed within 8 slots of
        // one shard (not the other test's), so runs are long and full of
        // tombstones. Each round a worker inserts its keys, removes half,
        // sweeps the shard, and removes the rest, lock-free, while the
        // others do the same: a sweep that emptied a tombstone some live
        // key's run crosses would lose that key.
        let theirs = at(HIGH).0.shard;
        let base = (1..)
            .map(|k| LOWER + k * 0x1000)
            .find(|&b| !std::ptr::eq(at(b).0.shard, theirs))
            .unwrap();
        let (shard, slot) = at(base);
        let addrs: Vec<usize> = (0..)
            .map(|i| base + i * 16)
            .filter(|&a| {
                let (s, h) = at(a);
                std::ptr::eq(s.shard, shard.shard) && h.wrapping_sub(slot) & shard.mask() < 8
            })
            .take(24)
            .collect();
        std::thread::scope(|s| {
            for mine in addrs.chunks(6) {
                s.spawn(move || {
                    for round in 0..200u32 {
                        for &a in mine {
                            assert!(insert(a, 9, round, 1), "no room for {a:#x}");
                        }
                        let (first, rest) = mine.split_at(3);
                        for &a in first {
                            assert_eq!(remove(a), Some((9, round, 1)), "{a:#x} lost");
                        }
                        sweep(&shard.lock());
                        for &a in rest {
                            assert_eq!(remove(a), Some((9, round, 1)), "{a:#x} lost");
                        }
                    }
                });
            }
        });
        for &a in &addrs {
            assert_eq!(remove(a), None);
        }
    }
}
