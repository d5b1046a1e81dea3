//! `mapileak snapshot`, `growth` and `gate --growth`, end to end: the soak
//! example (the sample store, kept logged on while it synchronizes) is
//! asked for its snapshots from this process through the CLI, as a
//! provider engineer asks Outlook for them.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::{code, mapileak, stderr, stdout, tmp};
use crate::start::Start as _;

/// The soak example, built by `cargo test` with the root package.
fn soak_example() -> PathBuf {
    super::examples::example("soak")
}

struct Soak {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Soak {
    /// The example's `store` with its reports in `dir`, requests on
    /// SIGUSR2 (Unix), and `env` besides; its stderr captured when asked.
    fn start(dir: &Path, store: &str) -> (Soak, u32) {
        Soak::start_with(dir, store, &[("MAPILEAK_SNAPSHOT_SIGNAL", "USR2")], false)
    }

    fn start_with(dir: &Path, store: &str, env: &[(&str, &str)], stderr: bool) -> (Soak, u32) {
        let mut child = Command::new(soak_example())
            .arg(store)
            .env("MAPILEAK_DIR", dir)
            .env_remove("MAPILEAK_SNAPSHOT_SIGNAL")
            .env_remove("MAPILEAK_SNAPSHOT_EVERY")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if stderr {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .retried(Command::spawn)
            .expect("start the soak example");
        let mut soak = Soak {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        };
        let line = soak.line();
        let pid = line
            .strip_prefix("pid ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{line:?}"));
        (soak, pid)
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read the soak's output");
        line.trim().to_owned()
    }

