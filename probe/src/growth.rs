//! `mapileak growth` and `gate --growth`: what grows across a series of
//! snapshot reports, and its `growth` findings as gate items.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mapileak_reports::growth::{self, Limits, Series, Site};
use mapileak_reports::{Event, Report, Rule};

use crate::items::{Error, Item, Loaded, What};

/// The snapshot reports of `loaded`, lined up, one series per process.
/// Reports found in directories that are not snapshots (a Logoff's, in
/// the same `MAPILEAK_DIR`) are passed over; a file named on the command
/// line that is not one is an error.
pub fn series(loaded: &[Loaded], named: &[PathBuf]) -> Result<Vec<Series>, Error> {
    // One lookup per report, however many files were named.
    let named_files: std::collections::HashSet<&PathBuf> =
        named.iter().filter(|p| !p.is_dir()).collect();
    let snapshots: Vec<&Loaded> = loaded
        .iter()
        .filter(|l| l.report.session.event == Event::Snapshot || named_files.contains(&l.path))
        .collect();
    if snapshots.is_empty() {
        return Err(Error(
            "no snapshot reports (event \"snapshot\") among the reports read; take them with mapileak::snapshot, mapileak_snapshot, `mapileak snapshot PID` or MAPILEAK_SNAPSHOT_EVERY".to_owned(),
        ));
    }
    let reports: Vec<&Report> = snapshots.iter().map(|l| &l.report).collect();
    growth::series(&reports, |i| snapshots[i].path.display().to_string())
        .map_err(|e| Error(e.to_string()))
}

/// One `growth` finding: a site of a series, and what the gate needs.
pub struct Grown<'a> {
    pub site: &'a Site,
    pub signature: String,
    pub snapshots: usize,
    /// The series' last snapshot report: where the finding is filed.
    pub source: &'a Loaded,
}

/// The growth findings of `series` under `limits`.
pub fn findings<'a>(series: &'a [Series], limits: Limits, loaded: &'a [Loaded]) -> Vec<Grown<'a>> {
    let mut out = Vec::new();
    for s in series {
        let last = s.points.last().map(|p| p.seq);
        let source = loaded.iter().rev().find(|l| {
            l.report.process == s.process && l.report.snapshot.as_ref().map(|x| x.seq) == last
        });
        let Some(source) = source else { continue };
        for site in s.growing(limits) {
            out.push(Grown {
                site,
                signature: site.growth_signature(),
                snapshots: s.points.len(),
                source,
            });
        }
    }
    out
}

/// The gate's items for `grown`.
pub fn items<'a>(grown: &'a [Grown<'a>]) -> impl Iterator<Item = Item<'a>> {
    grown.iter().map(|g| {
        let site = g.site;
        Item {
            what: What::Growth,
            signature: &g.signature,
            kind: (site.what == growth::SiteKind::Object).then_some(site.kind.as_str()),
            rule: Some(Rule::Growth.id()),
            title: format!("{} +{} per snapshot", site.title(), per_step(site)),
            message: format!(
                "{} grew at every one of {} snapshots: {}",
                site.title(),
                g.snapshots,
                numbers(site)
            ),
            stack: site.stack.as_ref(),
            source: g.source,
        }
    })
}

/// `+2.0` objects, or bytes for a site whose count does not grow.
fn per_step(site: &Site) -> String {
    if site.count_grew_every_step() {
        format!("{:.1}", site.count_per_step())
    } else {
        format!("{:.0} bytes", site.bytes_per_step())
    }
}

/// `2 → 4 → 6`, with the bytes when there are any.
fn numbers(site: &Site) -> String {
    let join = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(" → ");
    if site.bytes.iter().any(|&b| b > 0) {
        format!("{} ({} bytes)", join(&site.counts), join(&site.bytes))
    } else {
        join(&site.counts)
    }
}

/// The text `mapileak growth` prints: each process's snapshots, its
/// growing sites (largest first), and a count of the rest.
pub fn text(series: &[Series], limits: Limits) -> String {
    let mut out = String::new();
    let mut total = 0;
    for s in series {
        let (first, last) = (s.points.first(), s.points.last());
        let _ = writeln!(
            out,
            "process {}: {} snapshot(s), #{} \"{}\" to #{} \"{}\"",
            s.process,
            s.points.len(),
            first.map_or(0, |p| p.seq),
            first.map_or("", |p| p.label.as_str()),
            last.map_or(0, |p| p.seq),
            last.map_or("", |p| p.label.as_str()),
        );
        let grown: Vec<&Site> = s.growing(limits).collect();
        total += grown.len();
        for site in &grown {
            let top = site
                .stack
                .as_ref()
                .and_then(|st| st.top_frame())
                .map_or_else(
                    || mapileak_reports::text::UNKNOWN_PLACE.to_owned(),
                    ToString::to_string,
                );
            let _ = writeln!(
                out,
                "growth {} +{} per snapshot: {} [{}]\n  at {top}",
                site.title(),
                per_step(site),
                numbers(site),
                site.growth_signature()
            );
            for f in site
                .stack
                .iter()
                .flat_map(|st| st.provider_frames())
                .skip(1)
                .take(5)
            {
                let _ = writeln!(out, "     {f}");
            }
        }
        let _ = writeln!(
            out,
            "{} site(s) grew at every step; {} did not",
            grown.len(),
            s.sites.len() - grown.len()
        );
    }
    if series.len() > 1 {
        let _ = writeln!(
            out,
            "mapileak growth: {total} growing site(s) in {} processes",
            series.len()
        );
    }
    out
}

/// Writes the growth page to `out`.
pub fn page(series: &[Series], limits: Limits, out: &Path) -> Result<(), Error> {
    let page = mapileak_reports::html::render_growth(series, limits);
    mapileak_reports::write_atomic(out, page.as_bytes())
        .map_err(|e| Error(format!("{}: cannot write: {e}", out.display())))
}
