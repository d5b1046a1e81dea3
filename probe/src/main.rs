//! `mapileak`: the command-line side of mapileak — the CI leak gate, HTML
//! rendering, and `diff` between two runs. Exit codes (contract): 0 nothing unaccepted,
//! 1 leaks or findings not covered by the baseline or suppressions, 2 bad
//! input or usage, with one line saying which file and what is wrong.

mod accept;
mod gate;
mod growth;
mod items;
mod request;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use mapileak_reports::growth::Limits;

use crate::accept::{Baseline, Suppression};
use crate::items::{Error, items, load};

#[derive(Parser)]
#[command(
    name = "mapileak",
    version,
    about = "Reads mapileak leak reports: the CI leak gate, diffs between runs, growth between snapshots"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 when every leak and finding is accepted, 1 when one is not.
    Gate {
        /// Accepted leaks by signature (see --write-baseline).
        #[arg(long, value_name = "FILE")]
        baseline: Option<PathBuf>,
        /// Suppressions with reasons: `kind:`, `rule:`, `signature:`, `function:` globs.
        #[arg(long, value_name = "FILE")]
        suppressions: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Write the current leaks as a baseline to FILE and exit 0. An
        /// existing FILE is replaced only if it is a mapileak baseline.
        #[arg(long, value_name = "FILE", conflicts_with = "baseline")]
        write_baseline: Option<PathBuf>,
        /// With --write-baseline: replace FILE even if it is not a baseline.
        #[arg(long, requires = "write_baseline")]
        replace: bool,
        /// Also judge snapshot reports: each site that grew at every step
        /// of a series of at least three snapshots is a `growth` finding.
        #[arg(long)]
        growth: bool,
        #[command(flatten)]
        limits: GrowthLimits,
        /// Report files, or directories of them.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Render reports as one self-contained HTML page (several: with an index).
    Render {
        /// Report files, or directories of them.
        #[arg(required = true, value_name = "REPORT")]
        reports: Vec<PathBuf>,
        /// The page to write. An existing file is replaced only if mapileak wrote it.
        #[arg(short = 'o', long = "output", value_name = "OUT.html")]
        out: PathBuf,
    },
    /// What grows across a series of snapshot reports (exit 1 when a site
    /// grew at every step).
    Growth {
        /// Snapshot report files, or directories of them.
        #[arg(required = true, value_name = "SNAPSHOT")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        limits: GrowthLimits,
        /// Also write the series as an HTML page with a chart per growing site.
        #[arg(short = 'o', long = "output", value_name = "OUT.html")]
        out: Option<PathBuf>,
    },
    /// Asks a running process with mapileak to write a snapshot now.
    Snapshot {
        /// The process id.
        #[arg(value_name = "PID")]
        pid: u32,
    },
    /// New, fixed and still-leaking signatures between two runs.
    Diff {
        /// The earlier run's reports (file or directory).
        old: PathBuf,
        /// The later run's reports (file or directory).
        new: PathBuf,
    },
    /// Names the frames of a report written with raw addresses
    /// (`MAPILEAK_SYMBOLS=offline`), from the same builds of its modules,
    /// as the process would have named them, and writes it as a report
    /// with names (exit 0; 2 when it cannot be read or written). `render`
    /// and `gate` name such a report themselves, from the modules'
    /// recorded paths.
    Symbolize {
        /// The report written with raw addresses.
        #[arg(value_name = "REPORT")]
        report: PathBuf,
        /// Where to write the named report (a new file, or a mapileak
        /// report to replace: the input itself, too).
        #[arg(short = 'o', long = "output", value_name = "OUT.json")]
        out: PathBuf,
        /// A directory to look for the modules in, by file name, before
        /// their recorded paths (repeatable): the build output on the
        /// developer's machine. An MSVC module's PDB is looked for there
        /// too, then at its recorded path, then beside the module.
        #[arg(long = "modules", value_name = "DIR")]
        modules: Vec<PathBuf>,
    },
}

/// How much steady growth is a finding.
#[derive(clap::Args, Clone, Copy)]
struct GrowthLimits {
    /// Objects, blocks or buffers a site must gain per snapshot, on average.
    #[arg(long, value_name = "N", default_value_t = 1.0)]
    growth_threshold: f64,
    /// Bytes per snapshot, for a site whose bytes grow but whose count does not.
    #[arg(long, value_name = "BYTES", default_value_t = 1.0)]
    growth_threshold_bytes: f64,
}

