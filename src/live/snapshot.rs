//! The first phase of the Logoff pipeline (`logoff`): a copy of what one
//! report covers, taken from the recorder (the registry's objects, the
//! allocator's live table, the MAPI buffers) for a set of sessions. The
//! phases after it read only this copy.

use std::collections::HashSet;

use mapileak_reports::{Event, RefOp, SessionInfo};

use super::life::LogonFacts;
use super::{alloc, buffers};
use crate::backend::finding::PendingFinding;
use crate::backend::registry::{self, NodeRef};
use crate::backend::stack::StackId;
use crate::kind::Role;

/// One leaked object as the report sees it.
pub(crate) struct ObjectSnap {
    pub node: NodeRef,
    pub refcount: Option<u32>,
    pub opened_from: Option<u64>,
    pub holds: Vec<u64>,
    pub events: Vec<(RefOp, StackId)>,
    /// History events older than the ring kept.
    pub events_dropped: u64,
}

/// What one report covers, copied out of the recorder.
pub(crate) struct Snapshot {
    pub info: SessionInfo,
    /// Objects alive and not expected to be (by role and event), in
    /// creation order.
    pub objects: Vec<ObjectSnap>,
    /// Live heap blocks `(stack, bytes)`, but those that hold a leaked
    /// object (an object's own memory is the object, not a second leak).
    pub heap: Vec<(StackId, u64)>,
    /// Unfreed MAPI buffer chains, with their owners.
    pub buffers: Vec<buffers::LiveBuffer>,
    pub findings: Vec<PendingFinding>,
    /// Attributed blocks the live table could not hold, process-wide.
    pub heap_untracked: u64,
    /// Stack captures that found no room, process-wide.
    pub stacks_missing: u64,
    /// The tables the system refused to reserve (`stacks`, `heap`).
    pub tables_refused: Vec<String>,
    /// The logon whose Logoff this is, for the Logoff rules.
    pub logon: Option<LogonFacts>,
    /// Of the objects the rules ask about (those alive at the support
    /// object's final Release), the ones still alive.
    pub alive: HashSet<u64>,
}

/// Everything alive for some sessions, read once from the recorder: the
/// objects, the live heap blocks, the unfreed MAPI buffer chains.
pub(crate) struct Live {
    objects: Vec<NodeRef>,
    blocks: Vec<alloc::LiveBlock>,
    buffers: Vec<buffers::LiveBuffer>,
}

impl Live {
    /// What the sessions `pick` accepts left alive: one pass over each table.
    pub(crate) fn of(pick: impl Fn(u64) -> bool + Copy) -> Live {
        Live {
            objects: registry::live_where(pick),
            blocks: alloc::live_blocks(pick).0,
            buffers: buffers::live_in(pick),
        }
    }

    /// [`Live::of`], each lock waited for at most `wait`: at process end a
    /// thread that held one may have been ended in the middle (Windows'
    /// `ExitProcess` ends the other threads before the DLLs' detach). `Err`
    /// names the table whose lock was not free in time.
    pub(crate) fn within(
        pick: impl Fn(u64) -> bool + Copy,
        wait: std::time::Duration,
    ) -> Result<Live, &'static str> {
        Ok(Live {
            objects: registry::live_where_within(pick, Some(wait)).ok_or("object registry")?,
            blocks: alloc::live_blocks_within(pick, Some(wait))
                .ok_or("heap table")?
                .0,
            buffers: buffers::live_in_within(pick, Some(wait)).ok_or("MAPI buffer table")?,
        })
    }

    /// Splits into one part per group of sessions (`group_of(session)`:
    /// its group's index, below `groups`). Linear in what is alive,
    /// whatever the number of groups.
    pub(crate) fn split(self, groups: usize, group_of: impl Fn(u64) -> usize) -> Vec<Live> {
        let mut parts: Vec<Live> = (0..groups)
            .map(|_| Live {
                objects: Vec::new(),
                blocks: Vec::new(),
                buffers: Vec::new(),
            })
            .collect();
        for o in self.objects {
            parts[group_of(o.session)].objects.push(o);
        }
        for b in self.blocks {
            parts[group_of(b.1)].blocks.push(b);
        }
        for b in self.buffers {
            parts[group_of(b.session)].buffers.push(b);
        }
        parts
    }
}

/// The tables the system refused to reserve, by name.
fn refused_tables() -> Vec<String> {
    let mut refused = Vec::new();
    if crate::backend::stack::tables_refused() {
        refused.push("stacks".to_owned());
    }
    if alloc::table_refused() {
        refused.push("heap".to_owned());
    }
    refused
}

