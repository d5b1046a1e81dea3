//! Stack capture: raw return addresses now, symbols only for what a report
//! prints.
//!
//! Capture must work inside the allocator hook, so nothing here allocates,
//! takes a lock, or calls `tracing`:
//!
//! - **Walk**, one backend per platform, chosen once below:
//!   - Unix (`fp`): with frame pointers (`-C force-frame-pointers=yes`, set
//!     for this workspace in `.cargo/config.toml`; a provider's debug profile
//!     needs it too), the walk follows the saved-frame-pointer chain, each
//!     step checked against the thread's stack bounds, so a frame without a
//!     frame pointer ends the walk instead of faulting. A walk that stops
//!     after a few frames on a bad link is taken as truncated, and the
//!     platform unwinder (DWARF, ~100x slower) captures that stack instead.
//!   - x64 Windows (`win64`): the unwind data every x64 image carries
//!     (`RtlVirtualUnwind`), as `RtlCaptureStackBackTrace` does; MSVC code
//!     has no frame-pointer chain to follow.
//!   - 32-bit Windows (`fp` too): x86 code has no unwind tables; the walk
//!     follows the EBP chain within the thread's stack limits
//!     (`GetCurrentThreadStackLimits`), and a frame without a frame pointer
//!     ends it safely (a short walk falls back to the unwinder).
//!   - Elsewhere: the platform unwinder.
//!
//!   Both walks remember each thread's last few walks and recognize a
//!   repeated call path by checking the stack words it read.
//! - **Intern**: each unique stack is stored once in fixed, preallocated
//!   tables (lock-free insert) and named by a [`StackId`]; objects, blocks
//!   and events keep the 4-byte id. When the tables are full, new stacks get
//!   id 0 ("unknown") and the report says so by showing no frames.
//! - Symbols are looked up at report time only, once per unique address,
//!   by `symbolize`, which reads the interned stacks through [`frames`].
#![allow(unsafe_code)]

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::backend::vmem::{Lazy, Zeroed};

/// Names one interned stack. `0` is the empty or unknown stack (the
/// report model's id).
pub(crate) use mapileak_reports::StackId;

/// Frames kept per stack: deep enough to reach the provider's caller from
/// inside the allocator, windows-core's vtable shims and a test harness.
const MAX_FRAMES: usize = 48;

// The tables, reserved at the first capture: 70 MiB of address space on
// 64-bit systems (2 MiB index, 4 MiB headers, 64 MiB of frames), 19 MiB on
// 32-bit ones, where a host such as a 32-bit Outlook has 2-4 GiB in all
// (1 MiB, 2 MiB, 16 MiB: half the stacks, each word half as wide).
#[cfg(target_pointer_width = "64")]
const SLOTS: usize = 1 << 19;
#[cfg(target_pointer_width = "64")]
const MAX_STACKS: usize = 1 << 18;
#[cfg(target_pointer_width = "64")]
const POOL: usize = 1 << 23;
#[cfg(not(target_pointer_width = "64"))]
const SLOTS: usize = 1 << 18;
#[cfg(not(target_pointer_width = "64"))]
const MAX_STACKS: usize = 1 << 17;
#[cfg(not(target_pointer_width = "64"))]
const POOL: usize = 1 << 22;

struct Header {
    hash: AtomicU64,
    start: AtomicU32,
    len: AtomicU32,
}

// SAFETY: three atomics: valid when zero, `Sync`, 8-byte aligned.
unsafe impl Zeroed for Header {}

/// Open-addressed index: slot -> stack id (0: empty). [`SLOTS`] slots.
static INDEX: Lazy<AtomicU32> = Lazy::new();
/// [`MAX_STACKS`] headers, by stack id.
static HEADERS: Lazy<Header> = Lazy::new();
/// Every interned stack's frames, back to back: [`POOL`] words.
static FRAMES: Lazy<AtomicUsize> = Lazy::new();
static NEXT_ID: AtomicU32 = AtomicU32::new(1);
static FRAMES_USED: AtomicUsize = AtomicUsize::new(0);
/// Captures that got no id (0): the tables could not be reserved, or are
/// full. Reports show the count.
static MISSING: AtomicU64 = AtomicU64::new(0);

/// How many captures so far found no room (their stacks show no frames).
pub(crate) fn missing() -> u64 {
    MISSING.load(Ordering::Relaxed)
}

/// Whether the system refused to reserve the stack tables.
pub(crate) fn tables_refused() -> bool {
    INDEX.refused() || HEADERS.refused() || FRAMES.refused()
}

