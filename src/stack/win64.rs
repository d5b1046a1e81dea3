//! Stack capture on x64 Windows: unwind data, with a per-thread memo.
//!
//! Most provider code on x64 Windows (MSVC C++) keeps no frame-pointer
//! chain, and where LLVM keeps one it points `rbp` anywhere up to 128 bytes
//! into the frame, not at the saved `rbp`: a frame-pointer walk cannot be
//! trusted there. Every function has unwind data (`.pdata`/`.xdata`)
//! instead, so the walk here is the one `RtlCaptureStackBackTrace` and the
//! CRT's debug heap do: `RtlCaptureContext`, then per frame
//! `RtlLookupFunctionEntry` and `RtlVirtualUnwind`. No dbghelp, no library
//! loaded, no symbol read, no allocation; names are resolved at report time.
//!
//! Unwinding a frame costs a function-table search and the interpretation
//! of its unwind codes, so, as on Linux, each thread remembers its last
//! [`WAYS`] walks. An unwind is a function of its starting `rsp`, of the
//! frame register's value (`rbp`) and of the stack words it reads for them:
//! the return address, just below the caller's stack pointer, and the saved
//! `rbp`, whose address `RtlVirtualUnwind` reports
//! (`KNONVOLATILE_CONTEXT_POINTERS`). A walk that starts at the same `rsp`
//! and `rbp` as a remembered one, whose remembered words all still hold, is
//! that stack: its interned id is returned without unwinding. A walk that
//! reaches a state (`rip`, `rsp`, `rbp`) the last walk passed through, with
//! that walk's later words unchanged, takes the rest of it in one copy: a
//! new call site above a known path unwinds only its own frames.
//!
//! ```text
//!  RtlCaptureContext ─► memo: same rsp, rbp, and every word read? ─yes─► id
//!                          │ no
//!                          ▼
//!  per frame: RtlLookupFunctionEntry ─► RtlVirtualUnwind (records the words)
//! ```
//!
//! A walk is not remembered when it cannot be checked that way: a frame
//! that uses a frame register other than `rbp`, a machine frame (an
//! interrupted context), a read outside the thread's stack, or more words
//! than a memo entry holds.
#![allow(non_snake_case, clippy::upper_case_acronyms)]

use std::cell::UnsafeCell;
use std::ffi::c_void;

use super::{Buf, MAX_FRAMES, StackId, Ticket, Walk};

/// The x64 `CONTEXT` record, up to `Rip` by name; the rest (floating-point
/// and vector state, debug registers) as room.
#[repr(C, align(16))]
struct Context {
    home: [u64; 6],
    flags: u32,
    mx_csr: u32,
    segments: [u16; 6],
    eflags: u32,
    debug: [u64; 6],
    /// `Rax` .. `R15`, in the order of the register numbers unwind codes use.
    regs: [u64; 16],
    rip: u64,
    rest: [u8; 0x4d0 - 0x100],
}

const RSP: usize = 4;
const RBP: usize = 5;

/// `KNONVOLATILE_CONTEXT_POINTERS`: where the unwind read each register.
#[repr(C)]
struct ContextPointers {
    floating: [*mut u128; 16],
    integer: [*mut u64; 16],
}

/// `RUNTIME_FUNCTION`, an entry of an image's `.pdata`.
#[repr(C)]
struct RuntimeFunction {
    begin: u32,
    end: u32,
    unwind_info: u32,
}

#[link(name = "kernel32")]
unsafe extern "system" {
    fn RtlCaptureContext(context: *mut Context);
    fn RtlLookupFunctionEntry(
        pc: u64,
        image_base: *mut u64,
        history: *mut c_void,
    ) -> *mut RuntimeFunction;
    fn RtlVirtualUnwind(
        handler_type: u32,
        image_base: u64,
        pc: u64,
        entry: *mut RuntimeFunction,
        context: *mut Context,
        handler_data: *mut *mut c_void,
        establisher: *mut u64,
        pointers: *mut ContextPointers,
    ) -> *mut c_void;
    fn GetCurrentThreadStackLimits(low: *mut usize, high: *mut usize);
}

