//! Runs the whole-program benchmark's builds (`scripts/bench-whole.sh` makes
//! them in DIR) side by side, interleaved, ROUNDS times each, and prints
//! per candidate its time against the plain build of the same program (the
//! best round of each), its peak RSS, what the Logoff added to it and took,
//! and how many of the 20 leaking sites its report names; then the targets.
//!
//! `whole-run DIR ROUNDS`. Exit 0 when every candidate found all 20 sites
//! (the targets are printed, met or missed), 1 when one did not, 2 on bad
//! usage or a build that would not run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a candidate's leak report is read.
#[derive(Clone, Copy, PartialEq)]
enum Finds {
    /// The plain program: nothing.
    Nothing,
    /// mapileak's Logoff report in its report directory.
    Report,
    /// mapileak's report written raw (`MAPILEAK_SYMBOLS=offline`), named by
    /// `mapileak symbolize` afterwards.
    OfflineReport,
    /// LeakSanitizer's text on stderr.
    LeakSanitizer,
}

struct Candidate {
    name: &'static str,
    exe: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    /// The name of its plain run (itself for a plain one).
    plain: &'static str,
    finds: Finds,
}

const CANDIDATES: &[Candidate] = &[
    Candidate {
        name: "rust-release/plain",
        exe: "rust-release-plain",
        args: &["scoped"],
        env: &[],
        plain: "rust-release/plain",
        finds: Finds::Nothing,
    },
    Candidate {
        name: "rust-release/counting",
        exe: "rust-release-tool",
        args: &["unscoped"],
        env: &[],
        plain: "rust-release/plain",
        finds: Finds::Nothing,
    },
    Candidate {
        name: "rust-release/stacks",
        exe: "rust-release-tool",
        args: &["scoped"],
        env: &[],
        plain: "rust-release/plain",
        finds: Finds::Report,
    },
    Candidate {
        name: "rust-provider-debug/plain",
        exe: "rust-debug-plain",
        args: &["scoped"],
        env: &[],
        plain: "rust-provider-debug/plain",
        finds: Finds::Nothing,
    },
    Candidate {
        name: "rust-provider-debug/counting",
        exe: "rust-debug-tool",
        args: &["unscoped"],
        env: &[],
        plain: "rust-provider-debug/plain",
        finds: Finds::Nothing,
    },
    Candidate {
        name: "rust-provider-debug/stacks",
        exe: "rust-debug-tool",
        args: &["scoped"],
        env: &[],
        plain: "rust-provider-debug/plain",
        finds: Finds::Report,
    },
    Candidate {
        name: "rust-provider-debug/stacks-offline",
        exe: "rust-debug-tool",
        args: &["scoped"],
        env: &[("MAPILEAK_SYMBOLS", "offline")],
        plain: "rust-provider-debug/plain",
        finds: Finds::OfflineReport,
    },
    Candidate {
        name: "cpp-O2/plain",
        exe: "cpp-plain",
        args: &[],
        env: &[],
        plain: "cpp-O2/plain",
        finds: Finds::Nothing,
    },
    Candidate {
        name: "cpp-O2/mapileak",
        exe: "cpp-tool",
        args: &[],
        env: &[],
        plain: "cpp-O2/plain",
        finds: Finds::Report,
    },
    Candidate {
        name: "cpp-O2/leaksanitizer",
        exe: "cpp-lsan",
        args: &[],
        env: &[("LSAN_OPTIONS", "exitcode=0")],
        plain: "cpp-O2/plain",
        finds: Finds::LeakSanitizer,
    },
];

/// One run of one candidate.
struct Run {
    wall: Duration,
    peak_rss_kb: u64,
    /// From the program's own line: RSS before the Logoff, the Logoff's
    /// peak and its time.
    rss_before_kb: u64,
    logoff_peak_kb: u64,
    logoff_ms: f64,
    sites: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, rounds) = match args.as_slice() {
        [_, dir, rounds] => match rounds.parse::<usize>() {
            Ok(r) if r > 0 => (PathBuf::from(dir), r),
            _ => usage(),
        },
        _ => usage(),
    };
    // LeakSanitizer is not on Windows (the script runs there under Wine).
    let candidates: Vec<&Candidate> = CANDIDATES
        .iter()
        .filter(|c| !(cfg!(windows) && c.finds == Finds::LeakSanitizer))
        .collect();
    let runs = run_all(&dir, &candidates, rounds);
    let results = Results::new(&candidates, &runs);
    let all_found = results.print_lines();
    for (what, met) in results.targets() {
        println!(
            "mapileak-whole target {} {what}",
            if met { "met" } else { "MISSED" }
        );
    }
    if !all_found {
        eprintln!("whole-run: a candidate did not name all 20 leaking sites");
        std::process::exit(1);
    }
}

/// Every candidate's runs, the rounds interleaved; exits 2 when one fails.
fn run_all(dir: &Path, candidates: &[&Candidate], rounds: usize) -> Vec<Vec<Run>> {
    let cli = dir.join(format!("mapileak{}", std::env::consts::EXE_SUFFIX));
    let mut runs: Vec<Vec<Run>> = candidates.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, c) in candidates.iter().enumerate() {
            match run(dir, &cli, c, round) {
                Ok(r) => runs[i].push(r),
                Err(e) => {
                    eprintln!("whole-run: {}: {e}", c.name);
                    std::process::exit(2);
                }
            }
        }
    }
    runs
}

