//! The recorder's state: live tracked objects and logon sessions.
//!
//! Objects live in sharded hash maps keyed by id, their records in
//! mapileak's own pages (`cells`); whoever lists them sorts them by id,
//! which is creation order. Sessions live in one map while something may
//! still be reported about them; a logon whose life is over and left
//! nothing leaves it ([`retire_if_clean`]), so a process that logs on and
//! off thousands of times keeps nothing per logon. Locks here are never
//! held while user code, `tracing` or I/O runs. Lock order: the sessions
//! lock may be held while an object shard is locked, never the other way
//! round.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::Mutex;
use mapileak_reports::{ProviderKind, Rule};

use crate::backend::finding::{Findings, PendingFinding, PendingSubject};
use crate::backend::life::{Life, LogonFacts};
use crate::backend::stack::StackId;

mod cells;
mod node;
pub(crate) use cells::NodeRef;
pub(crate) use node::Node;

const SHARDS: usize = 16;

/// One shard of the live objects, by id.
type Shard = HashMap<u64, NodeRef, BuildHasherDefault<IdHash>>;

static OBJECTS: [Mutex<Shard>; SHARDS] =
    [const { Mutex::new(HashMap::with_hasher(BuildHasherDefault::new())) }; SHARDS];
static NEXT_OBJECT: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_object_id() -> u64 {
    NEXT_OBJECT.fetch_add(1, Ordering::Relaxed)
}

/// The word each tracked object carries in its own memory (beside its node
/// pointer), so a report can recognize the heap block that holds a leaked
/// object: that block is the object, not a second leak. Unlike any address
/// or small number a block usually holds, and different for every object.
pub(crate) fn memory_tag(id: u64) -> u64 {
    0x4d41_5049_4c45_414b ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn shard(id: u64) -> &'static Mutex<Shard> {
    &OBJECTS[(id as usize) % SHARDS]
}

/// The hash of an object id. Ids are consecutive, and a shard's differ by
/// multiples of [`SHARDS`]: a multiply spreads them, and its high half
/// folded in reaches the low bits a table indexes by.
#[derive(Default)]
struct IdHash(u64);

impl std::hash::Hasher for IdHash {
    fn write(&mut self, bytes: &[u8]) {
        // (Only `u64` keys are hashed here.)
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 32);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) fn insert(node: NodeRef) {
    node.listed.store(true, Ordering::Relaxed);
    shard(node.id).lock().insert(node.id, node);
}

/// Takes the node's object out of the live ones (once: a `RefCount`'s
/// final Release does, and its drop comes after).
pub(crate) fn remove(node: &Node) {
    if node.listed.swap(false, Ordering::Relaxed) {
        let mut shard = shard(node.id).lock();
        shard.remove(&node.id);
        // A table does not shrink by itself: after a peak of objects, give
        // most of its room back.
        if shard.capacity() > 1024 && shard.len() < shard.capacity() / 8 {
            let _quiet = crate::backend::context::Quiet::new();
            let keep = shard.len() * 2;
            shard.shrink_to(keep);
        }
    }
}

pub(crate) fn is_live(id: u64) -> bool {
    shard(id).lock().contains_key(&id)
}

/// Whether `session` has a live counted logon object (a `RefCount` of a
/// kind whose role is the logon's), other than `except`.
pub(crate) fn has_counted_logon(session: u64, except: u64) -> bool {
    OBJECTS.iter().any(|shard| {
        shard.lock().values().any(|n| {
            n.session == session
                && n.id != except
                && n.counted
                && n.kind.role() == crate::kind::Role::Logon
        })
    })
}

/// The logons of `provider` whose Logoff waits for their logon object.
pub(crate) fn deferred_logons(provider: u64) -> Vec<u64> {
    SESSIONS
        .lock()
        .open
        .iter()
        .filter(|(_, s)| s.provider_record == provider && s.deferred.is_some())
        .map(|(&id, _)| id)
        .collect()
}

/// The live objects of `session`, in creation order.
pub(crate) fn live_in(session: u64) -> Vec<NodeRef> {
    live_where(|s| s == session)
}

