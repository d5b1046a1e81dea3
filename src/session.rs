//! Logon sessions: one per `Logon` of an address book, message store or
//! transport provider.
//!
//! ```text
//!   Session::logon ──► objects created, AddRef'd, released ──► *_logoff()
//!   (IXXProvider::Logon)   (Tracked / RefCount, in scope       (IABLogon::Logoff,
//!                           through Session::enter)             IMSLogon::Logoff,
//!                                                               IXPLogon::TransportLogoff)
//!                                                                   │ report: objects still
//!                                                                   ▼ alive, findings
//!                                          MAPI: Release(logon), Shutdown, Release(provider)
//! ```
//!
//! The logon and provider objects ([`Role::Logon`](crate::Role::Logon),
//! [`Role::Provider`](crate::Role::Provider)) are expected alive at Logoff:
//! MAPI releases them after it returns.

use std::marker::PhantomData;

use mapileak_reports::ProviderKind;

use crate::Reported;
use crate::backend::{self, lifecycle, session as imp};
use crate::protocol::Call;

/// One logon session. `Copy`: store it in the logon object and in whatever
/// creates objects for it. Zero-sized without the instrumentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Session {
    pub(crate) id: backend::Id,
}

impl Session {
    /// Starts a session for a `Logon` of a `provider`-type provider, named
    /// `label` in reports (the profile section or store display name).
    ///
    /// A provider that reports its own life (init, Shutdown) starts sessions
    /// with [`Provider::logon`](crate::Provider::logon) instead.
    pub fn logon(provider: ProviderKind, label: impl Into<String>) -> Session {
        Session {
            id: imp::logon(provider, label),
        }
    }

    /// Its id, as reports show it (0 without the instrumentation).
    pub fn id(self) -> u64 {
        backend::number(self.id)
    }

    /// Makes this the current session of the calling thread until the
    /// returned guard drops; objects created meanwhile without an explicit
    /// session belong to it. Scopes nest.
    pub fn enter(self) -> Scope {
        Scope {
            previous: imp::enter(self.id),
            _not_send: PhantomData,
        }
    }

    /// The logon session with this id (as [`Session::id`] and reports show
    /// it), if the process started one: for bindings that carry sessions as
    /// numbers, such as the C ABI.
    /// (Without the instrumentation every id names the one zero-sized
    /// session.)
    pub fn by_id(id: u64) -> Option<Session> {
        imp::by_id(id).map(|id| Session { id })
    }

    /// The calling thread's current session, if any.
    #[inline]
    pub fn current() -> Option<Session> {
        imp::current().map(|id| Session { id })
    }

    /// The one logon of the process that has not logged off yet (or whose
    /// Logoff waits for its logon object's end), when there is exactly one
    /// (the usual case: MAPI logs a profile on once); with
    /// `provider`, the one of that provider record. `None` when there are
    /// none or several. The C ABI attributes what is made outside any scope
    /// to it, so a provider needs a scope only to tell concurrent logons
    /// apart.
    #[inline]
    pub fn sole_open(provider: Option<u64>) -> Option<Session> {
        imp::sole_open(provider).map(|id| Session { id })
    }

    /// `IABLogon::Logoff`: ends an address book session and reports it.
    pub fn ab_logoff(self) -> Reported {
        imp::logoff(self.id, ProviderKind::AddressBook)
    }

    /// `IMSLogon::Logoff`: ends a message store session and reports it.
    pub fn ms_logoff(self) -> Reported {
        imp::logoff(self.id, ProviderKind::MessageStore)
    }

    /// `IXPLogon::TransportLogoff`: ends a transport session and reports it.
    pub fn transport_logoff(self) -> Reported {
        imp::logoff(self.id, ProviderKind::Transport)
    }
}

/// The steps of a logon's life the provider reports (see
/// [`Provider`](crate::Provider) for the whole sequence; the rules are in
/// `docs/rules.md`).
impl Session {
    /// The provider AddRef'd the support object (`IMAPISupport::AddRef`), as
    /// Logon does. Prefer [`Support`], which records this by itself.
    #[inline(never)]
    pub fn support_add_ref(self) {
        lifecycle::call(self.id, Call::SupportAddRef);
    }

