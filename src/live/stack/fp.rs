//! The frame-pointer walk, with a per-thread memo of the last few walks.
//!
//! Following the chain costs one dependent load per frame: about a
//! nanosecond, the load latency, whatever else is done. But most captures
//! repeat a recent call path (a loop that fills rows, a method called again
//! from the same place), so each thread keeps the frame records of its last
//! [`WAYS`] walks. The walk is a function of those words alone (and of the
//! thread's fixed stack bounds), so where they are unchanged it reads just
//! what the memo says, and they can be checked with loads whose addresses
//! come from the memo, not from the load before: the loads run in parallel.
//!
//! - A walk whose every record matches a remembered walk from its first
//!   frame is that stack: it returns the remembered id, no interning.
//! - Otherwise it walks for real, and where it reaches a frame address the
//!   most recent walk read, it checks that walk's records from there on and
//!   takes the run that still matches in one copy.
//!
//! ```text
//!  fp ─► record at fp = [next fp, return address] ─► next fp ─► ...
//!        └ memo has this fp? ─► compare memo records k.. with the stack
//!                                (independent loads) ─► take the matching run
//! ```

use std::cell::UnsafeCell;

use super::{Buf, MAX_FRAMES, StackId, Ticket, Walk};

/// A walk shorter than this that ended on a bad link is treated as
/// truncated.
pub(super) const MIN_FRAMES: usize = 4;

/// A frame record as read from the stack: `[fp]` and `[fp + word]` (the
/// saved frame pointer, the return address).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Record {
    next: usize,
    ret: usize,
}

const EMPTY: Record = Record { next: 0, ret: 0 };
/// Records a walk can read: its frames, and one more whose return address
/// was 0 (the clean end of the chain).
const CAP: usize = MAX_FRAMES + 1;

/// Walks a thread remembers: a provider's hot paths allocate from more
/// than a few places in turn. With 8, sixteen call sites taken in turn
/// missed every time (`cargo bench --bench alloc`: 9x `System` against
/// 3.3x for eight); with 32 (38 KiB a thread on 64-bit systems), 32 sites
/// read 3.5x. A lookup compares each walk's first record, kept side by side
/// in [`Memo::firsts`], before it reads the walk.
const WAYS: usize = 32;

/// One walk's records, innermost first, each with the frame address it was
/// read at (`at[k + 1] == records[k].next`). The addresses are kept apart
/// from the records so the compiler cannot derive them from the stack loads
/// they were compared with, which would chain the loads again.
struct Walked {
    len: usize,
    /// The interned id of this walk's stack; 0 when not known.
    id: StackId,
    at: [usize; CAP],
    records: [Record; CAP],
}

/// A thread's memo.
struct Memo {
    /// Set while a walk uses the memo: a walk re-entered on this thread (a
    /// signal handler) walks without it.
    busy: bool,
    /// This thread's stack, `[low, high)`; `high == 0` until first asked.
    low: usize,
    high: usize,
    /// The most recent walk.
    last: usize,
    /// The next to be replaced (round robin, skipping `last`).
    victim: usize,
    /// Counts walks, so `remember` can tell its walk was the last one.
    walks_done: u32,
    /// Each walk's first frame address and record, side by side: a
    /// lookup compares these with the stack first, reading one small
    /// array instead of three lines of every remembered walk.
    firsts: [First; WAYS],
    walks: [Walked; WAYS],
}

/// A walk's first frame address and the record read there (all 0: the
/// walk is empty).
#[derive(Clone, Copy)]
struct First {
    at: usize,
    record: Record,
}

const NO_FIRST: First = First {
    at: 0,
    record: EMPTY,
};

const fn walked() -> Walked {
    Walked {
        len: 0,
        id: 0,
        at: [0; CAP],
        records: [EMPTY; CAP],
    }
}

thread_local! {
    static MEMO: UnsafeCell<Memo> = const {
        UnsafeCell::new(Memo {
            busy: false,
            low: 0,
            high: 0,
            last: 0,
            victim: 1,
            walks_done: 0,
            firsts: [NO_FIRST; WAYS],
            walks: [const { walked() }; WAYS],
        })
    };
}

