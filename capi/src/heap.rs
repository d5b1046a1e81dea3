//! The C and C++ heap's blocks (`mapileak_malloc` ... `mapileak_free`,
//! and through them `MAPILEAK_REPLACE_OPERATOR_NEW`), tracked, and the
//! quarantine that turns an over-release into a finding instead of a crash.
//!
//! **Blocks of the C runtime.** Each block is a block of the C runtime's
//! own `malloc`, starting at the caller's pointer, so that legacy code that
//! frees a `new[]` block with a plain `free()` frees it correctly (mapileak
//! does not see that free: only `MAPILEAK_REPLACE_MALLOC` shows it, as an
//! `alloc-dealloc-mismatch`). A trailer at the block's end ([`TRAILER`]
//! bytes: a check word, the size, the state and what made it) tells ours
//! from the C runtime's other blocks, so `mapileak_free` of a block of
//! `strdup` goes to the C runtime's `free`, and a function that does not
//! pair with the block's maker is a finding. Blocks aligned beyond
//! `malloc`'s alignment (over-aligned C++ types) live inside a larger
//! block and are kept in a table.
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

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mapileak::sync::Mutex;

/// The C runtime's heap: the one the provider's own `malloc` and `free`
/// use, so that a block of ours freed with a plain `free()` is freed
/// correctly.
mod crt {
    use std::ffi::c_void;

    unsafe extern "C" {
        pub(super) fn malloc(size: usize) -> *mut c_void;
        pub(super) fn calloc(count: usize, size: usize) -> *mut c_void;
        pub(super) fn realloc(block: *mut c_void, size: usize) -> *mut c_void;
        pub(super) fn free(block: *mut c_void);
        #[cfg(windows)]
        fn _msize(block: *mut c_void) -> usize;
        #[cfg(all(unix, not(target_vendor = "apple")))]
        fn malloc_usable_size(block: *mut c_void) -> usize;
        #[cfg(target_vendor = "apple")]
        fn malloc_size(block: *const c_void) -> usize;
    }

    /// The bytes of a live block of `malloc`, from its start.
    ///
    /// # Safety
    ///
    /// `block` is a live block of this C runtime's `malloc`.
    pub(super) unsafe fn usable(block: *mut c_void) -> usize {
        // SAFETY: the caller's promise.
        unsafe {
            #[cfg(windows)]
            return _msize(block);
            #[cfg(all(unix, not(target_vendor = "apple")))]
            return malloc_usable_size(block);
            #[cfg(target_vendor = "apple")]
            return malloc_size(block);
        }
    }
}

/// The alignment the C runtime's `malloc` gives: larger ones take the
/// aligned path.
const DEFAULT_ALIGN: usize = 2 * std::mem::size_of::<usize>();

/// A plain block's trailer, at the end of the C runtime's block: a check
/// word (the block's address mixed with a constant), the caller's size,
/// and the block's record index (`track_alloc_indexed`), state and source.
const TRAILER: usize = 3 * std::mem::size_of::<usize>();
const CHECK: usize = 0x6d6c_6b5f_7472_6c72_u64 as usize; // "mlk_trlr"

/// States, in the trailer's third word (bits 4 to 7; the record index is
/// bits 8 and up, the source bits 0 and 1).
const LIVE: usize = 1;
/// Kept after its count's object was deleted (the over-release quarantine).
const QUARANTINED: usize = 2;
/// Freed lately, waiting in its thread's ring of recent frees.
const FREED: usize = 3;

/// What made a block; what frees it pairs with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `malloc`, `calloc`, `realloc`, `aligned_malloc`: `free`.
    Malloc = 0,
    /// `operator new`: `operator delete`.
    New = 1,
    /// `operator new[]`: `operator delete[]`.
    NewArray = 2,
}

impl Source {
    fn from_bits(bits: usize) -> Source {
        match bits & 3 {
            1 => Source::New,
            2 => Source::NewArray,
            _ => Source::Malloc,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Source::Malloc => "malloc",
            Source::New => "operator new",
            Source::NewArray => "operator new[]",
        }
    }

    /// The function that frees it.
    fn freed_by(self) -> &'static str {
        match self {
            Source::Malloc => "free",
            Source::New => "operator delete",
            Source::NewArray => "operator delete[]",
        }
    }
}

