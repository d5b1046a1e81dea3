//! The shutdown rules: each scenario trips exactly its rule, with a
//! function name in the finding's stack, for every provider type the rule
//! applies to; the clean scenarios trip none.

use std::path::PathBuf;
use std::process::Command;

use mapileak::reports::{Event, Finding, Report};
use mapileak_samples::host::{self, Provider, StorePath};
use mapileak_samples::{Bug, Outcome};

use super::examples::example;
use super::setup;
use crate::start::Start as _;

fn outcome(p: Provider, bug: Bug) -> Outcome {
    let _dir = setup();
    host::run(p, &format!("rules-{p:?}-{bug:?}"), bug)
}

fn store_outcome(bug: Bug, path: StorePath) -> Outcome {
    let _dir = setup();
    host::run_store(&format!("rules-store-{bug:?}-{path:?}"), bug, path)
}

fn logoff(o: &Outcome) -> &Report {
    &o.logoffs.first().expect("a Logoff report").report
}

fn shutdown(o: &Outcome) -> &Report {
    &o.shutdown.as_ref().expect("a Shutdown report").report
}

fn rules(r: &Report) -> Vec<&str> {
    r.findings.iter().map(|f| f.rule.as_str()).collect()
}

/// The one finding of `r`, which must be `rule`, with `function` in its stack.
fn only<'a>(r: &'a Report, rule: &str, function: &str) -> &'a Finding {
    assert_eq!(rules(r), [rule], "{:#?}", r.findings);
    let f = &r.findings[0];
    let stack = r
        .stack(f.stack.expect("a stack"))
        .expect("stack in the report");
    assert!(
        stack.mentions(function),
        "{rule}: {function} not in {stack:#?}"
    );
    f
}

#[test]
fn clean_sessions_trip_no_rule_at_logoff_or_shutdown() {
    for p in Provider::ALL {
        let o = outcome(p, Bug::None);
        assert!(logoff(&o).is_clean(), "{p:?}: {:#?}", logoff(&o));
        let s = shutdown(&o);
        assert_eq!(s.session.event, Event::Shutdown);
        assert!(
            s.is_clean(),
            "{p:?}: the provider object is expected alive at Shutdown: {s:#?}"
        );
    }
    let o = store_outcome(Bug::None, StorePath::ReleaseOnly);
    assert!(logoff(&o).is_clean() && shutdown(&o).is_clean(), "{o:#?}");
}

#[test]
fn support_not_released_points_at_the_addref() {
    for p in Provider::ALL {
        let o = outcome(p, Bug::SupportNotReleased);
        // The support object held also keeps what MAPI removes at its final
        // Release: the MAPIUIDs and the status row the samples register at
        // Logon (warnings).
        let mut r = logoff(&o).clone();
        let (warnings, errors): (Vec<_>, Vec<_>) = r
            .findings
            .drain(..)
            .partition(|f| f.severity == mapileak::reports::Severity::Warning);
        assert_eq!(
            warnings.iter().map(|f| f.rule.as_str()).collect::<Vec<_>>(),
            ["provider-uid-registered", "status-row-present"],
            "{p:?}"
        );
        r.findings = errors;
        let f = only(&r, "support-not-released", "LogonCore::logon");
        assert!(f.message.contains("IMAPISupport"), "{}", f.message);
    }
}

#[test]
fn transport_support_order_before_make_invalid_and_not_last() {
    let o = outcome(Provider::Transport, Bug::SupportBeforeMakeInvalid);
    let f = only(logoff(&o), "transport-support-order", "LogonCore::logoff");
    assert!(f.message.contains("MakeInvalid"), "{}", f.message);
    let o = outcome(Provider::Transport, Bug::SupportNotLast);
    let f = only(logoff(&o), "transport-support-order", "LogonCore::logoff");
    assert!(f.message.contains("released last"), "{}", f.message);
    // The same order in the other provider types is not a rule.
    for p in [Provider::AddressBook, Provider::MessageStore] {
        assert!(
            logoff(&outcome(p, Bug::SupportNotLast)).findings.is_empty(),
            "{p:?}"
        );
    }
}

#[test]
fn subscription_open_points_at_the_subscribe() {
    for p in Provider::ALL {
        let o = outcome(p, Bug::SubscriptionOpen);
        let f = only(logoff(&o), "subscription-open", "LogonCore::logon");
        assert!(f.message.contains("Subscribe"), "{}", f.message);
    }
}

#[test]
fn malloc_not_released_by_shutdown_points_at_init() {
    for p in Provider::ALL {
        let o = outcome(p, Bug::MallocNotReleased);
        assert!(logoff(&o).findings.is_empty());
        only(shutdown(&o), "malloc-not-released", "ProviderCore::init");
    }
}

#[inline(never)]
fn register_uid_and_status_row(s: mapileak::Session) {
    s.set_provider_uid();
    s.modify_status_row();
}

#[inline(never)]
fn connect_to_server(s: mapileak::Session, id: u32) {
    s.server_connected(id);
}

