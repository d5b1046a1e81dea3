//! Leak detection for MAPI service providers, linked into their debug builds.
//!
//! A provider tracks every object it creates against the logon session that
//! created it ([`Tracked`] for objects whose COM plumbing is generated, such
//! as windows-core `#[implement]` structs; [`RefCount`] to replace a
//! hand-written reference count). When the logon logs off
//! ([`Session::ab_logoff`], [`Session::ms_logoff`],
//! [`Session::transport_logoff`]) mapileak reports the objects still alive,
//! each with the stack that created it, as the MAPI documentation asks
//! providers to do in debug builds: `tracing` events (or stderr when no
//! subscriber is installed), a JSON report in `MAPILEAK_DIR`, and the
//! returned [`Reported`] for the provider's own tests.
//!
//! ```
//! use mapileak::{kinds, ProviderKind, Session, Tracked};
//!
//! let session = Session::logon(ProviderKind::MessageStore, "Personal Folders");
//! let _scope = session.enter();
//! let table = Tracked::new(&kinds::IMAPI_TABLE, "contents of Inbox");
//! std::mem::forget(table); // the bug
//! let logoff = session.ms_logoff();
//! # #[cfg(debug_assertions)]
//! assert_eq!(logoff.report.objects[0].kind, "IMAPITable");
//! ```
//!
//! # Debug builds only
//!
//! The instrumentation is live when `debug_assertions` are on or feature
//! `force` is enabled. Otherwise every type here is zero-sized (but
//! [`RefCount`], which still counts, and [`Support`], which holds what it
//! wraps) and every call a no-op. Each public type is defined once and
//! forwards to a backend chosen once, below: `src/live/` (the recorder)
//! or `src/off/` (the same item names, doing nothing).
//!
//! # Environment (contract)
//!
//! - `MAPILEAK=off|summary|full` — see [`Mode`]; default `full`.
//! - `MAPILEAK_DIR` — where reports go; default `mapileak` in the temporary
//!   directory.
//! - `MAPILEAK_HTML=1` — also write a self-contained HTML page next to each
//!   JSON report ([`set_html`]).
//! - `MAPILEAK_HISTORY` — kinds (`IMAPITable,IMessage`, or `all`) whose
//!   objects record a stack per AddRef/Release.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// Unsafe code lives in `heap` (the allocator's public face), `buffers`
// (MAPI's buffer functions), `config_env` (the user id) and, in the live
// backend, `stack` (the stack walks), `exit` (atexit), `vmem` (tables
// reserved on first use), `alloc` (the allocator hook), `fork` and `trace`
// (stderr and Windows' debugger output), each allowing it for itself.
#![deny(unsafe_code)]

// The build is chosen here, once: the live recorder with the
// instrumentation (`debug_assertions` or feature `force`), the no-op
// backend without it. Both offer the same item names.
// (Two plain `mod`s, not one with a chosen path: tools that walk the
// module tree, cargo-mutants among them, follow these.)
#[cfg(any(debug_assertions, feature = "force"))]
mod live;
#[cfg(any(debug_assertions, feature = "force"))]
use live as backend;
#[cfg(not(any(debug_assertions, feature = "force")))]
mod off;
#[cfg(not(any(debug_assertions, feature = "force")))]
use off as backend;

mod buffer_abi;
pub mod buffers;
mod chains;
mod config;
mod config_env;
mod count;
#[cfg(test)]
mod doc_links;
mod heap;
mod id;
pub mod kind;
#[cfg(test)]
mod layers;
mod lifecycle;
mod object;
mod outcome;
mod protocol;
mod session;
mod settings;
#[doc(hidden)]
pub mod sync;

pub use config::{
    Mode, html, mode, offline_symbols, output_dir, set_html, set_mode, set_offline_symbols,
    set_output_dir, set_trace_roots, trace_roots,
};
pub use heap::{
    HeapStats, TrackingAllocator, bad_free, dealloc_mismatch, double_free, heap_stats,
    hold_across_fork, track_alloc, track_alloc_indexed, track_free, track_free_indexed,
};
pub use id::ObjectId;
pub use kind::{Kind, Role, kinds};
pub use lifecycle::{Provider, Support, process_exit, snapshot};
pub use mapileak_reports as reports;
pub use mapileak_reports::{Event, ProviderKind, Report};
pub use object::{RefCount, Tracked};
pub use outcome::{Logoff, Reported};
pub use protocol::{LOGOFF_ABORT, LOGOFF_IN_FLAGS, Malloc};
pub use session::{Scope, Session};

#[doc(hidden)]
pub use inventory as __inventory;

/// Fault injection for mapileak's own process-end tests (feature
/// `test-hooks`, which no provider build turns on).
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub use backend::testing;

pub use backend::LIVE;

/// The public types have these traits; tests/release checks the same list
/// in the release build (this crate's own tests always build it live).
#[cfg(test)]
mod same_api_in_every_build;
