//! The C ABI as C and C++ providers use it: `programs/store.cpp` (a C++
//! message store, through `mapileak.hpp`) and `programs/transport.c` (a C
//! transport, wrapping stand-ins for MAPI's buffer functions) are compiled
//! here with the system's C and C++ compilers against this crate's static
//! library, run, and their reports read back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use mapileak_reports::{RefOp, Report, StackId, read_file};

// The crate under test: its static library is what the programs link.
use mapileak_c as _;

// The provider DLL's unload test (Windows only) runs under it.
#[path = "../../tests/support/start.rs"]
mod start;
#[cfg(windows)]
#[path = "../../tests/support/watchdog.rs"]
mod watchdog;

use start::Start as _;

/// The static library cargo built for this test run (the newest one).
#[cfg(not(windows))]
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("the deps directory");
    let newest = std::fs::read_dir(deps)
        .expect("read the deps directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("libmapileak_c") && name.ends_with(".a")
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.unwrap_or_else(|| panic!("no libmapileak_c*.a in {}", deps.display()))
}

/// The C++ store, compiled once for all the tests that run it.
fn store() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| build("c++", "-std=c++17", "store.cpp"))
}

/// On Windows the programs are compiled before the tests run, by
/// `scripts/test-windows.sh` with mingw-w64 (a test under Wine cannot run
/// the Linux cross-compiler), into `$MAPILEAK_TEST_PROGRAMS`.
#[cfg(windows)]
fn build(_compiler: &str, _std: &str, source: &str) -> PathBuf {
    let dir = std::env::var_os("MAPILEAK_TEST_PROGRAMS").unwrap_or_else(|| {
        panic!(
            "MAPILEAK_TEST_PROGRAMS is not set: run scripts/test-windows.sh, which builds {source}"
        )
    });
    let exe = Path::new(&dir)
        .join(Path::new(source).file_stem().unwrap())
        .with_extension("exe");
    assert!(exe.is_file(), "{} was not built", exe.display());
    exe
}

/// Compiles `source` with `compiler` into the test's temporary directory.
#[cfg(not(windows))]
fn build(compiler: &str, std: &str, source: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capi");
    std::fs::create_dir_all(&out).unwrap();
    let exe = out.join(Path::new(source).file_stem().unwrap());
    let status = Command::new(compiler)
        .args([std, "-g", "-O0", "-fno-omit-frame-pointer"])
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/programs").join(source))
        .arg(static_lib())
        // What `rustc --print native-static-libs` lists on Linux.
        .args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ])
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("{compiler} not runnable ({e}); scripts/test.sh installs it"));
    assert!(status.success(), "{compiler} failed on {source}");
    exe
}

/// Runs a built program with a fresh report directory: its one output
/// line, its Logoff report and what it wrote to stderr.
fn run(exe: &Path) -> (String, Report, String) {
    run_with(exe, "reports", &[])
}

/// [`run`], with environment variables set, reports in a directory `name`.
fn run_with(exe: &Path, name: &str, env: &[(&str, &str)]) -> (String, Report, String) {
    run_args(exe, name, env, &[])
}

/// [`run_with`], with more arguments after the report directory.
fn run_args(
    exe: &Path,
    name: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> (String, Report, String) {
    let dir = exe.with_extension(name);
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(exe)
        .arg(&dir)
        .args(args)
        .env_remove("MAPILEAK")
        .env_remove("MAPILEAK_DIR")
        .env_remove("MAPILEAK_HISTORY")
        .envs(env.iter().copied())
        .retried(Command::output)
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}: {stderr}", exe.display());
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let report = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-logoff.json"))
        .unwrap_or_else(|| panic!("no logoff report in {}: {stderr}", dir.display()));
    (line, read_file(&report).unwrap(), stderr.into_owned())
}