/// How many freed blocks that held a count are kept, at most.
pub(crate) const MAX_BLOCKS: usize = 4096;
/// How many bytes of them, at most.
pub(crate) const MAX_BYTES: usize = 16 << 20;

/// Whether a block was ever made here: without (no operator new
/// replacement) no object's memory can be quarantined.
static IN_USE: AtomicBool = AtomicBool::new(false);

/// Whether the provider's heap comes through here.
pub(crate) fn in_use() -> bool {
    IN_USE.load(Ordering::Relaxed)
}

/// Blocks aligned beyond what `malloc` gives live inside a larger block of
/// it, so a plain `free` could not take them: they are rare (over-aligned
/// C++ types), and kept in a table rather than with a trailer.
struct Aligned {
    /// The C runtime's block they live in.
    raw: usize,
    size: usize,
    align: usize,
    source: Source,
    state: usize,
    /// Its record's index (`track_alloc_indexed`).
    index: u32,
}

static ALIGNED: Mutex<AlignedTable> = Mutex::new(None);
/// The aligned blocks by user address (made at the first).
type AlignedTable = Option<HashMap<usize, Aligned>>;
/// How many entries `ALIGNED` has: most frees skip its lock.
static ALIGNED_LIVE: AtomicUsize = AtomicUsize::new(0);

/// How long a free waits for a lock of this module at most (process end
/// may have ended the thread holding it).
const WAIT: Duration = Duration::from_millis(200);

/// A new block of `size` bytes aligned to `align` (a power of two) for
/// `source`, or null.
pub(crate) fn allocate(size: usize, align: usize, zeroed: bool, source: Source) -> *mut u8 {
    if !IN_USE.load(Ordering::Relaxed) {
        IN_USE.store(true, Ordering::Relaxed);
    }
    if align > DEFAULT_ALIGN {
        allocate_aligned(size, align, zeroed, source)
    } else {
        allocate_plain(size, zeroed, source)
    }
}

/// A block of the C runtime of `size` bytes plus `extra`, zeroed or not;
/// null when out of memory (or the sum overflows).
fn crt_block(size: usize, extra: usize, zeroed: bool) -> *mut c_void {
    let Some(total) = size.checked_add(extra) else {
        return std::ptr::null_mut();
    };
    // SAFETY: plain calls of the C runtime's allocator.
    unsafe {
        if zeroed {
            crt::calloc(1, total)
        } else {
            crt::malloc(total)
        }
    }
}

fn allocate_plain(size: usize, zeroed: bool, source: Source) -> *mut u8 {
    let block = crt_block(size, TRAILER, zeroed);
    if block.is_null() {
        return std::ptr::null_mut();
    }
    let index = mapileak::track_alloc_indexed(block.cast(), size);
    // SAFETY: a live block of `malloc`, at least `total` bytes long.
    unsafe { write_trailer(block.cast(), crt::usable(block), size, LIVE, source, index) };
    block.cast()
}

fn allocate_aligned(size: usize, align: usize, zeroed: bool, source: Source) -> *mut u8 {
    let raw = crt_block(size, align, zeroed);
    if raw.is_null() {
        return std::ptr::null_mut();
    }
    let user = (raw as usize + align - 1) & !(align - 1);
    let index = mapileak::track_alloc_indexed(user as *const u8, size);
    crate::fork_safe();
    let Some(mut table) = ALIGNED.try_lock_for(WAIT) else {
        mapileak::track_free_indexed(user as *const u8, size, index);
        // SAFETY: the block just made, freed once.
        unsafe { crt::free(raw) };
        return std::ptr::null_mut();
    };
    table.get_or_insert_with(HashMap::new).insert(
        user,
        Aligned {
            raw: raw as usize,
            size,
            align,
            source,
            state: LIVE,
            index,
        },
    );
    ALIGNED_LIVE.fetch_add(1, Ordering::Relaxed);
    user as *mut u8
}

/// Writes a plain block's trailer.
///
/// # Safety
///
/// `block` is a live block of `malloc` with `usable` bytes, at least
/// `TRAILER` of them.
unsafe fn write_trailer(
    block: *mut u8,
    usable: usize,
    size: usize,
    state: usize,
    source: Source,
    index: u32,
) {
    // SAFETY: the caller's promise: the last TRAILER bytes of the block.
    unsafe {
        let at = block.add(usable - TRAILER).cast::<usize>();
        at.write_unaligned(CHECK ^ block as usize);
        at.add(1).write_unaligned(size);
        at.add(2)
            .write_unaligned((index as usize) << 8 | state << 4 | source as usize);
    }
}

