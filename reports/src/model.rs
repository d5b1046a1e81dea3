//! The types of a report, serialized as the v1 wire format.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The value of a report's `format` field.
pub const FORMAT: &str = "mapileak-report";
/// The format version this crate writes and reads.
pub const VERSION: u32 = 1;

/// Identifies one interned stack inside a report (`stacks[].id`).
pub type StackId = u32;

/// The leak report of one session at one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`] for reports this crate writes.
    pub version: u32,
    /// The writer.
    pub tool: Tool,
    /// The writing process's id: object ids are unique within it, so an
    /// object reported at Logoff and again at Shutdown is one leak. 0 when
    /// unknown.
    #[serde(default)]
    pub process: u64,
    /// The logon session the report is about.
    pub session: SessionInfo,
    /// For a snapshot (event `snapshot`): which one, when, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotInfo>,
    /// Counts, for a reader that only wants totals.
    pub summary: Summary,
    /// Leaked objects, roots and indirect leaks alike, in creation order.
    #[serde(default)]
    pub objects: Vec<LeakedObject>,
    /// Live heap blocks attributed to the session, grouped by allocation site.
    #[serde(default)]
    pub heap: Vec<HeapSite>,
    /// MAPI buffers allocated for the session and never freed.
    #[serde(default)]
    pub buffers: Vec<Buffer>,
    /// Protocol findings (over-release, shutdown rules, buffer misuse).
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// Every stack the rest of the report refers to, symbolized.
    #[serde(default)]
    pub stacks: Vec<Stack>,
    /// The modules raw frames are in, when stacks were written without
    /// names (`MAPILEAK_SYMBOLS=offline`); empty once `mapileak symbolize`
    /// named them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<Module>,
}

impl Report {
    /// An empty report for `session`, with this crate as the tool.
    pub fn new(session: SessionInfo) -> Self {
        Report {
            format: FORMAT.to_owned(),
            version: VERSION,
            tool: Tool::default(),
            process: u64::from(std::process::id()),
            session,
            snapshot: None,
            summary: Summary::default(),
            objects: Vec::new(),
            heap: Vec::new(),
            buffers: Vec::new(),
            findings: Vec::new(),
            stacks: Vec::new(),
            modules: Vec::new(),
        }
    }

    /// Makes every string of the report printable on one line
    /// ([`crate::text::one_line`]): what a reader does before any of a
    /// report's text (from a file it did not write) reaches a log, a CI
    /// annotation or stderr.
    pub fn make_printable(&mut self) {
        fn fix(s: &mut String) {
            if let std::borrow::Cow::Owned(t) = crate::text::one_line(s) {
                *s = t;
            }
        }
        fix(&mut self.format);
        fix(&mut self.tool.name);
        fix(&mut self.tool.version);
        fix(&mut self.session.label);
        for t in &mut self.summary.tables_refused {
            fix(t);
        }
        if let Some(snapshot) = &mut self.snapshot {
            fix(&mut snapshot.label);
        }
        for o in &mut self.objects {
            fix(&mut o.kind);
            fix(&mut o.label);
            fix(&mut o.signature);
        }
        for h in &mut self.heap {
            fix(&mut h.signature);
        }
        for b in &mut self.buffers {
            fix(&mut b.signature);
        }
        for f in &mut self.findings {
            fix(&mut f.rule);
            fix(&mut f.message);
            fix(&mut f.signature);
        }
        for st in &mut self.stacks {
            for fr in &mut st.frames {
                fix(&mut fr.function);
                if let Some(file) = &mut fr.file {
                    fix(file);
                }
            }
        }
    }