impl GrowthLimits {
    fn limits(self) -> Result<Limits, Error> {
        for (name, v) in [
            ("--growth-threshold", self.growth_threshold),
            ("--growth-threshold-bytes", self.growth_threshold_bytes),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error(format!("{name} {v}: give a number above 0")));
            }
        }
        Ok(Limits {
            count: self.growth_threshold,
            bytes: self.growth_threshold_bytes,
        })
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Junit,
    Github,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version: clap's own text, on standard output.
            let _ = print_out(&e.to_string());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, what it echoes of the arguments shown, not acted on.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            note(format_args!("{first} (mapileak --help for usage)"));
            return ExitCode::from(2);
        }
    };
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            note(format_args!("{e}"));
            ExitCode::from(2)
        }
    }
}

/// Writes the command's output. A reader that went away (`| head`) is not
/// an error: the exit code still gives the verdict. Other failures are.
fn print_out(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error(format!("cannot write to standard output: {e}")))
        }
        _ => Ok(()),
    }
}

/// A `mapileak: ` line on stderr; if stderr is gone, nothing. One line:
/// what it quotes from a file (a JSON value in a parse error, a path) has
/// its line breaks and control characters shown, not kept.
fn note(line: std::fmt::Arguments<'_>) {
    let line = line.to_string();
    let _ = writeln!(
        std::io::stderr(),
        "mapileak: {}",
        mapileak_reports::text::one_line(&line)
    );
}

/// Whether `out` may be replaced: it does not exist, or it is a regular
/// file that starts with `marker` (mapileak wrote it). Anything else there
/// (a FIFO, a device, a directory) is an error at once, never opened.
fn ours(out: &Path, marker: &[u8]) -> Result<bool, Error> {
    let meta = match std::fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error(format!("{}: cannot read: {e}", out.display()))),
        Ok(m) => m,
    };
    if !meta.is_file() {
        return Err(Error(format!(
            "{}: exists and is not a regular file; choose another output",
            out.display()
        )));
    }
    let mut head = vec![0u8; marker.len()];
    let read = std::fs::File::open(out).and_then(|mut f| {
        use std::io::Read as _;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    });
    match read {
        Ok(n) => Ok(n == marker.len() && head == marker),
        Err(e) => Err(Error(format!("{}: cannot read: {e}", out.display()))),
    }
}

/// The most a baseline or suppressions file may hold.
const MAX_LIST_BYTES: u64 = 16 << 20;

/// Reads a baseline or suppressions file: a regular file of at most 16 MiB.
fn read_text(path: &Path) -> Result<String, Error> {
    let bytes = mapileak_reports::read_capped(path, MAX_LIST_BYTES)
        .map_err(|e| Error(format!("{}: cannot read: {e}", path.display())))?;
    String::from_utf8(bytes).map_err(|_| Error(format!("{}: not UTF-8 text", path.display())))
}

/// Runs one command: one function each.
fn run(command: Command) -> Result<u8, Error> {
    match command {
        Command::Gate {
            write_baseline: Some(out),
            replace,
            paths,
            growth,
            limits,
            ..
        } => {
            let growth = if growth { Some(limits.limits()?) } else { None };
            write_baseline(&paths, &out, replace, growth)
        }
        Command::Gate {
            baseline,
            suppressions,
            format,
            write_baseline: None,
            paths,
            growth,
            limits,
            ..
        } => {
            let growth = if growth { Some(limits.limits()?) } else { None };
            let lists = Lists {
                baseline: baseline.as_deref(),
                suppressions: suppressions.as_deref(),
            };
            gate(&paths, lists, growth, format)
        }
        Command::Render { reports, out } => render(&reports, &out),
        Command::Growth { paths, limits, out } => growth(&paths, limits.limits()?, out.as_deref()),
        Command::Snapshot { pid } => {
            request::snapshot(pid)?;
            note(format_args!(
                "asked process {pid} for a snapshot; it writes it to its report directory"
            ));
            Ok(0)
        }
        Command::Diff { old, new } => diff(&old, &new),
        Command::Symbolize {
            report,
            out,
            modules,
        } => symbolize(&report, &out, &modules),
    }
}