#[test]
fn the_seeds_logoff_duties_are_checked_for_every_provider_type() {
    let _dir = setup();
    use mapileak::reports::Severity;
    use mapileak::{ProviderKind, Session};
    for (kind, logoff) in [
        (
            ProviderKind::AddressBook,
            Session::ab_logoff as fn(Session) -> mapileak::Reported,
        ),
        (ProviderKind::MessageStore, Session::ms_logoff),
        (ProviderKind::Transport, Session::transport_logoff),
    ] {
        // The support object still held: MAPI has not removed the MAPIUIDs
        // and the status row (warnings); a server connection left open (an
        // error: nothing else closes it).
        let s = Session::logon(kind, "duties");
        s.support_add_ref();
        register_uid_and_status_row(s);
        connect_to_server(s, 7);
        connect_to_server(s, 8);
        s.server_disconnected(8);
        let r = logoff(s).report;
        let mut found: Vec<(&str, Severity)> = r
            .findings
            .iter()
            .map(|f| (f.rule.as_str(), f.severity))
            .collect();
        found.sort_by_key(|&(rule, _)| rule);
        assert_eq!(
            found,
            [
                ("provider-uid-registered", Severity::Warning),
                ("server-connection-open", Severity::Error),
                ("status-row-present", Severity::Warning),
                ("support-not-released", Severity::Error),
            ],
            "{kind:?}: {:#?}",
            r.findings
        );
        let open = r
            .findings
            .iter()
            .find(|f| f.rule == "server-connection-open")
            .unwrap();
        assert!(
            open.message.starts_with("connection 7 "),
            "{}",
            open.message
        );
        assert!(
            r.stack(open.stack.unwrap())
                .unwrap()
                .mentions("connect_to_server")
        );
        let uid = r
            .findings
            .iter()
            .find(|f| f.rule == "provider-uid-registered")
            .unwrap();
        assert!(
            r.stack(uid.stack.unwrap())
                .unwrap()
                .mentions("register_uid_and_status_row")
        );

        // Support released, connections closed: MAPI cleans up, nothing to say.
        let s = Session::logon(kind, "duties done");
        s.support_add_ref();
        register_uid_and_status_row(s);
        connect_to_server(s, 1);
        s.server_disconnected(1);
        s.support_release();
        let r = logoff(s).report;
        assert!(
            r.findings
                .iter()
                .all(|f| f.rule == "transport-support-order"),
            "{kind:?}: {:#?}",
            r.findings
        );
    }
}

#[inline(never)]
fn keep_malloc_again(p: mapileak::Provider) {
    p.malloc_add_ref();
}

#[inline(never)]
fn release_malloc(p: mapileak::Provider) {
    p.malloc_release();
}

#[test]
fn lpmalloc_references_are_counted_like_the_support_objects() {
    let _dir = setup();
    use mapileak::{Malloc, Provider, ProviderKind};
    // Kept at init, AddRef'd again, released once (the latest AddRef, as
    // for the support object): one owed at Shutdown, pointing at init.
    let p = Provider::init(ProviderKind::AddressBook, "ab", Malloc::AddRefd);
    keep_malloc_again(p);
    release_malloc(p);
    let r = p.shutdown().report;
    let f = only(&r, "malloc-not-released", "lpmalloc_references_are_counted");
    assert!(
        f.message.starts_with("1 AddRef(s) of lpMalloc"),
        "{}",
        f.message
    );
    // Released once more than taken: an over-release at that Release.
    let p = Provider::init(ProviderKind::Transport, "xp", Malloc::AddRefd);
    release_malloc(p);
    release_malloc(p);
    let r = p.shutdown().report;
    let f = only(&r, "over-release", "release_malloc");
    // Two AddRefs, none released: the count says two.
    let p = Provider::init(ProviderKind::MessageStore, "ms", Malloc::AddRefd);
    keep_malloc_again(p);
    let r = p.shutdown().report;
    let g = only(&r, "malloc-not-released", "keep_malloc_again");
    assert!(
        g.message.starts_with("2 AddRef(s) of lpMalloc"),
        "{}",
        g.message
    );
    assert!(f.message.contains("lpMalloc->Release()"), "{}", f.message);
}

#[test]
fn store_logoff_transports_exactly_once_on_both_paths() {
    // StoreLogoff path: twice (StoreLogoff, then Release again), and never.
    let o = store_outcome(Bug::StoreLogoffTransportsTwice, StorePath::StoreLogoff);
    let f = only(
        logoff(&o),
        "store-logoff-transports",
        "Store as core::ops::drop::Drop>::drop",
    );
    assert!(f.message.contains("second time"), "{}", f.message);
    let o = store_outcome(Bug::StoreLogoffTransportsNever, StorePath::StoreLogoff);
    only(
        logoff(&o),
        "store-logoff-transports",
        "Store as core::ops::drop::Drop>::drop",
    );
    // Release path: must pass LOGOFF_ABORT, and must call it at all.
    let o = store_outcome(Bug::ReleaseWithoutAbort, StorePath::ReleaseOnly);
    let f = only(
        logoff(&o),
        "store-logoff-transports",
        "store_logoff_transports",
    );
    assert!(f.message.contains("LOGOFF_ABORT"), "{}", f.message);
    let o = store_outcome(Bug::StoreLogoffTransportsNever, StorePath::ReleaseOnly);
    only(
        logoff(&o),
        "store-logoff-transports",
        "Store as core::ops::drop::Drop>::drop",
    );
}