/// Walks a thread remembers.
const WAYS: usize = 8;
/// Stack words a remembered walk may have read: a return address and a
/// saved `rbp` per frame at most.
const WORDS: usize = 2 * MAX_FRAMES;

/// One remembered walk: for each frame, the state the unwind of that frame
/// started from, and the words it read.
struct Walked {
    /// The interned id; 0 while unknown.
    id: StackId,
    /// Frames; 0 when the walk is not checkable (not remembered).
    frames: usize,
    /// The walk stopped at [`MAX_FRAMES`], not at the stack's end: what
    /// lies below its last frame is not known.
    full: bool,
    /// `rip`, `rsp`, `rbp` before each frame was unwound.
    pc: [u64; MAX_FRAMES],
    sp: [u64; MAX_FRAMES],
    bp: [u64; MAX_FRAMES],
    /// The first of `at`/`values` each frame's unwind read.
    first: [u8; MAX_FRAMES],
    len: usize,
    /// Where each word was read, apart from the values: the compiler cannot
    /// then chain each load to the one before.
    at: [usize; WORDS],
    values: [u64; WORDS],
}

impl Walked {
    /// Whether every word from `from` on still holds its value.
    #[inline(always)]
    fn holds_from(&self, from: usize) -> bool {
        (from..self.len).all(|k| {
            // SAFETY: each address passed `in_stack` for this thread's stack
            // when it was recorded, and the bounds do not change; the memo
            // belongs to this thread. The words may have changed since: that
            // is what the compare finds out.
            (unsafe { std::ptr::read(self.at[k] as *const u64) }) == self.values[k]
        })
    }
}

struct Memo {
    /// Set while a walk uses the memo (a walk re-entered on this thread,
    /// from a vectored exception handler, say, walks without it).
    busy: bool,
    low: usize,
    high: usize,
    /// The most recent walk; the next one goes to `(last + 1) % WAYS`.
    last: usize,
    walks_done: u32,
    walks: [Walked; WAYS],
}

const fn walked() -> Walked {
    Walked {
        id: 0,
        frames: 0,
        full: false,
        pc: [0; MAX_FRAMES],
        sp: [0; MAX_FRAMES],
        bp: [0; MAX_FRAMES],
        first: [0; MAX_FRAMES],
        len: 0,
        at: [0; WORDS],
        values: [0; WORDS],
    }
}

thread_local! {
    static MEMO: UnsafeCell<Memo> = const {
        UnsafeCell::new(Memo {
            busy: false,
            low: 0,
            high: 0,
            last: 0,
            walks_done: 0,
            walks: [const { walked() }; WAYS],
        })
    };
}

/// Walks the calling thread's stack into `out`.
#[inline(never)]
pub(super) fn walk(out: &mut Buf<'_>) -> Walk {
    let mut context = std::mem::MaybeUninit::<Context>::zeroed();
    // SAFETY: `context` is a writable, 16-byte aligned CONTEXT-sized record.
    unsafe { RtlCaptureContext(context.as_mut_ptr()) };
    // SAFETY: RtlCaptureContext filled it, and every bit pattern is valid.
    let mut context = unsafe { context.assume_init() };
    let Ok(memo) = MEMO.try_with(UnsafeCell::get) else {
        return Walk::Truncated;
    };
    // SAFETY: the memo belongs to this thread; `busy` keeps a second
    // reference from being made while this one lives.
    let memo = unsafe { &mut *memo };
    if memo.busy {
        return Walk::Truncated;
    }
    memo.busy = true;
    let found = walk_with(memo, &mut context, out);
    memo.busy = false;
    found
}

/// Records that the walk of `ticket` was interned as `id`.
pub(super) fn remember(ticket: Ticket, id: StackId) {
    let _ = MEMO.try_with(|m| {
        // SAFETY: as in `walk`: not busy means no other reference exists.
        let memo = unsafe { &mut *m.get() };
        if !memo.busy && ticket.0 != u32::MAX && memo.walks_done == ticket.0 {
            memo.walks[memo.last].id = id;
        }
    });
}

