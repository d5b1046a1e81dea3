//! A message store whose host never logs off: mapileak's process-end report
//! (`event: exit`) still says what leaked. Used by the tests.
//!
//! ```text
//! cargo run --example no_logoff -- return          # main returns
//! cargo run --example no_logoff -- exit            # std::process::exit(3)
//! cargo run --example no_logoff -- released-early  # provider released before Shutdown
//! cargo run --example no_logoff -- no-logon         # objects tracked, no logon at all
//! cargo run --example no_logoff -- buffer-no-logon  # a MAPI buffer leaked, no logon or object at all
//! cargo run --example no_logoff -- late-object      # an object made after a clean Logoff
//! cargo run --example no_logoff -- busy             # main returns, 4 threads still in mapileak
//! cargo run --example no_logoff -- held-lock heap   # main returns, a thread holds a lock
//! cargo run --example no_logoff -- subscriber       # a global tracing subscriber, main returns
//! cargo run --example no_logoff -- fork             # forks 50 children while threads work in mapileak
//! cargo run --example no_logoff -- fork-in-first-use WHICH  # forks while a thread is stopped in first-use work
//! cargo run --example no_logoff -- fork-in-thread-local-destructor  # forks from thread-local destructors
//! cargo run --example no_logoff -- writing          # main returns while threads write reports
//! cargo run --example no_logoff -- small-address-space  # every table reservation refused
//! ```
//!
//! `subscriber` installs a global `tracing` subscriber that,
//! as `tracing_subscriber::fmt()` does, formats in a thread-local buffer;
//! used after the thread's thread-locals are destroyed, it aborts the
//! process, as a subscriber's panic does with `panic = "abort"`.
//!
//! `held-lock` takes one of `mapileak::testing::LOCKS` (sessions, objects,
//! heap, buffers, symbolizer): the thread holds it as a thread ended inside
//! mapileak would; process end writes one line instead of waiting.

use mapileak_samples::life::HostSupport;
use mapileak_samples::mapi::{IMAPISupport, IMSProvider, IMsgStore};
use mapileak_samples::{Bug, Sink, store};
use windows_core::Interface;

// Heap blocks too: the logon's are in the process-end report, and the live
// table's locks are among those process end must not wait on.
#[global_allocator]
static ALLOC: mapileak::TrackingAllocator = mapileak::TrackingAllocator::system();

