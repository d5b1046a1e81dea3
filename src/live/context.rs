//! The leaf every other module may use: which session the calling thread
//! works for, and whether the code running is mapileak's own.
//!
//! - **Current session**: [`Session::enter`](crate::Session::enter) makes a
//!   logon current on a thread; objects and heap blocks created meanwhile
//!   belong to it. The allocator hook reads it, so it is one thread-local
//!   word, read without allocating.
//! - **Quiet**: while mapileak's code runs on a thread (recording an
//!   object, writing a report), the allocations it makes there must not be
//!   attributed to the session that happens to be current. [`Quiet`] marks
//!   such a stretch; the allocator hook counts those blocks but does not
//!   attribute them. A guard, so it is reset on unwind too.
//!
//! It also knows the process's phase: ending (the exit hook runs), or a
//! forked child. This module names no other module of the crate.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// The process is ending (the exit hook runs): the C runtime has destroyed
/// the exiting thread's thread-locals, a `tracing` subscriber's included.
static EXITING: AtomicBool = AtomicBool::new(false);
/// This process is a child of a `fork` made after mapileak started.
static FORKED: AtomicBool = AtomicBool::new(false);

/// Whether the process-end hook has started.
pub(crate) fn exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

/// The process-end hook starts.
pub(crate) fn set_exiting() {
    EXITING.store(true, Ordering::Release);
}

/// Whether this process is a child of a `fork` made after mapileak started.
pub(crate) fn forked_child() -> bool {
    FORKED.load(Ordering::Relaxed)
}

/// This process is a forked child (the `fork` child handler).
#[cfg(unix)]
pub(crate) fn set_forked_child() {
    FORKED.store(true, Ordering::Relaxed);
}

thread_local! {
    static CURRENT: Cell<u64> = const { Cell::new(0) };
    static QUIET: Cell<u32> = const { Cell::new(0) };
}

thread_local! {
    static BUFFER_OWNER: Cell<u64> = const { Cell::new(0) };
}

/// The object that owns the MAPI buffers this thread allocates now (a
/// MAPI utility object's, built on the provider's allocators), or 0.
pub(crate) fn buffer_owner() -> u64 {
    BUFFER_OWNER.try_with(Cell::get).unwrap_or(0)
}

/// Makes `id` the buffers' owner; returns the one it replaces.
pub(crate) fn enter_buffer_owner(id: u64) -> u64 {
    BUFFER_OWNER.try_with(|c| c.replace(id)).unwrap_or(0)
}

/// Makes `previous` (what [`enter_buffer_owner`] returned) the owner again.
pub(crate) fn leave_buffer_owner(previous: u64) {
    let _ = BUFFER_OWNER.try_with(|c| c.set(previous));
}

/// The calling thread's current session id, or 0; callable from the
/// allocator hook.
#[inline(always)]
pub(crate) fn current_id() -> u64 {
    CURRENT.try_with(Cell::get).unwrap_or(0)
}

/// Makes `id` the current session; returns the one it replaces.
pub(crate) fn enter(id: u64) -> u64 {
    CURRENT.try_with(|c| c.replace(id)).unwrap_or(0)
}

/// Makes `previous` (what [`enter`] returned) current again.
pub(crate) fn leave(previous: u64) {
    let _ = CURRENT.try_with(|c| c.set(previous));
}

thread_local! {
    /// Set when this thread's thread-locals are being destroyed (the
    /// sentinel's destructor ran): no `tracing` then, since a subscriber's
    /// own thread-locals may be gone and it would panic (an abort with
    /// `panic = "abort"`).
    static TEARING_DOWN: Cell<bool> = const { Cell::new(false) };
    static SENTINEL: Sentinel = const { Sentinel };
}

struct Sentinel;

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = TEARING_DOWN.try_with(|t| t.set(true));
    }
}

/// Registers this thread's sentinel (once per thread; cheap after): a
/// thread that logs on, makes an object or reports gets it, so a report
/// made later from one of its thread-local destructors knows.
pub(crate) fn watch_thread() {
    let _ = SENTINEL.try_with(|_| ());
}

/// Whether this thread's thread-locals are being (or have been) destroyed,
/// as far as its sentinel saw.
pub(crate) fn thread_tearing_down() -> bool {
    TEARING_DOWN.try_with(Cell::get).unwrap_or(true) || SENTINEL.try_with(|_| ()).is_err()
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