/// Walks the calling thread's frame-pointer chain into `out`.
#[inline(always)]
pub(super) fn walk(out: &mut Buf<'_>) -> Walk {
    let start = frame_pointer();
    let Ok(memo) = MEMO.try_with(UnsafeCell::get) else {
        return Walk::Truncated;
    };
    // SAFETY: the memo belongs to this thread, and `busy` keeps a second
    // reference from being made while this one lives: a walk re-entered on
    // this thread (from a signal handler) sees `busy` and takes none.
    let memo = unsafe { &mut *memo };
    if memo.busy {
        return Walk::Truncated;
    }
    memo.busy = true;
    let found = walk_with(memo, start, out);
    memo.busy = false;
    found
}

/// Records that the walk of `ticket` was interned as `id`, unless another
/// walk (a signal handler's, on this thread) came in between: an id must
/// only ever be paired with its own records.
pub(super) fn remember(ticket: Ticket, id: StackId) {
    let _ = MEMO.try_with(|m| {
        // SAFETY: as in `walk`: not busy means no other reference exists.
        let memo = unsafe { &mut *m.get() };
        if !memo.busy && memo.walks_done == ticket.0 {
            memo.walks[memo.last].id = id;
        }
    });
}

#[inline(always)]
fn walk_with(memo: &mut Memo, start: usize, out: &mut Buf<'_>) -> Walk {
    if memo.high == 0 {
        (memo.low, memo.high) = query_bounds();
    }
    let bounds = (memo.low, memo.high);
    if bounds.1 == 0 || !in_bounds(bounds, start) {
        return Walk::Truncated;
    }
    if let Some(id) = recall(memo, start) {
        return Walk::Known(id);
    }
    // Walk into the victim's buffer, taking what still holds of the last walk.
    let from = memo.last;
    let to = if memo.victim == from {
        (from + 1) % WAYS
    } else {
        memo.victim
    };
    let (old, new) = pick(&mut memo.walks, from, to);
    let mut walk = Walking {
        bounds,
        new,
        len: 0,
        out,
    };
    let clean = follow(&mut walk, old, start);
    let n = walk.out.len();
    walk.new.len = walk.len;
    walk.new.id = 0;
    memo.firsts[to] = if walk.len > 0 {
        First {
            at: walk.new.at[0],
            record: walk.new.records[0],
        }
    } else {
        NO_FIRST
    };
    memo.last = to;
    memo.victim = (to + 1) % WAYS;
    memo.walks_done = memo.walks_done.wrapping_add(1);
    if n < MIN_FRAMES && !clean {
        Walk::Truncated
    } else {
        Walk::Frames(Ticket(memo.walks_done))
    }
}

/// A remembered walk from frame `start`, all of whose records still hold:
/// the same stack. The most recent one first.
#[inline(always)]
fn recall(memo: &mut Memo, start: usize) -> Option<StackId> {
    // SAFETY: `start` passed `in_bounds` in `walk_with`: two aligned words
    // of this thread's stack.
    let now = unsafe { std::ptr::read(start as *const Record) };
    for k in 0..WAYS {
        let w = (memo.last + k) % WAYS;
        let first = &memo.firsts[w];
        if first.at != start || first.record != now {
            continue;
        }
        let walked = &memo.walks[w];
        if walked.id != 0 && walked.len > 0 && unchanged(walked) {
            memo.last = w;
            return Some(walked.id);
        }
    }
    None
}

