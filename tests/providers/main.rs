//! The sample providers, run by the sample host, and what their Logoff
//! reports say: one test binary, no global allocator.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier, Mutex, RwLock, RwLockReadGuard};

use mapileak::reports::{self, LeakedObject, Report};
use mapileak::{ProviderKind, RefCount, Session, Tracked, kinds};
use mapileak_samples::Bug;
use mapileak_samples::host::{self, Provider};

const DIR: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/mapileak-providers");

/// Held (shared) while a test logs off, so the one test that points the
/// process-wide report directory somewhere unwritable runs alone.
static OUTPUT_DIR: RwLock<()> = RwLock::new(());

#[cfg(windows)]
mod debugger;
#[path = "../support/examples.rs"]
mod examples;
mod growth;
mod rules;

fn setup() -> RwLockReadGuard<'static, ()> {
    let guard = OUTPUT_DIR.read().unwrap_or_else(|e| e.into_inner());
    mapileak::set_output_dir(DIR);
    quiet::keep_process_end_traces_out_of_the_log();
    guard
}

#[path = "../support/quiet.rs"]
mod quiet;
#[path = "../support/start.rs"]
mod start;
#[path = "../support/watchdog.rs"]
mod watchdog;

fn run(provider: Provider, leak: Bug) -> mapileak::Reported {
    let _dir = setup();
    let mut outcome = host::run(provider, &format!("{provider:?}-{leak:?}"), leak);
    assert_eq!(outcome.logoffs.len(), 1, "one Logoff per session");
    outcome.logoffs.remove(0)
}

/// `(kind, root, parent kind)` of every leaked object, sorted.
fn shape(r: &Report) -> BTreeSet<(String, bool, Option<String>)> {
    r.objects
        .iter()
        .map(|o| {
            let parent = o
                .parent
                .map(|p| r.object(p).expect("parent is in the report").kind.clone());
            (o.kind.clone(), o.root, parent)
        })
        .collect()
}

fn set(items: &[(&str, bool, Option<&str>)]) -> BTreeSet<(String, bool, Option<String>)> {
    items
        .iter()
        .map(|(k, r, p)| (k.to_string(), *r, p.map(str::to_owned)))
        .collect()
}

fn created_stack<'a>(r: &'a Report, o: &LeakedObject) -> &'a reports::Stack {
    r.stack(o.created).expect("creation stack is in the report")
}

fn leaked<'a>(r: &'a Report, kind: &str) -> &'a LeakedObject {
    r.objects
        .iter()
        .find(|o| o.kind == kind)
        .unwrap_or_else(|| panic!("no leaked {kind} in {r:#?}"))
}

/// Some tests here reach into mapileak through its test hooks (feature
/// `test-hooks`): without them they would not be compiled, so this one
/// fails instead of letting them skip silently.
#[test]
#[cfg(not(feature = "test-hooks"))]
fn the_test_hooks_are_on() {
    panic!("run the tests with feature test-hooks: scripts/test.sh does");
}

#[test]
fn clean_providers_report_nothing() {
    for p in Provider::ALL {
        let logoff = run(p, Bug::None);
        assert!(logoff.report.is_clean(), "{p:?}: {:#?}", logoff.report);
        assert_eq!(logoff.report.summary.leaked_objects, 0);
    }
}

#[test]
fn forgotten_table_is_the_only_leak_and_names_its_creator() {
    for (p, creator) in [
        (Provider::MessageStore, "refresh_unread_count"),
        (Provider::AddressBook, "resolve_names"),
        (Provider::Transport, "poll_queue"),
    ] {
        let r = run(p, Bug::Table).report;
        assert_eq!(shape(&r), set(&[("IMAPITable", true, None)]), "{p:?}");
        let table = leaked(&r, "IMAPITable");
        let stack = created_stack(&r, table);
        assert!(
            stack.mentions(creator),
            "{p:?}: {creator} not in {stack:#?}"
        );
        assert!(stack.mentions("Table::open"), "{p:?}: {stack:#?}");
        assert!(r.findings.is_empty(), "{p:?}: {:#?}", r.findings);
        // Symbolized with source positions, innermost frame first.
        assert!(
            stack.frames[0].file.is_some() && stack.frames[0].line.is_some(),
            "{stack:#?}"
        );
    }
}

