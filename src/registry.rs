//! The recorder's state: live tracked objects and logon sessions.
//!
//! Objects live in sharded maps keyed by id (ids grow in creation order, so
//! each shard iterates in creation order too). Sessions are few and live in
//! one map. Locks here are never held while user code, `tracing` or I/O runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use mapileak_reports::{ProviderKind, RefOp, Severity};
use parking_lot::Mutex;

use crate::kind::Kind;
use crate::stack::StackId;

/// One tracked object, shared by its adapter (`Tracked`, `RefCount`) and the
/// registry.
pub(crate) struct Node {
    pub id: u64,
    pub kind: &'static Kind,
    /// 0 when the object was created outside any session.
    pub session: u64,
    pub label: String,
    pub created: StackId,
    /// The COM reference count, for `RefCount` objects.
    pub refs: AtomicU32,
    pub counted: bool,
    /// Whether AddRef/Release record a stack each.
    pub history: bool,
    pub links: Mutex<Links>,
}

/// The mutable relations of a node.
#[derive(Default)]
pub(crate) struct Links {
    pub opened_from: Option<u64>,
    /// Objects this one keeps a reference on.
    pub holds: Vec<u64>,
    /// Create/AddRef/Release with their stacks, when history is on.
    pub events: Vec<(RefOp, StackId)>,
}

const SHARDS: usize = 16;

static OBJECTS: [Mutex<BTreeMap<u64, Arc<Node>>>; SHARDS] =
    [const { Mutex::new(BTreeMap::new()) }; SHARDS];
static NEXT_OBJECT: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_object_id() -> u64 {
    NEXT_OBJECT.fetch_add(1, Ordering::Relaxed)
}

fn shard(id: u64) -> &'static Mutex<BTreeMap<u64, Arc<Node>>> {
    &OBJECTS[(id as usize) % SHARDS]
}

pub(crate) fn insert(node: Arc<Node>) {
    shard(node.id).lock().insert(node.id, node);
}

pub(crate) fn remove(id: u64) {
    shard(id).lock().remove(&id);
}

/// The live objects of `session`, in creation order.
pub(crate) fn live_in(session: u64) -> Vec<Arc<Node>> {
    let mut out = Vec::new();
    for s in &OBJECTS {
        out.extend(s.lock().values().filter(|n| n.session == session).cloned());
    }
    out.sort_by_key(|n| n.id);
    out
}

/// A finding recorded when it happened, reported with its session.
pub(crate) struct PendingFinding {
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    pub stack: StackId,
    pub object: Option<u64>,
}

/// A logon session's own state.
pub(crate) struct SessionState {
    pub provider: ProviderKind,
    pub label: String,
    pub logged_off: bool,
    pub findings: Vec<PendingFinding>,
}

static SESSIONS: Mutex<BTreeMap<u64, SessionState>> = Mutex::new(BTreeMap::new());
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

pub(crate) fn new_session(provider: ProviderKind, label: String) -> u64 {
    let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    SESSIONS.lock().insert(
        id,
        SessionState {
            provider,
            label,
            logged_off: false,
            findings: Vec::new(),
        },
    );
    id
}

/// Runs `f` on the state of session `id`, if there is one.
pub(crate) fn with_session<R>(id: u64, f: impl FnOnce(&mut SessionState) -> R) -> Option<R> {
    SESSIONS.lock().get_mut(&id).map(f)
}

/// Findings of objects created outside any session, kept for the process-end report.
static UNATTRIBUTED: Mutex<Vec<PendingFinding>> = Mutex::new(Vec::new());

/// Records a finding against `session` (or the unattributed list for 0).
pub(crate) fn add_finding(session: u64, finding: PendingFinding) {
    let mut finding = Some(finding);
    with_session(session, |s| s.findings.extend(finding.take()));
    if let Some(f) = finding {
        UNATTRIBUTED.lock().push(f);
    }
}
