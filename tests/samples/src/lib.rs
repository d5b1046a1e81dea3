//! Sample MAPI service providers for mapileak's tests and demo.
//!
//! Three providers — an address book ([`ab`]), a message store ([`store`])
//! and a transport ([`xp`]) — whose objects are real COM objects: interfaces
//! declared with windows-core `#[interface]` under the MAPI IIDs
//! ([`mapi`]), objects built with `#[implement]` and tracked with
//! [`mapileak::Tracked`], and a hand-written status object counted with
//! [`mapileak::RefCount`]. [`host`] plays MAPI: it loads a provider, logs on,
//! does some work, and shuts down in the documented order.
//!
//! Each provider can be built with one [`Bug`] injected on purpose, and
//! reports its whole life (init, Logon, support object, subscriptions,
//! Logoff, Shutdown) to mapileak as [`life`] shows.

pub mod ab;
pub mod host;
pub mod life;
pub mod mapi;
pub mod objects;
pub mod store;
pub mod xp;

use std::sync::{Arc, Mutex};

use windows_core::HRESULT;

/// The bug a sample provider (or the host, for the client's and MAPI's
/// mistakes) is built with. Each one trips one leak or rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// None: the clean provider and host.
    None,
    /// Provider code opens a table and never releases it.
    Table,
    /// Provider code forgets an object that holds another (a message caching
    /// its attachment; a distribution list caching a member): one root, the
    /// rest indirect.
    Chain,
    /// The status object is handed out without an AddRef, so the logon's own
    /// Release at Logoff over-releases it.
    OverRelease,
    /// The leaks above at once (the demo).
    All,
    /// Logoff keeps the support object.
    SupportNotReleased,
    /// A transport releases the support object before `MakeInvalid`.
    SupportBeforeMakeInvalid,
    /// A transport releases the support object, then one of its tables.
    SupportNotLast,
    /// Logoff does not `Unsubscribe` the connection Logon made.
    SubscriptionOpen,
    /// Shutdown does not release the `lpMalloc` init kept.
    MallocNotReleased,
    /// The store calls `StoreLogoffTransports` from StoreLogoff and again from Release.
    StoreLogoffTransportsTwice,
    /// The store never calls `StoreLogoffTransports`.
    StoreLogoffTransportsNever,
    /// Released without StoreLogoff, the store passes `LOGOFF_ORDERLY`, not `LOGOFF_ABORT`.
    ReleaseWithoutAbort,
    /// The client calls `StoreLogoff` with two flags.
    BadStoreLogoffFlags,
    /// Logoff leaves the logon in the provider's list of logons.
    LogonStillListed,
    /// MAPI calls Logoff twice.
    LogoffTwice,
    /// The client opens an object after Logoff.
    ObjectAfterLogoff,
    /// MAPI calls Shutdown without the logon's Logoff.
    ShutdownWithOpenLogon,
    /// The store keeps what every `Synchronize` fetched in a cache it
    /// empties only when it is released: its Logoff is clean, but a
    /// series of snapshots shows the cache grow.
    UnboundedCache,
}

impl Bug {
    /// Whether a provider built with `self` has bug `bug`.
    pub fn has(self, bug: Bug) -> bool {
        self == bug
            || (self == Bug::All && matches!(bug, Bug::Table | Bug::Chain | Bug::OverRelease))
    }
}

/// Where a sample provider puts what its Logoff and Shutdown returned, for
/// the host to read.
#[derive(Clone, Default)]
pub struct Sink(Arc<Mutex<Outcome>>);

/// What one hosted run reported.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One per logoff call (two when MAPI calls Logoff twice; none when it never does).
    pub logoffs: Vec<mapileak::Reported>,
    /// The provider's Shutdown report.
    pub shutdown: Option<mapileak::Reported>,
}

impl Sink {
    fn logoff(&self, logoff: mapileak::Reported) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .logoffs
            .push(logoff);
    }

    fn shutdown(&self, report: mapileak::Reported) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).shutdown = Some(report);
    }

    /// Takes what was reported so far.
    pub fn take(&self) -> Outcome {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Writes `value` through a COM out parameter; `E_POINTER` when it is null.
pub(crate) fn put<T>(slot: *mut T, value: T) -> HRESULT {
    if slot.is_null() {
        return HRESULT(0x8000_4003_u32 as i32);
    }
    // SAFETY: non-null, and every out parameter of the sample interfaces
    // points to a writable, initialized `T` owned by the caller (an
    // `Option<I>` holding `None`, or a plain integer), so overwriting it
    // without dropping the old value leaks nothing.
    unsafe { slot.write(value) };
    HRESULT(0)
}
