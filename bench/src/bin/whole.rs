//! A provider-like whole program, for `scripts/bench-whole.sh`: one logon,
//! 3,000,000 heap blocks of 16–512 bytes from 20 call sites 5–40 frames deep
//! (`site_00` … `site_19`), 1% of them leaked, and 50,000 COM-like objects
//! with a few AddRef/Release pairs each, all released.
//!
//! Built twice from this one source: plain (no tool at all) and with feature
//! `tool` (mapileak's allocator, `RefCount`, the Logoff report). Usage:
//! `whole [scoped|unscoped] REPORT_DIR`: `unscoped` allocates outside the
//! logon's scope (what mapileak then does is count). It prints one line:
//! `whole work_ms=F peak_kb=N rss_before_kb=N logoff_peak_kb=N logoff_ms=F heap_blocks=N`
//! (the Logoff's own peak: the kernel's high-water mark is reset first).

use std::hint::black_box;
use std::time::Instant;

#[cfg(feature = "tool")]
#[global_allocator]
static ALLOC: mapileak::TrackingAllocator = mapileak::TrackingAllocator::system();

const BLOCKS: u32 = 3_000_000;
const PER_VISIT: u32 = 100;
const OBJECTS: usize = 50_000;
const SITES: u32 = 20;

/// What the program keeps alive at once: a ring of recent blocks, freed
/// as newer ones take their place.
struct Work {
    ring: Vec<Option<Vec<u8>>>,
    next: usize,
    n: u32,
    sum: u64,
}

impl Work {
    /// One block, as a provider uses one: filled, read back, kept a while.
    #[inline(always)]
    fn block(&mut self, site: u32) {
        self.n += 1;
        let size = 16 + (self.n.wrapping_mul(2_654_435_761) >> 7) as usize % 497;
        let mut b = vec![(self.n ^ site) as u8; size];
        b[0] = site as u8;
        self.sum = self
            .sum
            .wrapping_add(b.iter().map(|&x| x as u64).sum::<u64>());
        if self.n.is_multiple_of(100) {
            std::mem::forget(b);
            return;
        }
        let slot = self.next % self.ring.len();
        self.next += 1;
        self.ring[slot] = Some(black_box(b));
    }
}

macro_rules! sites {
    ($($name:ident = $site:literal),*) => {
        $(
            // (Each its own body: identical functions would be merged.)
            #[inline(never)]
            fn $name(w: &mut Work) {
                for _ in 0..PER_VISIT {
                    w.block($site);
                }
                black_box(&*w);
            }
        )*
        const SITE_FNS: [fn(&mut Work); SITES as usize] = [$($name),*];
    };
}

sites!(
    site_00 = 0,
    site_01 = 1,
    site_02 = 2,
    site_03 = 3,
    site_04 = 4,
    site_05 = 5,
    site_06 = 6,
    site_07 = 7,
    site_08 = 8,
    site_09 = 9,
    site_10 = 10,
    site_11 = 11,
    site_12 = 12,
    site_13 = 13,
    site_14 = 14,
    site_15 = 15,
    site_16 = 16,
    site_17 = 17,
    site_18 = 18,
    site_19 = 19
);

/// Down `depth` frames, then the site.
#[inline(never)]
fn descend(w: &mut Work, depth: u32, site: usize) {
    if depth == 0 {
        SITE_FNS[site](w);
    } else {
        descend(w, black_box(depth - 1), site);
    }
    // Not a tail call: each level keeps its frame.
    black_box(depth);
}

/// A COM-like object: a reference count and some state.
struct Object {
    #[cfg(feature = "tool")]
    refs: mapileak::RefCount,
    #[cfg(not(feature = "tool"))]
    refs: std::sync::atomic::AtomicU32,
    _rows: [u64; 4],
}

impl Object {
    #[inline(never)]
    fn new(i: usize) -> Box<Object> {
        Box::new(Object {
            #[cfg(feature = "tool")]
            refs: mapileak::RefCount::new(&mapileak::kinds::IMAPI_TABLE, "table"),
            #[cfg(not(feature = "tool"))]
            refs: std::sync::atomic::AtomicU32::new(1),
            _rows: [i as u64; 4],
        })
    }