#[test]
fn a_forgotten_holder_is_the_root_and_what_it_holds_is_indirect() {
    let r = run(Provider::MessageStore, Bug::Chain).report;
    assert_eq!(
        shape(&r),
        set(&[
            ("IMessage", true, None),
            ("IAttach", false, Some("IMessage")),
            ("IMAPIFolder", false, Some("IMessage")),
        ])
    );
    let message = leaked(&r, "IMessage");
    assert!(created_stack(&r, message).mentions("file_incoming_message"));
    assert!(created_stack(&r, message).mentions("CreateMessage"));
    let attach = leaked(&r, "IAttach");
    assert_eq!(attach.opened_from, Some(message.id));
    assert!(created_stack(&r, attach).mentions("CreateAttach"));
    assert!(
        leaked(&r, "IMAPIFolder").opened_from.is_some(),
        "opened from the store"
    );
    assert_eq!((r.summary.leaked_objects, r.summary.leak_roots), (3, 1));

    let r = run(Provider::AddressBook, Bug::Chain).report;
    assert_eq!(
        shape(&r),
        set(&[
            ("IDistList", true, None),
            ("IMailUser", false, Some("IDistList")),
            ("IABContainer", false, Some("IDistList")),
        ])
    );
    assert!(created_stack(&r, leaked(&r, "IDistList")).mentions("expand_dist_list"));

    let r = run(Provider::Transport, Bug::Chain).report;
    assert_eq!(
        shape(&r),
        set(&[
            ("IMessage", true, None),
            ("IAttach", false, Some("IMessage"))
        ])
    );
    assert!(created_stack(&r, leaked(&r, "IMessage")).mentions("deliver_inbound"));
}

#[test]
fn over_released_status_object_is_a_finding_with_the_releasing_stack() {
    for (p, logoff) in [
        (Provider::MessageStore, "IMSLogon_Impl>::Logoff"),
        (Provider::AddressBook, "IABLogon_Impl>::Logoff"),
        (Provider::Transport, "IXPLogon_Impl>::TransportLogoff"),
    ] {
        let r = run(p, Bug::OverRelease).report;
        assert!(r.objects.is_empty(), "{p:?}: {:#?}", r.objects);
        let rules: Vec<&str> = r.findings.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(rules, ["over-release"], "{p:?}");
        let f = &r.findings[0];
        assert!(f.message.contains("IMAPIStatus"), "{}", f.message);
        // Blamed: the client's Release that took the count to 0 while the
        // logon still owned its reference (OpenStatusEntry handed the
        // cached object out without an AddRef)...
        let stack = r.stack(f.stack.expect("stack")).expect("stack in report");
        assert!(stack.mentions("status_release"), "{p:?}: {stack:#?}");
        // ... and shown: the logon's own Release at Logoff, which found 0.
        let also = r
            .stack(f.also.expect("the later Release"))
            .expect("in report");
        assert!(also.mentions("release_own"), "{p:?}: {also:#?}");
        assert!(also.mentions(logoff), "{p:?}: {logoff} not in {also:#?}");
        // The object is freed and in no objects[] entry: the finding says
        // what it was, and where it was made.
        let subject = f.subject.as_ref().expect("the finding's object, described");
        assert_eq!(subject.kind, "IMAPIStatus");
        assert_eq!(Some(subject.label.as_str()), f.message.split('"').nth(1));
        let created = r
            .stack(subject.created)
            .expect("creation stack in the report");
        assert!(created.mentions("Status::new"), "{p:?}: {created:#?}");
        assert_eq!(
            mapileak::ObjectId::from_report(f.object.unwrap()),
            None,
            "freed"
        );
    }
}

mapileak::declare_kind! {
    static ICLONED = ("ICloned", 0x6b1d2c3e_4f50_4a6b_8c7d_9e0f1a2b3c4d, Object, history: true);
}