fn frames(report: &Report, stack: impl Into<Option<StackId>>) -> Vec<String> {
    let stack = stack.into();
    report
        .stacks
        .iter()
        .find(|s| Some(s.id) == stack)
        .map(|s| s.frames.iter().map(|f| f.function.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn a_cpp_store_gets_its_leaks_reported_with_cpp_frames() {
    let (line, report, stderr) = run(store());
    assert_eq!(
        line,
        "mapileak-cpp leaked_objects=3 leak_roots=2 heap_blocks=2 mapi_buffers=1 findings=1"
    );
    let s = &report.summary;
    assert_eq!(
        (s.leaked_objects, s.leak_roots, s.mapi_buffers, s.findings),
        (3, 2, 1, 1)
    );
    // No tracing subscriber in a C++ host: the traces go to stderr (and to
    // the debugger output on Windows), one line per root and a summary.
    let traces: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("mapileak: "))
        .collect();
    assert!(
        traces.iter().any(|l| l.starts_with(
            "mapileak: leaked IMAPITable \"contents of Inbox\" created in Object<&kTable>::Object"
        )),
        "{stderr}"
    );
    assert!(
        traces.iter().any(|l| l.starts_with(
            "mapileak: message_store \"C++ store\" logoff: 3 leaked objects (2 roots), 1 finding, 2 heap block(s) of 22 bytes, 1 MAPI buffer(s); report "
        )),
        "{stderr}"
    );
    // Heap and buffer sites get a line each too, largest first, with the
    // provider's frame that allocated.
    // (The Logoff's lines: the process-end report's follow its summary.)
    let logoff_end = traces.iter().position(|l| l.contains(" logoff: ")).unwrap();
    let sites: Vec<&&str> = traces[..logoff_end]
        .iter()
        .filter(|l| l.contains(" allocated in "))
        .collect();
    assert_eq!(sites.len(), 3, "{stderr}");
    assert!(
        sites[0].starts_with(
            "mapileak: unfreed MAPI buffer of 80 bytes (1 chained) allocated in LeakRecipientRows()"
        ),
        "{stderr}"
    );
    assert!(
        sites.iter().any(|l| l.starts_with(
            "mapileak: leaked 1 heap block(s) of 8 bytes allocated in RememberProfileName(char const*)"
        )),
        "{stderr}"
    );

    let find = |kind: &str, label: &str| {
        report
            .objects
            .iter()
            .find(|o| o.kind == kind && o.label == label)
            .unwrap_or_else(|| panic!("{kind} {label} not reported: {:#?}", report.objects))
    };
    let table = find("IMAPITable", "contents of Inbox");
    assert!(table.root);
    assert!(table.opened_from.is_some(), "opened from the Inbox folder");
    let stack = frames(&report, table.created);
    assert!(
        // In an anonymous namespace: the symbol table's full name.
        stack
            .iter()
            .any(|f| f == "(anonymous namespace)::Folder::GetContentsTable()"),
        "{stack:#?}"
    );
    // The C ABI, its panic guard and the C++ wrapper are not the provider's.
    assert_eq!(
        stack[0], "Object<&kTable>::Object(char const*)",
        "{stack:#?}"
    );
    assert!(stack.iter().any(|f| f == "main"));

    let draft = find("IMessage", "draft");
    let sent = find("IMAPIFolder", "Sent Items");
    assert!(
        draft.root && !sent.root,
        "the held folder is an indirect leak"
    );
    assert_eq!(sent.parent, Some(draft.id));
    assert!(sent.events.is_empty(), "no history unless asked for");
    assert!(
        frames(&report, draft.created)
            .iter()
            .any(|f| f.starts_with("(anonymous namespace)::Message::Message(")),
        "{:#?}",
        frames(&report, draft.created)
    );
    assert!(
        !report
            .objects
            .iter()
            .any(|o| o.label == "hierarchy of Inbox" || o.label == "Inbox"),
        "released objects are not leaks"
    );

    // The C++ heap (MAPILEAK_REPLACE_OPERATOR_NEW): the C++ string under
    // its new[], the C string under its mapileak_malloc; every balanced form
    // of new and delete left nothing, and the leaked objects' own blocks
    // (which hold their RefCount's memory tag) are the objects', not
    // listed again.
    let mut heap: Vec<(String, u64)> = report
        .heap
        .iter()
        .map(|h| (frames(&report, h.stack)[0].clone(), h.blocks))
        .collect();
    heap.sort();
    assert_eq!(
        heap,
        [
            ("CopyFolderName(char const*)".to_owned(), 1),
            ("RememberProfileName(char const*)".to_owned(), 1),
        ],
        "{:#?}",
        report.heap
    );
    let name = report
        .heap
        .iter()
        .find(|h| frames(&report, h.stack)[0].starts_with("RememberProfileName"))
        .unwrap();
    assert_eq!(name.bytes, "Outlook\0".len() as u64);

    let [buffer] = &report.buffers[..] else {
        panic!("one leaked chain: {:#?}", report.buffers)
    };
    assert_eq!((buffer.bytes, buffer.children), (64 + 16, 1));
    // (Static functions have no linkage name: DWARF gives the plain name.)
    // A static function: its symbol-table name, with its parameters.
    assert_eq!(frames(&report, buffer.stack)[0], "LeakRecipientRows()");

    // The program called mapileak_process_exit, as a DLL does when unloaded.
    let exit = std::fs::read_dir(store().with_extension("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-exit.json"))
        .map(|p| read_file(&p).unwrap())
        .expect("a process-end report");
    assert_eq!(exit.session.event, mapileak_reports::Event::Exit);
    assert_eq!(exit.summary.leaked_objects, 3, "{:#?}", exit.objects);

    // And mapileak_snapshot before the Logoff: what was alive then, the
    // leaks and the logon's own objects, under the logon.
    let snapshot = std::fs::read_dir(store().with_extension("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-snapshot1.json"))
        .map(|p| read_file(&p).unwrap())
        .find(|r| r.session.label == "C++ store")
        .expect("the logon's snapshot report");
    assert_eq!(snapshot.session.event, mapileak_reports::Event::Snapshot);
    assert_eq!(snapshot.snapshot.as_ref().unwrap().label, "before logoff");
    let alive: Vec<&str> = snapshot.objects.iter().map(|o| o.label.as_str()).collect();
    for leaked in report.objects.iter().map(|o| o.label.as_str()) {
        assert!(alive.contains(&leaked), "{leaked} in {alive:?}");
    }
    assert!(
        snapshot.findings.is_empty(),
        "the findings are the Logoff's"
    );

    let [finding] = &report.findings[..] else {
        panic!("one finding: {:#?}", report.findings)
    };
    assert_eq!(finding.rule, "buffer-free-child");
    let stack = frames(&report, finding.stack);
    assert_eq!(stack[0], "FreeChildByMistake()", "{stack:#?}");
}

/// `msprovider.dll` (a C++ message store written against the MAPI SDK
/// headers, with the habits of third-party providers) loaded by
/// `mapihost.exe`, which does what MAPI does with Wine's own mapi32.dll.
/// Run with its planted bugs: each comes back alone, with its C++ frame,
/// and the host survives the over-release. Run clean: nothing is reported.
#[cfg(windows)]
#[test]
fn a_provider_dll_driven_as_mapi_does_reports_its_planted_bugs_and_nothing_else() {
    let programs = PathBuf::from(
        std::env::var_os("MAPILEAK_TEST_PROGRAMS").unwrap_or_else(|| {
            panic!("MAPILEAK_TEST_PROGRAMS is not set: run scripts/test-windows.sh")
        }),
    );
    let host = |profile: &str| -> (Vec<PathBuf>, String) {
        let dir = programs.join(format!("mapihost-{}.reports", profile.replace(' ', "-")));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(programs.join("mapihost.exe"))
            .arg(programs.join("msprovider.dll"))
            .arg(profile)
            .env("MAPILEAK_DIR", &dir)
            .env_remove("MAPILEAK")
            .env_remove("MAPILEAK_HISTORY")
            .retried(Command::output)
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        // MSProviderInit said CURRENT_SPI_VERSION; every step of the host passed.
        assert_eq!(stdout.trim(), "mapihost ok version=10010", "{stderr}");
        let reports = std::fs::read_dir(&dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        (reports, stderr)
    };
    let report = |reports: &[PathBuf], event: &str, stderr: &str| {
        let path = reports
            .iter()
            .find(|p| p.to_string_lossy().ends_with(&format!("-{event}.json")))
            .unwrap_or_else(|| panic!("no {event} report in {reports:?}: {stderr}"));
        read_file(path).unwrap()
    };
    let has = |report: &Report, stack: Option<StackId>, name: &str| {
        frames(report, stack).iter().any(|f| f.contains(name))
    };

    let (reports, stderr) = host("Test profile");
    // IMSLogon::Logoff, final at MAPI's Release of the logon.
    let logoff = report(&reports, "logoff", &stderr);
    assert_eq!(logoff.session.label, "Test profile");
    let s = &logoff.summary;
    assert_eq!(
        (s.leaked_objects, s.leak_roots, s.heap_blocks, s.findings),
        (1, 1, 1, 2),
        "{logoff:#?}"
    );
    // 1. The contents table the folder cached: its C++ creation site, and
    // its IPropData's buffers under it (not roots). (Its heap block is the
    // object's own; the logon, its status table and the store it embeds
    // are gone by the report: their state was freed in its destructor.)
    let [table] = &logoff.objects[..] else {
        panic!("{:#?}", logoff.objects)
    };
    assert_eq!(
        (table.kind.as_str(), table.label.as_str()),
        ("IMAPITable", "contents of Inbox")
    );
    assert!(table.root);
    assert!(
        has(&logoff, Some(table.created), "Folder::GetContentsTable("),
        "{:#?}",
        frames(&logoff, table.created)
    );
    let owned = logoff
        .buffers
        .iter()
        .filter(|b| b.owner == Some(table.id))
        .count();
    assert!(owned >= 1, "the IPropData's buffers: {:#?}", logoff.buffers);
    // 2. The scratch MAPI buffer, from Wine's MAPIAllocateBuffer through the
    // wrapper: the one root buffer (the property array and the row set
    // handed to the host are not listed, nor the profile section's).
    let roots: Vec<_> = logoff
        .buffers
        .iter()
        .filter(|b| b.owner.is_none())
        .collect();
    let [scratch] = &roots[..] else {
        panic!("{:#?}", logoff.buffers)
    };
    assert_eq!((scratch.bytes, scratch.children), (128, 0));
    assert!(frames(&logoff, scratch.stack)[0].contains("MsgStore::GetProps("));
    // 3. The over-release through the folder pointer the store kept: the
    // host's Release took it to 0 and deleted it, StoreLogoff's found it
    // there (its memory kept in the quarantine: the host went on).
    let over = logoff
        .findings
        .iter()
        .find(|f| f.rule == "over-release")
        .unwrap_or_else(|| panic!("{:#?}", logoff.findings));
    assert_eq!(
        over.subject.as_ref().map(|s| s.kind.as_str()),
        Some("IMAPIFolder")
    );
    assert!(
        has(&logoff, over.also, "MsgStore::StoreLogoff("),
        "{over:#?}"
    );
    // 4. The C++ heap (MAPILEAK_REPLACE_OPERATOR_NEW): the profile name's copy.
    let [heap] = &logoff.heap[..] else {
        panic!("{:#?}", logoff.heap)
    };
    assert_eq!(heap.bytes, "Test profile\0".len() as u64);
    assert!(frames(&logoff, heap.stack)[0].contains("MSProvider::Logon("));
    // 5. The logon's destructor freed a new[] block with free().
    let mismatch = logoff
        .findings
        .iter()
        .find(|f| f.rule == "alloc-dealloc-mismatch")
        .unwrap_or_else(|| panic!("{:#?}", logoff.findings));
    assert!(
        frames(&logoff, mismatch.stack)[0].contains("MSLogon::~MSLogon("),
        "{:#?}",
        frames(&logoff, mismatch.stack)
    );

    // Shutdown after the logon's Release: lpMalloc released through its
    // wrapper, no open logon, so no finding; the leaks are still there.
    let shutdown = report(&reports, "shutdown", &stderr);
    assert_eq!(shutdown.session.event, mapileak_reports::Event::Shutdown);
    assert!(shutdown.findings.is_empty(), "{:#?}", shutdown.findings);
    assert_eq!(shutdown.summary.leaked_objects, 1);
    // FreeLibrary: DllMain's DLL_PROCESS_DETACH wrote the process-end report.
    let exit = report(&reports, "exit", &stderr);
    assert_eq!(exit.session.event, mapileak_reports::Event::Exit);
    assert_eq!(exit.summary.leaked_objects, 1);

    // The same provider without its bugs: every report is clean (the
    // Logoff's and the Shutdown's written, no process-end report needed).
    let (reports, stderr) = host("clean");
    for event in ["logoff", "shutdown"] {
        let r = report(&reports, event, &stderr);
        assert!(r.is_clean(), "{event}: {r:#?}");
    }
    assert!(
        !reports
            .iter()
            .any(|p| p.to_string_lossy().ends_with("-exit.json")),
        "{reports:?}"
    );
}

/// The provider DLL's instrumentation: the lines marked `// mapileak` in
/// its source, beyond the include and DllMain's process-end call, are at
/// most the README's count.
#[test]
fn the_provider_dlls_instrumentation_is_twenty_lines() {
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/msprovider.cpp"),
    )
    .unwrap();
    let marked = source
        .lines()
        .filter(|l| l.trim_end().ends_with("// mapileak"))
        .count();
    assert_eq!(marked, 20, "update the README's count too");
}

/// The DLL unloaded (`FreeLibrary`, then `DllMain`'s process-end report
/// under the loader lock) while another thread of the host holds one of
/// mapileak's locks for good: one line says what was skipped, and nothing
/// hangs (a watchdog kills the host after a minute).
#[cfg(windows)]
#[test]
fn unloading_the_provider_dll_never_waits_on_a_held_lock() {
    let programs = PathBuf::from(
        std::env::var_os("MAPILEAK_TEST_PROGRAMS").unwrap_or_else(|| {
            panic!("MAPILEAK_TEST_PROGRAMS is not set: run scripts/test-windows.sh")
        }),
    );
    for (which, named) in [
        ("sessions", "session registry"),
        ("objects", "object registry"),
        ("heap", "heap table"),
        ("buffers", "MAPI buffer table"),
        ("symbolizer", "symbolizer"),
    ] {
        let dir = programs.join(format!("mapihost-held-{which}.reports"));
        let _ = std::fs::remove_dir_all(&dir);
        let out = watchdog::output_within(
            Command::new(programs.join("mapihost.exe"))
                .arg(programs.join("msprovider.dll"))
                .arg("Test profile")
                .arg(which)
                .env("MAPILEAK_DIR", &dir),
            std::time::Duration::from_secs(60),
        )
        .unwrap_or_else(|| panic!("{which}: the host hung unloading the provider"));
        let status = out.status;
        let stdout = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        let stderr = String::from_utf8_lossy(&out.stderr).replace('\r', "");
        assert_eq!(status.code(), Some(0), "{which}: {stdout}{stderr}");
        assert_eq!(
            stdout.trim(),
            "mapihost ok version=10010",
            "{which}: {stderr}"
        );
        let skipped = format!(
            "mapileak: process-end report skipped: mapileak's {named} lock was held by another thread for 200 ms (a thread ended while inside mapileak, or still running in it); nothing was written"
        );
        assert!(stderr.lines().any(|l| l == skipped), "{which}: {stderr}");
        // The Logoff and Shutdown reports came before; the exit one did not.
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.ends_with("-logoff.json")),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n.ends_with("-exit.json")),
            "{which}: {names:?}"
        );
    }
}