#[test]
fn store_logoff_flags_must_be_exactly_one() {
    let o = store_outcome(Bug::BadStoreLogoffFlags, StorePath::StoreLogoff);
    let f = only(logoff(&o), "store-logoff-flags", "StoreLogoff");
    assert!(f.message.contains("0x6"), "{}", f.message);
}

#[test]
fn logon_still_listed_points_at_where_it_was_listed() {
    for p in Provider::ALL {
        let o = outcome(p, Bug::LogonStillListed);
        only(logoff(&o), "logon-still-listed", "LogonCore::logon");
    }
}

#[test]
fn out_of_order_second_logoff_and_objects_after_logoff() {
    for (p, logoff_fn, late) in [
        (
            Provider::AddressBook,
            "IABLogon_Impl>::Logoff",
            "OpenRootContainer",
        ),
        (
            Provider::MessageStore,
            "IMSLogon_Impl>::Logoff",
            "OpenTable",
        ),
        (
            Provider::Transport,
            "IXPLogon_Impl>::TransportLogoff",
            "Poll",
        ),
    ] {
        let o = outcome(p, Bug::LogoffTwice);
        assert_eq!(o.logoffs.len(), 2);
        assert!(o.logoffs[0].report.findings.is_empty(), "{p:?}");
        let f = only(&o.logoffs[1].report, "out-of-order", logoff_fn);
        assert!(f.message.contains("second time"), "{}", f.message);

        let o = outcome(p, Bug::ObjectAfterLogoff);
        assert!(logoff(&o).findings.is_empty());
        // Findings after Logoff go to the provider's Shutdown report.
        let s = shutdown(&o);
        assert!(
            !s.findings.is_empty() && s.findings.iter().all(|f| f.rule == "out-of-order"),
            "{p:?}: {:#?}",
            s.findings
        );
        let f = s
            .findings
            .iter()
            .find(|f| f.message.contains("after its Logoff"))
            .expect("object created after Logoff");
        assert!(
            s.stack(f.stack.unwrap()).unwrap().mentions(late),
            "{p:?}: {late}"
        );
    }
}

/// A logon that logged off clean leaves the registry (a process that logs
/// on and off thousands of times keeps nothing per logon), and what comes
/// after is still `out-of-order`, with the logon's name.
#[test]
#[cfg(feature = "test-hooks")]
fn a_clean_logon_leaves_the_registry_and_late_calls_are_still_out_of_order() {
    use mapileak::testing::in_registry;
    use mapileak::{Malloc, ProviderKind, Session, Tracked, kinds};
    let _dir = setup();

    // No provider: it leaves at its clean Logoff.
    let s = Session::logon(ProviderKind::AddressBook, "clean book");
    drop(Tracked::in_session(
        s,
        &kinds::IMAPI_TABLE,
        "closed in time",
    ));
    assert!(in_registry(s.id()));
    assert!(s.ab_logoff().report.is_clean());
    assert!(!in_registry(s.id()), "a clean logon stays in the registry");
    assert_eq!(Session::by_id(s.id()).map(Session::id), Some(s.id()));
    let second = s.ab_logoff().report;
    assert_eq!(second.session.label, "clean book");
    assert_eq!(second.session.provider, ProviderKind::AddressBook);
    let f = only(&second, "out-of-order", "a_clean_logon_leaves_the_registry");
    assert!(
        f.message
            .contains("called a second time on session \"clean book\""),
        "{}",
        f.message
    );

    // One that leaked stays: its objects are still reported at exit.
    let leaky = Session::logon(ProviderKind::AddressBook, "leaky book");
    std::mem::forget(Tracked::in_session(leaky, &kinds::IMAPI_TABLE, "kept"));
    assert_eq!(leaky.ab_logoff().report.objects.len(), 1);
    assert!(in_registry(leaky.id()));

    // A provider's logon that made an object after its Logoff stays past
    // its release: Shutdown still shows the object.
    let p = mapileak::Provider::init(ProviderKind::AddressBook, "late maker", Malloc::NotKept);
    let s = p.logon("late directory");
    assert!(s.ab_logoff().report.is_clean());
    std::mem::forget(Tracked::in_session(s, &kinds::IMAPI_TABLE, "made late"));
    s.logon_released();
    assert!(in_registry(s.id()));
    let r = p.shutdown().report;
    let labels: Vec<&str> = r.objects.iter().map(|o| o.label.as_str()).collect();
    assert_eq!(labels, ["made late"]);
    assert_eq!(rules(&r), ["out-of-order"]);
    p.released();

    // A provider's logon: it leaves once MAPI released it; later calls on it
    // go to the provider's Shutdown.
    let p = mapileak::Provider::init(ProviderKind::AddressBook, "retiring", Malloc::NotKept);
    let s = p.logon("clean directory");
    let r = s.ab_logoff().report;
    assert!(r.is_clean(), "{:#?}", r.findings);
    assert!(in_registry(s.id()), "left before MAPI released it");
    s.logon_released();
    assert!(!in_registry(s.id()));
    s.logon_released();
    drop(Tracked::in_session(s, &kinds::IMESSAGE, "too late"));
    s.support_release();
    let r = p.shutdown().report;
    let messages: Vec<&str> = r.findings.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(rules(&r), ["out-of-order"; 3], "{messages:#?}");
    assert!(
        messages[0].contains("logon \"clean directory\" released a second time"),
        "{messages:#?}"
    );
    assert!(
        messages[1].contains(
            "IMessage \"too late\" created on session \"clean directory\" after its Logoff"
        ),
        "{messages:#?}"
    );
    assert!(
        messages[2].contains(
            "IMAPISupport::Release on session \"clean directory\" after IABLogon::Logoff"
        ),
        "{messages:#?}"
    );
    for f in &r.findings {
        let stack = r.stack(f.stack.expect("a stack")).expect("its stack");
        assert!(
            stack.mentions("a_clean_logon_leaves_the_registry"),
            "{stack:#?}"
        );
    }
    p.released();
    assert!(in_registry(p.id()), "providers stay");
}