    /// Lookups by id for the whole report, built in one pass: use it
    /// wherever more than a few lookups are made ([`Report::stack`],
    /// [`Report::object`] and [`Report::children_of`] scan the lists).
    pub fn index(&self) -> Index<'_> {
        let mut children: HashMap<u64, Vec<&LeakedObject>> = HashMap::new();
        for o in &self.objects {
            if let Some(p) = o.parent {
                children.entry(p).or_default().push(o);
            }
        }
        Index {
            stacks: self.stacks.iter().map(|s| (s.id, s)).collect(),
            objects: self.objects.iter().map(|o| (o.id, o)).collect(),
            children,
        }
    }

    /// The stack with id `id`, if the report has it.
    pub fn stack(&self, id: StackId) -> Option<&Stack> {
        self.stacks.iter().find(|s| s.id == id)
    }

    /// The leaked object with id `id`.
    pub fn object(&self, id: u64) -> Option<&LeakedObject> {
        self.objects.iter().find(|o| o.id == id)
    }

    /// The leak roots, in report order.
    pub fn roots(&self) -> impl Iterator<Item = &LeakedObject> {
        self.objects.iter().filter(|o| o.root)
    }

    /// The indirect leaks shown under `holder`.
    pub fn children_of(&self, holder: u64) -> impl Iterator<Item = &LeakedObject> {
        self.objects
            .iter()
            .filter(move |o| o.parent == Some(holder))
    }

    /// Whether nothing leaked and nothing was found.
    pub fn is_clean(&self) -> bool {
        self.objects.is_empty()
            && self.heap.is_empty()
            && self.buffers.is_empty()
            && self.findings.is_empty()
    }

    /// Recomputes `summary` from the lists.
    /// (`heap_untracked`, `stacks_missing` and `tables_refused`, which no
    /// list shows, are kept.)
    pub fn recount(&mut self) {
        self.summary = Summary {
            heap_untracked: self.summary.heap_untracked,
            stacks_missing: self.summary.stacks_missing,
            tables_refused: std::mem::take(&mut self.summary.tables_refused),
            leaked_objects: self.objects.len() as u64,
            leak_roots: self.roots().count() as u64,
            heap_blocks: self
                .heap
                .iter()
                .fold(0u64, |n, h| n.saturating_add(h.blocks)),
            heap_bytes: self
                .heap
                .iter()
                .fold(0u64, |n, h| n.saturating_add(h.bytes)),
            mapi_buffers: self.buffers.len() as u64,
            findings: self.findings.len() as u64,
        };
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A report's stacks, objects and holders by id ([`Report::index`]).
#[derive(Debug)]
pub struct Index<'a> {
    stacks: HashMap<StackId, &'a Stack>,
    objects: HashMap<u64, &'a LeakedObject>,
    children: HashMap<u64, Vec<&'a LeakedObject>>,
}

impl<'a> Index<'a> {
    /// The stack with id `id`, if the report has it.
    pub fn stack(&self, id: StackId) -> Option<&'a Stack> {
        self.stacks.get(&id).copied()
    }

    /// The leaked object with id `id`.
    pub fn object(&self, id: u64) -> Option<&'a LeakedObject> {
        self.objects.get(&id).copied()
    }

    /// The indirect leaks shown under `holder`, in report order.
    pub fn children_of(&self, holder: u64) -> &[&'a LeakedObject] {
        self.children.get(&holder).map_or(&[], Vec::as_slice)
    }
}

/// Who wrote a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tool {
    /// `mapileak`.
    pub name: String,
    /// The crate version of the writer.
    pub version: String,
}

impl Default for Tool {
    fn default() -> Self {
        Tool {
            name: "mapileak".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// The three kinds of MAPI service provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// An address book provider (`IABProvider`, `IABLogon`).
    AddressBook,
    /// A message store provider (`IMSProvider`, `IMSLogon`, `IMsgStore`).
    MessageStore,
    /// A transport provider (`IXPProvider`, `IXPLogon`).
    Transport,
    /// Objects created outside any logon or provider (process-end reports).
    Unknown,
}

impl ProviderKind {
    /// The wire name (`address_book`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::AddressBook => "address_book",
            ProviderKind::MessageStore => "message_store",
            ProviderKind::Transport => "transport",
            ProviderKind::Unknown => "unknown",
        }
    }

    /// The MAPI method that ends a logon of this provider type.
    pub fn logoff_method(self) -> &'static str {
        match self {
            ProviderKind::AddressBook => "IABLogon::Logoff",
            ProviderKind::MessageStore => "IMSLogon::Logoff",
            ProviderKind::Transport => "IXPLogon::TransportLogoff",
            ProviderKind::Unknown => "Logoff",
        }
    }
}