/// What a pointer given to a free function is.
enum Found {
    /// One of ours, in a block of `malloc` with `usable` bytes.
    Plain {
        size: usize,
        source: Source,
        state: usize,
        usable: usize,
        index: u32,
    },
    /// One of ours, aligned to `align`, inside the block `raw`.
    Aligned {
        size: usize,
        align: usize,
        source: Source,
        state: usize,
        raw: usize,
        index: u32,
    },
    /// A block of the C runtime that is not ours (`strdup`'s, another
    /// library's): its own `free` takes it.
    Foreign,
    /// Not knowable now (a lock not free in time): left alone.
    Unknown,
    /// The C runtime says it is none of its blocks.
    NotAHeapBlock,
}

/// What `user` is.
///
/// # Safety
///
/// `user` is a live block of this C runtime's `malloc` (ours or not), or
/// an aligned block of ours (live or quarantined), or a plain block of
/// ours in the quarantine.
unsafe fn find(user: *mut u8) -> Found {
    if ALIGNED_LIVE.load(Ordering::Relaxed) > 0 {
        let Some(table) = ALIGNED.try_lock_for(WAIT) else {
            return Found::Unknown;
        };
        if let Some(a) = table.as_ref().and_then(|t| t.get(&(user as usize))) {
            return Found::Aligned {
                size: a.size,
                align: a.align,
                source: a.source,
                state: a.state,
                raw: a.raw,
                index: a.index,
            };
        }
    }
    // SAFETY: the caller's promise: a block of `malloc`.
    let usable = unsafe { crt::usable(user.cast()) };
    if usable == usize::MAX {
        // The C runtime's own answer for what is not its block (`_msize`).
        return Found::NotAHeapBlock;
    }
    if usable < TRAILER {
        return Found::Foreign;
    }
    // SAFETY: the last TRAILER bytes of that block.
    let (check, size, meta) = unsafe {
        let at = user.add(usable - TRAILER).cast::<usize>();
        (
            at.read_unaligned(),
            at.add(1).read_unaligned(),
            at.add(2).read_unaligned(),
        )
    };
    if check != CHECK ^ user as usize || size > usable - TRAILER {
        return Found::Foreign;
    }
    Found::Plain {
        size,
        source: Source::from_bits(meta),
        state: meta >> 4 & 0xf,
        usable,
        index: (meta >> 8) as u32,
    }
}

/// Frees `user` with the function `freed_with` names, as what made it
/// requires: ours at once, or into the quarantine when it holds a count
/// destroyed on this thread; a block of the C runtime that is not ours
/// with its `free`. A function that does not pair with the block's source
/// is an `alloc-dealloc-mismatch` finding (the block is freed correctly
/// all the same). A block already in the quarantine (the destructor of an
/// over-released object run a second time) is left alone.
///
/// # Safety
///
/// As [`find`].
pub(crate) unsafe fn free(user: *mut u8, freed_with: Source) {
    // SAFETY: the caller's promise.
    unsafe { free_as(user, freed_with, freed_with.freed_by()) }
}

/// [`free`], by the function `name` (which pairs as `freed_with` does):
/// `realloc` to 0 bytes frees, and its findings name it.
///
/// # Safety
///
/// As [`find`].
unsafe fn free_as(user: *mut u8, freed_with: Source, name: &'static str) {
    if !plausible(user) {
        crate::attributed(|| mapileak::bad_free(user as usize, name));
        return;
    }
    // SAFETY: the caller's promise.
    let (size, source, index, memory) = match unsafe { find(user) } {
        // (operator delete of a block of malloc included: without
        // MAPILEAK_REPLACE_MALLOC mapileak did not see that malloc.)
        Found::Foreign => {
            // SAFETY: the caller's promise: a live block of `malloc`.
            unsafe { crt::free(user.cast()) };
            return;
        }
        Found::Unknown => return,
        Found::NotAHeapBlock => {
            crate::attributed(|| mapileak::bad_free(user as usize, name));
            return;
        }
        Found::Plain {
            size, state: FREED, ..
        } => {
            crate::attributed(|| mapileak::double_free(size, name));
            return;
        }
        Found::Plain { state, .. } | Found::Aligned { state, .. } if state != LIVE => return,
        Found::Plain {
            size,
            source,
            usable,
            index,
            ..
        } => (size, source, index, Memory::Plain { usable }),
        Found::Aligned {
            size,
            source,
            raw,
            index,
            ..
        } => (size, source, index, Memory::Aligned { raw }),
    };
    if source != freed_with {
        crate::attributed(|| mapileak::dealloc_mismatch(size, source.name(), name));
    }
    mapileak::track_free_indexed(user, size, index);
    let handles = dying_within(user as usize, size);
    for &handle in &handles {
        // The object is gone, memory and all: a Logoff waiting for it (a
        // logon object's) reports now.
        crate::handle_gone(handle);
    }
    let block = Block {
        user: user as usize,
        size,
        source,
        memory,
        handles,
    };
    if block.handles.is_empty() {
        // SAFETY: a live block of ours, freed once (its state says LIVE).
        unsafe { block.retire() };
    } else {
        quarantine(block);
    }
}

