//! The tracking allocator as this program's global allocator: heap blocks a
//! logon leaks are reported at its Logoff, at the allocating function.

use std::sync::{Arc, Barrier};

use mapileak::reports::Report;
use mapileak::{ProviderKind, Session, Tracked, TrackingAllocator, kinds};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

fn setup() {
    mapileak::set_output_dir(concat!(env!("CARGO_TARGET_TMPDIR"), "/mapileak-heap"));
    quiet::keep_process_end_traces_out_of_the_log();
}

#[path = "support/quiet.rs"]
mod quiet;
#[path = "support/start.rs"]
mod start;

use start::Start as _;

/// `(function the site names, blocks, bytes)` for each heap site.
fn sites(r: &Report) -> Vec<(String, u64, u64)> {
    let mut out: Vec<_> = r
        .heap
        .iter()
        .map(|h| {
            let top = r
                .stack(h.stack)
                .and_then(|s| s.top_frame())
                .map(|f| f.function.clone())
                .unwrap_or_default();
            (top, h.blocks, h.bytes)
        })
        .collect();
    out.sort();
    out
}

#[inline(never)]
fn leak_vec() {
    let v: Vec<u32> = Vec::with_capacity(100);
    std::mem::forget(v);
}

#[inline(never)]
fn leak_string() {
    let s = String::with_capacity(37);
    std::mem::forget(s);
}

#[inline(never)]
fn leak_box() {
    Box::leak(Box::new([7u8; 64]));
}

#[test]
fn leaked_vec_string_and_box_are_reported_at_their_site() {
    setup();
    let session = Session::logon(ProviderKind::MessageStore, "heap");
    {
        let _scope = session.enter();
        leak_vec();
        leak_string();
        leak_box();
        // Freed in scope: not a leak.
        drop(vec![0u8; 500]);
    }
    leak_vec(); // outside the scope: not attributed to the session
    let r = session.ms_logoff().report;
    assert_eq!(
        sites(&r),
        [
            ("heap::leak_box".to_owned(), 1, 64),
            ("heap::leak_string".to_owned(), 1, 37),
            ("heap::leak_vec".to_owned(), 1, 400)
        ],
        "{:#?}",
        r.heap
    );
    assert_eq!((r.summary.heap_blocks, r.summary.heap_bytes), (3, 501));
    let vec_site = r.heap.iter().find(|h| h.bytes == 400).unwrap();
    let frame = r.stack(vec_site.stack).unwrap().top_frame().unwrap();
    assert!(
        frame
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("heap.rs"))
            && frame.line.is_some(),
        "{frame:?}"
    );
}

#[inline(never)]
fn allocate_message_body() -> Vec<u8> {
    vec![1u8; 300]
}

#[test]
fn blocks_freed_on_another_thread_are_not_reported() {
    setup();
    let session = Session::logon(ProviderKind::Transport, "cross-thread");
    let (kept, sent) = {
        let _scope = session.enter();
        (allocate_message_body(), allocate_message_body())
    };
    std::thread::spawn(move || drop(sent)).join().unwrap();
    std::mem::forget(kept);
    let r = session.transport_logoff().report;
    assert_eq!(
        sites(&r),
        [("heap::allocate_message_body".to_owned(), 1, 300)]
    );
}

#[inline(never)]
fn build_row_set() -> Vec<u64> {
    let mut v = Vec::with_capacity(2);
    for i in 0..1000 {
        v.push(i);
    }
    v
}

#[inline(never)]
fn grow_elsewhere(v: &mut Vec<u64>) {
    v.reserve(5000);
}

#[test]
fn realloc_keeps_the_blocks_origin_and_new_size() {
    setup();
    let session = Session::logon(ProviderKind::AddressBook, "realloc");
    let v = {
        let _scope = session.enter();
        let mut v = build_row_set();
        grow_elsewhere(&mut v);
        v
    };
    let bytes = (v.capacity() * 8) as u64;
    std::mem::forget(v);
    let r = session.ab_logoff().report;
    assert_eq!(
        sites(&r),
        [("heap::build_row_set".to_owned(), 1, bytes)],
        "{:#?}",
        r.heap
    );
}