/// The moment a report was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The logon's logoff method ran.
    Logoff,
    /// The provider object's `Shutdown` ran.
    Shutdown,
    /// The process ended.
    Exit,
    /// A snapshot of what is alive, taken while the process runs: nothing
    /// in it is a leak yet (`mapileak growth` compares a series of them).
    Snapshot,
}

impl Event {
    /// The wire name (`logoff`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Logoff => "logoff",
            Event::Shutdown => "shutdown",
            Event::Exit => "exit",
            Event::Snapshot => "snapshot",
        }
    }
}

/// Which snapshot a report is part of: every report of one snapshot (one
/// per logon, one for what is outside any logon) has the same `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// The snapshot's number in its process, from 1, in the order taken.
    pub seq: u64,
    /// Why it was taken: the caller's label, `requested` (from another
    /// process), `periodic` (`MAPILEAK_SNAPSHOT_EVERY`).
    pub label: String,
    /// When, in milliseconds since the Unix epoch.
    pub taken_ms: u64,
}

impl SnapshotInfo {
    /// Snapshot number `seq`, labelled `label`, taken at `taken_ms`.
    pub fn new(seq: u64, label: impl Into<String>, taken_ms: u64) -> Self {
        SnapshotInfo {
            seq,
            label: label.into(),
            taken_ms,
        }
    }
}

/// The session a report is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Unique within the writing process.
    pub id: u64,
    /// The provider type of the logon.
    pub provider: ProviderKind,
    /// The label the provider gave the logon (profile or store name).
    pub label: String,
    /// When the report was taken.
    pub event: Event,
}

impl SessionInfo {
    /// Session `id` of a `provider`-type provider, labelled `label`, at `event`.
    pub fn new(id: u64, provider: ProviderKind, label: impl Into<String>, event: Event) -> Self {
        SessionInfo {
            id,
            provider,
            label: label.into(),
            event,
        }
    }
}

/// Totals of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Summary {
    /// Objects alive that should not be.
    pub leaked_objects: u64,
    /// Of those, the ones no other leaked object holds.
    pub leak_roots: u64,
    /// Live heap blocks attributed to the session.
    pub heap_blocks: u64,
    /// Their bytes.
    pub heap_bytes: u64,
    /// Unfreed MAPI buffers (chains count once).
    pub mapi_buffers: u64,
    /// Protocol findings.
    pub findings: u64,
    /// Attributed heap blocks the allocator's live table had no room for,
    /// process-wide up to this report (`heap_stats().untracked`): when not
    /// 0, `heap[]` may be missing blocks (raise `MAPILEAK_LIVE_BLOCKS`).
    /// Added in 0.1.x; 0 in older reports.
    #[serde(default)]
    pub heap_untracked: u64,
    /// Stack captures that found no room, process-wide up to this report:
    /// what they were for shows no frames. Added in 0.1.x; 0 in older
    /// reports.
    #[serde(default)]
    pub stacks_missing: u64,
    /// mapileak's tables the system refused to reserve (a host short of
    /// address space, such as a 32-bit Outlook): `stacks` (then
    /// `stacks_missing` counts what has no frames), `heap` (then
    /// `heap_untracked` counts the blocks not listed). Empty, and absent
    /// from the JSON, when none was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables_refused: Vec<String>,
}

/// An object alive when it should not be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LeakedObject {
    /// Unique within the writing process, in creation order.
    pub id: u64,
    /// The MAPI interface, such as `IMAPITable`.
    pub kind: String,
    /// What the provider called it.
    pub label: String,
    /// The reference count, for objects counted through `RefCount`.
    pub refcount: Option<u32>,
    /// Whether no other leaked object holds it: the one to fix.
    pub root: bool,
    /// For an indirect leak, the leaked object that holds it.
    pub parent: Option<u64>,
    /// The MAPI parent it was opened from, for display.
    pub opened_from: Option<u64>,
    /// Stable across runs: kind and creation stack by function name.
    /// Empty in a report whose frames are not named yet (raw, offline
    /// symbols); reading tools compute it once they have named them.
    pub signature: String,
    /// The stack that created it.
    pub created: StackId,
    /// AddRef/Release history, grouped by stack, when history was on.
    #[serde(default)]
    pub events: Vec<RefEvent>,
    /// History events older than the ring mapileak keeps per object (4,096
    /// events): the balancer's answer covers the events kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub events_dropped: u64,
}

