//! The first phase of the Logoff pipeline (`logoff`): a copy of what one
//! report covers, taken from the recorder (the registry's objects, the
//! allocator's live table, the MAPI buffers) for a set of sessions. The
//! phases after it read only this copy.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mapileak_reports::{Event, RefOp, SessionInfo};

use crate::kind::Role;
use crate::registry::{self, Node, PendingFinding};
use crate::stack::StackId;
use crate::{alloc, buffers};

/// One leaked object as the report sees it.
pub(crate) struct ObjectSnap {
    pub node: Arc<Node>,
    pub refcount: Option<u32>,
    pub opened_from: Option<u64>,
    pub holds: Vec<u64>,
    pub events: Vec<(RefOp, StackId)>,
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
    /// Unfreed MAPI buffer chains: `(stack, bytes, children)`.
    pub buffers: Vec<(StackId, u64, u64)>,
    pub findings: Vec<PendingFinding>,
}

impl Snapshot {
    /// Copies what the sessions in `members` left alive.
    pub(crate) fn take(
        info: SessionInfo,
        members: &[u64],
        findings: Vec<PendingFinding>,
    ) -> Snapshot {
        let expected = |role: Role| match info.event {
            Event::Logoff => role != Role::Object,
            Event::Shutdown => role == Role::Provider,
            Event::Exit => false,
        };
        let objects: Vec<ObjectSnap> = registry::live_where(|s| members.contains(&s))
            .into_iter()
            .filter(|n| !expected(n.kind.role()))
            .map(|node| {
                let links = node.links.lock();
                let (opened_from, holds, events) =
                    (links.opened_from, links.holds.clone(), links.events.clone());
                drop(links);
                ObjectSnap {
                    refcount: node.counted.then(|| node.refs.load(Ordering::Acquire)),
                    node,
                    opened_from,
                    holds,
                    events,
                }
            })
            .collect();
        let (blocks, _) = alloc::live_blocks(|s| members.contains(&s));
        let tags: HashSet<u64> = objects
            .iter()
            .map(|o| registry::memory_tag(o.node.id))
            .collect();
        let own_memory = alloc::holding_tags(&blocks, &tags);
        let heap = blocks
            .iter()
            .zip(own_memory)
            .filter(|(_, object)| !object)
            .map(|(&(_, stack, size), _)| (stack, size))
            .collect();
        Snapshot {
            info,
            objects,
            heap,
            buffers: buffers::live_in(|s| members.contains(&s)),
            findings,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.objects.is_empty()
            && self.heap.is_empty()
            && self.buffers.is_empty()
            && self.findings.is_empty()
    }
}