#[inline(never)]
fn owner_open(s: Session) -> RefCount {
    RefCount::in_session(s, &ICLONED, "the owner's table")
}

#[inline(never)]
fn clone_table(t: &RefCount) {
    t.add_ref();
}

#[inline(never)]
fn release_twice(t: &RefCount) {
    t.release();
    t.release();
}

#[inline(never)]
fn owner_close(t: &RefCount) {
    t.release();
}

#[test]
fn an_over_release_blames_the_release_that_took_the_count_to_zero() {
    let _dir = setup();
    // A table cloned in one place and released twice in another; the
    // owner's own (correct) Release comes last and finds the count at 0.
    let s = Session::logon(ProviderKind::MessageStore, "cloned");
    let t = owner_open(s);
    clone_table(&t);
    release_twice(&t);
    owner_close(&t);
    let r = s.ms_logoff().report;
    let [f] = &r.findings[..] else {
        panic!("one finding: {:#?}", r.findings)
    };
    assert_eq!(f.rule, "over-release");
    let at = |id: u32| r.stack(id).expect("stack in the report");
    assert!(
        at(f.stack.unwrap()).mentions("release_twice"),
        "the culprit: {f:#?}"
    );
    assert!(at(f.also.expect("the later Release")).mentions("owner_close"));
    // The history switched on for the kind comes with the finding, though
    // the object is gone: Create, the clone's AddRef, three Releases.
    let subject = f.subject.as_ref().expect("subject");
    use mapileak::reports::RefOp::*;
    let total = |op| -> u32 {
        subject
            .events
            .iter()
            .filter(|e| e.op == op)
            .map(|e| e.count)
            .sum()
    };
    assert_eq!(
        (total(Create), total(AddRef), total(Release)),
        (1, 1, 3),
        "{subject:#?}"
    );
}

#[test]
fn signatures_are_identical_across_runs() {
    for leak in [Bug::Table, Bug::Chain, Bug::OverRelease] {
        let sigs = |r: &Report| -> Vec<String> {
            let mut s: Vec<String> = r.objects.iter().map(|o| o.signature.clone()).collect();
            s.extend(r.findings.iter().map(|f| f.signature.clone()));
            s.sort();
            s
        };
        let a = sigs(&run(Provider::MessageStore, leak).report);
        let b = sigs(&run(Provider::MessageStore, leak).report);
        assert!(!a.is_empty());
        assert_eq!(a, b, "{leak:?}");
    }
    // Different leaks, different signatures.
    let table = run(Provider::Transport, Bug::Table).report.objects[0]
        .signature
        .clone();
    let message = run(Provider::Transport, Bug::Chain).report;
    assert!(message.objects.iter().all(|o| o.signature != table));
}

#[test]
fn the_json_report_holds_what_logoff_returned() {
    let logoff = run(Provider::AddressBook, Bug::Chain);
    assert_eq!(logoff.files.len(), 1);
    let path = &logoff.files[0];
    assert_eq!(path.extension().and_then(|e| e.to_str()), Some("json"));
    let read = reports::read_file(path).expect("report parses");
    assert_eq!(read, logoff.report);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(json["format"], "mapileak-report");
    assert_eq!(json["version"], 1);
    assert_eq!(json["session"]["provider"], "address_book");
    assert_eq!(json["session"]["event"], "logoff");
    assert_eq!(json["summary"]["leaked_objects"], 3);
    assert_eq!(json["summary"]["leak_roots"], 1);
    let frame = &json["stacks"][0]["frames"][0];
    assert!(
        frame["function"].is_string() && frame["file"].is_string() && frame["line"].is_u64(),
        "{frame}"
    );
}

mapileak::declare_kind! {
    /// A provider-declared kind with history on, for the balancer.
    static ICACHED_ENTRY = ("ICachedEntry", 0x6b1e6a52_93c4_4d0e_8f55_2d3a0c4e7b91, Object, history: true);
}

