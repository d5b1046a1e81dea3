//! The cost of a tracked AddRef+Release pair (no per-event stacks), as a
//! ratio to a plain atomic pair measured in the same run. Target: at most 3x.
//!
//! `cargo bench --bench refcount`. The last line is
//! `mapileak-bench refcount ns_per_op=<float> vs_plain=<float>`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use mapileak::{ProviderKind, RefCount, Session, kinds};

// The bench must measure the live instrumentation (feature `force`, which
// the samples dev-dependency turns on), not the release no-ops.
const _: () = assert!(mapileak::LIVE);

const PAIRS: u32 = 20_000_000;
const ROUNDS: usize = 7;

/// The pair a hand-written COM object does: fetch_add, fetch_sub.
#[inline(never)]
fn plain(count: &AtomicU32) {
    for _ in 0..PAIRS {
        black_box(count.fetch_add(1, Ordering::Relaxed) + 1);
        black_box(count.fetch_sub(1, Ordering::AcqRel) - 1);
    }
}

#[inline(never)]
fn tracked(count: &RefCount) {
    for _ in 0..PAIRS {
        black_box(count.add_ref());
        black_box(count.release());
    }
}

/// Best of `ROUNDS`, in ns per pair: the least disturbed run.
fn best(mut f: impl FnMut()) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / f64::from(PAIRS)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let session = Session::logon(ProviderKind::MessageStore, "bench");
    let rc = RefCount::in_session(session, &kinds::IMAPI_STATUS, "bench");
    assert!(
        !kinds::IMAPI_STATUS.history(),
        "no per-event stacks in this measurement"
    );
    let atomic = AtomicU32::new(1);
    // Interleave so that both see the same machine state.
    let mut p = f64::INFINITY;
    let mut t = f64::INFINITY;
    for _ in 0..2 {
        p = p.min(best(|| plain(black_box(&atomic))));
        t = t.min(best(|| tracked(black_box(&rc))));
    }
    assert_eq!(rc.count(), 1);
    println!("mapileak-bench refcount_plain ns_per_op={p:.3} vs_plain=1.000");
    println!(
        "mapileak-bench refcount ns_per_op={t:.3} vs_plain={:.3}",
        t / p
    );
}