/// C++ classes that delete themselves, released once too often through a
/// kept pointer (`overrelease.cpp`): the host survives, each extra Release
/// is an `over-release` finding naming the Release that took the count to
/// 0 and the one too many, and what the program made without a scope is
/// its one logon's.
#[test]
fn an_over_released_cpp_object_is_a_finding_not_a_crash() {
    let exe = build("c++", "-std=c++17", "overrelease.cpp");
    let (line, report, stderr) = run(&exe);
    assert_eq!(
        line, "mapileak-overrelease leaked_objects=1 heap_blocks=2 findings=2",
        "{stderr}"
    );
    let mut overs: Vec<(&str, Vec<String>, Vec<String>)> = report
        .findings
        .iter()
        .map(|f| {
            assert_eq!(f.rule, "over-release", "{f:#?}");
            assert!(
                f.also.is_some() && f.also != f.stack,
                "two Releases: {f:#?}"
            );
            let subject = f.subject.as_ref().expect("the object it was");
            (
                subject.kind.as_str(),
                frames(&report, f.stack),
                frames(&report, f.also),
            )
        })
        .collect();
    overs.sort();
    let [(status, zeroed_s, extra_s), (table, zeroed_t, extra_t)] = &overs[..] else {
        panic!("{overs:#?}")
    };
    assert_eq!((*status, *table), ("IMAPIStatus", "IMAPITable"));
    // Both stacks: the Release that took the count to 0, then the one too
    // many, each under the client function that made it.
    for (zeroed, extra, client) in [
        (zeroed_s, extra_s, "ClientReleasesStatusTwice("),
        (zeroed_t, extra_t, "ClientReleasesTableTwice("),
    ] {
        assert!(zeroed.iter().any(|f| f.starts_with(client)), "{zeroed:#?}");
        assert!(extra.iter().any(|f| f.starts_with(client)), "{extra:#?}");
    }
    // Made outside any scope: the one open logon's.
    let [leaked] = &report.objects[..] else {
        panic!("{:#?}", report.objects)
    };
    assert_eq!(
        (leaked.kind.as_str(), leaked.label.as_str()),
        ("IMAPITable", "hierarchy cache")
    );
    assert!(
        frames(&report, leaked.created)
            .iter()
            .any(|f| f.starts_with("CacheHierarchy(")),
        "{:#?}",
        frames(&report, leaked.created)
    );
    // The C++ heap: the name's copy, and the rows of the leaked table (its
    // own block is the object's).
    let mut heap: Vec<(String, u64)> = report
        .heap
        .iter()
        .map(|h| (frames(&report, h.stack)[0].clone(), h.bytes))
        .collect();
    heap.sort();
    assert_eq!(
        heap,
        [
            ("CopyDisplayName(char const*)".to_owned(), 8),
            ("Table::Table(char const*)".to_owned(), 64)
        ],
        "{:#?}",
        report.heap
    );
    // The extra Release's frame is the class's Release, not mapileak.hpp's.
    let table = report
        .findings
        .iter()
        .find(|f| f.subject.as_ref().is_some_and(|s| s.kind == "IMAPITable"))
        .unwrap();
    assert_eq!(frames(&report, table.also)[0], "Table::Release()");
}

