//! Stack capture on x64 Windows: unwind data, with a per-thread memo.
//!
//! Most provider code on x64 Windows (MSVC C++) keeps no frame-pointer
//! chain, and where LLVM keeps one it points `rbp` anywhere up to 128 bytes
//! into the frame, not at the saved `rbp`: a frame-pointer walk cannot be
//! trusted there. Every function has unwind data (`.pdata`/`.xdata`)
//! instead, so the walk here is the one `RtlCaptureStackBackTrace` and the
//! CRT's debug heap do: the registers (`RtlCaptureContext`'s integer part,
//! read here directly), then per frame
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
//!  registers ─► memo: same rsp, rbp, and every word read? ─yes─► id
//!                          │ no
//!                          ▼
//!  per frame: RtlLookupFunctionEntry ─► RtlVirtualUnwind (records the words)
//! ```
//!
//! A walk is not remembered when it cannot be checked that way: a frame
//! that uses a frame register other than `rbp`, a machine frame (an
//! interrupted context), a read outside the thread's stack, or more words
//! than a memo entry holds.
//!
//! A walk the memo does not know still unwinds its new frames, and under
//! Wine a function-table search and an unwind cost some 50 ns a frame: 32
//! call sites in rotation cost 10x `System`. So each thread also remembers,
//! by `rip`, what unwinding that frame did ([`Step`]): the caller's `rsp`
//! is a base register (`rsp`, or the frame register once the prolog set
//! it) plus a constant, and each register the unwind restored was read at
//! that base plus a constant. That is a function of `rip` alone, for a
//! frame outside its prolog, without chained unwind data and without a
//! machine frame: learned from one `RtlVirtualUnwind`, it unwinds the
//! frame again with a few loads. Like the memo, it assumes that the code
//! at an address does not change while a thread runs (an image unloaded
//! and another loaded at its address, with a return address at the same
//! place, would give a wrong stack; every read stays in the thread's
//! stack all the same).
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

impl Context {
    const ZERO: Context = Context {
        home: [0; 6],
        flags: 0,
        mx_csr: 0,
        segments: [0; 6],
        eflags: 0,
        debug: [0; 6],
        regs: [0; 16],
        rip: 0,
        rest: [0; 0x4d0 - 0x100],
    };
}

const RSP: usize = 4;
const RBP: usize = 5;

/// The integer registers and `rip` of a [`Context`], as they were before a
/// frame was unwound.
struct Registers {
    regs: [u64; 16],
    rip: u64,
}

impl Registers {
    fn of(context: &Context) -> Registers {
        Registers {
            regs: context.regs,
            rip: context.rip,
        }
    }
}

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

/// Frame unwinds a thread remembers, by `rip`: sets of two (a provider's
/// hot paths pass through a few hundred return addresses; direct-mapped,
/// two of 20 already shared a slot in the benchmark, missing every time).
const SETS: usize = 256;
const STEPS: usize = 2 * SETS;

/// The registers an unwind restores from the stack: `rbx`, `rbp`, `rsi`,
/// `rdi`, `r12`..`r15` (the nonvolatile integer registers).
const NONVOLATILE: [usize; 8] = [3, 5, 6, 7, 12, 13, 14, 15];

/// What unwinding the frame at `pc` does: the caller's `rsp` is
/// `regs[base] + to_caller`, and the registers in `saved` (bits over
/// [`NONVOLATILE`]) were read at `regs[base] + at[i]`.
#[derive(Clone, Copy)]
struct Step {
    /// 0: empty.
    pc: u64,
    base: u8,
    saved: u8,
    to_caller: i32,
    at: [i16; 8],
}

// 512 of them in 16 KiB per thread.
const _: () = assert!(size_of::<Step>() == 32);

const NO_STEP: Step = Step {
    pc: 0,
    base: 0,
    saved: 0,
    to_caller: 0,
    at: [0; 8],
};

