use super::*;
use crate::{Buffer, Frame, HeapSite, LeakedObject, ProviderKind, SessionInfo, SnapshotInfo};

fn stack(id: u32, function: &str) -> Stack {
    Stack::new(
        id,
        vec![
            Frame::new("std::rt::lang_start", None, None),
            Frame::new(function, Some("store.rs".into()), Some(id)),
        ],
    )
}

/// One snapshot report of `process`, session `session`: `tables` tables
/// from `Cache::sync`, `blocks` heap blocks of 64 bytes from
/// `Cache::entry`, `buffers` buffers of 100 bytes from `props`.
fn snap(process: u64, seq: u64, session: u64, tables: u64, blocks: u64, buffers: u64) -> Report {
    let mut r = Report::new(SessionInfo::new(
        session,
        ProviderKind::MessageStore,
        "store",
        Event::Snapshot,
    ));
    r.process = process;
    r.snapshot = Some(SnapshotInfo::new(seq, format!("s{seq}"), 1000 * seq));
    // Stack ids differ between reports: the site is its signature.
    let base = (seq * 10) as u32;
    r.stacks = vec![
        stack(base + 1, "store::Cache::sync"),
        stack(base + 2, "store::Cache::entry"),
        stack(base + 3, "store::props"),
    ];
    for i in 0..tables {
        let mut o = LeakedObject::new(i + 1, "IMAPITable", "cached", base + 1);
        o.signature = "sig-table".into();
        o.root = true;
        r.objects.push(o);
    }
    if blocks > 0 {
        let mut h = HeapSite::new(base + 2, blocks, 64 * blocks);
        h.signature = "sig-heap".into();
        r.heap.push(h);
    }
    for _ in 0..buffers {
        let mut b = Buffer::new(base + 3, 100, 0);
        b.signature = "sig-buffer".into();
        r.buffers.push(b);
    }
    r.recount();
    r
}

fn lined_up(reports: &[Report]) -> Vec<Series> {
    let refs: Vec<&Report> = reports.iter().collect();
    series(&refs, |i| format!("r{i}")).unwrap()
}

fn site(s: &Series, what: SiteKind) -> &Site {
    s.sites.iter().find(|x| x.what == what).unwrap()
}

