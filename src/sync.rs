//! mapileak's locks: `std`'s, which a `fork` child can use, with a bounded
//! wait on top.
//!
//! `parking_lot` keeps the queues of waiting threads in a global table of
//! buckets, each behind a lock of its own that a thread takes to park, to
//! wake a waiter, and to unlock a lock others wait on. A `fork` copies only
//! the forking thread: a bucket lock some other thread held at that moment
//! stays held in the child for good, and the child's first lock operation
//! that needs that bucket waits forever — releasing the locks the fork
//! handlers took (other threads were queued on them), or waiting out a lock
//! a thread of the parent died holding. `std`'s locks keep their state in
//! the lock's own word and wake with a system call (a futex on Linux,
//! the system's own wait on Windows), so there is nothing shared to be left held,
//! and they never allocate.
//!
//! ```text
//!  lock()            std: spin, then sleep on the lock's own word
//!  try_lock_for(d)   try ─► spin ─► yield ─► sleep 20 µs, 40 µs, ... 1 ms,
//!                    trying between, until d has passed: never parks in a
//!                    table, so a child can wait out a dead thread's lock
//! ```
//!
//! A panic while a lock is held (none is expected: mapileak catches its
//! own at every boundary) does not poison it here: the data is used as it
//! is, as with `parking_lot`.

use std::sync::{PoisonError, TryLockError};
use std::time::{Duration, Instant};

pub use std::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};

/// A mutual-exclusion lock (`std::sync::Mutex`, never poisoned).
#[derive(Default)]
pub struct Mutex<T: ?Sized>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Self {
        Mutex(std::sync::Mutex::new(value))
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Waits for the lock.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock, if it is free now.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// The lock, if it comes free within `wait`.
    pub fn try_lock_for(&self, wait: Duration) -> Option<MutexGuard<'_, T>> {
        within(wait, || self.try_lock())
    }
}

/// A reader-writer lock (`std::sync::RwLock`, never poisoned).
#[derive(Default)]
pub struct RwLock<T: ?Sized>(std::sync::RwLock<T>);

impl<T> RwLock<T> {
    pub const fn new(value: T) -> Self {
        RwLock(std::sync::RwLock::new(value))
    }
}

impl<T: ?Sized> RwLock<T> {
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where a `fork` prepare handler keeps the guards it took until the
/// release handlers (parent's and child's) drop them. A static, not a
/// thread-local: a thread whose thread-locals are already destroyed (a
/// `fork` from a thread-local's destructor) could not keep them there, and
/// its locks would be free across the `fork`, the gap the handlers close.
pub struct ForkHeld<T>(std::cell::UnsafeCell<Option<T>>);

// SAFETY: the slot is only touched through `keep` and `take`, whose callers
// hold the locks whose guards it keeps (see there): one thread at a time.
#[allow(unsafe_code)]
unsafe impl<T> Sync for ForkHeld<T> {}

impl<T> ForkHeld<T> {
    pub const fn new() -> Self {
        ForkHeld(std::cell::UnsafeCell::new(None))
    }

    /// Keeps `guards` until [`ForkHeld::take`].
    ///
    /// # Safety
    ///
    /// `guards` are guards of locks the calling thread has just taken, and
    /// every caller of `keep` and `take` on this slot takes those locks
    /// first (a `fork` prepare handler): no other thread is in the slot.
    #[allow(unsafe_code)]
    pub unsafe fn keep(&self, guards: T) {
        // SAFETY: the caller's promise: this thread alone is in the slot.
        let old = unsafe { (*self.0.get()).replace(guards) };
        drop(old);
    }

    /// What [`ForkHeld::keep`] kept, to be dropped (releasing the locks).
    ///
    /// # Safety
    ///
    /// Called by the thread that kept them (or its copy in a `fork` child),
    /// still holding them: no other thread is in the slot.
    #[allow(unsafe_code)]
    pub unsafe fn take(&self) -> Option<T> {
        // SAFETY: the caller's promise, as in `keep`.
        unsafe { (*self.0.get()).take() }
    }
}

impl<T> Default for ForkHeld<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Tries `take` until it succeeds or `wait` has passed, backing off from
/// spinning to short sleeps.
fn within<G>(wait: Duration, mut take: impl FnMut() -> Option<G>) -> Option<G> {
    if let Some(got) = take() {
        return Some(got);
    }
    let start = Instant::now();
    let mut round = 0u32;
    let mut nap = Duration::from_micros(20);
    loop {
        match round {
            0..64 => std::hint::spin_loop(),
            64..80 => std::thread::yield_now(),
            _ => {
                let left = wait.saturating_sub(start.elapsed());
                std::thread::sleep(nap.min(left));
                nap = (nap * 2).min(Duration::from_millis(1));
            }
        }
        round = round.saturating_add(1);
        if let Some(got) = take() {
            return Some(got);
        }
        if start.elapsed() >= wait {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_wait_gives_up_on_a_held_lock_and_gets_one_released_meanwhile() {
        let m = Mutex::new(1);
        let held = m.lock();
        assert!(m.try_lock().is_none());
        assert!(m.try_lock_for(Duration::from_millis(5)).is_none());
        drop(held);
        assert_eq!(*m.try_lock_for(Duration::ZERO).unwrap(), 1);

        let m = std::sync::Arc::new(Mutex::new(0));
        let held = m.lock();
        let waiter = {
            let m = m.clone();
            std::thread::spawn(move || m.try_lock_for(Duration::from_secs(30)).map(|g| *g))
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        assert_eq!(waiter.join().unwrap(), Some(0));
    }

    #[test]
    fn a_panic_while_held_does_not_poison() {
        let m = std::sync::Arc::new(Mutex::new(7));
        let r = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = r.lock();
            panic!("inside");
        })
        .join();
        assert_eq!(*m.lock(), 7);
        assert_eq!(m.try_lock().map(|g| *g), Some(7));
        let l = RwLock::new(());
        drop(l.read());
        drop(l.write());
    }
}
