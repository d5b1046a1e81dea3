//! Findings as the recorder keeps them until a report takes them: the
//! broken rule, the call, the object concerned; bounded per call site.

use std::collections::BTreeMap;

use mapileak_reports::{RefOp, Rule, Severity, StackId};

/// A finding recorded when it happened, reported with its session.
#[derive(Clone)]
pub(crate) struct PendingFinding {
    pub rule: Rule,
    pub severity: Severity,
    pub message: String,
    pub stack: StackId,
    pub object: Option<u64>,
    /// The object's kind, label, creation stack and (history on) its
    /// AddRef/Release history, kept with the finding: the object may be
    /// gone (freed after its over-release) by the report.
    pub subject: Option<PendingSubject>,
    /// Another call the finding involves (an over-release: the Release that
    /// found the count at 0, when `stack` is the one that took it there).
    pub also: Option<StackId>,
    /// How many more findings of the same rule at the same call came after
    /// the ones kept ([`Findings::push`]).
    pub repeated: u64,
}

/// What a finding is about, as [`PendingFinding::about`] saw it.
#[derive(Clone)]
pub(crate) struct PendingSubject {
    pub kind: &'static str,
    pub label: String,
    pub created: StackId,
    pub events: Vec<(RefOp, StackId)>,
}

impl PendingFinding {
    /// A finding of `rule` (with the rule's own severity) about no
    /// particular object, at `stack`.
    pub(crate) fn new(rule: Rule, message: String, stack: StackId) -> PendingFinding {
        PendingFinding {
            rule,
            severity: rule.severity(),
            message,
            stack,
            object: None,
            subject: None,
            also: None,
            repeated: 0,
        }
    }
}

/// How many findings of one rule at one call are kept in full; later ones
/// are counted on the last kept (`repeated`), so a bug hit a million times
/// keeps memory and the report bounded.
const KEPT_PER_SITE: u32 = 8;

/// The findings recorded for a session (or outside any), bounded per site.
#[derive(Default)]
pub(crate) struct Findings {
    list: Vec<PendingFinding>,
    /// Per (rule, call): how many came, and where the last kept one is.
    sites: BTreeMap<(Rule, StackId), (u32, usize)>,
}

impl Findings {
    pub(crate) const fn new() -> Findings {
        Findings {
            list: Vec::new(),
            sites: BTreeMap::new(),
        }
    }

    /// Records `f`: in full for the first [`KEPT_PER_SITE`] of its rule at
    /// its call, then counted.
    pub(crate) fn push(&mut self, f: PendingFinding) {
        let site = self.sites.entry((f.rule, f.stack)).or_insert((0, 0));
        site.0 = site.0.saturating_add(1);
        if site.0 <= KEPT_PER_SITE {
            site.1 = self.list.len();
            self.list.push(f);
        } else if let Some(kept) = self.list.get_mut(site.1) {
            kept.repeated += 1 + f.repeated;
        }
    }

    /// Everything recorded so far, leaving none.
    pub(crate) fn take(&mut self) -> Vec<PendingFinding> {
        self.sites.clear();
        std::mem::take(&mut self.list)
    }

    /// A copy of what is recorded (a Logoff's preview).
    pub(crate) fn to_vec(&self) -> Vec<PendingFinding> {
        self.list.clone()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}