/// The first of the two slots `pc` may be in.
fn step_set(pc: u64) -> usize {
    2 * ((pc.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize % SETS)
}

/// The remembered unwind of the frame at `pc`, if any.
fn find_step(steps: &[Step; STEPS], pc: u64) -> Option<&Step> {
    let set = step_set(pc);
    steps[set..set + 2].iter().find(|s| s.pc == pc)
}

/// Remembers `step`; the set's older entry makes room.
fn keep_step(steps: &mut [Step; STEPS], step: Step) {
    let set = step_set(step.pc);
    steps[set + 1] = steps[set];
    steps[set] = step;
}

impl Step {
    /// Unwinds the frame `context` is in, as `RtlVirtualUnwind` did at this
    /// `rip`; `None` (and `context` untouched) when a read would leave the
    /// thread's stack. Returns where `rbp` was read, if it was.
    fn apply(&self, context: &mut Context, bounds: (usize, usize)) -> Option<Option<usize>> {
        let base = context.regs[usize::from(self.base)];
        let read = |offset: i32| -> Option<u64> {
            let at = base.wrapping_add(offset as i64 as u64) as usize;
            if !in_stack(bounds, at) || !at.is_multiple_of(8) {
                return None;
            }
            // SAFETY: `at` lies in this thread's stack and is aligned.
            Some(unsafe { std::ptr::read(at as *const u64) })
        };
        let next_sp = base.wrapping_add(self.to_caller as i64 as u64);
        let rip = read(self.to_caller - 8)?;
        let mut values = [0u64; 8];
        for (i, value) in values.iter_mut().enumerate() {
            if self.saved & (1 << i) != 0 {
                *value = read(i32::from(self.at[i]))?;
            }
        }
        let mut rbp_at = None;
        for (i, &reg) in NONVOLATILE.iter().enumerate() {
            if self.saved & (1 << i) != 0 {
                context.regs[reg] = values[i];
                if reg == RBP {
                    rbp_at = Some(base.wrapping_add(i64::from(self.at[i]) as u64) as usize);
                }
            }
        }
        context.regs[RSP] = next_sp;
        context.rip = rip;
        Some(rbp_at)
    }

    /// What the unwind from `before` to `after` did, when it can be
    /// replayed from `rip` alone: `info` is the frame's `UNWIND_INFO`,
    /// `offset` the frame's `rip` from its function's start.
    fn learn(
        before: &Registers,
        after: &Context,
        pointers: &ContextPointers,
        info: *const u8,
        offset: u64,
    ) -> Option<Step> {
        // SAFETY: `info` points at the UNWIND_INFO of a loaded image: a
        // 4-byte header, then `count` 2-byte codes.
        let header = unsafe { std::ptr::read(info.cast::<[u8; 4]>()) };
        let (flags, prolog, count, frame) =
            (header[0] >> 3, header[1], header[2], header[3] & 0x0f);
        const CHAININFO: u8 = 4;
        if flags & CHAININFO != 0 || offset < u64::from(prolog) {
            return None;
        }
        // A machine frame restores `rsp` from the stack: not a constant.
        let mut k = 0;
        while k < usize::from(count) {
            // SAFETY: code `k` of `count`, inside the UNWIND_INFO.
            let code = unsafe { std::ptr::read(info.add(4 + 2 * k).cast::<[u8; 2]>()) };
            let (op, op_info) = (code[1] & 0x0f, code[1] >> 4);
            k += match op {
                1 => 2 + usize::from(op_info != 0),
                4 | 6 | 8 => 2,
                5 | 7 | 9 => 3,
                10 => return None,
                _ => 1,
            };
        }
        let base = if frame == 0 { RSP } else { usize::from(frame) };
        let from = before.regs[base];
        let delta = |to: u64| i32::try_from(to.wrapping_sub(from) as i64).ok();
        // Saved registers more than 32 KiB from the base: not kept.
        let near = |to: u64| i16::try_from(to.wrapping_sub(from) as i64).ok();
        let mut step = Step {
            pc: before.rip,
            base: base as u8,
            saved: 0,
            to_caller: delta(after.regs[RSP])?,
            at: [0; 8],
        };
        for (i, &reg) in NONVOLATILE.iter().enumerate() {
            let at = pointers.integer[reg];
            if !at.is_null() {
                step.saved |= 1 << i;
                step.at[i] = near(at as u64)?;
            }
        }
        // Any other register restored from the stack: not replayable.
        let mut others = (0..16).filter(|r| !NONVOLATILE.contains(r));
        if others.any(|r| !pointers.integer[r].is_null()) {
            return None;
        }
        Some(step)
    }
}

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
    steps: [Step; STEPS],
    /// The registers of the walk under way.
    context: Context,
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
            steps: [NO_STEP; STEPS],
            context: Context::ZERO,
        })
    };
}