/// `mapileak symbolize`: a raw report, named.
fn symbolize(path: &Path, out: &Path, dirs: &[PathBuf]) -> Result<u8, Error> {
    let mut report =
        mapileak_reports::read_file(path).map_err(|e| Error(format!("{}: {e}", path.display())))?;
    let raw = report.stacks.iter().filter(|s| !s.raw.is_empty()).count();
    if raw == 0 {
        return Err(Error(format!(
            "{}: its frames have names already (a report written without MAPILEAK_SYMBOLS=offline)",
            path.display()
        )));
    }
    let problems = items::name(path, &mut report, dirs)?;
    for problem in &problems {
        note(format_args!("{}: {problem}", path.display()));
    }
    // Replaces only a mapileak report (the input itself, say).
    let replaceable = match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(Error(format!("{}: cannot read: {e}", out.display()))),
        Ok(m) => m.is_file() && mapileak_reports::read_file(out).is_ok(),
    };
    if !replaceable {
        return Err(Error(format!(
            "{}: exists and is not a mapileak report; remove it or choose another output",
            out.display()
        )));
    }
    let json = serde_json::to_vec_pretty(&report)
        .map_err(|e| Error(format!("{}: cannot write: {e}", out.display())))?;
    mapileak_reports::write_atomic(out, &json)
        .map_err(|e| Error(format!("{}: cannot write: {e}", out.display())))?;
    note(format_args!(
        "wrote {} ({raw} stack(s) named{})",
        out.display(),
        if problems.is_empty() {
            String::new()
        } else {
            format!(", {} module(s) not found or another build", problems.len())
        }
    ));
    Ok(0)
}

/// `mapileak gate --write-baseline OUT`: every item of the reports, as
/// accepted from now on.
fn write_baseline(
    paths: &[PathBuf],
    out: &Path,
    replace: bool,
    growth: Option<Limits>,
) -> Result<u8, Error> {
    let loaded = load(paths)?;
    let mut all = items(&loaded);
    let series = growth_series(&loaded, growth)?;
    let grown = growth::findings(&series, growth.unwrap_or_default(), &loaded);
    all.extend(growth::items(&grown));
    if !replace && !ours(out, b"# mapileak baseline")? {
        return Err(Error(format!(
            "{}: exists and is not a mapileak baseline; remove it, choose another file or pass --replace",
            out.display()
        )));
    }
    let text = Baseline::render(&all);
    mapileak_reports::write_atomic(out, text.as_bytes())
        .map_err(|e| Error(format!("{}: cannot write: {e}", out.display())))?;
    note(format_args!(
        "wrote baseline {} ({} item(s))",
        out.display(),
        all.len()
    ));
    Ok(0)
}

/// With `--growth`, the series of the snapshot reports among `loaded`
/// (none when there are none: a gate over Logoff reports alone).
fn growth_series(
    loaded: &[items::Loaded],
    growth: Option<Limits>,
) -> Result<Vec<mapileak_reports::growth::Series>, Error> {
    let any = loaded
        .iter()
        .any(|l| l.report.session.event == mapileak_reports::Event::Snapshot);
    if growth.is_some() && any {
        growth::series(loaded, &[])
    } else {
        Ok(Vec::new())
    }
}

/// The gate's baseline and suppressions files.
struct Lists<'a> {
    baseline: Option<&'a Path>,
    suppressions: Option<&'a Path>,
}