#[test]
fn shutdown_with_open_logons_reports_the_logon_object_too() {
    for (p, logon_kind) in [
        (Provider::AddressBook, "IABLogon"),
        (Provider::MessageStore, "IMSLogon"),
        (Provider::Transport, "IXPLogon"),
    ] {
        let o = outcome(p, Bug::ShutdownWithOpenLogon);
        assert!(o.logoffs.is_empty());
        let s = shutdown(&o);
        let f = only(s, "shutdown-with-open-logons", "LogonCore::logon");
        assert!(f.message.contains("has not logged off"), "{}", f.message);
        assert!(
            s.objects.iter().any(|o| o.kind == logon_kind && o.root),
            "{p:?}: {:#?}",
            s.objects
        );
    }
}

/// The demo program that never logs off, built by `cargo test` with the
/// other examples.
fn no_logoff_example() -> PathBuf {
    example("no_logoff")
}

fn exit_reports(how: &str) -> (Option<i32>, Vec<Report>) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("exit-{how}"));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(no_logoff_example())
        .arg(how)
        .env("MAPILEAK_DIR", &dir)
        .retried(Command::output)
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let mut reports: Vec<Report> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no report directory {}: {e}\n{stderr}", dir.display()))
        .map(|e| mapileak::reports::read_file(&e.unwrap().path()).unwrap())
        .collect();
    reports.sort_by_key(|r| r.session.id);
    (out.status.code(), reports)
}

#[test]
fn a_provider_that_never_logs_off_gets_a_report_at_process_end() {
    // `std::process::exit` is `ExitProcess` on Windows, where the report
    // comes from a TLS callback at DLL_PROCESS_DETACH. Windows calls an
    // executable's TLS callbacks then; Wine 8, which runs this leg, calls
    // only DLLs' (a provider DLL's detach is what matters there), so under
    // Wine the executable's `exit` case has no report to check.
    let cases: &[(&str, i32)] = if cfg!(windows) {
        &[("return", 0)]
    } else {
        &[("return", 0), ("exit", 3)]
    };
    for &(how, code) in cases {
        let (status, reports) = exit_reports(how);
        assert_eq!(status, Some(code));
        assert_eq!(reports.len(), 1, "{how}: {reports:#?}");
        let r = &reports[0];
        assert_eq!(r.session.event, Event::Exit);
        let kinds: Vec<&str> = r.objects.iter().map(|o| o.kind.as_str()).collect();
        for kind in ["IMSProvider", "IMSLogon", "IMsgStore", "IMAPIFolder"] {
            assert!(kinds.contains(&kind), "{how}: {kind} not in {kinds:?}");
        }
        let folder = r.objects.iter().find(|o| o.kind == "IMAPIFolder").unwrap();
        assert!(r.stack(folder.created).unwrap().mentions("root_folder"));
    }
}

/// A host with a global `tracing` subscriber that formats in a
/// thread-local buffer (as `tracing_subscriber::fmt()` does) and aborts when
/// that buffer is gone (its panic, under `panic = "abort"`). At process end
/// the C runtime has destroyed the main thread's thread-locals: the exit
/// report must not reach the subscriber; its lines go to stderr, its file
/// is written, and the process exits normally.
#[test]
fn the_process_end_report_never_calls_a_subscriber_after_thread_locals_are_gone() {
    let (code, stderr, reports) = exit_within_a_minute("subscriber", &["subscriber"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("subscriber: host started"), "{stderr}");
    assert!(!stderr.contains("thread-locals were destroyed"), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("mapileak: message_store \"never logged off\" exit: ")),
        "{stderr}"
    );
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].session.event, Event::Exit);
}

