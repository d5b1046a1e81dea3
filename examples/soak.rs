//! A soak test's host: the sample message store kept logged on while a
//! client synchronizes it round after round, as Outlook does for days. The
//! store is run with an unbounded cache (`soak cache`) or without
//! (`soak steady`); its heap goes through mapileak's allocator.
//!
//! ```text
//! MAPILEAK_SNAPSHOT_SIGNAL=USR2 cargo run --example soak -- cache
//! ```
//!
//! It prints `synced N` after each `IMsgStore::Synchronize`, then reads a
//! line from standard input: `sync` for one more round, anything else (or
//! the end of input) to log off. Meanwhile `mapileak snapshot PID` (or
//! `MAPILEAK_SNAPSHOT_EVERY`) has it write snapshots to `MAPILEAK_DIR`, and
//! `mapileak growth MAPILEAK_DIR` names what grew between them.

use std::io::{BufRead as _, Write as _};

use mapileak_samples::Bug;
use mapileak_samples::host;

#[global_allocator]
static ALLOC: mapileak::TrackingAllocator = mapileak::TrackingAllocator::system();

fn main() {
    let bug = match std::env::args().nth(1).as_deref() {
        Some("cache") => Bug::UnboundedCache,
        Some("steady") => Bug::None,
        _ => {
            eprintln!("usage: soak cache|steady");
            std::process::exit(2);
        }
    };
    println!("pid {}", std::process::id());
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let outcome = host::soak_store("soak store", bug, |round| {
        println!("synced {round}");
        let _ = std::io::stdout().flush();
        matches!(lines.next(), Some(Ok(line)) if line.trim() == "sync")
    });
    let logoff = &outcome.logoffs[0].report;
    println!(
        "logoff: {} leaked object(s), {} heap block(s), {} finding(s)",
        logoff.summary.leaked_objects, logoff.summary.heap_blocks, logoff.summary.findings
    );
}