#[inline(never)]
fn open_entry(session: Session) -> RefCount {
    RefCount::in_session(session, &ICACHED_ENTRY, "entry")
}

#[inline(never)]
fn use_entry(e: &RefCount) {
    e.add_ref();
    e.release();
}

#[inline(never)]
fn cache_entry_and_forget(e: &RefCount) {
    e.add_ref();
}

#[inline(never)]
fn close_entry(e: RefCount) {
    e.release();
    std::mem::forget(e); // the object is still referenced: it stays alive
}

#[test]
fn balancer_names_the_addref_no_release_matched() {
    let _dir = setup();
    assert!(
        mapileak::kind::by_name("ICachedEntry").is_some(),
        "declared kinds are registered"
    );
    let session = Session::logon(ProviderKind::MessageStore, "balancer");
    let e = open_entry(session);
    use_entry(&e);
    cache_entry_and_forget(&e);
    close_entry(e);
    let r = session.ms_logoff().report;
    let o = leaked(&r, "ICachedEntry");
    assert_eq!(o.refcount, Some(1));
    let unmatched: Vec<_> = o.unmatched_addrefs().collect();
    assert_eq!(unmatched.len(), 1, "{:#?}", o.events);
    let stack = r.stack(unmatched[0].stack).unwrap();
    assert!(stack.mentions("cache_entry_and_forget"), "{stack:#?}");
    let total: u32 = o.events.iter().map(|e| e.count).sum();
    assert_eq!(total, 5, "create, 2 AddRef, 2 Release: {:#?}", o.events);
}

#[test]
fn objects_held_by_nobody_outside_a_cycle_are_rooted_at_the_earliest() {
    let _dir = setup();
    let session = Session::logon(ProviderKind::MessageStore, "cycle");
    let _scope = session.enter();
    let folder = Tracked::new(&kinds::IMAPI_FOLDER, "Inbox");
    let message = Tracked::new(&kinds::IMESSAGE, "m")
        .opened_from(folder.id())
        .holding(folder.id());
    folder.hold(message.id());
    let (fid, mid) = (folder.id().get(), message.id().get());
    std::mem::forget((folder, message));
    let r = session.ms_logoff().report;
    let f = r.object(fid).unwrap();
    let m = r.object(mid).unwrap();
    assert!(f.root && !m.root);
    assert_eq!(m.parent, Some(fid));
    assert_eq!(m.opened_from, Some(fid));
}

#[test]
fn eight_threads_racing_one_session_while_another_logs_off_lose_nothing() {
    let _dir = setup();
    mapileak::declare_kind! {
        static ISTRESS = ("IStress", 0x2f0c7d1a_55b3_4c9e_a1d4_6e8b3f2c9a07, Object, history: true);
    }
    const THREADS: usize = 8;
    const COUNTED: usize = 200; // RefCount objects per thread; 1 in 10 kept
    const GUARDED: usize = 100; // Tracked objects per thread; 1 in 4 kept
    let a = Session::logon(ProviderKind::MessageStore, "stress-a");
    let b = Session::logon(ProviderKind::AddressBook, "stress-b");
    let b_objects: Vec<Tracked> = (0..50)
        .map(|i| Tracked::in_session(b, &kinds::IMAIL_USER, format!("u{i}")))
        .collect();
    let b_ids: BTreeSet<u64> = b_objects.iter().map(|t| t.id().get()).collect();
    std::mem::forget(b_objects);

    let start = Arc::new(Barrier::new(THREADS + 1));
    let b_report = Arc::new(Mutex::new(None));
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let start = start.clone();
        handles.push(std::thread::spawn(move || {
            let _scope = a.enter();
            start.wait();
            for i in 0..COUNTED {
                let rc = RefCount::new(&ISTRESS, format!("t{t}-{i}"));
                for _ in 0..3 {
                    rc.add_ref();
                }
                rc.release();
                rc.release();
                if i % 10 == 0 {
                    std::mem::forget(rc); // count stays 2
                } else {
                    assert_eq!(rc.release(), 1);
                    assert_eq!(rc.release(), 0);
                }
            }
            for i in 0..GUARDED {
                let g = Tracked::new(&kinds::IMAPI_TABLE, format!("t{t}-table{i}"));
                if i % 4 == 0 {
                    std::mem::forget(g);
                }
            }
        }));
    }
    let logoff_b = {
        let start = start.clone();
        let b_report = b_report.clone();
        std::thread::spawn(move || {
            start.wait();
            *b_report.lock().unwrap() = Some(b.ab_logoff().report);
        })
    };
    for h in handles {
        h.join().unwrap();
    }
    logoff_b.join().unwrap();

    let rb = b_report.lock().unwrap().take().unwrap();
    let got_b: BTreeSet<u64> = rb.objects.iter().map(|o| o.id).collect();
    assert_eq!(got_b, b_ids, "session B reports exactly its own objects");

    let ra = a.ms_logoff().report;
    let counted: Vec<_> = ra.objects.iter().filter(|o| o.kind == "IStress").collect();
    let guarded = ra.objects.iter().filter(|o| o.kind == "IMAPITable").count();
    assert_eq!(counted.len(), THREADS * COUNTED / 10);
    assert_eq!(guarded, THREADS * GUARDED / 4);
    assert_eq!(ra.objects.len(), counted.len() + guarded);
    for o in counted {
        assert_eq!(o.refcount, Some(2), "{o:#?}");
        let events: u32 = o.events.iter().map(|e| e.count).sum();
        assert_eq!(events, 6, "create + 3 AddRef + 2 Release: {o:#?}");
        let unmatched: u32 = o.events.iter().map(|e| e.unmatched).sum();
        assert_eq!(unmatched, 2);
    }
}