#[test]
fn mapileaks_own_allocations_and_object_labels_are_not_heap_leaks() {
    setup();
    let session = Session::logon(ProviderKind::MessageStore, "objects");
    {
        let _scope = session.enter();
        let folder = Tracked::new(&kinds::IMAPI_FOLDER, "folder");
        for i in 0..50 {
            // Each holds the folder, and the folder holds each: both lists
            // grow (mapileak's memory, not the provider's).
            let m = Tracked::new(&kinds::IMESSAGE, format!("message {i}")).holding(folder.id());
            folder.hold(m.id());
            std::mem::forget(m);
        }
        std::mem::forget(folder);
    }
    let r = session.ms_logoff().report;
    assert_eq!(r.summary.leaked_objects, 51);
    assert!(r.heap.is_empty(), "{:#?}", sites(&r));
}

#[test]
fn eight_threads_allocating_and_freeing_give_exact_totals() {
    setup();
    const THREADS: usize = 8;
    const BLOCKS: usize = 2000;
    let session = Session::logon(ProviderKind::MessageStore, "stress");
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let _scope = session.enter();
                let mut freed_elsewhere = Vec::new();
                for i in 0..BLOCKS {
                    let b = Box::new([t as u64; 4]);
                    match i % 10 {
                        0 => {
                            Box::leak(b);
                        }
                        1 => freed_elsewhere.push(b),
                        _ => drop(b),
                    }
                }
                freed_elsewhere
            })
        })
        .collect();
    // Blocks freed on the main thread, after their threads ended.
    let freed: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // The workload did free a tenth of the blocks elsewhere (so the exact
    // totals below say those frees were seen).
    let freed_elsewhere: usize = freed.iter().map(Vec::len).sum();
    assert_eq!(freed_elsewhere, THREADS * BLOCKS / 10);
    drop(freed);
    let r = session.ms_logoff().report;
    let boxes: u64 = r
        .heap
        .iter()
        .filter(|h| h.bytes % 32 == 0 && h.bytes / h.blocks == 32)
        .map(|h| h.blocks)
        .sum();
    assert_eq!(boxes, (THREADS * BLOCKS / 10) as u64, "{:#?}", sites(&r));
    assert_eq!(
        r.summary.heap_bytes,
        (THREADS * BLOCKS / 10 * 32) as u64,
        "nothing else is left: {:#?}",
        sites(&r)
    );
    assert!(mapileak::heap_stats().allocs > (THREADS * BLOCKS) as u64);
}

/// A host's thread pool starts and ends threads all day: each new thread
/// gets counters of its own (a slot an ended thread gave back), not the one
/// shared slot past the first 255 threads, where two threads counting cost
/// 10x `System`.
#[test]
#[cfg(feature = "test-hooks")]
fn threads_that_come_and_go_never_end_up_sharing_counters() {
    setup();
    let before = mapileak::heap_stats();
    for t in 0..600 {
        // In waves of four at once, so slots are given back and taken
        // while other threads hold theirs.
        let wave: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    drop(std::hint::black_box(Box::new([t as u64; 4])));
                    mapileak::testing::counters_shared()
                })
            })
            .collect();
        for h in wave {
            assert!(!h.join().unwrap(), "thread wave {t} shares counters");
        }
    }
    let after = mapileak::heap_stats();
    // Handing slots over lost no count: 2,400 boxes at least, each freed.
    assert!(after.allocs - before.allocs >= 2_400);
    assert!(after.frees - before.frees >= 2_400);
}

mod buffers {
    //! The MAPI buffer shim: chains, and a finding for each misuse.
    use std::ffi::c_void;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use mapileak::buffers::{self, MapiBuffers};
    use mapileak::reports::Report;
    use mapileak::{ProviderKind, Session};

    use super::setup;

    /// Runs `f` in a fresh session's scope and returns its Logoff report.
    fn session(f: impl FnOnce()) -> Report {
        setup();
        let s = Session::logon(ProviderKind::MessageStore, "buffers");
        {
            let _scope = s.enter();
            f();
        }
        s.ms_logoff().report
    }

