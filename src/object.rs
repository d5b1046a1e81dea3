//! The two adapters that make a provider's object tracked.
//!
//! - [`Tracked`] is a guard field: put it in the object's struct (a
//!   windows-core `#[implement]` struct included, whose generated
//!   AddRef/Release have no hook). The object is alive from the guard's
//!   construction to its `Drop`.
//! - [`RefCount`] replaces a hand-written COM reference count: the provider's
//!   `AddRef`/`Release` call it and return what it returns. It records every
//!   transition, and a Release at zero becomes an `over-release` finding.

// Without the instrumentation the objects only count (RefCount) or do
// nothing (Tracked); what the live path reads is then unused.
#![cfg_attr(not(any(debug_assertions, feature = "force")), allow(unused_variables))]

use std::fmt;
#[cfg(not(any(debug_assertions, feature = "force")))]
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;
#[cfg(any(debug_assertions, feature = "force"))]
use std::sync::{Arc, atomic::AtomicU32};

#[cfg(any(debug_assertions, feature = "force"))]
use mapileak_reports::{RefOp, Rule};
#[cfg(any(debug_assertions, feature = "force"))]
use parking_lot::Mutex;

use crate::ObjectId;
use crate::context::Session;
use crate::kind::Kind;
#[cfg(any(debug_assertions, feature = "force"))]
use crate::{
    Mode, config,
    context::{self, Quiet},
    count::{Count, Release},
    registry::{self, Links, Node, PendingFinding},
    stack,
};

/// What `Tracked` and `RefCount` share: the node and its registration.
#[cfg(any(debug_assertions, feature = "force"))]
struct Handle {
    node: Arc<Node>,
    /// [`registry::memory_tag`] of the node's id: never read here, but it
    /// sits in the object's own memory, where a report finds it.
    #[allow(dead_code)]
    tag: u64,
}

#[cfg(any(debug_assertions, feature = "force"))]
impl Handle {
    #[inline(never)]
    fn new(session: Option<Session>, kind: &'static Kind, label: String, counted: bool) -> Handle {
        let _quiet = Quiet::new();
        context::watch_thread();
        // The caller's string was allocated in its scope: keep a copy of our
        // own, so a leaked object's label is not reported again as a heap block.
        let label = String::from(label.as_str());
        config::init();
        // Objects tracked outside any logon still get their process-end report.
        crate::exit::register();
        let live = config::mode() != Mode::Off;
        let session = session.map_or_else(context::current_id, Session::id);
        let created = if live { stack::capture() } else { 0 };
        let history = live && kind.history();
        let mut links = Links::default();
        if history {
            links.push_event(RefOp::Create, created);
        }
        let node = Arc::new(Node {
            id: registry::next_object_id(),
            kind,
            session,
            label,
            created,
            refs: Count::new(1),
            counted,
            history,
            zeroed_at: AtomicU32::new(0),
            links: Mutex::new(links),
        });
        if live {
            registry::check_open(session, &node);
            registry::insert(node.clone());
        }
        let tag = registry::memory_tag(node.id);
        Handle { node, tag }
    }

    fn id(&self) -> ObjectId {
        ObjectId(self.node.id)
    }

    fn opened_from(&self, parent: ObjectId) {
        self.node.links.lock().opened_from = Some(parent.0);
    }

    fn hold(&self, other: ObjectId) {
        // The list may grow: mapileak's own memory, never the provider's.
        let _quiet = Quiet::new();
        self.node.links.lock().holds.push(other.0);
    }

    fn release_hold(&self, other: ObjectId) {
        let _quiet = Quiet::new();
        let mut links = self.node.links.lock();
        if let Some(i) = links.holds.iter().rposition(|&h| h == other.0) {
            links.holds.swap_remove(i);
        }
    }
}

macro_rules! shared_methods {
    () => {
        /// Its id, for children to name it as parent or holder.
        pub fn id(&self) -> ObjectId {
            #[cfg(any(debug_assertions, feature = "force"))]
            return self.handle.id();
            #[cfg(not(any(debug_assertions, feature = "force")))]
            ObjectId::NONE
        }

        /// Records the MAPI parent it was opened from (the folder of a
        /// message): shown in the report, does not decide blame.
        pub fn opened_from(self, parent: ObjectId) -> Self {
            #[cfg(any(debug_assertions, feature = "force"))]
            self.handle.opened_from(parent);
            self
        }

        /// [`opened_from`](Self::opened_from), after creation.
        pub fn set_opened_from(&self, parent: ObjectId) {
            #[cfg(any(debug_assertions, feature = "force"))]
            self.handle.opened_from(parent);
        }

        /// Records that it keeps a reference on `other` from creation on (a
        /// message holding its folder). A leaked holder makes what it holds
        /// an indirect leak, shown under it.
        pub fn holding(self, other: ObjectId) -> Self {
            #[cfg(any(debug_assertions, feature = "force"))]
            self.handle.hold(other);
            self
        }

        /// Records that it now keeps a reference on `other` (a message
        /// caching an attachment). Once per reference taken.
        pub fn hold(&self, other: ObjectId) {
            #[cfg(any(debug_assertions, feature = "force"))]
            self.handle.hold(other);
        }

        /// Records that it let go of one reference on `other`.
        pub fn release_hold(&self, other: ObjectId) {
            #[cfg(any(debug_assertions, feature = "force"))]
            self.handle.release_hold(other);
        }
    };
}