/// The candidates with their runs and each one's best round.
struct Results<'a> {
    candidates: &'a [&'a Candidate],
    runs: &'a [Vec<Run>],
    best: Vec<&'a Run>,
}

impl<'a> Results<'a> {
    fn new(candidates: &'a [&'a Candidate], runs: &'a [Vec<Run>]) -> Results<'a> {
        let best = runs
            .iter()
            .map(|rs| rs.iter().min_by_key(|r| r.wall).expect("a round"))
            .collect();
        Results {
            candidates,
            runs,
            best,
        }
    }

    fn index(&self, name: &str) -> usize {
        self.candidates
            .iter()
            .position(|c| c.name == name)
            .expect("a candidate")
    }

    fn best_of(&self, name: &str) -> &Run {
        self.best[self.index(name)]
    }

    /// A candidate's best time over its plain build's.
    fn vs_plain(&self, i: usize) -> f64 {
        let plain = self.index(self.candidates[i].plain);
        self.best[i].wall.as_secs_f64() / self.best[plain].wall.as_secs_f64()
    }

    /// Prints a line per candidate; whether each that reports found all
    /// 20 sites in every round.
    fn print_lines(&self) -> bool {
        let mut all_found = true;
        for (i, c) in self.candidates.iter().enumerate() {
            let r = self.best[i];
            let mut line = format!(
                "mapileak-whole {} time_vs_plain={:.2}",
                c.name,
                self.vs_plain(i)
            );
            if r.peak_rss_kb > 0 {
                line += &format!(" peak_rss_mb={:.1}", mb(r.peak_rss_kb));
            }
            let reports = matches!(c.finds, Finds::Report | Finds::OfflineReport);
            if reports && r.rss_before_kb == 0 {
                line += &format!(" logoff_ms={:.0}", r.logoff_ms);
            } else if reports {
                line += &format!(
                    " rss_before_logoff_mb={:.1} logoff_extra_mb={:.1} logoff_extra_pct={:.0} logoff_ms={:.0}",
                    mb(r.rss_before_kb),
                    extra_mb(r),
                    extra_pct(r),
                    r.logoff_ms
                );
            }
            if c.finds != Finds::Nothing {
                let found = self.runs[i].iter().map(|r| r.sites).min().unwrap_or(0);
                all_found &= found == 20;
                line += &format!(" sites_found={found}/20");
            }
            println!("{line}");
        }
        all_found
    }

    /// The targets (docs/performance.md), each met or not; prints the C++
    /// overheads on the way.
    fn targets(&self) -> Vec<(String, bool)> {
        let vs = |name: &str| self.vs_plain(self.index(name));
        let mut targets: Vec<(String, bool)> = [
            (
                "rust-release stacks <= 2.5x plain",
                vs("rust-release/stacks") <= 2.5,
            ),
            (
                "rust-provider-debug stacks <= 2.5x plain",
                vs("rust-provider-debug/stacks") <= 2.5,
            ),
            (
                "cpp-O2 mapileak <= 2.5x plain",
                vs("cpp-O2/mapileak") <= 2.5,
            ),
            (
                "rust-release counting <= 1.1x plain",
                vs("rust-release/counting") <= 1.1,
            ),
            (
                "rust-provider-debug counting <= 1.1x plain",
                vs("rust-provider-debug/counting") <= 1.1,
            ),
        ]
        .into_iter()
        .map(|(what, met)| (what.to_owned(), met))
        .collect();
        if self
            .candidates
            .iter()
            .any(|c| c.finds == Finds::LeakSanitizer)
        {
            let ours = vs("cpp-O2/mapileak") - 1.0;
            let lsan = vs("cpp-O2/leaksanitizer") - 1.0;
            println!(
                "mapileak-whole cpp-O2 overhead mapileak={ours:.2} leaksanitizer={lsan:.2} ratio={:.2}",
                ours / lsan
            );
            targets.push((
                "cpp-O2 mapileak overhead <= half of LeakSanitizer's".to_owned(),
                ours <= lsan / 2.0,
            ));
        }
        for name in [
            "rust-release/stacks",
            "rust-provider-debug/stacks",
            "cpp-O2/mapileak",
        ] {
            let r = self.best_of(name);
            targets.push((
                format!("{name} Logoff extra memory < 16 MB"),
                extra_mb(r) < 16.0,
            ));
            targets.push((
                format!("{name} Logoff extra memory <= 25% of before"),
                extra_pct(r) <= 25.0,
            ));
        }
        targets.push((
            "rust-provider-debug Logoff <= 100 ms".to_owned(),
            self.best_of("rust-provider-debug/stacks").logoff_ms <= 100.0,
        ));
        targets
    }
}