    /// `GetProps`-style: a property array and two values chained to it.
    #[inline(never)]
    fn get_props(b: &MapiBuffers) -> *mut c_void {
        let root = b.allocate_buffer(100).unwrap();
        // SAFETY: `root` came from `b`.
        unsafe {
            b.allocate_more(50, root).unwrap();
            b.allocate_more(50, root).unwrap();
        }
        root
    }

    fn only_rule<'a>(r: &'a Report, rule: &str, function: &str) -> &'a mapileak::reports::Finding {
        let rules: Vec<&str> = r.findings.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(rules, [rule], "{:#?}", r.findings);
        let f = &r.findings[0];
        assert!(
            r.stack(f.stack.unwrap()).unwrap().mentions(function),
            "{function} in {:#?}",
            r.stack(f.stack.unwrap())
        );
        f
    }

    #[inline(never)]
    fn more_on_child(b: &MapiBuffers) -> *mut c_void {
        let root = b.allocate_buffer(64).unwrap();
        // SAFETY: both parents came from `b`.
        unsafe {
            let child = b.allocate_more(32, root).unwrap();
            b.allocate_more(16, child).unwrap();
        }
        root
    }

    #[test]
    fn allocate_more_on_a_child_is_a_finding_and_joins_the_chain() {
        let b = MapiBuffers::in_process();
        let r = session(|| {
            let root = more_on_child(&b);
            // SAFETY: a root from `b`, freed once: it frees all three.
            unsafe { b.free_buffer(root) };
        });
        let f = only_rule(&r, "buffer-more-on-child", "more_on_child");
        assert!(
            f.message.contains("32-byte MAPIAllocateMore child"),
            "{}",
            f.message
        );
        assert!(
            r.buffers.is_empty(),
            "freed with its root: {:#?}",
            r.buffers
        );
        // Left unfreed, the chain is one buffer of three blocks.
        let r = session(|| {
            more_on_child(&b);
        });
        assert_eq!(r.buffers.len(), 1);
        assert_eq!((r.buffers[0].bytes, r.buffers[0].children), (112, 2));
    }

    #[test]
    fn buffers_bound_to_a_session_need_no_scope() {
        setup();
        let b = MapiBuffers::in_process();
        let s = Session::logon(ProviderKind::AddressBook, "explicit");
        // No `enter`: the explicit style of `Tracked::in_session`.
        let p = b.allocate_buffer_in(s, 40).unwrap();
        // SAFETY: from `b`.
        unsafe { b.allocate_more(8, p).unwrap() };
        let r = s.ab_logoff().report;
        assert_eq!(r.buffers.len(), 1, "{r:#?}");
        assert_eq!((r.buffers[0].bytes, r.buffers[0].children), (48, 1));
    }

    #[test]
    fn an_unfreed_chain_is_reported_and_a_chain_freed_through_its_parent_is_not() {
        let b = MapiBuffers::in_process();
        let r = session(|| {
            let _leaked = get_props(&b);
            let freed = get_props(&b);
            // SAFETY: a root from `b`, freed once.
            assert_eq!(unsafe { b.free_buffer(freed) }, 0);
            // SAFETY: null is always allowed.
            assert_eq!(unsafe { b.free_buffer(std::ptr::null_mut()) }, 0);
        });
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
        assert_eq!(r.buffers.len(), 1, "{:#?}", r.buffers);
        let leaked = &r.buffers[0];
        assert_eq!((leaked.bytes, leaked.children), (200, 2));
        assert!(r.stack(leaked.stack).unwrap().mentions("get_props"));
        assert!(
            r.heap.is_empty(),
            "a buffer is not also a heap leak: {:#?}",
            r.heap
        );
    }

    #[inline(never)]
    fn free_the_child(b: &MapiBuffers, child: *mut c_void) {
        // SAFETY: the shim checks it; this is the bug under test.
        unsafe { b.free_buffer(child) };
    }

    #[inline(never)]
    fn allocated_here(b: &MapiBuffers) -> *mut c_void {
        b.allocate_buffer(10).unwrap()
    }

    #[inline(never)]
    fn free_twice(b: &MapiBuffers, p: *mut c_void) {
        // SAFETY: the second call is the bug under test; the shim catches it.
        unsafe {
            b.free_buffer(p);
            b.free_buffer(p);
        }
    }

    #[inline(never)]
    fn free_foreign(b: &MapiBuffers, p: *mut c_void) {
        // SAFETY: the shim checks it and does not touch foreign memory.
        unsafe { b.free_buffer(p) };
    }

    #[test]
    fn each_misuse_is_a_finding_at_the_bad_call_and_nothing_crashes() {
        let b = MapiBuffers::in_process();
        let r = session(|| {
            let root = b.allocate_buffer(10).unwrap();
            // SAFETY: `root` came from `b`.
            let child = unsafe { b.allocate_more(5, root).unwrap() };
            free_the_child(&b, child);
            // SAFETY: the root, once: frees the chain, child included.
            unsafe { b.free_buffer(root) };
        });
        let f = only_rule(&r, "buffer-free-child", "free_the_child");
        assert!(f.message.contains("AllocateMore child"), "{}", f.message);
        assert!(r.buffers.is_empty());

        let r = session(|| {
            let p = allocated_here(&b);
            free_twice(&b, p);
        });
        let f = only_rule(&r, "buffer-double-free", "free_twice");
        // The other call involved: where the buffer was allocated.
        let also = r.stack(f.also.expect("the buffer's allocation")).unwrap();
        assert!(also.mentions("allocated_here"), "{also:#?}");

        let r = session(|| {
            let theirs = Box::into_raw(Box::new(0x5eed_u64));
            free_foreign(&b, theirs.cast());
            // SAFETY: the shim did not free it: it is still ours.
            assert_eq!(*unsafe { Box::from_raw(theirs) }, 0x5eed);
        });
        only_rule(&r, "buffer-foreign-free", "free_foreign");
    }

    // The C runtime's heap: glibc's on Linux, msvcrt's on Windows, where
    // MAPI's own MAPIAllocateBuffer gets its memory from too.
    unsafe extern "C" {
        fn malloc(size: usize) -> *mut c_void;
        fn free(p: *mut c_void);
    }

    // A stand-in for MAPI's own functions, with MAPI's chain semantics.
    static REAL_ALLOCS: AtomicUsize = AtomicUsize::new(0);
    static REAL_FREES: AtomicUsize = AtomicUsize::new(0);
    static CHAINS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());
    /// Roots the stand-in freed, latest last.
    static FREED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

    unsafe extern "system" fn real_allocate_buffer(cb: u32, out: *mut *mut c_void) -> i32 {
        REAL_ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: malloc of a nonzero size; `out` is the caller's valid out pointer.
        unsafe { *out = malloc(cb.max(1) as usize) };
        0
    }

    unsafe extern "system" fn real_allocate_more(
        cb: u32,
        parent: *mut c_void,
        out: *mut *mut c_void,
    ) -> i32 {
        REAL_ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: as above.
        let p = unsafe { malloc(cb.max(1) as usize) };
        CHAINS.lock().unwrap().push((parent as usize, p as usize));
        // SAFETY: the caller's valid out pointer.
        unsafe { *out = p };
        0
    }

    unsafe extern "system" fn real_free_buffer(p: *mut c_void) -> u32 {
        REAL_FREES.fetch_add(1, Ordering::SeqCst);
        FREED.lock().unwrap().push(p as usize);
        let mut chains = CHAINS.lock().unwrap();
        for &(_, child) in chains.iter().filter(|(parent, _)| *parent == p as usize) {
            // SAFETY: malloc'd by real_allocate_more, freed once with its parent.
            unsafe { free(child as *mut c_void) };
        }
        chains.retain(|(parent, _)| *parent != p as usize);
        // SAFETY: malloc'd by real_allocate_buffer, freed once.
        unsafe { free(p) };
        0
    }

    #[test]
    fn wrapping_the_real_functions_passes_only_valid_calls_through() {
        // SAFETY: the three functions above keep MAPI's contract.
        let b = unsafe {
            MapiBuffers::wrap(real_allocate_buffer, real_allocate_more, real_free_buffer)
        };
        let r = session(|| {
            let root = b.allocate_buffer(64).unwrap();
            // SAFETY: `root` came from `b`.
            let child = unsafe { b.allocate_more(16, root).unwrap() };
            assert_eq!(REAL_ALLOCS.load(Ordering::SeqCst), 2);
            free_the_child(&b, child);
            assert_eq!(
                REAL_FREES.load(Ordering::SeqCst),
                0,
                "a child's free is not passed to MAPI"
            );
            // SAFETY: the root, once.
            unsafe { b.free_buffer(root) };
        });
        only_rule(&r, "buffer-free-child", "free_the_child");
        assert!(r.buffers.is_empty());
        // Freed roots are held in quarantine, then passed to MAPI's free.
        for _ in 0..=buffers::QUARANTINE {
            let p = b.allocate_buffer(8).unwrap();
            // SAFETY: a root from `b`, freed once.
            unsafe { b.free_buffer(p) };
        }
        assert!(
            REAL_FREES.load(Ordering::SeqCst) >= 1,
            "quarantined frees reach MAPI"
        );
        assert!(
            CHAINS.lock().unwrap().is_empty(),
            "the chain went with its root"
        );
        // Large freed buffers are held back up to a byte limit, not a count.
        let big = (buffers::QUARANTINE_BYTES * 3 / 4) as u32;
        let before = REAL_FREES.load(Ordering::SeqCst);
        let first = b.allocate_buffer(big).unwrap();
        let second = b.allocate_buffer(big).unwrap();
        // SAFETY: roots from `b`, freed once each.
        unsafe {
            b.free_buffer(first);
            b.free_buffer(second);
        }
        let freed = FREED.lock().unwrap();
        assert!(
            freed.contains(&(first as usize)),
            "the older of two buffers past the byte limit reached MAPI"
        );
        assert!(!freed.contains(&(second as usize)), "the newer one waits");
        assert!(REAL_FREES.load(Ordering::SeqCst) > before);
    }
}