/// The interner's tables (reserved on first use, see [`crate::backend::vmem`]).
#[derive(Clone, Copy)]
struct Tables {
    index: &'static [AtomicU32],
    headers: &'static [Header],
    frames: &'static [AtomicUsize],
}

impl Tables {
    /// The tables, reserved now if they were not; `None` if the system
    /// has no memory for them (stacks are then unknown, id 0).
    #[inline(always)]
    fn get_or_map() -> Option<Tables> {
        Some(Tables {
            index: INDEX.get_or_map(|| SLOTS)?,
            headers: HEADERS.get_or_map(|| MAX_STACKS)?,
            frames: FRAMES.get_or_map(|| POOL)?,
        })
    }

    /// The tables, if anything was ever interned.
    fn get() -> Option<Tables> {
        Some(Tables {
            index: INDEX.get()?,
            headers: HEADERS.get()?,
            frames: FRAMES.get()?,
        })
    }
}

/// Captures the calling thread's stack and interns it. Allocation-free.
#[inline(never)]
pub(crate) fn capture() -> StackId {
    capture_here()
}

/// [`capture`], inlined into the caller: the allocator hook saves a call
/// and a frame to walk.
#[inline(always)]
pub(crate) fn capture_here() -> StackId {
    let mut room = MaybeUninit::uninit();
    let mut buf = Buf::new(&mut room);
    match walker::walk(&mut buf) {
        Walk::Known(id) => id,
        Walk::Frames(ticket) => {
            let frames = buf.frames();
            let id = intern(frames, hash(frames));
            walker::remember(ticket, id);
            id
        }
        Walk::Truncated => {
            let mut buf = Buf::new(&mut room);
            unwind(&mut buf);
            let frames = buf.frames();
            intern(frames, hash(frames))
        }
    }
}

/// One stack's return addresses, written front to back into room the
/// caller keeps uninitialized (clearing it cost more than a memoized walk;
/// a `MaybeUninit` array held by value got cleared anyway).
pub(crate) struct Buf<'a> {
    slots: &'a mut MaybeUninit<[usize; MAX_FRAMES]>,
    len: usize,
}

impl<'a> Buf<'a> {
    #[inline(always)]
    fn new(slots: &'a mut MaybeUninit<[usize; MAX_FRAMES]>) -> Self {
        Buf { slots, len: 0 }
    }

    /// Appends a frame; `false` when full (the frame is dropped).
    #[inline(always)]
    fn push(&mut self, frame: usize) -> bool {
        if self.len == MAX_FRAMES {
            return false;
        }
        // SAFETY: `len < MAX_FRAMES`: the write stays inside the array, and
        // writing through a raw pointer never reads the uninitialized word.
        unsafe {
            self.slots
                .as_mut_ptr()
                .cast::<usize>()
                .add(self.len)
                .write(frame)
        };
        self.len += 1;
        true
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn frames(&self) -> &[usize] {
        // SAFETY: `push` wrote the first `len` words.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr().cast::<usize>(), self.len) }
    }
}

/// The platform unwinder, for when frame pointers are missing.
#[cfg(not(all(windows, target_arch = "x86")))]
#[inline(never)]
fn unwind(out: &mut Buf<'_>) {
    let mut record =
        |frame: &backtrace::Frame| out.push(frame.ip() as usize) && out.len() < MAX_FRAMES;
    #[cfg(unix)]
    // SAFETY: `trace_unsynchronized` is unsafe only where the platform
    // unwinder is not thread-safe (dbghelp on Windows); libgcc's
    // `_Unwind_Backtrace`, used on unix, is. The closure does not allocate.
    unsafe {
        backtrace::trace_unsynchronized(&mut record)
    };
    #[cfg(not(unix))]
    backtrace::trace(&mut record);
}

/// 32-bit Windows: the system's own walk (`RtlCaptureStackBackTrace`),
/// not dbghelp's `StackWalk`, which the `backtrace` crate calls there: no
/// library load, no lock, and it stays inside the thread's stack (under
/// 32-bit Wine, dbghelp's walk faults).
#[cfg(all(windows, target_arch = "x86"))]
#[inline(never)]
fn unwind(out: &mut Buf<'_>) {
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn RtlCaptureStackBackTrace(
            skip: u32,
            count: u32,
            frames: *mut *mut std::ffi::c_void,
            hash: *mut u32,
        ) -> u16;
    }
    let mut frames = [std::ptr::null_mut(); MAX_FRAMES];
    // SAFETY: room for MAX_FRAMES pointers; no hash wanted.
    let n = unsafe {
        RtlCaptureStackBackTrace(
            0,
            MAX_FRAMES as u32,
            frames.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    };
    for &f in frames.iter().take(usize::from(n)) {
        if !out.push(f as usize) {
            break;
        }
    }
}

/// What a platform walk (`fp`, `win64`) found: the same three answers
/// whatever the backend.
#[cfg_attr(
    not(any(
        all(unix, any(target_arch = "x86_64", target_arch = "aarch64")),
        all(windows, any(target_arch = "x86_64", target_arch = "x86"))
    )),
    allow(dead_code)
)]
enum Walk {
    /// The same stack as one this thread walked lately, already interned.
    Known(StackId),
    /// The return addresses, innermost first, are in the caller's buffer;
    /// pass the ticket to the backend's `remember` with their interned id.
    Frames(Ticket),
    /// No walk here (a broken chain, no stack bounds): use the unwinder.
    Truncated,
}

