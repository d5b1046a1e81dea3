//! mapileak as a provider's debug build runs it: this benchmark's own code
//! (the "provider") unoptimized, mapileak optimized or not as the profile
//! says. Ratios to `System` (and to a plain `Box` for object creation) are
//! measured in the same run, the best of several rounds.
//!
//! `scripts/bench-provider.sh` runs it twice: in the `provider-debug`
//! profile (the override docs/rust-providers.md recommends) and in plain `dev`. Lines:
//! `mapileak-bench <profile>/<config> ns_per_op=<float> vs_system=<float>`
//! and `mapileak-bench <profile>/report_100k seconds=<float> ns_per_object=<float>`.
//! `counting_2_threads`: two threads at once, against two on `System`.
//! `c_heap_*`: a C or C++ provider's heap through the C ABI
//! (`mapileak_malloc`/`mapileak_free`), against the same `System`:
//! counting before any logon, stacks in one (outside a scope too: the one
//! open logon's). `c_object_deleted`: a C++ object with a `RefCount`
//! created and deleted (its block then quarantined), against the same
//! with the handle freed at once and the block given back (`vs_unkept`):
//! what the over-release quarantine costs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Instant;

use mapileak::{ProviderKind, Session, Tracked, TrackingAllocator, kinds};

static TRACKER: TrackingAllocator = TrackingAllocator::system();

/// A C or C++ provider's heap: `mapileak_malloc` and `mapileak_free`, as
/// `MAPILEAK_REPLACE_OPERATOR_NEW` calls them (blocks of at most 16-byte
/// alignment, as here).
struct CHeap;

// SAFETY: blocks come from mapileak_malloc (16-byte aligned, enough for
// LAYOUT) and go back to mapileak_free, each once.
unsafe impl GlobalAlloc for CHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        debug_assert!(layout.align() <= 16);
        mapileak_c::mapileak_malloc(layout.size()).cast()
    }
    unsafe fn dealloc(&self, ptr: *mut u8, _: Layout) {
        // SAFETY: from mapileak_malloc, freed once.
        unsafe { mapileak_c::mapileak_free(ptr.cast()) }
    }
}

const OPS: u32 = 100_000;
const ROUNDS: usize = 5;
const LAYOUT: Layout = match Layout::from_size_align(32, 8) {
    Ok(l) => l,
    Err(_) => panic!("layout"),
};

#[inline(never)]
fn depth<A: GlobalAlloc>(a: &A, n: u32, sites: u32) {
    if n > 0 {
        return depth(a, black_box(n - 1), sites);
    }
    for i in 0..OPS {
        if sites <= 1 {
            alloc_free(a);
            continue;
        }
        // 32 call sites: 8 functions at 4 depths.
        let k = black_box(i) % sites;
        extra(a, k / 8, k % 8);
    }
}

#[inline(never)]
fn extra<A: GlobalAlloc>(a: &A, more: u32, site: u32) {
    if more > 0 {
        return extra(a, black_box(more - 1), site);
    }
    match site {
        0 => s0(a),
        1 => s1(a),
        2 => s2(a),
        3 => s3(a),
        4 => s4(a),
        5 => s5(a),
        6 => s6(a),
        _ => s7(a),
    }
}

macro_rules! sites {
    ($($name:ident),*) => {$(
        #[inline(never)]
        fn $name<A: GlobalAlloc>(a: &A) {
            alloc_free(a);
            black_box(stringify!($name));
        }
    )*};
}
sites!(s0, s1, s2, s3, s4, s5, s6, s7);

fn alloc_free<A: GlobalAlloc>(a: &A) {
    // SAFETY: a valid non-zero layout; freed at once with the same allocator.
    unsafe {
        let p = a.alloc(black_box(LAYOUT));
        assert!(!p.is_null());
        a.dealloc(black_box(p), LAYOUT);
    }
}

fn best(mut f: impl FnMut()) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / f64::from(OPS)
        })
        .fold(f64::INFINITY, f64::min)
}

#[inline(never)]
fn tracked(i: u32) -> Tracked {
    Tracked::new(&kinds::IMAPI_TABLE, "table").opened_from(black_box(
        Tracked::new(&kinds::IMESSAGE, format!("m{i}")).id(),
    ))
}

#[inline(never)]
fn boxed(i: u32) -> Box<(u64, String)> {
    Box::new((u64::from(i), format!("m{i}")))
}