/// `mapileak gate`: 1 when an item is neither in the baseline nor
/// suppressed. With `growth`, the growth of the snapshot series too.
fn gate(
    paths: &[PathBuf],
    lists: Lists<'_>,
    growth: Option<Limits>,
    format: Format,
) -> Result<u8, Error> {
    let loaded = load(paths)?;
    let mut all = items(&loaded);
    let series = growth_series(&loaded, growth)?;
    let grown = growth::findings(&series, growth.unwrap_or_default(), &loaded);
    all.extend(growth::items(&grown));
    let baseline = match lists.baseline {
        Some(p) => Baseline::parse(&read_text(p)?, &p.display().to_string())?,
        None => Baseline::default(),
    };
    let mut sups = match lists.suppressions {
        Some(p) => Suppression::parse_file(&read_text(p)?, &p.display().to_string())?,
        None => Vec::new(),
    };
    let verdict = gate::judge(all, &baseline, &mut sups);
    let out = match format {
        Format::Text => gate::text(&verdict, loaded.len()),
        Format::Json => gate::json(&verdict, loaded.len(), &sups),
        Format::Junit => gate::junit(&verdict, &loaded),
        Format::Github => gate::github(&verdict, loaded.len()),
    };
    print_out(&out)?;
    for s in &sups {
        if s.hits > 0 {
            note(format_args!(
                "suppression {} (line {}) matched {} time(s): {}",
                s.entry(),
                s.line,
                s.hits,
                s.reason
            ));
        } else {
            note(format_args!(
                "warning: suppression {} (line {}) matched nothing",
                s.entry(),
                s.line
            ));
        }
    }
    Ok(if verdict.failures.is_empty() { 0 } else { 1 })
}

/// `mapileak growth`: the series of the snapshot reports, as text (and a
/// page); 1 when a site grew at every step.
fn growth(paths: &[PathBuf], limits: Limits, out: Option<&Path>) -> Result<u8, Error> {
    let loaded = load(paths)?;
    let series = growth::series(&loaded, paths)?;
    if let Some(out) = out {
        if !ours(out, mapileak_reports::html::MARKER.as_bytes())? {
            return Err(Error(format!(
                "{}: exists and was not written by mapileak; remove it or choose another output",
                out.display()
            )));
        }
        growth::page(&series, limits, out)?;
        note(format_args!("wrote {}", out.display()));
    }
    print_out(&growth::text(&series, limits))?;
    let grew = series.iter().any(|s| s.growing(limits).next().is_some());
    Ok(u8::from(grew))
}

/// `mapileak diff OLD NEW`: each signature new, still there or fixed; 1
/// when one is new.
fn diff(old: &Path, new: &Path) -> Result<u8, Error> {
    let (old, new) = (load(&[old.to_owned()])?, load(&[new.to_owned()])?);
    let index = |loaded| {
        let mut m: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for i in items(loaded) {
            let e = m
                .entry(i.signature.to_owned())
                .or_insert((0, String::new()));
            e.0 += 1;
            e.1 = format!("{} {} at {}", i.what.as_str(), i.title, i.site());
        }
        m
    };
    let (a, b) = (index(&old), index(&new));
    let mut new_count = 0;
    let mut out = String::new();
    for (sig, (n, what)) in &b {
        let _ = match a.get(sig) {
            None => {
                new_count += 1;
                writeln!(out, "new    {sig} x{n}  {what}")
            }
            Some((m, _)) => writeln!(out, "still  {sig} x{n} (was x{m})  {what}"),
        };
    }
    for (sig, (n, what)) in a.iter().filter(|(s, _)| !b.contains_key(*s)) {
        let _ = writeln!(out, "fixed  {sig} x{n}  {what}");
    }
    print_out(&out)?;
    Ok(if new_count > 0 { 1 } else { 0 })
}

/// `mapileak render`: one report, or several with an index, to one page.
fn render(reports: &[PathBuf], out: &Path) -> Result<u8, Error> {
    let loaded = load(reports)?;
    if !ours(out, mapileak_reports::html::MARKER.as_bytes())? {
        return Err(Error(format!(
            "{}: exists and was not written by mapileak; remove it or choose another output",
            out.display()
        )));
    }
    let page = match loaded.as_slice() {
        [one] => mapileak_reports::html::render(&one.report),
        many => {
            let named: Vec<(String, mapileak_reports::Report)> = many
                .iter()
                .map(|l| {
                    let name = l.path.file_name().map_or_else(
                        || l.path.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    (name, l.report.clone())
                })
                .collect();
            mapileak_reports::html::render_many(&named)
        }
    };
    mapileak_reports::write_atomic(out, page.as_bytes())
        .map_err(|e| Error(format!("{}: cannot write: {e}", out.display())))?;
    note(format_args!(
        "wrote {} ({} report(s))",
        out.display(),
        loaded.len()
    ));
    Ok(0)
}
