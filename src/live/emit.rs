//! The last two phases of the Logoff pipeline (`logoff`): from a snapshot
//! (`snapshot`)
//! to a report, and from a report to the places a provider engineer looks:
//! `tracing` events (or stderr and the debugger output when no subscriber
//! is installed, as in a provider DLL inside Outlook) and the JSON and HTML
//! files.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mapileak_reports::signature;
use mapileak_reports::text::one_line;
use mapileak_reports::{
    Buffer, Finding, Frame, HeapSite, Index, LeakedObject, Module, RefEvent, RefOp, Report, Stack,
    Subject,
};

use crate::backend::analysis;
use crate::backend::buffers::LiveBuffer;
use crate::backend::finding::PendingFinding;
use crate::backend::snapshot::{ObjectSnap, Snapshot};
use crate::backend::stack::StackId;
use crate::backend::symbolize::Symbolizer;
use crate::backend::trace;
use crate::settings::{self, Mode};

use super::env;

/// Builds the report of a snapshot: the analysis (leak roots and what they
/// hold, the balancer's unmatched AddRefs), each unique stack symbolized
/// once, signatures. One phase per part of the report.
pub(crate) fn build(snapshot: Snapshot) -> Report {
    let needed = needed_of(&snapshot);
    build_with(snapshot, Symbols::of(needed))
}

/// The reports of several snapshots taken together (a snapshot's or
/// process end's, one per provider and per logon), as [`build`] makes
/// each, their stacks symbolized in one pass: each module's debug info is
/// read once for all of them, not once per report.
pub(crate) fn build_all(snapshots: Vec<Snapshot>) -> Vec<Report> {
    let needed: Vec<Vec<StackId>> = snapshots.iter().map(needed_of).collect();
    let shared = Symbols::of(needed.iter().flatten().copied().collect());
    snapshots
        .into_iter()
        .zip(needed)
        .map(|(snapshot, ids)| build_with(snapshot, shared.subset(&ids)))
        .collect()
}

/// Every stack `snapshot`'s report names.
fn needed_of(snapshot: &Snapshot) -> Vec<StackId> {
    needed_stacks(
        &snapshot.objects,
        &snapshot.heap,
        &snapshot.buffers,
        &snapshot.findings,
    )
}

/// [`build`], its stacks symbolized already.
fn build_with(snapshot: Snapshot, mut symbols: Symbols) -> Report {
    let Snapshot {
        info,
        objects: leaked,
        heap,
        buffers,
        findings,
        heap_untracked,
        stacks_missing,
        tables_refused,
        ..
    } = snapshot;
    let mut report = Report::new(info);
    let index: HashMap<u64, usize> = leaked
        .iter()
        .enumerate()
        .map(|(i, o)| (o.node.id, i))
        .collect();
    report.objects = leaked_objects(&leaked, &index, &mut symbols);
    report.heap = heap_sites(&heap, &symbols);
    report.buffers = buffer_chains(&buffers, &index, &symbols);
    report.findings = findings
        .into_iter()
        .map(|f| finding(f, &mut symbols))
        .collect();
    (report.stacks, report.modules) = symbols.into_stacks();
    report.summary.heap_untracked = heap_untracked;
    report.summary.stacks_missing = stacks_missing;
    report.summary.tables_refused = tables_refused;
    report.recount();
    report
}

/// Every stack the report names: creations, histories, findings (and
/// their subjects), heap sites, buffers.
fn needed_stacks(
    leaked: &[ObjectSnap],
    heap: &[(StackId, u64)],
    buffers: &[LiveBuffer],
    findings: &[PendingFinding],
) -> Vec<StackId> {
    leaked
        .iter()
        .flat_map(|o| std::iter::once(o.node.created).chain(o.events.iter().map(|&(_, s)| s)))
        .chain(findings.iter().map(|f| f.stack))
        .chain(findings.iter().flat_map(|f| {
            let subject = f
                .subject
                .iter()
                .flat_map(|s| std::iter::once(s.created).chain(s.events.iter().map(|&(_, st)| st)));
            f.also.into_iter().chain(subject)
        }))
        .chain(heap.iter().map(|&(s, _)| s))
        .chain(buffers.iter().map(|b| b.stack))
        .collect()
}

