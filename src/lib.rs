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
//! returned [`Logoff`] for the provider's own tests.
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
//! wraps) and every call a no-op. Each type is defined once, for both
//! builds: only its inner part is chosen by the build.
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
// Unsafe code lives in `stack` (frame-pointer walk), `exit` (atexit),
// `vmem` (tables reserved on first use), `config_env` (the user id),
// `alloc` (the allocator hook), `heap` (the allocator's public face),
// `buffers` (MAPI's buffer functions) and `trace` (stderr and Windows'
// debugger output), each allowing it for itself.
#![deny(unsafe_code)]

mod buffer_abi;
mod config_env;
mod heap;
mod id;
pub mod kind;

pub use heap::{
    HeapStats, TrackingAllocator, bad_free, dealloc_mismatch, double_free, heap_stats, track_alloc,
    track_free,
};
pub use id::ObjectId;
pub use kind::{Kind, Role, kinds};
pub use mapileak_reports as reports;
pub use mapileak_reports::{Event, ProviderKind, Report};

#[doc(hidden)]
pub use inventory as __inventory;

#[cfg(any(debug_assertions, feature = "force"))]
mod alloc;
#[cfg(any(debug_assertions, feature = "force"))]
mod analysis;
pub mod buffers;
// Settings: one implementation in every build (a release build reports
// nothing, so its mode is `Off`).
#[cfg_attr(not(any(debug_assertions, feature = "force")), allow(dead_code))]
mod config;
#[cfg_attr(not(any(debug_assertions, feature = "force")), allow(dead_code))]
mod context;
#[cfg(any(debug_assertions, feature = "force"))]
mod count;
#[cfg(any(debug_assertions, feature = "force"))]
mod emit;
#[cfg(any(debug_assertions, feature = "force"))]
mod exit;
#[cfg(any(debug_assertions, feature = "force"))]
mod fork;
#[cfg(all(test, any(debug_assertions, feature = "force")))]
mod layers;
mod lifecycle;
#[cfg(any(debug_assertions, feature = "force"))]
mod logoff;
mod object;
#[cfg(any(debug_assertions, feature = "force"))]
mod registry;
#[cfg(any(debug_assertions, feature = "force"))]
mod rules;
mod session;
#[cfg(any(debug_assertions, feature = "force"))]
mod snapshot;
#[cfg(any(debug_assertions, feature = "force"))]
mod stack;
#[cfg_attr(not(any(debug_assertions, feature = "force")), allow(dead_code))]
mod trace;
#[cfg(any(debug_assertions, feature = "force"))]
mod vmem;

pub use config::{
    html, mode, output_dir, set_html, set_mode, set_output_dir, set_trace_roots, trace_roots,
};
pub use lifecycle::{Provider, Support};
pub use object::{RefCount, Tracked};
pub use session::{Scope, Session};

#[cfg(any(debug_assertions, feature = "force"))]
#[doc(hidden)]
pub mod testing;

/// Reports everything still alive as leaked at process end (`event: exit`):
/// one report per provider (with its logons), per logon made without a
/// provider, and one for objects created outside any logon. Runs once; the
/// exit hook calls it (see the README), and a provider DLL may call it
/// itself when it is unloaded. Nothing, in a build without the
/// instrumentation.
///
/// It never waits long for a lock: at process end, and in a DLL's detach
/// under the loader lock, a thread that held one may have been ended in the
/// middle (`ExitProcess` ends the other threads first) or be stuck. Each of
/// mapileak's locks, and the symbolizer, is waited for at most 200 ms;
/// past that nothing is written but one line saying which lock was held.
pub fn process_exit() -> Vec<Logoff> {
    #[cfg(any(debug_assertions, feature = "force"))]
    return logoff::process_exit();
    #[cfg(not(any(debug_assertions, feature = "force")))]
    Vec::new()
}

/// `IMsgStore::StoreLogoff` input flags; exactly one may be passed.
pub const LOGOFF_IN_FLAGS: [(u32, &str); 5] = [
    (0x1, "LOGOFF_NO_WAIT"),
    (0x2, "LOGOFF_ORDERLY"),
    (0x4, "LOGOFF_PURGE"),
    (0x8, "LOGOFF_ABORT"),
    (0x10, "LOGOFF_QUIET"),
];

/// `LOGOFF_ABORT`, what a store's Release passes to `StoreLogoffTransports`
/// when the client never called `StoreLogoff`.
pub const LOGOFF_ABORT: u32 = 0x8;

/// Whether `*ProviderInit` kept `lpMalloc` (and so owes one Release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malloc {
    /// The provider did not keep `lpMalloc`.
    NotKept,
    /// The provider AddRef'd `lpMalloc` to keep it: Shutdown must release it.
    AddRefd,
}

/// How much mapileak does, from `MAPILEAK` (contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `off`: objects are not recorded, nothing is reported or written.
    Off,
    /// `summary`: objects are recorded; at Logoff one summary event and the
    /// report files.
    Summary,
    /// `full` (the default): as `summary`, plus one event per leak root and
    /// per finding, with its creation stack.
    Full,
}

impl Mode {
    /// Parses `off`, `summary` or `full` (any case).
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "0" => Some(Mode::Off),
            "summary" => Some(Mode::Summary),
            "full" | "on" | "1" | "" => Some(Mode::Full),
            _ => None,
        }
    }
}

/// What a logoff (or Shutdown, or process-end) call returns: the report
/// and the files written.
#[derive(Debug, Clone)]
pub struct Logoff {
    /// The report, as written to the JSON file.
    pub report: Report,
    /// The report files written (none when `MAPILEAK=off` or on I/O errors).
    pub files: Vec<std::path::PathBuf>,
}

#[cfg_attr(not(any(debug_assertions, feature = "force")), allow(dead_code))]
impl Logoff {
    fn new(report: Report) -> Logoff {
        Logoff {
            report,
            files: Vec::new(),
        }
    }

    fn empty(provider: ProviderKind, event: Event) -> Logoff {
        Logoff::new(Report::new(reports::SessionInfo {
            id: 0,
            provider,
            label: String::new(),
            event,
        }))
    }
}

/// Whether the instrumentation is compiled in (debug build or feature `force`).
pub const LIVE: bool = cfg!(any(debug_assertions, feature = "force"));

/// The public types have these traits; tests/release checks the same list
/// in the release build (this crate's own tests always build it live).
#[cfg(test)]
mod same_api_in_every_build {
    use super::*;

    include!("../tests/support/same_traits.rs");

    #[test]
    fn traits() {
        same_traits_in_every_build();
    }
}
