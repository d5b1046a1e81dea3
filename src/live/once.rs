//! First-use work that a forked child can finish. `std::sync::Once` makes
//! every other caller wait while one thread runs it; in a child forked in
//! the meantime that thread is not there, and the child would wait for
//! good (the fork handlers cannot help: they are registered by this very
//! work). Here the state names the process whose thread runs it, so a
//! caller in another process (the child) takes the work over.
//!
//! What the work does must be safe to do twice: a child may redo what the
//! parent's thread had half done (see `exit::register` for the two calls
//! that must not be repeated, each claimed by a flag of its own).

use std::sync::atomic::{AtomicU32, Ordering};

/// Not begun.
const NOT_RUN: u32 = 0;
/// Done.
const DONE: u32 = u32::MAX;

/// See the module documentation.
pub(crate) struct Once {
    /// [`NOT_RUN`], [`DONE`], or the id of the process running it.
    state: AtomicU32,
    /// What the work is (the test hooks name it).
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    name: &'static str,
}

impl Once {
    pub(crate) const fn new(name: &'static str) -> Once {
        Once {
            state: AtomicU32::new(NOT_RUN),
            name,
        }
    }

    /// Runs `work` unless it ran; other threads of this process wait for
    /// the one running it. `work` must not call this `Once` again.
    #[inline]
    pub(crate) fn call_once(&self, work: impl FnOnce()) {
        if self.state.load(Ordering::Acquire) != DONE {
            self.run_or_wait(work);
        }
    }

    /// Whether the work was done (in this process or before its fork).
    #[cfg_attr(not(any(windows, test)), allow(dead_code))]
    pub(crate) fn is_completed(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }

    #[cold]
    #[inline(never)]
    fn run_or_wait(&self, work: impl FnOnce()) {
        // (Never 0 or u32::MAX: no system gives a process those ids.)
        let me = std::process::id().clamp(1, DONE - 1);
        let mut waited = 0u32;
        loop {
            match self.state.load(Ordering::Acquire) {
                DONE => return,
                running if running == me => {
                    // A thread of this process is at it: it is short.
                    waited = waited.saturating_add(1);
                    if waited < 64 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                }
                // Not begun, or begun by a thread of the process this one
                // was forked from: that thread is not here.
                seen => {
                    if self
                        .state
                        .compare_exchange(seen, me, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        // A panic in `work` leaves it not begun, for the
                        // next caller (nothing waits for good).
                        let reset = Reset(&self.state);
                        #[cfg(feature = "test-hooks")]
                        hooks::park_if_asked(self.name);
                        work();
                        std::mem::forget(reset);
                        self.state.store(DONE, Ordering::Release);
                        return;
                    }
                }
            }
        }
    }
}

/// Puts the state back to not begun when the work unwinds.
struct Reset<'a>(&'a AtomicU32);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        self.0.store(NOT_RUN, Ordering::Release);
    }
}

/// Fault injection (see `testing::hold_first_use`): the calling thread
/// stops for good inside one first-use work, as a thread is when its
/// process forks while it runs it.
#[cfg(feature = "test-hooks")]
pub(crate) mod hooks {
    use std::cell::RefCell;

    type Held = Box<dyn FnOnce()>;

    thread_local! {
        static PARK_IN: RefCell<Option<(&'static str, Held)>> = const { RefCell::new(None) };
    }

    /// The calling thread is to park inside the work named `name`, after
    /// calling `held`.
    pub(crate) fn park_in(name: &'static str, held: Held) {
        PARK_IN.with(|p| *p.borrow_mut() = Some((name, held)));
    }

    pub(super) fn park_if_asked(name: &str) {
        let asked = PARK_IN
            .try_with(|p| {
                let mut p = p.borrow_mut();
                match p.take() {
                    Some((n, held)) if n == name => Some(held),
                    other => {
                        *p = other;
                        None
                    }
                }
            })
            .ok()
            .flatten();
        if let Some(held) = asked {
            held();
            loop {
                std::thread::park();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn runs_once_across_threads_and_others_see_it_done() {
        static ONCE: Once = Once::new("test");
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    ONCE.call_once(|| {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        RUNS.fetch_add(1, Ordering::Relaxed);
                    });
                    // Whoever returns sees the work done.
                    assert_eq!(RUNS.load(Ordering::Relaxed), 1);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(ONCE.is_completed());
    }

    #[test]
    fn work_begun_by_another_process_is_taken_over() {
        let once = Once::new("test");
        // As a child sees it: begun by its parent's thread, which is not here.
        let parent = std::process::id().wrapping_add(1).clamp(1, DONE - 1);
        once.state.store(parent, Ordering::Relaxed);
        let mut ran = false;
        once.call_once(|| ran = true);
        assert!(ran && once.is_completed());
    }

    #[test]
    fn work_that_unwinds_can_run_again() {
        let once = Once::new("test");
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            once.call_once(|| panic!("work failed"));
        }));
        assert!(failed.is_err() && !once.is_completed());
        let mut ran = false;
        once.call_once(|| ran = true);
        assert!(ran);
    }
}
