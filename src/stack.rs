//! Stack capture: raw return addresses now, symbols only for what a report
//! prints.
//!
//! Capture must work inside the allocator hook, so nothing here allocates,
//! takes a lock, or calls `tracing`:
//!
//! - **Walk**: with frame pointers (`-C force-frame-pointers=yes`, set for
//!   this workspace in `.cargo/config.toml`; a provider's debug profile needs
//!   it too), the walk follows the saved-frame-pointer chain, each step
//!   checked against the thread's stack bounds, so a frame without a frame
//!   pointer ends the walk instead of faulting. A walk that stops after fewer
//!   than [`MIN_FRAMES`] frames on a bad link is taken as truncated, and the
//!   platform unwinder (DWARF, ~100x slower) captures that stack instead.
//! - **Intern**: each unique stack is stored once in fixed, preallocated
//!   tables (lock-free insert) and named by a [`StackId`]; objects, blocks
//!   and events keep the 4-byte id. When the tables are full, new stacks get
//!   id 0 ("unknown") and the report says so by showing no frames.
//! - **Symbolize**: at report time, once per unique address ([`Symbolizer`]).
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use mapileak_reports::{Frame, Stack};

/// Names one interned stack. `0` is the empty or unknown stack.
pub(crate) type StackId = u32;

/// Frames kept per stack: deep enough to reach the provider's caller from
/// inside the allocator, windows-core's vtable shims and a test harness.
const MAX_FRAMES: usize = 48;
/// A frame-pointer walk shorter than this that ended on a bad link is
/// treated as truncated.
const MIN_FRAMES: usize = 4;

const SLOTS: usize = 1 << 19;
const MAX_STACKS: usize = 1 << 18;
const POOL: usize = 1 << 23;

struct Header {
    hash: AtomicU64,
    start: AtomicU32,
    len: AtomicU32,
}

/// Open-addressed index: slot -> stack id (0: empty).
static INDEX: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];
static HEADERS: [Header; MAX_STACKS] = [const {
    Header {
        hash: AtomicU64::new(0),
        start: AtomicU32::new(0),
        len: AtomicU32::new(0),
    }
}; MAX_STACKS];
/// Every interned stack's frames, back to back.
static FRAMES: [AtomicUsize; POOL] = [const { AtomicUsize::new(0) }; POOL];
static NEXT_ID: AtomicU32 = AtomicU32::new(1);
static FRAMES_USED: AtomicUsize = AtomicUsize::new(0);

/// Captures the calling thread's stack and interns it. Allocation-free.
#[inline(never)]
pub(crate) fn capture() -> StackId {
    let mut frames = [0usize; MAX_FRAMES];
    let n = walk(&mut frames);
    intern(&frames[..n])
}

#[inline(always)]
fn walk(out: &mut [usize; MAX_FRAMES]) -> usize {
    match fp::walk(out) {
        Some(n) => n,
        None => unwind(out),
    }
}

/// The platform unwinder, for when frame pointers are missing.
#[inline(never)]
fn unwind(out: &mut [usize; MAX_FRAMES]) -> usize {
    let mut n = 0;
    let mut record = |frame: &backtrace::Frame| {
        out[n] = frame.ip() as usize;
        n += 1;
        n < MAX_FRAMES
    };
    #[cfg(unix)]
    // SAFETY: `trace_unsynchronized` is unsafe only where the platform
    // unwinder is not thread-safe (dbghelp on Windows); libgcc's
    // `_Unwind_Backtrace`, used on unix, is. The closure does not allocate.
    unsafe {
        backtrace::trace_unsynchronized(&mut record)
    };
    #[cfg(not(unix))]
    backtrace::trace(&mut record);
    n
}

#[cfg(all(unix, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod fp {
    //! The frame-pointer walk.
    use std::cell::Cell;

    use super::{MAX_FRAMES, MIN_FRAMES};

    thread_local! {
        /// This thread's stack, `[low, high)`; `(0, 0)` until first asked.
        static BOUNDS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }

    fn bounds() -> (usize, usize) {
        let cached = BOUNDS.try_with(Cell::get).unwrap_or((0, 0));
        if cached.1 != 0 {
            return cached;
        }
        let found = query_bounds();
        let _ = BOUNDS.try_with(|b| b.set(found));
        found
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

    /// Return addresses along the frame-pointer chain, or `None` when the
    /// walk looks truncated (or the bounds are unknown).
    #[inline(always)]
    pub(super) fn walk(out: &mut [usize; MAX_FRAMES]) -> Option<usize> {
        let (low, high) = bounds();
        if high == 0 {
            return None;
        }
        let mut fp = frame_pointer();
        let mut n = 0;
        let mut clean_end = false;
        while n < MAX_FRAMES {
            // A frame record is two words: [fp] = caller's fp, [fp+8] = return address.
            if fp < low || fp > high - 16 || !fp.is_multiple_of(8) {
                break;
            }
            // SAFETY: `fp` and `fp + 8` lie inside this thread's stack (checked
            // just above), which is mapped and readable for its whole extent.
            let (next, ret) = unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) };
            if ret == 0 {
                clean_end = true;
                break;
            }
            out[n] = ret;
            n += 1;
            if next == 0 {
                clean_end = true;
                break;
            }
            if next <= fp {
                break;
            }
            fp = next;
        }
        if n < MIN_FRAMES && !clean_end {
            None
        } else {
            Some(n)
        }
    }
}