/// A guard that tracks the object it is embedded in, from construction to
/// `Drop`.
///
/// ```
/// use mapileak::{kinds, Tracked};
/// struct ContentsTable { _track: Tracked /* , rows... */ }
/// let table = ContentsTable { _track: Tracked::new(&kinds::IMAPI_TABLE, "contents of Inbox") };
/// drop(table); // no longer alive: not a leak
/// ```
///
/// Zero-sized without the instrumentation.
pub struct Tracked {
    #[cfg(any(debug_assertions, feature = "force"))]
    handle: Handle,
}

impl Tracked {
    /// Tracks an object of `kind` in the current session (see
    /// [`Session::enter`]); outside any session it is reported at process end.
    pub fn new(kind: &'static Kind, label: impl Into<String>) -> Tracked {
        Tracked {
            #[cfg(any(debug_assertions, feature = "force"))]
            handle: Handle::new(None, kind, label.into(), false),
        }
    }

    /// Tracks an object of `kind` in `session`.
    pub fn in_session(session: Session, kind: &'static Kind, label: impl Into<String>) -> Tracked {
        Tracked {
            #[cfg(any(debug_assertions, feature = "force"))]
            handle: Handle::new(Some(session), kind, label.into(), false),
        }
    }

    shared_methods!();
}

#[cfg(any(debug_assertions, feature = "force"))]
impl Drop for Tracked {
    fn drop(&mut self) {
        registry::remove(self.handle.node.id);
    }
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Tracked");
        #[cfg(any(debug_assertions, feature = "force"))]
        d.field("id", &self.handle.node.id)
            .field("kind", &self.handle.node.kind.name())
            .field("label", &self.handle.node.label);
        d.finish()
    }
}

/// A COM reference count that records what happens to it. Starts at 1.
///
/// The provider's `AddRef` returns [`RefCount::add_ref`], its `Release`
/// returns [`RefCount::release`] and destroys the object when that is 0. A
/// `Release` at 0 does not wrap: it stays 0 and records an `over-release`
/// finding with the caller's stack.
///
/// Without the instrumentation it is a plain count of `u32` size, which
/// still never goes below 0.
pub struct RefCount {
    #[cfg(any(debug_assertions, feature = "force"))]
    handle: Handle,
    #[cfg(not(any(debug_assertions, feature = "force")))]
    count: AtomicU32,
}

impl RefCount {
    /// A count of 1 for a new object of `kind` in the current session.
    pub fn new(kind: &'static Kind, label: impl Into<String>) -> RefCount {
        RefCount {
            #[cfg(any(debug_assertions, feature = "force"))]
            handle: Handle::new(None, kind, label.into(), true),
            #[cfg(not(any(debug_assertions, feature = "force")))]
            count: AtomicU32::new(1),
        }
    }

    /// A count of 1 for a new object of `kind` in `session`.
    pub fn in_session(session: Session, kind: &'static Kind, label: impl Into<String>) -> RefCount {
        RefCount {
            #[cfg(any(debug_assertions, feature = "force"))]
            handle: Handle::new(Some(session), kind, label.into(), true),
            #[cfg(not(any(debug_assertions, feature = "force")))]
            count: AtomicU32::new(1),
        }
    }

    shared_methods!();

