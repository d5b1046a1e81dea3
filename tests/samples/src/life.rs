//! What every sample provider does the same way: its life as MAPI's
//! documentation describes it, reported to mapileak step by step.
//!
//! - `ProviderCore`: `*ProviderInit` keeps `lpMalloc`, Shutdown releases
//!   it and reports, the final Release is recorded from `Drop`.
//! - `LogonCore`: Logon keeps the support object (a [`mapileak::Support`]),
//!   registers its MAPIUID and status row, subscribes, and joins the
//!   provider's list of logons; Logoff undoes each in the documented order.
//! - [`HostSupport`]: the host's `IMAPISupport`.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use mapileak::{Malloc, Provider, ProviderKind, Session, Support, Tracked};
use windows_core::{HRESULT, Interface, implement};

use crate::mapi::*;
use crate::objects::{S_OK, Status};
use crate::{Bug, Sink, put};

/// The host's support object: hands out connection numbers.
#[implement(IMAPISupport)]
#[derive(Default)]
pub struct HostSupport {
    next_connection: AtomicU32,
}

impl IMAPISupport_Impl for HostSupport_Impl {
    unsafe fn Subscribe(&self, connection: *mut u32) -> HRESULT {
        put(
            connection,
            self.next_connection.fetch_add(1, Ordering::Relaxed) + 1,
        )
    }
    unsafe fn Unsubscribe(&self, _connection: u32) -> HRESULT {
        S_OK
    }
    unsafe fn SetProviderUID(&self) -> HRESULT {
        S_OK
    }
    unsafe fn ModifyStatusRow(&self) -> HRESULT {
        S_OK
    }
    unsafe fn MakeInvalid(&self) -> HRESULT {
        S_OK
    }
    unsafe fn StoreLogoffTransports(&self, _flags: *mut u32) -> HRESULT {
        S_OK
    }
}

/// The support object a provider's Logon received, as a borrowed COM pointer.
pub(crate) fn borrowed_support(raw: *mut c_void) -> Option<IMAPISupport> {
    // SAFETY: `raw` is the IMAPISupport pointer MAPI (the host) passed to
    // Logon, live for the call; `from_raw_borrowed` does not take ownership,
    // and cloning AddRefs it.
    unsafe { IMAPISupport::from_raw_borrowed(&raw) }.cloned()
}

/// The provider object's part of the life.
pub(crate) struct ProviderCore {
    pub life: Provider,
    pub label: String,
    pub bug: Bug,
    pub sink: Sink,
    /// The provider's list of logons, by session id.
    pub logons: Arc<Mutex<Vec<u64>>>,
    pub track: Tracked,
}

impl ProviderCore {
    /// `*ProviderInit`: keeps `lpMalloc` (AddRef) and tracks the provider
    /// object in the provider's own scope.
    pub fn init(
        kind: ProviderKind,
        provider_kind: &'static mapileak::Kind,
        label: &str,
        bug: Bug,
        sink: Sink,
    ) -> Self {
        let life = Provider::init(kind, label, Malloc::AddRefd);
        let _scope = life.enter();
        ProviderCore {
            life,
            label: label.to_owned(),
            bug,
            sink,
            logons: Arc::default(),
            track: Tracked::new(provider_kind, label),
        }
    }

    /// `IXXProvider::Shutdown`: release `lpMalloc`, then report.
    pub fn shutdown(&self) -> HRESULT {
        if !self.bug.has(Bug::MallocNotReleased) {
            self.life.malloc_release();
        }
        self.sink.shutdown(self.life.shutdown());
        S_OK
    }
}

impl Drop for ProviderCore {
    /// MAPI's final Release of the provider object.
    fn drop(&mut self) {
        self.life.released();
    }
}

/// A logon's part of the life.
pub(crate) struct LogonCore {
    pub session: Session,
    pub bug: Bug,
    pub status: Box<Status>,
    support: Mutex<Option<Support<IMAPISupport>>>,
    connection: u32,
    logons: Arc<Mutex<Vec<u64>>>,
    sink: Sink,
}

impl LogonCore {
    /// The common part of `IXXProvider::Logon`.
    pub fn logon(provider: &ProviderCore, support: IMAPISupport, status_label: &str) -> LogonCore {
        let session = provider.life.logon(provider.label.as_str());
        let support = Support::new(session, support);
        let mut connection = 0;
        // SAFETY: `support` is a live interface; out pointer to a local.
        unsafe {
            let _ = support.SetProviderUID();
            session.set_provider_uid();
            let _ = support.ModifyStatusRow();
            session.modify_status_row();
            let _ = support.Subscribe(&mut connection);
        }
        session.subscribe(connection);
        provider
            .logons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session.id());
        session.listed();
        LogonCore {
            session,
            bug: provider.bug,
            status: Status::new(session, status_label, provider.bug),
            support: Mutex::new(Some(support)),
            connection,
            logons: provider.logons.clone(),
            sink: provider.sink.clone(),
        }
    }

    /// A new reference to the support object, for an object that needs it.
    pub fn support(&self) -> Option<Support<IMAPISupport>> {
        self.support
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The common part of `IXXLogon::Logoff`, in the documented order:
    /// unsubscribe, leave the provider's list, release what the logon holds,
    /// (a transport: `MakeInvalid`,) release the support object last — then
    /// mapileak's report, `finish`.
    pub fn logoff(
        &self,
        transport_objects: Option<&Mutex<Option<IMAPITable>>>,
        finish: fn(Session) -> mapileak::Reported,
    ) {
        let support = self
            .support
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(s) = &support
            && !self.bug.has(Bug::SubscriptionOpen)
        {
            // SAFETY: a live interface.
            let _ = unsafe { s.Unsubscribe(self.connection) };
            self.session.unsubscribe(self.connection);
        }
        if !self.bug.has(Bug::LogonStillListed) {
            self.logons
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|&id| id != self.session.id());
            self.session.unlisted();
        }
        self.status.release_own();
        let release_objects = || {
            if let Some(t) = transport_objects {
                drop(t.lock().unwrap_or_else(|e| e.into_inner()).take());
            }
        };
        let make_invalid = |s: &Option<Support<IMAPISupport>>| {
            if let Some(s) = s
                && transport_objects.is_some()
            {
                // SAFETY: a live interface.
                let _ = unsafe { s.MakeInvalid() };
                self.session.make_invalid();
            }
        };
        if self.bug.has(Bug::SupportNotReleased) {
            make_invalid(&support);
            release_objects();
            std::mem::forget(support);
        } else if self.bug.has(Bug::SupportBeforeMakeInvalid) {
            let kept = support.as_ref().map(|s| (**s).clone());
            release_objects();
            drop(support);
            // Still callable through the raw pointer MAPI keeps alive; the bug
            // is the order, which mapileak sees.
            if let Some(s) = kept {
                // SAFETY: a live interface.
                let _ = unsafe { s.MakeInvalid() };
                self.session.make_invalid();
            }
        } else if self.bug.has(Bug::SupportNotLast) {
            make_invalid(&support);
            drop(support);
            release_objects();
        } else {
            make_invalid(&support);
            release_objects();
            drop(support);
        }
        self.sink.logoff(finish(self.session));
    }
}

impl Drop for LogonCore {
    /// MAPI's Release of the logon object, after Logoff.
    fn drop(&mut self) {
        self.session.logon_released();
    }
}