/// The report's stacks, symbolized once each, and what the balancer and
/// the signatures read of them.
struct Symbols {
    stacks: HashMap<StackId, Stack>,
    /// Offline: the modules raw frames are in.
    modules: Vec<Module>,
    /// Each function name as a number, for the balancer's comparisons.
    functions: HashMap<String, u32>,
    /// Each stack's functions as numbers, computed once.
    keys: HashMap<StackId, Vec<u32>>,
}

impl Symbols {
    fn of(ids: Vec<StackId>) -> Symbols {
        let mut ids = ids;
        ids.sort_unstable();
        ids.dedup();
        let (stacks, modules) = Symbolizer::from_settings().stacks(&ids);
        Symbols {
            stacks: stacks.into_iter().map(|s| (s.id, s)).collect(),
            modules,
            functions: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    /// The stacks `ids` alone, of symbols made for several reports, with
    /// the modules their raw frames are in (offline), renumbered in their
    /// order.
    fn subset(&self, ids: &[StackId]) -> Symbols {
        let mut stacks: HashMap<StackId, Stack> = ids
            .iter()
            .filter_map(|id| self.stacks.get(id))
            .map(|s| (s.id, s.clone()))
            .collect();
        let used: BTreeSet<u32> = stacks
            .values()
            .flat_map(|s| s.raw.iter().filter_map(|r| r.module))
            .collect();
        let mut modules = Vec::new();
        let mut renumbered = HashMap::new();
        for m in used {
            if let Some(module) = self.modules.get(m as usize) {
                renumbered.insert(m, modules.len() as u32);
                modules.push(module.clone());
            }
        }
        for frame in stacks.values_mut().flat_map(|s| s.raw.iter_mut()) {
            frame.module = frame.module.and_then(|m| renumbered.get(&m).copied());
        }
        Symbols {
            stacks,
            modules,
            functions: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    fn frames(&self, id: StackId) -> &[Frame] {
        self.stacks
            .get(&id)
            .map_or(&[][..], |s| s.frames.as_slice())
    }

    /// The signature of `what` made at stack `id`; empty when its frames
    /// are not named yet (`MAPILEAK_SYMBOLS=offline`): a signature of no
    /// names would be the same for every stack (every heap site one
    /// signature), and `symbolize`, `gate` and `render` compute it once
    /// they have named the frames.
    fn signature(&self, what: &str, id: StackId) -> String {
        if self.stacks.get(&id).is_some_and(|s| !s.raw.is_empty()) {
            return String::new();
        }
        signature::compute(what, self.frames(id))
    }

    /// The balancer compares frames by function: stack `id`'s functions
    /// as numbers.
    fn keys(&mut self, id: StackId) -> Vec<u32> {
        if let Some(k) = self.keys.get(&id) {
            return k.clone();
        }
        let mut keys = Vec::new();
        if let Some(stack) = self.stacks.get(&id) {
            // Offline (no names yet): by return address, which pairs calls
            // from the same place only.
            let names = stack.frames.iter().map(|f| f.function.clone());
            let raw = stack
                .raw
                .iter()
                .map(|r| format!("{:?}@{:x}", r.module, r.address));
            for name in names.chain(raw) {
                let next = self.functions.len() as u32;
                keys.push(*self.functions.entry(name).or_insert(next));
            }
        }
        self.keys.insert(id, keys.clone());
        keys
    }

    /// A history, balanced.
    fn balance(&mut self, events: &[(RefOp, StackId)]) -> Vec<RefEvent> {
        analysis::balance(events, |id| self.keys(id))
    }

    /// The stacks, and (offline) the modules their raw frames are in.
    fn into_stacks(self) -> (Vec<Stack>, Vec<Module>) {
        let mut stacks: Vec<Stack> = self.stacks.into_values().collect();
        stacks.sort_by_key(|s| s.id);
        (stacks, self.modules)
    }
}

/// The leaked objects, placed (roots, and what each indirect leak's
/// holder is), with their balanced histories and signatures.
fn leaked_objects(
    leaked: &[ObjectSnap],
    index: &HashMap<u64, usize>,
    symbols: &mut Symbols,
) -> Vec<LeakedObject> {
    let holds: Vec<Vec<usize>> = leaked
        .iter()
        .map(|o| {
            o.holds
                .iter()
                .filter_map(|id| index.get(id).copied())
                .collect()
        })
        .collect();
    let placement = analysis::place(&holds);
    // Many objects share a kind and a creation stack: one signature each.
    let mut signatures: HashMap<(&str, StackId), String> = HashMap::new();
    let mut out = Vec::with_capacity(leaked.len());
    for (i, o) in leaked.iter().enumerate() {
        let node = &o.node;
        let kind = node.kind.name();
        let mut object = LeakedObject::new(node.id, kind, node.label.as_str(), node.created);
        if node.history {
            object.events = symbols.balance(&o.events);
        }
        object.signature = signatures
            .entry((kind, node.created))
            .or_insert_with(|| symbols.signature(kind, node.created))
            .clone();
        object.refcount = o.refcount;
        object.root = placement[i].root;
        object.parent = placement[i].parent.map(|p| leaked[p].node.id);
        object.opened_from = o.opened_from;
        object.events_dropped = o.events_dropped;
        out.push(object);
    }
    out
}

/// Heap blocks, grouped by allocation site, largest first.
fn heap_sites(heap: &[(StackId, u64)], symbols: &Symbols) -> Vec<HeapSite> {
    let mut sites: HashMap<StackId, (u64, u64)> = HashMap::new();
    for &(stack, size) in heap {
        let e = sites.entry(stack).or_insert((0, 0));
        e.0 += 1;
        e.1 += size;
    }
    let mut sites: Vec<_> = sites.into_iter().collect();
    sites.sort_by_key(|&(stack, (_, bytes))| (std::cmp::Reverse(bytes), stack));
    sites
        .into_iter()
        .map(|(stack, (blocks, bytes))| {
            let mut site = HeapSite::new(stack, blocks, bytes);
            site.signature = symbols.signature("heap", stack);
            site
        })
        .collect()
}

/// Unfreed MAPI buffer chains, each under its owner when the owner leaked.
fn buffer_chains(
    buffers: &[LiveBuffer],
    index: &HashMap<u64, usize>,
    symbols: &Symbols,
) -> Vec<Buffer> {
    buffers
        .iter()
        .map(|b| {
            let mut buffer = Buffer::new(b.stack, b.bytes, b.children);
            buffer.signature = symbols.signature("buffer", b.stack);
            // Under its owner when the owner leaked too; a root of its own
            // when the owner is gone (or alive by design).
            buffer.owner = (b.owner != 0 && index.contains_key(&b.owner)).then_some(b.owner);
            buffer
        })
        .collect()
}

/// A recorded finding as the report shows it.
fn finding(f: PendingFinding, symbols: &mut Symbols) -> Finding {
    let mut finding = Finding::new(f.rule.id(), f.severity, f.message, Some(f.stack));
    finding.signature = symbols.signature(f.rule.id(), f.stack);
    finding.object = f.object;
    finding.subject = f.subject.map(|s| {
        let mut subject = Subject::new(s.kind, s.label, s.created);
        subject.events = symbols.balance(&s.events);
        subject
    });
    finding.also = f.also;
    finding.repeated = f.repeated;
    finding
}

/// Emits the report's events and writes its files; returns the files written.
/// Errors are logged, never returned: the provider carries on.
pub(crate) fn publish(report: &Report, mode: Mode) -> Vec<PathBuf> {
    crate::backend::context::watch_thread();
    let mut files = Vec::new();
    // Once process end has begun, only its own reports are written: a file
    // another thread starts now could be left half-made when the process
    // ends (its lines still go out).
    let is_exit = report.session.event == mapileak_reports::Event::Exit;
    let writing = is_exit || !crate::backend::context::exiting();
    let keep_going = || is_exit || !crate::backend::context::exiting();
    let dir = if writing {
        super::env::report_dir()
    } else {
        Err(super::env::Refused {
            dir: PathBuf::new(),
            error: std::io::Error::other(
                "process end has begun; the process-end report says what is alive",
            ),
        })
    };
    match dir {
        Ok(dir) => {
            let base = base_name(report);
            let json = dir.join(format!("{base}.json"));
            // Streamed to the file: no second copy of a large report.
            // A new file: one someone put at that name stays, ours takes
            // the next free one.
            match mapileak_reports::write_new_while(&json, &keep_going, |w| {
                serde_json::to_writer_pretty(w, report).map_err(std::io::Error::other)
            }) {
                Ok(went) => files.push(went),
                Err(e) => log_error(&json, &e),
            }
            // Offline, the page waits for names: `mapileak render` names
            // the report first.
            if settings::html() && report.modules.is_empty() {
                let html = dir.join(format!("{base}.html"));
                // Written as it is made: the page is never held whole.
                match mapileak_reports::write_new_while(&html, &keep_going, |w| {
                    mapileak_reports::html::render_to(report, w)
                }) {
                    Ok(went) => files.push(went),
                    Err(e) => log_error(&html, &e),
                }
            }
        }
        Err(refused) => log_error(&refused.dir, &refused.error),
    }
    // A subscriber is the host's code: if it panics, the panic stops here,
    // not in the provider's Logoff (a COM method, where unwinding aborts).
    // No lock of mapileak's is held while it runs.
    let events = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        emit_events(report, mode, &files)
    }));
    if events.is_err() {
        trace::line(format_args!(
            "a tracing subscriber panicked while the report's events were emitted; the report files are written"
        ));
    }
    files
}

/// Removes this process's temporary report files (a write another thread
/// had begun when process end came): their names carry this process's id
/// and run.
pub(crate) fn remove_own_temporaries() {
    let chosen = RUN.load(std::sync::atomic::Ordering::Acquire);
    if chosen == 0 {
        return;
    }
    let run = run_id();
    let Ok(dir) = super::env::report_dir() else {
        return;
    };
    let ours = format!("-{}-{run:06x}-", std::process::id());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") && name.contains(&ours) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A value another process cannot predict: std's hasher, keyed from the
/// system's random source, over the time.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

/// This process's run id in report names (set by the first report): 24
/// random bits, with bit 24 set once it is chosen. No `OnceLock`: a child
/// forked while a thread was choosing it would wait for good.
static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// [`RUN`], chosen now if no report chose it before.
fn run_id() -> u32 {
    use std::sync::atomic::Ordering;
    const CHOSEN: u32 = 1 << 24;
    let chosen = RUN.load(Ordering::Acquire);
    if chosen != 0 {
        return chosen & (CHOSEN - 1);
    }
    let mine = (random() as u32 & (CHOSEN - 1)) | CHOSEN;
    match RUN.compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => mine & (CHOSEN - 1),
        Err(theirs) => theirs & (CHOSEN - 1),
    }
}

/// `<provider>-<label>-<pid>-<run>-s<session>-<n>-<event>` (a snapshot's
/// event is `snapshot<seq>`): `run` is random
/// per process start (two processes with one pid, in two containers, do not
/// collide) and `n` counts this process's reports (a second Logoff of one
/// session, or two at once, get two files): no report replaces another.
fn base_name(report: &Report) -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let run = format!("{:06x}", run_id());
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let label: String = report
        .session
        .label
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let event = match &report.snapshot {
        Some(which) => format!("snapshot{}", which.seq),
        None => report.session.event.as_str().to_owned(),
    };
    format!(
        "{}-{}-{}-{run}-s{}-{n}-{event}",
        report.session.provider.as_str(),
        if label.is_empty() { "session" } else { &label },
        std::process::id(),
        report.session.id,
    )
}