impl LeakedObject {
    /// Object `id` of `kind`, labelled `label`, created at `created`: a
    /// root, with no count, links, signature or history (set them after).
    pub fn new(
        id: u64,
        kind: impl Into<String>,
        label: impl Into<String>,
        created: StackId,
    ) -> Self {
        LeakedObject {
            id,
            kind: kind.into(),
            label: label.into(),
            refcount: None,
            root: true,
            parent: None,
            opened_from: None,
            signature: String::new(),
            created,
            events: Vec::new(),
            events_dropped: 0,
        }
    }

    /// AddRef events no Release matched (the balancer's answer).
    pub fn unmatched_addrefs(&self) -> impl Iterator<Item = &RefEvent> {
        self.events
            .iter()
            .filter(|e| e.op == RefOp::AddRef && e.unmatched > 0)
    }
}

/// A reference-count operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefOp {
    /// The object was created with one reference.
    Create,
    /// `IUnknown::AddRef`.
    AddRef,
    /// `IUnknown::Release`.
    Release,
}

/// One or more AddRef/Release calls from the same stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RefEvent {
    /// What happened.
    pub op: RefOp,
    /// How many times, from this stack.
    pub count: u32,
    /// Where.
    pub stack: StackId,
    /// For `create` and `add_ref`: how many no Release balanced.
    #[serde(default)]
    pub unmatched: u32,
}

impl RefEvent {
    /// `count` calls of `op` from `stack`, all balanced.
    pub fn new(op: RefOp, count: u32, stack: StackId) -> Self {
        RefEvent {
            op,
            count,
            stack,
            unmatched: 0,
        }
    }
}

/// Live heap blocks from one allocation site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeapSite {
    /// The allocation stack.
    pub stack: StackId,
    /// Live blocks.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Stable across runs.
    pub signature: String,
}

impl HeapSite {
    /// `blocks` live blocks of `bytes` from `stack` (signature unset).
    pub fn new(stack: StackId, blocks: u64, bytes: u64) -> Self {
        HeapSite {
            stack,
            blocks,
            bytes,
            signature: String::new(),
        }
    }
}

/// An unfreed MAPI buffer (`MAPIAllocateBuffer`) and its chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Buffer {
    /// The allocating stack.
    pub stack: StackId,
    /// Bytes of the buffer and its `MAPIAllocateMore` children.
    pub bytes: u64,
    /// Number of chained children.
    pub children: u64,
    /// Stable across runs.
    pub signature: String,
    /// The leaked object that owns it (a MAPI utility object built on the
    /// provider's allocators, say): it is part of that leak, listed under
    /// it, not a leak root of its own. Absent for a root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u64>,
}

impl Buffer {
    /// A chain of `bytes` with `children` from `stack`: a root (no owner,
    /// signature unset).
    pub fn new(stack: StackId, bytes: u64, children: u64) -> Self {
        Buffer {
            stack,
            bytes,
            children,
            signature: String::new(),
            owner: None,
        }
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A bug: memory corruption, a hang or a leak follows.
    Error,
    /// Suspicious, not always wrong.
    Warning,
}

/// A broken rule, with the stack of the call that broke it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Finding {
    /// A stable rule id such as `over-release`.
    pub rule: String,
    /// How bad.
    pub severity: Severity,
    /// One sentence that names the MAPI call.
    pub message: String,
    /// The call that broke the rule (or the Logon, for a call that never came).
    pub stack: Option<StackId>,
    /// The object concerned, if any (its `id`; it may no longer be among
    /// `objects[]`: an over-released object is usually freed).
    #[serde(default)]
    pub object: Option<u64>,
    /// That object's kind, label and creation stack, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// Another call involved (for an over-release blamed on the Release that
    /// took the count to 0: the later Release that found it there; for a
    /// bad `MAPIFreeBuffer` of a buffer: its allocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub also: Option<StackId>,
    /// Stable across runs: rule and stack by function name.
    pub signature: String,
    /// How many more findings of this rule at this same call came after
    /// the ones kept (a bug hit a million times is a few findings and a
    /// count, not a million entries). Absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeated: u64,
}

