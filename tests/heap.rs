//! The tracking allocator as this program's global allocator: heap blocks a
//! logon leaks are reported at its Logoff, at the allocating function.

use std::sync::{Arc, Barrier};

use mapileak::reports::Report;
use mapileak::{ProviderKind, Session, Tracked, TrackingAllocator, kinds};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

fn setup() {
    mapileak::set_output_dir(concat!(env!("CARGO_TARGET_TMPDIR"), "/mapileak-heap"));
}

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
        for i in 0..50 {
            std::mem::forget(Tracked::new(&kinds::IMESSAGE, format!("message {i}")));
        }
    }
    let r = session.ms_logoff().report;
    assert_eq!(r.summary.leaked_objects, 50);
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
    let leaked_vecs = freed.len(); // the vectors themselves were allocated in scope
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
    assert_eq!(leaked_vecs, THREADS);
    assert!(mapileak::heap_stats().allocs > (THREADS * BLOCKS) as u64);
}
