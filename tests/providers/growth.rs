//! Snapshots while a logon is open, and what grows between them: the
//! sample store with an unbounded cache, and the same store without it.

use mapileak::reports::growth::{self, Limits, SiteKind};
use mapileak::reports::{Event, Report};
use mapileak_samples::Bug;
use mapileak_samples::host;
use mapileak_samples::store::CACHED_TABLES;

use super::setup;

/// Runs a store session of `syncs` rounds with a snapshot after each, and
/// returns the Logoff's report and this provider's snapshot reports.
fn soak(label: &str, bug: Bug, syncs: u32) -> (Report, Vec<mapileak::Reported>) {
    let _dir = setup();
    let mut taken = Vec::new();
    let mut outcome = host::soak_store(label, bug, |round| {
        let all = mapileak::snapshot(&format!("after sync {round}"));
        // Other tests run in this process: their logons are theirs.
        taken.extend(all.into_iter().filter(|r| r.report.session.label == label));
        round < syncs
    });
    assert_eq!(outcome.logoffs.len(), 1);
    (outcome.logoffs.remove(0).report, taken)
}

fn series(taken: &[mapileak::Reported]) -> growth::Series {
    let reports: Vec<&Report> = taken.iter().map(|r| &r.report).collect();
    let mut all = growth::series(&reports, |i| format!("snapshot report {i}")).unwrap();
    assert_eq!(all.len(), 1, "one process");
    all.remove(0)
}

#[test]
fn a_cache_that_gains_on_every_synchronize_grows_between_snapshots() {
    let (logoff, taken) = soak("soak with a cache", Bug::UnboundedCache, 4);
    // The store empties its cache when it is released: Logoff is clean.
    assert!(logoff.is_clean(), "{logoff:#?}");
    assert_eq!(taken.len(), 4, "one report of this provider per snapshot");
    for (i, r) in taken.iter().enumerate() {
        assert_eq!(r.report.session.event, Event::Snapshot);
        let which = r.report.snapshot.as_ref().expect("a snapshot says which");
        assert_eq!(which.label, format!("after sync {}", i + 1));
        // Each snapshot has a file of its own.
        assert!(!r.files.is_empty(), "snapshot {i} was written");
        assert!(
            r.files[0]
                .to_string_lossy()
                .contains(&format!("snapshot{}", which.seq))
        );
    }
    let mut files: Vec<_> = taken.iter().flat_map(|r| r.files.clone()).collect();
    files.dedup();
    assert_eq!(files.len(), 4);
    // Alive in a snapshot: the store, its logon and the cached tables.
    let kinds: Vec<&str> = taken[0]
        .report
        .objects
        .iter()
        .map(|o| o.kind.as_str())
        .collect();
    assert!(
        kinds.contains(&"IMsgStore") && kinds.contains(&"IMSLogon"),
        "{kinds:?}"
    );
    let s = series(&taken);
    let grown: Vec<&growth::Site> = s.growing(Limits::default()).collect();
    assert_eq!(grown.len(), 1, "{grown:#?}");
    let site = grown[0];
    assert_eq!(
        (site.what, site.kind.as_str()),
        (SiteKind::Object, "IMAPITable")
    );
    let per = CACHED_TABLES as u64;
    assert_eq!(site.counts, [per, 2 * per, 3 * per, 4 * per]);
    assert!((site.count_per_step() - per as f64).abs() < 1e-9);
    let stack = site.stack.as_ref().expect("the site's stack");
    assert!(
        stack.mentions("cache_synchronized"),
        "the cache's own function in {stack:#?}"
    );
}

#[test]
fn a_store_without_the_cache_grows_nothing() {
    let (logoff, taken) = soak("soak without a cache", Bug::None, 5);
    assert!(logoff.is_clean(), "{logoff:#?}");
    assert_eq!(taken.len(), 5);
    let s = series(&taken);
    let grown: Vec<&growth::Site> = s.growing(Limits::default()).collect();
    assert!(grown.is_empty(), "{grown:#?}");
    // What is alive is steady: the store and its logon at every snapshot.
    assert!(
        s.sites
            .iter()
            .any(|x| x.kind == "IMsgStore" && x.counts == [1; 5])
    );
}

#[test]
fn a_snapshot_changes_nothing_the_logoff_reports() {
    let _dir = setup();
    let session = mapileak::Session::logon(mapileak::ProviderKind::AddressBook, "snapshot keeps");
    let table = mapileak::Tracked::in_session(session, &mapileak::kinds::IMAPI_TABLE, "kept");
    let gone = mapileak::RefCount::in_session(session, &mapileak::kinds::IMAPI_STATUS, "status");
    gone.release();
    gone.release(); // an over-release: a finding waiting for the Logoff
    drop(gone);
    let ours = |all: Vec<mapileak::Reported>| {
        all.into_iter()
            .find(|r| r.report.session.label == "snapshot keeps")
            .expect("a report for the logon")
    };
    let first = ours(mapileak::snapshot("one"));
    let second = ours(mapileak::snapshot("two"));
    for r in [&first, &second] {
        let labels: Vec<&str> = r.report.objects.iter().map(|o| o.label.as_str()).collect();
        assert!(labels.contains(&"kept"), "{labels:?}");
        assert!(r.report.findings.is_empty(), "findings stay for the Logoff");
    }
    assert!(
        second.report.snapshot.as_ref().unwrap().seq > first.report.snapshot.as_ref().unwrap().seq
    );
    std::mem::forget(table);
    let logoff = session.ab_logoff().report;
    let labels: Vec<&str> = logoff.objects.iter().map(|o| o.label.as_str()).collect();
    assert_eq!(labels, ["kept"]);
    assert_eq!(logoff.findings.len(), 1);
    assert_eq!(logoff.findings[0].rule, "over-release");
}