fn usage() -> ! {
    eprintln!("usage: whole-run DIR ROUNDS");
    std::process::exit(2);
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// The Logoff's extra peak memory, in MB.
fn extra_mb(r: &Run) -> f64 {
    mb(r.logoff_peak_kb.saturating_sub(r.rss_before_kb))
}

/// The Logoff's extra peak memory, in percent of what the process held
/// before it.
fn extra_pct(r: &Run) -> f64 {
    r.logoff_peak_kb.saturating_sub(r.rss_before_kb) as f64 * 100.0 / r.rss_before_kb.max(1) as f64
}

fn run(dir: &Path, cli: &Path, c: &Candidate, round: usize) -> Result<Run, String> {
    let exe = dir.join(format!("{}{}", c.exe, std::env::consts::EXE_SUFFIX));
    let reports = dir
        .join("reports")
        .join(format!("{}-{round}", c.name.replace('/', "-")));
    let _ = std::fs::remove_dir_all(&reports);
    std::fs::create_dir_all(&reports).map_err(|e| format!("{}: {e}", reports.display()))?;
    let mut cmd = Command::new(&exe);
    cmd.args(c.args)
        .arg(&reports)
        .env_remove("MAPILEAK")
        .env_remove("MAPILEAK_DIR")
        .env_remove("MAPILEAK_SYMBOLS")
        .env_remove("MAPILEAK_HTML")
        .env("MAPILEAK_TRACE_ROOTS", "0")
        .envs(c.env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let child = cmd.spawn().map_err(|e| format!("{}: {e}", exe.display()))?;
    let (out, peak_rss_kb) = wait(child)?;
    let wall = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{} exited with {}: {}",
            exe.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("whole "))
        .ok_or_else(|| format!("{} printed no `whole` line", exe.display()))?;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let sites = sites_found(c, &reports, cli, &out.stderr)?;
    Ok(Run {
        wall,
        // Where the system gave none (Windows): the program's own peak.
        peak_rss_kb: if peak_rss_kb > 0 {
            peak_rss_kb
        } else {
            field("peak_kb").max(field("logoff_peak_kb")) as u64
        },
        rss_before_kb: field("rss_before_kb") as u64,
        logoff_peak_kb: field("logoff_peak_kb") as u64,
        logoff_ms: field("logoff_ms"),
        sites,
    })
}

/// How many of the 20 leaking sites a run's report (or LeakSanitizer's
/// text on `stderr`) names.
fn sites_found(c: &Candidate, reports: &Path, cli: &Path, stderr: &[u8]) -> Result<usize, String> {
    match c.finds {
        Finds::Nothing => Ok(0),
        Finds::Report => sites_in(&logoff_report(reports)?),
        Finds::OfflineReport => {
            let report = logoff_report(reports)?;
            let named = reports.join("named.json");
            let st = Command::new(cli)
                .arg("symbolize")
                .arg(&report)
                .arg("-o")
                .arg(&named)
                .status()
                .map_err(|e| format!("{}: {e}", cli.display()))?;
            if !st.success() {
                return Err(format!("mapileak symbolize {} failed", report.display()));
            }
            sites_in(&named)
        }
        Finds::LeakSanitizer => {
            let text = String::from_utf8_lossy(stderr);
            let names: BTreeSet<&str> = text
                .lines()
                .filter(|l| l.trim_start().starts_with('#'))
                .filter_map(site_of)
                .collect();
            Ok(names.len())
        }
    }
}

/// `site_07` in a frame's text.
fn site_of(text: &str) -> Option<&str> {
    let at = text.find("site_")?;
    let name = text.get(at..at + 7)?;
    name[5..]
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then_some(name)
}

/// The Logoff report a run wrote.
fn logoff_report(dir: &Path) -> Result<PathBuf, String> {
    std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("-logoff.json"))
        })
        .ok_or_else(|| format!("no Logoff report in {}", dir.display()))
}

/// The leaking sites a report's heap sites name in their stacks.
fn sites_in(path: &Path) -> Result<usize, String> {
    let report =
        mapileak_reports::read_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut names = BTreeSet::new();
    for site in &report.heap {
        if let Some(stack) = report.stacks.iter().find(|s| s.id == site.stack) {
            names.extend(
                stack
                    .frames
                    .iter()
                    .filter_map(|f| site_of(&f.function))
                    .map(str::to_owned),
            );
        }
    }
    Ok(names.len())
}

/// Waits for `child`, with its output and peak RSS in kB.
#[cfg(unix)]
#[allow(unsafe_code)]
fn wait(mut child: std::process::Child) -> Result<(std::process::Output, u64), String> {
    use std::io::Read as _;
    use std::os::unix::process::ExitStatusExt as _;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let mut out = Vec::new();
    let _ = stdout.read_to_end(&mut out);
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage (plain integers).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `status` and `usage` are ours to fill.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let stderr = err.join().unwrap_or_default();
    Ok((
        std::process::Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: out,
            stderr,
        },
        usage.ru_maxrss as u64,
    ))
}

/// Waits for `child`, with its output (peak RSS: 0, not measured here).
#[cfg(not(unix))]
fn wait(child: std::process::Child) -> Result<(std::process::Output, u64), String> {
    child
        .wait_with_output()
        .map(|o| (o, 0))
        .map_err(|e| e.to_string())
}