fn log_error(path: &Path, e: &std::io::Error) {
    if has_subscriber() {
        // As in `publish`: a panicking subscriber stops here.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tracing::error!(target: "mapileak", path = %path.display(), error = %e, "cannot write leak report");
        }));
    } else if path.as_os_str().is_empty() {
        trace::line(format_args!("leak report not written: {e}"));
    } else {
        trace::line(format_args!(
            "cannot write leak report {}: {e}",
            path.display()
        ));
    }
}

/// Whether the report's events go to a `tracing` subscriber: one is
/// installed, and calling it is safe. At process end (the exit hook) and in
/// a thread-local destructor the subscriber's own thread-locals may be gone:
/// it would panic (abort, with `panic = "abort"`), so the lines go where
/// they go without one.
fn has_subscriber() -> bool {
    if crate::backend::context::exiting() || crate::backend::context::thread_tearing_down() {
        return false;
    }
    tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>())
}

/// `kind "label"`, as every line names an object; the label on one line.
fn describe(o: &LeakedObject) -> String {
    format!("{} \"{}\"", one_line(&o.kind), one_line(&o.label))
}

/// The innermost provider frame of a stack, `function (file:line)`; for a
/// stack written with raw addresses (`MAPILEAK_SYMBOLS=offline`), its id,
/// to be named by `mapileak symbolize`.
fn site(stack: Option<&Stack>) -> String {
    if let Some(s) = stack.filter(|s| s.frames.is_empty() && !s.raw.is_empty()) {
        return format!("stack {} (unnamed: mapileak symbolize names it)", s.id);
    }
    stack.and_then(Stack::top_frame).map_or_else(
        || mapileak_reports::text::UNKNOWN_PLACE.to_owned(),
        |f| one_line(&f.to_string()).into_owned(),
    )
}