#[path = "support/capture.rs"]
mod capture;
#[path = "support/examples.rs"]
mod examples;
use examples::example;

/// `(blocks, bytes)` from a line `label ... <bytes> bytes in <blocks> blocks`.
#[cfg(target_os = "linux")]
fn valgrind_totals(stderr: &str, label: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stderr}"));
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.replace(',', "").parse().ok())
        .collect();
    // "==pid==    definitely lost: 1,234 bytes in 11 blocks": the pid is not a bare number.
    assert!(nums.len() >= 2, "{line}");
    (nums[nums.len() - 1], nums[nums.len() - 2])
}

// valgrind is Linux's; the blocks it checks are counted by the same code on
// Windows, where the other tests of this file run too.
#[cfg(target_os = "linux")]
#[test]
fn valgrind_and_mapileak_agree_on_the_leaked_blocks() {
    let valgrind = ["/usr/bin/valgrind", "/usr/local/bin/valgrind"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("valgrind is not installed: run the README's test command (scripts/test.sh), which installs it");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("oracle");
    let out = std::process::Command::new(valgrind)
        .args([
            "--leak-check=full",
            "--show-leak-kinds=definite",
            "--error-exitcode=0",
        ])
        .arg(example("heap_oracle"))
        .env("MAPILEAK_DIR", &dir)
        .retried(std::process::Command::output)
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("mapileak-oracle"))
        .expect("the oracle's line");
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let (blocks, bytes) = (field("blocks="), field("bytes="));
    // 5 rows of a 12 x u64 Vec (96 bytes) and a 19-byte String, and one 70-byte box.
    assert_eq!((blocks, bytes), (11, 5 * (96 + 19) + 70), "{line}");
    let (lost_blocks, lost_bytes) = valgrind_totals(&stderr, "definitely lost:");
    assert_eq!(
        (lost_blocks, lost_bytes),
        (blocks, bytes),
        "valgrind:\n{stderr}"
    );
}

