//! What a snapshot costs a running provider, in the default (`full`) mode
//! with mapileak's allocator, as a provider's debug build runs it:
//!
//! - `snapshot_100k_1m`: one snapshot of 100,000 live objects (from 640
//!   creation stacks) and 1,000,000 live heap blocks (from 64 allocation
//!   sites): its time, and its ratio to serializing the same report with
//!   serde_json alone (measured in the same run). Target: under a second.
//! - `snapshot_wait`: while snapshots of that process run back to back on
//!   another thread, the longest one allocation (+ free) and one
//!   AddRef/Release pair waited on the provider's thread, beside the same
//!   loop's longest with no snapshot running. Target: under 1 ms.
//! - `growth_100x10k`: `growth` over 100 snapshots of 10,000 sites each
//!   (pure: the reports are made in memory). Target: under a second.
//!
//! `cargo bench --bench snapshot`; it prints `mapileak-bench ...` lines.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mapileak::reports::growth::{self, Limits};
use mapileak::reports::{Event, HeapSite, ProviderKind, Report, SessionInfo, SnapshotInfo};
use mapileak::{RefCount, Session, Tracked, kinds};

#[global_allocator]
static ALLOC: mapileak::TrackingAllocator = mapileak::TrackingAllocator::system();

const OBJECTS: usize = 100_000;
const BLOCKS: usize = 1_000_000;

/// `depth` frames above one of 16 sites: 640 creation stacks.
#[inline(never)]
fn object_at(depth: usize, i: usize, out: &mut Vec<Tracked>) {
    if depth > 0 {
        return object_at(black_box(depth - 1), i, out);
    }
    let kind = match i % 4 {
        0 => &kinds::IMAPI_TABLE,
        1 => &kinds::IMESSAGE,
        2 => &kinds::IATTACH,
        _ => &kinds::IMAPI_FOLDER,
    };
    out.push(Tracked::new(kind, "cached"));
}

/// A 32-byte block `depth` frames down: 64 allocation sites.
#[inline(never)]
// Each box is one live heap block: the point of the benchmark.
#[allow(clippy::vec_box)]
fn block_at(depth: usize, out: &mut Vec<Box<[u64; 4]>>) {
    if depth > 0 {
        return block_at(black_box(depth - 1), out);
    }
    out.push(Box::new([depth as u64; 4]));
}