/// Frames a heap or buffer site's line shows: the provider's frame that
/// allocated and its callers in the provider, so sites reached through one
/// helper (a `Vec` filled by one function from 20 places) read apart.
const CHAIN: usize = 3;

/// [`site`], followed by up to [`CHAIN`] provider frames in all:
/// `alloc_row (rows.rs:9) <- load (store.rs:40) <- open (store.rs:12)`.
fn call_chain(stack: Option<&Stack>) -> String {
    let mut line = site(stack);
    let Some(stack) = stack else {
        return line;
    };
    let mut frames = stack.provider_frames();
    if frames.next().is_some() {
        for f in frames.take(CHAIN - 1) {
            let _ = write!(line, " <- {}", one_line(&f.to_string()));
        }
    }
    line
}

/// All frames, one per line, indented.
fn render_stack(stack: Option<&Stack>) -> String {
    let mut out = String::new();
    for f in stack.map(|s| s.frames.as_slice()).unwrap_or_default() {
        let _ = writeln!(out, "    {}", one_line(&f.to_string()));
    }
    out
}

fn summary_line(report: &Report, files: &[PathBuf]) -> String {
    let s = &report.summary;
    let (event, leaked) = match &report.snapshot {
        Some(which) => (
            format!("snapshot {} \"{}\"", which.seq, one_line(&which.label)),
            "live",
        ),
        None => (report.session.event.as_str().to_owned(), "leaked"),
    };
    let mut line = format!(
        "{} \"{}\" {event}: {} {leaked} object{} ({} root{}), {} finding{}",
        report.session.provider.as_str(),
        one_line(&report.session.label),
        s.leaked_objects,
        if s.leaked_objects == 1 { "" } else { "s" },
        s.leak_roots,
        if s.leak_roots == 1 { "" } else { "s" },
        s.findings,
        if s.findings == 1 { "" } else { "s" },
    );
    if s.heap_blocks > 0 {
        let _ = write!(
            line,
            ", {} heap block(s) of {} bytes",
            s.heap_blocks, s.heap_bytes
        );
    }
    if s.mapi_buffers > 0 {
        let _ = write!(line, ", {} MAPI buffer(s)", s.mapi_buffers);
    }
    let refused = |t: &str| s.tables_refused.iter().any(|r| r == t);
    if s.heap_untracked > 0 {
        let _ = write!(
            line,
            " ({} heap block(s) not tracked: {})",
            s.heap_untracked,
            if refused("heap") {
                "the system refused to reserve the live table (address space); objects are still reported"
            } else {
                "the live table is full, raise MAPILEAK_LIVE_BLOCKS"
            }
        );
    }
    if s.stacks_missing > 0 {
        let _ = write!(
            line,
            " ({} stack(s) missing: {})",
            s.stacks_missing,
            if refused("stacks") {
                "the system refused to reserve the stack table (address space); objects are still reported, without frames"
            } else {
                "the stack table is full"
            }
        );
    }
    if let Some(f) = files.first() {
        let _ = write!(line, "; report {}", f.display());
    }
    line
}

