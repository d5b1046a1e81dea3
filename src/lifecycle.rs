//! The documented shutdown sequence, and the rules that check it.
//!
//! ```text
//!  Provider::init ─► Provider::logon ─► [support AddRef, SetProviderUID, Subscribe, listed]
//!  (*ProviderInit)    (IXXProvider::Logon)          │ work │
//!                                                   ▼
//!        [StoreLogoff ─► StoreLogoffTransports ─► store released]   (message store)
//!        [Unsubscribe, unlisted, MakeInvalid (transport), support Release (last)]
//!                                                   ▼
//!   Session::*_logoff ─► Session::logon_released ─► Provider::shutdown ─► Provider::released
//!   (IXXLogon::Logoff)   (MAPI: Release(logon))     (IXXProvider::Shutdown)  (MAPI: Release(provider))
//!                                                                  ▼
//!                                                   process_exit (at exit, or DLL unload)
//! ```
//!
//! A provider reports each step; mapileak checks the order and what is
//! still open when the logoff, Shutdown or process-end report is taken. Each
//! broken rule is a finding with the stack of the call that broke it, or of
//! the call whose counterpart never came. The rules are listed in
//! `docs/rules.md`; what must be closed at Logoff is checked by
//! [`rules`](crate::rules).

// Without the instrumentation every method answers as a no-op; what the
// live path reads is then unused.
#![cfg_attr(not(any(debug_assertions, feature = "force")), allow(unused_variables))]

use std::fmt;
use std::ops::Deref;

use mapileak_reports::{Event, ProviderKind};
#[cfg(any(debug_assertions, feature = "force"))]
use mapileak_reports::{Rule, SessionInfo};

use crate::session::Session;
#[cfg(any(debug_assertions, feature = "force"))]
use crate::{
    LOGOFF_ABORT, LOGOFF_IN_FLAGS, Mode, config,
    context::Quiet,
    logoff,
    registry::{self, PendingFinding, Phase, SessionState, Step},
    stack,
};
use crate::{Logoff, Malloc, Scope};

#[cfg(any(debug_assertions, feature = "force"))]
fn stack_now() -> stack::StackId {
    if config::mode() == Mode::Off {
        0
    } else {
        stack::capture()
    }
}

/// A provider object's life: `*ProviderInit` to `Shutdown` and its final
/// Release. Logons made through [`Provider::logon`] belong to it, so its
/// Shutdown can check them and report what they left alive. `Copy`.
/// Zero-sized without the instrumentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Provider {
    #[cfg(any(debug_assertions, feature = "force"))]
    id: u64,
}

// The promise of release builds.
#[cfg(not(any(debug_assertions, feature = "force")))]
const _: () = {
    assert!(size_of::<Provider>() == 0);
    assert!(size_of::<Support<u64>>() == size_of::<u64>());
};

impl Provider {
    /// `MSProviderInit` / `ABProviderInit` / `XPProviderInit` returned a
    /// provider object of type `kind`.
    #[inline(never)]
    pub fn init(kind: ProviderKind, label: impl Into<String>, malloc: Malloc) -> Provider {
        #[cfg(any(debug_assertions, feature = "force"))]
        return {
            let _quiet = Quiet::new();
            config::init();
            crate::exit::register();
            let stack = stack_now();
            let id = registry::new_session(kind, label.into(), 0, true, stack);
            if malloc == Malloc::AddRefd {
                registry::with_session(id, |s| s.life.malloc_refs.push(stack));
            }
            Provider { id }
        };
        #[cfg(not(any(debug_assertions, feature = "force")))]
        Provider {}
    }

    /// Its id, as its Shutdown report's `session.id` shows it.
    pub fn id(self) -> u64 {
        #[cfg(any(debug_assertions, feature = "force"))]
        return self.id;
        #[cfg(not(any(debug_assertions, feature = "force")))]
        0
    }

    /// The provider record with this id, if [`Provider::init`] made one.
    pub fn by_id(id: u64) -> Option<Provider> {
        #[cfg(any(debug_assertions, feature = "force"))]
        return registry::with_session(id, |s| s.is_provider())?.then_some(Provider { id });
        #[cfg(not(any(debug_assertions, feature = "force")))]
        Some(Provider {})
    }

    /// Makes the provider the current owner of new objects on this thread
    /// (objects that belong to no logon, such as the provider object itself).
    pub fn enter(self) -> Scope {
        #[cfg(any(debug_assertions, feature = "force"))]
        return Session::from_id(self.id).enter();
        #[cfg(not(any(debug_assertions, feature = "force")))]
        Session {}.enter()
    }