/// The live objects whose session passes `pick`, in creation order.
pub(crate) fn live_where(pick: impl Fn(u64) -> bool) -> Vec<NodeRef> {
    live_where_within(pick, None).unwrap_or_default()
}

/// [`live_where`], each shard's lock waited for at most `wait` (`None`:
/// as long as it takes); `None` when one was not free in time.
pub(crate) fn live_where_within(
    pick: impl Fn(u64) -> bool,
    wait: Option<std::time::Duration>,
) -> Option<Vec<NodeRef>> {
    let mut out = Vec::new();
    for s in &OBJECTS {
        let shard = match wait {
            None => s.lock(),
            Some(d) => s.try_lock_for(d)?,
        };
        out.extend(shard.values().filter(|n| pick(n.session)).cloned());
    }
    out.sort_by_key(|n| n.id);
    Some(out)
}

impl PendingFinding {
    /// The same, about the object of `node`.
    pub(crate) fn about(self, node: &Node) -> PendingFinding {
        PendingFinding {
            object: Some(node.id),
            subject: Some(PendingSubject {
                kind: node.kind.name(),
                label: node.label.to_string(),
                created: node.created,
                events: node.events(),
            }),
            ..self
        }
    }
}

/// A logon session's own state, or a provider's: a provider is a
/// session-like scope that owns its logons, so that its Shutdown can report
/// what they left alive.
pub(crate) struct SessionState {
    pub kind: ProviderKind,
    pub label: String,
    /// The provider record this logon belongs to (0: none declared).
    pub provider_record: u64,
    /// Where it was created (the Logon, or `*ProviderInit`).
    pub opened: StackId,
    /// What the record is and where it is in its life ([`Phase::step`]).
    phase: Phase,
    pub findings: Findings,
    pub life: Life,
    /// Its Logoff reported nothing (no object, block, buffer or finding)
    /// and no object was made on it since.
    pub clean_at_logoff: bool,
    /// Its Logoff came while its logon object (counted: a `RefCount`) was
    /// alive: the report waits for that object's end, as MAPI releases it
    /// right after Logoff and the destructor frees the logon's state.
    pub deferred: Option<Deferred>,
}

/// A Logoff whose report waits for the logon object's end.
#[derive(Clone, Copy)]
pub(crate) struct Deferred {
    /// Which Logoff method was called.
    pub method: ProviderKind,
    /// Where.
    pub stack: StackId,
}

/// A logon's life, or a provider's, as MAPI drives it:
///
/// ```text
///  logon:     Open ──Logoff──► LoggedOff ──Release(logon)──► Released
///  provider:  Running ──Shutdown──► ShutDown ──Release(provider)──► Released
/// ```
///
/// Any other step (a second Logoff, a Release before Logoff, Shutdown twice)
/// is refused by [`Phase::step`] and leaves the phase as it was; the caller
/// files it as an `out-of-order` finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Open,
    LoggedOff,
    LogonReleased,
    Running,
    ShutDown,
    ProviderReleased,
}

/// What MAPI did to a logon or provider object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// `IXXLogon::Logoff` (TransportLogoff).
    Logoff,
    /// MAPI's final `Release` of the logon object.
    ReleaseLogon,
    /// `IXXProvider::Shutdown`.
    Shutdown,
    /// MAPI's final `Release` of the provider object.
    ReleaseProvider,
}

impl Phase {
    /// The one place phases change: the phase after `step`, or the phase
    /// as it was when the step is out of order.
    pub(crate) fn step(self, step: Step) -> Result<Phase, Phase> {
        match (self, step) {
            (Phase::Open, Step::Logoff) => Ok(Phase::LoggedOff),
            (Phase::LoggedOff, Step::ReleaseLogon) => Ok(Phase::LogonReleased),
            (Phase::Running, Step::Shutdown) => Ok(Phase::ShutDown),
            (Phase::ShutDown, Step::ReleaseProvider) => Ok(Phase::ProviderReleased),
            (other, _) => Err(other),
        }
    }
}