fn main() {
    let how = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "return".to_owned());
    #[cfg(unix)]
    if how == "fork" {
        fork_while_busy();
        return;
    }
    #[cfg(all(unix, feature = "test-hooks"))]
    if how == "fork-in-thread-local-destructor" {
        fork_from_thread_local_destructor();
    }
    #[cfg(all(unix, feature = "test-hooks"))]
    if how == "fork-in-first-use" {
        fork_in_first_use(&std::env::args().nth(2).unwrap_or_default());
    }
    if how == "subscriber" {
        tracing::subscriber::set_global_default(TlsBuffered).expect("no other subscriber");
        tracing::info!("host started");
    }
    if how == "small-address-space" {
        #[cfg(feature = "test-hooks")]
        short_of_address_space();
        #[cfg(not(feature = "test-hooks"))]
        {
            eprintln!(
                "no_logoff: small-address-space needs feature test-hooks (scripts/test.sh turns it on)"
            );
            std::process::exit(2);
        }
        #[allow(unreachable_code)]
        return;
    }
    if how == "no-logon" {
        // A helper object tracked before (or without) any logon.
        std::mem::forget(mapileak::Tracked::new(
            &mapileak::kinds::IMAPI_TABLE,
            "made before any logon",
        ));
        return;
    }
    if how == "buffer-no-logon" {
        // A MAPI buffer allocated outside any logon, by a process that never
        // logs on or makes an object, and never freed.
        let buffers = mapileak::buffers::MapiBuffers::in_process();
        let _ = buffers.allocate_buffer(40);
        return;
    }
    if how == "late-object" {
        // A logon that logged off clean (and so left the registry), then an
        // object made on it anyway.
        let s = mapileak::Session::logon(mapileak::ProviderKind::MessageStore, "logged off clean");
        assert!(s.ms_logoff().report.is_clean());
        std::mem::forget(mapileak::Tracked::in_session(
            s,
            &mapileak::kinds::IMESSAGE,
            "made after Logoff",
        ));
        return;
    }
    let provider: IMSProvider =
        store::ms_provider_init("never logged off", Bug::None, Sink::default());
    if how == "released-early" {
        // MAPI's final Release of the provider, with no Shutdown before it.
        drop(provider);
        return;
    }
    let support: IMAPISupport = HostSupport::default().into();
    let (mut logon, mut store) = (None, None);
    // SAFETY: live interfaces, out pointers to locals.
    unsafe { provider.Logon(support.as_raw(), &mut logon, &mut store) }
        .ok()
        .expect("IMSProvider::Logon");
    let store: IMsgStore = store.expect("store");

    let mut folder = None;
    // SAFETY: as above.
    unsafe { store.OpenRootFolder(&mut folder) }
        .ok()
        .expect("OpenRootFolder");
    // The host forgets everything: no Logoff, no Shutdown.
    std::mem::forget((provider, logon, store, folder, support));
    match how.as_str() {
        "exit" => std::process::exit(3),
        "busy" => busy_threads(),
        "writing" => writing_threads(),
        #[cfg(feature = "test-hooks")]
        "held-lock" => {
            let which = std::env::args().nth(2).unwrap_or_default();
            let (held, is_held) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let known = mapileak::testing::hold_lock(&which, move || {
                    let _ = held.send(());
                });
                assert!(known, "no lock named {which:?}");
            });
            is_held.recv().expect("the lock is held");
        }
        #[cfg(not(feature = "test-hooks"))]
        "held-lock" => {
            eprintln!(
                "no_logoff: held-lock needs feature test-hooks (scripts/test.sh turns it on)"
            );
            std::process::exit(2);
        }
        _ => {}
    }
}

/// A subscriber that formats each event in a thread-local buffer, as
/// `tracing_subscriber::fmt()` does, and writes it to stderr. Reached after
/// the thread's thread-locals are destroyed, it aborts: what a subscriber's
/// "cannot access a Thread Local Storage value" panic does under
/// `panic = "abort"`.
struct TlsBuffered;

thread_local! {
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl tracing::Subscriber for TlsBuffered {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message<'a>(&'a mut String);
        impl tracing::field::Visit for Message<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    use std::fmt::Write;
                    let _ = write!(self.0, "{value:?}");
                }
            }
        }
        let written = LINE.try_with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            event.record(&mut Message(&mut line));
            eprintln!("subscriber: {line}");
        });
        if written.is_err() {
            eprintln!("subscriber: called after its thread-locals were destroyed");
            std::process::abort();
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Forks 50 children while four threads work in mapileak (objects, logons,
/// Logoffs that symbolize, MAPI buffers, heap blocks). Each child logs on,
/// makes a leak, allocates a buffer and logs off (a report, symbolized),
/// then exits. Prints `forked N hung H` (a child not done within 30
/// seconds is killed and counted hung) and exits.
#[cfg(unix)]
fn fork_while_busy() {
    busy_in_logoffs();
    let mut hung = 0;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(2));
        if !fork_one_child() {
            hung += 1;
        }
    }
    forked_end(50, hung);
}

