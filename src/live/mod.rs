//! The backend with the instrumentation (a provider's debug build): the
//! recorder. The public types forward here; `src/off/` has the same item
//! names doing nothing.
//!
//! - API side, one module per public module: `session`, `lifecycle`,
//!   `object`, `heap`, `buffers`, `config`, `logoff::process_exit`.
//! - Capture: `alloc` (the allocator hook, `alloc/table`), `stack` (the
//!   walks), `registry` (objects, sessions), `context`, `vmem`.
//! - Report: `logoff` (the pipeline), `snapshot`, `rules`, `analysis`,
//!   `emit`, `symbolize`, `trace`; `exit` and `fork` around the process.

/// Whether the instrumentation is compiled in (debug build or feature `force`).
pub const LIVE: bool = true;

/// What names a session, a provider or an object: its number.
pub(crate) type Id = u64;

/// The number an id shows.
#[inline(always)]
pub(crate) fn number(id: Id) -> u64 {
    id
}

pub(crate) mod alloc;
pub(crate) mod analysis;
pub(crate) mod buffers;
pub(crate) mod context;
pub(crate) mod emit;
pub(crate) mod env;
pub(crate) mod exit;
pub(crate) mod finding;
pub(crate) mod fork;
pub(crate) mod heap;
pub(crate) mod life;
pub(crate) mod lifecycle;
pub(crate) mod logoff;
pub(crate) mod object;
pub(crate) mod once;
pub(crate) mod registry;
pub(crate) mod rules;
pub(crate) mod session;
pub(crate) mod snapshot;
pub(crate) mod stack;
pub(crate) mod symbolize;
pub(crate) mod trace;
pub(crate) mod vmem;
pub(crate) mod watch;

#[cfg(feature = "test-hooks")]
pub mod testing;
