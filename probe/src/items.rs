//! What the gate judges: each leak root, finding, heap site and unfreed MAPI
//! buffer of every report, with its signature.
//!
//! Indirect leaks are not judged on their own: they go away with their root,
//! and are shown under it.

use mapileak_reports::Rule;
use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use mapileak_reports::text::UNKNOWN_PLACE;
use mapileak_reports::{Frame, Report, Stack};

/// A one-line error for exit code 2.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A report and the file it came from.
pub struct Loaded {
    pub path: PathBuf,
    pub report: Report,
}

/// Reads report files, and the `.json` files below directories (sorted, so
/// output is stable). Any unreadable or invalid file is an error naming it.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Loaded>, Error> {
    let mut files = Vec::new();
    let mut seen = Seen::default();
    for p in paths {
        let meta =
            fs::metadata(p).map_err(|e| Error(format!("{}: cannot read: {e}", p.display())))?;
        if meta.is_dir() {
            let before = files.len();
            walk(p, &mut files, &mut seen)?;
            if files.len() == before {
                return Err(Error(format!(
                    "{}: no report files (*.json) in this directory",
                    p.display()
                )));
            }
        } else if seen.first_visit(p) {
            files.push(p.clone());
        }
    }
    files
        .into_iter()
        .map(|path| match mapileak_reports::read_file(&path) {
            Ok(mut report) => {
                // A report written with raw addresses is named first, from
                // the modules where it says they are.
                for problem in name(&path, &mut report, &[])? {
                    crate::note(format_args!("{}: {problem}", path.display()));
                }
                // Text from a file goes nowhere before it is one-line safe.
                report.make_printable();
                Ok(Loaded { path, report })
            }
            Err(e) => Err(Error(format!("{}: {e}", path.display()))),
        })
        .collect()
}

/// Names the frames of a report written with raw addresses
/// (`MAPILEAK_SYMBOLS=offline`): each module is looked for by its file name
/// in `dirs`, then where the report says it was. Returns a line per module
/// that could not be used (its frames stay unnamed). A report with names
/// is left as it is.
pub fn name(path: &Path, report: &mut Report, dirs: &[PathBuf]) -> Result<Vec<String>, Error> {
    if report.stacks.iter().all(|s| s.raw.is_empty()) {
        return Ok(Vec::new());
    }
    let locate = |m: &mapileak_reports::Module| -> Option<PathBuf> {
        let recorded = Path::new(&m.path);
        // The file name on either system's separators.
        let file = m.path.rsplit(['/', '\\']).next().filter(|f| !f.is_empty());
        dirs.iter()
            .filter_map(|d| file.map(|f| d.join(f)))
            .chain(std::iter::once(recorded.to_path_buf()))
            // Only regular files are opened: never a FIFO or a device.
            .find(|p| fs::metadata(p).is_ok_and(|md| md.is_file()))
    };
    // A module file is read as it is found: if its debug info makes the
    // reader fail in a way it does not report, that is this report's error.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        mapileak_reports::symbols::name_report(report, locate)
    }))
    .map_err(|_| {
        Error(format!(
            "{}: a module's debug info could not be read",
            path.display()
        ))
    })
}

/// The real (canonical) files and directories visited so far: through
/// symlinks, each is read once, and a directory link to an ancestor
/// (`x -> .`) ends there instead of looping.
#[derive(Default)]
struct Seen(HashSet<PathBuf>);

impl Seen {
    fn first_visit(&mut self, path: &Path) -> bool {
        // A path that cannot be resolved is read (and its error reported).
        fs::canonicalize(path).map_or(true, |real| self.0.insert(real))
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, seen: &mut Seen) -> Result<(), Error> {
    if !seen.first_visit(dir) {
        return Ok(());
    }
    let err = |e: std::io::Error| Error(format!("{}: cannot read directory: {e}", dir.display()));
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(err)?
        .map(|e| e.map(|e| e.path()).map_err(err))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue; // a report being written (`.name.<random>.tmp`), or not ours
        }
        if path.is_dir() {
            walk(&path, out, seen)?;
        } else if path.extension().is_some_and(|e| e == "json") && seen.first_visit(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Leak,
    Finding,
    Heap,
    Buffer,
    /// A site that grew at every step of a series of snapshots.
    Growth,
}

impl What {
    pub fn as_str(self) -> &'static str {
        match self {
            What::Leak => "leak",
            What::Finding => "finding",
            What::Heap => "heap",
            What::Buffer => "buffer",
            What::Growth => "growth",
        }
    }
}