impl Finding {
    /// A finding of rule `rule` (its id, such as `over-release`) at `stack`,
    /// about no object (signature unset).
    pub fn new(
        rule: impl Into<String>,
        severity: Severity,
        message: impl Into<String>,
        stack: Option<StackId>,
    ) -> Self {
        Finding {
            rule: rule.into(),
            severity,
            message: message.into(),
            stack,
            object: None,
            subject: None,
            also: None,
            signature: String::new(),
            repeated: 0,
        }
    }
}

/// What a finding is about: an object, described as it was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Subject {
    /// The MAPI interface, such as `IMAPIStatus`.
    pub kind: String,
    /// The label the provider gave it.
    pub label: String,
    /// Its creation stack (in `stacks[]`).
    pub created: StackId,
    /// Its AddRef/Release history, balanced, when history was on for its
    /// kind (as a leaked object's `events`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<RefEvent>,
}

impl Subject {
    /// Object `kind` labelled `label`, created at `created`, no history.
    pub fn new(kind: impl Into<String>, label: impl Into<String>, created: StackId) -> Self {
        Subject {
            kind: kind.into(),
            label: label.into(),
            created,
            events: Vec::new(),
        }
    }
}

/// A symbolized stack, innermost frame first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stack {
    /// Referred to by objects, events and findings.
    pub id: StackId,
    /// Innermost first; mapileak's own frames are left out.
    pub frames: Vec<Frame>,
    /// The return addresses, innermost first, when the stack was written
    /// without names (then `frames` is empty): `mapileak symbolize` names
    /// them from the modules' files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<RawFrame>,
}

impl Stack {
    /// Stack `id` with `frames`, innermost first.
    pub fn new(id: StackId, frames: Vec<Frame>) -> Self {
        Stack {
            id,
            frames,
            raw: Vec::new(),
        }
    }

    /// Stack `id` as return addresses, to be named later.
    pub fn unnamed(id: StackId, raw: Vec<RawFrame>) -> Self {
        Stack {
            id,
            frames: Vec::new(),
            raw,
        }
    }

    /// The provider's own frames (not runtime, not libraries, not
    /// windows-core's vtable trampolines), innermost first: where to look.
    pub fn provider_frames(&self) -> impl Iterator<Item = &Frame> {
        self.frames.iter().filter(|f| {
            crate::signature::origin(&f.function) == crate::signature::Origin::Provider
                && !f.function.contains("_Vtbl::new::")
                // A frame nothing named (a system library without
                // symbols): not a place in the provider to show.
                && !f.function.starts_with("??")
        })
    }

    /// The innermost provider frame, else the innermost frame.
    pub fn top_frame(&self) -> Option<&Frame> {
        self.provider_frames()
            .next()
            .or_else(|| self.frames.first())
    }

    /// Whether any frame's function name contains `needle`.
    pub fn mentions(&self, needle: &str) -> bool {
        self.frames.iter().any(|f| f.function.contains(needle))
    }
}

/// A return address not named yet: in which module, at which address of
/// the module's own (as in its file: what `addr2line -e FILE` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RawFrame {
    /// Index into the report's `modules`; `None` outside any module (then
    /// `address` is the process's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<u32>,
    /// The return address, in the module's own addresses.
    pub address: u64,
}

impl RawFrame {
    /// Address `address` of module `module` (an index into `modules`).
    pub fn new(module: Option<u32>, address: u64) -> Self {
        RawFrame { module, address }
    }
}

/// A module (executable or library) that raw frames are in, and what
/// identifies its file: `mapileak symbolize` names frames only from the
/// same build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Module {
    /// Its file, where the process loaded it.
    pub path: String,
    /// The file's size in bytes.
    pub size: u64,
    /// ELF: the GNU build id, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// PE: the CodeView record naming its PDB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdb: Option<Pdb>,
}

impl Module {
    /// Module file `path` of `size` bytes, with no build id or PDB record.
    pub fn new(path: impl Into<String>, size: u64) -> Self {
        Module {
            path: path.into(),
            size,
            build_id: None,
            pdb: None,
        }
    }
}