/// The leak roots, largest first (by everything leaked under them, then in
/// report order), with that count.
fn roots_by_size<'a>(report: &'a Report, index: &Index<'a>) -> Vec<(&'a LeakedObject, usize)> {
    let mut roots: Vec<(&LeakedObject, usize)> = report
        .roots()
        .map(|root| {
            // Iteratively: chains can be long.
            let (mut under, mut todo) = (0usize, vec![root.id]);
            while let Some(id) = todo.pop() {
                if under > report.objects.len() {
                    break; // holder links in a circle: not from this writer
                }
                for child in index.children_of(id) {
                    under += 1;
                    todo.push(child.id);
                }
            }
            (root, under)
        })
        .collect();
    roots.sort_by_key(|&(_, under)| std::cmp::Reverse(under));
    roots
}

/// The heap and MAPI buffer sites, largest first, a line each up to
/// `limit` (as leak roots are), with the provider's frame that allocated:
/// what LeakSanitizer and valgrind print for heap leaks. A buffer of a
/// leaked object (an owner) goes with that object, not here.
fn emit_sites(
    report: &Report,
    index: &mapileak_reports::Index<'_>,
    limit: usize,
    subscriber: bool,
    see: &str,
) {
    let mut sites: Vec<(u64, String, Option<&Stack>)> = report
        .heap
        .iter()
        .map(|h| {
            (
                h.bytes,
                format!(
                    "leaked {} heap block(s) of {} bytes allocated in",
                    h.blocks, h.bytes
                ),
                index.stack(h.stack),
            )
        })
        .chain(
            report
                .buffers
                .iter()
                .filter(|b| b.owner.is_none())
                .map(|b| {
                    (
                        b.bytes,
                        format!(
                            "unfreed MAPI buffer of {} bytes ({} chained) allocated in",
                            b.bytes, b.children
                        ),
                        index.stack(b.stack),
                    )
                }),
        )
        .collect();
    sites.sort_by_key(|&(bytes, _, _)| std::cmp::Reverse(bytes));
    for (bytes, what, stack) in sites.iter().take(limit) {
        let message = format!("{what} {}", call_chain(*stack));
        if subscriber {
            tracing::warn!(
                target: "mapileak",
                session = report.session.id,
                bytes = *bytes,
                stack = %render_stack(*stack),
                "{message}"
            );
        } else {
            trace::line(format_args!("{message}"));
        }
    }
    if sites.len() > limit {
        let rest = &sites[limit..];
        let bytes: u64 = rest.iter().map(|&(b, _, _)| b).sum();
        let message = format!(
            "and {} more heap or buffer site(s) ({bytes} bytes): see {see}",
            rest.len()
        );
        if subscriber {
            tracing::warn!(target: "mapileak", session = report.session.id, "{message}");
        } else {
            trace::line(format_args!("{message}"));
        }
    }
}