fn walk_with(memo: &mut Memo, context: &mut Context, out: &mut Buf<'_>) -> Walk {
    if memo.high == 0 {
        let (mut low, mut high) = (0usize, 0usize);
        // SAFETY: two writable words; the call has no other precondition.
        unsafe { GetCurrentThreadStackLimits(&mut low, &mut high) };
        (memo.low, memo.high) = (low, high);
    }
    let bounds = (memo.low, memo.high);
    let (rsp, rbp) = (context.regs[RSP], context.regs[RBP]);
    if bounds.1 == 0 || !in_stack(bounds, rsp as usize) {
        return Walk::Truncated;
    }
    // A remembered walk from this state whose words all hold: the same stack.
    for k in 0..WAYS {
        let w = (memo.last + WAYS - k) % WAYS;
        let walked = &memo.walks[w];
        if walked.id != 0
            && walked.frames > 0
            && walked.sp[0] == rsp
            && walked.bp[0] == rbp
            && walked.pc[0] == context.rip
            && walked.holds_from(0)
        {
            memo.last = w;
            return Walk::Known(walked.id);
        }
    }

    let from = memo.last;
    let to = (from + 1) % WAYS;
    let (old, new) = pick(&mut memo.walks, from, to);
    new.id = 0;
    new.frames = 0;
    new.len = 0;
    new.full = false;
    let mut checkable = true;
    // The first of the last walk's frames not below this one's `rsp`
    // (`rsp` grows along a walk).
    let mut cursor = 0;
    loop {
        let (pc, sp, bp) = (context.rip, context.regs[RSP], context.regs[RBP]);
        while cursor < old.frames && old.sp[cursor] < sp {
            cursor += 1;
        }
        if checkable
            && cursor < old.frames
            && (old.sp[cursor], old.pc[cursor], old.bp[cursor]) == (sp, pc, bp)
            // A walk cut at MAX_FRAMES knows nothing below its last frame:
            // splice from it only where this one will be cut no later.
            && (!old.full || old.frames - cursor > MAX_FRAMES - out.len())
            && old.holds_from(usize::from(old.first[cursor]))
        {
            // From here on the unwind reads what the last walk read: take
            // the rest of it.
            splice(old, cursor, new, out);
            break;
        }
        if checkable {
            let n = new.frames;
            (new.pc[n], new.sp[n], new.bp[n]) = (pc, sp, bp);
            new.first[n] = new.len as u8;
            new.frames += 1;
        }
        if !out.push(pc as usize) || out.len() == MAX_FRAMES {
            break;
        }
        let mut base = 0u64;
        // SAFETY: looks `pc` up in the loaded images' function tables; it
        // reads no memory at `pc`.
        let entry = unsafe { RtlLookupFunctionEntry(pc, &mut base, std::ptr::null_mut()) };
        if entry.is_null() {
            // No unwind data: a leaf, or code the walk cannot follow (JIT
            // code without registered tables, a corrupt frame). Stop here
            // rather than guess.
            break;
        }
        // SAFETY: `entry` points into the `.pdata` of the image at `base`,
        // and its unwind info lies in that image: mapped while the image is
        // loaded, which it is while its code is on this stack. Byte 3 of
        // UNWIND_INFO holds the frame register in its low nibble.
        let frame_register =
            unsafe { *((base + u64::from((*entry).unwind_info)) as *const u8).add(3) } & 0x0f;
        if frame_register != 0 && frame_register as usize != RBP {
            checkable = false;
        }
        let mut pointers = ContextPointers {
            floating: [std::ptr::null_mut(); 16],
            integer: [std::ptr::null_mut(); 16],
        };
        let (mut handler, mut establisher) = (std::ptr::null_mut(), 0u64);
        // SAFETY: `context` holds this thread's registers in the frame of
        // `pc`, whose `rsp` lies in this thread's stack, and `entry` is
        // `pc`'s function entry in the image at `base`: what the unwinder
        // needs to read that frame's saved registers and return address.
        unsafe {
            RtlVirtualUnwind(
                0,
                base,
                pc,
                entry,
                context,
                &mut handler,
                &mut establisher,
                &mut pointers,
            )
        };
        let next_sp = context.regs[RSP] as usize;
        if context.rip == 0 || context.regs[RSP] <= sp || !in_stack(bounds, next_sp) {
            break;
        }
        if checkable {
            checkable = note(new, bounds, &pointers, next_sp - 8, context.rip);
        }
    }
    new.full = out.len() == MAX_FRAMES;
    memo.walks_done = memo.walks_done.wrapping_add(1);
    memo.last = to;
    if checkable && new.frames > 0 {
        Walk::Frames(Ticket(memo.walks_done))
    } else {
        new.frames = 0;
        new.len = 0;
        Walk::Frames(Ticket(u32::MAX))
    }
}