/// Follows the chain from frame `start`, taking the records of the last
/// walk (`old`) that still hold instead of reading them again. Whether the
/// chain ended cleanly (see [`Walking::step`]).
#[inline(always)]
fn follow(walk: &mut Walking<'_, '_>, old: &Walked, start: usize) -> bool {
    // `cursor`: the first memo record not read below the walk's frame
    // address (frame addresses only grow along a chain).
    let mut cursor = 0;
    let mut fp = start;
    loop {
        while cursor < old.len && old.at[cursor] < fp {
            cursor += 1;
        }
        if cursor < old.len && old.at[cursor] == fp {
            let run = matching(old, cursor);
            // Records before the old walk's last one passed every check of
            // `step` but the frame limit, whatever the walk: copy them.
            let bulk = run
                .min(old.len - 1 - cursor)
                .min(MAX_FRAMES - 1 - walk.out.len());
            if bulk > 0 {
                walk.copy(
                    &old.at[cursor..cursor + bulk],
                    &old.records[cursor..cursor + bulk],
                );
                fp = old.at[cursor + bulk];
            }
            for &rec in &old.records[cursor + bulk..cursor + run] {
                match walk.step(fp, rec) {
                    Ok(next) => fp = next,
                    Err(clean) => return clean,
                }
            }
            cursor += run;
        }
        // SAFETY: `fp` passed `in_bounds` (`start` in `walk_with`, every later one
        // in `step`, or as a memo address that passed it): both words lie in
        // this thread's stack, which is mapped and readable for its whole
        // extent, and they are aligned.
        let rec = unsafe { std::ptr::read(fp as *const Record) };
        match walk.step(fp, rec) {
            Ok(next) => fp = next,
            Err(clean) => return clean,
        }
    }
}

/// The walk at `from` to read and the one at `to` to write; `from != to`.
fn pick(walks: &mut [Walked; WAYS], from: usize, to: usize) -> (&Walked, &mut Walked) {
    debug_assert_ne!(from, to);
    let (low, high) = walks.split_at_mut(from.max(to));
    if from < to {
        (&low[from], &mut high[0])
    } else {
        (&high[0], &mut low[to])
    }
}

/// Whether a frame record (two words) at `fp` lies in the stack, aligned.
fn in_bounds((low, high): (usize, usize), fp: usize) -> bool {
    const WORD: usize = std::mem::size_of::<usize>();
    fp >= low && fp <= high - 2 * WORD && fp.is_multiple_of(WORD)
}

/// A walk in progress: where its records and frames go.
struct Walking<'a, 'b> {
    bounds: (usize, usize),
    new: &'a mut Walked,
    len: usize,
    out: &'a mut Buf<'b>,
}

impl Walking<'_, '_> {
    /// Takes records known to pass [`Walking::step`], read at `at`.
    #[inline(always)]
    fn copy(&mut self, at: &[usize], records: &[Record]) {
        let end = self.len + at.len();
        self.new.at[self.len..end].copy_from_slice(at);
        self.new.records[self.len..end].copy_from_slice(records);
        self.len = end;
        for rec in records {
            self.out.push(rec.ret);
        }
    }

    /// Takes the record read at `fp`: `Ok(next fp)`, or `Err(clean)` when
    /// the walk ends there (clean: the chain's own end, a 0 link).
    #[inline(always)]
    fn step(&mut self, fp: usize, rec: Record) -> Result<usize, bool> {
        self.new.at[self.len] = fp;
        self.new.records[self.len] = rec;
        self.len += 1;
        if rec.ret == 0 {
            return Err(true);
        }
        self.out.push(rec.ret);
        if rec.next == 0 {
            return Err(true);
        }
        if rec.next <= fp || self.out.len() == MAX_FRAMES || !in_bounds(self.bounds, rec.next) {
            return Err(false);
        }
        Ok(rec.next)
    }
}

/// Whether every record of `walked`, which starts at this frame, is still
/// on the stack: [`matching`]`(walked, 0) == walked.len`.
///
/// In optimized builds on x86_64 the records past the first [`HEAD`] are
/// compared without a branch each, two words a frame in one SSE2 compare:
/// a deep stack's recall costs about half (the whole-program benchmark's
/// C++ and Rust release runs spend a tenth less), and the first records,
/// compared one by one, still turn away most remembered walks of another
/// call path early. With debug assertions (a provider's debug profile),
/// core's intrinsics carry precondition checks and copy through the stack:
/// there the plain compare is faster (the unit tests take the SSE2 path).
#[inline(always)]
fn unchanged(walked: &Walked) -> bool {
    #[cfg(all(target_arch = "x86_64", any(test, not(debug_assertions))))]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_cvtsi128_si64, _mm_loadu_si128, _mm_movemask_epi8,
            _mm_or_si128, _mm_setzero_si128, _mm_xor_si128,
        };
        let len = walked.len.min(CAP);
        let head = len.min(HEAD);
        if matching_to(walked, head) < head {
            return false;
        }
        if head == len {
            return true;
        }
        // SAFETY: SSE2 is part of x86_64. The addresses read are the memo's
        // `at[head..len]` (`at[k + 1]` is `records[k].next`, the link the
        // walk followed), as in `matching`: 16 readable bytes each. The
        // memo's records are `Record`s, two words each: 16 bytes.
        unsafe {
            let mut diff = _mm_setzero_si128();
            let mut at = walked.at[head];
            for k in head..len {
                let was = _mm_loadu_si128((&raw const walked.records[k]).cast::<__m128i>());
                let now = _mm_loadu_si128(at as *const __m128i);
                diff = _mm_or_si128(diff, _mm_xor_si128(now, was));
                // `at[k + 1]`: taken from the register, one load fewer.
                at = _mm_cvtsi128_si64(was) as usize;
            }
            _mm_movemask_epi8(_mm_cmpeq_epi8(diff, _mm_setzero_si128())) == 0xffff
        }
    }
    #[cfg(not(all(target_arch = "x86_64", any(test, not(debug_assertions)))))]
    {
        matching(walked, 0) == walked.len
    }
}