impl SessionState {
    /// A provider's record, not a logon's.
    pub(crate) fn is_provider_record(&self) -> bool {
        matches!(
            self.phase,
            Phase::Running | Phase::ShutDown | Phase::ProviderReleased
        )
    }

    /// Past its Logoff (a logon) or its Shutdown (a provider): nothing
    /// more may happen on it.
    pub(crate) fn closed(&self) -> bool {
        !matches!(self.phase, Phase::Open | Phase::Running)
    }

    /// A copy of what the Logoff rules read (they run on the snapshot).
    pub(crate) fn facts(&self) -> LogonFacts {
        LogonFacts {
            kind: self.kind,
            label: self.label.clone(),
            provider_record: self.provider_record,
            opened: self.opened,
            life: self.life.clone(),
        }
    }

    /// Takes `step`; `Err` with the phase it stays in when the step is out
    /// of order.
    pub(crate) fn step(&mut self, step: Step) -> Result<(), Phase> {
        self.phase = self.phase.step(step)?;
        Ok(())
    }
}

/// The sessions and providers that may still be reported on, and the
/// logons that left lately.
struct Sessions {
    open: BTreeMap<u64, SessionState>,
    /// The logons that have not logged off yet (phase `Open`), or whose
    /// Logoff waits for their logon object's end.
    logging_on: BTreeSet<u64>,
    /// The latest [`REMEMBERED`] retired logons, oldest first.
    retired: VecDeque<Retired>,
}

static SESSIONS: Mutex<Sessions> = Mutex::new(Sessions {
    open: BTreeMap::new(),
    logging_on: BTreeSet::new(),
    retired: VecDeque::new(),
});
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);
/// The one logon not logged off yet when there is exactly one, else 0:
/// what the C ABI attributes to outside any scope (read without a lock).
static SOLE_OPEN: AtomicU64 = AtomicU64::new(0);

/// How many retired logons are remembered by name.
const REMEMBERED: usize = 64;

/// A logon that left the registry ([`retire_if_clean`]), as far as it is
/// remembered: a late call on it is still `out-of-order`, named when it
/// is one of the latest [`REMEMBERED`].
#[derive(Debug, Clone)]
pub(crate) struct Retired {
    pub kind: ProviderKind,
    /// Its label, or `#<id>` when it is no longer remembered.
    pub label: String,
    /// Its provider record (0: none, or not remembered).
    pub provider_record: u64,
    /// Whether its label, kind and owner are known.
    pub remembered: bool,
    /// MAPI released the logon object (remembered ones only).
    pub released: bool,
    id: u64,
}

impl Sessions {
    /// The retired logon `id`: an id handed out, not a provider (they stay),
    /// no longer open.
    fn retired(&self, id: u64) -> Option<&Retired> {
        self.retired.iter().rev().find(|r| r.id == id)
    }

    fn is_retired(&self, id: u64) -> bool {
        id != 0 && id < NEXT_SESSION.load(Ordering::Relaxed) && !self.open.contains_key(&id)
    }

    /// Logon `id` is open (`Open`) or not: [`SOLE_OPEN`] follows.
    fn set_open(&mut self, id: u64, open: bool) {
        let changed = if open {
            self.logging_on.insert(id)
        } else {
            self.logging_on.remove(&id)
        };
        if changed {
            let sole = match self.logging_on.len() {
                1 => self.logging_on.first().copied().unwrap_or(0),
                _ => 0,
            };
            SOLE_OPEN.store(sole, Ordering::Release);
        }
    }
}

/// [`sole_open_logon`] of no particular provider: one atomic load.
#[inline]
pub(crate) fn sole_open_any() -> Option<u64> {
    Some(SOLE_OPEN.load(Ordering::Acquire)).filter(|&id| id != 0)
}