/// Which walk a [`Walk::Frames`] was, so `remember` pairs an id with its
/// own walk only (`u32::MAX`: a walk not remembered).
#[cfg_attr(
    not(any(
        all(unix, any(target_arch = "x86_64", target_arch = "aarch64")),
        all(windows, any(target_arch = "x86_64", target_arch = "x86"))
    )),
    allow(dead_code)
)]
struct Ticket(u32);

// The frame-pointer walk: Unix, and 32-bit Windows, where code has no
// unwind tables and debug builds keep EBP frames (MSVC /Oy-, mingw -O0 or
// -fno-omit-frame-pointer, Rust force-frame-pointers).
#[cfg(any(
    all(unix, any(target_arch = "x86_64", target_arch = "aarch64")),
    all(windows, target_arch = "x86")
))]
mod fp;
#[cfg(any(
    all(unix, any(target_arch = "x86_64", target_arch = "aarch64")),
    all(windows, target_arch = "x86")
))]
use fp as walker;

#[cfg(all(windows, target_arch = "x86_64"))]
mod win64;
#[cfg(all(windows, target_arch = "x86_64"))]
use win64 as walker;

#[cfg(not(any(
    all(unix, any(target_arch = "x86_64", target_arch = "aarch64")),
    all(windows, any(target_arch = "x86_64", target_arch = "x86"))
)))]
mod walker {
    //! No walk of its own on this platform: always the unwinder.
    use super::{Buf, StackId, Ticket, Walk};

    pub(super) fn walk(_out: &mut Buf<'_>) -> Walk {
        Walk::Truncated
    }

    pub(super) fn remember(_ticket: Ticket, _id: StackId) {}
}

/// Hashes the innermost frames and the depth, in four independent lanes
/// (cheap on the allocation path). Equality still compares every frame, so
/// stacks that differ only deeper down share a probe run, never an id.
fn hash(frames: &[usize]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut lanes = [
        K ^ frames.len() as u64,
        K.rotate_left(17),
        K.rotate_left(31),
        K.rotate_left(47),
    ];
    for (i, &f) in frames.iter().take(8).enumerate() {
        let l = &mut lanes[i & 3];
        *l = (*l ^ f as u64).wrapping_mul(K);
    }
    let h = (lanes[0] ^ lanes[1].rotate_left(13))
        ^ (lanes[2].rotate_left(29) ^ lanes[3].rotate_left(43));
    (h ^ (h >> 32)) | 1
}

/// The frames of a published stack, as plain memory.
///
/// # Safety
///
/// `start..start + len` must be the range of a stack whose header hash the
/// caller loaded with `Acquire` and saw non-zero.
unsafe fn published(t: Tables, start: usize, len: usize) -> &'static [usize] {
    debug_assert!(start + len <= t.frames.len());
    // SAFETY: `AtomicUsize` has the layout of `usize`, and the pointer comes
    // from the whole pool, so it covers `start..start + len` (in bounds, as
    // `reserve` checked). Those words were stored before the header's
    // `Release` store that the caller acquired, and `FRAMES_USED` only grows,
    // so they are never written again: plain reads cannot race.
    unsafe { std::slice::from_raw_parts(t.frames.as_ptr().cast::<usize>().add(start), len) }
}

