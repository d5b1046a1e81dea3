//! Logoff (and Shutdown, and process end) as a one-way pipeline:
//!
//! ```text
//!  registry, live table,   ─take─►  Snapshot  ─rules─►  Snapshot   ─emit::build─►  Report  ─emit::publish─►  trace lines,
//!  MAPI buffers, findings,          (copies)            + findings  (analysis:                               JSON, HTML files
//!  the logon's facts                                                roots, balancer,
//!                                                                   signatures)
//! ```
//!
//! [`Snapshot::take`] (module `snapshot`) is the only phase that reads the
//! recorder's state (objects, heap blocks, buffers); it copies what the
//! report needs, and the caller copies the logon's facts for the Logoff
//! rules, so the rules, the analysis and the outputs run on data no other
//! thread changes, and no lock is held while they run. Callers (`session`,
//! `lifecycle`, the exit hook) decide which sessions a report covers and
//! which findings it carries, then call [`report`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use mapileak_reports::text::one_line;
use mapileak_reports::{Event, ProviderKind, Report, SessionInfo, SnapshotInfo};

use super::life::LogonFacts;
use super::{emit, rules};
use crate::Reported;
use crate::backend::context::Quiet;
use crate::backend::finding::PendingFinding;
use crate::backend::registry::{self, SessionState};
use crate::backend::snapshot::{Live, Snapshot};
use crate::settings::Mode;

use super::env;

/// Whether a report is written (files, trace lines) or only returned.
pub(crate) enum Output {
    /// The report's files and trace lines are written.
    Written,
    /// The report of what is alive now, not written: what a Logoff that
    /// waits for its logon object returns.
    Preview,
}

/// The whole pipeline for the sessions in `members`: snapshot, rules,
/// analysis and report, outputs. With `MAPILEAK=off`, an empty report and
/// no output. `logon`: the facts of the logon whose Logoff this is, for
/// the Logoff rules (none for a Shutdown or process end).
pub(crate) fn report(
    info: SessionInfo,
    members: &[u64],
    findings: Vec<PendingFinding>,
    logon: Option<LogonFacts>,
    mode: Mode,
    output: Output,
) -> Reported {
    if mode == Mode::Off {
        return Reported::new(Report::new(info));
    }
    let snapshot = checked(Snapshot::take(info, members, findings, logon));
    match output {
        Output::Written => publish(snapshot, mode),
        Output::Preview => Reported::new(emit::build(snapshot)),
    }
}

/// The snapshot with the Logoff rules' findings added: the rules run on
/// what it copied.
fn checked(mut snapshot: Snapshot) -> Snapshot {
    if let Some(logon) = &snapshot.logon {
        let found = rules::logoff_checks(logon, |id| snapshot.alive.contains(&id));
        snapshot.findings.extend(found);
    }
    snapshot
}

fn publish(snapshot: Snapshot, mode: Mode) -> Reported {
    written(emit::build(snapshot), mode)
}

/// `report`, its trace lines and files written.
fn written(report: Report, mode: Mode) -> Reported {
    let files = emit::publish(&report, mode);
    Reported { report, files }
}

static EXITED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// [`crate::process_exit`], in the live build.
pub(crate) fn process_exit() -> Vec<Reported> {
    let _quiet = Quiet::new();
    if EXITED.swap(true, Ordering::SeqCst) || env::mode() == Mode::Off {
        return Vec::new();
    }
    let mode = env::mode();
    match exit_snapshots() {
        Ok(snapshots) => {
            let logoffs = emit::build_all(snapshots)
                .into_iter()
                .map(|report| written(report, mode))
                .collect();
            emit::remove_own_temporaries();
            logoffs
        }
        Err(Skipped::Lock(lock)) => {
            crate::backend::trace::line(format_args!(
                "process-end report skipped: mapileak's {lock} lock was held by another thread for {EXIT_WAIT_MS} ms (a thread ended while inside mapileak, or still running in it); nothing was written"
            ));
            Vec::new()
        }
        Err(Skipped::WouldLoadSymbolizer) => {
            crate::backend::trace::line(format_args!(
                "process-end report skipped: naming its frames would load dbghelp.dll, and process end may hold the loader lock; call mapileak_process_exit (Rust: mapileak::process_exit) before the DLL is unloaded, from the provider's Shutdown"
            ));
            Vec::new()
        }
    }
}