/// The one logon of this process that has not logged off yet, when there
/// is exactly one; with `provider`, the one of that provider. `None`
/// when there are none or several.
pub(crate) fn sole_open_logon(provider: Option<u64>) -> Option<u64> {
    let Some(provider) = provider else {
        return Some(SOLE_OPEN.load(Ordering::Acquire)).filter(|&id| id != 0);
    };
    let sessions = SESSIONS.lock();
    let mut mine = sessions.logging_on.iter().filter(|id| {
        sessions
            .open
            .get(id)
            .is_some_and(|s| s.provider_record == provider)
    });
    match (mine.next(), mine.next()) {
        (Some(&id), None) => Some(id),
        _ => None,
    }
}

/// A new record: a logon of a `kind` provider (of provider record
/// `provider_record`, 0 for none), or a provider record itself.
pub(crate) fn new_session(
    kind: ProviderKind,
    label: String,
    provider_record: u64,
    is_provider_record: bool,
    opened: StackId,
) -> u64 {
    let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let mut sessions = SESSIONS.lock();
    if !is_provider_record {
        sessions.set_open(id, true);
    }
    sessions.open.insert(
        id,
        SessionState {
            kind,
            label,
            provider_record,
            opened,
            phase: if is_provider_record {
                Phase::Running
            } else {
                Phase::Open
            },
            findings: Findings::default(),
            life: Life::default(),
            clean_at_logoff: false,
            deferred: None,
        },
    );
    id
}

/// Takes logon `id` out of the registry when its life is over and nothing
/// of it is left to report: its Logoff found nothing, no finding came
/// since, and it is done — released by MAPI, or logged off when no provider
/// owns it (no Shutdown will ask about it).
pub(crate) fn retire_if_clean(id: u64) {
    retire_in(&mut SESSIONS.lock(), id);
}

/// Logon `id`'s Logoff found nothing: marks it clean, and retires it if
/// its life is over.
pub(crate) fn logged_off_clean(id: u64) {
    let mut sessions = SESSIONS.lock();
    if let Some(s) = sessions.open.get_mut(&id) {
        s.clean_at_logoff = true;
        retire_in(&mut sessions, id);
    }
}

fn retire_in(sessions: &mut Sessions, id: u64) {
    let done = sessions.open.get(&id).is_some_and(|s| {
        let over = match s.phase {
            Phase::LoggedOff => s.provider_record == 0,
            Phase::LogonReleased => true,
            _ => false,
        };
        over && s.clean_at_logoff && s.findings.is_empty()
    });
    let Some(s) = done.then(|| sessions.open.remove(&id)).flatten() else {
        return;
    };
    if sessions.retired.len() == REMEMBERED {
        sessions.retired.pop_front();
    }
    sessions.retired.push_back(Retired {
        kind: s.kind,
        label: s.label,
        provider_record: s.provider_record,
        remembered: true,
        released: s.phase == Phase::LogonReleased,
        id,
    });
}

/// What is known of logon `id` if it was retired; `None` for an open
/// session, a provider, or an id never handed out.
pub(crate) fn retired(id: u64) -> Option<Retired> {
    retired_in(&SESSIONS.lock(), id)
}

fn retired_in(sessions: &Sessions, id: u64) -> Option<Retired> {
    if !sessions.is_retired(id) {
        return None;
    }
    Some(sessions.retired(id).cloned().unwrap_or(Retired {
        kind: ProviderKind::Unknown,
        label: format!("#{id}"),
        provider_record: 0,
        remembered: false,
        released: false,
        id,
    }))
}

/// MAPI released retired logon `id`: its label when it had been released
/// already (a second Release); `None` the first time (it was retired at
/// its Logoff) or when that is not known (not retired, or no longer
/// remembered).
pub(crate) fn release_retired(id: u64) -> Option<String> {
    let mut sessions = SESSIONS.lock();
    if !sessions.is_retired(id) {
        return None;
    }
    let r = sessions.retired.iter_mut().rev().find(|r| r.id == id)?;
    std::mem::replace(&mut r.released, true).then(|| r.label.clone())
}

/// Whether `id` names an open session or provider.
#[cfg(feature = "test-hooks")]
pub(crate) fn is_open(id: u64) -> bool {
    SESSIONS.lock().open.contains_key(&id)
}