/// Whether `user` can be a heap block at all: not a small number (the
/// first 64 KiB are never mapped), aligned as `malloc`'s blocks are. What
/// fails this is not read through.
fn plausible(user: *mut u8) -> bool {
    let at = user as usize;
    at >= 0x10000 && at.is_multiple_of(std::mem::align_of::<usize>())
}

/// `realloc` of `user` to `size` bytes: a new block of ours recorded at
/// the caller, the contents copied, the old one freed; a block of the C
/// runtime that is not ours goes to its `realloc`. Null, with `user`
/// untouched, when out of memory (or for a block freed already). To 0
/// bytes, `user` is freed and the answer is null, as the C runtimes of
/// Linux (glibc) and Windows do (legacy code frees that way; a block in
/// its place would be a leak the C runtime never has).
///
/// # Safety
///
/// As [`find`].
pub(crate) unsafe fn realloc(user: *mut u8, size: usize) -> *mut u8 {
    if size == 0 && cfg!(not(target_vendor = "apple")) {
        // SAFETY: the caller's promise (`free` takes what `realloc` takes).
        unsafe { free_as(user, Source::Malloc, "realloc") };
        return std::ptr::null_mut();
    }
    if !plausible(user) {
        crate::attributed(|| mapileak::bad_free(user as usize, "realloc"));
        return std::ptr::null_mut();
    }
    // SAFETY: the caller's promise.
    let (old, align) = match unsafe { find(user) } {
        // SAFETY: a live block of the C runtime's `malloc`.
        Found::Foreign => return unsafe { crt::realloc(user.cast(), size) }.cast(),
        Found::Plain {
            size, state: LIVE, ..
        } => (size, DEFAULT_ALIGN),
        // An aligned block stays as aligned.
        Found::Aligned {
            size,
            state: LIVE,
            align,
            ..
        } => (size, align),
        Found::Plain {
            size, state: FREED, ..
        } => {
            crate::attributed(|| mapileak::double_free(size, "realloc"));
            return std::ptr::null_mut();
        }
        Found::NotAHeapBlock => {
            crate::attributed(|| mapileak::bad_free(user as usize, "realloc"));
            return std::ptr::null_mut();
        }
        _ => return std::ptr::null_mut(),
    };
    let new = allocate(size, align, false, Source::Malloc);
    if !new.is_null() {
        // SAFETY: both blocks are live, distinct, and hold at least
        // `min(old, size)` bytes; then the old one is freed once.
        unsafe {
            std::ptr::copy_nonoverlapping(user, new, old.min(size));
            free(user, Source::Malloc);
        }
    }
    new
}

/// Where a block of ours lives.
enum Memory {
    /// At the start of a block of `malloc` with this many bytes.
    Plain { usable: usize },
    /// Inside the block of `malloc` at `raw`.
    Aligned { raw: usize },
}

/// A block of [`allocate`] on its way back to the C runtime, with the
/// count handles that lived in it.
struct Block {
    user: usize,
    size: usize,
    source: Source,
    memory: Memory,
    handles: Vec<usize>,
}

impl Block {
    /// Marks the block's state (quarantined, say), so a second free of it
    /// is recognized.
    fn set_state(&self, state: usize) {
        match self.memory {
            // SAFETY: the trailer of a block of ours not given back yet.
            Memory::Plain { usable } => unsafe {
                write_trailer(
                    self.user as *mut u8,
                    usable,
                    self.size,
                    state,
                    self.source,
                    0,
                )
            },
            Memory::Aligned { .. } => {
                if let Some(mut table) = ALIGNED.try_lock_for(WAIT)
                    && let Some(a) = table.as_mut().and_then(|t| t.get_mut(&self.user))
                {
                    a.state = state;
                }
            }
        }
    }