/// The records [`unchanged`] compares one by one first.
#[cfg(all(target_arch = "x86_64", any(test, not(debug_assertions))))]
const HEAD: usize = 6;

/// How many of `walked`'s first `to` records are still on the stack.
#[cfg(all(target_arch = "x86_64", any(test, not(debug_assertions))))]
#[inline(always)]
fn matching_to(walked: &Walked, to: usize) -> usize {
    let mut k = 0;
    while k < to {
        // SAFETY: as in `matching`.
        let now = unsafe { std::ptr::read(walked.at[k] as *const Record) };
        if now != walked.records[k] {
            break;
        }
        k += 1;
    }
    k
}

/// How many of `walked`'s records from `from` on are still on the stack.
/// Each load's address comes from the memo, not from the load before it, so
/// the loads do not wait for each other.
#[inline(always)]
fn matching(walked: &Walked, from: usize) -> usize {
    let len = walked.len;
    let mut k = from;
    while k < len {
        // SAFETY: every frame address in the memo passed the bounds check of
        // this thread's stack when it was walked, and the bounds do not
        // change; callers start at a record read at the current walk's frame
        // address or above, and addresses grow along the memo, so these
        // words lie between this frame and the stack's top: mapped, aligned.
        // They may have changed since (that is what the compare finds out);
        // like any frame-pointer walk's, the read sees this thread's own
        // stack, which another thread writes only through a reference this
        // thread handed out to a local.
        let now = unsafe { std::ptr::read(walked.at[k] as *const Record) };
        if now != walked.records[k] {
            break;
        }
        k += 1;
    }
    k - from
}

#[inline(always)]
fn frame_pointer() -> usize {
    let fp: usize;
    // SAFETY: reads the frame-pointer register; no memory is touched.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags));
        #[cfg(target_arch = "aarch64")]
        std::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags));
        #[cfg(target_arch = "x86")]
        std::arch::asm!("mov {}, ebp", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    fp
}

#[cfg(target_os = "linux")]
fn query_bounds() -> (usize, usize) {
    // SAFETY: `attr` is initialized by pthread_getattr_np before it is
    // read and destroyed once; the calls have no other preconditions.
    // (For the main thread glibc reads /proc/self/maps here, which
    // allocates: the allocator hook's re-entrancy guard passes those
    // allocations straight through.)
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return (0, 0);
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        if ok {
            (addr as usize, addr as usize + size)
        } else {
            (0, 0)
        }
    }
}

/// The calling thread's stack, `[low, high)`, as the system keeps it
/// (Windows 8 and later, and Wine).
#[cfg(windows)]
fn query_bounds() -> (usize, usize) {
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn GetCurrentThreadStackLimits(low: *mut usize, high: *mut usize);
    }
    let (mut low, mut high) = (0usize, 0usize);
    // SAFETY: two valid out pointers to locals; the call has no other
    // preconditions.
    unsafe { GetCurrentThreadStackLimits(&mut low, &mut high) };
    if low < high { (low, high) } else { (0, 0) }
}

#[cfg(not(any(target_os = "linux", windows)))]
fn query_bounds() -> (usize, usize) {
    (0, 0)
}