/// `logon.cpp`: a logon object that frees its state in its destructor, run
/// at MAPI's Release of the logon after Logoff. The report written is final
/// at that Release; Logoff returns what was alive when it was called.
#[test]
fn the_logoff_report_is_final_when_the_logon_object_is_released() {
    let exe = build("c++", "-std=c++17", "logon.cpp");
    // Alive at Logoff: the cached table, the name's copy, the support
    // object's reference.
    let at_logoff = "leaked_objects=1 heap_blocks=1 findings=1";

    // MAPI's order: Logoff, then Release(logon). Nothing leaked.
    let (line, report, stderr) = run_args(&exe, "release", &[], &["release"]);
    assert_eq!(
        line,
        format!("mapileak-logon release {at_logoff}"),
        "{stderr}"
    );
    assert!(report.is_clean(), "{:#?}", report);
    assert!(
        stderr.contains("address_book \"Mailbox\" logoff: 0 leaked objects"),
        "{stderr}"
    );

    // Never released: the Logoff report comes at Shutdown, with the state.
    let (line, report, stderr) = run_args(&exe, "never", &[], &["never"]);
    assert_eq!(
        line,
        format!("mapileak-logon never {at_logoff}"),
        "{stderr}"
    );
    let kinds: Vec<&str> = report.objects.iter().map(|o| o.label.as_str()).collect();
    assert_eq!(kinds, ["cached contents table"]);
    assert_eq!(report.heap.len(), 1);
    let rules: Vec<&str> = report.findings.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(rules, ["support-not-released"]);
    let logoff_at = stderr.find("\"Mailbox\" logoff:").expect("a Logoff report");
    let shutdown_at = stderr
        .find("\"C++ address book\" shutdown:")
        .expect("a Shutdown report");
    assert!(logoff_at < shutdown_at, "{stderr}");

    // Released before Logoff: out of order, and Logoff reports at once.
    let (line, report, stderr) = run_args(&exe, "before", &[], &["before"]);
    assert_eq!(
        line, "mapileak-logon before leaked_objects=0 heap_blocks=0 findings=1",
        "{stderr}"
    );
    let [finding] = &report.findings[..] else {
        panic!("{:#?}", report.findings)
    };
    assert_eq!(finding.rule, "out-of-order");
    assert!(
        finding.message.contains("released before"),
        "{}",
        finding.message
    );
    assert!(report.objects.is_empty() && report.heap.is_empty());
}

