//! The live lifecycle: the provider's init, Logon, Shutdown and final
//! Release, and each step a logon reports, checked in order (see
//! `crate::lifecycle` for the sequence).

use mapileak_reports::{Event, ProviderKind, Rule, SessionInfo};

use crate::settings::Mode;

use super::env;
use crate::Reported;
use crate::protocol::{Call, LOGOFF_ABORT, LOGOFF_IN_FLAGS, Malloc};

use super::context::Quiet;
use super::finding::PendingFinding;
use super::logoff::{self, Output};
use super::registry::{self, Phase, SessionState, Step};
use super::stack;

fn stack_now() -> stack::StackId {
    if env::mode() == Mode::Off {
        0
    } else {
        stack::capture()
    }
}

/// [`Provider::init`](crate::Provider::init).
#[inline(never)]
pub(crate) fn init(kind: ProviderKind, label: impl Into<String>, malloc: Malloc) -> u64 {
    let _quiet = Quiet::new();
    super::env::init();
    super::exit::register();
    super::watch::start();
    let stack = stack_now();
    let id = registry::new_session(kind, label.into(), 0, true, stack);
    if malloc == Malloc::AddRefd {
        registry::with_session(id, |s| s.life.malloc_refs.push(stack));
    }
    id
}

/// [`Provider::by_id`](crate::Provider::by_id).
pub(crate) fn by_id(id: u64) -> Option<u64> {
    registry::with_session(id, |s| s.is_provider_record())?.then_some(id)
}

/// [`Provider::logon`](crate::Provider::logon): the new session's id.
#[inline(never)]
pub(crate) fn logon(provider: u64, label: impl Into<String>) -> u64 {
    let _quiet = Quiet::new();
    let stack = stack_now();
    let state = registry::with_session(provider, |p| (p.kind, p.closed(), p.label.clone()));
    let Some((kind, shut, plabel)) = state else {
        return super::session::logon(ProviderKind::Unknown, label);
    };
    if shut {
        registry::add_finding(
            provider,
            PendingFinding::new(
                Rule::OutOfOrder,
                format!("Logon on provider \"{plabel}\" after its Shutdown"),
                stack,
            ),
        );
    }
    registry::new_session(kind, label.into(), provider, false, stack)
}

/// [`Provider::malloc_add_ref`](crate::Provider::malloc_add_ref).
#[inline(never)]
pub(crate) fn malloc_add_ref(provider: u64) {
    let _quiet = Quiet::new();
    let stack = stack_now();
    registry::with_session(provider, |p| p.life.malloc_refs.push(stack));
}

/// [`Provider::malloc_release`](crate::Provider::malloc_release).
#[inline(never)]
pub(crate) fn malloc_release(provider: u64) {
    let _quiet = Quiet::new();
    let stack = stack_now();
    let extra = registry::with_session(provider, |p| {
        p.life.malloc_refs.pop().is_none().then(|| {
            format!(
                "lpMalloc->Release() by provider \"{}\" with no AddRef of its own left (at {}ProviderInit or malloc_add_ref)",
                p.label,
                init_prefix(p.kind)
            )
        })
    })
    .flatten();
    if let Some(message) = extra {
        registry::add_finding(
            provider,
            PendingFinding::new(Rule::OverRelease, message, stack),
        );
    }
}

