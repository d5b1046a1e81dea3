//! The frame-pointer walk, with a per-thread memo of the last walk.
//!
//! Following the chain costs one dependent load per frame: about a
//! nanosecond, the load latency, whatever else is done. But most captures
//! repeat a recent call path (a loop that fills rows, a method called again
//! from the same place), so each thread keeps the frame records its last
//! walk read. When a walk reaches a frame address the memo has, it checks
//! the memo's next records against the stack with loads whose addresses come
//! from the memo, not from the previous load: they run in parallel. The walk
//! is a function of those words alone (and of the thread's fixed stack
//! bounds), so where they are unchanged it reads just what the memo says.
//! A walk that matches the memo from its first frame to its end is the same
//! stack, and returns the memo's id without interning.
//!
//! ```text
//!  fp ─► record at fp = [next fp, return address] ─► next fp ─► ...
//!        └ memo has this fp? ─► compare memo records k.. with the stack
//!                                (independent loads) ─► take the matching run
//! ```

use std::cell::UnsafeCell;

use super::{Buf, MAX_FRAMES, MIN_FRAMES, StackId};

/// A frame record as read from the stack: `[fp]` and `[fp + 8]`.
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

/// One walk's records, innermost first, each with the frame address it was
/// read at (`at[k + 1] == records[k].next`). The addresses are kept apart
/// from the records so the compiler cannot derive them from the stack loads
/// they were compared with, which would chain the loads again.
struct Walked {
    len: usize,
    at: [usize; CAP],
    records: [Record; CAP],
}

/// A thread's memo: two record buffers, the last walk's and a scratch one
/// the next walk fills, swapped when the walk is done.
struct Memo {
    /// Set while a walk uses the memo: a walk re-entered on this thread (a
    /// signal handler) walks without it.
    busy: bool,
    /// This thread's stack, `[low, high)`; `high == 0` until first asked.
    low: usize,
    high: usize,
    /// Which of `walks` is the last walk.
    last: usize,
    walks: [Walked; 2],
    /// The interned id of the last walk's stack; 0 when not known.
    id: StackId,
}

const fn walked() -> Walked {
    Walked {
        len: 0,
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
            walks: [walked(), walked()],
            id: 0,
        })
    };
}

/// What a walk found.
pub(super) enum Walk {
    /// The same stack as this thread's last walk, already interned.
    Known(StackId),
    /// The return addresses, innermost first, are in the caller's buffer.
    Frames,
    /// The chain broke early (frames without frame pointers): use the unwinder.
    Truncated,
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

/// Records that the last walk's stack was interned as `id`.
pub(super) fn remember(id: StackId) {
    let _ = MEMO.try_with(|m| {
        // SAFETY: as in `walk`: not busy means no other reference exists.
        let memo = unsafe { &mut *m.get() };
        if !memo.busy {
            memo.id = id;
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
    let [a, b] = &mut memo.walks;
    let (old, new) = if memo.last == 0 { (&*a, b) } else { (&*b, a) };

    // The same walk as last time, from its first frame: the same stack.
    if memo.id != 0 && old.len > 0 && old.at[0] == start && matching(old, 0) == old.len {
        return Walk::Known(memo.id);
    }

    let mut walk = Walking {
        bounds,
        new,
        len: 0,
        out,
    };
    // `cursor`: the first memo record not read below the walk's frame
    // address (frame addresses only grow along a chain).
    let mut cursor = 0;
    let mut fp = start;
    let clean = 'walk: loop {
        while cursor < old.len && old.at[cursor] < fp {
            cursor += 1;
        }
        if cursor < old.len && old.at[cursor] == fp {
            let run = matching(old, cursor);
            for &rec in &old.records[cursor..cursor + run] {
                match walk.step(fp, rec) {
                    Ok(next) => fp = next,
                    Err(clean) => break 'walk clean,
                }
            }
            cursor += run;
        }
        // SAFETY: `fp` passed `in_bounds` (the start above, every later one
        // in `step`): both words lie in this thread's stack, which is mapped
        // and readable for its whole extent, and they are aligned.
        let rec = unsafe { std::ptr::read(fp as *const Record) };
        match walk.step(fp, rec) {
            Ok(next) => fp = next,
            Err(clean) => break clean,
        }
    };
    let n = walk.out.len();
    walk.new.len = walk.len;
    memo.last ^= 1;
    memo.id = 0;
    if n < MIN_FRAMES && !clean {
        Walk::Truncated
    } else {
        Walk::Frames
    }
}

fn in_bounds((low, high): (usize, usize), fp: usize) -> bool {
    fp >= low && fp <= high - 16 && fp.is_multiple_of(8)
}

/// A walk in progress: where its records and frames go.
struct Walking<'a, 'b> {
    bounds: (usize, usize),
    new: &'a mut Walked,
    len: usize,
    out: &'a mut Buf<'b>,
}

impl Walking<'_, '_> {
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
        // change: the two words lie in the mapped stack, aligned.
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

#[cfg(not(target_os = "linux"))]
fn query_bounds() -> (usize, usize) {
    (0, 0)
}
