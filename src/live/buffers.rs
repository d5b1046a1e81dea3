//! The live side of `crate::buffers`: stacks, findings and the buffers'
//! owner for the table of chains, and the table as a report reads it.

use mapileak_reports::Rule;

use crate::chains::{TABLE, Table};

use super::context::{self, Quiet};
use super::finding::PendingFinding;
use super::registry;
use super::stack;

pub(crate) use stack::StackId;

/// Marks mapileak's own allocations while a buffer call runs.
pub(crate) fn quiet() -> Quiet {
    Quiet::new()
}

/// The calling stack, for a new buffer.
pub(crate) fn capture() -> StackId {
    stack::capture()
}

/// The calling thread's current session.
pub(crate) fn current_session() -> u64 {
    context::current_id()
}

/// The object that owns the buffers this thread allocates now, or 0.
pub(crate) fn buffer_owner() -> u64 {
    context::buffer_owner()
}

/// Makes `owner` the buffers' owner; returns the one it replaces.
pub(crate) fn enter_owner(owner: u64) -> u64 {
    context::enter_buffer_owner(owner)
}

/// Makes `previous` (what [`enter_owner`] returned) the owner again.
pub(crate) fn leave_owner(previous: u64) {
    context::leave_buffer_owner(previous)
}

/// A bad buffer call of `session`, at the calling stack; `allocated`: the
/// buffer's allocation.
pub(crate) fn finding(
    session: u64,
    rule: Rule,
    allocated: Option<StackId>,
    message: impl FnOnce() -> String,
) {
    let stack = stack::capture();
    let mut finding = PendingFinding::new(rule, message(), stack);
    finding.also = allocated;
    registry::add_finding(session, finding);
}

#[cfg(unix)]
static HELD_FOR_FORK: crate::sync::ForkHeld<crate::sync::MutexGuard<'static, Option<Table>>> =
    crate::sync::ForkHeld::new();

/// Takes the buffer table's lock and keeps it until `release_after_fork`
/// (before `fork`).
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn hold_for_fork() {
    let held = TABLE.lock();
    // SAFETY: the guard of the lock just taken, which every user of the
    // slot takes first.
    unsafe { HELD_FOR_FORK.keep(held) };
}

/// Releases what `hold_for_fork` took (after `fork`).
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn release_after_fork() {
    // SAFETY: the thread of `hold_for_fork`, still holding the lock. The
    // guard drops here, releasing it.
    drop(unsafe { HELD_FOR_FORK.take() });
}

/// Runs `f` holding the table's lock (fault injection: see `testing`).
#[cfg(feature = "test-hooks")]
pub(crate) fn with_table_locked(f: impl FnOnce()) {
    let _held = TABLE.lock();
    f();
}

/// An unfreed chain, as a report sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LiveBuffer {
    pub session: u64,
    pub stack: stack::StackId,
    /// Bytes of the root and its children.
    pub bytes: u64,
    pub children: u64,
    /// The object that owns it, or 0.
    pub owner: u64,
}

/// Unfreed chains of the sessions `pick` accepts.
pub(crate) fn live_in(pick: impl Fn(u64) -> bool) -> Vec<LiveBuffer> {
    live_in_within(pick, None).unwrap_or_default()
}

/// [`live_in`], the table's lock waited for at most `wait` (`None`: as
/// long as it takes); `None` when it was not free in time.
pub(crate) fn live_in_within(
    pick: impl Fn(u64) -> bool,
    wait: Option<std::time::Duration>,
) -> Option<Vec<LiveBuffer>> {
    let mut table = match wait {
        None => TABLE.lock(),
        Some(d) => TABLE.try_lock_for(d)?,
    };
    let t = table.get_or_insert_with(Table::default);
    Some({
        let mut out: Vec<_> = t
            .records
            .iter()
            .filter(|(_, r)| !r.freed && !r.to_caller && r.root.is_none() && pick(r.session))
            .map(|(_, r)| {
                let bytes = r.size
                    + r.children
                        .iter()
                        .filter_map(|c| t.records.get(c))
                        .map(|c| c.size)
                        .sum::<u64>();
                LiveBuffer {
                    session: r.session,
                    stack: r.stack,
                    bytes,
                    children: r.children.len() as u64,
                    owner: r.owner,
                }
            })
            .collect();
        out.sort_unstable();
        out
    })
}