/// A PE module's PDB: what a symbol server keys it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Pdb {
    /// `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`, uppercase.
    pub guid: String,
    /// The PDB's age.
    pub age: u32,
    /// The PDB's path as the linker wrote it.
    pub path: String,
}

impl Pdb {
    /// PDB `guid` (formatted), `age`, `path`.
    pub fn new(guid: impl Into<String>, age: u32, path: impl Into<String>) -> Self {
        Pdb {
            guid: guid.into(),
            age,
            path: path.into(),
        }
    }
}

/// One frame of a symbolized stack. Displays as `function (file:line)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Frame {
    /// Demangled, without the hash suffix; `??` when unknown.
    pub function: String,
    /// Source file, when debug info has it.
    pub file: Option<String>,
    /// Source line, when debug info has it.
    pub line: Option<u32>,
}

impl Frame {
    /// `function`, at `file:line` when known.
    pub fn new(function: impl Into<String>, file: Option<String>, line: Option<u32>) -> Self {
        Frame {
            function: function.into(),
            file,
            line,
        }
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{} ({file}:{line})", self.function),
            _ => f.write_str(&self.function),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, line: Option<u32>) -> Frame {
        Frame {
            function: function.into(),
            file: line.map(|_| "store.rs".into()),
            line,
        }
    }

    fn object(id: u64, parent: Option<u64>) -> LeakedObject {
        LeakedObject {
            id,
            kind: "IMAPITable".into(),
            label: format!("t{id}"),
            refcount: Some(1),
            root: parent.is_none(),
            parent,
            opened_from: None,
            signature: format!("{id:016x}"),
            created: 1,
            events: Vec::new(),
            events_dropped: 0,
        }
    }

    /// Two roots; the second holds two indirect leaks.
    fn sample() -> Report {
        let mut r = Report::new(SessionInfo {
            id: 9,
            provider: ProviderKind::Transport,
            label: "SMTP".into(),
            event: Event::Logoff,
        });
        r.stacks = vec![
            Stack {
                id: 1,
                frames: vec![
                    frame("std::rt::lang_start", None),
                    frame("store::Folder::open", Some(7)),
                    frame("main", None),
                ],
                raw: Vec::new(),
            },
            Stack {
                id: 2,
                frames: vec![frame("core::ptr::drop", None)],
                raw: Vec::new(),
            },
        ];
        r.objects = vec![
            object(1, None),
            object(2, None),
            object(3, Some(2)),
            object(4, Some(2)),
        ];
        r.summary.heap_untracked = 5;
        r.recount();
        r
    }

    #[test]
    fn lookups_by_id_scan_and_index_alike() {
        let r = sample();
        let index = r.index();
        for id in [1, 2] {
            assert_eq!(r.stack(id).map(|s| s.id), Some(id));
            assert_eq!(index.stack(id).map(|s| s.id), Some(id));
        }
        assert!(r.stack(3).is_none() && index.stack(3).is_none());
        for id in 1..=4 {
            assert_eq!(r.object(id).map(|o| o.id), Some(id));
            assert_eq!(index.object(id).map(|o| o.id), Some(id));
        }
        assert!(r.object(5).is_none() && index.object(5).is_none());
        let roots: Vec<u64> = r.roots().map(|o| o.id).collect();
        assert_eq!(roots, [1, 2]);
        let children: Vec<u64> = r.children_of(2).map(|o| o.id).collect();
        assert_eq!(children, [3, 4]);
        let indexed: Vec<u64> = index.children_of(2).iter().map(|o| o.id).collect();
        assert_eq!(indexed, [3, 4]);
        assert_eq!(r.children_of(1).count(), 0);
        assert!(index.children_of(1).is_empty());
    }