    /// `IUnknown::AddRef`: returns the new count.
    #[inline]
    pub fn add_ref(&self) -> u32 {
        #[cfg(not(any(debug_assertions, feature = "force")))]
        return self.count.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        #[cfg(any(debug_assertions, feature = "force"))]
        let node = &*self.handle.node;
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            let n = node.refs.add_ref();
            if node.history {
                record(node, RefOp::AddRef);
            }
            n
        }
    }

    /// `IUnknown::Release`: returns the new count; at 0 the caller destroys
    /// the object. Never below 0.
    #[inline]
    pub fn release(&self) -> u32 {
        self.release_final().0
    }

    /// [`release`](Self::release), and whether this Release took the count
    /// from 1 to 0: the caller destroys the object exactly then. A Release
    /// that found the count at 0 (an over-release, through a pointer kept
    /// after the object was destroyed) returns `(0, false)`: destroying
    /// again would run the destructor twice.
    #[inline]
    pub fn release_final(&self) -> (u32, bool) {
        #[cfg(not(any(debug_assertions, feature = "force")))]
        return match self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        {
            Ok(n) => (n - 1, n == 1),
            Err(_) => (0, false),
        };
        #[cfg(any(debug_assertions, feature = "force"))]
        let node = &*self.handle.node;
        #[cfg(any(debug_assertions, feature = "force"))]
        match node.refs.release() {
            Release::Zeroed => {
                final_release(node);
                registry::remove(node.id);
                (0, true)
            }
            Release::Released(n) => {
                if node.history {
                    record(node, RefOp::Release);
                }
                (n, false)
            }
            Release::Over => {
                over_release(node);
                (0, false)
            }
        }
    }

    /// The object this count belongs to was destroyed, while the count
    /// itself stays reachable (a C++ object's memory that mapileak keeps a
    /// while, see the C ABI): it is no longer alive, and any later Release
    /// through a stale pointer finds the count at 0, an `over-release`.
    /// Call [`gone`](Self::gone) once its memory is freed too.
    pub fn destroyed(&self) {
        #[cfg(not(any(debug_assertions, feature = "force")))]
        self.count.store(0, Ordering::Release);
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            self.handle.node.refs.clear();
            registry::remove(self.handle.node.id);
        }
    }

    /// The object's memory is freed too (after [`destroyed`](Self::destroyed);
    /// dropping the count does both). A logon object's end (`IMSLogon`,
    /// `IABLogon`, `IXPLogon`, ...; the last one of its session) after
    /// Logoff is MAPI's Release of the logon, and a Logoff that came while
    /// it was alive reports now, after the destructor freed the logon's
    /// state, as MAPI runs it. A provider object's end after Shutdown is
    /// MAPI's Release of the provider.
    pub fn gone(&self) {
        #[cfg(any(debug_assertions, feature = "force"))]
        {
            let node = &self.handle.node;
            registry::remove(node.id);
            match node.kind.role() {
                crate::kind::Role::Logon => {
                    crate::session::logon_object_gone(node.session, node.id);
                }
                crate::kind::Role::Provider => crate::lifecycle::provider_object_gone(node.session),
                crate::kind::Role::Object => {}
            }
        }
    }

    /// The current count.
    pub fn count(&self) -> u32 {
        #[cfg(any(debug_assertions, feature = "force"))]
        return self.handle.node.refs.get();
        #[cfg(not(any(debug_assertions, feature = "force")))]
        self.count.load(Ordering::Acquire)
    }
}

#[cfg(any(debug_assertions, feature = "force"))]
#[inline(never)]
fn record(node: &Node, op: RefOp) {
    let _quiet = Quiet::new();
    let stack = stack::capture();
    node.links.lock().push_event(op, stack);
}

/// The Release that took the count to 0: its stack is kept, for the
/// over-release a later Release would be (once per object).
#[cfg(any(debug_assertions, feature = "force"))]
#[inline(never)]
#[cold]
fn final_release(node: &Node) {
    let _quiet = Quiet::new();
    if config::mode() == Mode::Off {
        return;
    }
    let stack = stack::capture();
    node.zeroed_at.store(stack, Ordering::Relaxed);
    if node.history {
        node.links.lock().push_event(RefOp::Release, stack);
    }
}

#[cfg(any(debug_assertions, feature = "force"))]
#[inline(never)]
#[cold]
fn over_release(node: &Node) {
    let _quiet = Quiet::new();
    if config::mode() == Mode::Off {
        return;
    }
    let now = stack::capture();
    if node.history {
        node.links.lock().push_event(RefOp::Release, now);
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
    let mut finding = PendingFinding::error(Rule::OverRelease, message, stack).about(node);
    finding.also = also;
    registry::add_finding(node.session, finding);
}

#[cfg(any(debug_assertions, feature = "force"))]
impl Drop for RefCount {
    fn drop(&mut self) {
        self.gone();
    }
}

impl fmt::Debug for RefCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RefCount");
        #[cfg(any(debug_assertions, feature = "force"))]
        d.field("id", &self.handle.node.id)
            .field("kind", &self.handle.node.kind.name());
        d.field("count", &self.count()).finish()
    }
}

// The promise of release builds.
#[cfg(not(any(debug_assertions, feature = "force")))]
const _: () = {
    assert!(size_of::<Tracked>() == 0);
    assert!(size_of::<RefCount>() == size_of::<u32>());
};

#[cfg(all(test, not(any(debug_assertions, feature = "force"))))]
mod release_tests {
    use super::*;
    use crate::kinds;

    #[test]
    fn refcount_still_counts_and_never_wraps() {
        let rc = RefCount::new(&kinds::IMAPI_STATUS, "status");
        assert_eq!(rc.add_ref(), 2);
        assert_eq!(rc.release(), 1);
        assert_eq!(rc.release(), 0);
        assert_eq!(rc.release(), 0, "over-release must not wrap");
        let rc = RefCount::new(&kinds::IMAPI_STATUS, "status");
        assert_eq!(rc.add_ref(), 2);
        assert_eq!(rc.release_final(), (1, false));
        assert_eq!(rc.release_final(), (0, true));
        assert_eq!(rc.release_final(), (0, false), "only one Release destroys");
        let rc = RefCount::new(&kinds::IMAPI_STATUS, "status");
        rc.destroyed();
        assert_eq!(rc.release_final(), (0, false));
    }
}
