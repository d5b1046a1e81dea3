//! A tracked object's record: small, because there is one per live object
//! (in a cell of `cells`), and touched by every AddRef and Release.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32};

use mapileak_reports::RefOp;

use crate::backend::context::Quiet;
use crate::backend::stack::StackId;
use crate::kind::Kind;
use crate::sync::Mutex;

/// One tracked object, shared by its adapter (`Tracked`, `RefCount`) and the
/// registry.
pub(crate) struct Node {
    pub id: u64,
    pub kind: &'static Kind,
    /// 0 when the object was created outside any session.
    pub session: u64,
    pub label: Label,
    pub created: StackId,
    /// The COM reference count, for `RefCount` objects.
    pub refs: crate::count::Count,
    /// The Release that took the count to 0 (`RefCount`), once it came: a
    /// later Release is an over-release, and this one is the likely culprit.
    pub zeroed_at: AtomicU32,
    pub counted: bool,
    /// Whether AddRef/Release record a stack each.
    pub history: bool,
    /// In the registry (`insert` until `remove`).
    pub listed: AtomicBool,
    /// Its relations, made on first use: most objects never have any.
    links: Mutex<Option<Box<Links>>>,
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        kind: &'static Kind,
        session: u64,
        label: &str,
        created: StackId,
        counted: bool,
        history: bool,
    ) -> Node {
        Node {
            id,
            kind,
            session,
            label: Label::new(label),
            created,
            refs: crate::count::Count::new(1),
            zeroed_at: AtomicU32::new(0),
            counted,
            history,
            listed: AtomicBool::new(false),
            links: Mutex::new(None),
        }
    }

    /// Its relations, to change (made now if it had none).
    pub(crate) fn with_links<R>(&self, f: impl FnOnce(&mut Links) -> R) -> R {
        let mut links = self.links.lock();
        // The box is mapileak's memory, never the provider's.
        let _quiet = Quiet::new();
        f(links.get_or_insert_with(Box::default))
    }

    /// A copy of its relations, its lock waited for at most `wait` (`None`:
    /// as long as it takes); `None` when it was not free in time.
    pub(crate) fn links_within(&self, wait: Option<std::time::Duration>) -> Option<LinksCopy> {
        let links = match wait {
            None => self.links.lock(),
            Some(d) => self.links.try_lock_for(d)?,
        };
        Some(links.as_deref().map(Links::copy).unwrap_or_default())
    }

    /// Its history, oldest first (empty when it keeps none).
    pub(crate) fn events(&self) -> Vec<(RefOp, StackId)> {
        if !self.history {
            return Vec::new();
        }
        self.links_within(None).unwrap_or_default().events
    }

    /// A node of id `id` and nothing else.
    #[cfg(test)]
    pub(crate) fn for_test(id: u64) -> Node {
        Node::new(id, &crate::kind::kinds::IMAPI_TABLE, 0, "", 0, true, false)
    }
}

/// An object's label: short ones (most: "table", "message 7") in the node
/// itself, longer ones in a box of mapileak's.
pub(crate) enum Label {
    Inline(u8, [u8; INLINE]),
    Boxed(Box<str>),
}

/// The longest label kept in the node (the enum is as large as a `String`).
const INLINE: usize = 22;

impl Label {
    fn new(s: &str) -> Label {
        if s.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Label::Inline(s.len() as u8, bytes)
        } else {
            let _quiet = Quiet::new();
            Label::Boxed(s.into())
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Whole UTF-8 bytes of a `&str`, copied as they were.
            Label::Inline(len, bytes) => std::str::from_utf8(&bytes[..*len as usize]).unwrap_or(""),
            Label::Boxed(s) => s,
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Events a history keeps per object; older ones are counted, not kept.
pub(crate) const HISTORY: usize = 4096;

/// The mutable relations of a node.
#[derive(Default)]
pub(crate) struct Links {
    pub opened_from: Option<u64>,
    /// Objects this one keeps a reference on.
    pub holds: Vec<u64>,
    /// Create/AddRef/Release with their stacks, when history is on: the
    /// latest [`HISTORY`] (a ring), and how many older ones were dropped.
    events: std::collections::VecDeque<(RefOp, StackId)>,
    pub events_dropped: u64,
}

/// What a report copies out of [`Links`].
#[derive(Default)]
pub(crate) struct LinksCopy {
    pub opened_from: Option<u64>,
    pub holds: Vec<u64>,
    /// The history kept, oldest first.
    pub events: Vec<(RefOp, StackId)>,
    pub events_dropped: u64,
}

impl Links {
    /// Records one AddRef/Release (or the Create), dropping the oldest past
    /// [`HISTORY`].
    pub(crate) fn push_event(&mut self, op: RefOp, stack: StackId) {
        if self.events.len() == HISTORY {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back((op, stack));
    }

    fn copy(&self) -> LinksCopy {
        LinksCopy {
            opened_from: self.opened_from,
            holds: self.holds.clone(),
            events: self.events.iter().copied().collect(),
            events_dropped: self.events_dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_reads_back_as_given_inline_or_boxed() {
        for s in [
            "",
            "table",
            "message 12",
            "ünïcödé ✓ 22 bytes..",
            "a label longer than twenty-two bytes",
        ] {
            let l = Label::new(s);
            assert_eq!(l.as_str(), s);
            assert_eq!(matches!(l, Label::Inline(..)), s.len() <= INLINE, "{s}");
        }
        assert_eq!(
            format!("{}|{:?}", Label::new("t\"x"), Label::new("t\"x")),
            "t\"x|\"t\\\"x\""
        );
        assert!(size_of::<Node>() <= 80, "{} bytes", size_of::<Node>());
    }
}
