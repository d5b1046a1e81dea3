//! `mapileak` tested as a built binary, on real reports written by the
//! sample providers; and the HTML it renders, in headless Chromium.

// Chromium runs beside the Linux build; the HTML it checks is the same
// bytes on every platform (the renderer is pure).
#[cfg(unix)]
mod browser;
#[cfg(unix)]
mod cdp;
mod growth;
mod offline;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

#[path = "../../../tests/support/examples.rs"]
mod examples;
#[path = "../../../tests/support/quiet.rs"]
mod quiet;
#[path = "../../../tests/support/start.rs"]
mod start;

use start::Start as _;

use mapileak_samples::Bug;
use mapileak_samples::host::{self, Provider};

/// Sample runs share the process-wide report directory setting.
static DIR: Mutex<()> = Mutex::new(());

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the sample providers with these leaks; their reports land in `dir`.
fn reports(dir: &Path, runs: &[(Provider, Bug)]) {
    quiet::keep_process_end_traces_out_of_the_log();
    let _one = DIR.lock().unwrap_or_else(|e| e.into_inner());
    mapileak::set_output_dir(dir);
    for &(p, leak) in runs {
        let outcome = host::run(p, &format!("{p:?}"), leak);
        assert_eq!(outcome.logoffs[0].files.len(), 1);
    }
}

