//! The live logon session: its start, its scope, its Logoff (deferred
//! while a counted logon object is alive), for `crate::session`.

use mapileak_reports::{Event, ProviderKind, Rule};

use crate::Reported;
use crate::settings::Mode;

use super::env;

use super::alloc;
use super::context::{self, Quiet};
use super::finding::PendingFinding;
use super::logoff::{self, Output};
use super::registry::{self, Deferred, Step};
use super::stack;

/// [`Session::logon`].
#[inline(never)]
pub(crate) fn logon(provider: ProviderKind, label: impl Into<String>) -> u64 {
    let _quiet = Quiet::new();
    context::watch_thread();
    super::env::init();
    super::exit::register();
    super::watch::start();
    let stack = if env::mode() == Mode::Off {
        0
    } else {
        stack::capture()
    };
    registry::new_session(provider, label.into(), 0, false, stack)
}

/// [`Session::enter`]: makes `id` current, returns the one it replaces.
#[inline]
pub(crate) fn enter(id: u64) -> u64 {
    let previous = context::enter(id);
    alloc::set_scoped(id != 0);
    previous
}

/// Makes `previous` (what [`enter`] returned) current again.
#[inline]
pub(crate) fn leave(previous: u64) {
    context::leave(previous);
    alloc::set_scoped(previous != 0);
}

/// [`Session::by_id`].
pub(crate) fn by_id(id: u64) -> Option<u64> {
    match registry::with_session(id, |s| !s.is_provider_record()) {
        Some(is_logon) => is_logon.then_some(id),
        // A logon that logged off clean and left the registry.
        None => registry::retired(id).map(|_| id),
    }
}

/// [`Session::current`].
#[inline]
pub(crate) fn current() -> Option<u64> {
    match context::current_id() {
        0 => None,
        id => Some(id),
    }
}

/// [`Session::sole_open`].
#[inline]
pub(crate) fn sole_open(provider: Option<u64>) -> Option<u64> {
    match provider {
        None => registry::sole_open_any(),
        Some(_) => registry::sole_open_logon(provider),
    }
}

/// `IXXLogon::Logoff` of session `id` (`method`'s kind).
#[inline(never)]
pub(crate) fn logoff(id: u64, method: ProviderKind) -> Reported {
    let _quiet = Quiet::new();
    let mode = env::mode();
    let stack = if mode == Mode::Off {
        0
    } else {
        stack::capture()
    };
    // MAPI releases the logon object right after Logoff, and its
    // destructor frees the logon's state: with a counted logon object
    // alive, the report waits for that object's end.
    if mode != Mode::Off && registry::has_counted_logon(id, 0) {
        let deferred = registry::with_session(id, |s| {
            let first = s.step(Step::Logoff).is_ok();
            if first {
                s.deferred = Some(Deferred { method, stack });
            }
            first
        });
        if deferred == Some(true) {
            return preview(id, mode);
        }
    }
    finish_logoff(id, method, stack, false)
}

/// What a deferred Logoff returns: the report of what is alive now,
/// not written (the final one is, at the logon object's end).
fn preview(id: u64, mode: Mode) -> Reported {
    let taken = registry::with_session(id, |s| {
        (s.kind, s.label.clone(), s.findings.to_vec(), s.facts())
    });
    let (provider, label, findings, facts) = match taken {
        Some((provider, label, findings, facts)) => (provider, label, findings, Some(facts)),
        None => (ProviderKind::Unknown, String::new(), Vec::new(), None),
    };
    let info = mapileak_reports::SessionInfo::new(id, provider, label, Event::Logoff);
    logoff::report(info, &[id], findings, facts, mode, Output::Preview)
}

/// The Logoff's checks and report; `stepped`: the session took its
/// Logoff step already (a deferred Logoff).
fn finish_logoff(id: u64, method: ProviderKind, stack: stack::StackId, stepped: bool) -> Reported {
    let mode = env::mode();
    let second_time = |label: &str| {
        PendingFinding::new(
            Rule::OutOfOrder,
            format!(
                "{} called a second time on session \"{label}\"",
                method.logoff_method()
            ),
            stack,
        )
    };
    let taken = registry::with_session(id, |s| {
        let mut findings = s.findings.take();
        let first = stepped || s.step(Step::Logoff).is_ok();
        if !first {
            findings.push(second_time(&s.label));
        }
        if s.kind != method {
            findings.push(PendingFinding::new(
                Rule::OutOfOrder,
                format!(
                    "{} called on a {} session \"{}\"",
                    method.logoff_method(),
                    s.kind.as_str(),
                    s.label
                ),
                stack,
            ));
        }
        (s.kind, s.label.clone(), findings, first, Some(s.facts()))
    });
    // A logon that logged off clean has left the registry: a second
    // Logoff is still out of order.
    let (provider, label, findings, first, facts) =
        taken.unwrap_or_else(|| match registry::retired(id) {
            Some(r) => {
                let provider = if r.remembered { r.kind } else { method };
                let finding = second_time(&r.label);
                (provider, r.label, vec![finding], false, None)
            }
            None => (method, String::new(), Vec::new(), false, None),
        });
    let info = mapileak_reports::SessionInfo::new(id, provider, label, Event::Logoff);
    let logoff = logoff::report(info, &[id], findings, facts, mode, Output::Written);
    if first && logoff.report.is_clean() {
        registry::logged_off_clean(id);
    }
    logoff
}

/// A counted logon object of `session` (node `id`) is gone, memory and
/// all. When no other counted logon object of the session is alive, that
/// is MAPI's Release of the logon (when the session has logged off), and a
/// Logoff waiting for it reports now.
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
pub(crate) fn finish_deferred(session: u64) {
    let Some(d) = registry::with_session(session, |s| s.deferred.take()).flatten() else {
        return;
    };
    let _quiet = Quiet::new();
    finish_logoff(session, d.method, d.stack, true);
}