    /// The provider released the support object (`IMAPISupport::Release`).
    #[inline(never)]
    pub fn support_release(self) {
        lifecycle::call(self.id, Call::SupportRelease);
    }

    /// `IMAPISupport::SetProviderUID` registered a MAPIUID.
    #[inline(never)]
    pub fn set_provider_uid(self) {
        lifecycle::call(self.id, Call::SetProviderUid);
    }

    /// `IMAPISupport::ModifyStatusRow` added or updated the status row.
    #[inline(never)]
    pub fn modify_status_row(self) {
        lifecycle::call(self.id, Call::ModifyStatusRow);
    }

    /// The logon opened connection `id` to a remote server (a mail server,
    /// a directory): Logoff must close it (`server-connection-open`).
    #[inline(never)]
    pub fn server_connected(self, id: u32) {
        lifecycle::call(self.id, Call::ServerConnected(id));
    }

    /// The logon closed connection `id` to a remote server.
    #[inline(never)]
    pub fn server_disconnected(self, id: u32) {
        lifecycle::call(self.id, Call::ServerDisconnected(id));
    }

    /// `IMAPISupport::Subscribe` returned `connection`.
    #[inline(never)]
    pub fn subscribe(self, connection: u32) {
        lifecycle::call(self.id, Call::Subscribe(connection));
    }

    /// `IMAPISupport::Unsubscribe(connection)`.
    #[inline(never)]
    pub fn unsubscribe(self, connection: u32) {
        lifecycle::call(self.id, Call::Unsubscribe(connection));
    }

    /// `IMAPISupport::MakeInvalid` (transports, at TransportLogoff).
    #[inline(never)]
    pub fn make_invalid(self) {
        lifecycle::call(self.id, Call::MakeInvalid);
    }

    /// The logon was added to the provider's list of logons.
    #[inline(never)]
    pub fn listed(self) {
        lifecycle::call(self.id, Call::Listed);
    }

    /// The logon was removed from the provider's list of logons.
    #[inline(never)]
    pub fn unlisted(self) {
        lifecycle::call(self.id, Call::Unlisted);
    }

    /// `IMsgStore::StoreLogoff(flags)`: `flags` must be exactly one of
    /// `LOGOFF_ABORT`, `LOGOFF_NO_WAIT`, `LOGOFF_ORDERLY`, `LOGOFF_PURGE`,
    /// `LOGOFF_QUIET`.
    #[inline(never)]
    pub fn store_logoff(self, flags: u32) {
        lifecycle::call(self.id, Call::StoreLogoff(flags));
    }

    /// `IMAPISupport::StoreLogoffTransports(flags)`.
    #[inline(never)]
    pub fn store_logoff_transports(self, flags: u32) {
        lifecycle::call(self.id, Call::StoreLogoffTransports(flags));
    }

    /// The store object's final Release (`IMsgStore::Release` to 0).
    #[inline(never)]
    pub fn store_released(self) {
        lifecycle::call(self.id, Call::StoreReleased);
    }

    /// MAPI released the logon object, after Logoff returned.
    #[inline(never)]
    pub fn logon_released(self) {
        lifecycle::call(self.id, Call::LogonReleased);
    }
}

/// The current-session guard of [`Session::enter`]; restores the previous
/// session when dropped (also on unwind).
#[must_use = "the session is current only while the guard lives"]
/// Zero-sized without the instrumentation (and never `Send`: it belongs to
/// the thread that entered).
pub struct Scope {
    pub(crate) previous: backend::Id,
    _not_send: PhantomData<*const ()>,
}

impl Scope {
    /// The guard of a scope already entered, `previous` being what it replaced.
    pub(crate) fn entered(previous: backend::Id) -> Scope {
        Scope {
            previous,
            _not_send: PhantomData,
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        imp::leave(self.previous);
    }
}

// The promise of release builds.
const _: () = assert!(backend::LIVE || size_of::<Scope>() == 0 && size_of::<Session>() == 0);