/// `fork.cpp`: a C++ harness forks while a thread holds each of the C
/// ABI's own locks (the quarantine's, the made kinds'), then 20 times while
/// two provider threads make and release objects of their own kind,
/// allocate and free through mapileak's heap, and log on and off. Every
/// child does the same and logs off with its one leak, in seconds: the
/// fork handlers took the C ABI's locks as well as mapileak's.
#[cfg(all(unix, feature = "test-hooks"))]
#[test]
fn a_cpp_harness_that_forks_while_threads_work_never_leaves_a_child_waiting() {
    let exe = build("c++", "-std=c++17", "fork.cpp");
    let dir = exe.with_extension("reports");
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(&exe)
        .arg(&dir)
        .env_remove("MAPILEAK")
        .env_remove("MAPILEAK_DIR")
        .retried(Command::output)
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "forked 22 hung 0",
        "{stderr}"
    );
    // Each child's report is there, with its object of a made kind.
    let children: Vec<Report> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.to_string_lossy();
            name.contains("forked_child") && name.ends_with(".json")
        })
        .map(|p| read_file(&p).unwrap())
        .collect();
    assert_eq!(children.len(), 22);
    for r in &children {
        let kinds: Vec<&str> = r.objects.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(kinds, ["IProviderCache"], "{:#?}", r.objects);
    }
}