mod subscriber {
    //! A `tracing` subscriber that allocates, counts the heap (taking every
    //! live-table lock) and creates a tracked object from inside `event`,
    //! while a Logoff with heap leaks publishes: it must finish, and the
    //! report must not pick up the subscriber's own blocks.
    use mapileak::{ProviderKind, Session};

    use super::capture::Capture;

    #[inline(never)]
    fn leak_rows() {
        for i in 0..10u64 {
            std::mem::forget(vec![i; 16]);
        }
    }

    #[test]
    fn a_subscriber_that_allocates_during_logoff_neither_hangs_nor_leaks_into_it() {
        super::setup();
        let sub = Capture::default();
        let report = tracing::subscriber::with_default(sub.clone(), || {
            let session = Session::logon(ProviderKind::AddressBook, "subscriber");
            let _scope = session.enter();
            leak_rows();
            session.ab_logoff().report
        });
        // The summary went to the subscriber: a warning, as blocks leaked.
        let session = report.session.id.to_string();
        let events = sub.0.lock().unwrap();
        assert!(
            events.iter().any(|e| e.target == "mapileak"
                && e.level == tracing::Level::WARN
                && e.fields.get("session") == Some(&session)
                && e.fields.contains_key("leaked_objects")),
            "{events:#?}"
        );
        assert_eq!(
            (report.summary.heap_blocks, report.summary.heap_bytes),
            (10, 10 * 16 * 8),
            "{:#?}",
            super::sites(&report)
        );
        assert!(report.objects.is_empty(), "{:#?}", report.objects);
    }
}

