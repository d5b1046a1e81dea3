//! A program with known heap leaks in a logon's scope, for the valgrind
//! oracle test: valgrind's "definitely lost" totals and mapileak's heap
//! report must agree. Prints `mapileak-oracle blocks=<n> bytes=<n>
//! untracked=<n> capacity=<n>`. With `--extra N` it leaks N more small
//! blocks, for the test of a live table too small to hold them all
//! (`MAPILEAK_LIVE_BLOCKS`).
//!
//! ```text
//! cargo build --example heap_oracle
//! valgrind --leak-check=full target/debug/examples/heap_oracle
//! ```

use mapileak::{ProviderKind, Session, TrackingAllocator};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

#[inline(never)]
fn leak_rows(n: usize) {
    for i in 0..n {
        // A property row the provider forgot: a Vec and a String.
        std::mem::forget(vec![i as u64; 12]);
        let mut subject = String::with_capacity(19);
        subject.push_str("row: subject");
        std::mem::forget(subject);
    }
}

#[inline(never)]
fn leak_entry_id() {
    Box::leak(Box::new([0xabu8; 70]));
}

#[inline(never)]
fn clean_work() {
    let mut v: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    v.sort();
    drop(v);
}

#[inline(never)]
fn leak_small(n: usize) {
    for i in 0..n {
        Box::leak(Box::new(i as u64));
    }
}

fn main() {
    let extra: usize = match std::env::args().nth(1).as_deref() {
        Some("--extra") => std::env::args()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        _ => 0,
    };
    mapileak::set_mode(mapileak::Mode::Summary);
    let session = Session::logon(ProviderKind::MessageStore, "oracle");
    {
        let _scope = session.enter();
        leak_rows(5);
        leak_entry_id();
        clean_work();
        leak_small(extra);
    }
    let report = session.ms_logoff().report;
    println!(
        "mapileak-oracle blocks={} bytes={} untracked={} capacity={}",
        report.summary.heap_blocks,
        report.summary.heap_bytes,
        report.summary.heap_untracked,
        mapileak::heap_stats().table_capacity
    );
}
