//! Stack capture: raw return addresses now, symbols only for what a report
//! prints.
//!
//! Each unique stack is interned once and named by a [`StackId`]; objects and
//! events store the id (4 bytes), not the frames. Symbolization happens at
//! report time, once per unique address ([`Symbolizer`]).

use std::collections::HashMap;

use mapileak_reports::{Frame, Stack};
use parking_lot::Mutex;

/// Names one interned stack. `0` is the empty stack (capture turned off).
pub(crate) type StackId = u32;

/// Frames kept per stack: deep enough to reach the provider's caller from
/// inside windows-core's vtable shims and a test harness.
const MAX_FRAMES: usize = 48;

struct Interner {
    ids: HashMap<Box<[usize]>, StackId>,
    stacks: Vec<Box<[usize]>>,
}

static INTERNER: Mutex<Option<Interner>> = Mutex::new(None);

/// Captures the calling thread's stack and interns it.
#[inline(never)]
pub(crate) fn capture() -> StackId {
    let mut frames = [0usize; MAX_FRAMES];
    let mut n = 0;
    backtrace::trace(|frame| {
        frames[n] = frame.ip() as usize;
        n += 1;
        n < MAX_FRAMES
    });
    intern(&frames[..n])
}

fn intern(frames: &[usize]) -> StackId {
    let mut guard = INTERNER.lock();
    let interner = guard.get_or_insert_with(|| Interner {
        ids: HashMap::new(),
        // Id 0 is the empty stack.
        stacks: vec![Box::default()],
    });
    if let Some(&id) = interner.ids.get(frames) {
        return id;
    }
    let id = interner.stacks.len() as StackId;
    interner.stacks.push(frames.into());
    interner.ids.insert(frames.into(), id);
    id
}

/// The raw return addresses of stack `id`, innermost first.
pub(crate) fn frames(id: StackId) -> Vec<usize> {
    INTERNER
        .lock()
        .as_ref()
        .and_then(|i| i.stacks.get(id as usize))
        .map(|s| s.to_vec())
        .unwrap_or_default()
}

/// Turns interned stacks into report stacks, resolving each address once.
#[derive(Default)]
pub(crate) struct Symbolizer {
    cache: HashMap<usize, Vec<Frame>>,
}

impl Symbolizer {
    /// The report form of stack `id`: inlined frames expanded, mapileak's own
    /// frames (the capture machinery) dropped from the top.
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

/// Frames of the capture machinery itself: mapileak's functions and the unwinder.
fn is_capture_frame(function: &str) -> bool {
    let f = function.trim_start_matches('<');
    f.starts_with("backtrace::") || (f.starts_with("mapileak::") && !f.contains("::tests::"))
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
        let a = ids[0];
        let stack = Symbolizer::default().stack(a);
        let top = &stack.frames[0].function;
        assert!(top.ends_with("stack::tests::here"), "top frame {top}");
    }
}