#[inline(always)]
fn same(t: Tables, id: StackId, hash: u64, frames: &[usize]) -> bool {
    let h = &t.headers[id as usize];
    if h.hash.load(Ordering::Acquire) != hash
        || h.len.load(Ordering::Relaxed) as usize != frames.len()
    {
        return false;
    }
    let start = h.start.load(Ordering::Relaxed) as usize;
    // SAFETY: the hash was acquired non-zero (it equals `hash`, never 0)
    // for the stack at `start` with `frames.len()` frames.
    unsafe { published(t, start, frames.len()) == frames }
}

/// Interns `frames` (whose [`hash`] is `h`); lock-free and allocation-free.
/// 0 (counted in [`missing`]) when there is no room.
fn intern(frames: &[usize], h: u64) -> StackId {
    let id = intern_in_tables(frames, h);
    if id == 0 && !frames.is_empty() {
        MISSING.fetch_add(1, Ordering::Relaxed);
    }
    id
}

fn intern_in_tables(frames: &[usize], h: u64) -> StackId {
    let Some(t) = Tables::get_or_map() else {
        return 0;
    };
    let mut slot = (h as usize) & (SLOTS - 1);
    let mut reserved: StackId = 0;
    for _ in 0..SLOTS {
        let id = t.index[slot].load(Ordering::Acquire);
        if id == 0 {
            if reserved == 0 {
                reserved = match reserve(t, h, frames) {
                    Some(id) => id,
                    None => return 0,
                };
            }
            match t.index[slot].compare_exchange(0, reserved, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return reserved,
                // Another thread filled the slot: look at what it put there.
                Err(other) if same(t, other, h, frames) => return other,
                Err(_) => {}
            }
        } else if same(t, id, h, frames) {
            return id;
        }
        slot = (slot + 1) & (SLOTS - 1);
    }
    0
}

/// Writes a new stack's frames and header; publishing it is the caller's CAS.
fn reserve(t: Tables, h: u64, frames: &[usize]) -> Option<StackId> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    if id as usize >= MAX_STACKS {
        return None;
    }
    let start = FRAMES_USED.fetch_add(frames.len(), Ordering::Relaxed);
    if start + frames.len() > POOL {
        return None;
    }
    for (i, &f) in frames.iter().enumerate() {
        t.frames[start + i].store(f, Ordering::Relaxed);
    }
    let header = &t.headers[id as usize];
    header.start.store(start as u32, Ordering::Relaxed);
    header.len.store(frames.len() as u32, Ordering::Relaxed);
    header.hash.store(h, Ordering::Release);
    Some(id)
}