/// [`Provider::shutdown`](crate::Provider::shutdown).
#[inline(never)]
pub(crate) fn shutdown(provider: u64) -> Reported {
    let _quiet = Quiet::new();
    let mode = env::mode();
    let stack = stack_now();
    // A logon whose Logoff waited for its logon object, never
    // released: its Logoff report comes first.
    for logon in registry::deferred_logons(provider) {
        super::session::finish_deferred(logon);
    }
    let taken = registry::with_all_sessions(
        |all| {
            let p = all.get_mut(&provider)?;
            let mut findings = p.findings.take();
            let (kind, label) = (p.kind, p.label.clone());
            if p.step(Step::Shutdown).is_err() {
                findings.push(PendingFinding::new(Rule::OutOfOrder, format!("{kind:?} Shutdown called twice on \"{label}\""), stack));
            }
            if let Some(&latest) = p.life.malloc_refs.last() {
                findings.push(PendingFinding::new(
                    Rule::MallocNotReleased,
                    format!(
                        "{} AddRef(s) of lpMalloc (at {}ProviderInit or later) not released by Shutdown",
                        p.life.malloc_refs.len(),
                        init_prefix(kind)
                    ),
                    latest,
                ));
            }
            let mut members = vec![provider];
            for (&id, s) in all.iter_mut().filter(|(_, s)| s.provider_record == provider && !s.is_provider_record()) {
                members.push(id);
                findings.append(&mut s.findings.take());
                if !s.closed() {
                    findings.push(PendingFinding::new(
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
        return Reported::empty(ProviderKind::Unknown, Event::Shutdown);
    };
    let info = SessionInfo::new(provider, kind, label, Event::Shutdown);
    logoff::report(info, &members, findings, None, mode, Output::Written)
}

/// [`Provider::released`](crate::Provider::released)(crate::Provider::released).
#[inline(never)]
pub(crate) fn released(provider: u64) {
    let _quiet = Quiet::new();
    let stack = stack_now();
    let early = registry::with_session(provider, |p| match p.step(Step::ReleaseProvider) {
        Ok(()) => None,
        Err(Phase::Running) => Some(format!(
            "{} \"{}\" released before its Shutdown",
            provider_iface(p.kind),
            p.label
        )),
        Err(_) => Some(format!(
            "{} \"{}\" released a second time",
            provider_iface(p.kind),
            p.label
        )),
    })
    .flatten();
    if let Some(message) = early {
        registry::add_finding(
            provider,
            PendingFinding::new(Rule::OutOfOrder, message, stack),
        );
    }
}

/// The counted provider object of provider record `provider` is gone:
/// after Shutdown, that is MAPI's final Release of it (an earlier one is
/// the provider's to report: [`Provider::released`](crate::Provider::released)).
pub(crate) fn provider_object_gone(provider: u64) {
    registry::with_session(provider, |p| {
        if p.is_provider_record() {
            let _ = p.step(Step::ReleaseProvider);
        }
    });
}

fn provider_iface(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::AddressBook => "IABProvider::",
        ProviderKind::MessageStore => "IMSProvider::",
        ProviderKind::Transport => "IXPProvider::",
        ProviderKind::Unknown => "",
    }
}

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
#[inline(always)]
fn on(
    session: u64,
    call: &str,
    f: impl FnOnce(&mut SessionState, stack::StackId, &mut Vec<PendingFinding>),
) {
    let _quiet = Quiet::new();
    if env::mode() == Mode::Off {
        return;
    }
    let stack = stack::capture();
    let mut findings = Vec::new();
    let after = |label: &str, provider: ProviderKind| {
        PendingFinding::new(
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
    let open = registry::with_session(session, |s| {
        // (While a Logoff waits for the logon object's end, its destructor
        // is part of the Logoff: it releases the support object, say.)
        if s.closed() && s.deferred.is_none() {
            findings.push(after(&s.label, s.kind));
        }
        f(s, stack, &mut findings);
    });
    // A logon that logged off clean has left the registry: nothing is
    // recorded on it, and the call is still out of order.
    if open.is_none()
        && let Some(r) = registry::retired(session)
    {
        findings.push(after(&r.label, r.kind));
    }
    for fi in findings {
        registry::add_finding(session, fi);
    }
}

/// One step a logon reported (a `Session` method of `crate::lifecycle`).
#[inline(always)]
pub(crate) fn call(session: u64, call: Call) {
    match call {
        Call::SupportAddRef => on(session, "IMAPISupport::AddRef", |s, stack, _| {
            s.life.support_refs.push(stack)
        }),
        Call::SupportRelease => release_support(session, None),
        Call::SetProviderUid => on(session, "IMAPISupport::SetProviderUID", |s, stack, _| {
            s.life.provider_uid.get_or_insert(stack);
        }),
        Call::ModifyStatusRow => on(session, "IMAPISupport::ModifyStatusRow", |s, stack, _| {
            s.life.status_row.get_or_insert(stack);
        }),
        Call::ServerConnected(id) => on(session, "connecting to a remote server", |s, stack, _| {
            s.life.connections.push((id, stack))
        }),
        Call::ServerDisconnected(id) => {
            on(session, "disconnecting from a remote server", |s, _, _| {
                if let Some(i) = s.life.connections.iter().position(|&(c, _)| c == id) {
                    s.life.connections.remove(i);
                }
            })
        }
        Call::Subscribe(connection) => on(session, "IMAPISupport::Subscribe", |s, stack, _| {
            s.life.subscriptions.push((connection, stack))
        }),
        Call::Unsubscribe(connection) => on(session, "IMAPISupport::Unsubscribe", |s, _, _| {
            let subscriptions = &mut s.life.subscriptions;
            if let Some(i) = subscriptions.iter().position(|&(c, _)| c == connection) {
                subscriptions.remove(i);
            }
        }),
        Call::MakeInvalid => on(session, "IMAPISupport::MakeInvalid", |s, _, _| {
            s.life.made_invalid = true
        }),
        Call::Listed => on(
            session,
            "adding the logon to the provider's list",
            |s, stack, _| s.life.listed = Some(stack),
        ),
        Call::Unlisted => on(
            session,
            "removing the logon from the provider's list",
            |s, _, _| s.life.listed = None,
        ),
        Call::StoreLogoff(flags) => store_logoff(session, flags),
        Call::StoreLogoffTransports(flags) => store_logoff_transports(session, flags),
        Call::StoreReleased => store_released(session),
        Call::LogonReleased => logon_released(session),
    }
}

/// Releases the AddRef made at `addref` (a `Support`'s own), or the
/// latest one.
fn release_support(session: u64, addref: Option<stack::StackId>) {
    on(session, "IMAPISupport::Release", |s, stack, findings| {
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
        if s.kind == ProviderKind::Transport && !s.life.made_invalid {
            findings.push(PendingFinding::new(
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

fn store_logoff(session: u64, flags: u32) {
    on(session, "IMsgStore::StoreLogoff", |s, stack, findings| {
        s.life.store_logoff = true;
        let valid = LOGOFF_IN_FLAGS.iter().any(|&(f, _)| f == flags);
        if !valid {
            findings.push(PendingFinding::new(
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

fn store_logoff_transports(session: u64, flags: u32) {
    on(
        session,
        "IMAPISupport::StoreLogoffTransports",
        |s, stack, findings| {
            s.life.store_logoff_transports += 1;
            if s.life.store_logoff_transports == 2 {
                findings.push(PendingFinding::new(
                    Rule::StoreLogoffTransports,
                    format!(
                        "IMAPISupport::StoreLogoffTransports called a second time for store \"{}\"",
                        s.label
                    ),
                    stack,
                ));
            }
            if !s.life.store_logoff && flags != LOGOFF_ABORT {
                findings.push(PendingFinding::new(
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

fn store_released(session: u64) {
    on(
        session,
        "the IMsgStore's final Release",
        |s, stack, findings| {
            s.life.store_released = true;
            if s.life.store_logoff_transports == 0 {
                findings.push(PendingFinding::new(
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

/// MAPI released the logon object, after Logoff returned.
fn logon_released(session: u64) {
    let _quiet = Quiet::new();
    let stack = stack_now();
    let early = registry::with_session(session, |s| match s.step(Step::ReleaseLogon) {
        Ok(()) => None,
        Err(Phase::Open) => Some(format!(
            "logon \"{}\" released before {}",
            s.label,
            s.kind.logoff_method()
        )),
        Err(_) => Some(format!("logon \"{}\" released a second time", s.label)),
    });
    let early = match early {
        Some(None) => {
            // Released in order: a logon that left nothing leaves
            // the registry.
            registry::retire_if_clean(session);
            None
        }
        Some(message) => message,
        // Retired at its Logoff (no provider owns it): the first
        // Release is in order, a second one is not; unknown when it
        // is no longer remembered.
        None => registry::release_retired(session)
            .map(|label| format!("logon \"{label}\" released a second time")),
    };
    if let Some(message) = early {
        registry::add_finding(
            session,
            PendingFinding::new(Rule::OutOfOrder, message, stack),
        );
    }
}

/// A `Support`'s own AddRef of the support object: made with it, released
/// when it drops.
pub(crate) struct SupportRef {
    session: u64,
    /// The stack of its AddRef, so its drop releases that one.
    addref: stack::StackId,
}

impl SupportRef {
    /// Records an AddRef of `session`'s support object.
    #[inline(never)]
    pub(crate) fn add_ref(session: u64) -> SupportRef {
        let _quiet = Quiet::new();
        let addref = stack_now();
        on(session, "IMAPISupport::AddRef", |s, _, _| {
            s.life.support_refs.push(addref)
        });
        SupportRef { session, addref }
    }

    /// One more AddRef, for a clone.
    pub(crate) fn again(&self) -> SupportRef {
        SupportRef::add_ref(self.session)
    }
}

impl Drop for SupportRef {
    fn drop(&mut self) {
        release_support(self.session, Some(self.addref));
    }
}