#[cfg(not(all(unix, any(target_arch = "x86_64", target_arch = "aarch64"))))]
mod fp {
    //! No frame-pointer walk on this platform: always the unwinder.
    pub(super) fn walk(_out: &mut [usize; super::MAX_FRAMES]) -> Option<usize> {
        None
    }
}

/// Hashes the innermost frames (and the depth) in four independent lanes:
/// cheap on the allocation path. Equality still compares every frame, so
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

fn same(id: StackId, hash: u64, frames: &[usize]) -> bool {
    let h = &HEADERS[id as usize];
    if h.hash.load(Ordering::Acquire) != hash
        || h.len.load(Ordering::Relaxed) as usize != frames.len()
    {
        return false;
    }
    let start = h.start.load(Ordering::Relaxed) as usize;
    frames
        .iter()
        .enumerate()
        .all(|(i, &f)| FRAMES[start + i].load(Ordering::Relaxed) == f)
}

/// Interns `frames`; lock-free and allocation-free.
fn intern(frames: &[usize]) -> StackId {
    let h = hash(frames);
    let mut slot = (h as usize) & (SLOTS - 1);
    let mut reserved: StackId = 0;
    for _ in 0..SLOTS {
        let id = INDEX[slot].load(Ordering::Acquire);
        if id == 0 {
            if reserved == 0 {
                reserved = match reserve(h, frames) {
                    Some(id) => id,
                    None => return 0,
                };
            }
            match INDEX[slot].compare_exchange(0, reserved, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return reserved,
                // Another thread filled the slot: look at what it put there.
                Err(other) if same(other, h, frames) => return other,
                Err(_) => {}
            }
        } else if same(id, h, frames) {
            return id;
        }
        slot = (slot + 1) & (SLOTS - 1);
    }
    0
}

/// Writes a new stack's frames and header; publishing it is the caller's CAS.
fn reserve(h: u64, frames: &[usize]) -> Option<StackId> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    if id as usize >= MAX_STACKS {
        return None;
    }
    let start = FRAMES_USED.fetch_add(frames.len(), Ordering::Relaxed);
    if start + frames.len() > POOL {
        return None;
    }
    for (i, &f) in frames.iter().enumerate() {
        FRAMES[start + i].store(f, Ordering::Relaxed);
    }
    let header = &HEADERS[id as usize];
    header.start.store(start as u32, Ordering::Relaxed);
    header.len.store(frames.len() as u32, Ordering::Relaxed);
    header.hash.store(h, Ordering::Release);
    Some(id)
}

/// The raw return addresses of stack `id`, innermost first.
pub(crate) fn frames(id: StackId) -> Vec<usize> {
    if id == 0 || id as usize >= MAX_STACKS {
        return Vec::new();
    }
    let h = &HEADERS[id as usize];
    if h.hash.load(Ordering::Acquire) == 0 {
        return Vec::new();
    }
    let start = h.start.load(Ordering::Relaxed) as usize;
    let len = h.len.load(Ordering::Relaxed) as usize;
    (start..start + len)
        .map(|i| FRAMES[i].load(Ordering::Relaxed))
        .collect()
}

/// Turns interned stacks into report stacks, resolving each address once.
#[derive(Default)]
pub(crate) struct Symbolizer {
    cache: HashMap<usize, Vec<Frame>>,
}

impl Symbolizer {
    /// The report form of stack `id`: inlined frames expanded, mapileak's own
    /// frames (the capture machinery, the allocator hook) dropped from the top.
    pub(crate) fn stack(&mut self, id: StackId) -> Stack {
        let mut out = Vec::new();
        for addr in frames(id) {
            let resolved = self.cache.entry(addr).or_insert_with(|| resolve(addr));
            out.extend(resolved.iter().cloned());
        }
        let own = out
            .iter()
            .take_while(|f| is_capture_frame(&f.function))
            .count();
        out.drain(..own);
        Stack { id, frames: out }
    }
}

fn resolve(addr: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    backtrace::resolve(addr as *mut std::ffi::c_void, |symbol| {
        let function = symbol
            .name()
            .map(|n| format!("{n:#}"))
            .unwrap_or_else(|| "??".to_owned());
        frames.push(Frame {
            function,
            file: symbol.filename().map(|p| p.display().to_string()),
            line: symbol.lineno(),
        });
    });
    if frames.is_empty() {
        frames.push(Frame {
            function: format!("?? ({addr:#x})"),
            file: None,
            line: None,
        });
    }
    frames
}

/// Frames of the capture machinery itself: mapileak's functions, the
/// unwinder, and the allocation plumbing between the caller and the hook.
fn is_capture_frame(function: &str) -> bool {
    let f = function.trim_start_matches('<');
    f.starts_with("backtrace::")
        || (f.starts_with("mapileak::") && !f.contains("::tests::"))
        || f.starts_with("__rust")
        || f.starts_with("__rdl_")
        || f.starts_with("alloc::alloc::")
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn frame_pointer_walk_reaches_the_caller_without_the_unwinder() {
        let mut out = [0usize; MAX_FRAMES];
        let n = fp::walk(&mut out).expect("frame pointers are on in this workspace");
        assert!(n >= MIN_FRAMES, "{n} frames");
        let mut unwound = [0usize; MAX_FRAMES];
        let m = unwind(&mut unwound);
        // The walk's frames are return addresses the unwinder saw too.
        let seen = out[..n].iter().filter(|a| unwound[..m].contains(a)).count();
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
                .map(|_| s.spawn(|| stacks.iter().map(|f| intern(f)).collect::<Vec<_>>()))
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
