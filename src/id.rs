//! [`ObjectId`]: one type in every build, its number there only when the
//! instrumentation is (zero-sized otherwise).

use std::fmt;

use crate::backend::{self, object as imp};

/// Names a tracked object; `Copy`, so a child can record its parent.
/// Zero-sized in a build without the instrumentation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub(crate) backend::Id);

// The promise of release builds.
const _: () = assert!(backend::LIVE || size_of::<ObjectId>() == 0);

impl ObjectId {
    /// The number the report shows as the object's `id` (0 without the
    /// instrumentation).
    pub fn get(self) -> u64 {
        backend::number(self.0)
    }

    /// The object a report's `id` (or a finding's `object`) names, if it is
    /// still alive in this process (never, without the instrumentation).
    pub fn from_report(id: u64) -> Option<ObjectId> {
        imp::alive(id).map(ObjectId)
    }

    /// A word for an object to keep in its own memory, so a report counts
    /// the heap block holding it as the object's (not as a separate heap
    /// leak), and a block of an object that is still expected alive at
    /// Logoff (the logon's own) as no leak at all. `Tracked` and `RefCount`
    /// carry it already; a C or C++ object whose count lives elsewhere (the
    /// C ABI's handle) stores it in a field. 0 without the instrumentation.
    pub fn memory_tag(self) -> u64 {
        imp::memory_tag(self.0)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.get())
    }
}
