//! The C and C++ heap's blocks (`mapileak_malloc` ... `mapileak_free`,
//! and through them `MAPILEAK_REPLACE_OPERATOR_NEW`), tracked, and the
//! quarantine that turns an over-release into a finding instead of a crash.
//!
//! Each block carries a header of [`HEADER`] bytes just before the
//! caller's pointer: its size, and a word with a check value, its state
//! and its alignment, so `mapileak_free` needs neither size nor alignment
//! and refuses what is not one of its blocks.
//!
//! **Quarantine.** A C++ provider's object ends with `delete this` in its
//! last `Release`. One `Release` too many then runs through freed memory:
//! a crash, or worse. `mapileak.hpp`'s `RefCount` tells the C ABI when it
//! is destroyed and where it lives ([`dying`]); when the block that holds
//! it is freed next on that thread, the block is not given back but kept,
//! its bytes intact, in a bounded quarantine (the last [`MAX_BLOCKS`]
//! such blocks, [`MAX_BYTES`] at most), and with it the count's handle. A
//! late `Release` through a stale pointer then reaches the dead count: it
//! returns 0, destroys nothing, and is an `over-release` finding. Blocks
//! that hold no count are freed at once, as before.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Bytes between the start of the system block and the caller's pointer,
/// at least: room for the size and the state word.
const HEADER: usize = 16;

/// The check value in a state word's upper bits ("mLK"): a block whose
/// word lacks it is not one of ours.
const MAGIC: usize = 0x6d_4c_4b;
/// States, in bits 6 and 7 of the word.
const LIVE: usize = 1;
const QUARANTINED: usize = 2;

/// Whether a block was ever made here: without (no operator new
/// replacement) no object's memory can be quarantined.
static IN_USE: AtomicBool = AtomicBool::new(false);

/// Whether the provider's heap comes through here.
pub(crate) fn in_use() -> bool {
    IN_USE.load(Ordering::Relaxed)
}

/// How many freed blocks that held a count are kept, at most.
pub(crate) const MAX_BLOCKS: usize = 4096;
/// How many bytes of them, at most.
pub(crate) const MAX_BYTES: usize = 16 << 20;

fn word(state: usize, align: usize) -> usize {
    MAGIC << 8 | state << 6 | align.trailing_zeros() as usize
}

/// The state word's parts: (state, alignment), or `None` when the word is
/// not ours.
fn parts(word: usize) -> Option<(usize, usize)> {
    (word >> 8 == MAGIC).then(|| ((word >> 6) & 3, 1 << (word & 63)))
}

/// A new block of `size` bytes aligned to `align` (a power of two), or
/// null.
pub(crate) fn allocate(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    if !IN_USE.load(Ordering::Relaxed) {
        IN_USE.store(true, Ordering::Relaxed);
    }
    let align = align.max(HEADER);
    let Some(layout) = size
        .checked_add(align)
        .and_then(|total| Layout::from_size_align(total, align).ok())
    else {
        return std::ptr::null_mut();
    };
    // SAFETY: `layout` has a non-zero size (at least `align`).
    let raw = unsafe {
        if zeroed {
            System.alloc_zeroed(layout)
        } else {
            System.alloc(layout)
        }
    };
    if raw.is_null() {
        return raw;
    }
    // SAFETY: `align` (>= HEADER) bytes into a block of `size + align`
    // bytes; the two header words lie in those first `align` bytes and are
    // `usize`-aligned (the block is `align`-aligned, `align` >= 16).
    let user = unsafe {
        let user = raw.add(align);
        user.cast::<usize>().sub(2).write(size);
        user.cast::<usize>().sub(1).write(word(LIVE, align));
        user
    };
    mapileak::track_alloc(user, size);
    user
}

/// The size of the live block at `user` (from [`allocate`]), or `None`
/// when it is not a live block of ours.
///
/// # Safety
///
/// `user` came from [`allocate`] (freed or not), or the 16 bytes before
/// it are readable.
pub(crate) unsafe fn size_of(user: *mut u8) -> Option<usize> {
    // SAFETY: the caller's promise: the header words are readable.
    let (size, word) = unsafe {
        (
            user.cast::<usize>().sub(2).read(),
            user.cast::<usize>().sub(1).read(),
        )
    };
    matches!(parts(word), Some((LIVE, _))).then_some(size)
}

/// Frees a block from [`allocate`]: at once, or into the quarantine when
/// it holds a count destroyed on this thread. A block already in the
/// quarantine (the destructor of an over-released object run a second
/// time) and a pointer without our check word are left alone.
///
/// # Safety
///
/// `user` came from [`allocate`] (freed or not), or the 16 bytes before it
/// are readable.
pub(crate) unsafe fn free(user: *mut u8) {
    // SAFETY: the caller's promise.
    let (size, word) = unsafe {
        (
            user.cast::<usize>().sub(2).read(),
            user.cast::<usize>().sub(1).read(),
        )
    };
    let Some((LIVE, align)) = parts(word) else {
        return;
    };
    mapileak::track_free(user, size);
    let handles = dying_within(user as usize, size);
    for &handle in &handles {
        // The object is gone, memory and all: a Logoff waiting for it (a
        // logon object's) reports now.
        crate::handle_gone(handle);
    }
    let block = Block {
        user: user as usize,
        size,
        align,
        handles,
    };
    if block.handles.is_empty() {
        // SAFETY: a live block of ours, freed once (its state says LIVE).
        unsafe { block.release() };
    } else {
        quarantine(block);
    }
}

