//! `fork` (Unix): a child of a process whose other threads were inside
//! mapileak at the fork has those threads' locks, held, and no thread to
//! release them. So before a `fork` (a `pthread_atfork` prepare handler,
//! registered at the first logon, object or `MapiBuffers`) the forking
//! thread takes mapileak's global locks itself, in the order the code nests
//! them: the symbolizer (waiting for threads inside `backtrace::resolve`),
//! the session registry, the findings, the object registry's shards and
//! node cells, the MAPI buffer table, the report directory, the kinds whose
//! history was asked for by name, the live table's shards. Parent and child
//! release them after. Each object's own lock (its links) is left alone:
//! the child's reports wait for one at most a moment
//! (`context::forked_child`), as process end does, and skip with one line.
//! The first-use work itself (`once`) is finished by a child whose parent's
//! thread was in the middle of it.
#![allow(unsafe_code)]

#[cfg(unix)]
mod handlers {
    use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

    use crate::backend::{alloc, buffers, env, registry, symbolize};

    /// Locks of a caller's own (the C ABI's), taken before mapileak's and
    /// released after them: set once, never freed.
    static OUTER: AtomicPtr<Hooks> = AtomicPtr::new(std::ptr::null_mut());

    /// A caller's prepare and release.
    type Hooks = (fn(), fn());

    fn outer() -> Option<&'static Hooks> {
        // SAFETY: null, or a pointer of `Box::leak` that is never freed
        // or written again.
        unsafe { OUTER.load(Ordering::Acquire).as_ref() }
    }

    pub(super) fn hold_also(prepare: fn(), release: fn()) {
        if OUTER.load(Ordering::Acquire).is_null() {
            let hooks = Box::into_raw(Box::new((prepare, release)));
            if OUTER
                .compare_exchange(
                    std::ptr::null_mut(),
                    hooks,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                // SAFETY: ours, never published.
                drop(unsafe { Box::from_raw(hooks) });
            }
        }
        register();
    }

    extern "C" fn prepare() {
        if let Some((prepare, _)) = outer() {
            prepare();
        }
        symbolize::hold_for_fork();
        registry::hold_for_fork();
        buffers::hold_for_fork();
        env::hold_for_fork();
        crate::kind::hold_for_fork();
        // Last: nothing may allocate while these are held (the allocator
        // hook takes them).
        alloc::lock_all_for_fork();
    }

    /// What `prepare` took, released in reverse.
    fn release() {
        alloc::unlock_all_after_fork();
        crate::kind::release_after_fork();
        env::release_after_fork();
        buffers::release_after_fork();
        registry::release_after_fork();
        symbolize::release_after_fork();
        if let Some((_, release)) = outer() {
            release();
        }
    }

    extern "C" fn parent() {
        release();
    }

    extern "C" fn child() {
        release();
        crate::backend::context::set_forked_child();
    }

    pub(super) fn register() {
        // Claimed first, then registered: a child forked in between, which
        // takes the first-use work over, must not register the handlers a
        // second time (its next `fork` would take every lock twice). No
        // `Once`: a child would wait for good on its parent's thread.
        static CLAIMED: AtomicBool = AtomicBool::new(false);
        if !CLAIMED.swap(true, Ordering::AcqRel) {
            // SAFETY: three `extern "C" fn()` of static lifetime that take
            // no argument and never unwind (they only lock and unlock).
            let _ = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        }
    }
}

/// Registers the handlers (once; nothing on other systems).
pub(crate) fn register() {
    #[cfg(unix)]
    handlers::register();
}

/// Registers the handlers, and has them take a caller's own locks too:
/// `prepare` runs before mapileak's locks are taken, `release` after they
/// are released (the first caller's pair is kept).
pub(crate) fn hold_also(prepare: fn(), release: fn()) {
    #[cfg(unix)]
    handlers::hold_also(prepare, release);
    #[cfg(not(unix))]
    let _ = (prepare, release);
}