/// Leak roots of one signature, for one console line.
struct Group<'a> {
    /// The largest of them (the one `roots_by_size` put first).
    first: &'a LeakedObject,
    roots: usize,
    /// What they hold, all together.
    indirect: usize,
}

/// `roots` (largest first) grouped by signature, in the order of each
/// group's largest. Without a signature (frames not named yet), by kind
/// and creation stack.
fn by_signature<'a>(roots: &[(&'a LeakedObject, usize)]) -> Vec<Group<'a>> {
    #[derive(PartialEq, Eq, Hash)]
    enum Key<'a> {
        Signature(&'a str),
        Unnamed(&'a str, StackId),
    }
    let mut at: HashMap<Key<'a>, usize> = HashMap::new();
    let mut groups: Vec<Group<'a>> = Vec::new();
    for &(o, indirect) in roots {
        let key = if o.signature.is_empty() {
            Key::Unnamed(&o.kind, o.created)
        } else {
            Key::Signature(&o.signature)
        };
        match at.get(&key) {
            Some(&g) => {
                groups[g].roots += 1;
                groups[g].indirect += indirect;
            }
            None => {
                at.insert(key, groups.len());
                groups.push(Group {
                    first: o,
                    roots: 1,
                    indirect,
                });
            }
        }
    }
    groups
}

fn emit_events(report: &Report, mode: Mode, files: &[PathBuf]) {
    let subscriber = has_subscriber();
    let see = files
        .first()
        .map_or_else(|| "the report".to_owned(), |f| f.display().to_string());
    // A snapshot's objects are alive, not leaked: one line says where its
    // report went (a periodic one must not flood the debugger output).
    let snapshot = report.session.event == mapileak_reports::Event::Snapshot;
    if mode == Mode::Full && !snapshot {
        let index = report.index();
        let limit = env::trace_roots();
        emit_roots(report, &index, limit, subscriber, &see);
        emit_sites(report, &index, limit, subscriber, &see);
        emit_findings(report, &index, limit, subscriber, &see);
    }
    emit_summary(report, files, subscriber);
    if !report.modules.is_empty() && !snapshot {
        warn_line(
            report,
            subscriber,
            &format!(
                "frames unnamed (MAPILEAK_SYMBOLS=offline): `mapileak symbolize {see} -o NAMED.json` names them from the same builds of {} module(s); `render` and `gate` name them too",
                report.modules.len()
            ),
        );
    }
}