/// A provider object holding its tracking guard in its own memory.
struct ContentsTable {
    _track: Tracked,
    _rows: [u64; 6],
}

#[inline(never)]
fn leak_boxed_table() {
    let table = ContentsTable {
        _track: Tracked::new(&kinds::IMAPI_TABLE, "contents"),
        _rows: [7; 6],
    };
    std::mem::forget(Box::new(table));
}

#[inline(never)]
fn leak_implemented_table(session: Session) {
    let folder = Tracked::new(&kinds::IMAPI_FOLDER, "Inbox");
    let table = mapileak_samples::objects::Table::open(session, "rows of Inbox", folder.id(), 3);
    std::mem::forget(table);
}

#[inline(never)]
fn leak_row_buffer() {
    std::mem::forget(vec![1u8; 40]);
}

#[test]
fn a_leaked_objects_own_memory_is_the_object_not_a_second_leak() {
    setup();
    let session = Session::logon(ProviderKind::MessageStore, "object memory");
    {
        let _scope = session.enter();
        leak_boxed_table();
        // windows-core's #[implement]: the object lives in a Box it makes.
        leak_implemented_table(session);
        leak_row_buffer();
    }
    let r = session.ms_logoff().report;
    let kinds: Vec<&str> = r.objects.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(kinds, ["IMAPITable", "IMAPITable"], "{:#?}", r.objects);
    let sites = sites(&r);
    assert_eq!(sites.len(), 1, "only the row buffer: {sites:#?}");
    assert!(sites[0].0.ends_with("leak_row_buffer"), "{sites:#?}");
    assert_eq!((sites[0].1, sites[0].2), (1, 40));
}

#[test]
fn blocks_a_full_live_table_cannot_hold_are_counted_in_the_report() {
    // 4,096 slots for 20,011 leaked blocks: most cannot be recorded.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("crowded");
    let _ = std::fs::remove_dir_all(&dir);
    let out = std::process::Command::new(example("heap_oracle"))
        .args(["--extra", "20000"])
        .env("MAPILEAK_LIVE_BLOCKS", "4000")
        .env("MAPILEAK_DIR", &dir)
        .retried(std::process::Command::output)
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let field = |name: &str| -> u64 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("mapileak-oracle"))
            .unwrap();
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {line}"))
    };
    assert_eq!(field("capacity"), 4096, "rounded up to a power of two");
    let (blocks, untracked) = (field("blocks"), field("untracked"));
    assert!(blocks <= 4096 && untracked > 0, "{stdout}");
    assert_eq!(
        blocks + untracked,
        20_011,
        "every leaked block is reported or counted"
    );
    assert!(
        stderr.contains("heap block(s) not tracked: the live table is full"),
        "named in the summary line: {stderr}"
    );
}