/// Why the process-end report was not written.
enum Skipped {
    /// The named lock was not free in time.
    Lock(&'static str),
    /// The symbolizer is not loaded yet (MSVC builds).
    WouldLoadSymbolizer,
}

/// How long process end waits for any one lock, in milliseconds.
const EXIT_WAIT_MS: u64 = 200;

/// One process-end report to be: its session, the sessions it covers,
/// their findings.
type Group = (SessionInfo, Vec<u64>, Vec<PendingFinding>);

/// What [`process_exit`] reports, or why nothing is.
fn exit_snapshots() -> Result<Vec<Snapshot>, Skipped> {
    let wait = std::time::Duration::from_millis(EXIT_WAIT_MS);
    let mut groups = registry::with_all_sessions(exit_groups, Some(wait))
        .ok_or(Skipped::Lock("session registry"))?;
    let unattributed = registry::UNATTRIBUTED
        .try_lock_for(wait)
        .map(|mut u| u.take())
        .ok_or(Skipped::Lock("findings"))?;
    groups.push(outside(Event::Exit, unattributed));
    let snapshots = group_snapshots(groups, wait)?;
    // The reports name their frames: a thread ended inside the symbolizer
    // holds its lock for good.
    if !snapshots.is_empty() {
        if !crate::backend::symbolize::symbolizer_free_within(wait) {
            return Err(Skipped::Lock("symbolizer"));
        }
        if crate::backend::symbolize::symbolizer_would_load_library() {
            return Err(Skipped::WouldLoadSymbolizer);
        }
    }
    Ok(snapshots)
}

/// One group per provider (with its logons) and per logon made without a
/// provider, each with the findings its sessions recorded.
fn exit_groups(all: &mut BTreeMap<u64, SessionState>) -> Vec<Group> {
    groups_of(all, Event::Exit, true)
}

/// [`exit_groups`] for a report at `event`; the findings are taken only
/// when `take_findings` (a snapshot changes nothing: it has none).
fn groups_of(
    all: &mut BTreeMap<u64, SessionState>,
    event: Event,
    take_findings: bool,
) -> Vec<Group> {
    let heads: Vec<u64> = all
        .iter()
        .filter(|(_, s)| s.is_provider_record() || s.provider_record == 0)
        .map(|(&id, _)| id)
        .collect();
    // Each head's members in one pass (not one pass per head: a process
    // may leave thousands of logons open).
    let mut members_of: HashMap<u64, Vec<u64>> = heads.iter().map(|&h| (h, vec![h])).collect();
    for (&id, s) in all.iter() {
        if s.provider_record != id
            && let Some(members) = members_of.get_mut(&s.provider_record)
        {
            members.push(id);
        }
    }
    let mut groups = Vec::with_capacity(heads.len() + 1);
    for head in heads {
        let members = members_of.remove(&head).unwrap_or_default();
        let mut findings = Vec::new();
        if take_findings {
            for m in &members {
                if let Some(s) = all.get_mut(m) {
                    findings.append(&mut s.findings.take());
                }
            }
        }
        let s = &all[&head];
        let info = SessionInfo::new(head, s.kind, s.label.clone(), event);
        groups.push((info, members, findings));
    }
    groups
}

/// The group of what is outside any logon (and of retired logons), at
/// `event`: session 0.
fn outside(event: Event, findings: Vec<PendingFinding>) -> Group {
    (
        SessionInfo::new(
            0,
            ProviderKind::Unknown,
            "outside any logon".to_owned(),
            event,
        ),
        vec![0],
        findings,
    )
}

/// `live`, one part per group; the last group takes what no other covers.
fn split_by_group(live: Live, groups: &[Group]) -> Vec<Live> {
    // One pass over each table for all groups: a process that logged on
    // and off thousands of times pays for what is alive, not per session.
    // What a retired logon (one that logged off clean and left the
    // registry) made since goes with what was made outside any logon.
    let group_of: HashMap<u64, usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, (_, members, _))| members.iter().map(move |&m| (m, g)))
        .collect();
    let outside = groups.len() - 1;
    live.split(groups.len(), |s| {
        group_of.get(&s).copied().unwrap_or(outside)
    })
}

/// The snapshot of each group that has something to report, each table
/// read once for all of them (the last group takes what no other covers).
fn group_snapshots(
    groups: Vec<Group>,
    wait: std::time::Duration,
) -> Result<Vec<Snapshot>, Skipped> {
    let parts = split_by_group(
        Live::within(|_| true, wait).map_err(Skipped::Lock)?,
        &groups,
    );
    let mut snapshots = Vec::new();
    for ((info, _, findings), live) in groups.into_iter().zip(parts) {
        let snapshot = Snapshot::within(info, live, findings, Some(wait)).map_err(Skipped::Lock)?;
        if !snapshot.is_empty() {
            snapshots.push(snapshot);
        }
    }
    Ok(snapshots)
}

/// The number of the last snapshot taken in this process.
static SNAPSHOTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// [`crate::snapshot`], in the live build: one report per provider (with
/// its logons), per logon made without one, and of what is outside any
/// logon, each written to files of its own. Changes no state: the findings
/// stay for the Logoff that reports them.
pub(crate) fn snapshot(label: &str) -> Vec<Reported> {
    let _quiet = Quiet::new();
    let mode = env::mode();
    if mode == Mode::Off || crate::backend::context::exiting() {
        return Vec::new();
    }
    let taken_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let seq = SNAPSHOTS.fetch_add(1, Ordering::Relaxed) + 1;
    let which = SnapshotInfo::new(seq, one_line(label), taken_ms);
    let mut groups =
        registry::with_all_sessions(|all| groups_of(all, Event::Snapshot, false), None)
            .unwrap_or_default();
    groups.push(outside(Event::Snapshot, Vec::new()));
    let parts = split_by_group(Live::of(|_| true), &groups);
    let only = groups.len() == 1;
    let snapshots = groups
        .into_iter()
        .zip(parts)
        .map(|((info, _, findings), live)| Snapshot::of(info, live, findings))
        // What is outside any logon is written when there is some (or no
        // logon at all): every snapshot writes at least one report.
        .filter(|s| s.info.id != 0 || only || !s.is_empty())
        .collect();
    emit::build_all(snapshots)
        .into_iter()
        .map(|mut report| {
            report.snapshot = Some(which.clone());
            written(report, mode)
        })
        .collect()
}