/// The raw return addresses of stack `id`, innermost first.
pub(crate) fn frames(id: StackId) -> Vec<usize> {
    let Some(t) = Tables::get() else {
        return Vec::new();
    };
    if id == 0 || id as usize >= MAX_STACKS {
        return Vec::new();
    }
    let h = &t.headers[id as usize];
    if h.hash.load(Ordering::Acquire) == 0 {
        return Vec::new();
    }
    let start = h.start.load(Ordering::Relaxed) as usize;
    let len = h.len.load(Ordering::Relaxed) as usize;
    // SAFETY: the hash was acquired non-zero just above.
    unsafe { published(t, start, len) }.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::symbolize::Symbolizer;

    #[inline(never)]
    fn here() -> StackId {
        capture()
    }

    #[test]
    fn same_site_interns_once_and_symbolizes_the_caller() {
        let ids: Vec<StackId> = (0..3).map(|_| here()).collect();
        assert!(ids.iter().all(|&id| id == ids[0] && id != 0), "{ids:?}");
        let stack = Symbolizer::default().stack(ids[0]);
        let top = &stack.frames[0].function;
        assert!(top.ends_with("stack::tests::here"), "top frame {top}");
        assert!(stack.mentions("same_site_interns_once"), "{stack:#?}");
    }

    #[inline(never)]
    fn other_site() -> StackId {
        capture()
    }

    #[inline(never)]
    fn deeper(n: usize) -> StackId {
        deeper_to(n, false)
    }

    /// [`deeper`], ending in [`other_site`] when `other`.
    #[inline(never)]
    fn deeper_to(n: usize, other: bool) -> StackId {
        if n == 0 {
            if other { other_site() } else { here() }
        } else {
            std::hint::black_box(deeper_to(std::hint::black_box(n - 1), other))
        }
    }

    /// A stack `n` frames deep, as kept: its innermost [`MAX_FRAMES`] (a
    /// test thread under Wine runs deeper than that; one on Linux does not,
    /// as the walk stops at the first frame of the C runtime).
    fn depth(n: usize) -> usize {
        n.min(MAX_FRAMES)
    }

    #[test]
    fn the_walk_memo_tells_sites_and_depths_apart() {
        // Interleaved, so each walk starts from a memo of a different stack:
        // same frame addresses with other records, and longer or shorter
        // prefixes below the shared frames.
        let rounds: Vec<(StackId, StackId, Vec<StackId>)> = (0..3)
            .map(|_| (here(), other_site(), (0..5).map(deeper).collect()))
            .collect();
        let (a, b, d) = &rounds[0];
        // More stacks in turn than a thread remembers (40, two sites at
        // each depth): every walk misses the memo, splices from the last
        // one and replaces an older one.
        let many: Vec<Vec<StackId>> = (0..2)
            .map(|_| (0..40).map(|i| deeper_to(i / 2, i % 2 == 1)).collect())
            .collect();
        let shown =
            |ids: &[StackId]| -> Vec<Vec<usize>> { ids.iter().map(|&i| frames(i)).collect() };
        assert_eq!(
            many[0],
            many[1],
            "{:#x?}\n{:#x?}",
            shown(&many[0]),
            shown(&many[1])
        );
        for (i, id) in many[0].iter().enumerate() {
            assert_eq!(
                frames(*id).len(),
                depth(frames(many[0][0]).len() + i / 2),
                "depth {}",
                i / 2
            );
        }
        let mut distinct = many[0].clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 40, "{:#x?}", shown(&many[0]));
        // Two stacks in turn: each walk matches a remembered one that is not
        // the most recent.
        let pairs: Vec<(StackId, StackId)> = (0..3).map(|_| (here(), other_site())).collect();
        assert!(pairs.iter().all(|p| *p == pairs[0]), "{pairs:?}");
        assert_ne!(pairs[0].0, pairs[0].1);
        for round in &rounds[1..] {
            assert_eq!(
                round, &rounds[0],
                "the same site gets the same id every time"
            );
        }
        assert_ne!(a, b, "two sites, two stacks");
        let mut all = d.clone();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 5, "each depth is its own stack: {d:?}");
        for (n, id) in d.iter().enumerate() {
            assert_eq!(
                frames(*id).len(),
                depth(frames(d[0]).len() + n),
                "depth {n}"
            );
        }
        let mut symbols = Symbolizer::default();
        let (sa, sb) = (symbols.stack(*a), symbols.stack(*b));
        assert!(sa.frames[0].function.ends_with("tests::here"), "{sa:#?}");
        assert!(
            sb.frames[0].function.ends_with("tests::other_site"),
            "{sb:#?}"
        );
        assert!(sb.mentions("the_walk_memo_tells_sites_and_depths_apart"));
        // Frames outside the memo's reach agree with a walk from scratch.
        let mut room = MaybeUninit::uninit();
        let mut out = Buf::new(&mut room);
        unwind(&mut out);
        let outer = *frames(*a).last().unwrap();
        assert!(
            out.frames().contains(&outer),
            "outermost frame {outer:#x} is real"
        );
    }

    #[test]
    #[cfg(any(unix, all(windows, any(target_arch = "x86_64", target_arch = "x86"))))]
    fn the_platform_walk_reaches_the_caller_without_the_unwinder() {
        let mut room = MaybeUninit::uninit();
        let mut out = Buf::new(&mut room);
        let Walk::Frames(_) = walker::walk(&mut out) else {
            panic!("frame pointers are on in this workspace; unwind data always is");
        };
        let n = out.len();
        assert!(n >= 4, "{n} frames");
        let mut room2 = MaybeUninit::uninit();
        let mut unwound = Buf::new(&mut room2);
        unwind(&mut unwound);
        // The walk's frames are return addresses the unwinder saw too.
        let seen = out
            .frames()
            .iter()
            .filter(|a| unwound.frames().contains(a))
            .count();
        assert!(
            seen >= n / 2,
            "{seen} of {n} frames confirmed by the unwinder"
        );
    }

    #[test]
    fn interning_is_exact_across_threads() {
        let stacks: Vec<Vec<usize>> = (0..200).map(|i| vec![i + 1, i * 7 + 3, 99]).collect();
        let ids: Vec<Vec<StackId>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        stacks
                            .iter()
                            .map(|f| intern(f, hash(f)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for t in &ids[1..] {
            assert_eq!(t, &ids[0], "every thread gets the same ids");
        }
        for (id, f) in ids[0].iter().zip(&stacks) {
            assert_eq!(&frames(*id), f);
        }
    }
}