#[path = "../support/capture.rs"]
mod capture;

/// Serializes the tests that look at events: one of them changes the
/// process-wide mode for a moment.
static EVENT_TESTS: Mutex<()> = Mutex::new(());

#[test]
fn logoff_emits_one_warn_event_per_root_and_a_summary() {
    let _serial = EVENT_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let sub = capture::Capture::default();
    let logoff =
        tracing::subscriber::with_default(sub.clone(), || run(Provider::MessageStore, Bug::All));
    let session = logoff.report.session.id.to_string();
    let events: Vec<_> = sub
        .0
        .lock()
        .unwrap()
        .iter()
        // This session's events: the provider's Shutdown report follows with its own.
        .filter(|e| e.target == "mapileak" && e.fields.get("session") == Some(&session))
        .cloned()
        .collect();
    let roots: Vec<_> = events
        .iter()
        .filter(|e| e.fields.contains_key("kind"))
        .collect();
    assert_eq!(
        roots.len(),
        logoff.report.summary.leak_roots as usize,
        "{events:#?}"
    );
    assert_eq!(roots.len(), 2);
    let table = roots
        .iter()
        .find(|e| e.fields["kind"] == "IMAPITable")
        .expect("table event");
    assert_eq!(table.level, tracing::Level::WARN);
    assert_eq!(table.fields["label"], "contents of Inbox");
    assert!(
        table.fields["stack"].contains("refresh_unread_count"),
        "{table:#?}"
    );
    assert!(table.fields.contains_key("refcount"));
    let message = roots
        .iter()
        .find(|e| e.fields["kind"] == "IMessage")
        .expect("message event");
    assert_eq!(message.fields["indirect"], "2");
    let findings: Vec<_> = events
        .iter()
        .filter(|e| e.fields.contains_key("rule"))
        .collect();
    // The over-release, and the support object the leaked chain keeps
    // (message -> folder -> store -> its support reference).
    assert_eq!(findings.len(), logoff.report.findings.len());
    assert!(
        findings.iter().any(|f| f.fields["rule"] == "over-release"),
        "{findings:#?}"
    );
    let summary: Vec<_> = events
        .iter()
        .filter(|e| e.fields.contains_key("leaked_objects"))
        .collect();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].fields["leaked_objects"], "4");
    assert!(
        summary[0].fields["message"].contains(".json"),
        "summary names the report file"
    );
}

