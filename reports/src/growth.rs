//! What grows between snapshots: the reports of a series of snapshots
//! (event `snapshot`) of one process, lined up site by site.
//!
//! A **site** is what a report counts under one signature: an object kind
//! with its creation stack, a heap allocation site, a MAPI buffer site. Its
//! count and bytes at each snapshot are summed over the snapshot's reports
//! (one per logon, one for what is outside any logon); a site missing from
//! a snapshot had nothing alive then. A site that grew at every step of a
//! series of at least [`MIN_SNAPSHOTS`] snapshots, by at least the
//! [`Limits`] on average, is a `growth` finding.

use std::collections::{BTreeMap, HashMap};

use crate::{Event, Report, Stack, signature};

/// The fewest snapshots steady growth is judged over.
pub const MIN_SNAPSHOTS: usize = 3;

/// What a site counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SiteKind {
    /// Objects of one kind from one creation stack.
    Object,
    /// Heap blocks from one allocation stack.
    Heap,
    /// MAPI buffer chains from one allocation stack.
    Buffer,
}

impl SiteKind {
    /// `object`, `heap`, `buffer`.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteKind::Object => "object",
            SiteKind::Heap => "heap",
            SiteKind::Buffer => "buffer",
        }
    }
}

/// One snapshot of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// The snapshot's number in its process.
    pub seq: u64,
    /// Its label.
    pub label: String,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub taken_ms: u64,
}

/// One site across the snapshots of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// What it counts.
    pub what: SiteKind,
    /// The object kind (`IMAPITable`), or `heap`, `buffer`.
    pub kind: String,
    /// The site's signature (as in the reports).
    pub signature: String,
    /// The stack that creates what it counts.
    pub stack: Option<Stack>,
    /// Objects, blocks or buffers alive at each snapshot.
    pub counts: Vec<u64>,
    /// Their bytes at each snapshot (0 for objects: their memory is the
    /// heap sites').
    pub bytes: Vec<u64>,
}

impl Site {
    /// Whether the count grew at every step.
    pub fn count_grew_every_step(&self) -> bool {
        every_step_grew(&self.counts)
    }

    /// Whether the bytes grew at every step.
    pub fn bytes_grew_every_step(&self) -> bool {
        every_step_grew(&self.bytes)
    }

    /// Average growth of the count per snapshot, first to last.
    pub fn count_per_step(&self) -> f64 {
        per_step(&self.counts)
    }

    /// Average growth of the bytes per snapshot, first to last.
    pub fn bytes_per_step(&self) -> f64 {
        per_step(&self.bytes)
    }

    /// The signature of the site's `growth` finding (distinct from the
    /// site's own: a baseline that accepts a leak does not accept its
    /// growth).
    pub fn growth_signature(&self) -> String {
        let frames = self.stack.as_ref().map_or(&[][..], |s| &s.frames[..]);
        signature::compute(&format!("growth {}", self.kind), frames)
    }

    /// `IMAPITable`, `heap`, `MAPI buffer`: what the site counts.
    pub fn title(&self) -> String {
        match self.what {
            SiteKind::Object => self.kind.clone(),
            SiteKind::Heap => "heap".to_owned(),
            SiteKind::Buffer => "MAPI buffer".to_owned(),
        }
    }
}

fn every_step_grew(values: &[u64]) -> bool {
    values.len() >= MIN_SNAPSHOTS && values.windows(2).all(|w| w[1] > w[0])
}

fn per_step(values: &[u64]) -> f64 {
    match (values.first(), values.last()) {
        (Some(&first), Some(&last)) if values.len() > 1 => {
            (last as f64 - first as f64) / (values.len() - 1) as f64
        }
        _ => 0.0,
    }
}

/// The snapshots of one process, with every site seen in any of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The process's id.
    pub process: u64,
    /// Its snapshots, in the order taken.
    pub points: Vec<Point>,
    /// Every site, largest growth first.
    pub sites: Vec<Site>,
}

/// How much steady growth is a finding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Objects, blocks or buffers per snapshot, on average.
    pub count: f64,
    /// Bytes per snapshot, on average, for a site whose count does not
    /// grow at every step but whose bytes do (a buffer that is reallocated
    /// larger).
    pub bytes: f64,
}