    /// `IXXProvider::Logon` created a logon: starts its session.
    #[inline(never)]
    pub fn logon(self, label: impl Into<String>) -> Session {
        #[cfg(any(debug_assertions, feature = "force"))]
        return {
            let _quiet = Quiet::new();
            let stack = stack_now();
            let state =
                registry::with_session(self.id, |p| (p.provider, p.closed(), p.label.clone()));
            let Some((kind, shut, plabel)) = state else {
                return Session::logon(ProviderKind::Unknown, label);
            };
            if shut {
                registry::add_finding(
                    self.id,
                    PendingFinding::error(
                        Rule::OutOfOrder,
                        format!("Logon on provider \"{plabel}\" after its Shutdown"),
                        stack,
                    ),
                );
            }
            Session::from_id(registry::new_session(
                kind,
                label.into(),
                self.id,
                false,
                stack,
            ))
        };
        #[cfg(not(any(debug_assertions, feature = "force")))]
        Session {}
    }

    /// `lpMalloc->AddRef()` after init: one more reference the provider
    /// owes a Release for.
    #[inline(never)]
    pub fn malloc_add_ref(self) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            let _quiet = Quiet::new();
            let stack = stack_now();
            registry::with_session(self.id, |p| p.life.malloc_refs.push(stack));
        }
    }

    /// `lpMalloc->Release()`: the provider let go of one reference it kept.
    /// One more Release than it took is an `over-release` finding at this
    /// call.
    #[inline(never)]
    pub fn malloc_release(self) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            let _quiet = Quiet::new();
            let stack = stack_now();
            let extra = registry::with_session(self.id, |p| {
                p.life.malloc_refs.pop().is_none().then(|| {
                    format!(
                        "lpMalloc->Release() by provider \"{}\" with no AddRef of its own left (at {}ProviderInit or malloc_add_ref)",
                        p.label,
                        init_prefix(p.provider)
                    )
                })
            })
            .flatten();
            if let Some(message) = extra {
                registry::add_finding(
                    self.id,
                    PendingFinding::error(Rule::OverRelease, message, stack),
                );
            }
        }
    }

    /// `IXXProvider::Shutdown`: checks the provider's logons and what it
    /// still holds, and reports every object of the provider and its logons
    /// still alive — logon objects included — as leaked at Shutdown. Call
    /// it as the last step of your Shutdown.
    #[inline(never)]
    pub fn shutdown(self) -> Logoff {
        #[cfg(any(debug_assertions, feature = "force"))]
        return {
            let _quiet = Quiet::new();
            let mode = config::mode();
            let stack = stack_now();
            // A logon whose Logoff waited for its logon object, never
            // released: its Logoff report comes first.
            for logon in registry::deferred_logons(self.id) {
                crate::session::finish_deferred(logon);
            }
            let taken = registry::with_all_sessions(
                |all| {
                    let p = all.get_mut(&self.id)?;
                    let mut findings = p.findings.take();
                    let (kind, label) = (p.provider, p.label.clone());
                    if p.step(Step::Shutdown).is_err() {
                        findings.push(PendingFinding::error(Rule::OutOfOrder, format!("{kind:?} Shutdown called twice on \"{label}\""), stack));
                    }
                    if let Some(&latest) = p.life.malloc_refs.last() {
                        findings.push(PendingFinding::error(
                            Rule::MallocNotReleased,
                            format!(
                                "{} AddRef(s) of lpMalloc (at {}ProviderInit or later) not released by Shutdown",
                                p.life.malloc_refs.len(),
                                init_prefix(kind)
                            ),
                            latest,
                        ));
                    }
                    let mut members = vec![self.id];
                    for (&id, s) in all.iter_mut().filter(|(_, s)| s.owner == self.id && !s.is_provider()) {
                        members.push(id);
                        findings.append(&mut s.findings.take());
                        if !s.closed() {
                            findings.push(PendingFinding::error(
                                Rule::ShutdownWithOpenLogons,
                                format!(
                                    "{} Shutdown while logon \"{}\" has not logged off ({} was never called)",
                                    provider_iface(kind),
                                    s.label,
                                    kind.logoff_method()
                                ),
                                // The Logoff never came: point at the Logon.
                                s.opened,
                            ));
                        }
                    }
                    Some((kind, label, findings, members))
                },
                None,
            )
            .flatten();
            let Some((kind, label, findings, members)) = taken else {
                return Logoff::empty(ProviderKind::Unknown, Event::Shutdown);
            };
            let info = SessionInfo {
                id: self.id,
                provider: kind,
                label,
                event: Event::Shutdown,
            };
            logoff::report(info, &members, findings, mode)
        };
        #[cfg(not(any(debug_assertions, feature = "force")))]
        Logoff::empty(ProviderKind::Unknown, Event::Shutdown)
    }

    /// MAPI released the provider object (after Shutdown).
    #[inline(never)]
    pub fn released(self) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            let _quiet = Quiet::new();
            let stack = stack_now();
            let early = registry::with_session(self.id, |p| match p.step(Step::ReleaseProvider) {
                Ok(()) => None,
                Err(Phase::Running) => Some(format!(
                    "{} \"{}\" released before its Shutdown",
                    provider_iface(p.provider),
                    p.label
                )),
                Err(_) => Some(format!(
                    "{} \"{}\" released a second time",
                    provider_iface(p.provider),
                    p.label
                )),
            })
            .flatten();
            if let Some(message) = early {
                registry::add_finding(
                    self.id,
                    PendingFinding::error(Rule::OutOfOrder, message, stack),
                );
            }
        }
    }
}

