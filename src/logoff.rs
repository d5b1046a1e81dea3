//! Logoff (and Shutdown, and process end) as a one-way pipeline:
//!
//! ```text
//!  registry, live table,   ─take─►  Snapshot  ─emit::build─►  Report  ─emit::publish─►  trace lines,
//!  MAPI buffers, findings           (copies)   (analysis:                               JSON, HTML files
//!                                              roots, balancer,
//!                                              signatures)
//! ```
//!
//! [`Snapshot::take`] (module `snapshot`) is the only phase that reads the
//! recorder's state (objects, heap blocks, buffers); it copies what the
//! report needs, so the analysis and the outputs run on data no other
//! thread changes, and no lock is held while they run. Callers (`session`, `lifecycle`, the
//! exit hook) decide which sessions a report covers and which findings it
//! carries, then call [`report`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use mapileak_reports::{Event, ProviderKind, Report, SessionInfo};

use crate::context::Quiet;
use crate::registry::{self, PendingFinding};
use crate::snapshot::{Live, Snapshot};
use crate::{Logoff, Mode, config, emit};

/// The whole pipeline for the sessions in `members`: snapshot, analysis
/// and report, outputs. With `MAPILEAK=off`, an empty report and no output.
pub(crate) fn report(
    info: SessionInfo,
    members: &[u64],
    findings: Vec<PendingFinding>,
    mode: Mode,
) -> Logoff {
    if mode == Mode::Off {
        return Logoff::new(Report::new(info));
    }
    publish(Snapshot::take(info, members, findings), mode)
}

fn publish(snapshot: Snapshot, mode: Mode) -> Logoff {
    let report = emit::build(snapshot);
    let files = emit::publish(&report, mode);
    Logoff { report, files }
}

static EXITED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reports everything still alive as leaked at process end (`event: exit`):
/// one report per provider (with its logons), per logon made without a
/// provider, and one for objects created outside any logon. Runs once; the
/// exit hook calls it (see the README), and a provider DLL may call it
/// itself when it is unloaded.
pub fn process_exit() -> Vec<Logoff> {
    let _quiet = Quiet::new();
    if EXITED.swap(true, Ordering::SeqCst) || config::mode() == Mode::Off {
        return Vec::new();
    }
    let mode = config::mode();
    // At process end a lock is waited for only a moment: a thread stuck
    // elsewhere must not hang the host's exit.
    let wait = std::time::Duration::from_millis(200);
    let groups = registry::with_all_sessions(
        |all| {
            let mut groups: Vec<(SessionInfo, Vec<u64>, Vec<PendingFinding>)> = Vec::new();
            let heads: Vec<u64> = all
                .iter()
                .filter(|(_, s)| s.is_provider() || s.owner == 0)
                .map(|(&id, _)| id)
                .collect();
            for head in heads {
                let members: Vec<u64> = all
                    .iter()
                    .filter(|&(&id, s)| id == head || s.owner == head)
                    .map(|(&id, _)| id)
                    .collect();
                let mut findings = Vec::new();
                for m in &members {
                    if let Some(s) = all.get_mut(m) {
                        findings.append(&mut s.findings);
                    }
                }
                let s = &all[&head];
                let info = SessionInfo {
                    id: head,
                    provider: s.provider,
                    label: s.label.clone(),
                    event: Event::Exit,
                };
                groups.push((info, members, findings));
            }
            groups
        },
        Some(wait),
    );
    let Some(mut groups) = groups else {
        return Vec::new();
    };
    let unattributed = registry::UNATTRIBUTED
        .try_lock_for(wait)
        .map(|mut u| std::mem::take(&mut *u));
    groups.push((
        SessionInfo {
            id: 0,
            provider: ProviderKind::Unknown,
            label: "outside any logon".to_owned(),
            event: Event::Exit,
        },
        vec![0],
        unattributed.unwrap_or_default(),
    ));
    // One pass over each table for all groups: a process that logged on
    // and off thousands of times pays for what is alive, not per session.
    let group_of: HashMap<u64, usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, (_, members, _))| members.iter().map(move |&m| (m, g)))
        .collect();
    let parts = Live::of(|_| true).split(groups.len(), |s| group_of.get(&s).copied());
    groups
        .into_iter()
        .zip(parts)
        .map(|((info, _, findings), live)| Snapshot::of(info, live, findings))
        .filter(|snapshot| !snapshot.is_empty())
        .map(|snapshot| publish(snapshot, mode))
        .collect()
}