    /// A block freed now, holding no count: a plain one waits in this
    /// thread's ring of recent frees (so a second free of it is seen), an
    /// aligned one is given back.
    ///
    /// # Safety
    ///
    /// As [`Block::release`].
    unsafe fn retire(self) {
        match self.memory {
            // SAFETY: the caller's promise: a live block of ours, freed
            // once, `usable` bytes of `malloc`.
            Memory::Plain { usable }
                if unsafe { recent::keep(self.user, usable, self.size, self.source) } => {}
            // SAFETY: the caller's promise.
            _ => unsafe { self.release() },
        }
    }

    /// Gives the memory back and frees the handles.
    ///
    /// # Safety
    ///
    /// A block of [`allocate`] not given back yet, and no one uses its
    /// handles any more.
    #[inline]
    unsafe fn release(self) {
        for &handle in &self.handles {
            // SAFETY: the caller's promise: a handle of `mapileak_object_new`
            // destroyed and owned by this block alone.
            unsafe { crate::free_handle(handle) };
        }
        match self.memory {
            // SAFETY: a plain block of ours, given back once.
            Memory::Plain { usable } => unsafe { give_back(self.user, usable) },
            Memory::Aligned { raw } => {
                if let Some(mut table) = ALIGNED.try_lock_for(WAIT) {
                    if table.as_mut().and_then(|t| t.remove(&self.user)).is_some() {
                        ALIGNED_LIVE.fetch_sub(1, Ordering::Relaxed);
                    }
                    drop(table);
                    // SAFETY: the block of `malloc` it lived in, freed once.
                    unsafe { crt::free(raw as *mut c_void) };
                }
            }
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

#[cfg(unix)]
static HELD_FOR_FORK: mapileak::sync::ForkHeld<(
    mapileak::sync::MutexGuard<'static, AlignedTable>,
    mapileak::sync::MutexGuard<'static, Quarantine>,
)> = mapileak::sync::ForkHeld::new();

/// Takes this module's locks and keeps them until `release_after_fork` (before `fork`;
/// see `crate::fork_safe`).
#[cfg(unix)]
pub(crate) fn hold_for_fork() {
    let held = (ALIGNED.lock(), QUARANTINE.lock());
    // SAFETY: guards of locks just taken, which every user of the slot
    // takes first.
    unsafe { HELD_FOR_FORK.keep(held) };
}

/// Releases what [`hold_for_fork`] took (after `fork`).
#[cfg(unix)]
pub(crate) fn release_after_fork() {
    // SAFETY: the thread of `hold_for_fork`, still holding its locks.
    drop(unsafe { HELD_FOR_FORK.take() });
}

/// Holds the quarantine's lock for `wait`, calling `held` once it is held
/// (fault injection for the `fork` tests).
#[cfg(feature = "test-hooks")]
pub(crate) fn hold_quarantine_for(wait: Duration, held: &dyn Fn()) {
    let _q = QUARANTINE.lock();
    held();
    std::thread::sleep(wait);
}

/// Keeps `block`, its bytes intact, and gives back the oldest blocks past
/// the bounds. Never waits long for the lock (process end may have ended
/// the thread holding it): then the block is given back at once.
fn quarantine(block: Block) {
    crate::fork_safe();
    let Some(mut q) = QUARANTINE.try_lock_for(WAIT) else {
        // SAFETY: a live block of ours, freed once.
        unsafe { block.release() };
        return;
    };
    block.set_state(QUARANTINED);
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
    /// Whether `DYING_COUNTS` holds any: most frees look at this alone.
    static ANY_DYING: Cell<bool> = const { Cell::new(false) };
}

/// The count `handle`, living at `at`, was destroyed: its block, freed
/// next on this thread, goes to the quarantine with it. A count that lives
/// in no block of ours (on the stack, in a global, in memory of another
/// allocator) is freed once [`DYING`] newer ones came.
///
/// # Safety
///
/// `handle` is a live handle (`Box::into_raw`) the caller does not use or
/// free again: it is freed here, or with the block that holds it.
pub(crate) unsafe fn dying(handle: usize, at: usize) {
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
            let _ = ANY_DYING.try_with(|a| a.set(true));
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
    if !ANY_DYING.try_with(Cell::get).unwrap_or(false) {
        return Vec::new();
    }
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
            if kept == 0 {
                let _ = ANY_DYING.try_with(|a| a.set(false));
            }
            taken
        })
        .unwrap_or_default()
}

/// Each thread's ring of recent frees: a plain block freed on a thread is
/// given back to the C runtime only after [`recent::BLOCKS`] later frees
/// (or [`recent::BYTES`] of them) on that thread, marked freed meanwhile, so
/// a second free of it is a `heap-double-free` finding and not the C
/// runtime's heap corruption or abort.
mod recent {
    use std::cell::RefCell;