#[test]
fn a_cache_that_gains_on_every_step_grows_with_its_slope() {
    // 3 tables and 5 blocks more per snapshot; the buffers come and go.
    let reports: Vec<Report> = (1..=4)
        .map(|seq| snap(7, seq, 1, 3 * seq, 5 * seq, seq % 2))
        .collect();
    let all = lined_up(&reports);
    assert_eq!(all.len(), 1);
    let s = &all[0];
    assert_eq!(
        s.points.iter().map(|p| p.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let tables = site(s, SiteKind::Object);
    assert_eq!(tables.counts, [3, 6, 9, 12]);
    assert_eq!(tables.kind, "IMAPITable");
    assert!((tables.count_per_step() - 3.0).abs() < 1e-9);
    let heap = site(s, SiteKind::Heap);
    assert_eq!(heap.counts, [5, 10, 15, 20]);
    assert_eq!(heap.bytes, [320, 640, 960, 1280]);
    assert!((heap.bytes_per_step() - 320.0).abs() < 1e-9);
    let growing: Vec<SiteKind> = s.growing(Limits::default()).map(|x| x.what).collect();
    assert_eq!(
        growing,
        [SiteKind::Heap, SiteKind::Object],
        "largest growth first"
    );
    let frames: Vec<&str> = tables
        .stack
        .as_ref()
        .unwrap()
        .frames
        .iter()
        .map(|f| f.function.as_str())
        .collect();
    assert!(frames.contains(&"store::Cache::sync"), "{frames:?}");
    // The finding's signature is the site's, told apart.
    assert_ne!(tables.growth_signature(), tables.signature);
    assert_ne!(tables.growth_signature(), heap.growth_signature());
}

#[test]
fn steady_state_and_ups_and_downs_are_not_growth() {
    let steady: Vec<Report> = (1..=5).map(|seq| snap(7, seq, 1, 4, 10, 1)).collect();
    assert_eq!(lined_up(&steady)[0].growing(Limits::default()).count(), 0);
    // Up, up, down, up: not every step.
    let wobbly: Vec<Report> = [1, 2, 3, 2, 4]
        .iter()
        .zip(1..)
        .map(|(&n, seq)| snap(7, seq, 1, n, 0, 0))
        .collect();
    let s = &lined_up(&wobbly)[0];
    assert!(!site(s, SiteKind::Object).count_grew_every_step());
    assert_eq!(s.growing(Limits::default()).count(), 0);
}

#[test]
fn two_snapshots_are_too_few_and_a_threshold_holds_back_slow_growth() {
    let two: Vec<Report> = (1..=2).map(|seq| snap(7, seq, 1, seq, 0, 0)).collect();
    assert_eq!(lined_up(&two)[0].growing(Limits::default()).count(), 0);
    let slow: Vec<Report> = (1..=4).map(|seq| snap(7, seq, 1, seq, 0, 0)).collect();
    let s = &lined_up(&slow)[0];
    assert_eq!(s.growing(Limits::default()).count(), 1);
    let limits = Limits {
        count: 2.0,
        bytes: 1.0,
    };
    assert_eq!(s.growing(limits).count(), 0);
}

#[test]
fn a_site_absent_at_first_counts_zero_and_logons_add_up() {
    // Snapshot 1 has no buffer; each later one has one more, split over
    // two logons' reports.
    let mut reports = vec![snap(7, 1, 1, 0, 0, 0)];
    for seq in 2..=4 {
        reports.push(snap(7, seq, 1, 0, 0, seq - 1));
        reports.push(snap(7, seq, 2, 0, 0, 1));
    }
    let s = &lined_up(&reports)[0];
    let buffers = site(s, SiteKind::Buffer);
    assert_eq!(buffers.counts, [0, 2, 3, 4]);
    assert_eq!(buffers.bytes, [0, 200, 300, 400]);
    assert_eq!(s.growing(Limits::default()).count(), 1);
}

#[test]
fn growth_in_bytes_alone_counts_by_the_bytes_limit() {
    let mut reports: Vec<Report> = (1..=3).map(|seq| snap(7, seq, 1, 0, 2, 0)).collect();
    for (r, bytes) in reports.iter_mut().zip([100, 400, 900]) {
        r.heap[0].bytes = bytes;
    }
    let s = &lined_up(&reports)[0];
    assert_eq!(s.growing(Limits::default()).count(), 1);
    let limits = Limits {
        count: 1.0,
        bytes: 1000.0,
    };
    assert_eq!(s.growing(limits).count(), 0);
}

#[test]
fn each_process_is_its_own_series_in_time_order() {
    // Given out of order, and mixed.
    let reports = vec![
        snap(9, 3, 1, 3, 0, 0),
        snap(7, 2, 1, 1, 0, 0),
        snap(9, 1, 1, 1, 0, 0),
        snap(9, 2, 1, 2, 0, 0),
        snap(7, 1, 1, 1, 0, 0),
    ];
    let all = lined_up(&reports);
    assert_eq!(all.iter().map(|s| s.process).collect::<Vec<_>>(), [7, 9]);
    assert_eq!(site(&all[1], SiteKind::Object).counts, [1, 2, 3]);
    assert_eq!(all[0].points.len(), 2);
}

#[test]
fn a_report_that_is_no_snapshot_is_refused_by_name() {
    let mut logoff = snap(7, 1, 1, 1, 0, 0);
    logoff.session.event = Event::Logoff;
    let reports = [snap(7, 1, 1, 1, 0, 0), logoff];
    let refs: Vec<&Report> = reports.iter().collect();
    let err = series(&refs, |i| format!("file{i}.json")).unwrap_err();
    assert!(err.0.starts_with("file1.json: a logoff report"), "{err}");
}

#[test]
fn numbers_from_a_hostile_file_saturate() {
    let mut reports: Vec<Report> = (1..=3).map(|seq| snap(7, seq, 1, 0, 1, 0)).collect();
    for r in &mut reports {
        let mut twin = r.heap[0].clone();
        twin.blocks = u64::MAX;
        twin.bytes = u64::MAX;
        r.heap.push(twin);
    }
    let s = &lined_up(&reports)[0];
    assert_eq!(site(s, SiteKind::Heap).counts, [u64::MAX; 3]);
    assert_eq!(s.growing(Limits::default()).count(), 0);
}
