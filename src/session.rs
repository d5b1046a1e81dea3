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
#[cfg(any(debug_assertions, feature = "force"))]
use mapileak_reports::{Event, Rule};

use crate::Logoff;
#[cfg(any(debug_assertions, feature = "force"))]
use crate::context::Quiet;
#[cfg(any(debug_assertions, feature = "force"))]
use crate::registry::{self, Deferred, PendingFinding, Step};
#[cfg(any(debug_assertions, feature = "force"))]
use crate::{Mode, config, context, logoff, rules, stack};

pub use crate::context::Session;

impl Session {
    /// Starts a session for a `Logon` of a `provider`-type provider, named
    /// `label` in reports (the profile section or store display name).
    ///
    /// A provider that reports its own life (init, Shutdown) starts sessions
    /// with [`Provider::logon`](crate::Provider::logon) instead.
    pub fn logon(provider: ProviderKind, label: impl Into<String>) -> Session {
        #[cfg(any(debug_assertions, feature = "force"))]
        return Session::logon_live(provider, label.into());
        #[cfg(not(any(debug_assertions, feature = "force")))]
        {
            let _ = (provider, label);
            Session {}
        }
    }

    #[cfg(any(debug_assertions, feature = "force"))]
    #[inline(never)]
    fn logon_live(provider: ProviderKind, label: String) -> Session {
        let _quiet = Quiet::new();
        context::watch_thread();
        config::init();
        crate::exit::register();
        let stack = if config::mode() == Mode::Off {
            0
        } else {
            stack::capture()
        };
        Session {
            id: registry::new_session(provider, label, 0, false, stack),
        }
    }

    #[cfg(any(debug_assertions, feature = "force"))]
    pub(crate) fn from_id(id: u64) -> Session {
        Session { id }
    }

    /// Makes this the current session of the calling thread until the
    /// returned guard drops; objects created meanwhile without an explicit
    /// session belong to it. Scopes nest.
    pub fn enter(self) -> Scope {
        Scope {
            #[cfg(any(debug_assertions, feature = "force"))]
            previous: context::enter(self.id),
            _not_send: PhantomData,
        }
    }

    /// The logon session with this id (as [`Session::id`] and reports show
    /// it), if the process started one: for bindings that carry sessions as
    /// numbers, such as the C ABI.
    /// (Without the instrumentation every id names the one zero-sized
    /// session.)
    pub fn by_id(id: u64) -> Option<Session> {
        #[cfg(any(debug_assertions, feature = "force"))]
        return match registry::with_session(id, |s| !s.is_provider()) {
            Some(is_logon) => is_logon.then_some(Session { id }),
            // A logon that logged off clean and left the registry.
            None => registry::retired(id).map(|_| Session { id }),
        };
        #[cfg(not(any(debug_assertions, feature = "force")))]
        {
            let _ = id;
            Some(Session {})
        }
    }

    /// The calling thread's current session, if any.
    #[inline]
    pub fn current() -> Option<Session> {
        #[cfg(any(debug_assertions, feature = "force"))]
        return match context::current_id() {
            0 => None,
            id => Some(Session { id }),
        };
        #[cfg(not(any(debug_assertions, feature = "force")))]
        None
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
        #[cfg(any(debug_assertions, feature = "force"))]
        return match provider {
            None => registry::sole_open_any().map(|id| Session { id }),
            Some(_) => registry::sole_open_logon(provider).map(|id| Session { id }),
        };
        #[cfg(not(any(debug_assertions, feature = "force")))]
        {
            let _ = provider;
            None
        }
    }

    /// `IABLogon::Logoff`: ends an address book session and reports it.
    pub fn ab_logoff(self) -> Logoff {
        self.logoff(ProviderKind::AddressBook)
    }

    /// `IMSLogon::Logoff`: ends a message store session and reports it.
    pub fn ms_logoff(self) -> Logoff {
        self.logoff(ProviderKind::MessageStore)
    }

    /// `IXPLogon::TransportLogoff`: ends a transport session and reports it.
    pub fn transport_logoff(self) -> Logoff {
        self.logoff(ProviderKind::Transport)
    }

    #[cfg(not(any(debug_assertions, feature = "force")))]
    fn logoff(self, method: ProviderKind) -> Logoff {
        Logoff::empty(method, mapileak_reports::Event::Logoff)
    }

    #[cfg(any(debug_assertions, feature = "force"))]
    #[inline(never)]
    fn logoff(self, method: ProviderKind) -> Logoff {
        let _quiet = Quiet::new();
        let mode = config::mode();
        let stack = if mode == Mode::Off {
            0
        } else {
            stack::capture()
        };
        // MAPI releases the logon object right after Logoff, and its
        // destructor frees the logon's state: with a counted logon object
        // alive, the report waits for that object's end.
        if mode != Mode::Off && registry::has_counted_logon(self.id, 0) {
            let deferred = registry::with_session(self.id, |s| {
                let first = s.step(Step::Logoff).is_ok();
                if first {
                    s.deferred = Some(Deferred { method, stack });
                }
                first
            });
            if deferred == Some(true) {
                return self.preview(mode);
            }
        }
        self.finish_logoff(method, stack, false)
    }