    fn say(&mut self, what: &str) {
        writeln!(self.stdin, "{what}").expect("write to the soak");
        self.stdin.flush().unwrap();
    }
}

impl Drop for Soak {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (a minute at most) until `dir` holds the logon's report of
/// snapshot `seq`.
fn wait_for_snapshot(dir: &Path, seq: u32) {
    let suffix = format!("-snapshot{seq}.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = std::fs::read_dir(dir).unwrap().any(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.starts_with("message_store-") && name.ends_with(&suffix)
        });
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot {seq} in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the soak example's store (`cache` or `steady`) for `rounds`
/// rounds, asking it for a snapshot after each through `mapileak snapshot`.
/// Returns the example's last line (its Logoff's counts).
pub(super) fn soak(dir: &Path, store: &str, rounds: u32) -> String {
    let (mut soak, pid) = Soak::start(dir, store);
    for round in 1..=rounds {
        assert_eq!(soak.line(), format!("synced {round}"));
        let o = mapileak(&[&"snapshot", &pid.to_string()]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        wait_for_snapshot(dir, round);
        soak.say(if round < rounds { "sync" } else { "quit" });
    }
    let last = soak.line();
    let status = soak.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    last
}

#[test]
fn a_cache_growing_on_every_synchronize_is_found_and_fails_the_gate() {
    let d = tmp("growth-cache");
    let last = soak(&d, "cache", 4);
    // The cache is emptied when the store is released: Logoff is clean.
    assert_eq!(
        last,
        "logoff: 0 leaked object(s), 0 heap block(s), 0 finding(s)"
    );

    let page = d.with_extension("html");
    let _ = std::fs::remove_file(&page);
    let o = mapileak(&[&"growth", &d, &"-o", &page]);
    let text = stdout(&o);
    assert_eq!(code(&o), 1, "a site grew: {text}{}", stderr(&o));
    assert!(
        text.contains("4 snapshot(s), #1 \"requested\" to #4 \"requested\""),
        "{text}"
    );
    // Two tables and three rows of 200 bytes per Synchronize.
    assert!(
        text.contains("growth IMAPITable +2.0 per snapshot: 2 → 4 → 6 → 8 ["),
        "{text}"
    );
    assert!(
        text.contains(
            "growth heap +3.0 per snapshot: 3 → 6 → 9 → 12 (600 → 1200 → 1800 → 2400 bytes)"
        ),
        "{text}"
    );
    assert!(text.contains("cache_synchronized"), "{text}");
    assert!(text.contains("2 site(s) grew at every step"), "{text}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("2 growing site(s)") && html.contains("<polyline"));

    // The gate: the Logoff is clean, the growth is not.
    let o = mapileak(&[&"gate", &d]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let o = mapileak(&[&"gate", &"--growth", &d]);
    let text = stdout(&o);
    assert_eq!(code(&o), 1, "{text}");
    assert!(
        text.contains("FAIL growth IMAPITable +2.0 per snapshot"),
        "{text}"
    );
    assert!(text.contains("2 growing site(s)"), "{text}");
    // A threshold above the slope passes it.
    let o = mapileak(&[
        &"gate",
        &"--growth",
        &"--growth-threshold",
        &"4",
        &"--growth-threshold-bytes",
        &"4096",
        &d,
    ]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    // Suppressed by rule, with a reason: passes, and the hits are counted.
    let sups = d.with_extension("suppressions");
    std::fs::write(
        &sups,
        "rule:growth reason: the sync cache is bounded in 2.0 (ticket 12)\n",
    )
    .unwrap();
    let o = mapileak(&[&"gate", &"--growth", &"--suppressions", &sups, &d]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stderr(&o).contains("matched 2 time(s)"), "{}", stderr(&o));
    // And a baseline written with --growth accepts them.
    let baseline = d.with_extension("baseline");
    let _ = std::fs::remove_file(&baseline);
    let o = mapileak(&[&"gate", &"--growth", &"--write-baseline", &baseline, &d]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = mapileak(&[&"gate", &"--growth", &"--baseline", &baseline, &d]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn a_steady_store_grows_nothing() {
    let d = tmp("growth-steady");
    let last = soak(&d, "steady", 4);
    assert_eq!(
        last,
        "logoff: 0 leaked object(s), 0 heap block(s), 0 finding(s)"
    );
    let o = mapileak(&[&"growth", &d]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("0 site(s) grew at every step"),
        "{}",
        stdout(&o)
    );
    let o = mapileak(&[&"gate", &"--growth", &d]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn snapshot_requests_that_cannot_be_delivered_are_one_line_errors() {
    // No such process.
    let o = mapileak(&[&"snapshot", &"4000000000"]);
    assert_eq!(code(&o), 2);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    // A process without the opt-in signal (this test): it takes no
    // requests, and is not signalled (the signal would end it). (On
    // Windows every process with mapileak takes them, this one too.)
    #[cfg(unix)]
    {
        let o = mapileak(&[&"snapshot", &std::process::id().to_string()]);
        assert_eq!(code(&o), 2);
        assert!(
            stderr(&o).contains("takes no snapshot requests"),
            "{}",
            stderr(&o)
        );
    }
    // Growth over reports that are no snapshots.
    let d = tmp("growth-none");
    super::reports(
        &d,
        &[(
            mapileak_samples::host::Provider::MessageStore,
            mapileak_samples::Bug::Table,
        )],
    );
    let o = mapileak(&[&"growth", &d]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).starts_with("mapileak: no snapshot reports"),
        "{}",
        stderr(&o)
    );
    let o = mapileak(&[&"growth", &"--growth-threshold", &"0", &d]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[test]
fn periodic_snapshots_come_without_a_request() {
    let d = tmp("growth-periodic");
    let (mut soak, _) =
        Soak::start_with(&d, "cache", &[("MAPILEAK_SNAPSHOT_EVERY", "0.05")], false);
    assert_eq!(soak.line(), "synced 1");
    wait_for_snapshot(&d, 3);
    soak.say("quit");
    assert!(soak.child.wait().unwrap().success());
    let o = mapileak(&[&"growth", &d]);
    let text = stdout(&o);
    // All taken while the store stood still after one round: nothing grew.
    assert_eq!(code(&o), 0, "{text}");
    assert!(text.contains("\"periodic\" to #"), "{text}");
}

/// A signal the host already handles (or ignores) is not taken over; a
/// request on it is refused, and the process goes on.
#[cfg(unix)]
#[test]
fn a_signal_the_host_has_is_left_to_it() {
    let d = tmp("growth-host-signal");
    // SIGPIPE (13): Rust's runtime ignores it.
    let (mut soak, pid) =
        Soak::start_with(&d, "steady", &[("MAPILEAK_SNAPSHOT_SIGNAL", "13")], true);
    let pid = pid.to_string();
    assert_eq!(soak.line(), "synced 1");
    let o = mapileak(&[&"snapshot", &pid]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    soak.say("quit");
    let mut rest = String::new();
    std::io::Read::read_to_string(soak.child.stderr.as_mut().unwrap(), &mut rest).unwrap();
    assert!(soak.child.wait().unwrap().success());
    assert!(
        rest.contains("the host already handles signal 13"),
        "{rest}"
    );
}

/// Only the process's own user may ask it for a snapshot: as another user
/// the request is refused in one line, and the process writes nothing.
/// (Run as root, as CI does, the request comes from `nobody` through
/// setpriv; run as a user, it goes to process 1, which is root's.)
#[cfg(target_os = "linux")]
#[test]
fn another_users_request_is_refused() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        let o = mapileak(&[&"snapshot", &"1"]);
        assert_eq!(code(&o), 2);
        assert!(stderr(&o).contains("only its own user"), "{}", stderr(&o));
        return;
    }
    let d = tmp("growth-other-user");
    let (mut soak, pid) = Soak::start(&d, "steady");
    assert_eq!(soak.line(), "synced 1");
    // A copy nobody can run, wherever the checkout is.
    use std::os::unix::fs::PermissionsExt as _;
    let open = std::env::temp_dir().join(format!("mapileak-cli-{}", std::process::id()));
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = open.join("mapileak");
    std::fs::copy(env!("CARGO_BIN_EXE_mapileak"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["snapshot", &pid.to_string()])
        .retried(Command::output)
        .expect("setpriv (util-linux) runs the CLI as nobody");
    let _ = std::fs::remove_dir_all(&open);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("only its own user"), "{}", stderr(&o));
    soak.say("quit");
    assert!(soak.child.wait().unwrap().success());
    let snapshots = std::fs::read_dir(&d)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("-snapshot")
        })
        .count();
    assert_eq!(snapshots, 0);
}