/// A warning: a `tracing` event, or a line on stderr without a subscriber.
fn warn_line(report: &Report, subscriber: bool, message: &str) {
    if subscriber {
        tracing::warn!(target: "mapileak", session = report.session.id, "{message}");
    } else {
        trace::line(format_args!("{message}"));
    }
}

/// One line per group of leak roots (one signature: one kind from one
/// creation path), largest first, up to `limit`; one more counts the rest.
fn emit_roots(report: &Report, index: &Index<'_>, limit: usize, subscriber: bool, see: &str) {
    let roots = roots_by_size(report, index);
    // Leak roots of one signature (a table leaked per call, a hundred
    // thousand times) are one line, at the place of their largest.
    let groups = by_signature(&roots);
    for g in groups.iter().take(limit) {
        let (o, indirect) = (g.first, g.indirect);
        let created = index.stack(o.created);
        let unmatched: Vec<String> = o
            .unmatched_addrefs()
            .map(|e| site(index.stack(e.stack)))
            .collect();
        let message = if g.roots == 1 {
            format!(
                "leaked {} created in {}{}",
                describe(o),
                site(created),
                if indirect > 0 {
                    format!(", holding {indirect} more leaked object(s)")
                } else {
                    String::new()
                }
            )
        } else {
            format!(
                "leaked {} {} objects like \"{}\" created in {} ({} leaked object(s) with what they hold)",
                g.roots,
                one_line(&o.kind),
                one_line(&o.label),
                site(created),
                g.roots + indirect
            )
        };
        if subscriber {
            tracing::warn!(
                target: "mapileak",
                session = report.session.id,
                kind = %one_line(&o.kind),
                label = %one_line(&o.label),
                roots = g.roots,
                refcount = o.refcount.map_or(-1, i64::from),
                indirect,
                unmatched_addrefs = ?unmatched,
                stack = %render_stack(created),
                "{message}"
            );
        } else {
            trace::line(format_args!("{message}"));
            for u in unmatched {
                trace::line(format_args!("    AddRef never released, from {u}"));
            }
        }
    }
    if groups.len() > limit {
        let rest = &groups[limit..];
        let roots: usize = rest.iter().map(|g| g.roots).sum();
        let objects: usize = rest.iter().map(|g| g.roots + g.indirect).sum();
        warn_line(
            report,
            subscriber,
            &format!("and {roots} more leak root(s) ({objects} leaked object(s)): see {see}"),
        );
    }
}

/// One line per finding, up to `limit`; one more counts the rest.
fn emit_findings(report: &Report, index: &Index<'_>, limit: usize, subscriber: bool, see: &str) {
    for f in report.findings.iter().take(limit) {
        let stack = f.stack.and_then(|s| index.stack(s));
        let at = if f.repeated > 0 {
            format!("{}; and {} more times there", site(stack), f.repeated)
        } else {
            site(stack)
        };
        if subscriber {
            tracing::warn!(
                target: "mapileak",
                session = report.session.id,
                rule = %one_line(&f.rule),
                stack = %render_stack(stack),
                "{}: {} (at {at})", one_line(&f.rule), one_line(&f.message)
            );
        } else {
            trace::line(format_args!("{}: {} (at {at})", f.rule, f.message));
        }
    }
    if report.findings.len() > limit {
        let more = report.findings.len() - limit;
        warn_line(
            report,
            subscriber,
            &format!("and {more} more finding(s): see {see}"),
        );
    }
}

/// The summary line: info when clean, a warning with the counts when not.
fn emit_summary(report: &Report, files: &[PathBuf], subscriber: bool) {
    let line = summary_line(report, files);
    if !subscriber {
        trace::line(format_args!("{line}"));
    } else if report.is_clean() {
        tracing::info!(target: "mapileak", session = report.session.id, "{line}");
    } else {
        let s = &report.summary;
        tracing::warn!(
            target: "mapileak",
            session = report.session.id,
            leaked_objects = s.leaked_objects,
            leak_roots = s.leak_roots,
            findings = s.findings,
            "{line}"
        );
    }
}

#[cfg(test)]
mod tests {
    use mapileak_reports::{Frame, LeakedObject, Stack};