/// Runs `f` on the state of session `id`, if there is one.
pub(crate) fn with_session<R>(id: u64, f: impl FnOnce(&mut SessionState) -> R) -> Option<R> {
    let mut sessions = SESSIONS.lock();
    let s = sessions.open.get_mut(&id)?;
    let r = f(s);
    // A Logoff waiting for the logon object's end keeps the logon open to
    // attribution: its destructor is still the logon's.
    if s.phase != Phase::Open && s.deferred.is_none() {
        sessions.set_open(id, false);
    }
    Some(r)
}

/// Runs `f` on every session and provider, in creation order. At process
/// end the lock is only waited for a moment: a thread stuck elsewhere must
/// not hang the host's exit.
pub(crate) fn with_all_sessions<R>(
    f: impl FnOnce(&mut BTreeMap<u64, SessionState>) -> R,
    wait: Option<std::time::Duration>,
) -> Option<R> {
    match wait {
        None => Some(f(&mut SESSIONS.lock().open)),
        Some(d) => SESSIONS.try_lock_for(d).map(|mut g| f(&mut g.open)),
    }
}

/// Runs `f` holding the sessions' lock (fault injection: see `testing`).
#[cfg(feature = "test-hooks")]
pub(crate) fn with_sessions_locked(f: impl FnOnce()) {
    let _held = SESSIONS.lock();
    f();
}

/// Runs `f` holding the first shard of the object registry.
#[cfg(feature = "test-hooks")]
pub(crate) fn with_objects_locked(f: impl FnOnce()) {
    let _held = OBJECTS[0].lock();
    f();
}