/// Runs `no_logoff` with `args`, failing the test if it has not exited
/// within a minute (a hang at process end): its exit code, stderr and the
/// reports it wrote.
fn exit_within_a_minute(name: &str, args: &[&str]) -> (Option<i32>, String, Vec<Report>) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("exit-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    let out = crate::watchdog::output_within(
        Command::new(no_logoff_example())
            .args(args)
            .env("MAPILEAK_DIR", &dir),
        std::time::Duration::from_secs(60),
    )
    .unwrap_or_else(|| panic!("no_logoff {args:?} hung at process end"));
    let status = out.status;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let reports = std::fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| mapileak::reports::read_file(&e.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    (status.code(), stderr, reports)
}

#[test]
#[cfg(feature = "test-hooks")]
fn process_end_never_waits_on_a_lock_a_stuck_thread_holds() {
    // A thread holds one of mapileak's locks for good, as a thread that
    // ExitProcess ended inside mapileak would: process end gives up on it
    // after a moment, writes one line naming it, and the process exits.
    let names = [
        ("sessions", "session registry"),
        ("objects", "object registry"),
        ("heap", "heap table"),
        ("buffers", "MAPI buffer table"),
        ("symbolizer", "symbolizer"),
    ];
    assert_eq!(mapileak::testing::LOCKS.len(), names.len());
    for (which, named) in names {
        let (code, stderr, reports) =
            exit_within_a_minute(&format!("held-{which}"), &["held-lock", which]);
        assert_eq!(code, Some(0), "{which}: {stderr}");
        let skipped: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("mapileak: process-end report skipped: "))
            .collect();
        assert_eq!(
            skipped,
            [format!(
                "mapileak: process-end report skipped: mapileak's {named} lock was held by another thread for 200 ms (a thread ended while inside mapileak, or still running in it); nothing was written"
            )],
            "{which}: {stderr}"
        );
        assert!(reports.is_empty(), "{which}: {reports:#?}");
    }
}

#[test]
fn process_end_with_threads_still_in_mapileak_reports_and_exits() {
    // main returns while four threads keep making objects, heap blocks,
    // MAPI buffers and logons: the report is written and the process ends.
    let (code, stderr, reports) = exit_within_a_minute("busy", &["busy"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("skipped"), "{stderr}");
    let store = reports
        .iter()
        .find(|r| r.session.label == "never logged off")
        .unwrap_or_else(|| panic!("no report of the store: {stderr}"));
    assert_eq!(store.session.event, Event::Exit);
    assert!(store.objects.iter().any(|o| o.kind == "IMSLogon"));
}

#[test]
fn objects_tracked_without_any_logon_get_a_process_end_report() {
    let (status, reports) = exit_reports("no-logon");
    assert_eq!(status, Some(0));
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let r = &reports[0];
    assert_eq!(r.session.label, "outside any logon");
    assert_eq!(r.objects.len(), 1);
    assert_eq!(r.objects[0].label, "made before any logon");
}

#[test]
fn a_buffer_leaked_without_any_logon_or_object_gets_a_process_end_report() {
    // Nothing but `MapiBuffers`: the process-end hook is registered by it.
    let (status, reports) = exit_reports("buffer-no-logon");
    assert_eq!(status, Some(0));
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let r = &reports[0];
    assert_eq!(r.session.label, "outside any logon");
    assert!(r.objects.is_empty(), "{:#?}", r.objects);
    let bytes: Vec<u64> = r.buffers.iter().map(|b| b.bytes).collect();
    assert_eq!(bytes, [40], "{:#?}", r.buffers);
}

#[test]
fn an_object_made_after_a_clean_logoff_is_reported_at_process_end() {
    // The logon left the registry at its clean Logoff: the late object goes
    // with those made outside any logon, and its finding names the logon.
    let (status, reports) = exit_reports("late-object");
    assert_eq!(status, Some(0));
    let events: Vec<Event> = reports.iter().map(|r| r.session.event).collect();
    assert_eq!(events, [Event::Exit, Event::Logoff], "{reports:#?}");
    let r = &reports[0];
    assert_eq!(r.session.label, "outside any logon");
    assert_eq!(r.session.event, Event::Exit);
    let labels: Vec<&str> = r.objects.iter().map(|o| o.label.as_str()).collect();
    assert_eq!(labels, ["made after Logoff"]);
    assert_eq!(r.objects[0].kind, "IMessage");
    let f = only(r, "out-of-order", "no_logoff::main");
    assert!(
        f.message
            .contains("IMessage \"made after Logoff\" created on session \"logged off clean\" after its Logoff"),
        "{}",
        f.message
    );
}

#[test]
fn a_store_session_that_reports_store_logoff_is_checked_without_a_provider() {
    let _dir = setup();
    // No `Provider`: a plain message-store Session that says StoreLogoff
    // happened and never calls StoreLogoffTransports.
    let s = mapileak::Session::logon(mapileak::ProviderKind::MessageStore, "plain store");
    s.store_logoff(0x2); // LOGOFF_ORDERLY
    let r = s.ms_logoff().report;
    let f = only(
        &r,
        "store-logoff-transports",
        "a_store_session_that_reports",
    );
    assert!(
        f.message
            .contains("before IMAPISupport::StoreLogoffTransports"),
        "{}",
        f.message
    );
    // One that reports nothing of the store protocol is told nothing.
    let quiet = mapileak::Session::logon(mapileak::ProviderKind::MessageStore, "quiet store");
    assert!(quiet.ms_logoff().report.findings.is_empty());
}

#[test]
fn a_provider_released_before_shutdown_is_out_of_order_at_process_end() {
    let (status, reports) = exit_reports("released-early");
    assert_eq!(status, Some(0));
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let f = only(&reports[0], "out-of-order", "ProviderCore");
    assert!(
        f.message.contains("released before its Shutdown"),
        "{}",
        f.message
    );
}

#[test]
fn a_stderr_nobody_reads_costs_the_traces_not_the_logoff() {
    // The demo logs off with no tracing subscriber, so its traces go to
    // stderr: here a pipe whose reading end is closed, so every write fails
    // (EPIPE). Logoff must return as usual, and write its reports.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("broken-stderr");
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(example("leaky_store"))
        .env("MAPILEAK_DIR", &dir)
        .stderr(writer)
        .retried(Command::output)
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "the demo runs to its end");
    let logoffs = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with("-logoff.json")
        })
        .count();
    assert_eq!(logoffs, 1, "the Logoff report is written");
}