/// `mixed.cpp`: legacy code that frees `new[]` blocks with `free()`,
/// deletes `malloc` blocks, deletes `new[]` without brackets. Each is an
/// `alloc-dealloc-mismatch` finding at the bad call, the block freed
/// correctly; a block of the C runtime's own (`strdup`) goes to its `free`;
/// a `free()` mapileak does not see frees the block without corruption.
#[test]
fn mixed_c_and_cpp_heaps_are_findings_not_corruption() {
    let exe = build("c++", "-std=c++17", "mixed.cpp");
    let (line, report, stderr) = run(&exe);
    // The one block left: the one freed unseen (48 bytes). The C runtime's
    // block where one of ours was (glibc hands the chunk back at once;
    // Wine's heap may not) is no finding: the seven are the bad calls.
    let (line, reused) = line
        .rsplit_once(" reused=")
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(
        line, "mapileak-mixed heap_blocks=1 heap_bytes=48 findings=7",
        "{stderr}"
    );
    if cfg!(target_env = "gnu") && cfg!(target_os = "linux") {
        assert_eq!(reused, "1", "glibc handed the freed chunk out again");
    }
    let mut found: Vec<(String, String, String)> = report
        .findings
        .iter()
        .map(|f| {
            (
                frames(&report, f.stack)[0].clone(),
                f.rule.clone(),
                f.message.clone(),
            )
        })
        .collect();
    found.sort();
    let expected = [
        (
            "DeleteArrayWithoutBrackets()",
            "alloc-dealloc-mismatch",
            "operator delete on a 64-byte block from operator new[]",
        ),
        (
            "DeleteMallocBlock()",
            "alloc-dealloc-mismatch",
            "operator delete on a 16-byte block from malloc",
        ),
        (
            "DeleteTwice()",
            "heap-double-free",
            "operator delete[] on a 16-byte block freed already",
        ),
        (
            "FreeGarbage()",
            "heap-bad-free",
            "free(0x1000): not the address of a heap block",
        ),
        ("FreeInterior()", "heap-bad-free", "free(0x"),
        (
            "FreeNewArrayWithFree()",
            "alloc-dealloc-mismatch",
            "free on a 32-byte block from operator new[]",
        ),
        (
            "ReallocNewArrayToZero()",
            "alloc-dealloc-mismatch",
            "realloc on a 24-byte block from operator new[]",
        ),
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for ((frame, rule, message), (want_frame, want_rule, want_message)) in
        found.iter().zip(expected)
    {
        assert_eq!(
            (frame.as_str(), rule.as_str()),
            (want_frame, want_rule),
            "{found:#?}"
        );
        assert!(message.starts_with(want_message), "{message}");
    }
    let [unseen] = &report.heap[..] else {
        panic!("{:#?}", report.heap)
    };
    assert_eq!(frames(&report, unseen.stack)[0], "UnseenFree()");
}

/// `buffers.cpp`: a row set handed to the caller in one call (each row's
/// property array with it), and a utility object's buffers listed under
/// the leaked object that owns it, not as roots of their own.
#[test]
fn row_sets_go_to_the_caller_whole_and_owned_buffers_stay_with_their_owner() {
    let exe = build("c++", "-std=c++17", "buffers.cpp");
    let (line, report, stderr) = run(&exe);
    assert_eq!(
        line, "mapileak-buffers leaked_objects=1 mapi_buffers=3 findings=0",
        "{stderr}"
    );
    let [user] = &report.objects[..] else {
        panic!("{:#?}", report.objects)
    };
    assert_eq!(
        (user.kind.as_str(), user.label.as_str()),
        ("IMailUser", "leaked user")
    );
    let mut owned: Vec<u64> = report
        .buffers
        .iter()
        .filter(|b| b.owner == Some(user.id))
        .map(|b| b.bytes)
        .collect();
    owned.sort();
    assert_eq!(
        owned,
        [64, 64],
        "the utility object's two buffers, under it"
    );
    let roots: Vec<(u64, String)> = report
        .buffers
        .iter()
        .filter(|b| b.owner.is_none())
        .map(|b| (b.bytes, frames(&report, b.stack)[0].clone()))
        .collect();
    assert_eq!(
        roots,
        [(100, "QueryRows(unsigned int)".to_owned())],
        "only the scratch buffer"
    );
    // The utility object's own block (new PropData) is the leaked user's
    // too: a heap block of 16 bytes under its constructor.
    let [heap] = &report.heap[..] else {
        panic!("{:#?}", report.heap)
    };
    assert!(frames(&report, heap.stack)[0].starts_with("MailUser::MailUser("));
}

#[test]
fn a_c_transport_wraps_mapi_buffers_and_finds_kinds_by_iid() {
    let exe = build("cc", "-std=c99", "transport.c");
    let (line, report, _) = run(&exe);
    // Two allocations reached the wrapped functions through mapileak (the
    // second free of one did not, the first waits in the quarantine), and
    // MAPI's own buffer went back to MAPI's free unchanged, no finding.
    assert_eq!(
        line,
        // The buffer bound to the session is the last real allocation and
        // its one unfreed buffer; the provider's Shutdown has one finding:
        // lpMalloc released three times for two AddRefs.
        "mapileak-c real_allocs=4 real_frees=1 leaked_objects=0 findings=3 mapi_buffers=1 shutdown_findings=1"
    );
    assert_eq!(report.session.label, "C transport");
    // The IXPLogon object found by IID has the logon role: alive at
    // TransportLogoff is expected, so it is not a leak.
    assert!(report.objects.is_empty(), "{:#?}", report.objects);
    let [finding, over, open] = &report.findings[..] else {
        panic!("three findings: {:#?}", report.findings)
    };
    // The over-release names the Release that took the count to 0 (the
    // first), and the later one that found it there; the object is gone,
    // so the finding says what it was.
    assert_eq!(over.rule, "over-release");
    assert!(
        over.message.contains("took IMAPIStatus"),
        "{}",
        over.message
    );
    assert!(over.also.is_some() && over.also != over.stack);
    let subject = over.subject.as_ref().expect("subject");
    assert_eq!(
        (subject.kind.as_str(), subject.label.as_str()),
        ("IMAPIStatus", "transport status")
    );
    assert_eq!(finding.rule, "buffer-double-free");
    assert_eq!(frames(&report, finding.stack)[0], "main");
    // The connection left open, reported at TransportLogoff.
    assert_eq!(open.rule, "server-connection-open");
    assert!(
        open.message.starts_with("connection 587 "),
        "{}",
        open.message
    );
    assert_eq!(frames(&report, open.stack)[0], "main");
}

#[test]
fn mapileak_history_names_kinds_whose_addref_and_release_stacks_are_kept() {
    let (_, report, _) = run_with(store(), "history", &[("MAPILEAK_HISTORY", "IMAPIFolder")]);
    let sent = report
        .objects
        .iter()
        .find(|o| o.label == "Sent Items")
        .expect("the held folder leaks");
    let at = |op: RefOp| -> Vec<Vec<String>> {
        sent.events
            .iter()
            .filter(|e| e.op == op)
            .map(|e| frames(&report, e.stack))
            .collect()
    };
    let called_from = |stacks: &[Vec<String>], method: &str, caller: &str| {
        stacks
            .iter()
            .any(|s| s[0] == method && s[1].starts_with(caller))
    };
    // The message's constructor took a reference; main let go of its own.
    let addrefs = at(RefOp::AddRef);
    assert!(
        called_from(
            &addrefs,
            "Object<&kFolder>::AddRef()",
            "(anonymous namespace)::Message::Message("
        ),
        "{addrefs:#?}"
    );
    let releases = at(RefOp::Release);
    assert!(
        called_from(&releases, "Object<&kFolder>::Release()", "main"),
        "{releases:#?}"
    );
    // One reference is left: one create or AddRef is unbalanced.
    let unmatched: u32 = sent.events.iter().map(|e| e.unmatched).sum();
    assert_eq!(unmatched, 1, "{:#?}", sent.events);
    // Other kinds keep no history.
    let table = report.objects.iter().find(|o| o.kind == "IMAPITable");
    assert!(table.unwrap().events.is_empty());
}

/// A C provider's own interface (`IProviderCache`, made by name) keeps its
/// AddRef/Release history when `MAPILEAK_HISTORY` names it, or when
/// `mapileak_set_history` does; without either it keeps none.
#[test]
fn history_is_kept_for_a_c_providers_own_kinds() {
    let exe = build("cc", "-std=c99", "history.c");
    let events_of = |report: &Report| -> Vec<(RefOp, String)> {
        let [cache] = &report.objects[..] else {
            panic!("{:#?}", report.objects)
        };
        assert_eq!(cache.kind, "IProviderCache");
        cache
            .events
            .iter()
            .map(|e| (e.op, frames(report, e.stack)[0].clone()))
            .collect()
    };
    let (_, by_env, stderr) = run_with(&exe, "env", &[("MAPILEAK_HISTORY", "IProviderCache")]);
    // Named before any kind of that name existed: one line says so.
    assert!(
        stderr.contains("MAPILEAK_HISTORY: no declared kind is named \"IProviderCache\""),
        "{stderr}"
    );
    let (_, by_call, _) = run_args(&exe, "call", &[], &["IMAPITable,IProviderCache"]);
    for report in [&by_env, &by_call] {
        let events = events_of(report);
        assert!(
            events
                .iter()
                .any(|(op, f)| *op == RefOp::AddRef && f == "take_two"),
            "{events:#?}"
        );
        assert!(
            events
                .iter()
                .any(|(op, f)| *op == RefOp::Release && f == "give_one_back"),
            "{events:#?}"
        );
        let unmatched: u32 = report.objects[0].events.iter().map(|e| e.unmatched).sum();
        assert_eq!(unmatched, 2, "the create and one AddRef are never released");
    }
    let (_, without, _) = run(&exe);
    assert!(events_of(&without).is_empty());
}

/// `include/mapileak.h` against the library: every function the static
/// library exports (`#[unsafe(no_mangle)]` in `src/`, the ones its macros
/// make included) is declared, with the same parameter and return
/// types and calling convention, and nothing else is declared. (Test hooks,
/// behind feature `test-hooks`, are not in a provider's library.)
#[test]
fn the_header_declares_exactly_what_the_library_exports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Every source file of the crate: exports live in its modules too.
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let rust: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let header = std::fs::read_to_string(root.join("include/mapileak.h")).unwrap();
    let exported = rust_exports(&rust);
    let declared = c_declarations(&header);
    assert!(exported.len() >= 50, "{exported:#?}");
    let names =
        |m: &std::collections::BTreeMap<String, Signature>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&exported), names(&declared), "exported vs declared");
    for (name, signature) in &exported {
        assert_eq!(signature, &declared[name], "{name}: Rust vs mapileak.h");
    }
}