/// What `new Table` and its `delete this` do in a C++ provider with
/// mapileak.hpp: a counted object in a block of `mapileak_new`, then
/// `~RefCount` (`mapileak_object_destroy`, the block then kept in the
/// quarantine) and `operator delete`; or, `kept` false, the handle freed at
/// once and the block given back.
#[inline(never)]
fn cpp_objects(kept: bool) {
    for _ in 0..OPS {
        // SAFETY: NUL-terminated strings; each block and handle used once.
        unsafe {
            let block = mapileak_c::mapileak_new(64, 0, 0);
            let count = mapileak_c::mapileak_object_new(0, c"IMAPITable".as_ptr(), c"t".as_ptr());
            black_box(block);
            if kept {
                mapileak_c::mapileak_object_destroy(count, block.cast::<u8>().add(8).cast());
            } else {
                mapileak_c::mapileak_object_free(count);
            }
            mapileak_c::mapileak_delete(block, 0);
        }
    }
}

fn main() {
    let profile = std::env::var("MAPILEAK_BENCH_PROFILE").unwrap_or_else(|_| "debug".into());
    let dir = std::env::temp_dir().join(format!("mapileak-bench-provider-{}", std::process::id()));
    mapileak::set_output_dir(&dir);
    mapileak::set_mode(mapileak::Mode::Summary);
    const DEPTH: u32 = 8;
    // Before any logon: nothing is attributed, every block only counted.
    let c_counting = best(|| depth(&CHeap, DEPTH, 1));
    let session = Session::logon(ProviderKind::MessageStore, "bench");
    let line = |config: &str, ns: f64, base: f64| {
        println!(
            "mapileak-bench {profile}/{config} ns_per_op={ns:.2} vs_system={:.2}",
            ns / base
        );
    };

    let system = best(|| depth(&System, DEPTH, 1));
    let counting = best(|| depth(&TRACKER, DEPTH, 1));
    let stacks = best(|| {
        let _scope = session.enter();
        depth(&TRACKER, DEPTH, 1)
    });
    let c_stacks = best(|| {
        let _scope = session.enter();
        depth(&CHeap, DEPTH, 1)
    });
    let unkept = best(|| cpp_objects(false));
    let kept = best(|| cpp_objects(true));
    // Two threads at once, each against two threads on `System`: their
    // counters must not share a cache line.
    let two = |a: &'static (dyn Fn() + Sync)| {
        best(|| {
            std::thread::scope(|s| {
                s.spawn(a);
                a();
            })
        })
    };
    let system_2 = two(&|| depth(&System, DEPTH, 1));
    let counting_2 = two(&|| depth(&TRACKER, DEPTH, 1));
    let system_32 = best(|| depth(&System, DEPTH, 32));
    let stacks_32 = best(|| {
        let _scope = session.enter();
        depth(&TRACKER, DEPTH, 32)
    });
    // Objects: a tracked object (and its parent) against a plain Box of
    // the same payload.
    let plain = best(|| {
        for i in 0..OPS {
            drop(black_box(boxed(i)));
            drop(black_box(boxed(i)));
        }
    });
    let objects = best(|| {
        let _scope = session.enter();
        for i in 0..OPS {
            drop(black_box(tracked(i)));
        }
    });
    let report = session.ms_logoff().report;
    assert_eq!(report.summary.heap_blocks, 0, "every block was freed");
    line("counting", counting, system);
    line("counting_2_threads", counting_2, system_2);
    line("stacks", stacks, system);
    line("stacks_32_sites", stacks_32, system_32);
    line("c_heap_counting", c_counting, system);
    line("c_heap_stacks", c_stacks, system);
    println!(
        "mapileak-bench {profile}/tracked_object ns_per_op={objects:.2} vs_box={:.2}",
        objects / plain
    );
    println!(
        "mapileak-bench {profile}/c_object_deleted ns_per_op={kept:.2} vs_unkept={:.2}",
        kept / unkept
    );

    // Logoff of 100,000 leaked objects in full mode, JSON and HTML.
    mapileak::set_mode(mapileak::Mode::Full);
    mapileak::set_html(true);
    let s = Session::logon(ProviderKind::MessageStore, "report");
    let mut leaked = Vec::with_capacity(100_000);
    {
        let _scope = s.enter();
        for i in 0..100_000u32 {
            leaked.push(tracked(i));
        }
    }
    let t = Instant::now();
    let logoff = s.ms_logoff();
    let seconds = t.elapsed().as_secs_f64();
    let n = logoff.report.objects.len();
    assert_eq!(logoff.files.len(), 2);
    drop(leaked);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "mapileak-bench {profile}/report_100k seconds={seconds:.3} ns_per_object={:.0}",
        seconds * 1e9 / n as f64
    );
}