/// The report directory of [`run_example`]'s run `tag`.
fn run_dir(tag: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("env-{tag}"))
}

/// Runs an example with `env`, reports in a fresh directory: its stdout,
/// its stderr's `mapileak:` lines and the files it wrote.
fn run_example(
    tag: &str,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (String, Vec<String>, Vec<String>) {
    let dir = run_dir(tag);
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(example(name))
        .args(args)
        .env_remove("MAPILEAK")
        .env_remove("MAPILEAK_HTML")
        .env_remove("MAPILEAK_TRACE_ROOTS")
        .env("MAPILEAK_DIR", &dir)
        .envs(env.iter().copied())
        .retried(Command::output)
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let traces = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("mapileak: "))
        .map(str::to_owned)
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        traces,
        files,
    )
}

/// A host short of address space (a 32-bit Outlook): every table mapileak
/// reserves is refused. The provider goes on; heap counting goes on; the
/// Logoff still names the leaked object, without frames, and its report
/// and summary line say what was lost.
#[test]
fn refused_reservations_lose_stacks_not_the_host() {
    let (stdout, traces, files) = run_example("short", "no_logoff", &["small-address-space"], &[]);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("objects="))
        .unwrap_or_default();
    let field = |name: &str| {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {line:?}"))
            .to_owned()
    };
    assert_eq!(field("objects"), "IMAPITable", "{stdout}");
    assert_eq!(field("frames"), "0", "no stack could be kept");
    assert!(
        field("stacks_missing").parse::<u64>().unwrap() >= 2,
        "{line}"
    );
    assert_eq!(field("tables_refused"), "stacks,heap");
    assert!(
        field("heap_untracked").parse::<u64>().unwrap() >= 1,
        "{line}"
    );
    assert!(
        field("allocs_counted").parse::<u64>().unwrap() >= 2,
        "still counting: {line}"
    );
    let logoff = traces
        .iter()
        .find(|t| t.contains("logoff:"))
        .unwrap_or_else(|| panic!("{traces:#?}"));
    assert!(
        logoff.contains("stack(s) missing: the system refused to reserve the stack table")
            && logoff.contains("the system refused to reserve the live table"),
        "{logoff}"
    );
    assert!(
        files.iter().any(|f| f.ends_with("-logoff.json")),
        "{files:?}"
    );
}