#[test]
fn full_mode_traces_the_largest_roots_then_counts_the_rest() {
    // Process-wide setting: restored at once, with the other event tests out.
    let _serial = EVENT_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let sub = capture::Capture::default();
    let logoff = tracing::subscriber::with_default(sub.clone(), || {
        let _dir = setup();
        let s = Session::logon(ProviderKind::MessageStore, "many roots");
        // Five roots of five kinds (five signatures, five lines): objects
        // holding 0, 3, 1, 4 and 2 messages.
        let kinds = [
            &kinds::IMAPI_TABLE,
            &kinds::IMAPI_FOLDER,
            &kinds::IATTACH,
            &kinds::IMAPI_STATUS,
            &kinds::IMAPI_PROP,
        ];
        for (held, kind) in [0, 3, 1, 4, 2].into_iter().zip(kinds) {
            let table = Tracked::in_session(s, kind, format!("holds {held}"));
            for _ in 0..held {
                let m = Tracked::in_session(s, &kinds::IMESSAGE, "m");
                table.hold(m.id());
                std::mem::forget(m);
            }
            std::mem::forget(table);
        }
        mapileak::set_trace_roots(2);
        let r = s.ms_logoff();
        mapileak::set_trace_roots(20);
        r
    });
    assert_eq!(logoff.report.summary.leak_roots, 5);
    let session = logoff.report.session.id.to_string();
    let events: Vec<_> = sub
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.fields.get("session") == Some(&session))
        .cloned()
        .collect();
    let roots: Vec<&str> = events
        .iter()
        .filter_map(|e| e.fields.get("label").map(String::as_str))
        .collect();
    assert_eq!(
        roots,
        ["holds 4", "holds 3"],
        "the two largest, largest first"
    );
    let rest: Vec<&str> = events
        .iter()
        .map(|e| e.fields["message"].as_str())
        .filter(|m| m.starts_with("and "))
        .collect();
    assert_eq!(rest.len(), 1, "{events:#?}");
    assert!(
        rest[0].starts_with("and 3 more leak root(s) (6 leaked object(s)): see ")
            && rest[0].ends_with(".json"),
        "{}",
        rest[0]
    );
}

/// A hundred tables leaked from one call path (each holding a message):
/// one console line for all of them, with their count, not a hundred.
#[test]
fn leak_roots_of_one_signature_are_one_line() {
    let _serial = EVENT_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let sub = capture::Capture::default();
    let logoff = tracing::subscriber::with_default(sub.clone(), || {
        let _dir = setup();
        let s = Session::logon(ProviderKind::MessageStore, "one path");
        for i in 0..100 {
            let table = Tracked::in_session(s, &kinds::IMAPI_TABLE, format!("table {i}"));
            let m = Tracked::in_session(s, &kinds::IMESSAGE, "m");
            table.hold(m.id());
            std::mem::forget((table, m));
        }
        s.ms_logoff()
    });
    assert_eq!(logoff.report.summary.leak_roots, 100);
    let session = logoff.report.session.id.to_string();
    let events: Vec<_> = sub
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.fields.get("session") == Some(&session) && e.fields.contains_key("kind"))
        .cloned()
        .collect();
    let [line] = &events[..] else {
        panic!("{events:#?}")
    };
    assert_eq!(line.fields["roots"], "100");
    assert!(
        line.fields["message"]
            .starts_with("leaked 100 IMAPITable objects like \"table 0\" created in "),
        "{}",
        line.fields["message"]
    );
    assert!(
        line.fields["message"].ends_with("(200 leaked object(s) with what they hold)"),
        "{}",
        line.fields["message"]
    );
}