/// One judged thing.
pub struct Item<'a> {
    pub what: What,
    pub signature: &'a str,
    /// The object kind, for leaks.
    pub kind: Option<&'a str>,
    /// The rule id, for findings.
    pub rule: Option<&'a str>,
    /// `IMAPITable "contents of Inbox"`, `over-release`, `heap: 3 blocks, 96 bytes`.
    pub title: String,
    /// A sentence for people.
    pub message: String,
    pub stack: Option<&'a Stack>,
    pub source: &'a Loaded,
}

impl Item<'_> {
    /// The innermost provider frame, else the innermost frame.
    pub fn top_frame(&self) -> Option<&Frame> {
        self.stack?.top_frame()
    }

    /// The provider's frames, at most `n`.
    pub fn provider_frames(&self, n: usize) -> impl Iterator<Item = &Frame> {
        self.stack
            .into_iter()
            .flat_map(Stack::provider_frames)
            .take(n)
    }

    /// `function (file:line)` of the top frame.
    pub fn site(&self) -> String {
        self.top_frame()
            .map_or_else(|| UNKNOWN_PLACE.to_owned(), |f| f.to_string())
    }
}

/// Every judged item of `loaded`, report by report: Logoff reports first,
/// then Shutdown, then process end. Snapshots are not judged here: what
/// they list is alive, not leaked (`gate --growth` judges their growth). An object is judged once: one already
/// reported by an earlier report of the same process (it leaked at Logoff
/// and is still alive at Shutdown) is not judged again.
pub fn items(loaded: &[Loaded]) -> Vec<Item<'_>> {
    let mut order: Vec<&Loaded> = loaded.iter().collect();
    order.sort_by_key(|l| l.report.session.event as u8);
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut out = Vec::new();
    for source in order {
        let r = &source.report;
        if r.session.event == mapileak_reports::Event::Snapshot {
            continue;
        }
        let index = r.index();
        let known = |id: u64| r.process != 0 && seen.contains(&(r.process, id));
        for o in r.roots().filter(|o| !known(o.id)) {
            let held = index.children_of(o.id).len();
            out.push(Item {
                what: What::Leak,
                signature: &o.signature,
                kind: Some(&o.kind),
                rule: None,
                title: format!("{} \"{}\"", o.kind, o.label),
                message: format!(
                    "{} \"{}\" was never released{}",
                    o.kind,
                    o.label,
                    if held > 0 {
                        format!(" (it holds {held} more leaked object(s))")
                    } else {
                        String::new()
                    }
                ),
                stack: index.stack(o.created),
                source,
            });
        }
        if r.process != 0 {
            seen.extend(r.objects.iter().map(|o| (r.process, o.id)));
        }
        for f in &r.findings {
            out.push(Item {
                what: What::Finding,
                signature: &f.signature,
                kind: None,
                rule: Some(&f.rule),
                title: f.rule.clone(),
                message: f.message.clone(),
                stack: f.stack.and_then(|s| index.stack(s)),
                source,
            });
        }
        for h in &r.heap {
            out.push(Item {
                what: What::Heap,
                signature: &h.signature,
                kind: None,
                rule: None,
                title: format!("heap: {} block(s), {} bytes", h.blocks, h.bytes),
                message: format!("{} heap block(s), {} bytes, never freed", h.blocks, h.bytes),
                stack: index.stack(h.stack),
                source,
            });
        }
        // A buffer of a leaked object is part of that leak: judged with it.
        for b in r.buffers.iter().filter(|b| b.owner.is_none()) {
            out.push(Item {
                what: What::Buffer,
                signature: &b.signature,
                kind: None,
                rule: Some(Rule::BufferLeaked.id()),
                title: format!("MAPI buffer: {} bytes, {} chained", b.bytes, b.children),
                message: format!(
                    "MAPIAllocateBuffer block of {} bytes ({} AllocateMore children) never freed with MAPIFreeBuffer",
                    b.bytes, b.children
                ),
                stack: index.stack(b.stack),
                source,
            });
        }
    }
    out
}