    /// What a deferred Logoff returns: the report of what is alive now,
    /// not written (the final one is, at the logon object's end).
    #[cfg(any(debug_assertions, feature = "force"))]
    fn preview(self, mode: Mode) -> Logoff {
        let taken = registry::with_session(self.id, |s| {
            let mut findings = s.findings.to_vec();
            findings.extend(rules::logoff_checks(s, registry::is_live));
            (s.provider, s.label.clone(), findings)
        });
        let (provider, label, findings) =
            taken.unwrap_or((ProviderKind::Unknown, String::new(), Vec::new()));
        let info = mapileak_reports::SessionInfo {
            id: self.id,
            provider,
            label,
            event: Event::Logoff,
        };
        logoff::preview(info, &[self.id], findings, mode)
    }

    /// The Logoff's checks and report; `stepped`: the session took its
    /// Logoff step already (a deferred Logoff).
    #[cfg(any(debug_assertions, feature = "force"))]
    fn finish_logoff(self, method: ProviderKind, stack: stack::StackId, stepped: bool) -> Logoff {
        let mode = config::mode();
        let second_time = |label: &str| {
            PendingFinding::error(
                Rule::OutOfOrder,
                format!(
                    "{} called a second time on session \"{label}\"",
                    method.logoff_method()
                ),
                stack,
            )
        };
        let taken = registry::with_session(self.id, |s| {
            let mut findings = s.findings.take();
            let first = stepped || s.step(Step::Logoff).is_ok();
            if !first {
                findings.push(second_time(&s.label));
            }
            if s.provider != method {
                findings.push(PendingFinding::error(
                    Rule::OutOfOrder,
                    format!(
                        "{} called on a {} session \"{}\"",
                        method.logoff_method(),
                        s.provider.as_str(),
                        s.label
                    ),
                    stack,
                ));
            }
            findings.extend(rules::logoff_checks(s, registry::is_live));
            (s.provider, s.label.clone(), findings, first)
        });
        // A logon that logged off clean has left the registry: a second
        // Logoff is still out of order.
        let (provider, label, findings, first) =
            taken.unwrap_or_else(|| match registry::retired(self.id) {
                Some(r) => {
                    let provider = if r.remembered { r.provider } else { method };
                    let finding = second_time(&r.label);
                    (provider, r.label, vec![finding], false)
                }
                None => (method, String::new(), Vec::new(), false),
            });
        let info = mapileak_reports::SessionInfo {
            id: self.id,
            provider,
            label,
            event: Event::Logoff,
        };
        let logoff = logoff::report(info, &[self.id], findings, mode);
        if first && logoff.report.is_clean() {
            registry::logged_off_clean(self.id);
        }
        logoff
    }
}

/// A counted logon object of `session` (node `id`) is gone, memory and
/// all. When no other counted logon object of the session is alive, that
/// is MAPI's Release of the logon (when the session has logged off), and a
/// Logoff waiting for it reports now.
#[cfg(any(debug_assertions, feature = "force"))]
pub(crate) fn logon_object_gone(session: u64, id: u64) {
    if session == 0 || registry::has_counted_logon(session, id) {
        return;
    }
    // Its end is MAPI's Release of the logon, when that comes after Logoff
    // (an earlier one is the provider's to report: `logon_released`).
    registry::with_session(session, |s| {
        let _ = s.step(Step::ReleaseLogon);
    });
    finish_deferred(session);
}

/// Reports `session`'s deferred Logoff now, if it has one (its logon
/// object's end, or its provider's Shutdown, which comes first).
#[cfg(any(debug_assertions, feature = "force"))]
pub(crate) fn finish_deferred(session: u64) {
    let Some(d) = registry::with_session(session, |s| s.deferred.take()).flatten() else {
        return;
    };
    let _quiet = Quiet::new();
    Session { id: session }.finish_logoff(d.method, d.stack, true);
}

/// The current-session guard of [`Session::enter`]; restores the previous
/// session when dropped (also on unwind).
#[must_use = "the session is current only while the guard lives"]
/// Zero-sized without the instrumentation (and never `Send`: it belongs to
/// the thread that entered).
pub struct Scope {
    #[cfg(any(debug_assertions, feature = "force"))]
    previous: u64,
    _not_send: PhantomData<*const ()>,
}

#[cfg(any(debug_assertions, feature = "force"))]
impl Drop for Scope {
    fn drop(&mut self) {
        context::leave(self.previous);
    }
}

// The promise of release builds.
#[cfg(not(any(debug_assertions, feature = "force")))]
const _: () = assert!(size_of::<Scope>() == 0);