/// A function's calling convention, return type and parameter types, in C
/// spelling.
#[derive(Debug, PartialEq)]
struct Signature {
    stdcall: bool,
    returns: String,
    params: Vec<String>,
}

/// A Rust type of the C ABI, spelled as the header spells it (the header's
/// typedefs for MAPI's SCODE and ULONG are `int32_t` and `uint32_t`).
fn c_type(rust: &str) -> String {
    let t = rust.split_whitespace().collect::<Vec<_>>().join(" ");
    let known = match t.as_str() {
        "" | "()" => "void",
        "u64" => "uint64_t",
        "u32" => "uint32_t",
        "i32" => "int32_t",
        "c_int" => "int",
        "usize" => "size_t",
        "*const c_char" => "const char *",
        "*mut c_void" => "void *",
        "*mut *mut c_void" => "void **",
        "*mut Summary" => "mapileak_summary *",
        "*mut c_int" => "int *",
        "*const c_void" => "const void *",
        "*const Object" => "const mapileak_object *",
        "*mut Object" => "mapileak_object *",
        "*const Guid" => "const mapileak_guid *",
        "Option<AllocateBufferFn>" => "mapileak_allocate_buffer_fn",
        "Option<AllocateMoreFn>" => "mapileak_allocate_more_fn",
        "Option<FreeBufferFn>" => "mapileak_free_buffer_fn",
        other => panic!("no C spelling for the Rust type {other:?}: add it"),
    };
    known.to_owned()
}

/// A C type as declared, its parameter name dropped, pointers spelled `T *`.
fn c_spelling(declared: &str) -> String {
    let t = declared.replace('*', " * ");
    let mut words: Vec<&str> = t.split_whitespace().collect();
    // A parameter's name: the last word, when it is not the type itself.
    if words.len() > 1 && words.last().is_some_and(|w| *w != "*") {
        words.pop();
    }
    let t = words.join(" ").replace("* *", "**");
    let t = match t.as_str() {
        "mapileak_ulong" => "uint32_t".to_owned(),
        "mapileak_scode" => "int32_t".to_owned(),
        _ => t,
    };
    t.trim().to_owned()
}