/// The counted provider object of provider record `provider` is gone:
/// after Shutdown, that is MAPI's final Release of it (an earlier one is
/// the provider's to report: [`Provider::released`]).
#[cfg(any(debug_assertions, feature = "force"))]
pub(crate) fn provider_object_gone(provider: u64) {
    registry::with_session(provider, |p| {
        if p.is_provider() {
            let _ = p.step(Step::ReleaseProvider);
        }
    });
}

#[cfg(any(debug_assertions, feature = "force"))]
fn provider_iface(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::AddressBook => "IABProvider::",
        ProviderKind::MessageStore => "IMSProvider::",
        ProviderKind::Transport => "IXPProvider::",
        ProviderKind::Unknown => "",
    }
}

#[cfg(any(debug_assertions, feature = "force"))]
fn init_prefix(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::AddressBook => "AB",
        ProviderKind::MessageStore => "MS",
        ProviderKind::Transport => "XP",
        ProviderKind::Unknown => "",
    }
}

/// Records one lifecycle event of `session`: an event after Logoff (and
/// after the logon object's end, when Logoff waited for it) is
/// `out-of-order`; `f` may add findings of its own. Findings are filed after
/// the session lock is released.
#[cfg(any(debug_assertions, feature = "force"))]
#[inline(always)]
fn on(
    session: Session,
    call: &str,
    f: impl FnOnce(&mut SessionState, stack::StackId, &mut Vec<PendingFinding>),
) {
    let _quiet = Quiet::new();
    if config::mode() == Mode::Off {
        return;
    }
    let stack = stack::capture();
    let mut findings = Vec::new();
    let after = |label: &str, provider: ProviderKind| {
        PendingFinding::error(
            Rule::OutOfOrder,
            format!(
                "{call} on session \"{label}\" after {}",
                match provider {
                    ProviderKind::Unknown => "its Logoff",
                    known => known.logoff_method(),
                }
            ),
            stack,
        )
    };
    let open = registry::with_session(session.id(), |s| {
        // (While a Logoff waits for the logon object's end, its destructor
        // is part of the Logoff: it releases the support object, say.)
        if s.closed() && s.deferred.is_none() {
            findings.push(after(&s.label, s.provider));
        }
        f(s, stack, &mut findings);
    });
    // A logon that logged off clean has left the registry: nothing is
    // recorded on it, and the call is still out of order.
    if open.is_none()
        && let Some(r) = registry::retired(session.id())
    {
        findings.push(after(&r.label, r.provider));
    }
    for fi in findings {
        registry::add_finding(session.id(), fi);
    }
}