fn mapileak(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let out = output_of(
        Command::new(env!("CARGO_BIN_EXE_mapileak")).args(args.iter().map(|a| a.as_ref())),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    out
}

/// Runs `cmd` to its end (its start tried again after Wine's occasional
/// `CreateProcess` failure: `start`).
fn output_of(cmd: &mut Command) -> Output {
    cmd.retried(Command::output).expect("run mapileak")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn clean_reports_pass() {
    let d = tmp("clean");
    reports(
        &d,
        &[
            (Provider::MessageStore, Bug::None),
            (Provider::Transport, Bug::None),
        ],
    );
    let o = mapileak(&[&"gate", &d]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("0 unaccepted"), "{}", stdout(&o));
}

#[test]
fn a_leak_fails_and_is_named_with_its_creator() {
    let d = tmp("leak");
    reports(
        &d,
        &[
            (Provider::MessageStore, Bug::Table),
            (Provider::AddressBook, Bug::None),
        ],
    );
    let o = mapileak(&[&"gate", &d]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    assert!(
        out.contains("FAIL leak IMAPITable \"contents of Inbox\""),
        "{out}"
    );
    assert!(out.contains("refresh_unread_count"), "{out}");
    assert!(out.contains("1 unaccepted (1 leak(s)"), "{out}");
    // Judged once, where it was first reported: at Logoff (the Shutdown
    // report lists it again, still alive).
    let o = mapileak(&[&"gate", &"--format", &"json", &d]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{v:#}");
    assert_eq!(failures[0]["session"]["event"], "logoff", "{v:#}");
    assert!(
        failures[0]["report"]
            .as_str()
            .unwrap()
            .ends_with("-logoff.json"),
        "{v:#}"
    );
}

#[test]
fn a_reader_that_goes_away_keeps_the_verdict() {
    // `mapileak gate reports/ | head -1`: stdout is a pipe nobody reads.
    let d = tmp("closed-stdout");
    reports(&d, &[(Provider::MessageStore, Bug::Table)]);
    // gate: a leak, exit 1; diff of a run with itself: nothing new, exit 0.
    for (args, want) in [(vec![&d], 1), (vec![&d, &d], 0)] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let command = if args.len() == 1 { "gate" } else { "diff" };
        let o = Command::new(env!("CARGO_BIN_EXE_mapileak"))
            .arg(command)
            .args(args.clone())
            .stdout(writer)
            .retried(Command::output)
            .unwrap();
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{command}: {err}");
        assert_eq!(code(&o), want, "{command}: {err}");
    }
}

/// A standard output that fails for another reason than a reader going
/// away (a full disk) is an error: exit 2, one line.
#[cfg(target_os = "linux")]
#[test]
fn a_failing_standard_output_is_an_error() {
    let d = tmp("full-stdout");
    reports(&d, &[(Provider::MessageStore, Bug::Table)]);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mapileak"))
        .args(["gate".as_ref(), d.as_os_str()])
        .stdout(full)
        .retried(Command::output)
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("mapileak: cannot write to standard output: "),
        "{}",
        stderr(&o)
    );
}

/// An output path that cannot even be looked at (its "directory" is a
/// file) is refused as such, not taken for a path that does not exist.
/// (Windows says "not found" there, which is then what it is.)
#[cfg(unix)]
#[test]
fn an_output_under_a_file_is_refused() {
    let d = tmp("out-under-file");
    reports(&d, &[(Provider::MessageStore, Bug::Table)]);
    let file = tmp("out-under-file-x").join("plain.txt");
    std::fs::write(&file, "mine").unwrap();
    let out = file.join("page.html");
    let o = mapileak(&[&"render", &d, &"-o", &out]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("page.html: cannot read: "),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
}

#[test]
fn a_baseline_accepts_known_leaks_and_fails_one_more() {
    let d = tmp("baseline");
    let runs = tmp("baseline-runs");
    reports(&runs, &[(Provider::MessageStore, Bug::All)]);
    let baseline = d.join("mapileak-baseline.txt");
    let o = mapileak(&[&"gate", &"--write-baseline", &baseline, &runs]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = std::fs::read_to_string(&baseline).unwrap();
    assert!(
        text.contains("leak IMAPITable \"contents of Inbox\""),
        "{text}"
    );
    // Each line: signature, count, what and where (the provider's frame).
    assert!(
        text.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[0].len() == 16
                && f[1] == "1"
                && l.contains("leak IMAPITable \"contents of Inbox\" at mapileak_samples::")
        }),
        "{text}"
    );
    // A line whose signature is not 16 hex digits is refused.
    for bad in [
        "0123456789abcdeg 1 leak",
        "0123456789abcdef0 1 leak",
        "01234567 1 leak",
    ] {
        let broken = d.join("broken-baseline.txt");
        std::fs::write(&broken, format!("{bad}\n")).unwrap();
        let o = mapileak(&[&"gate", &"--baseline", &broken, &runs]);
        assert_eq!(code(&o), 2, "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("not a baseline line"), "{}", stderr(&o));
    }
    assert!(text.contains("finding over-release"), "{text}");
    assert_eq!(
        mapileak(&[&"gate", &"--write-baseline", &baseline, &runs])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        std::fs::read_to_string(&baseline).unwrap(),
        text,
        "stable order"
    );

    let o = mapileak(&[&"gate", &"--baseline", &baseline, &runs]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let lines = text.lines().filter(|l| !l.starts_with('#')).count();
    assert!(stdout(&o).contains("0 unaccepted"), "{}", stdout(&o));
    let accepted = format!("{lines} accepted by the baseline");
    assert!(stdout(&o).contains(&accepted), "{}", stdout(&o));

    // The same leak once more than the baseline accepts.
    reports(&runs, &[(Provider::MessageStore, Bug::Table)]);
    let o = mapileak(&[&"gate", &"--baseline", &baseline, &runs]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("FAIL leak IMAPITable"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("1 unaccepted"), "{}", stdout(&o));
}

#[test]
fn suppressions_with_reasons_pass_and_are_counted() {
    let d = tmp("suppress");
    let runs = tmp("suppress-runs");
    reports(
        &runs,
        &[
            (Provider::MessageStore, Bug::All),
            (Provider::Transport, Bug::Table),
        ],
    );
    let sup = d.join("suppressions.txt");
    std::fs::write(
        &sup,
        "# known\nkind:IMAPITable reason: the host keeps its tables\n\
         function:*file_incoming_message reason: vendor bug 77\n\
         rule:over-release reason: fixed upstream\n\
         kind:IDistList reason: never matches\n\
         rule:support-not-released reason: the leaked message keeps the store's support reference\n\
         rule:*-registered reason: MAPI drops the MAPIUIDs with the support reference\n\
         rule:status-row-present reason: MAPI drops the row with the support reference\n",
    )
    .unwrap();
    let o = mapileak(&[
        &"gate",
        &"--suppressions",
        &sup,
        &"--format",
        &"json",
        &runs,
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["result"], "pass");
    assert_eq!(v["suppressed"], 7);
    let hits: Vec<u64> = v["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hits"].as_u64().unwrap())
        .collect();
    assert_eq!(hits, [2, 1, 1, 0, 1, 1, 1]);
    assert!(
        stderr(&o).contains("kind:IMAPITable (line 2) matched 2 time(s)"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("warning: suppression kind:IDistList (line 5) matched nothing"),
        "{}",
        stderr(&o)
    );

    // A reason that says nothing is no reason.
    std::fs::write(&sup, "kind:IMAPITable reason:   \n").unwrap();
    let o = mapileak(&[&"gate", &"--suppressions", &sup, &runs]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains(":1: a suppression needs a reason"),
        "{}",
        stderr(&o)
    );

    // Without the function line, the message chain fails again.
    std::fs::write(&sup, "kind:IMAPITable reason: the host keeps its tables\n").unwrap();
    let o = mapileak(&[&"gate", &"--suppressions", &sup, &runs]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("FAIL leak IMessage"), "{}", stdout(&o));
}

#[test]
fn junit_output_is_junit_xml() {
    use quick_xml::events::Event;
    let runs = tmp("junit-runs");
    reports(
        &runs,
        &[
            (Provider::MessageStore, Bug::All),
            (Provider::AddressBook, Bug::None),
        ],
    );
    let o = mapileak(&[&"gate", &"--format", &"junit", &runs]);
    assert_eq!(code(&o), 1);
    let xml = stdout(&o);
    let mut reader = quick_xml::Reader::from_str(&xml);
    let (mut path, mut cases, mut failures) = (Vec::<String>::new(), 0, 0);
    let mut suite_attrs = Vec::new();
    // Every attribute of the test cases and failures, unescaped.
    let mut case_attrs: Vec<(String, String)> = Vec::new();
    let mut failure_attrs: Vec<(String, String)> = Vec::new();
    loop {
        let (e, empty) = match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                path.pop();
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
        match name.as_str() {
            "testsuites" => assert!(path.is_empty()),
            "testsuite" => {
                assert_eq!(path, ["testsuites"]);
                for a in e.attributes() {
                    let a = a.unwrap();
                    let key = String::from_utf8(a.key.as_ref().to_vec()).unwrap();
                    suite_attrs.push((key, a.unescape_value().unwrap().into_owned()));
                }
            }
            "testcase" | "failure" => {
                let into = if name == "testcase" {
                    assert_eq!(path, ["testsuites", "testsuite"]);
                    cases += 1;
                    &mut case_attrs
                } else {
                    assert_eq!(path, ["testsuites", "testsuite", "testcase"]);
                    failures += 1;
                    &mut failure_attrs
                };
                for a in e.attributes() {
                    let a = a.unwrap();
                    let key = String::from_utf8(a.key.as_ref().to_vec()).unwrap();
                    into.push((key, a.unescape_value().unwrap().into_owned()));
                }
            }
            other => panic!("unexpected element {other}"),
        }
        if !empty {
            path.push(name);
        }
    }
    assert!(path.is_empty(), "every element closed");
    // A failure's text lists the provider's frames with file and line.
    assert!(
        xml.lines()
            .any(|l| l.starts_with("    at mapileak_samples::") && l.contains(".rs:")),
        "{xml}"
    );
    // Each run wrote a Logoff and a Shutdown report: one test case each.
    let reports = std::fs::read_dir(&runs).unwrap().count();
    assert_eq!(reports, 4);
    assert_eq!(cases, reports, "one test case per session report");
    let json = mapileak(&[&"gate", &"--format", &"json", &runs]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let unaccepted = v["failures"].as_array().unwrap().len();
    assert!(unaccepted >= 3, "{v:#}");
    assert_eq!(
        failures, unaccepted,
        "one failure per unaccepted leak or finding"
    );
    let attr = |k: &str| {
        suite_attrs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(attr("tests"), Some(reports.to_string()));
    assert!(attr("failures").is_some_and(|f| f != "0"));
    // What the test cases and failures say, read back through the XML
    // escaping: each case names its session and its report file, each
    // failure what leaked.
    let names: Vec<&str> = case_attrs
        .iter()
        .filter(|(k, _)| k == "name")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(names.len(), reports);
    for name in &names {
        assert!(
            (name.contains(" (logoff, session ") || name.contains(" (shutdown, session "))
                && name.ends_with(')'),
            "{name}"
        );
    }
    assert!(
        case_attrs
            .iter()
            .filter(|(k, _)| k == "file")
            .all(|(_, v)| v.ends_with(".json") && std::path::Path::new(v).is_file()),
        "{case_attrs:?}"
    );
    assert!(
        failure_attrs
            .iter()
            .any(|(k, v)| k == "message" && v.starts_with("IMessage \"incoming message\" [")),
        "{failure_attrs:?}"
    );
}

#[test]
fn github_output_is_workflow_commands_at_the_providers_frame() {
    let runs = tmp("github-runs");
    reports(&runs, &[(Provider::Transport, Bug::Chain)]);
    let o = mapileak(&[&"gate", &"--format", &"github", &runs]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.starts_with("::error "))
        .expect("an annotation");
    let (props, message) = line["::error ".len()..]
        .split_once("::")
        .expect("::error PROPS::MESSAGE");
    let props: Vec<(&str, &str)> = props
        .split(',')
        .map(|p| p.split_once('=').expect("key=value"))
        .collect();
    let keys: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["file", "line", "title"]);
    assert!(props[0].1.ends_with("objects.rs"), "{line}");
    assert!(props[1].1.parse::<u32>().is_ok(), "{line}");
    assert!(
        props[2].1.starts_with("mapileak leak%3A IMessage"),
        "{line}"
    );
    assert!(
        message.contains("IMessage \"inbound message\" was never released"),
        "{line}"
    );
    assert!(!message.contains('\n'));
}

#[test]
fn diff_names_new_fixed_and_still_leaking() {
    let (old, new) = (tmp("diff-old"), tmp("diff-new"));
    reports(
        &old,
        &[
            (Provider::MessageStore, Bug::Table),
            (Provider::MessageStore, Bug::OverRelease),
        ],
    );
    reports(
        &new,
        &[
            (Provider::MessageStore, Bug::Table),
            (Provider::MessageStore, Bug::Chain),
        ],
    );
    let o = mapileak(&[&"diff", &old, &new]);
    assert_eq!(code(&o), 1, "new leaks");
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("new ") && l.contains("IMessage")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("still ") && l.contains("IMAPITable")),
        "{out}"
    );
    // Where: the provider's frame, with its file and line.
    assert!(
        out.lines().any(|l| l.starts_with("still ")
            && l.contains(" at mapileak_samples::")
            && l.contains(".rs:")
            && l.ends_with(')')),
        "{out}"
    );
    // With counts: one table leaked in each run.
    assert!(
        out.lines()
            .any(|l| l.starts_with("still ") && l.contains(" x1 (was x1)  leak IMAPITable")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("fixed ") && l.contains("over-release")),
        "{out}"
    );
    assert_eq!(code(&mapileak(&[&"diff", &new, &new])), 0);
}

/// One real report's bytes, to break.
/// A real report (the message store's Logoff, every bug planted), made
/// once: tests running at once must not share a directory they clear.
fn a_report() -> Vec<u8> {
    static REPORT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    REPORT
        .get_or_init(|| {
            let d = tmp("source");
            reports(&d, &[(Provider::MessageStore, Bug::All)]);
            let logoff = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().ends_with("-logoff.json"))
                .expect("the Logoff report");
            std::fs::read(logoff).unwrap()
        })
        .clone()
}

#[test]
fn bad_input_exits_2_with_one_line_naming_the_file() {
    let d = tmp("bad");
    let good = a_report();
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    v["version"] = 2.into();
    let newer = write("newer.json", &serde_json::to_vec(&v).unwrap());
    let truncated = write("truncated.json", &good[..good.len() / 3]);
    let not_json = write("not-json.json", b"MZ\x90\x00 this is a DLL, not a report");
    let deep = write(
        "deep.json",
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes(),
    );
    v["version"] = 1.into();
    v["summary"]["leaked_objects"] = "many".into();
    let wrong_type = write("wrong-type.json", &serde_json::to_vec(&v).unwrap());
    let huge = d.join("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(300 << 20)
        .unwrap(); // sparse
    let missing = d.join("no-such-dir");
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let broken_dir = d.join("broken");
    std::fs::create_dir_all(&broken_dir).unwrap();
    #[cfg(unix)]
    let _ = std::os::unix::fs::symlink("/nonexistent/target.json", broken_dir.join("r.json"));
    // Windows: a report another process holds open with no sharing (a
    // writer that has not finished), which cannot be read until it lets go.
    #[cfg(windows)]
    let _held = {
        use std::os::windows::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .share_mode(0)
            .open(broken_dir.join("r.json"))
            .unwrap()
    };
    let bad_baseline = write("baseline.txt", b"this is not a baseline\n");
    let no_reason = write("sup.txt", b"kind:IMAPITable\n");
    let ok = write("ok.json", &good);

    let cases: Vec<(Vec<&dyn AsRef<std::ffi::OsStr>>, &Path, &str)> = vec![
        (vec![&"gate", &newer], &newer, "version 2 is not supported"),
        (vec![&"gate", &truncated], &truncated, "truncated JSON"),
        (vec![&"gate", &not_json], &not_json, "not a valid report"),
        (vec![&"gate", &deep], &deep, "recursion limit"),
        (vec![&"gate", &wrong_type], &wrong_type, "invalid type"),
        (vec![&"gate", &huge], &huge, "over the"),
        (vec![&"gate", &missing], &missing, "cannot read"),
        (vec![&"gate", &empty], &empty, "no report files"),
        (vec![&"gate", &broken_dir], &broken_dir, "cannot read"),
        (
            vec![&"gate", &"--baseline", &bad_baseline, &ok],
            &bad_baseline,
            ":1: not a baseline line",
        ),
        (
            vec![&"gate", &"--suppressions", &no_reason, &ok],
            &no_reason,
            ":1: a suppression needs a reason",
        ),
    ];
    for (args, file, what) in cases {
        let o = mapileak(&args);
        let err = stderr(&o);
        assert_eq!(code(&o), 2, "{file:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(&*file.to_string_lossy()),
            "names {file:?}: {err}"
        );
        assert!(err.contains(what), "{what:?} in {err}");
    }
    // Usage errors are exit 2 too, in one line that shows what it echoes
    // of the arguments (a clear-screen, a fake line) without acting on it.
    for args in [
        vec!["gate"],
        vec!["gate", "--format", "xml\n::error::forged\x1b[2J"],
        vec!["frobnicate"],
    ] {
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = args.iter().map(|a| a as _).collect();
        if args.len() > 1 {
            all.push(&ok);
        }
        let o = mapileak(&all);
        let err = stderr(&o);
        assert_eq!(code(&o), 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("mapileak: "), "{err}");
        assert!(
            err.trim_end().ends_with("(mapileak --help for usage)"),
            "{err}"
        );
        assert!(!err.contains('\x1b'), "{err}");
    }
    // --help is not an error.
    let o = mapileak(&[&"--help"]);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("gate"));
}

/// A tiny xorshift generator: reproducible mutations without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, good: &[u8]) -> Vec<u8> {
    let mut b = good.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(b.len());
        match rng.below(5) {
            0 => b.truncate(at),
            1 => {
                let i = at.min(b.len().saturating_sub(1));
                b[i] = rng.next() as u8;
            }
            2 => b.insert(at, b"{}[]\",:-0e9\\"[rng.below(12)]),
            3 => {
                let end = (at + rng.below(64)).min(b.len());
                b.drain(at..end);
            }
            _ => {
                let end = (at + rng.below(64)).min(b.len());
                let chunk = b[at..end].to_vec();
                b.splice(at..at, chunk);
            }
        }
        if b.is_empty() {
            break;
        }
    }
    b
}

#[test]
fn mutated_reports_never_panic_the_reader_or_the_gate() {
    let good = a_report();
    // The corpus: the report, one with the fields v1 gained since (a
    // finding's repeat count, a buffer's owner), one with a quoted version.
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    v["findings"][0]["repeated"] = 7.into();
    let owner = v["objects"][0]["id"].clone();
    let buffer = serde_json::json!({
        "stack": v["objects"][0]["created"].clone(),
        "bytes": 64, "children": 1, "signature": "00000000000000aa", "owner": owner,
    });
    v["buffers"].as_array_mut().unwrap().push(buffer);
    let grown = serde_json::to_vec(&v).unwrap();
    v["version"] = "1".into();
    let quoted = serde_json::to_vec(&v).unwrap();
    // A snapshot: what `growth` and `gate --growth` read.
    v["version"] = 1.into();
    v["session"]["event"] = "snapshot".into();
    v["snapshot"] = serde_json::json!({"seq": 3, "label": "periodic", "taken_ms": 1000});
    let snapshot = serde_json::to_vec(&v).unwrap();
    let corpus = [good, grown, quoted, snapshot];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // In process: many mutations through the report reader.
    for i in 0..3000 {
        let bytes = mutate(&mut rng, &corpus[i % corpus.len()]);
        if let Ok(r) = mapileak_reports::from_json(&bytes) {
            let _ = mapileak_reports::growth::series(&[&r, &r, &r], |i| i.to_string());
        }
    }
    // Through the binary: a few dozen, each must exit 0, 1 or 2, never crash.
    let d = tmp("fuzz");
    for i in 0..40 {
        let p = d.join(format!("m{i}.json"));
        std::fs::write(&p, mutate(&mut rng, &corpus[i % corpus.len()])).unwrap();
        for args in [
            &[&"gate" as &dyn AsRef<std::ffi::OsStr>, &p][..],
            &[&"gate", &"--growth", &p],
            &[&"growth", &p],
        ] {
            let o = mapileak(args);
            let c = code(&o);
            assert!((0..=2).contains(&c), "exit {c}: {}", stderr(&o));
            if c == 2 {
                assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
            }
        }
    }
}

/// A FIFO at `path`, made with mkfifo(1).
#[cfg(unix)]
fn fifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

/// Runs mapileak with a watchdog: a run that has not ended in 30 s is a
/// hang, and the test fails instead of waiting for ever.
fn mapileak_in_time(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mapileak"))
        .args(args.iter().map(|a| a.as_ref()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .retried(Command::spawn)
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!(
                "mapileak {:?} hung",
                args.iter().map(|a| a.as_ref()).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[test]
fn special_files_are_refused_at_once_and_links_are_read_once() {
    let d = tmp("special");
    let good = a_report();
    std::fs::write(d.join("ok.json"), &good).unwrap();
    let reports = d.join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::write(reports.join("r.json"), &good).unwrap();
    fifo(&reports.join("pipe.json"));
    let pipe = reports.join("pipe.json");
    let ok = d.join("ok.json");
    let html = d.join("out.html");
    fifo(&d.join("fifo-out.html"));
    let fifo_out = d.join("fifo-out.html");
    let cases: Vec<(Vec<&dyn AsRef<std::ffi::OsStr>>, &Path)> = vec![
        (vec![&"gate", &reports], &pipe),
        (vec![&"gate", &pipe], &pipe),
        (vec![&"gate", &"--baseline", &pipe, &ok], &pipe),
        (vec![&"gate", &"--suppressions", &pipe, &ok], &pipe),
        (vec![&"render", &ok, &"-o", &fifo_out], &fifo_out),
        (vec![&"gate", &"/dev/zero"], Path::new("/dev/zero")),
    ];
    for (args, named) in cases {
        let o = mapileak_in_time(&args);
        let err = stderr(&o);
        assert_eq!(code(&o), 2, "{named:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&*named.to_string_lossy()),
            "names {named:?}: {err}"
        );
    }
    assert!(!html.exists());

    // A directory holding links to itself: each real report is read once,
    // and the walk ends.
    let looped = d.join("looped");
    std::fs::create_dir_all(&looped).unwrap();
    std::fs::write(looped.join("r.json"), &good).unwrap();
    std::os::unix::fs::symlink(".", looped.join("x")).unwrap();
    std::os::unix::fs::symlink(".", looped.join("y")).unwrap();
    std::os::unix::fs::symlink("r.json", looped.join("same.json")).unwrap();
    let o = mapileak_in_time(&[&"gate", &"--format", &"json", &looped]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON verdict");
    assert_eq!(v["reports"], 1, "{v}");
}

#[test]
fn sums_past_u64_saturate_instead_of_panicking() {
    let d = tmp("overflow");
    let mut v: serde_json::Value = serde_json::from_slice(&a_report()).unwrap();
    let site = serde_json::json!({
        "stack": 0, "blocks": u64::MAX, "bytes": u64::MAX, "signature": "00000000000000aa"
    });
    v["heap"] = serde_json::json!([site.clone(), site]);
    v["summary"]["leaked_objects"] = u64::MAX.into();
    let big = d.join("big.json");
    std::fs::write(&big, serde_json::to_vec(&v).unwrap()).unwrap();
    std::fs::write(d.join("big2.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    // One page for both reports: their totals add past u64.
    let o = mapileak(&[&"render", &d, &"-o", &d.join("out.html")]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = mapileak(&[&"render", &big, &"-o", &d.join("one.html")]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Two baseline lines for one signature whose counts add past u64.
    let sig = &v["objects"][0]["signature"];
    let baseline = d.join("baseline.txt");
    std::fs::write(
        &baseline,
        format!(
            "{} {} leak a\n{} {} leak b\n",
            sig.as_str().unwrap(),
            u64::MAX,
            sig.as_str().unwrap(),
            u64::MAX
        ),
    )
    .unwrap();
    let o = mapileak(&[&"gate", &"--baseline", &baseline, &big]);
    assert!((0..=1).contains(&code(&o)), "{}", stderr(&o));
}

#[test]
fn report_text_never_reaches_a_log_unescaped() {
    let d = tmp("escape");
    let mut v: serde_json::Value = serde_json::from_slice(&a_report()).unwrap();
    let inject = "x\n::error file=pwned.rs,line=1::injected\r\n";
    v["objects"][0]["label"] = inject.into();
    v["findings"] = serde_json::json!([{
        "rule": "over-release", "severity": "error", "message": inject,
        "stack": null, "signature": "00000000000000ff"
    }]);
    let labelled = d.join("labelled.json");
    std::fs::write(&labelled, serde_json::to_vec(&v).unwrap()).unwrap();
    for format in ["text", "github", "json"] {
        let o = mapileak(&[&"gate", &"--format", &format, &labelled]);
        assert_eq!(code(&o), 1);
        let out = stdout(&o);
        assert!(
            !out.lines().any(|l| l.starts_with("::error file=pwned")),
            "{format}: {out}"
        );
    }
    // A bad value quoted in an exit-2 message stays on its one line.
    v["session"]["event"] = inject.into();
    let bad = d.join("bad.json");
    std::fs::write(&bad, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = mapileak(&[&"gate", &bad]);
    assert_eq!(code(&o), 2);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(!stderr(&o).contains("\n::error"), "{}", stderr(&o));
}

#[test]
fn write_baseline_replaces_only_a_baseline() {
    let d = tmp("write-baseline");
    std::fs::write(d.join("r.json"), a_report()).unwrap();
    let notes = d.join("notes.txt");
    std::fs::write(&notes, "my notes, not a baseline\n").unwrap();
    let o = mapileak(&[&"gate", &"--write-baseline", &notes, &d.join("r.json")]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not a mapileak baseline"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        "my notes, not a baseline\n"
    );
    let o = mapileak(&[
        &"gate",
        &"--write-baseline",
        &notes,
        &"--replace",
        &d.join("r.json"),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // A baseline it wrote is replaced without asking.
    let o = mapileak(&[&"gate", &"--write-baseline", &notes, &d.join("r.json")]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        std::fs::read_to_string(&notes)
            .unwrap()
            .starts_with("# mapileak baseline")
    );
}

/// Windows' special files: the `NUL` device as a report, a baseline or
/// the page to write is refused at once, never read or written.
#[cfg(windows)]
#[test]
fn special_files_are_refused_at_once() {
    let d = tmp("special");
    let ok = d.join("ok.json");
    std::fs::write(&ok, a_report()).unwrap();
    let cases: Vec<Vec<&dyn AsRef<std::ffi::OsStr>>> = vec![
        vec![&"gate", &"NUL"],
        vec![&"gate", &"--baseline", &"NUL", &ok],
        vec![&"render", &ok, &"-o", &"NUL"],
    ];
    for args in cases {
        let o = mapileak_in_time(&args);
        let err = stderr(&o);
        assert_eq!(code(&o), 2, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("NUL"), "{err}");
    }
}

/// The gate's other readers, fed mutated files through the binary: a
/// baseline written by the gate itself and a suppressions list, each
/// mutated (truncated, bytes flipped, JSON and list syntax inserted, runs
/// cut and repeated) and given with a good report. Every run exits 0, 1 or
/// 2, and a 2 is one line: never a panic. Also the rendering of mutated
/// reports, which sums their numbers.
#[test]
fn mutated_baselines_suppressions_and_pages_never_panic() {
    let d = tmp("fuzz-lists");
    let report = d.join("r.json");
    std::fs::write(&report, a_report()).unwrap();
    let baseline = d.join("baseline.txt");
    let o = mapileak(&[&"gate", &"--write-baseline", &baseline, &report]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let seeds = [
        ("--baseline", std::fs::read(&baseline).unwrap()),
        (
            "--suppressions",
            b"# known\nkind:IMAPITable reason: the host keeps it\n\
              function:*refresh_* reason: vendor bug\nrule:over-release reason: upstream\n\
              signature:00000000000000aa reason: old\n"
                .to_vec(),
        ),
    ];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for (flag, good) in &seeds {
        for i in 0..25 {
            let p = d.join(format!("m{i}.txt"));
            std::fs::write(&p, mutate(&mut rng, good)).unwrap();
            let o = mapileak(&[&"gate", flag, &p, &report]);
            let c = code(&o);
            assert!((0..=2).contains(&c), "{flag} exit {c}: {}", stderr(&o));
            if c == 2 {
                assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
            }
        }
    }
    let good = a_report();
    for i in 0..15 {
        let p = d.join(format!("page{i}.json"));
        std::fs::write(&p, mutate(&mut rng, &good)).unwrap();
        let o = mapileak(&[&"render", &p, &"-o", &d.join(format!("page{i}.html"))]);
        let c = code(&o);
        assert!(c == 0 || c == 2, "render exit {c}: {}", stderr(&o));
    }
}
