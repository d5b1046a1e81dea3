//! The two adapters that make a provider's object tracked.
//!
//! - [`Tracked`] is a guard field: put it in the object's struct (a
//!   windows-core `#[implement]` struct included, whose generated
//!   AddRef/Release have no hook). The object is alive from the guard's
//!   construction to its `Drop`.
//! - [`RefCount`] replaces a hand-written COM reference count: the provider's
//!   `AddRef`/`Release` call it and return what it returns. It records every
//!   transition, and a Release at zero becomes an `over-release` finding.

use std::fmt;

use crate::backend::{self, object as imp};
use crate::count::Release;
use crate::kind::Kind;
use crate::{ObjectId, Session};

macro_rules! shared_methods {
    () => {
        /// Its id, for children to name it as parent or holder.
        pub fn id(&self) -> ObjectId {
            ObjectId(self.inner.id())
        }

        /// Records the MAPI parent it was opened from (the folder of a
        /// message): shown in the report, does not decide blame.
        pub fn opened_from(self, parent: ObjectId) -> Self {
            self.inner.opened_from(parent.0);
            self
        }

        /// [`opened_from`](Self::opened_from), after creation.
        pub fn set_opened_from(&self, parent: ObjectId) {
            self.inner.opened_from(parent.0);
        }

        /// Records that it keeps a reference on `other` from creation on (a
        /// message holding its folder). A leaked holder makes what it holds
        /// an indirect leak, shown under it.
        pub fn holding(self, other: ObjectId) -> Self {
            self.inner.hold(other.0);
            self
        }

        /// Records that it now keeps a reference on `other` (a message
        /// caching an attachment). Once per reference taken.
        pub fn hold(&self, other: ObjectId) {
            self.inner.hold(other.0);
        }

        /// Records that it let go of one reference on `other`.
        pub fn release_hold(&self, other: ObjectId) {
            self.inner.release_hold(other.0);
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
    inner: imp::Tracker,
}

impl Tracked {
    /// Tracks an object of `kind` in the current session (see
    /// [`Session::enter`]); outside any session it is reported at process end.
    pub fn new(kind: &'static Kind, label: impl Into<String>) -> Tracked {
        Tracked {
            inner: imp::Tracker::new(None, kind, label),
        }
    }

    /// Tracks an object of `kind` in `session`.
    pub fn in_session(session: Session, kind: &'static Kind, label: impl Into<String>) -> Tracked {
        Tracked {
            inner: imp::Tracker::new(Some(session.id), kind, label),
        }
    }

    shared_methods!();
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Tracked");
        self.inner.describe(&mut d);
        d.finish()
    }
}

/// A COM reference count that records what happens to it. Starts at 1.
///
/// The provider's `AddRef` returns [`RefCount::add_ref`], its `Release`
/// returns [`RefCount::release`] and destroys the object when that is 0. A
/// `Release` at 0 does not wrap: it stays 0 and records an `over-release`
/// finding with the caller's stack. Nor does an `AddRef` at `u32::MAX`.
///
/// Without the instrumentation it is a plain count of `u32` size, with the
/// same transitions (the same state machine, `count.rs`).
pub struct RefCount {
    inner: imp::Counted,
}

impl RefCount {
    /// A count of 1 for a new object of `kind` in the current session.
    pub fn new(kind: &'static Kind, label: impl Into<String>) -> RefCount {
        RefCount {
            inner: imp::Counted::new(None, kind, label),
        }
    }

    /// A count of 1 for a new object of `kind` in `session`.
    pub fn in_session(session: Session, kind: &'static Kind, label: impl Into<String>) -> RefCount {
        RefCount {
            inner: imp::Counted::new(Some(session.id), kind, label),
        }
    }

    shared_methods!();

    /// `IUnknown::AddRef`: returns the new count.
    #[inline]
    pub fn add_ref(&self) -> u32 {
        self.inner.add_ref()
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
        match self.inner.release() {
            Release::Zeroed => (0, true),
            Release::Released(n) => (n, false),
            Release::Over => (0, false),
        }
    }

    /// The object this count belongs to was destroyed, while the count
    /// itself stays reachable (a C++ object's memory that mapileak keeps a
    /// while, see the C ABI): it is no longer alive, and any later Release
    /// through a stale pointer finds the count at 0, an `over-release`.
    /// Call [`gone`](Self::gone) once its memory is freed too.
    pub fn destroyed(&self) {
        self.inner.destroyed();
    }

    /// The object's memory is freed too (after [`destroyed`](Self::destroyed);
    /// dropping the count does both). A logon object's end (`IMSLogon`,
    /// `IABLogon`, `IXPLogon`, ...; the last one of its session) after
    /// Logoff is MAPI's Release of the logon, and a Logoff that came while
    /// it was alive reports now, after the destructor freed the logon's
    /// state, as MAPI runs it. A provider object's end after Shutdown is
    /// MAPI's Release of the provider.
    pub fn gone(&self) {
        self.inner.gone();
    }

    /// The current count.
    pub fn count(&self) -> u32 {
        self.inner.count()
    }
}

impl fmt::Debug for RefCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RefCount");
        self.inner.describe(&mut d);
        d.field("count", &self.count()).finish()
    }
}

// The promise of release builds.
const _: () = assert!(
    backend::LIVE || size_of::<Tracked>() == 0 && size_of::<RefCount>() == size_of::<u32>()
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds;

    #[test]
    fn refcount_never_wraps_and_destroys_once() {
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