/// Fills `context` with this point's `rip`, `rsp` and integer registers,
/// as `RtlCaptureContext` would, without the floating-point and vector
/// state (an `fxsave`, and in Wine a good part of each walk the memo
/// knows): unwinding integer frames never reads it. A register the asm
/// below overwrites is one the enclosing function saved in its prolog, so
/// the unwind restores its caller's value from the stack all the same.
#[inline(always)]
fn capture_registers(context: &mut Context) {
    const _: () =
        assert!(std::mem::offset_of!(Context, rip) == std::mem::offset_of!(Context, regs) + 128);
    let regs = context.regs.as_mut_ptr();
    // SAFETY: stores ten words into `context.regs` (16 words) and the
    // `rip` that follows them; reads registers only; no stack use.
    unsafe {
        std::arch::asm!(
            "lea {t}, [rip]",
            "mov [{p} + 128], {t}",
            "mov [{p} + 24], rbx",
            "mov [{p} + 32], rsp",
            "mov [{p} + 40], rbp",
            "mov [{p} + 48], rsi",
            "mov [{p} + 56], rdi",
            "mov [{p} + 96], r12",
            "mov [{p} + 104], r13",
            "mov [{p} + 112], r14",
            "mov [{p} + 120], r15",
            p = in(reg) regs,
            t = out(reg) _,
            options(nostack, preserves_flags),
        );
    }
}

/// Walks the calling thread's stack into `out`.
#[inline(never)]
pub(super) fn walk(out: &mut Buf<'_>) -> Walk {
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
    // The thread's own record, not one cleared on the stack for each walk
    // (1.2 KiB): what the last walk left in it is never read.
    capture_registers(&mut memo.context);
    let found = walk_with(memo, out);
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

fn walk_with(memo: &mut Memo, out: &mut Buf<'_>) -> Walk {
    if memo.high == 0 {
        let (mut low, mut high) = (0usize, 0usize);
        // SAFETY: two writable words; the call has no other precondition.
        unsafe { GetCurrentThreadStackLimits(&mut low, &mut high) };
        (memo.low, memo.high) = (low, high);
    }
    let bounds = (memo.low, memo.high);
    if bounds.1 == 0 || !in_stack(bounds, memo.context.regs[RSP] as usize) {
        return Walk::Truncated;
    }
    if let Some(id) = recall(memo) {
        return Walk::Known(id);
    }
    let from = memo.last;
    let to = (from + 1) % WAYS;
    let (old, new) = pick(&mut memo.walks, from, to);
    new.id = 0;
    new.frames = 0;
    new.len = 0;
    new.full = false;
    let checkable = follow(&mut memo.context, &mut memo.steps, bounds, old, new, out);
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

/// A remembered walk from the registers now whose words all hold: the
/// same stack.
#[inline(always)]
fn recall(memo: &mut Memo) -> Option<StackId> {
    let context = &memo.context;
    let (rsp, rbp) = (context.regs[RSP], context.regs[RBP]);
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
            return Some(walked.id);
        }
    }
    None
}

