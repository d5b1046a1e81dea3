//! The live object handles behind `crate::object`: a registry node per
//! tracked object, its transitions recorded.

use std::fmt;
use std::sync::atomic::Ordering;

use mapileak_reports::{RefOp, Rule};

use crate::settings::Mode;

use super::env;
use crate::count::Release;
use crate::kind::{Kind, Role};

use super::context::{self, Quiet};
use super::finding::PendingFinding;
use super::registry::{self, Node, NodeRef};
use super::stack;

/// What `Tracked` and `RefCount` share: the node and its registration.
pub(crate) struct Handle {
    node: NodeRef,
    /// [`registry::memory_tag`] of the node's id: never read here, but it
    /// sits in the object's own memory, where a report finds it.
    #[allow(dead_code)]
    tag: u64,
}

impl Handle {
    #[inline(never)]
    fn new(session: Option<u64>, kind: &'static Kind, label: &str, counted: bool) -> Handle {
        let _quiet = Quiet::new();
        context::watch_thread();
        super::env::init();
        // Objects tracked outside any logon still get their process-end report.
        super::exit::register();
        let live = env::mode() != Mode::Off;
        let session = session.unwrap_or_else(context::current_id);
        let created = if live { stack::capture() } else { 0 };
        let history = live && kind.history();
        // The node copies the label: the caller's string was allocated in
        // its scope, and a leaked object's label is no heap block of its own.
        let node = NodeRef::new(Node::new(
            registry::next_object_id(),
            kind,
            session,
            label,
            created,
            counted,
            history,
        ));
        if history {
            node.with_links(|l| l.push_event(RefOp::Create, created));
        }
        if live {
            registry::check_open(session, &node);
            registry::insert(node.clone());
        }
        let tag = registry::memory_tag(node.id);
        Handle { node, tag }
    }

    pub(crate) fn id(&self) -> u64 {
        self.node.id
    }

    pub(crate) fn opened_from(&self, parent: u64) {
        self.node.with_links(|l| l.opened_from = Some(parent));
    }

    pub(crate) fn hold(&self, other: u64) {
        // The list may grow: mapileak's own memory, never the provider's.
        let _quiet = Quiet::new();
        self.node.with_links(|l| l.holds.push(other));
    }

    pub(crate) fn release_hold(&self, other: u64) {
        let _quiet = Quiet::new();
        self.node.with_links(|links| {
            if let Some(i) = links.holds.iter().rposition(|&h| h == other) {
                links.holds.swap_remove(i);
            }
        });
    }

    /// Its id, kind and label, for `Debug`.
    pub(crate) fn describe(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("id", &self.node.id)
            .field("kind", &self.node.kind.name())
            .field("label", &self.node.label);
    }
}

/// `Tracked`'s inner part: alive until it drops.
pub(crate) struct Tracker(Handle);

/// `RefCount`'s inner part: the count lives in the node.
pub(crate) struct Counted(Handle);

macro_rules! forward {
    ($t:ident) => {
        impl std::ops::Deref for $t {
            type Target = Handle;
            fn deref(&self) -> &Handle {
                &self.0
            }
        }
    };
}
forward!(Tracker);
forward!(Counted);

impl Tracker {
    pub(crate) fn new(
        session: Option<u64>,
        kind: &'static Kind,
        label: impl Into<String>,
    ) -> Tracker {
        Tracker(Handle::new(session, kind, &label.into(), false))
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        registry::remove(&self.0.node);
    }
}

impl Counted {
    pub(crate) fn new(
        session: Option<u64>,
        kind: &'static Kind,
        label: impl Into<String>,
    ) -> Counted {
        Counted(Handle::new(session, kind, &label.into(), true))
    }

    #[inline]
    pub(crate) fn add_ref(&self) -> u32 {
        let node = &*self.node;
        let n = node.refs.add_ref();
        if node.history {
            record(node, RefOp::AddRef);
        }
        n
    }

    #[inline]
    pub(crate) fn release(&self) -> Release {
        let node = &*self.node;
        let release = node.refs.release();
        match release {
            Release::Zeroed => {
                final_release(node);
                registry::remove(node);
            }
            Release::Released(_) if node.history => record(node, RefOp::Release),
            Release::Released(_) => {}
            Release::Over => over_release(node),
        }
        release
    }

    pub(crate) fn destroyed(&self) {
        self.node.refs.clear();
        registry::remove(&self.node);
    }

    pub(crate) fn gone(&self) {
        let node = &self.node;
        registry::remove(node);
        match node.kind.role() {
            Role::Logon => super::session::logon_object_gone(node.session, node.id),
            Role::Provider => super::lifecycle::provider_object_gone(node.session),
            Role::Object => {}
        }
    }

    pub(crate) fn count(&self) -> u32 {
        self.node.refs.get()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.gone();
    }
}

#[inline(never)]
fn record(node: &Node, op: RefOp) {
    let _quiet = Quiet::new();
    let stack = stack::capture();
    node.with_links(|l| l.push_event(op, stack));
}

/// The Release that took the count to 0: its stack is kept, for the
/// over-release a later Release would be (once per object).
#[inline(never)]
#[cold]
fn final_release(node: &Node) {
    let _quiet = Quiet::new();
    if env::mode() == Mode::Off {
        return;
    }
    let stack = stack::capture();
    node.zeroed_at.store(stack, Ordering::Relaxed);
    if node.history {
        node.with_links(|l| l.push_event(RefOp::Release, stack));
    }
}

#[inline(never)]
#[cold]
fn over_release(node: &Node) {
    let _quiet = Quiet::new();
    if env::mode() == Mode::Off {
        return;
    }
    let now = stack::capture();
    if node.history {
        node.with_links(|l| l.push_event(RefOp::Release, now));
    }
    // The bug is rarely this Release, which found the count at 0, but the
    // one that took it there while a holder still owned a reference.
    let zeroed_at = node.zeroed_at.load(Ordering::Relaxed);
    let (stack, also, message) = if zeroed_at != 0 {
        (
            zeroed_at,
            Some(now),
            format!(
                "IUnknown::Release took {} \"{}\" to 0 while a reference was still owned: a later Release found the count at 0 (one Release too many, or one AddRef too few, before this one)",
                node.kind.name(),
                node.label
            ),
        )
    } else {
        (
            now,
            None,
            format!(
                "IUnknown::Release called on {} \"{}\" whose reference count was already 0",
                node.kind.name(),
                node.label
            ),
        )
    };
    let mut finding = PendingFinding::new(Rule::OverRelease, message, stack).about(node);
    finding.also = also;
    registry::add_finding(node.session, finding);
}

/// The object with this report id, if it is alive.
pub(crate) fn alive(id: u64) -> Option<u64> {
    registry::is_live(id).then_some(id)
}

/// [`registry::memory_tag`] of object `id`.
pub(crate) fn memory_tag(id: u64) -> u64 {
    registry::memory_tag(id)
}