impl Session {
    /// The provider AddRef'd the support object (`IMAPISupport::AddRef`), as
    /// Logon does. Prefer [`Support`], which records this by itself.
    #[inline(never)]
    pub fn support_add_ref(self) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            on(self, "IMAPISupport::AddRef", |s, stack, _| {
                s.life.support_refs.push(stack)
            });
        }
    }

    /// The provider released the support object (`IMAPISupport::Release`).
    #[inline(never)]
    pub fn support_release(self) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            self.release_support(None);
        }
    }

    /// Releases the AddRef made at `addref` (a [`Support`]'s own), or the
    /// latest one.
    #[cfg(any(debug_assertions, feature = "force"))]
    fn release_support(self, addref: Option<stack::StackId>) {
        let session = self.id();
        on(self, "IMAPISupport::Release", |s, stack, findings| {
            let refs = &mut s.life.support_refs;
            match addref.and_then(|a| refs.iter().rposition(|&r| r == a)) {
                Some(i) => {
                    refs.remove(i);
                }
                None => {
                    refs.pop();
                }
            }
            if !refs.is_empty() {
                return;
            }
            if s.provider == ProviderKind::Transport && !s.life.made_invalid {
                findings.push(PendingFinding::error(
                    Rule::TransportSupportOrder,
                    format!(
                        "transport \"{}\" released the support object before calling IMAPISupport::MakeInvalid",
                        s.label
                    ),
                    stack,
                ));
            }
            let alive = registry::live_in(session).iter().map(|n| n.id).collect();
            s.life.support_final_release = Some((stack, alive));
        });
    }

    /// `IMAPISupport::SetProviderUID` registered a MAPIUID.
    pub fn set_provider_uid(self) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            on(self, "IMAPISupport::SetProviderUID", |s, stack, _| {
                s.life.provider_uid.get_or_insert(stack);
            });
        }
    }

    /// `IMAPISupport::ModifyStatusRow` added or updated the status row.
    pub fn modify_status_row(self) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            on(self, "IMAPISupport::ModifyStatusRow", |s, stack, _| {
                s.life.status_row.get_or_insert(stack);
            });
        }
    }

    /// The logon opened connection `id` to a remote server (a mail server,
    /// a directory): Logoff must close it (`server-connection-open`).
    #[inline(never)]
    pub fn server_connected(self, id: u32) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            on(self, "connecting to a remote server", |s, stack, _| {
                s.life.connections.push((id, stack))
            });
        }
    }

    /// The logon closed connection `id` to a remote server.
    #[inline(never)]
    pub fn server_disconnected(self, id: u32) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            on(self, "disconnecting from a remote server", |s, _, _| {
                if let Some(i) = s.life.connections.iter().position(|&(c, _)| c == id) {
                    s.life.connections.remove(i);
                }
            });
        }
    }

    /// `IMAPISupport::Subscribe` returned `connection`.
    #[inline(never)]
    pub fn subscribe(self, connection: u32) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            on(self, "IMAPISupport::Subscribe", |s, stack, _| {
                s.life.subscriptions.push((connection, stack))
            });
        }
    }

    /// `IMAPISupport::Unsubscribe(connection)`.
    #[inline(never)]
    pub fn unsubscribe(self, connection: u32) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            on(self, "IMAPISupport::Unsubscribe", |s, _, _| {
                if let Some(i) = s
                    .life
                    .subscriptions
                    .iter()
                    .position(|&(c, _)| c == connection)
                {
                    s.life.subscriptions.remove(i);
                }
            });
        }
    }

    /// `IMAPISupport::MakeInvalid` (transports, at TransportLogoff).
    #[inline(never)]
    pub fn make_invalid(self) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            on(self, "IMAPISupport::MakeInvalid", |s, _, _| {
                s.life.made_invalid = true
            });
        }
    }

    /// The logon was added to the provider's list of logons.
    #[inline(never)]
    pub fn listed(self) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            on(
                self,
                "adding the logon to the provider's list",
                |s, stack, _| s.life.listed = Some(stack),
            );
        }
    }

    /// The logon was removed from the provider's list of logons.
    #[inline(never)]
    pub fn unlisted(self) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            on(
                self,
                "removing the logon from the provider's list",
                |s, _, _| s.life.listed = None,
            );
        }
    }

    /// `IMsgStore::StoreLogoff(flags)`: `flags` must be exactly one of
    /// `LOGOFF_ABORT`, `LOGOFF_NO_WAIT`, `LOGOFF_ORDERLY`, `LOGOFF_PURGE`,
    /// `LOGOFF_QUIET`.
    #[inline(never)]
    pub fn store_logoff(self, flags: u32) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            on(self, "IMsgStore::StoreLogoff", |s, stack, findings| {
                s.life.store_logoff = true;
                let valid = LOGOFF_IN_FLAGS.iter().any(|&(f, _)| f == flags);
                if !valid {
                    findings.push(PendingFinding::error(
                        Rule::StoreLogoffFlags,
                        format!(
                            "IMsgStore::StoreLogoff on \"{}\" with flags {flags:#x}: exactly one of {} expected",
                            s.label,
                            LOGOFF_IN_FLAGS.map(|(_, n)| n).join(", ")
                        ),
                        stack,
                    ));
                }
            });
        }
    }

    /// `IMAPISupport::StoreLogoffTransports(flags)`.
    #[inline(never)]
    pub fn store_logoff_transports(self, flags: u32) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            on(
                self,
                "IMAPISupport::StoreLogoffTransports",
                |s, stack, findings| {
                    s.life.store_logoff_transports += 1;
                    if s.life.store_logoff_transports == 2 {
                        findings.push(PendingFinding::error(
                        Rule::StoreLogoffTransports,
                        format!("IMAPISupport::StoreLogoffTransports called a second time for store \"{}\"", s.label),
                        stack,
                    ));
                    }
                    if !s.life.store_logoff && flags != LOGOFF_ABORT {
                        findings.push(PendingFinding::error(
                        Rule::StoreLogoffTransports,
                        format!(
                            "store \"{}\" called IMAPISupport::StoreLogoffTransports without a StoreLogoff (from its Release) with flags {flags:#x}, not LOGOFF_ABORT",
                            s.label
                        ),
                        stack,
                    ));
                    }
                },
            );
        }
    }

    /// The store object's final Release (`IMsgStore::Release` to 0).
    #[inline(never)]
    pub fn store_released(self) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            on(
                self,
                "the IMsgStore's final Release",
                |s, stack, findings| {
                    s.life.store_released = true;
                    if s.life.store_logoff_transports == 0 {
                        findings.push(PendingFinding::error(
                        Rule::StoreLogoffTransports,
                        format!(
                            "store \"{}\" was released without calling IMAPISupport::StoreLogoffTransports (from StoreLogoff, or from Release with LOGOFF_ABORT)",
                            s.label
                        ),
                        stack,
                    ));
                    }
                },
            );
        }
    }

    /// MAPI released the logon object, after Logoff returned.
    #[inline(never)]
    pub fn logon_released(self) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            let _quiet = Quiet::new();
            let stack = stack_now();
            let early = registry::with_session(self.id(), |s| match s.step(Step::ReleaseLogon) {
                Ok(()) => None,
                Err(Phase::Open) => Some(format!(
                    "logon \"{}\" released before {}",
                    s.label,
                    s.provider.logoff_method()
                )),
                Err(_) => Some(format!("logon \"{}\" released a second time", s.label)),
            });
            let early = match early {
                Some(None) => {
                    // Released in order: a logon that left nothing leaves
                    // the registry.
                    registry::retire_if_clean(self.id());
                    None
                }
                Some(message) => message,
                // Retired at its Logoff (no provider owns it): the first
                // Release is in order, a second one is not; unknown when it
                // is no longer remembered.
                None => registry::release_retired(self.id())
                    .map(|label| format!("logon \"{label}\" released a second time")),
            };
            if let Some(message) = early {
                registry::add_finding(
                    self.id(),
                    PendingFinding::error(Rule::OutOfOrder, message, stack),
                );
            }
        }
    }
}