#[test]
fn summary_mode_emits_only_the_summary() {
    // The mode is process-wide: restore it at once, and keep the other
    // event test out meanwhile.
    let _serial = EVENT_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let sub = capture::Capture::default();
    let report = tracing::subscriber::with_default(sub.clone(), || {
        let _dir = setup();
        let s = Session::logon(ProviderKind::Transport, "summary-mode");
        std::mem::forget(Tracked::in_session(s, &kinds::IMAPI_TABLE, "t"));
        mapileak::set_mode(mapileak::Mode::Summary);
        let r = s.transport_logoff();
        mapileak::set_mode(mapileak::Mode::Full);
        r
    });
    assert_eq!(report.report.summary.leaked_objects, 1);
    let events = sub.0.lock().unwrap();
    assert!(
        events.iter().all(|e| !e.fields.contains_key("kind")),
        "{events:#?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.fields.contains_key("leaked_objects"))
            .count(),
        1
    );
}

#[test]
fn an_unwritable_report_directory_costs_the_file_and_nothing_else() {
    let _alone = OUTPUT_DIR.write().unwrap_or_else(|e| e.into_inner());
    let file = std::path::Path::new(DIR).join("not-a-directory");
    std::fs::create_dir_all(DIR).unwrap();
    std::fs::write(&file, b"a file where the report directory should be").unwrap();
    mapileak::set_output_dir(file.join("reports"));
    let logoff = host::run(Provider::MessageStore, "unwritable", Bug::Table)
        .logoffs
        .remove(0);
    mapileak::set_output_dir(DIR);
    assert!(logoff.files.is_empty(), "{:?}", logoff.files);
    assert_eq!(
        logoff.report.summary.leaked_objects, 1,
        "the report itself is intact"
    );
}