    #[test]
    fn recount_counts_the_lists_and_keeps_the_untracked() {
        let mut r = sample();
        assert_eq!(
            (
                r.summary.leaked_objects,
                r.summary.leak_roots,
                r.summary.heap_untracked
            ),
            (4, 2, 5)
        );
        assert!(!r.is_clean());
        r.objects.clear();
        r.recount();
        assert_eq!(r.summary.leaked_objects, 0);
        assert!(r.is_clean());
        // `events_dropped` is written only when not 0.
        let json = serde_json::to_string(&object(1, None)).unwrap();
        assert!(!json.contains("events_dropped"), "{json}");
        let mut o = object(1, None);
        o.events_dropped = 3;
        assert!(
            serde_json::to_string(&o)
                .unwrap()
                .contains("\"events_dropped\":3")
        );
    }

    #[test]
    fn wire_names_and_logoff_methods() {
        let kinds = [
            (
                ProviderKind::AddressBook,
                "address_book",
                "IABLogon::Logoff",
            ),
            (
                ProviderKind::MessageStore,
                "message_store",
                "IMSLogon::Logoff",
            ),
            (
                ProviderKind::Transport,
                "transport",
                "IXPLogon::TransportLogoff",
            ),
            (ProviderKind::Unknown, "unknown", "Logoff"),
        ];
        for (kind, wire, method) in kinds {
            assert_eq!(kind.as_str(), wire);
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{wire}\""));
            assert_eq!(kind.logoff_method(), method);
        }
        for (event, wire) in [
            (Event::Logoff, "logoff"),
            (Event::Shutdown, "shutdown"),
            (Event::Exit, "exit"),
            (Event::Snapshot, "snapshot"),
        ] {
            assert_eq!(event.as_str(), wire);
            assert_eq!(
                serde_json::to_string(&event).unwrap(),
                format!("\"{wire}\"")
            );
        }
    }

    #[test]
    fn frames_of_the_provider_first() {
        let r = sample();
        let s = r.stack(1).unwrap();
        let own: Vec<&str> = s.provider_frames().map(|f| f.function.as_str()).collect();
        assert_eq!(own, ["store::Folder::open"]);
        assert_eq!(s.top_frame().unwrap().function, "store::Folder::open");
        // No provider frame: the innermost one.
        assert_eq!(
            r.stack(2).unwrap().top_frame().unwrap().function,
            "core::ptr::drop"
        );
        let trampoline = Stack {
            id: 3,
            frames: vec![frame("store::IMAPITable_Vtbl::new::Release", None)],
            raw: Vec::new(),
        };
        assert_eq!(trampoline.provider_frames().count(), 0);
        let unnamed = Stack {
            id: 4,
            frames: vec![
                frame("?? (libfoo.so+0x1234)", None),
                frame("store::Folder::open", Some(7)),
            ],
            raw: Vec::new(),
        };
        assert_eq!(unnamed.top_frame().unwrap().function, "store::Folder::open");
        assert!(s.mentions("Folder::open") && !s.mentions("Message"));
        assert_eq!(s.frames[1].to_string(), "store::Folder::open (store.rs:7)");
        assert_eq!(s.frames[0].to_string(), "std::rt::lang_start");
    }

    #[test]
    fn unmatched_addrefs_are_addrefs_with_something_left() {
        let mut o = object(1, None);
        let event = |op, unmatched| RefEvent {
            op,
            count: 2,
            stack: 1,
            unmatched,
        };
        o.events = vec![
            event(RefOp::AddRef, 1),
            event(RefOp::AddRef, 0),
            event(RefOp::Release, 1),
            event(RefOp::Create, 1),
        ];
        let found: Vec<(RefOp, u32)> = o.unmatched_addrefs().map(|e| (e.op, e.unmatched)).collect();
        assert_eq!(found, [(RefOp::AddRef, 1)]);
    }

    #[test]
    fn make_printable_reaches_every_string() {
        let mut r = sample();
        r.session.label = "a\nb".into();
        r.objects[0].label = "c\rd".into();
        r.stacks[0].frames[1].function = "e\nf".into();
        r.stacks[0].frames[1].file = Some("g\nh".into());
        r.make_printable();
        let f = &r.stacks[0].frames[1];
        for s in [
            &r.session.label,
            &r.objects[0].label,
            &f.function,
            f.file.as_ref().unwrap(),
        ] {
            assert!(!s.contains(['\n', '\r']), "{s:?}");
        }
        assert_eq!(r.session.label, crate::text::one_line("a\nb"));
    }
}