    fn add_ref(&self) -> u32 {
        #[cfg(feature = "tool")]
        return self.refs.add_ref();
        #[cfg(not(feature = "tool"))]
        return self.refs.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
    }

    /// A Release that is not the last.
    fn release_ref(&self) -> u32 {
        #[cfg(feature = "tool")]
        return self.refs.release();
        #[cfg(not(feature = "tool"))]
        return self.refs.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) - 1;
    }

    /// Release: the object goes at 0.
    fn release(self: Box<Self>) -> Option<Box<Self>> {
        #[cfg(feature = "tool")]
        let n = self.refs.release();
        #[cfg(not(feature = "tool"))]
        let n = self.refs.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) - 1;
        (n != 0).then_some(self)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (scoped, dir) = match args.as_slice() {
        [_, mode, dir] if mode == "scoped" || mode == "unscoped" => (mode == "scoped", dir),
        _ => {
            eprintln!("usage: whole scoped|unscoped REPORT_DIR");
            std::process::exit(2);
        }
    };
    #[cfg(feature = "tool")]
    let session = {
        mapileak::set_output_dir(dir);
        mapileak::Session::logon(mapileak::ProviderKind::AddressBook, "whole program")
    };
    #[cfg(not(feature = "tool"))]
    let _ = dir;
    #[cfg(feature = "tool")]
    let scope = scoped.then(|| session.enter());
    #[cfg(not(feature = "tool"))]
    let _ = scoped;

    let start = Instant::now();
    let mut objects: Vec<Box<Object>> = (0..OBJECTS).map(Object::new).collect();
    let mut w = Work {
        ring: (0..4096).map(|_| None).collect(),
        next: 0,
        n: 0,
        sum: 0,
    };
    for visit in 0..BLOCKS / PER_VISIT {
        let site = visit % SITES;
        // 5 to 40 frames: site 0 is the shallowest, site 19 the deepest.
        // (main and the runtime below it are some 5 more).
        descend(&mut w, site * 35 / (SITES - 1), site as usize);
        // A few AddRef/Release pairs on each object, spread over the run.
        for k in 0..5 {
            let o = &objects[(visit as usize * 5 + k) % OBJECTS];
            o.add_ref();
            black_box(o.release_ref());
        }
    }
    for o in objects.drain(..) {
        drop(o.release());
    }
    drop(objects);
    black_box(w.sum);
    drop(w);
    let work = start.elapsed();

    #[cfg(feature = "tool")]
    drop(scope);
    let rss_before = status_kb("VmRSS:");
    let peak = status_kb("VmHWM:");
    reset_peak();
    let start = Instant::now();
    #[cfg(feature = "tool")]
    let heap_blocks = session.ab_logoff().report.summary.heap_blocks;
    #[cfg(not(feature = "tool"))]
    let heap_blocks = 0;
    let logoff = start.elapsed();
    println!(
        "whole work_ms={:.1} peak_kb={peak} rss_before_kb={} logoff_peak_kb={} logoff_ms={:.1} heap_blocks={heap_blocks}",
        work.as_secs_f64() * 1e3,
        rss_before,
        status_kb("VmHWM:"),
        logoff.as_secs_f64() * 1e3
    );
}

/// Where the kernel's status of this process is: Linux's /proc. Elsewhere
/// (Windows, Wine) none: the lines say 0 and whole-run shows no memory.
const PROC: [&str; 1] = ["/proc/self"];

/// A line of /proc/self/status, in kB (0 where there is none).
fn status_kb(key: &str) -> u64 {
    PROC.iter()
        .find_map(|p| std::fs::read_to_string(format!("{p}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the kernel's peak-RSS mark (VmHWM), so that after the Logoff it
/// is the Logoff's own peak.
fn reset_peak() {
    for p in PROC {
        if std::fs::write(format!("{p}/clear_refs"), "5").is_ok() {
            return;
        }
    }
}
