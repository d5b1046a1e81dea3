//! A COM reference count's transitions, on their own so a model checker can
//! run them: `RefCount` (and its registry node) use [`Count`].
//!
//! ```text
//!   n ──AddRef──► n+1        n>1 ──Release──► n-1 (Released(n-1))
//!   1 ──Release──► 0 (Zeroed: the caller destroys the object)
//!   0 ──Release──► 0 (Over: an over-release, never a wrap)
//! ```
//!
//! Built with `--cfg loom`, the atomic is loom's and the tests below
//! explore every interleaving of racing AddRefs and Releases
//! (`.ci/run`: `RUSTFLAGS="--cfg loom" cargo test -p mapileak --lib loom_tests`).

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, Ordering};

/// What a Release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// The count went down and is this, above 0.
    Released(u32),
    /// This Release took the count from 1 to 0.
    Zeroed,
    /// The count was already 0: nothing changed.
    Over,
}

/// The count itself.
pub(crate) struct Count(AtomicU32);

impl Count {
    pub(crate) fn new(n: u32) -> Count {
        Count(AtomicU32::new(n))
    }

    /// `IUnknown::AddRef`: the new count (saturating, never wrapping).
    #[inline]
    pub(crate) fn add_ref(&self) -> u32 {
        match self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_add(1))
        {
            Ok(n) => n + 1,
            Err(n) => n,
        }
    }

    /// `IUnknown::Release`, never below 0.
    #[inline]
    pub(crate) fn release(&self) -> Release {
        match self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        {
            Ok(1) => Release::Zeroed,
            Ok(n) => Release::Released(n - 1),
            Err(_) => Release::Over,
        }
    }

    pub(crate) fn get(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }

    /// The object is gone: whatever comes later finds the count at 0.
    pub(crate) fn clear(&self) {
        self.0.store(0, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Count, Release};

    #[test]
    fn transitions_as_drawn() {
        let c = Count::new(1);
        assert_eq!(c.add_ref(), 2);
        assert_eq!(c.release(), Release::Released(1));
        assert_eq!(c.release(), Release::Zeroed);
        assert_eq!(c.release(), Release::Over);
        assert_eq!(c.get(), 0, "an over-release does not wrap");
        let full = Count::new(u32::MAX);
        assert_eq!(full.add_ref(), u32::MAX, "nor does an AddRef");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::{Count, Release};
    use loom::sync::Arc;

    /// Two holders each Release once; a third thread AddRefs and Releases:
    /// in every interleaving exactly one Release zeroes the count, none
    /// over-releases, and the count ends at 0.
    #[test]
    fn exactly_one_release_destroys() {
        loom::model(|| {
            let c = Arc::new(Count::new(2));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let c = c.clone();
                    loom::thread::spawn(move || c.release())
                })
                .collect();
            let c3 = c.clone();
            let third = loom::thread::spawn(move || {
                // Borrowing a reference that is still owned by the others
                // may find 0 first: then it is the over-release.
                let after = c3.add_ref();
                (after, c3.release())
            });
            let mut results: Vec<Release> =
                threads.into_iter().map(|t| t.join().unwrap()).collect();
            let (after, r3) = third.join().unwrap();
            results.push(r3);
            let zeroed = results.iter().filter(|r| **r == Release::Zeroed).count();
            let over = results.iter().filter(|r| **r == Release::Over).count();
            assert_eq!(c.get(), 0);
            if after == 1 {
                // The AddRef came after the count reached 0: the object was
                // gone, and two destroys are reported (0->1->0).
                assert_eq!((zeroed, over), (2, 0), "{results:?}");
            } else {
                assert_eq!((zeroed, over), (1, 0), "{results:?}");
            }
        });
    }
}