/// Unwinds frame after frame into `out`, recording them in `new` while
/// the walk stays checkable, and taking the rest of the last walk (`old`)
/// once this one reaches a frame it read. Whether the walk stayed
/// checkable (can be remembered).
#[inline(always)]
fn follow(
    context: &mut Context,
    steps: &mut [Step; STEPS],
    bounds: (usize, usize),
    old: &Walked,
    new: &mut Walked,
    out: &mut Buf<'_>,
) -> bool {
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
            return checkable;
        }
        if checkable {
            let n = new.frames;
            (new.pc[n], new.sp[n], new.bp[n]) = (pc, sp, bp);
            new.first[n] = new.len as u8;
            new.frames += 1;
        }
        if !out.push(pc as usize) || out.len() == MAX_FRAMES {
            return checkable;
        }
        let Some(rbp_at) = step_up(context, steps, bounds, &mut checkable) else {
            return checkable;
        };
        let next_sp = context.regs[RSP] as usize;
        if context.rip == 0 || context.regs[RSP] <= sp || !in_stack(bounds, next_sp) {
            return checkable;
        }
        if checkable {
            checkable = note(new, bounds, rbp_at, next_sp - 8, context.rip);
        }
    }
}

/// One frame up: a remembered step replayed, else the system's unwinder.
/// `None` where the walk ends; else where `rbp` was read, if it was.
#[inline(always)]
fn step_up(
    context: &mut Context,
    steps: &mut [Step; STEPS],
    bounds: (usize, usize),
    checkable: &mut bool,
) -> Option<Option<usize>> {
    if let Some(known) = find_step(steps, context.rip) {
        if !matches!(usize::from(known.base), RSP | RBP) {
            *checkable = false;
        }
        if let Some(rbp_at) = known.apply(context, bounds) {
            return Some(rbp_at);
        }
    }
    unwind(context, bounds, steps, checkable)
}

/// Unwinds the frame `context` is in with the system's unwinder, and
/// remembers what it did in `steps` when that can be replayed. `None` when
/// the frame has no unwind data (a leaf, or code the walk cannot follow:
/// JIT code without registered tables, a corrupt frame): the walk stops
/// there rather than guess. Else where `rbp` was read, if it was.
fn unwind(
    context: &mut Context,
    bounds: (usize, usize),
    steps: &mut [Step; STEPS],
    checkable: &mut bool,
) -> Option<Option<usize>> {
    let pc = context.rip;
    let mut base = 0u64;
    // SAFETY: looks `pc` up in the loaded images' function tables; it
    // reads no memory at `pc`.
    let entry = unsafe { RtlLookupFunctionEntry(pc, &mut base, std::ptr::null_mut()) };
    if entry.is_null() {
        return None;
    }
    // SAFETY: `entry` points into the `.pdata` of the image at `base`, and
    // its unwind info lies in that image: mapped while the image is loaded,
    // which it is while its code is on this stack.
    let (begin, info) = unsafe {
        (
            u64::from((*entry).begin),
            (base + u64::from((*entry).unwind_info)) as *const u8,
        )
    };
    // SAFETY: as above; byte 3 of UNWIND_INFO holds the frame register in
    // its low nibble.
    let frame_register = unsafe { *info.add(3) } & 0x0f;
    if frame_register != 0 && frame_register as usize != RBP {
        *checkable = false;
    }
    let mut pointers = ContextPointers {
        floating: [std::ptr::null_mut(); 16],
        integer: [std::ptr::null_mut(); 16],
    };
    let before = Registers::of(context);
    let (mut handler, mut establisher) = (std::ptr::null_mut(), 0u64);
    // SAFETY: `context` holds this thread's registers in the frame of `pc`,
    // whose `rsp` lies in this thread's stack, and `entry` is `pc`'s
    // function entry in the image at `base`: what the unwinder needs to
    // read that frame's saved registers and return address.
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
    // Replayable only when the return address is where a replay reads it,
    // just below the caller's `rsp`.
    let ret_at = (context.regs[RSP] as usize).wrapping_sub(8);
    let ret_below = in_stack(bounds, ret_at)
        && ret_at.is_multiple_of(8)
        // SAFETY: `ret_at` lies in this thread's stack and is aligned.
        && unsafe { std::ptr::read(ret_at as *const u64) } == context.rip;
    if ret_below
        && let Some(step) = Step::learn(&before, context, &pointers, info, pc - (base + begin))
    {
        keep_step(steps, step);
    }
    let rbp = pointers.integer[RBP];
    Some((!rbp.is_null()).then_some(rbp as usize))
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
    rbp_at: Option<usize>,
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
    rbp_at.is_none_or(push)
}

