//! `fork` (Unix): a child of a process whose other threads were inside
//! mapileak at the fork has those threads' locks, held, and no thread to
//! release them. So before a `fork` (a `pthread_atfork` prepare handler,
//! registered at the first logon or object) the forking thread takes
//! mapileak's global locks itself, in the order the code nests them: the
//! symbolizer (waiting for threads inside `backtrace::resolve`), the
//! session registry, the findings, the object registry's shards and node
//! cells, the MAPI buffer table, the report directory, the live table's
//! shards. Parent and child release them after. Each object's own lock
//! (its links) is left alone: the child's reports wait for one at most a
//! moment (`context::forked_child`), as process end does, and skip with
//! one line.
#![allow(unsafe_code)]

#[cfg(unix)]
mod handlers {
    use std::sync::Once;

    use crate::backend::{alloc, buffers, env, registry, symbolize};

    extern "C" fn prepare() {
        symbolize::hold_for_fork();
        registry::hold_for_fork();
        buffers::hold_for_fork();
        env::hold_for_fork();
        // Last: nothing may allocate while these are held (the allocator
        // hook takes them).
        alloc::lock_all_for_fork();
    }

    /// What `prepare` took, released in reverse.
    fn release() {
        alloc::unlock_all_after_fork();
        env::release_after_fork();
        buffers::release_after_fork();
        registry::release_after_fork();
        symbolize::release_after_fork();
    }

    extern "C" fn parent() {
        release();
    }

    extern "C" fn child() {
        release();
        crate::backend::context::set_forked_child();
    }

    pub(super) fn register() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            // SAFETY: three `extern "C" fn()` of static lifetime that take
            // no argument and never unwind (they only lock and unlock).
            let _ = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        });
    }
}

/// Registers the handlers (once; nothing on other systems).
pub(crate) fn register() {
    #[cfg(unix)]
    handlers::register();
}
