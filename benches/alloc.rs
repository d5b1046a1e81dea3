//! ns per alloc+free of a small block, in one run, for: `System`;
//! `TrackingAllocator` counting only (no session scope); `TrackingAllocator`
//! with a stack for every attributed block (frame pointers on); and dhat-rs's
//! heap profiler. Each allocator is called directly, so one process measures
//! all four. Targets (DESIGN.md): counting at most 1.2x System; stacks at
//! most 4x System and at least 30x faster than dhat.
//!
//! `cargo bench --bench alloc`; the last four lines are
//! `mapileak-bench <config> ns_per_op=<float> vs_system=<float>`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Instant;

use mapileak::{ProviderKind, Session, TrackingAllocator};

// The bench must measure the live instrumentation (feature `force`).
const _: () = assert!(mapileak::LIVE);

static TRACKER: TrackingAllocator = TrackingAllocator::system();
static DHAT: dhat::Alloc = dhat::Alloc;

const OPS: u32 = 200_000;
const ROUNDS: usize = 5;
const LAYOUT: Layout = match Layout::from_size_align(32, 8) {
    Ok(l) => l,
    Err(_) => panic!("layout"),
};

/// A provider-like call depth above the allocation, so the walk has work.
/// With `sites` above 1, the allocations rotate through that many call
/// sites, so each stack differs from the one before in its innermost frames.
#[inline(never)]
fn depth<A: GlobalAlloc>(a: &A, n: u32, sites: u32) {
    if n > 0 {
        return depth(a, black_box(n - 1), sites);
    }
    if sites <= 1 {
        for _ in 0..OPS {
            alloc_free(a);
        }
        return;
    }
    for i in 0..OPS {
        rotate(a, black_box(i) % sites);
    }
}

/// Allocates from call site `k` (of 64).
#[inline(always)]
fn rotate<A: GlobalAlloc>(a: &A, k: u32) {
    macro_rules! sites {
        ($($n:literal)*) => {
            match k {
                $($n => site::<A, $n>(a),)*
                _ => site::<A, 63>(a),
            }
        };
    }
    sites!(
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
        32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61
        62
    )
}

#[inline(never)]
fn site<A: GlobalAlloc, const K: usize>(a: &A) {
    alloc_free(a);
    black_box(K);
}

#[inline(always)]
fn alloc_free<A: GlobalAlloc>(a: &A) {
    // SAFETY: a valid non-zero layout; the block is freed at once with the
    // same allocator and layout.
    unsafe {
        let p = a.alloc(black_box(LAYOUT));
        assert!(!p.is_null());
        a.dealloc(black_box(p), LAYOUT);
    }
}

/// The fastest of [`ROUNDS`] rounds. Each round first takes a different
/// number of blocks of the measured size from `System` and holds them, so
/// the block the round reuses sits at another address: one address can
/// happen to alias the stack slot the loop stores to (4 KiB apart), which
/// slows every configuration by a different amount in each process.
fn best(mut f: impl FnMut()) -> f64 {
    (0..ROUNDS)
        .map(|round| {
            // SAFETY: valid non-zero layouts; each block is freed below
            // with the allocator and layout it came from.
            let held: Vec<*mut u8> = (0..round * 3)
                .map(|_| unsafe { System.alloc(LAYOUT) })
                .collect();
            let t = Instant::now();
            f();
            let ns = t.elapsed().as_nanos() as f64 / f64::from(OPS);
            for p in held {
                // SAFETY: allocated just above with this layout.
                unsafe { System.dealloc(p, LAYOUT) };
            }
            ns
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let dir = std::env::temp_dir().join(format!("mapileak-bench-alloc-{}", std::process::id()));
    mapileak::set_output_dir(&dir);
    mapileak::set_mode(mapileak::Mode::Summary);
    let session = Session::logon(ProviderKind::MessageStore, "bench");
    const DEPTH: u32 = 8;

    let mut system = f64::INFINITY;
    let mut counting = f64::INFINITY;
    let mut stacks = f64::INFINITY;
    // Not targets: rotating call sites, 8 and as many as a thread's walk
    // memo holds (32), and twice that (every stack then takes a partial
    // walk and an interning lookup: the cost of a call path not seen
    // lately).
    let mut rotating = [
        (8, f64::INFINITY, f64::INFINITY),
        (32, f64::INFINITY, f64::INFINITY),
        (64, f64::INFINITY, f64::INFINITY),
    ];
    for _ in 0..2 {
        system = system.min(best(|| depth(&System, DEPTH, 1)));
        counting = counting.min(best(|| depth(&TRACKER, DEPTH, 1)));
        stacks = stacks.min(best(|| {
            let _scope = session.enter();
            depth(&TRACKER, DEPTH, 1)
        }));
        for (sites, base, tracked) in &mut rotating {
            *base = base.min(best(|| depth(&System, DEPTH, *sites)));
            *tracked = tracked.min(best(|| {
                let _scope = session.enter();
                depth(&TRACKER, DEPTH, *sites)
            }));
        }
    }
    // Two threads counting at once: their per-thread counters must not
    // share a cache line. Against two threads on `System`.
    let two = |a: &'static (dyn Fn() + Sync)| {
        best(|| {
            std::thread::scope(|s| {
                s.spawn(a);
                a();
            })
        })
    };
    let two_system = two(&|| depth(&System, DEPTH, 1));
    let two_counting = two(&|| depth(&TRACKER, DEPTH, 1));
    // The same after 300 threads came and went, as in a host (Outlook)
    // whose thread pools start and end threads all day: a thread's counters
    // must not be shared with the threads that come after it.
    for _ in 0..300 {
        std::thread::spawn(|| depth(&TRACKER, 1, 1)).join().unwrap();
    }
    let two_later = two(&|| {
        std::thread::scope(|s| {
            s.spawn(|| depth(&TRACKER, DEPTH, 1));
        })
    });
    let two_system_spawned = two(&|| {
        std::thread::scope(|s| {
            s.spawn(|| depth(&System, DEPTH, 1));
        })
    });
    let report = session.ms_logoff().report;
    assert_eq!(report.summary.heap_blocks, 0, "every block was freed");

    // dhat-rs takes each stack with the `backtrace` crate, which on 32-bit
    // Windows walks with dbghelp, a system call per frame under Wine: the
    // line would take many minutes there, and is left out.
    let dhat = if cfg!(all(windows, target_arch = "x86")) {
        f64::NAN
    } else {
        let profiler = dhat::Profiler::builder()
            .file_name(dir.join("dhat-heap.json"))
            .build();
        let dhat = best(|| depth(&DHAT, DEPTH, 1));
        drop(profiler);
        dhat
    };
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "mapileak-bench-info counting_2_threads ns_per_op={two_counting:.2} vs_system={:.2}",
        two_counting / two_system
    );
    println!(
        "mapileak-bench-info counting_2_threads_after_300 ns_per_op={two_later:.2} vs_system={:.2}",
        two_later / two_system_spawned
    );
    for (sites, base, tracked) in rotating {
        println!(
            "mapileak-bench-info stacks_{sites}_sites ns_per_op={tracked:.2} vs_system={:.2}",
            tracked / base
        );
    }
    for (name, ns) in [
        ("system", system),
        ("counting", counting),
        ("stacks", stacks),
        ("dhat", dhat),
    ]
    .into_iter()
    .filter(|(_, ns)| !ns.is_nan())
    {
        println!(
            "mapileak-bench {name} ns_per_op={ns:.2} vs_system={:.2}",
            ns / system
        );
    }
}
