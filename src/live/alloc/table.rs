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
//! A remove does not always give its slot up: the freeing thread keeps
//! the last few it emptied, key and all, marked [`HELD`] (see [`held`]). A
//! heap hands a freed block's address out again soon, often to the thread
//! that freed it; that thread's next block there then goes back into the
//! slot it held, without the lock (the slot is its alone: inserts pass over
//! it, removes and visits do not take a held entry for a live one).
//!
//! Invariants: a live key sits at most [`PROBE`] slots after its home slot,
//! and no slot between its home and it is EMPTY. Removes never write EMPTY,
//! and the sweep writes it only where no live key's run passes, so a remove
//! always finds its key. Lookups stop at the first EMPTY slot; the sweep keeps
//! tombstones from lengthening them. Keys are stored inverted (`!addr`), so
//! leak checkers (valgrind, LeakSanitizer) do not take them for references.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::spin;
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
/// The origin of a slot a thread holds: its key is the address of a block
/// that thread freed, no longer live. (Session ids count up from 1 and stack
/// ids stay far below `u32::MAX`: no live block has this origin.)
const HELD: u64 = u64::MAX;

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
    /// The index of the shard's first slot in the whole table.
    first: usize,
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
        spin::lock(&self.shard.lock);
        Locked(self)
    }

    /// [`Part::lock`], given up after `wait`.
    fn try_lock_for(self, wait: std::time::Duration) -> Option<Locked> {
        spin::lock_within(&self.shard.lock, wait).then_some(Locked(self))
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        spin::unlock(&self.0.shard.lock);
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
        first,
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
    let origin = u64::from(session) << 32 | u64::from(stack);
    if let Some(slot) = held::reuse(addr).and_then(|i| all.get(i)) {
        // A slot this thread held for `addr`: its key is `!addr` already
        // and only this thread writes it, so no lock. Release: whoever finds
        // the origin live finds the size.
        slot.size.store(size, Ordering::Relaxed);
        slot.origin.store(origin, Ordering::Release);
        return true;
    }
    insert_locked(all, shift, addr, origin, size)
}

/// [`insert`] into a free slot of `addr`'s probe run, under its shard's lock.
#[inline(never)]
fn insert_locked(all: &'static [Slot], shift: u32, addr: usize, origin: u64, size: u64) -> bool {
    let (part, home) = home(all, shift, addr);
    let guard = part.lock();
    if part.shard.dirty.load(Ordering::Relaxed) {
        maybe_sweep(&guard);
    }
    let mask = part.mask();
    for k in 0..PROBE {
        let at = (home + k) & mask;
        let slot = &part.slots[at];
        // Acquire: a remove's reads of this slot come before its tombstone.
        let key = slot.key.load(Ordering::Acquire);
        if key == EMPTY || key == TOMB {
            slot.size.store(size, Ordering::Relaxed);
            // Release: a remove that reads this origin where it read a key
            // held before reads the slot's key anew (see `take_live`).
            slot.origin.store(origin, Ordering::Release);
            // Release: whoever finds the key finds the data.
            slot.key.store(!addr, Ordering::Release);
            drop(guard);
            held::put(addr, part.first + at);
            return true;
        }
    }
    false
}

/// Removes `addr`; returns its `(session, stack, size)` if it was there.
/// Call it only for a block this thread is freeing (or moving).
#[inline(always)]
pub(super) fn remove(addr: usize) -> Option<(u32, u32, u64)> {
    let (all, shift) = SLOTS.get_pow2()?;
    // The block this thread put in last is most often the one it frees
    // next: its slot, if its entry is still there (another thread may have
    // freed it and its slot been taken since).
    if let Some((index, slot)) = held::last_live(addr).and_then(|i| Some((i, all.get(i)?)))
        && slot.key.load(Ordering::Acquire) == !addr
        && let Some(found) = take_live(slot, index, addr)
    {
        return Some(found);
    }
    // Most blocks freed were never recorded (counted only): an EMPTY home
    // slot says so without the probe (no live key sits past an EMPTY slot
    // in its run, and a run starts at its home).
    let (part, home) = home(all, shift, addr);
    let first = &part.slots[home];
    match first.key.load(Ordering::Acquire) {
        EMPTY => return None,
        // A thread holds the home slot for `addr` (whose block this thread
        // frees now, so one it freed before), and the run ends after it: a
        // block recorded once and now freed unrecorded, as a heap reuses
        // addresses. The same answer as the probe's, without it.
        key if key == !addr
            && first.origin.load(Ordering::Acquire) == HELD
            && part.slots[(home + 1) & part.mask()]
                .key
                .load(Ordering::Acquire)
                == EMPTY =>
        {
            return None;
        }
        _ => {}
    }
    remove_probing(part, home, addr)
}