    /// Roots group by signature; roots whose frames are not named yet
    /// (offline symbols: no signature) by kind and creation stack, never
    /// all of a kind as one.
    #[test]
    fn roots_group_by_signature_or_else_by_kind_and_stack() {
        let root = |id: u64, kind: &str, stack: u32, signature: &str| {
            let mut o = LeakedObject::new(id, kind, "t", stack);
            o.signature = signature.to_owned();
            o
        };
        let named = [
            root(1, "IMAPITable", 1, "aa"),
            root(2, "IMAPITable", 2, "aa"),
            root(3, "IMAPITable", 3, "bb"),
        ];
        let roots: Vec<_> = named.iter().map(|o| (o, 0)).collect();
        let groups = super::by_signature(&roots);
        assert_eq!(
            groups
                .iter()
                .map(|g| (g.first.id, g.roots))
                .collect::<Vec<_>>(),
            [(1, 2), (3, 1)]
        );
        let raw = [
            root(1, "IMAPITable", 1, ""),
            root(2, "IMAPITable", 2, ""),
            root(3, "IMAPITable", 1, ""),
            root(4, "IMessage", 1, ""),
        ];
        let roots: Vec<_> = raw.iter().map(|o| (o, 1)).collect();
        let groups = super::by_signature(&roots);
        assert_eq!(
            groups
                .iter()
                .map(|g| (g.first.id, g.roots, g.indirect))
                .collect::<Vec<_>>(),
            [(1, 2, 2), (2, 1, 1), (4, 1, 1)]
        );
    }

    /// Stacks symbolized once for several reports: each report gets its
    /// own stacks and, offline, only the modules its raw frames are in,
    /// renumbered in their order, each frame pointing at its own module.
    #[test]
    fn reports_symbolized_together_each_keep_their_own_stacks_and_modules() {
        use mapileak_reports::{Module, RawFrame};
        let raw = |id: u32, frames: &[(Option<u32>, u64)]| {
            let frames = frames.iter().map(|&(m, a)| RawFrame::new(m, a)).collect();
            (id, Stack::unnamed(id, frames))
        };
        let shared = super::Symbols {
            stacks: [
                raw(1, &[(Some(0), 0x10), (Some(2), 0x20)]),
                raw(2, &[(Some(1), 0x30)]),
                raw(3, &[(Some(2), 0x40), (None, 0x50)]),
            ]
            .into_iter()
            .collect(),
            modules: ["a.so", "b.so", "c.so"]
                .into_iter()
                .map(|p| Module::new(p, 1))
                .collect(),
            functions: Default::default(),
            keys: Default::default(),
        };
        let (stacks, modules) = shared.subset(&[3, 1, 3]).into_stacks();
        let paths: Vec<&str> = modules.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["a.so", "c.so"]);
        let ids: Vec<u32> = stacks.iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 3]);
        let frames = |s: &Stack| -> Vec<(Option<u32>, u64)> {
            s.raw.iter().map(|r| (r.module, r.address)).collect()
        };
        assert_eq!(frames(&stacks[0]), [(Some(0), 0x10), (Some(1), 0x20)]);
        assert_eq!(frames(&stacks[1]), [(Some(1), 0x40), (None, 0x50)]);
        let (stacks, modules) = shared.subset(&[2]).into_stacks();
        assert_eq!(modules[..], [Module::new("b.so", 1)]);
        assert_eq!(stacks[0].raw, [RawFrame::new(Some(0), 0x30)]);
    }

    #[test]
    fn a_site_line_shows_the_provider_frames_that_led_to_it() {
        let f = |name: &str, line: Option<u32>| {
            Frame::new(name, line.map(|_| "store.rs".to_owned()), line)
        };
        let stack = Stack::new(
            1,
            vec![
                f("alloc::raw_vec::RawVecInner::try_allocate_in", None),
                f("?? (libc.so.6+0x1234)", None),
                f("store::rows", Some(9)),
                f("core::iter::Iterator::map", None),
                f("store::load", Some(40)),
                f("store::open", Some(12)),
                f("store::logon", Some(3)),
            ],
        );
        assert_eq!(
            super::call_chain(Some(&stack)),
            "store::rows (store.rs:9) <- store::load (store.rs:40) <- store::open (store.rs:12)"
        );
        let runtime_only = Stack::new(2, vec![f("std::rt::lang_start", None)]);
        assert_eq!(
            super::call_chain(Some(&runtime_only)),
            "std::rt::lang_start"
        );
    }
}