#[test]
fn a_panicking_subscriber_does_not_unwind_out_of_logoff() {
    struct Panics;
    impl tracing::Subscriber for Panics {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {
            panic!("the host's subscriber is broken");
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
    let logoff = tracing::subscriber::with_default(Panics, || {
        std::panic::catch_unwind(|| run(Provider::MessageStore, Bug::Table))
    })
    .expect("Logoff returned normally");
    assert_eq!(logoff.report.summary.leaked_objects, 1);
    assert_eq!(logoff.files.len(), 1, "the report is written all the same");
}

#[test]
fn every_logoff_keeps_its_own_report_file() {
    let _dir = setup();
    let s = Session::logon(ProviderKind::AddressBook, "twice");
    std::mem::forget(Tracked::in_session(s, &kinds::IMAPI_TABLE, "t"));
    let first = s.ab_logoff();
    let second = s.ab_logoff();
    assert_ne!(first.files, second.files, "two Logoffs, two files");
    for f in first.files.iter().chain(&second.files) {
        assert!(f.exists(), "{} is still on disk", f.display());
    }
    assert!(
        second
            .report
            .findings
            .iter()
            .any(|f| f.rule == "out-of-order" && f.message.contains("called a second time")),
        "{:#?}",
        second.report.findings
    );
    // Two threads logging off one session at once: two whole reports.
    let s = Session::logon(ProviderKind::Transport, "racing");
    std::mem::forget(Tracked::in_session(s, &kinds::IMAPI_TABLE, "t"));
    let files: Vec<_> = std::thread::scope(|scope| {
        let a = scope.spawn(|| s.transport_logoff().files);
        let b = scope.spawn(|| s.transport_logoff().files);
        [a.join().unwrap(), b.join().unwrap()].concat()
    });
    assert_eq!(files.len(), 2);
    assert_ne!(files[0], files[1]);
    for f in &files {
        reports::read_file(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

#[test]
fn an_empty_output_dir_means_the_default() {
    let _alone = OUTPUT_DIR.write().unwrap_or_else(|e| e.into_inner());
    mapileak::set_output_dir("");
    let default = mapileak::output_dir();
    mapileak::set_output_dir(DIR);
    assert_ne!(default, std::path::PathBuf::new());
    assert!(
        default.starts_with(std::env::temp_dir()),
        "{}",
        default.display()
    );
}

/// The default report directory is in the shared temporary directory: it is
/// made private, and one another user could have prepared is refused.
#[cfg(unix)]
#[test]
fn the_default_report_directory_is_private_or_refused() {
    use start::Start as _;
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("shared-tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let demo = |tmp: &std::path::Path| {
        std::process::Command::new(examples::example("leaky_store"))
            .env_remove("MAPILEAK_DIR")
            .env("TMPDIR", tmp)
            .retried(std::process::Command::output)
            .unwrap()
    };
    let out = demo(&tmp);
    assert!(out.status.success());
    let mine: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let mode = std::fs::metadata(&mine[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{}", mine[0].display());
    assert!(
        std::fs::read_dir(&mine[0]).unwrap().count() >= 2,
        "reports written"
    );

    // Someone made it world-writable (or made it first): refused.
    std::fs::remove_dir_all(&mine[0]).unwrap();
    std::fs::create_dir(&mine[0]).unwrap();
    std::fs::set_permissions(&mine[0], std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = demo(&tmp);
    assert!(out.status.success(), "the provider carries on");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not safe for reports"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&mine[0]).unwrap().count(),
        0,
        "nothing written there"
    );
}

#[test]
fn history_is_a_bounded_ring_and_says_what_it_dropped() {
    let _dir = setup();
    let s = Session::logon(ProviderKind::MessageStore, "long history");
    let t = RefCount::in_session(s, &ICLONED, "refreshed table");
    for _ in 0..5000 {
        t.add_ref();
    }
    std::mem::forget(t);
    let r = s.ms_logoff().report;
    let o = leaked(&r, "ICloned");
    let kept: u32 = o.events.iter().map(|e| e.count).sum();
    assert_eq!(kept, 4096, "the latest 4,096 events");
    assert_eq!(
        o.events_dropped,
        5001 - 4096,
        "the Create and the oldest AddRefs"
    );
    assert_eq!(o.refcount, Some(5001));
}

/// A provider's strings (labels, and kinds made from C names) hold line
/// breaks, ANSI escapes and CI workflow commands: the events a `tracing`
/// subscriber gets show them on one line, every field included, so no fake
/// log line, annotation or clear-screen reaches a log.
#[test]
fn labels_and_kinds_cannot_forge_log_lines_through_tracing_fields() {
    static EVIL: mapileak::Kind = mapileak::Kind::new(
        "IEvil\nINFO mapileak: 0 leaked objects\x1b[2J",
        0,
        mapileak::Role::Object,
        false,
    );
    let _serial = EVENT_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let sub = capture::Capture::default();
    let session = Session::logon(ProviderKind::AddressBook, "forged\r\n::error file=a.rs::x");
    let logoff = tracing::subscriber::with_default(sub.clone(), || {
        std::mem::forget(Tracked::in_session(
            session,
            &EVIL,
            "label\n::error file=x.rs,line=1::pwned\x1b[31m",
        ));
        let over = RefCount::in_session(session, &EVIL, "over\nreleased\u{2028}x");
        over.release();
        over.release();
        session.ab_logoff()
    });
    assert_eq!(logoff.report.summary.leaked_objects, 1);
    assert_eq!(logoff.report.findings.len(), 1);
    let id = session.id().to_string();
    let events: Vec<_> = sub
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.target == "mapileak" && e.fields.get("session") == Some(&id))
        .cloned()
        .collect();
    assert!(events.len() >= 3, "root, finding, summary: {events:#?}");
    assert!(events.iter().any(|e| e.fields.contains_key("kind")));
    for e in &events {
        for (name, value) in &e.fields {
            // The stack is one frame per line by design; each frame's text
            // on its line.
            let lines: Vec<&str> = if name == "stack" {
                value.lines().collect()
            } else {
                vec![value.as_str()]
            };
            for line in lines {
                assert!(
                    !line.contains(['\n', '\r', '\x1b', '\u{2028}']),
                    "{name}: {line:?}"
                );
            }
        }
    }
    let root = events
        .iter()
        .find(|e| e.fields.contains_key("kind"))
        .unwrap();
    assert_eq!(
        root.fields["kind"],
        "IEvil\\nINFO mapileak: 0 leaked objects\\u{1b}[2J"
    );
    assert_eq!(
        root.fields["label"],
        "label\\n::error file=x.rs,line=1::pwned\\u{1b}[31m"
    );
}