/// The support object (`IMAPISupport`) as the provider keeps it: creating
/// and cloning record an AddRef, dropping records a Release.
///
/// ```
/// # use mapileak::{ProviderKind, Session, Support};
/// # #[derive(Clone)] struct IMAPISupport;
/// # let session = Session::logon(ProviderKind::AddressBook, "ab");
/// # let lpMAPISup = IMAPISupport;
/// // IABProvider::Logon: keep the support object (AddRef).
/// let support = Support::new(session, lpMAPISup.clone());
/// // ... use it through Deref ...
/// drop(support); // IABLogon::Logoff: Release
/// ```
/// Without the instrumentation it is just `T`.
pub struct Support<T> {
    #[cfg(any(debug_assertions, feature = "force"))]
    session: Session,
    /// The stack of its own AddRef, so its Drop releases that one.
    #[cfg(any(debug_assertions, feature = "force"))]
    addref: stack::StackId,
    inner: T,
}

impl<T> Support<T> {
    /// Keeps `inner` (already AddRef'd, as a cloned COM pointer is) for `session`.
    #[inline(never)]
    pub fn new(session: Session, inner: T) -> Self {
        #[cfg(any(debug_assertions, feature = "force"))]
        return {
            let _quiet = Quiet::new();
            let addref = stack_now();
            on(session, "IMAPISupport::AddRef", |s, _, _| {
                s.life.support_refs.push(addref)
            });
            Support {
                session,
                addref,
                inner,
            }
        };
        #[cfg(not(any(debug_assertions, feature = "force")))]
        Support { inner }
    }
}

/// A clone is one more AddRef, released when it drops.
impl<T: Clone> Clone for Support<T> {
    fn clone(&self) -> Self {
        #[cfg(any(debug_assertions, feature = "force"))]
        return Support::new(self.session, self.inner.clone());
        #[cfg(not(any(debug_assertions, feature = "force")))]
        Support {
            inner: self.inner.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Support<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Support")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<T> Deref for Support<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

#[cfg(any(debug_assertions, feature = "force"))]
impl<T> Drop for Support<T> {
    fn drop(&mut self) {
        self.session.release_support(Some(self.addref));
    }
}