    /// Blocks a thread keeps, at most.
    pub(super) const BLOCKS: usize = 64;
    /// Their bytes, at most.
    pub(super) const BYTES: usize = 256 << 10;

    struct Ring {
        /// (address, usable bytes), oldest at `head`.
        slots: [(usize, usize); BLOCKS],
        head: usize,
        len: usize,
        bytes: usize,
    }

    impl Ring {
        fn pop(&mut self) -> Option<(usize, usize)> {
            if self.len == 0 {
                return None;
            }
            let out = self.slots[self.head];
            self.head = (self.head + 1) % BLOCKS;
            self.len -= 1;
            self.bytes -= out.1;
            Some(out)
        }
    }

    impl Drop for Ring {
        fn drop(&mut self) {
            while let Some((user, usable)) = self.pop() {
                // SAFETY: kept by this ring alone since its free.
                unsafe { super::give_back(user, usable) };
            }
        }
    }

    thread_local! {
        static RING: RefCell<Ring> = const {
            RefCell::new(Ring { slots: [(0, 0); BLOCKS], head: 0, len: 0, bytes: 0 })
        };
    }

    /// Keeps the freed block `user` (`usable` bytes of `malloc`), marked
    /// freed; gives back the oldest past the bounds. `false`, keeping
    /// nothing, when this thread's ring is gone (its end): give it back now.
    ///
    /// # Safety
    ///
    /// `user` is a live block of ours (of `usable` bytes of the C runtime's
    /// `malloc`), freed once: its trailer is written here.
    pub(super) unsafe fn keep(
        user: usize,
        usable: usize,
        size: usize,
        source: super::Source,
    ) -> bool {
        RING.try_with(|ring| {
            let Ok(mut ring) = ring.try_borrow_mut() else {
                return false;
            };
            // SAFETY: a live block of ours, freed once: now marked freed.
            unsafe {
                super::write_trailer(user as *mut u8, usable, size, super::FREED, source, 0);
            }
            if ring.len == BLOCKS
                && let Some((old, old_usable)) = ring.pop()
            {
                // SAFETY: out of the ring, kept by it alone until now.
                unsafe { super::give_back(old, old_usable) };
            }
            let at = (ring.head + ring.len) % BLOCKS;
            ring.slots[at] = (user, usable);
            ring.len += 1;
            ring.bytes += usable;
            while ring.bytes > BYTES && ring.len > 1 {
                if let Some((old, old_usable)) = ring.pop() {
                    // SAFETY: as above.
                    unsafe { super::give_back(old, old_usable) };
                }
            }
            true
        })
        .unwrap_or(false)
    }
}

/// Gives a plain block back to the C runtime, its check word cleared so
/// that a block the C runtime later makes there for someone else (`strdup`)
/// is not taken for ours (freed already: a false `heap-double-free`, and
/// the block never freed).
///
/// # Safety
///
/// A plain block of ours with `usable` bytes, not given back yet, used by
/// no one.
unsafe fn give_back(user: usize, usable: usize) {
    const WORD: usize = std::mem::size_of::<usize>();
    // SAFETY: the caller's promise. Volatile, as a byte array (the trailer
    // need not be aligned): to the optimizer a store just before `free` is
    // dead, and an ordinary one was dropped from optimized builds.
    unsafe {
        let check = (user as *mut u8).add(usable - TRAILER).cast::<[u8; WORD]>();
        std::ptr::write_volatile(check, [0; WORD]);
        crt::free(user as *mut c_void);
    }
}

/// How many blocks the quarantine holds, and their bytes (tests).
#[cfg(test)]
pub(crate) fn quarantined() -> (usize, usize) {
    let q = QUARANTINE.lock();
    (q.blocks.len(), q.bytes)
}
