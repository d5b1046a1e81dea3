//! The protocol rules checked when a logon's Logoff runs: pure functions of
//! the logon's facts as the snapshot copied them (what it opened,
//! subscribed, listed, and which objects were still alive), which return
//! findings. The events that break a rule as they happen (a second
//! `StoreLogoffTransports`, a bad flag) are recorded by `lifecycle` at the
//! call. `docs/rules.md` lists every rule.

use mapileak_reports::ProviderKind;
use mapileak_reports::Rule;

use super::finding::PendingFinding;
use super::life::LogonFacts;

/// The checks of what must be closed when a logon's Logoff runs.
/// `is_live` tells whether an object was still alive at the snapshot.
pub(crate) fn logoff_checks(s: &LogonFacts, is_live: impl Fn(u64) -> bool) -> Vec<PendingFinding> {
    let mut out = Vec::new();
    support_released(s, is_live, &mut out);
    left_for_mapi(s, &mut out);
    connections_closed(s, &mut out);
    unlisted(s, &mut out);
    store_transports_logged_off(s, &mut out);
    out
}

/// The support object's AddRefs are released, and (transports) last.
fn support_released(s: &LogonFacts, is_live: impl Fn(u64) -> bool, out: &mut Vec<PendingFinding>) {
    if let Some(&addref) = s.life.support_refs.last() {
        out.push(PendingFinding::new(
            Rule::SupportNotReleased,
            format!(
                "{} returned with {} AddRef(s) of the support object (IMAPISupport) not released",
                s.kind.logoff_method(),
                s.life.support_refs.len()
            ),
            addref,
        ));
    }
    if s.kind == ProviderKind::Transport
        && let Some((release, alive)) = &s.life.support_final_release
    {
        let released_after = alive.iter().filter(|&&id| !is_live(id)).count();
        if released_after > 0 {
            out.push(PendingFinding::new(
                Rule::TransportSupportOrder,
                format!(
                    "transport \"{}\" released the support object before {released_after} of its objects: it must be released last",
                    s.label
                ),
                *release,
            ));
        }
    }
}

/// What MAPI removes at the support object's final Release (MAPIUIDs, the
/// status row), still there because the support object is held.
fn left_for_mapi(s: &LogonFacts, out: &mut Vec<PendingFinding>) {
    // MAPI removes the MAPIUIDs and the status row itself, while it
    // processes the support object's final Release: held at Logoff, they
    // stay (warnings: MAPI cleans up once the provider lets go).
    if !s.life.support_refs.is_empty() {
        let logoff = s.kind.logoff_method();
        if let Some(at) = s.life.provider_uid {
            out.push(PendingFinding::new(
                Rule::ProviderUidRegistered,
                format!(
                    "the MAPIUIDs \"{}\" registered with IMAPISupport::SetProviderUID are still registered at {logoff}: MAPI removes them at the support object's final Release",
                    s.label
                ),
                at,
            ));
        }
        if let Some(at) = s.life.status_row {
            out.push(PendingFinding::new(
                Rule::StatusRowPresent,
                format!(
                    "the status-table row of \"{}\" (IMAPISupport::ModifyStatusRow) is still there at {logoff}: MAPI removes it at the support object's final Release",
                    s.label
                ),
                at,
            ));
        }
    }
}

/// Remote connections and advise subscriptions are closed.
fn connections_closed(s: &LogonFacts, out: &mut Vec<PendingFinding>) {
    for &(id, at) in &s.life.connections {
        out.push(PendingFinding::new(
            Rule::ServerConnectionOpen,
            format!(
                "connection {id} to a remote server still open at {}: Logoff must drop it",
                s.kind.logoff_method()
            ),
            at,
        ));
    }
    for &(connection, subscribe) in &s.life.subscriptions {
        out.push(PendingFinding::new(
            Rule::SubscriptionOpen,
            format!(
                "advise connection {connection} from IMAPISupport::Subscribe still open at {}",
                s.kind.logoff_method()
            ),
            subscribe,
        ));
    }
}

/// The logon left the provider's list of logons.
fn unlisted(s: &LogonFacts, out: &mut Vec<PendingFinding>) {
    if let Some(listed) = s.life.listed {
        out.push(PendingFinding::new(
            Rule::LogonStillListed,
            format!(
                "logon \"{}\" is still in the provider's list of logons after {}",
                s.label,
                s.kind.logoff_method()
            ),
            listed,
        ));
    }
}

/// A store called `IMAPISupport::StoreLogoffTransports` before Logoff.
fn store_transports_logged_off(s: &LogonFacts, out: &mut Vec<PendingFinding>) {
    // For stores that report their life (through a `Provider`, or any of
    // the store protocol's calls): a provider that reports nothing must not
    // be told it skipped a call.
    if s.kind == ProviderKind::MessageStore
        && (s.provider_record != 0 || s.life.store_logoff)
        && s.life.store_logoff_transports == 0
        && !s.life.store_released
    {
        out.push(PendingFinding::new(
            Rule::StoreLogoffTransports,
            format!(
                "{} on store \"{}\" before IMAPISupport::StoreLogoffTransports was called",
                s.kind.logoff_method(),
                s.label
            ),
            // The call never came: point at the Logon.
            s.opened,
        ));
    }
}