#[test]
fn the_environment_table_holds_end_to_end() {
    // MAPILEAK=off: nothing recorded, reported or written.
    let (stdout, traces, files) = run_example("off", "leaky_store", &[], &[("MAPILEAK", "off")]);
    assert!(
        stdout.contains(": 0 leaked objects, 0 of them roots; 0 finding(s)"),
        "{stdout}"
    );
    assert_eq!(traces, Vec::<String>::new());
    assert_eq!(files, Vec::<String>::new());

    // summary: the files, and one summary line per report, no per-leak line.
    let (_, traces, files) = run_example("summary", "leaky_store", &[], &[("MAPILEAK", "summary")]);
    assert!(
        files.iter().any(|f| f.ends_with("-logoff.json")),
        "{files:?}"
    );
    assert!(!traces.is_empty());
    assert!(
        traces.iter().all(|l| l.contains(" leaked object")),
        "summary lines only: {traces:#?}"
    );

    // full (the default): one line per leak root and finding as well.
    let (_, traces, _) = run_example("full", "leaky_store", &[], &[]);
    let leaked = |t: &[String]| {
        t.iter()
            .filter(|l| l.starts_with("mapileak: leaked "))
            .count()
    };
    assert!(
        traces
            .iter()
            .any(|l| l.starts_with("mapileak: leaked IMAPITable")),
        "{traces:#?}"
    );
    assert!(
        traces
            .iter()
            .any(|l| l.starts_with("mapileak: over-release: "))
    );

    // MAPILEAK_TRACE_ROOTS=1: the largest root per report, then a count.
    let (_, capped, _) = run_example(
        "capped",
        "leaky_store",
        &[],
        &[("MAPILEAK_TRACE_ROOTS", "1")],
    );
    assert!(leaked(&capped) < leaked(&traces), "{capped:#?}");
    assert!(
        capped
            .iter()
            .any(|l| l.starts_with("mapileak: and 1 more leak root(s)")),
        "{capped:#?}"
    );

    // MAPILEAK_HTML=1: a page beside each JSON report (this example does
    // not set it itself).
    let (_, _, files) = run_example("html", "no_logoff", &["return"], &[("MAPILEAK_HTML", "1")]);
    let json: Vec<_> = files.iter().filter(|f| f.ends_with(".json")).collect();
    let html: Vec<_> = files.iter().filter(|f| f.ends_with(".html")).collect();
    assert_eq!((json.len(), html.len()), (1, 1), "{files:?}");
    let (_, _, files) = run_example("no-html", "no_logoff", &["return"], &[]);
    assert!(files.iter().all(|f| f.ends_with(".json")), "{files:?}");

    // A value that is none of a variable's choices: one line naming it,
    // and the default (no page; frames named in the process).
    let (_, traces, files) = run_example(
        "mistyped",
        "no_logoff",
        &["return"],
        &[("MAPILEAK_HTML", "maybe"), ("MAPILEAK_SYMBOLS", "ofline")],
    );
    for line in [
        "mapileak: MAPILEAK_HTML=\"maybe\" is not 1 or 0; no HTML page",
        "mapileak: MAPILEAK_SYMBOLS=\"ofline\" is not inline or offline; using inline",
    ] {
        assert_eq!(
            traces.iter().filter(|l| l.as_str() == line).count(),
            1,
            "{traces:#?}"
        );
    }
    assert!(files.iter().all(|f| f.ends_with(".json")), "{files:?}");
    let report = std::fs::read_dir(run_dir("mistyped"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a report");
    let report = mapileak::reports::read_file(&report).unwrap();
    assert!(
        !report.stacks.is_empty()
            && report
                .stacks
                .iter()
                .all(|s| s.raw.is_empty() && !s.frames.is_empty()),
        "frames named in the process"
    );
}

#[test]
fn signatures_are_equal_across_processes() {
    // Two runs of the demo: two processes, two address layouts (ASLR).
    let sigs = || -> Vec<String> {
        run_example("signatures", "leaky_store", &[], &[("MAPILEAK", "summary")]);
        let dir = run_dir("signatures");
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with("-logoff.json"))
            .flat_map(|p| {
                let r = mapileak::reports::read_file(&p).unwrap();
                r.objects
                    .iter()
                    .map(|o| o.signature.clone())
                    .chain(r.findings.iter().map(|f| f.signature.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out
    };
    let (a, b) = (sigs(), sigs());
    assert!(a.len() >= 4, "{a:?}");
    assert_eq!(a, b);
}

/// A report directory the user named (`MAPILEAK_DIR`) that someone else
/// could have planted: a directory anyone may write to without the sticky
/// bit, or (as root, which can give files away) a symlink or a directory
/// owned by another user. Nothing is written there; one line says why.
#[cfg(unix)]
#[test]
fn an_unsafe_mapileak_dir_is_refused_with_one_line() {
    use std::os::unix::fs::PermissionsExt;
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("unsafe-dirs");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let open = base.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cases = vec![(open.clone(), "anyone can write to it")];
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let theirs = base.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(base.join("ours"), &link).unwrap();
        std::fs::create_dir(base.join("ours")).unwrap();
        for p in [&theirs, &link] {
            let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            // SAFETY: a NUL-terminated path; 65534 is nobody.
            assert_eq!(unsafe { libc::lchown(c.as_ptr(), 65534, 65534) }, 0);
        }
        cases.push((theirs, "owned by uid 65534"));
        cases.push((link, "a symlink owned by uid 65534"));
    }
    for (dir, why) in cases {
        let out = Command::new(super::examples::example("no_logoff"))
            .arg("return")
            .env("MAPILEAK_DIR", &dir)
            .retried(Command::output)
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = format!("MAPILEAK_DIR is not safe for reports: {why}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("mapileak: cannot write leak report") && l.contains(&line)),
            "{}: {stderr}",
            dir.display()
        );
        let written = std::fs::read_dir(&dir).map_or(0, |d| d.count());
        assert_eq!(written, 0, "{}", dir.display());
    }
    // The sticky bit makes a shared directory like /tmp fine.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let out = Command::new(super::examples::example("no_logoff"))
        .arg("return")
        .env("MAPILEAK_DIR", &open)
        .retried(Command::output)
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_dir(&open).unwrap().count(),
        1,
        "the exit report"
    );
}

/// `fork` while other threads are inside mapileak (making objects, logging
/// on and off, symbolizing, allocating buffers and blocks): every child can
/// log on, allocate and log off (a symbolized report) without waiting on a
/// lock a parent thread held at the fork.
#[cfg(unix)]
#[test]
fn a_forked_child_never_waits_on_a_lock_a_parent_thread_held() {
    assert_eq!(forking(&["fork"], 300), "forked 50 hung 0");
}

/// `fork` from a thread-local's destructor, after mapileak's thread-locals
/// on that thread are gone, while another thread keeps taking the session
/// registry's lock: the fork handlers still hold mapileak's locks across it
/// (they kept their guards in a thread-local, and dropped them at once
/// there: 18 of 40 children hung on the registry's lock).
#[cfg(all(unix, feature = "test-hooks"))]
#[test]
fn a_fork_from_a_thread_local_destructor_still_holds_the_locks_across_it() {
    assert_eq!(
        forking(&["fork-in-thread-local-destructor"], 300),
        "forked 20 hung 0"
    );
}

/// A child forked while another thread was in the middle of mapileak's
/// first-use work (reading the environment, registering the process-end
/// and `fork` hooks) does that work itself: with `std::sync::Once` it
/// waited for good on a thread it does not have.
#[cfg(all(unix, feature = "test-hooks"))]
#[test]
fn a_forked_child_finishes_first_use_work_its_parent_began() {
    for which in mapileak::testing::FIRST_USES {
        assert_eq!(
            forking(&["fork-in-first-use", which], 120),
            "forked 1 hung 0",
            "{which}"
        );
    }
}

/// Runs `no_logoff ARGS` (a fork scenario) in summary mode, killed past
/// `limit` seconds: what it printed (`forked N hung H`). Its stderr (which
/// child hung) is shown on stdout for the failure.
#[cfg(unix)]
fn forking(args: &[&str], limit: u64) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fork-{}", args.join("-")));
    let _ = std::fs::remove_dir_all(&dir);
    let out = crate::watchdog::output_within(
        Command::new(no_logoff_example())
            .args(args)
            .env("MAPILEAK", "summary")
            .env("MAPILEAK_DIR", &dir),
        std::time::Duration::from_secs(limit),
    )
    .unwrap_or_else(|| panic!("no_logoff {args:?} did not end in {limit} s"));
    println!("{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One bug hit a hundred thousand times in a logon (a double free in a
/// loop): a few findings in full and a count on the last, not a hundred
/// thousand entries, so the host's memory and the report stay small and
/// the gate can always read what was written.
#[test]
fn a_finding_repeated_a_hundred_thousand_times_is_a_few_entries_and_a_count() {
    use mapileak::buffers::MapiBuffers;
    const TIMES: u64 = 100_000;
    let buffers = MapiBuffers::in_process();
    let session = mapileak::Session::logon(mapileak::ProviderKind::Transport, "a bug in a loop");
    {
        let _scope = session.enter();
        for _ in 0..TIMES {
            let p = buffers.allocate_buffer(16).unwrap();
            // SAFETY: the second free is the bug under test; mapileak
            // catches it and does not pass it on.
            unsafe {
                buffers.free_buffer(p);
                buffers.free_buffer(p);
            }
        }
    }
    let logoff = session.transport_logoff();
    let found: Vec<&Finding> = logoff
        .report
        .findings
        .iter()
        .filter(|f| f.rule == "buffer-double-free")
        .collect();
    assert_eq!(found.len(), 8, "{:#?}", logoff.report.findings);
    let repeated: u64 = found.iter().map(|f| f.repeated).sum();
    assert_eq!(repeated + 8, TIMES);
    let json = logoff
        .files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "json"))
        .expect("a report file");
    let size = std::fs::metadata(json).unwrap().len();
    assert!(size < 64 << 10, "{size} bytes");
    let back = mapileak::reports::read_file(json).unwrap();
    assert_eq!(
        back.findings.iter().map(|f| f.repeated).sum::<u64>(),
        repeated
    );
}

/// `main` returns while other threads are writing Logoff reports: what
/// they had begun is removed at process end, no `.tmp` file is left, and
/// every report file there is whole.
#[test]
fn process_end_leaves_no_half_written_report_behind() {
    let (code, stderr, _) = exit_within_a_minute("writing", &["writing"]);
    assert_eq!(code, Some(0), "{stderr}");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("exit-writing");
    // (A busy machine may end the process before any report was begun, or
    // skip the process-end report while a thread holds a lock: nothing
    // then. exit_within_a_minute read every report file there: each whole.)
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}