/// The walk at `from` to read and the one at `to` to write; `from != to`.
fn pick(walks: &mut [Walked; WAYS], from: usize, to: usize) -> (&Walked, &mut Walked) {
    let (low, high) = walks.split_at_mut(from.max(to));
    if from < to {
        (&low[from], &mut high[0])
    } else {
        (&high[0], &mut low[to])
    }
}

/// Takes `old`'s frames from `k` on (as many as fit), with their states
/// and the words their unwinds read.
fn splice(old: &Walked, k: usize, new: &mut Walked, out: &mut Buf<'_>) {
    let room = MAX_FRAMES - out.len();
    let take = (old.frames - k).min(room);
    // Words of the frames whose unwind the copied walk needs: all of them
    // when it ends as the old one did, else those before the last frame.
    let words_end = if k + take == old.frames {
        old.len
    } else {
        usize::from(old.first[k + take - 1])
    };
    let words_start = usize::from(old.first[k]);
    let n = words_end - words_start;
    if new.len + n > WORDS {
        // Cannot be remembered whole: take the frames, forget the walk.
        for &pc in &old.pc[k..k + take] {
            out.push(pc as usize);
        }
        new.frames = 0;
        new.len = 0;
        return;
    }
    let shift = new.len as isize - words_start as isize;
    for j in k..k + take {
        let f = new.frames;
        (new.pc[f], new.sp[f], new.bp[f]) = (old.pc[j], old.sp[j], old.bp[j]);
        new.first[f] = (old.first[j] as isize + shift) as u8;
        new.frames += 1;
        out.push(old.pc[j] as usize);
    }
    new.at[new.len..new.len + n].copy_from_slice(&old.at[words_start..words_end]);
    new.values[new.len..new.len + n].copy_from_slice(&old.values[words_start..words_end]);
    new.len += n;
}

/// Records the words one frame's unwind read; `false` when the walk cannot
/// be checked by them.
fn note(
    new: &mut Walked,
    bounds: (usize, usize),
    pointers: &ContextPointers,
    ret_at: usize,
    ret: u64,
) -> bool {
    // SAFETY: `ret_at` is 8 bytes below the unwound `rsp`, which passed
    // `in_stack`, so it lies in this thread's stack: mapped and aligned.
    if unsafe { std::ptr::read(ret_at as *const u64) } != ret {
        // The return address came from elsewhere: a machine frame.
        return false;
    }
    let mut push = |at: usize| -> bool {
        if new.len == WORDS || !in_stack(bounds, at) || !at.is_multiple_of(8) {
            return false;
        }
        new.at[new.len] = at;
        // SAFETY: `at` lies in this thread's stack and is aligned.
        new.values[new.len] = unsafe { std::ptr::read(at as *const u64) };
        new.len += 1;
        true
    };
    if !push(ret_at) {
        return false;
    }
    // Of the saved registers only a frame register steers the unwind, and
    // the walk is checkable only while that is `rbp`. (The others hold the
    // callers' loop counters and the like, which differ from call to call
    // on the same stack.)
    let rbp = pointers.integer[RBP];
    rbp.is_null() || push(rbp as usize)
}

fn in_stack((low, high): (usize, usize), at: usize) -> bool {
    at >= low && at < high.saturating_sub(8)
}