/// As `fork_while_busy`, but each `fork` is made by a thread-local's
/// destructor, after mapileak's thread-locals on that thread are destroyed
/// (a thread that forked once before registered them last, so they go
/// first), while another thread keeps taking the session registry's lock
/// for a millisecond at a time: the handlers must hold mapileak's locks
/// across that `fork` too, or the child finds that lock held for good. 10
/// threads fork twice each (once plainly, once at their end). Prints
/// `forked N hung H` and exits.
#[cfg(all(unix, feature = "test-hooks"))]
fn fork_from_thread_local_destructor() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;
    static HUNG: AtomicU32 = AtomicU32::new(0);
    struct ForkAtExit;
    impl Drop for ForkAtExit {
        fn drop(&mut self) {
            if !fork_one_child() {
                HUNG.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    thread_local! {
        static FORK_AT_EXIT: ForkAtExit = const { ForkAtExit };
    }
    busy_in_logoffs();
    std::thread::spawn(|| {
        loop {
            mapileak::testing::hold_lock_for("sessions", Duration::from_millis(1));
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    for _ in 0..10 {
        std::thread::spawn(|| {
            FORK_AT_EXIT.with(|_| {});
            if !fork_one_child() {
                HUNG.fetch_add(1, Ordering::Relaxed);
            }
        })
        .join()
        .expect("the forking thread");
    }
    forked_end(20, HUNG.load(Ordering::Relaxed));
}

/// Starts four threads that work in mapileak for good (objects, logons,
/// Logoffs that symbolize, MAPI buffers, heap blocks), and returns once
/// they have begun.
#[cfg(unix)]
fn busy_in_logoffs() {
    let started = std::sync::Arc::new(std::sync::Barrier::new(5));
    for n in 0..4 {
        let started = started.clone();
        std::thread::spawn(move || {
            let buffers = mapileak::buffers::MapiBuffers::in_process();
            started.wait();
            for round in 0u64.. {
                let session = mapileak::Session::logon(
                    mapileak::ProviderKind::Transport,
                    format!("busy {n}.{round}"),
                );
                let scope = session.enter();
                let object = mapileak::RefCount::new(&mapileak::kinds::IMAPI_TABLE, "busy");
                object.add_ref();
                if let Ok(p) = buffers.allocate_buffer(32) {
                    // SAFETY: a root buffer from this value, freed once.
                    unsafe { buffers.free_buffer(p) };
                }
                let block = vec![round; 16];
                drop(scope);
                // Every fourth round leaves the object: a report to symbolize.
                if round % 4 != 0 {
                    object.release();
                    drop(object);
                } else {
                    std::mem::forget(object);
                }
                drop(block);
                let _ = session.transport_logoff();
            }
        });
    }
    started.wait();
}

/// A thread stops for good inside mapileak's first-use work (`which`, one
/// of `mapileak::testing::FIRST_USES`), as a thread is in a child forked
/// while it did that work; then one child is forked, which must do the work
/// itself. Prints `forked 1 hung H` and exits.
#[cfg(all(unix, feature = "test-hooks"))]
fn fork_in_first_use(which: &str) {
    let (held, is_held) = std::sync::mpsc::channel();
    let which = which.to_owned();
    std::thread::spawn(move || {
        let known = mapileak::testing::hold_first_use(&which, move || {
            let _ = held.send(());
        });
        assert!(known, "no first-use work named {which:?}");
    });
    is_held.recv().expect("the first-use work is begun");
    let hung = u32::from(!fork_one_child());
    forked_end(1, hung);
}

/// Forks a child that logs on, makes a leak, allocates a buffer and logs
/// off, and waits for it: `false` when it failed, or was not done within
/// 30 seconds (it is then killed: a child waiting on a lock waits for good;
/// a loaded machine is slow, not that slow).
#[cfg(unix)]
fn fork_one_child() -> bool {
    // SAFETY: fork; the child calls only what it needs and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let buffers = mapileak::buffers::MapiBuffers::in_process();
        let session =
            mapileak::Session::logon(mapileak::ProviderKind::MessageStore, "forked child");
        std::mem::forget(mapileak::Tracked::in_session(
            session,
            &mapileak::kinds::IMAPI_TABLE,
            "made in the child",
        ));
        let ok = buffers.allocate_buffer(64).is_ok();
        let report = session.ms_logoff().report;
        let code = if ok && report.summary.leaked_objects == 1 {
            0
        } else {
            1
        };
        // SAFETY: ends the child at once, running nothing of the parent's.
        unsafe { libc::_exit(code) };
    }
    let start = std::time::Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: our own child, a valid status pointer.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                eprintln!("fork: child failed with status {status:#x}");
                return false;
            }
            return true;
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            eprintln!("fork: child {pid} not done in 30 seconds; its stacks, then killed:");
            // Where it waits, when gdb is there (best effort: a diagnosis).
            // No symbol downloads, no questions: it ends by itself.
            let _ = std::process::Command::new("gdb")
                .args(["-batch", "-iex", "set debuginfod enabled off", "-p"])
                .arg(pid.to_string())
                .args(["-ex", "thread apply all bt"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::from(std::io::stderr()))
                .status();
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Prints `forked N hung H` and ends the process at once.
#[cfg(unix)]
fn forked_end(forked: u32, hung: u32) -> ! {
    println!("forked {forked} hung {hung}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // Without the process-end reports of the other threads' logons.
    // SAFETY: ends the process at once; nothing is left to run.
    unsafe { libc::_exit(0) };
}

/// Threads that keep logging off sessions with many leaks (each report
/// takes a while to write) while `main` returns.
fn writing_threads() {
    let started = std::sync::Arc::new(std::sync::Barrier::new(3));
    for n in 0..2 {
        let started = started.clone();
        std::thread::spawn(move || {
            started.wait();
            for round in 0u64.. {
                let session = mapileak::Session::logon(
                    mapileak::ProviderKind::AddressBook,
                    format!("writing {n}.{round}"),
                );
                for i in 0..2_000 {
                    std::mem::forget(mapileak::Tracked::in_session(
                        session,
                        &mapileak::kinds::IMAPI_TABLE,
                        format!("leak {i}"),
                    ));
                }
                let _ = session.ab_logoff();
            }
        });
    }
    started.wait();
    std::thread::sleep(std::time::Duration::from_millis(300));
}

/// Threads that keep calling into mapileak (objects, heap blocks, MAPI
/// buffers, sessions) while `main` returns and the process ends.
fn busy_threads() {
    let started = std::sync::Arc::new(std::sync::Barrier::new(5));
    for n in 0..4 {
        let started = started.clone();
        std::thread::spawn(move || {
            let buffers = mapileak::buffers::MapiBuffers::in_process();
            started.wait();
            for round in 0u64.. {
                let object = mapileak::RefCount::new(&mapileak::kinds::IMAPI_TABLE, "busy");
                object.add_ref();
                object.release();
                object.release();
                let session = mapileak::Session::logon(
                    mapileak::ProviderKind::Transport,
                    format!("busy {n}.{round}"),
                );
                let scope = session.enter();
                let block = vec![round; 16];
                if let Ok(p) = buffers.allocate_buffer(32) {
                    // SAFETY: a root buffer from this value, freed once.
                    unsafe { buffers.free_buffer(p) };
                }
                drop(block);
                drop(scope);
                // Never logged off: no report file per round.
                drop(object);
            }
        });
    }
    started.wait();
    std::thread::sleep(std::time::Duration::from_millis(50));
}

/// A 32-bit host short of address space: the system refuses every table
/// mapileak reserves (the stack interner, the live table). The provider
/// goes on; its Logoff still names the leaked object, without frames, and
/// says what was lost. Prints the report's counts and the heap counters.
#[cfg(feature = "test-hooks")]
fn short_of_address_space() {
    mapileak::testing::refuse_reservations();
    let s = mapileak::Session::logon(
        mapileak::ProviderKind::MessageStore,
        "short of address space",
    );
    let scope = s.enter();
    let before = mapileak::heap_stats().allocs;
    std::mem::forget(vec![7u8; 100]);
    std::mem::forget(mapileak::Tracked::in_session(
        s,
        &mapileak::kinds::IMAPI_TABLE,
        "leaked table",
    ));
    let allocs = mapileak::heap_stats().allocs - before;
    drop(scope);
    let r = s.ms_logoff().report;
    let frames: usize = r
        .objects
        .iter()
        .filter_map(|o| r.stack(o.created))
        .map(|st| st.frames.len())
        .sum();
    println!(
        "objects={} frames={frames} stacks_missing={} tables_refused={} heap_untracked={} allocs_counted={allocs}",
        r.objects
            .iter()
            .map(|o| o.kind.as_str())
            .collect::<Vec<_>>()
            .join(","),
        r.summary.stacks_missing,
        r.summary.tables_refused.join(","),
        r.summary.heap_untracked,
    );
}
