//! The live table: attributed blocks by address, in fixed static memory.
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

const SHARDS: usize = 64;
const PER_SHARD: usize = 1 << 14;
const MASK: usize = PER_SHARD - 1;
/// The longest probe run: an insert that finds no free slot within it gives
/// up (the block is counted as untracked), and a lookup stops there.
const PROBE: usize = 32;
/// A lookup that had to look this far asks for a sweep.
const LONG: usize = 8;
/// A sweep that freed fewer slots than this was not worth it: the shard is
/// full of live blocks. The next ones wait [`COOLDOWN`] inserts.
const WORTH: u32 = (PER_SHARD / 64) as u32;
const COOLDOWN: u32 = 4096;

const EMPTY: usize = 0;
const TOMB: usize = 1;

/// Set at the first insert and never cleared: until then, frees need not
/// look in the table at all.
pub(super) static ANY: AtomicBool = AtomicBool::new(false);

struct Shard {
    lock: AtomicBool,
    /// Set by a lookup that probed [`LONG`] slots or more: the shard's next
    /// insert sweeps its tombstones.
    dirty: AtomicBool,
    /// Dirty inserts to go before `dirty` is heeded again (under the lock).
    cooldown: AtomicU32,
    keys: [AtomicUsize; PER_SHARD],
    /// `session << 32 | stack`, and the block's size, beside each key.
    origin: [AtomicU64; PER_SHARD],
    size: [AtomicU64; PER_SHARD],
}

static TABLE: [Shard; SHARDS] = [const {
    Shard {
        lock: AtomicBool::new(false),
        dirty: AtomicBool::new(false),
        cooldown: AtomicU32::new(0),
        keys: [const { AtomicUsize::new(EMPTY) }; PER_SHARD],
        origin: [const { AtomicU64::new(0) }; PER_SHARD],
        size: [const { AtomicU64::new(0) }; PER_SHARD],
    }
}; SHARDS];

/// A held shard lock: an atomic flag, so waiting never parks (parking can
/// allocate), and nothing in the allocator hook can deadlock on it.
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