/// [`remove`], looking for the entry along `addr`'s probe run, which
/// starts at slot `home` of `part`.
#[inline(never)]
fn remove_probing(part: Part, home: usize, addr: usize) -> Option<(u32, u32, u64)> {
    let want = !addr;
    let mask = part.mask();
    for k in 0..PROBE {
        let at = (home + k) & mask;
        let slot = &part.slots[at];
        let key = slot.key.load(Ordering::Acquire);
        if key == want {
            let Some(found) = take_live(slot, part.first + at, addr) else {
                continue;
            };
            if k >= LONG {
                part.shard.dirty.store(true, Ordering::Relaxed);
            }
            return Some(found);
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

/// Takes `addr`'s live entry out of `slot` (table index `index`), whose key
/// was just read as `!addr`: held for the thread's next block there, or
/// given up. `None` when the slot is not `addr`'s live entry after all.
#[inline(always)]
fn take_live(slot: &Slot, index: usize, addr: usize) -> Option<(u32, u32, u64)> {
    let origin = slot.origin.load(Ordering::Acquire);
    // A slot some thread holds for this address is not the live entry; nor
    // is one that thread gave up and another insert took while we read (its
    // origin is newer than the key we read, and the key then is too).
    if origin == HELD || slot.key.load(Ordering::Relaxed) != !addr {
        return None;
    }
    let size = slot.size.load(Ordering::Relaxed);
    // Nobody else writes a live entry: inserts take only EMPTY and TOMB
    // slots, and only this block's freer removes it.
    if held::hold(addr, index) {
        slot.origin.store(HELD, Ordering::Relaxed);
    } else {
        slot.key.store(TOMB, Ordering::Release);
    }
    Some(((origin >> 32) as u32, origin as u32, size))
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
    let Part { shard, slots, .. } = locked.0;
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
        spin::lock(&shard.lock);
    }
}

/// Releases what [`lock_all_for_fork`] took (after `fork`, in the parent
/// and in the child).
#[cfg(unix)]
pub(crate) fn unlock_all_after_fork() {
    for shard in &SHARD {
        spin::unlock(&shard.lock);
    }
}

/// Runs `f` holding the first shard's lock (fault injection: see
/// `testing`), the table reserved first if it was not.
#[cfg(feature = "test-hooks")]
pub(crate) fn with_shard_locked(f: impl FnOnce()) {
    let _ = SLOTS.get_or_map(slots_wanted);
    let shard = &SHARD[0];
    spin::lock(&shard.lock);
    f();
    spin::unlock(&shard.lock);
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
            first: n * per,
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
                let origin = slot.origin.load(Ordering::Acquire);
                if origin == HELD {
                    continue;
                }
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

/// The slots a thread holds, each kept for a block at the address whose
/// entry it had: the one it used last, and up to [`held::WAYS`] before.
///
/// A held slot's key stays `!addr` and its origin is [`HELD`]: inserts
/// pass over it as taken, removes and visits as not live, and the sweep
/// counts its key's probe run as live (so the key stays findable from its
/// home slot when the thread puts a block there again). Only the holding
/// thread writes a held slot: to make it live again (origin and size), or
/// to give it up (TOMB), when it holds newer ones instead or ends.
mod held {
    use std::cell::Cell;
    use std::sync::atomic::Ordering;

    use super::{SLOTS, TOMB};

    /// Older slots a thread holds at most.
    pub(super) const WAYS: usize = 8;

    /// A thread's slots. All cells: the allocator hook may run again on the
    /// same thread (a thread-local destructor registered here allocates).
    struct Held {
        /// The slot this thread used last (its address 0: none), with
        /// `last_live` when the thread put the address's block in it (it may
        /// have been freed elsewhere since), else held for it.
        last: [Cell<usize>; 2],
        last_live: Cell<bool>,
        /// Older held slots: addresses (0: none) and slot indexes.
        addrs: [Cell<usize>; WAYS],
        indexes: [Cell<usize>; WAYS],
        /// The next way to fill, or [`UNREGISTERED`] or [`CLOSED`].
        next: Cell<usize>,
    }

    thread_local! {
        static HELD: Held = const {
            Held {
                last: [const { Cell::new(0) }; 2],
                last_live: Cell::new(false),
                addrs: [const { Cell::new(0) }; WAYS],
                indexes: [const { Cell::new(0) }; WAYS],
                next: Cell::new(UNREGISTERED),
            }
        };
        /// Gives the thread's slots up when it ends.
        static GIVE_UP: GiveUp = const { GiveUp };
    }

    /// No slot held yet (the destructor that gives them up not registered).
    const UNREGISTERED: usize = usize::MAX;
    /// The thread gave its slots up: it holds no more.
    const CLOSED: usize = usize::MAX - 1;

    /// A slot this thread holds for `addr`, now live again (the caller
    /// fills it in).
    #[inline(always)]
    pub(super) fn reuse(addr: usize) -> Option<usize> {
        HELD.try_with(|h| {
            if h.last[0].get() == addr && !h.last_live.get() && addr != 0 {
                h.last_live.set(true);
                return Some(h.last[1].get());
            }
            reuse_older(h, addr)
        })
        .ok()
        .flatten()
    }

    #[inline(never)]
    fn reuse_older(h: &Held, addr: usize) -> Option<usize> {
        if addr == 0 {
            return None;
        }
        let way = h.addrs.iter().position(|a| a.get() == addr)?;
        h.addrs[way].set(0);
        let index = h.indexes[way].get();
        set_last(h, addr, index, true);
        Some(index)
    }

    /// Notes that this thread put `addr`'s block in slot `index`.
    pub(super) fn put(addr: usize, index: usize) {
        let _ = HELD.try_with(|h| set_last(h, addr, index, true));
    }

    /// The slot this thread put `addr`'s block in, if it was its last.
    #[inline(always)]
    pub(super) fn last_live(addr: usize) -> Option<usize> {
        HELD.try_with(|h| (h.last[0].get() == addr && h.last_live.get()).then(|| h.last[1].get()))
            .ok()
            .flatten()
    }

    /// Holds slot `index`, which had `addr`'s entry; `false` when the
    /// thread cannot hold slots (it is ending): the caller gives it up.
    #[inline(always)]
    pub(super) fn hold(addr: usize, index: usize) -> bool {
        HELD.try_with(|h| {
            let open = match h.next.get() {
                CLOSED => false,
                UNREGISTERED => register(h),
                _ => true,
            };
            if open {
                set_last(h, addr, index, false);
            }
            open
        })
        .unwrap_or(false)
    }

    /// Registers the destructor that gives this thread's slots up, once.
    /// It may allocate: nothing is held yet, and no lock is.
    #[cold]
    fn register(h: &Held) -> bool {
        if GIVE_UP.try_with(|_| ()).is_err() {
            h.next.set(CLOSED);
            return false;
        }
        h.next.set(0);
        true
    }

    /// Makes `(addr, index)` the last slot used; a held one it replaces
    /// goes to the older ways, whose oldest is given up if all are taken.
    #[inline(always)]
    fn set_last(h: &Held, addr: usize, index: usize, live: bool) {
        let was = h.last[0].replace(addr);
        let was_index = h.last[1].replace(index);
        let was_live = h.last_live.replace(live);
        // (The same slot again when the thread reuses its last held one.)
        if was != 0 && !was_live && was_index != index {
            keep_older(h, was, was_index);
        }
    }

    #[inline(never)]
    fn keep_older(h: &Held, addr: usize, index: usize) {
        let way = h.next.get();
        if way >= WAYS {
            // Not registered, or closed: nothing can be held.
            give_up(index);
            return;
        }
        if h.addrs[way].get() != 0 {
            give_up(h.indexes[way].get());
        }
        h.addrs[way].set(addr);
        h.indexes[way].set(index);
        h.next.set((way + 1) % WAYS);
    }

    /// Turns a held slot into a tombstone, for inserts to take.
    fn give_up(index: usize) {
        if let Some(slot) = SLOTS.get().and_then(|all| all.get(index)) {
            slot.key.store(TOMB, Ordering::Release);
        }
    }

    struct GiveUp;

    impl Drop for GiveUp {
        fn drop(&mut self) {
            let _ = HELD.try_with(|h| {
                h.next.set(CLOSED);
                let last = h.last[0].replace(0);
                if last != 0 && !h.last_live.get() {
                    give_up(h.last[1].get());
                }
                for (a, i) in h.addrs.iter().zip(&h.indexes) {
                    if a.replace(0) != 0 {
                        give_up(i.get());
                    }
                }
            });
        }
    }
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
        let (shard, _) = at(addrs[0]);
        let first = addrs[0];
        // On a thread of its own: the slots it holds are given up when it
        // ends.
        std::thread::spawn(move || {
            for (i, &a) in addrs[..PROBE].iter().enumerate() {
                assert!(insert(a, 7, i as u32 + 1, 16), "slot {i}");
            }
            assert!(!insert(addrs[PROBE], 7, 99, 16), "a full run refuses");
            // Every other entry goes: tombstones (and held slots) in front
            // of live keys.
            for &a in addrs[..PROBE].iter().step_by(2) {
                assert!(remove(a).is_some());
            }
            assert_eq!(remove(addrs[0]), None, "removed once");
            sweep(&shard.lock());
            for (i, &a) in addrs[..PROBE].iter().enumerate().skip(1).step_by(2) {
                assert_eq!(remove(a), Some((7, i as u32 + 1, 16)), "entry {i}");
            }
        })
        .join()
        .unwrap();
        // Nothing live crosses the run now, and nothing is held: the sweep
        // empties it all.
        sweep(&shard.lock());
        let (_, slot) = at(first);
        for k in 0..PROBE {
            let key = shard.slots[(slot + k) & shard.mask()]
                .key
                .load(Ordering::Relaxed);
            assert_eq!(key, EMPTY, "slot {k}");
        }
    }

    /// The slots of `a`'s shard whose key is `a`'s, as `(index, held)`.
    fn slots_of(a: usize) -> Vec<(usize, bool)> {
        let (part, _) = at(a);
        (0..part.slots.len())
            .filter(|&i| part.slots[i].key.load(Ordering::Acquire) == !a)
            .map(|i| {
                let held = part.slots[i].origin.load(Ordering::Acquire) == HELD;
                (part.first + i, held)
            })
            .collect()
    }

    /// Whether a visit of the table finds `a` live, with `origin`.
    fn visited(a: usize) -> Option<(u32, u32, u64)> {
        let mut found = None;
        for_each(|addr, session, stack, size| {
            if addr == a {
                assert!(found.is_none(), "{a:#x} live twice");
                found = Some((session, stack, size));
            }
        });
        found
    }

    #[test]
    fn a_freed_blocks_slot_is_held_for_its_address_and_given_up_at_thread_end() {
        // An address no other test uses, on threads of their own.
        let a = HIGH + 0x10_0000;
        let b = HIGH + 0x10_1000;
        std::thread::spawn(move || {
            assert!(insert(a, 5, 1, 16));
            let [(slot, false)] = slots_of(a)[..] else {
                panic!("one live slot: {:?}", slots_of(a));
            };
            assert_eq!(remove(a), Some((5, 1, 16)));
            // Held: its key stays, but it is not live to a remove or a visit.
            assert_eq!(slots_of(a), [(slot, true)]);
            assert_eq!(remove(a), None, "removed once");
            assert_eq!(visited(a), None);
            // Another thread's block at the same address takes a slot of its
            // own, and its thread gives that up when it ends.
            std::thread::spawn(move || {
                assert!(insert(a, 6, 2, 32));
                assert_eq!(visited(a), Some((6, 2, 32)));
                assert_eq!(remove(a), Some((6, 2, 32)));
            })
            .join()
            .unwrap();
            assert_eq!(slots_of(a), [(slot, true)], "the other thread's given up");
            // This thread's next block there goes back into the held slot,
            // found by a remove on any thread.
            assert!(insert(a, 7, 3, 48));
            assert_eq!(slots_of(a), [(slot, false)]);
            assert_eq!(visited(a), Some((7, 3, 48)));
            std::thread::spawn(move || assert_eq!(remove(a), Some((7, 3, 48))))
                .join()
                .unwrap();
            assert_eq!(remove(a), None);
            // Held slots for other addresses, then the thread ends.
            assert!(insert(b, 8, 4, 8));
            assert_eq!(remove(b), Some((8, 4, 8)));
            assert_eq!(slots_of(b).len(), 1);
        })
        .join()
        .unwrap();
        assert_eq!(slots_of(a), [], "given up at thread end");
        assert_eq!(slots_of(b), [], "given up at thread end");
    }

    #[test]
    fn a_free_finds_a_live_entry_past_the_slot_its_thread_holds() {
        let a = HIGH + 0x10_2000;
        std::thread::spawn(move || {
            assert!(insert(a, 5, 1, 16));
            assert_eq!(remove(a), Some((5, 1, 16)));
            let (part, home) = at(a);
            assert_eq!(slots_of(a), [(part.first + home, true)], "held at home");
            // A block recorded once, freed, then allocated and freed
            // unrecorded: nothing to find, past the held slot either.
            assert_eq!(remove(a), None);
            // Another thread's block there, freed here: its entry is the
            // one after the held slot.
            std::thread::spawn(move || assert!(insert(a, 6, 2, 32)))
                .join()
                .unwrap();
            assert_eq!(remove(a), Some((6, 2, 32)), "found past the held slot");
            assert_eq!(remove(a), None);
        })
        .join()
        .unwrap();
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
