//! Test hooks (feature `test-hooks`, which no provider build turns on).
//! Fault injection for the process-end tests: a thread that holds one of
//! mapileak's locks for good, as a thread `ExitProcess` ended inside
//! mapileak does; and a look into the session registry. Not part of the API (hidden from the documentation);
//! `examples/no_logoff.rs` and the C ABI's provider test use it.

/// The locks [`hold_lock`] can hold.
pub const LOCKS: [&str; 5] = ["sessions", "objects", "heap", "buffers", "symbolizer"];

/// On the calling thread: takes the lock `which` names (one of [`LOCKS`]),
/// calls `held`, then parks forever, the lock held. `false` at once for an
/// unknown name.
pub fn hold_lock(which: &str, held: impl FnOnce()) -> bool {
    with_lock(which, move || {
        held();
        loop {
            std::thread::park();
        }
    })
}

/// On the calling thread: takes the lock `which` names (one of [`LOCKS`]),
/// holds it for `wait` and releases it. `false` at once for an unknown name.
pub fn hold_lock_for(which: &str, wait: std::time::Duration) -> bool {
    with_lock(which, move || std::thread::sleep(wait))
}

/// Runs `f` holding the lock `which` names; `false` for an unknown name.
fn with_lock(which: &str, f: impl FnOnce()) -> bool {
    match which {
        "sessions" => crate::backend::registry::with_sessions_locked(f),
        "objects" => crate::backend::registry::with_objects_locked(f),
        "heap" => crate::backend::alloc::with_table_locked(f),
        "buffers" => crate::backend::buffers::with_table_locked(f),
        "symbolizer" => crate::backend::symbolize::as_if_resolving(f),
        _ => return false,
    }
    true
}

/// Whether the registry still keeps session (or provider) `id`: a logon
/// that logged off clean has left it.
pub fn in_registry(id: u64) -> bool {
    crate::backend::registry::is_open(id)
}

/// Whether the calling thread's heap counters are the slot threads share
/// (past the slots free at once), updated with locked instructions.
pub fn counters_shared() -> bool {
    crate::backend::alloc::counters_shared()
}

/// From now on the system "refuses" every table mapileak reserves, as in a
/// 32-bit host short of address space: call it before the first logon.
pub fn refuse_reservations() {
    crate::backend::vmem::REFUSE_ALL.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The first-use work [`hold_first_use`] can stop in: reading the
/// environment, registering the process-end and `fork` hooks.
pub const FIRST_USES: [&str; 2] = ["environment", "process hooks"];

/// On the calling thread: begins mapileak's first-use work (what the first
/// logon or object does), and inside the one `which` names (one of
/// [`FIRST_USES`]) calls `held`, then parks forever, the work half done: as
/// a thread is in a child its process forked meanwhile. `false` at once
/// for an unknown name.
pub fn hold_first_use(which: &str, held: impl FnOnce() + 'static) -> bool {
    let Some(&name) = FIRST_USES.iter().find(|&&n| n == which) else {
        return false;
    };
    crate::backend::once::hooks::park_in(name, Box::new(held));
    crate::backend::env::init();
    crate::backend::exit::register();
    // (Only when the work was done before: `held` was then never called.)
    true
}