/// The session registry's, the findings' and every object shard's locks,
/// held by the thread that forks (before `fork`, until after it).
#[cfg(unix)]
struct HeldForFork {
    _objects: [crate::sync::MutexGuard<'static, Shard>; SHARDS],
    _nodes: crate::sync::MutexGuard<'static, cells::Chunks>,
    _unattributed: crate::sync::MutexGuard<'static, Findings>,
    _sessions: crate::sync::MutexGuard<'static, Sessions>,
}

#[cfg(unix)]
static HELD_FOR_FORK: crate::sync::ForkHeld<HeldForFork> = crate::sync::ForkHeld::new();

/// Takes them, in the order the code nests them (before `fork`).
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn hold_for_fork() {
    let sessions = SESSIONS.lock();
    let unattributed = UNATTRIBUTED.lock();
    let held = HeldForFork {
        _objects: std::array::from_fn(|i| OBJECTS[i].lock()),
        _nodes: cells::hold(),
        _unattributed: unattributed,
        _sessions: sessions,
    };
    // SAFETY: guards of locks just taken, which every user of the slot
    // takes first.
    unsafe { HELD_FOR_FORK.keep(held) };
}

/// Releases what [`hold_for_fork`] took (after `fork`, in the parent and
/// in the child): the shards first.
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn release_after_fork() {
    // The guards drop here, releasing the locks.
    // SAFETY: the thread of `hold_for_fork`, still holding its locks.
    drop(unsafe { HELD_FOR_FORK.take() });
}

/// Findings of objects created outside any session, kept for the process-end report.
pub(crate) static UNATTRIBUTED: Mutex<Findings> = Mutex::new(Findings::new());

/// Records a finding against `session`. A logon that has logged off passes
/// it to its provider (whose Shutdown reports next); with no session, or a
/// retired logon no provider is known for, it waits for the process-end
/// report.
pub(crate) fn add_finding(session: u64, finding: PendingFinding) {
    let mut finding = Some(finding);
    let mut sessions = SESSIONS.lock();
    let target = match sessions.open.get(&session) {
        Some(s)
            if s.closed()
                && s.deferred.is_none()
                && s.provider_record != 0
                && !s.is_provider_record() =>
        {
            s.provider_record
        }
        Some(_) => session,
        None => sessions.retired(session).map_or(0, |r| r.provider_record),
    };
    if let Some(s) = sessions.open.get_mut(&target)
        && let Some(f) = finding.take()
    {
        s.findings.push(f);
    }
    drop(sessions);
    if let Some(f) = finding {
        UNATTRIBUTED.lock().push(f);
    }
}

/// Records `out-of-order` when an object is created on a session that has
/// logged off.
pub(crate) fn check_open(session: u64, node: &Node) {
    if session == 0 {
        return;
    }
    let closed = {
        let mut sessions = SESSIONS.lock();
        match sessions.open.get_mut(&session) {
            Some(s) if s.closed() => {
                // Not clean any more: the logon stays, so that its
                // provider's Shutdown still shows the object if it lives.
                s.clean_at_logoff = false;
                Some(s.label.clone())
            }
            Some(_) => None,
            None => retired_in(&sessions, session).map(|r| r.label),
        }
    };
    if let Some(label) = closed {
        add_finding(
            session,
            PendingFinding::new(
                Rule::OutOfOrder,
                format!(
                    "{} \"{}\" created on session \"{label}\" after its Logoff",
                    node.kind.name(),
                    node.label
                ),
                node.created,
            )
            .about(node),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{Phase, Step};

    #[test]
    fn the_object_maps_find_every_object_and_give_back_room_after_a_peak() {
        use super::{Node, NodeRef, OBJECTS, insert, is_live, next_object_id, remove};
        let nodes: Vec<NodeRef> = (0..40_000)
            .map(|_| NodeRef::new(Node::for_test(next_object_id())))
            .collect();
        for n in &nodes {
            insert(n.clone());
        }
        assert!(nodes.iter().all(|n| is_live(n.id)));
        let peak: usize = OBJECTS.iter().map(|s| s.lock().capacity()).sum();
        assert!(peak >= 40_000);
        for n in &nodes[..39_000] {
            remove(n);
            remove(n); // (a second remove is nothing)
        }
        assert!(nodes[..39_000].iter().all(|n| !is_live(n.id)));
        assert!(nodes[39_000..].iter().all(|n| is_live(n.id)));
        let after: usize = OBJECTS.iter().map(|s| s.lock().capacity()).sum();
        assert!(after <= peak / 4, "{peak} -> {after}");
        nodes[39_000..].iter().for_each(|n| remove(n));
    }

    #[test]
    fn phases_follow_mapis_order_and_refuse_the_rest() {
        use Phase::*;
        use Step::*;
        // The documented order, for a logon and for a provider.
        assert_eq!(Open.step(Logoff), Ok(LoggedOff));
        assert_eq!(LoggedOff.step(ReleaseLogon), Ok(LogonReleased));
        assert_eq!(Running.step(Shutdown), Ok(ShutDown));
        assert_eq!(ShutDown.step(ReleaseProvider), Ok(ProviderReleased));
        // Everything else stays where it was.
        let all = [
            Open,
            LoggedOff,
            LogonReleased,
            Running,
            ShutDown,
            ProviderReleased,
        ];
        let steps = [Logoff, ReleaseLogon, Shutdown, ReleaseProvider];
        let mut allowed = 0;
        for phase in all {
            for step in steps {
                match phase.step(step) {
                    Ok(_) => allowed += 1,
                    Err(stays) => assert_eq!(stays, phase, "{phase:?} {step:?}"),
                }
            }
        }
        assert_eq!(allowed, 4, "only the four documented steps");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::{Phase, Step};
    use loom::sync::Arc;

    /// The session state machine under its lock: two Logoffs race, and one
    /// is refused whatever the order.
    #[test]
    fn one_of_two_racing_logoffs_is_refused() {
        loom::model(|| {
            let phase = Arc::new(loom::sync::Mutex::new(Phase::Open));
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let p = phase.clone();
                    loom::thread::spawn(move || {
                        let mut p = p.lock().unwrap();
                        match p.step(Step::Logoff) {
                            Ok(next) => {
                                *p = next;
                                true
                            }
                            Err(_) => false,
                        }
                    })
                })
                .collect();
            let ok: usize = ts.into_iter().map(|t| usize::from(t.join().unwrap())).sum();
            assert_eq!(ok, 1);
            assert_eq!(*phase.lock().unwrap(), Phase::LoggedOff);
        });
    }
}