/// A block of [`allocate`] on its way back to the system, with the count
/// handles that lived in it.
struct Block {
    user: usize,
    size: usize,
    align: usize,
    handles: Vec<usize>,
}

impl Block {
    /// Gives the memory back and frees the handles.
    ///
    /// # Safety
    ///
    /// A block of [`allocate`] not given back yet, and no one uses its
    /// handles any more.
    unsafe fn release(self) {
        for &handle in &self.handles {
            // SAFETY: the caller's promise: a handle of `mapileak_object_new`
            // destroyed and owned by this block alone.
            unsafe { crate::free_handle(handle) };
        }
        let user = self.user as *mut u8;
        // SAFETY: the block [`allocate`] made: `align` bytes before `user`,
        // `size + align` long, with this alignment.
        unsafe {
            user.cast::<usize>().sub(1).write(0);
            let layout = Layout::from_size_align_unchecked(self.size + self.align, self.align);
            System.dealloc(user.sub(self.align), layout);
        }
    }
}

struct Quarantine {
    blocks: VecDeque<Block>,
    bytes: usize,
}

static QUARANTINE: Mutex<Quarantine> = Mutex::new(Quarantine {
    blocks: VecDeque::new(),
    bytes: 0,
});

/// Keeps `block`, its bytes intact, and gives back the oldest blocks past
/// the bounds. Never waits long for the lock (process end may have ended
/// the thread holding it): then the block is given back at once.
fn quarantine(block: Block) {
    let user = block.user as *mut u8;
    let Some(mut q) = QUARANTINE.try_lock_for(Duration::from_millis(200)) else {
        // SAFETY: a live block of ours, freed once.
        unsafe { block.release() };
        return;
    };
    // SAFETY: the header of a live block of ours: now quarantined, so a
    // second free of it is recognized.
    unsafe {
        user.cast::<usize>()
            .sub(1)
            .write(word(QUARANTINED, block.align))
    };
    q.bytes += block.size;
    q.blocks.push_back(block);
    let mut out = Vec::new();
    while q.blocks.len() > MAX_BLOCKS || (q.bytes > MAX_BYTES && q.blocks.len() > 1) {
        let Some(old) = q.blocks.pop_front() else {
            break;
        };
        q.bytes -= old.size;
        out.push(old);
    }
    drop(q);
    for old in out {
        // SAFETY: out of the quarantine, so no one else has it; what
        // reaches it now through a stale pointer is the provider's
        // use-after-free, as without mapileak.
        unsafe { old.release() };
    }
}

/// How many destroyed counts a thread remembers until their block is freed.
const DYING: usize = 8;

/// The counts destroyed on this thread whose block has not been freed yet:
/// (handle, where the count lives).
struct Dying {
    slots: [(usize, usize); DYING],
    len: usize,
}

impl Drop for Dying {
    fn drop(&mut self) {
        for &(handle, _) in &self.slots[..self.len] {
            // SAFETY: destroyed handles no block took.
            unsafe { crate::free_handle(handle) };
        }
    }
}

thread_local! {
    static DYING_COUNTS: RefCell<Dying> = const {
        RefCell::new(Dying { slots: [(0, 0); DYING], len: 0 })
    };
}

/// The count `handle`, living at `at`, was destroyed: its block, freed
/// next on this thread, goes to the quarantine with it. A count that lives
/// in no block of ours (on the stack, in a global, in memory of another
/// allocator) is freed once [`DYING`] newer ones came.
pub(crate) fn dying(handle: usize, at: usize) {
    let evicted = DYING_COUNTS
        .try_with(|d| {
            let Ok(mut d) = d.try_borrow_mut() else {
                return Some(handle);
            };
            let mut evicted = None;
            if d.len == DYING {
                evicted = Some(d.slots[0].0);
                d.slots.copy_within(1.., 0);
                d.len -= 1;
            }
            let len = d.len;
            d.slots[len] = (handle, at);
            d.len += 1;
            evicted
        })
        .unwrap_or(Some(handle));
    if let Some(handle) = evicted {
        // SAFETY: a destroyed handle that no block took.
        unsafe { crate::free_handle(handle) };
    }
}

/// Takes the destroyed counts that live in `[user, user + size)`.
fn dying_within(user: usize, size: usize) -> Vec<usize> {
    DYING_COUNTS
        .try_with(|d| {
            let Ok(mut d) = d.try_borrow_mut() else {
                return Vec::new();
            };
            if d.len == 0 {
                return Vec::new();
            }
            let mut taken = Vec::new();
            let mut kept = 0;
            for i in 0..d.len {
                let (handle, at) = d.slots[i];
                if at >= user && at - user < size {
                    taken.push(handle);
                } else {
                    d.slots[kept] = (handle, at);
                    kept += 1;
                }
            }
            d.len = kept;
            taken
        })
        .unwrap_or_default()
}

/// How many blocks the quarantine holds, and their bytes (tests).
#[cfg(test)]
pub(crate) fn quarantined() -> (usize, usize) {
    let q = QUARANTINE.lock();
    (q.blocks.len(), q.bytes)
}