impl Default for Limits {
    /// Any steady growth.
    fn default() -> Self {
        Limits {
            count: 1.0,
            bytes: 1.0,
        }
    }
}

impl Series {
    /// The sites whose steady growth is a finding under `limits`, largest
    /// growth first.
    pub fn growing(&self, limits: Limits) -> impl Iterator<Item = &Site> {
        self.sites.iter().filter(move |s| {
            (s.count_grew_every_step() && s.count_per_step() >= limits.count)
                || (s.bytes_grew_every_step() && s.bytes_per_step() >= limits.bytes)
        })
    }
}

/// Why reports do not make a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotASeries(pub String);

impl std::fmt::Display for NotASeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lines up snapshot reports, one series per process (in order of process
/// id). Every report must be a snapshot; `name(i)` names report `i` in an
/// error.
pub fn series(
    reports: &[&Report],
    name: impl Fn(usize) -> String,
) -> Result<Vec<Series>, NotASeries> {
    let mut processes: BTreeMap<u64, Vec<&Report>> = BTreeMap::new();
    for (i, r) in reports.iter().enumerate() {
        if r.session.event != Event::Snapshot || r.snapshot.is_none() {
            return Err(NotASeries(format!(
                "{}: a {} report, not a snapshot; growth reads snapshots (event \"snapshot\")",
                name(i),
                r.session.event.as_str()
            )));
        }
        processes.entry(r.process).or_default().push(r);
    }
    Ok(processes
        .into_iter()
        .map(|(process, reports)| one_series(process, &reports))
        .collect())
}

/// A site's key: what it counts and its signature.
type Key = (SiteKind, String);

/// The series of one process's snapshot reports.
fn one_series(process: u64, reports: &[&Report]) -> Series {
    let mut points: BTreeMap<u64, Point> = BTreeMap::new();
    for r in reports {
        if let Some(s) = &r.snapshot {
            points.entry(s.seq).or_insert_with(|| Point {
                seq: s.seq,
                label: s.label.clone(),
                taken_ms: s.taken_ms,
            });
        }
    }
    let column: HashMap<u64, usize> = points.keys().enumerate().map(|(i, &s)| (s, i)).collect();
    let n = points.len();
    let mut sites: HashMap<Key, Site> = HashMap::new();
    for r in reports {
        let Some(&at) = r.snapshot.as_ref().and_then(|s| column.get(&s.seq)) else {
            continue;
        };
        let index = r.index();
        let mut add = |what: SiteKind, kind: &str, sig: &str, stack, count: u64, bytes: u64| {
            let site = sites.entry((what, sig.to_owned())).or_insert_with(|| Site {
                what,
                kind: kind.to_owned(),
                signature: sig.to_owned(),
                stack: index.stack(stack).cloned(),
                counts: vec![0; n],
                bytes: vec![0; n],
            });
            // Saturating: a report's numbers are read from a file.
            site.counts[at] = site.counts[at].saturating_add(count);
            site.bytes[at] = site.bytes[at].saturating_add(bytes);
        };
        for o in &r.objects {
            add(SiteKind::Object, &o.kind, &o.signature, o.created, 1, 0);
        }
        for h in &r.heap {
            add(
                SiteKind::Heap,
                "heap",
                &h.signature,
                h.stack,
                h.blocks,
                h.bytes,
            );
        }
        for b in &r.buffers {
            add(
                SiteKind::Buffer,
                "buffer",
                &b.signature,
                b.stack,
                1,
                b.bytes,
            );
        }
    }
    let mut sites: Vec<Site> = sites.into_values().collect();
    // Largest growth first: steady ones, then by count and bytes growth.
    sites.sort_by(|a, b| {
        let key = |s: &Site| {
            (
                !(s.count_grew_every_step() || s.bytes_grew_every_step()),
                std::cmp::Reverse(growth(&s.counts)),
                std::cmp::Reverse(growth(&s.bytes)),
            )
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| a.signature.cmp(&b.signature))
    });
    Series {
        process,
        points: points.into_values().collect(),
        sites,
    }
}

/// Last minus first, as a signed number.
fn growth(values: &[u64]) -> i128 {
    match (values.first(), values.last()) {
        (Some(&first), Some(&last)) => i128::from(last) - i128::from(first),
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
