//! The process-end report after many clean sessions: a provider that logged
//! on and off 3,000 times and leaked nothing must not pay per session at
//! exit. With the tracking allocator installed (its live table reserved),
//! the exit's cost is shown against one Logoff of a clean session measured
//! in the same run. Target (DESIGN.md): under 100 ms. And what the clean
//! sessions still hold: the heap bytes live after them, per session (a
//! clean logon leaves the registry at its Logoff).
//!
//! `cargo bench --bench exit` prints
//! `mapileak-bench exit_after_3000_sessions seconds=<float> vs_one_logoff=<float> bytes_per_session=<float>`.

use std::time::Instant;

use mapileak::{ProviderKind, Session, TrackingAllocator};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

const SESSIONS: usize = 3_000;

fn main() {
    let dir = std::env::temp_dir().join(format!("mapileak-bench-exit-{}", std::process::id()));
    mapileak::set_output_dir(&dir);
    let mut one = f64::INFINITY;
    let mut first = 0;
    for i in 0..SESSIONS {
        let s = Session::logon(ProviderKind::Transport, format!("clean {i}"));
        {
            let _scope = s.enter();
            drop(vec![0u8; 64]); // attributed, and freed: the table is in use
        }
        let t = Instant::now();
        let logoff = s.transport_logoff();
        one = one.min(t.elapsed().as_secs_f64());
        assert!(logoff.report.is_clean());
        drop(logoff);
        if i == 0 {
            // After one cycle: what the first Logoff set up for good (the
            // output directory's name, the walk memo, the tables).
            first = mapileak::heap_stats().live_bytes;
        }
    }
    let held = mapileak::heap_stats().live_bytes.saturating_sub(first);
    let t = Instant::now();
    let reports = mapileak::process_exit();
    let exit = t.elapsed().as_secs_f64();
    assert!(
        reports.is_empty(),
        "nothing leaked: {} report(s)",
        reports.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "mapileak-bench exit_after_{SESSIONS}_sessions seconds={exit:.4} vs_one_logoff={:.1} bytes_per_session={:.1}",
        exit / one,
        held as f64 / (SESSIONS - 1) as f64
    );
}