fn main() {
    let dir = std::env::temp_dir().join(format!("mapileak-bench-snapshot-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    mapileak::set_output_dir(&dir);
    // SAFETY: set before any thread starts and before mapileak reads the
    // environment (at the first logon): the live table must hold 1.2
    // million blocks (the objects' own and their labels' included).
    unsafe { std::env::set_var("MAPILEAK_LIVE_BLOCKS", "4000000") };
    let session = Session::logon(ProviderKind::MessageStore, "bench store");
    let scope = session.enter();
    let mut objects = Vec::with_capacity(OBJECTS);
    for i in 0..OBJECTS {
        object_at(i % 40, i, &mut objects);
    }
    let mut blocks = Vec::with_capacity(BLOCKS);
    for i in 0..BLOCKS {
        block_at(i % 64, &mut blocks);
    }
    drop(scope);

    one_snapshot();
    waits(session);
    growth_bench();

    drop(blocks);
    drop(objects);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The snapshot's own time, best of three, against serde_json alone.
fn one_snapshot() {
    let mut best = f64::MAX;
    let mut json = f64::MAX;
    let mut counts = (0, 0);
    for _ in 0..3 {
        let t = Instant::now();
        let taken = mapileak::snapshot("bench");
        best = best.min(t.elapsed().as_secs_f64());
        let ours = taken
            .iter()
            .find(|r| r.report.session.label == "bench store")
            .expect("the logon's report");
        counts = (
            ours.report.summary.leaked_objects,
            ours.report.summary.heap_blocks,
        );
        let t = Instant::now();
        black_box(
            serde_json::to_vec(&ours.report)
                .map(|v| v.len())
                .unwrap_or(0),
        );
        json = json.min(t.elapsed().as_secs_f64());
        for f in taken.iter().flat_map(|r| &r.files) {
            let _ = std::fs::remove_file(f);
        }
    }
    println!(
        "mapileak-bench snapshot_100k_1m seconds={best:.3} vs_json_only={:.2} objects={} heap_blocks={}",
        best / json,
        counts.0,
        counts.1
    );
}

/// How long single operations took: the longest, and how many of them
/// took over a millisecond (the machine's own pauses show beside them in
/// the run without snapshots).
#[derive(Default, Clone, Copy)]
struct Waits {
    max: Duration,
    over_1ms: u64,
    ops: u64,
}

impl Waits {
    fn add(&mut self, d: Duration) {
        self.max = self.max.max(d);
        self.over_1ms += u64::from(d > Duration::from_millis(1));
        self.ops += 1;
    }

    fn show(&self) -> String {
        format!(
            "max_us={:.0} over_1ms={}/{}",
            self.max.as_secs_f64() * 1e6,
            self.over_1ms,
            self.ops
        )
    }
}

/// Single allocations and AddRef/Release pairs on this thread for four
/// seconds, while snapshots run back to back on another (or not).
fn timed_ops(session: Session, snapshots: bool) -> (Waits, Waits, usize) {
    let stop = AtomicBool::new(false);
    let counted = RefCount::in_session(session, &kinds::IMAPI_STATUS, "status");
    let (mut alloc, mut refs) = (Waits::default(), Waits::default());
    let mut taken = 0;
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let mut n = 0;
            while snapshots && !stop.load(Ordering::Relaxed) {
                for f in mapileak::snapshot("busy").iter().flat_map(|r| &r.files) {
                    let _ = std::fs::remove_file(f);
                }
                n += 1;
            }
            n
        });
        let _scope = session.enter();
        let end = Instant::now() + Duration::from_secs(4);
        while Instant::now() < end {
            for _ in 0..1000 {
                let t = Instant::now();
                black_box(Box::new([1u64; 4]));
                alloc.add(t.elapsed());
                let t = Instant::now();
                black_box(counted.add_ref());
                black_box(counted.release());
                refs.add(t.elapsed());
            }
        }
        stop.store(true, Ordering::Relaxed);
        taken = worker.join().unwrap_or(0);
    });
    (alloc, refs, taken)
}

fn waits(session: Session) {
    let (alloc_quiet, ref_quiet, _) = timed_ops(session, false);
    let (alloc_busy, ref_busy, taken) = timed_ops(session, true);
    println!(
        "mapileak-bench snapshot_wait snapshots={taken} alloc {} addref_release {} (no snapshot running: alloc {} addref_release {})",
        alloc_busy.show(),
        ref_busy.show(),
        alloc_quiet.show(),
        ref_quiet.show(),
    );
}

/// `growth` over 100 snapshots of 10,000 heap sites each, a tenth of them
/// growing.
fn growth_bench() {
    let reports: Vec<Report> = (1..=100u64)
        .map(|seq| {
            let mut r = Report::new(SessionInfo::new(
                1,
                ProviderKind::MessageStore,
                "s",
                Event::Snapshot,
            ));
            r.snapshot = Some(SnapshotInfo::new(seq, "periodic", seq * 1000));
            r.heap = (0..10_000u64)
                .map(|i| {
                    let blocks = if i % 10 == 0 { seq } else { 5 };
                    let mut h = HeapSite::new(0, blocks, blocks * 32);
                    h.signature = format!("{i:016x}");
                    h
                })
                .collect();
            r
        })
        .collect();
    let refs: Vec<&Report> = reports.iter().collect();
    let t = Instant::now();
    let series = growth::series(&refs, |i| i.to_string()).unwrap_or_default();
    let grown: usize = series
        .iter()
        .map(|s| s.growing(Limits::default()).count())
        .sum();
    let took = t.elapsed().as_secs_f64();
    println!("mapileak-bench growth_100x10k seconds={took:.3} growing_sites={grown}");
}
