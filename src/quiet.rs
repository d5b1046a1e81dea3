//! Keeping mapileak's own allocations out of the reports.
//!
//! While mapileak's code runs on a thread (recording an object, writing a
//! report), the allocations it makes there must not be attributed to the
//! session whose scope happens to be current. [`Quiet`] marks such a
//! stretch; the allocator hook counts those blocks but does not attribute
//! them. A guard, so it is reset on unwind too.

use std::cell::Cell;

thread_local! {
    static QUIET: Cell<u32> = const { Cell::new(0) };
}

/// While alive, this thread's allocations are mapileak's own.
pub(crate) struct Quiet(());

impl Quiet {
    pub(crate) fn new() -> Quiet {
        let _ = QUIET.try_with(|q| q.set(q.get() + 1));
        Quiet(())
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        let _ = QUIET.try_with(|q| q.set(q.get().saturating_sub(1)));
    }
}

/// Whether this thread is inside mapileak's own code (or its TLS is gone).
#[inline(always)]
pub(crate) fn is_quiet() -> bool {
    QUIET.try_with(|q| q.get() > 0).unwrap_or(true)
}