fn home(addr: usize) -> (&'static Shard, usize) {
    let h = ((addr >> 4) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (&TABLE[(h >> 58) as usize], (h as usize) & MASK)
}

/// Records a live block; `false` when its probe run has no room.
#[inline(always)]
pub(super) fn insert(addr: usize, session: u32, stack: u32, size: u64) -> bool {
    if !ANY.load(Ordering::Relaxed) {
        ANY.store(true, Ordering::Relaxed);
    }
    let (shard, home) = home(addr);
    let guard = shard.lock();
    if shard.dirty.load(Ordering::Relaxed) {
        maybe_sweep(&guard);
    }
    for k in 0..PROBE {
        let i = (home + k) & MASK;
        // Acquire: a remove's reads of this slot come before its tombstone.
        let key = shard.keys[i].load(Ordering::Acquire);
        if key == EMPTY || key == TOMB {
            shard.origin[i].store(
                u64::from(session) << 32 | u64::from(stack),
                Ordering::Relaxed,
            );
            shard.size[i].store(size, Ordering::Relaxed);
            // Release: whoever finds the key finds the data.
            shard.keys[i].store(!addr, Ordering::Release);
            return true;
        }
    }
    false
}

/// Removes `addr`; returns its `(session, stack, size)` if it was there.
/// Call it only for a block this thread is freeing (or moving).
pub(super) fn remove(addr: usize) -> Option<(u32, u32, u64)> {
    let (shard, home) = home(addr);
    let want = !addr;
    for k in 0..PROBE {
        let i = (home + k) & MASK;
        let key = shard.keys[i].load(Ordering::Acquire);
        if key == want {
            if k >= LONG {
                shard.dirty.store(true, Ordering::Relaxed);
            }
            let origin = shard.origin[i].load(Ordering::Relaxed);
            let size = shard.size[i].load(Ordering::Relaxed);
            // Nobody else writes a live key: inserts take only EMPTY and
            // TOMB slots, and only this block's freer removes it.
            shard.keys[i].store(TOMB, Ordering::Release);
            return Some(((origin >> 32) as u32, origin as u32, size));
        }
        if key == EMPTY {
            if k >= LONG {
                shard.dirty.store(true, Ordering::Relaxed);
            }
            return None;
        }
    }
    shard.dirty.store(true, Ordering::Relaxed);
    None
}

/// Sweeps a dirty shard, unless a recent sweep found it full of live blocks.
#[cold]
fn maybe_sweep(locked: &Locked<'_>) {
    let cooldown = &locked.0.cooldown;
    match cooldown.load(Ordering::Relaxed) {
        0 => sweep(locked),
        n => cooldown.store(n - 1, Ordering::Relaxed),
    }
}

/// Turns into EMPTY every tombstone that no live key's probe run crosses.
fn sweep(locked: &Locked<'_>) {
    let shard = locked.0;
    shard.dirty.store(false, Ordering::Relaxed);
    // One bit per slot: crossed by some live key's run. On the stack (2 KiB):
    // nothing here allocates.
    let mut crossed = [0u64; PER_SHARD / 64];
    for (at, key) in shard.keys.iter().enumerate() {
        let key = key.load(Ordering::Acquire);
        if key == EMPTY || key == TOMB {
            continue;
        }
        let mut i = home(!key).1;
        while i != at {
            crossed[i / 64] |= 1 << (i % 64);
            i = (i + 1) & MASK;
        }
    }
    // A key removed since it was seen only leaves its run marked: the sweep
    // errs towards keeping a tombstone. Inserts wait for the lock we hold.
    let mut freed = 0u32;
    for (at, key) in shard.keys.iter().enumerate() {
        if crossed[at / 64] & (1 << (at % 64)) == 0 && key.load(Ordering::Relaxed) == TOMB {
            key.store(EMPTY, Ordering::Relaxed);
            freed += 1;
        }
    }
    if freed < WORTH {
        shard.cooldown.store(COOLDOWN, Ordering::Relaxed);
    }
}

/// Visits every live entry as `(address, session, stack, size)`, one shard
/// at a time.
pub(super) fn for_each(mut f: impl FnMut(usize, u32, u32, u64)) {
    if !ANY.load(Ordering::Relaxed) {
        return;
    }
    for shard in &TABLE {
        let _g = shard.lock();
        for (i, key) in shard.keys.iter().enumerate() {
            let key = key.load(Ordering::Acquire);
            if key != EMPTY && key != TOMB {
                let origin = shard.origin[i].load(Ordering::Relaxed);
                f(
                    !key,
                    (origin >> 32) as u32,
                    origin as u32,
                    shard.size[i].load(Ordering::Relaxed),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses that all land in one shard, from one home slot on.
    fn crowd(n: usize) -> Vec<usize> {
        let (shard, slot) = home(0x7f00_0000_0000);
        (0..)
            .map(|i| 0x7f00_0000_0000 + i * 16)
            .filter(|&a| {
                let (s, h) = home(a);
                std::ptr::eq(s, shard) && h == slot
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
        let (shard, _) = home(addrs[0]);
        sweep(&shard.lock());
        for (i, &a) in addrs[..PROBE].iter().enumerate().skip(1).step_by(2) {
            assert_eq!(remove(a), Some((7, i as u32 + 1, 16)), "entry {i}");
        }
        // Nothing live crosses the run now: the sweep empties it all.
        sweep(&shard.lock());
        let (_, slot) = home(addrs[0]);
        for k in 0..PROBE {
            let key = shard.keys[(slot + k) & MASK].load(Ordering::Relaxed);
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
        let theirs = home(0x7f00_0000_0000).0;
        let base = (1..)
            .map(|k| 0x7e00_0000_0000 + k * 0x1000)
            .find(|&b| !std::ptr::eq(home(b).0, theirs))
            .unwrap();
        let (shard, slot) = home(base);
        let addrs: Vec<usize> = (0..)
            .map(|i| base + i * 16)
            .filter(|&a| {
                let (s, h) = home(a);
                std::ptr::eq(s, shard) && h.wrapping_sub(slot) & MASK < 8
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
