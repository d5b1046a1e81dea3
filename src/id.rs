//! [`ObjectId`]: one type in every build, its number there only when the
//! instrumentation is (zero-sized otherwise).

use std::fmt;

/// Names a tracked object; `Copy`, so a child can record its parent.
/// Zero-sized in a build without the instrumentation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(#[cfg(any(debug_assertions, feature = "force"))] pub(crate) u64);

// The promise of release builds.
#[cfg(not(any(debug_assertions, feature = "force")))]
const _: () = assert!(size_of::<ObjectId>() == 0);

impl ObjectId {
    /// The id of no object (what the release build's objects return).
    #[cfg_attr(any(debug_assertions, feature = "force"), allow(dead_code))]
    pub(crate) const NONE: ObjectId = ObjectId(
        #[cfg(any(debug_assertions, feature = "force"))]
        0,
    );

    /// The number the report shows as the object's `id` (0 without the
    /// instrumentation).
    pub fn get(self) -> u64 {
        #[cfg(any(debug_assertions, feature = "force"))]
        return self.0;
        #[cfg(not(any(debug_assertions, feature = "force")))]
        0
    }

    /// The object a report's `id` (or a finding's `object`) names, if it is
    /// still alive in this process (never, without the instrumentation).
    pub fn from_report(id: u64) -> Option<ObjectId> {
        #[cfg(any(debug_assertions, feature = "force"))]
        return crate::registry::is_live(id).then_some(ObjectId(id));
        #[cfg(not(any(debug_assertions, feature = "force")))]
        {
            let _ = id;
            None
        }
    }

    /// A word for an object to keep in its own memory, so a report counts
    /// the heap block holding it as the object's (not as a separate heap
    /// leak), and a block of an object that is still expected alive at
    /// Logoff (the logon's own) as no leak at all. `Tracked` and `RefCount`
    /// carry it already; a C or C++ object whose count lives elsewhere (the
    /// C ABI's handle) stores it in a field. 0 without the instrumentation.
    pub fn memory_tag(self) -> u64 {
        #[cfg(any(debug_assertions, feature = "force"))]
        return crate::registry::memory_tag(self.0);
        #[cfg(not(any(debug_assertions, feature = "force")))]
        0
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.get())
    }
}