/// The text between the parenthesis at `open` and its match.
fn parenthesized(s: &str, open: usize) -> &str {
    let mut depth = 0;
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &s[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses at {open}")
}

/// Splits a parameter list at its top-level commas.
fn split_params(params: &str) -> Vec<String> {
    let (mut out, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for c in params.chars() {
        match c {
            '<' | '(' => depth += 1,
            '>' | ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// A Rust `fn NAME(PARAMS) -> RET {` at `fn_at` (PARAMS in Rust syntax).
fn rust_signature(src: &str, fn_at: usize, stdcall: bool) -> (String, Signature) {
    let open = fn_at + src[fn_at..].find('(').unwrap();
    let name = src[fn_at + 3..open].trim().to_owned();
    let params = parenthesized(src, open);
    let after = &src[open + params.len() + 2..];
    let returns = after[..after.find('{').unwrap()]
        .trim()
        .strip_prefix("->")
        .unwrap_or("")
        .trim()
        .to_owned();
    let params = split_params(params)
        .iter()
        .map(|p| c_type(p.split_once(':').map_or(p.as_str(), |(_, t)| t)))
        .collect();
    (
        name,
        Signature {
            stdcall,
            returns: c_type(&returns),
            params,
        },
    )
}

/// Every function the library exports, by name.
fn rust_exports(rust: &str) -> std::collections::BTreeMap<String, Signature> {
    let mut out = std::collections::BTreeMap::new();
    // Written out: `#[unsafe(no_mangle)]` then `pub [unsafe] extern "C"|"system" fn`.
    for (at, _) in rust.match_indices("#[unsafe(no_mangle)]") {
        // The attributes before it: a test hook is not in the library a
        // provider links (feature `test-hooks`), so the header leaves it out.
        let attrs_from = rust[..at].rfind("\n\n").map_or(0, |i| i + 2);
        if rust[attrs_from..at].contains("#[cfg(feature = \"test-hooks\")]") {
            continue;
        }
        let rest = &rust[at..];
        let abi_at = rest.find("extern \"").unwrap();
        let stdcall = rest[abi_at..].starts_with("extern \"system\"");
        let fn_at = at + rest.find("fn ").unwrap();
        if rust[fn_at + 3..].starts_with("mapileak_") {
            let (name, signature) = rust_signature(rust, fn_at, stdcall);
            out.insert(name, signature);
        }
    }
    // Made by the macros: `fn $name(PARAMS)` in the macro, `NAME => method
    // [(arg: Type)];` in each invocation.
    for (at, _) in rust.match_indices("macro_rules! ") {
        let macro_name: String = rust[at + 13..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let body = &rust[at..];
        let fn_at = at + body.find("fn $name(").unwrap();
        let open = fn_at + 8;
        let template = parenthesized(rust, open);
        let after = &rust[open + template.len() + 2..];
        let returns = after[..after.find('{').unwrap()]
            .trim()
            .trim_start_matches("->")
            .trim();
        let fixed: Vec<String> = split_params(template.split("$(").next().unwrap())
            .iter()
            .map(|p| c_type(p.split_once(':').unwrap().1))
            .collect();
        let call = format!("{macro_name}! {{");
        let Some(inv) = rust.find(&call) else {
            continue;
        };
        let block = &rust[inv + call.len()..];
        let block = &block[..block.find("\n}").unwrap()];
        for line in block.lines().map(str::trim) {
            let Some((name, rest)) = line.split_once(" => ") else {
                continue;
            };
            if line.starts_with("///") {
                continue;
            }
            // One naming rule between Rust and C: the C function is the
            // Rust method's name, prefixed (`mapileak_[object_]add_ref`).
            let method: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            assert!(
                name.ends_with(&format!("_{method}")),
                "{name} calls `{method}`: name it mapileak_[...]_{method}"
            );
            let mut params = fixed.clone();
            if let Some(open) = rest.find('(') {
                let arg = parenthesized(rest, open);
                params.push(c_type(arg.split_once(':').unwrap().1));
            }
            out.insert(
                name.to_owned(),
                Signature {
                    stdcall: false,
                    returns: c_type(returns),
                    params,
                },
            );
        }
    }
    out
}

/// Every function the header declares, by name.
fn c_declarations(header: &str) -> std::collections::BTreeMap<String, Signature> {
    // Comments and preprocessor lines out, then one statement per `;`.
    let mut text = String::new();
    let mut rest = header;
    while let Some(start) = rest.find("/*") {
        text.push_str(&rest[..start]);
        rest = &rest[start + rest[start..].find("*/").unwrap() + 2..];
    }
    text.push_str(rest);
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = std::collections::BTreeMap::new();
    for statement in text.split(';').map(str::trim) {
        let statement = statement.rsplit(['{', '}']).next().unwrap().trim();
        if statement.starts_with("typedef") || statement.starts_with("extern") {
            continue;
        }
        let Some(open) = statement.find("(") else {
            continue;
        };
        let head = &statement[..open];
        let Some(name) = head
            .split_whitespace()
            .last()
            .map(|n| n.trim_start_matches('*'))
        else {
            continue;
        };
        if !name.starts_with("mapileak_") {
            continue;
        }
        let stdcall = head.contains("MAPILEAK_STDCALL");
        let returns = head
            .replace("MAPILEAK_STDCALL", "")
            .trim_end()
            .strip_suffix(name)
            .unwrap()
            .to_owned();
        let params = parenthesized(statement, open);
        let params = if params.trim() == "void" {
            Vec::new()
        } else {
            split_params(params).iter().map(|p| c_spelling(p)).collect()
        };
        out.insert(
            name.to_owned(),
            Signature {
                stdcall,
                returns: c_spelling(&format!("{returns} x")),
                params,
            },
        );
    }
    out
}
