//! A program with known heap leaks in a logon's scope, for the valgrind
//! oracle test: valgrind's "definitely lost" totals and mapileak's heap
//! report must agree. Prints `mapileak-oracle blocks=<n> bytes=<n>`.
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

fn main() {
    mapileak::set_mode(mapileak::Mode::Summary);
    let session = Session::logon(ProviderKind::MessageStore, "oracle");
    {
        let _scope = session.enter();
        leak_rows(5);
        leak_entry_id();
        clean_work();
    }
    let report = session.ms_logoff().report;
    println!(
        "mapileak-oracle blocks={} bytes={}",
        report.summary.heap_blocks, report.summary.heap_bytes
    );
}