impl Snapshot {
    /// Copies what the sessions in `members` left alive.
    /// `logon`: the facts of the logon whose Logoff this is.
    pub(crate) fn take(
        info: SessionInfo,
        members: &[u64],
        findings: Vec<PendingFinding>,
        logon: Option<LogonFacts>,
    ) -> Snapshot {
        // A set: a provider's Shutdown covers all its logons, and every
        // live object, block and buffer is looked up in it.
        let members: HashSet<u64> = members.iter().copied().collect();
        let live = Live::of(|s| members.contains(&s));
        let asked: HashSet<u64> = logon
            .as_ref()
            .and_then(|l| l.life.support_final_release.as_ref())
            .map(|(_, ids)| ids.iter().copied().collect())
            .unwrap_or_default();
        let alive = live
            .objects
            .iter()
            .map(|n| n.id)
            .filter(|id| asked.contains(id))
            .collect();
        Snapshot {
            logon,
            alive,
            ..Snapshot::of(info, live, findings)
        }
    }

    /// The snapshot of `live`, what one report covers.
    pub(crate) fn of(info: SessionInfo, live: Live, findings: Vec<PendingFinding>) -> Snapshot {
        // (Without a limit every lock is waited for: no `Err`. In a forked
        // child an object's lock may be held by a thread that is not there.)
        let fallback = info.clone();
        let wait =
            crate::backend::context::forked_child().then(|| std::time::Duration::from_millis(200));
        Snapshot::within(info, live, findings, wait).unwrap_or_else(|lock| {
            crate::backend::trace::line(format_args!(
                "report skipped: an {lock} lock was held at fork by a thread this child does not have"
            ));
            Snapshot {
            info: fallback,
            objects: Vec::new(),
            heap: Vec::new(),
            buffers: Vec::new(),
            findings: Vec::new(),
            heap_untracked: 0,
            stacks_missing: 0,
            tables_refused: Vec::new(),
            logon: None,
            alive: HashSet::new(),
            }
        })
    }

    /// [`Snapshot::of`], each object's lock waited for at most `wait`
    /// (`None`: as long as it takes); `Err` when one was not free in time.
    pub(crate) fn within(
        info: SessionInfo,
        live: Live,
        findings: Vec<PendingFinding>,
        wait: Option<std::time::Duration>,
    ) -> Result<Snapshot, &'static str> {
        let expected = |role: Role| match info.event {
            Event::Logoff => role != Role::Object,
            Event::Shutdown => role == Role::Provider,
            // Process end, and any moment a later report format adds:
            // everything alive is reported.
            _ => false,
        };
        // Every live object's memory is its own, reported with it or not
        // at all: the logon's own block at its Logoff is no heap leak.
        let tags: HashSet<u64> = live
            .objects
            .iter()
            .map(|n| registry::memory_tag(n.id))
            .collect();
        let objects: Vec<ObjectSnap> = live
            .objects
            .into_iter()
            .filter(|n| !expected(n.kind.role()))
            .map(|node| {
                let links = node.links_within(wait).ok_or("object")?;
                Ok(ObjectSnap {
                    refcount: node.counted.then(|| node.refs.get()),
                    node,
                    opened_from: links.opened_from,
                    holds: links.holds,
                    events: links.events,
                    events_dropped: links.events_dropped,
                })
            })
            .collect::<Result<_, &'static str>>()?;
        let own_memory = alloc::holding_tags(&live.blocks, &tags);
        // At Shutdown the provider object is alive by design (MAPI releases
        // it after): what it allocated in its own scope is its state, not a
        // leak yet (the process-end report has it, if it outlives it).
        let provider_state =
            |session: u64| info.event == Event::Shutdown && session == info.id && session != 0;
        let heap = live
            .blocks
            .iter()
            .zip(own_memory)
            .filter(|&(&(_, session, _, _), object)| !object && !provider_state(session))
            .map(|(&(_, _, stack, size), _)| (stack, size))
            .collect();
        let mut buffers = live.buffers;
        buffers.sort_unstable_by_key(|b| (b.stack, b.bytes, b.children, b.owner));
        Ok(Snapshot {
            info,
            objects,
            heap,
            buffers,
            findings,
            heap_untracked: alloc::untracked(),
            stacks_missing: crate::backend::stack::missing(),
            tables_refused: refused_tables(),
            logon: None,
            alive: HashSet::new(),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.objects.is_empty()
            && self.heap.is_empty()
            && self.buffers.is_empty()
            && self.findings.is_empty()
    }
}