fn in_stack((low, high): (usize, usize), at: usize) -> bool {
    at >= low && at < high.saturating_sub(8)
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;
    use std::mem::MaybeUninit;

    use super::*;

    /// The frames of a walk from the caller, the thread's remembered walks
    /// forgotten first (so the walk unwinds every frame) and, when `cold`,
    /// its remembered frame unwinds too.
    #[inline(never)]
    fn walk_from_here(cold: bool) -> Vec<usize> {
        let _ = MEMO.try_with(|m| {
            // SAFETY: no walk runs on this thread now: no other reference.
            let memo = unsafe { &mut *m.get() };
            for w in &mut memo.walks {
                (w.id, w.frames, w.len) = (0, 0, 0);
            }
            if cold {
                memo.steps = [NO_STEP; STEPS];
            }
        });
        let mut room = MaybeUninit::uninit();
        let mut out = Buf::new(&mut room);
        walk(&mut out);
        out.frames().to_vec()
    }

    #[inline(never)]
    fn down(n: usize, cold: bool) -> Vec<usize> {
        if n == 0 {
            walk_from_here(cold)
        } else {
            black_box(down(black_box(n - 1), cold))
        }
    }

    /// A frame replayed from what an unwind did at its `rip` is the frame
    /// the system's unwinder finds.
    #[test]
    fn replayed_frames_are_the_unwinders_own() {
        for n in 0..6 {
            // From one call site: cold first, then warm.
            let walks: Vec<Vec<usize>> = [true, false]
                .into_iter()
                .map(|cold| down(n, cold))
                .collect();
            let (cold, warm) = (&walks[0], &walks[1]);
            assert!(cold.len() > n + 2, "{n}: {cold:#x?}");
            assert_eq!(warm, cold, "depth {n}");
            // The warm walk could replay every frame it went through in
            // this test's code, but for one whose set in the steps (two
            // ways) the walk's other frames crowd: three distinct return
            // addresses of one set keep two, and which share a set depends
            // on where the linker put the code.
            let crowded = |pc: usize| {
                let mut set: Vec<usize> = warm
                    .iter()
                    .copied()
                    .filter(|&o| step_set(o as u64) == step_set(pc as u64))
                    .collect();
                set.sort_unstable();
                set.dedup();
                set.len() > 2
            };
            let ours: Vec<usize> = warm.iter().take(n + 3).copied().collect();
            let (missed, kept) = MEMO.with(|m| {
                // SAFETY: as above.
                let memo = unsafe { &*m.get() };
                let found = |pc: usize| find_step(&memo.steps, pc as u64).is_some();
                let missed: Vec<usize> = ours
                    .iter()
                    .copied()
                    .filter(|&pc| !found(pc) && !crowded(pc))
                    .collect();
                (missed, ours.iter().filter(|&&pc| found(pc)).count())
            });
            assert!(missed.is_empty(), "depth {n}: {missed:#x?} of {warm:#x?}");
            assert!(
                kept * 2 > ours.len(),
                "depth {n}: most replayed: {warm:#x?}"
            );
        }
    }
}
