//! `mapileak gate`: judge every item against suppressions and the baseline,
//! and say what failed in the format a CI system reads.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::accept::{Baseline, StackAnswers, Suppression};
use crate::items::{Item, Loaded, What};

/// The verdict on one run.
pub struct Verdict<'a> {
    pub items: Vec<Item<'a>>,
    /// Indexes into `items` of the unaccepted ones.
    pub failures: Vec<usize>,
    pub accepted: usize,
    pub suppressed: usize,
}

/// Suppressions first (the first that matches counts the hit), then the
/// baseline: the first `count` occurrences of a signature are accepted.
pub fn judge<'a>(
    items: Vec<Item<'a>>,
    baseline: &Baseline,
    suppressions: &mut [Suppression],
) -> Verdict<'a> {
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut failures, mut accepted, mut suppressed) = (Vec::new(), 0, 0);
    let mut answers = StackAnswers::new();
    for (i, item) in items.iter().enumerate() {
        let hit = suppressions
            .iter()
            .position(|s| s.matches(item, &mut answers));
        if let Some(s) = hit {
            suppressions[s].hits += 1;
            suppressed += 1;
            continue;
        }
        let n = seen.entry(item.signature).or_insert(0);
        *n += 1;
        if *n <= baseline.counts.get(item.signature).copied().unwrap_or(0) {
            accepted += 1;
        } else {
            failures.push(i);
        }
    }
    Verdict {
        items,
        failures,
        accepted,
        suppressed,
    }
}

fn counts_line(v: &Verdict<'_>, reports: usize) -> String {
    let by_what = |w: What| v.failures.iter().filter(|&&i| v.items[i].what == w).count();
    format!(
        "{} unaccepted ({} leak(s), {} finding(s), {} heap site(s), {} buffer(s), {} growing site(s)) in {reports} report(s); {} accepted by the baseline, {} suppressed",
        v.failures.len(),
        by_what(What::Leak),
        by_what(What::Finding),
        by_what(What::Heap),
        by_what(What::Buffer),
        by_what(What::Growth),
        v.accepted,
        v.suppressed
    )
}

pub fn text(v: &Verdict<'_>, reports: usize) -> String {
    let mut out = String::new();
    for &i in &v.failures {
        let item = &v.items[i];
        let s = &item.source.report.session;
        let _ = writeln!(
            out,
            "FAIL {} {} [{}] — {}\n  session: {} \"{}\" ({}), report {}",
            item.what.as_str(),
            item.title,
            item.signature,
            item.message,
            s.provider.as_str(),
            s.label,
            s.event.as_str(),
            item.source.path.display()
        );
        for f in item.provider_frames(6) {
            let _ = writeln!(out, "    at {f}");
        }
    }
    let _ = writeln!(out, "mapileak gate: {}", counts_line(v, reports));
    out
}

pub fn json(v: &Verdict<'_>, reports: usize, suppressions: &[Suppression]) -> String {
    let failures: Vec<serde_json::Value> = v
        .failures
        .iter()
        .map(|&i| {
            let item = &v.items[i];
            let top = item.top_frame();
            serde_json::json!({
                "what": item.what.as_str(),
                "signature": item.signature,
                "title": item.title,
                "message": item.message,
                "report": item.source.path.display().to_string(),
                "session": item.source.report.session,
                "function": top.map(|f| &f.function),
                "file": top.and_then(|f| f.file.as_ref()),
                "line": top.and_then(|f| f.line),
            })
        })
        .collect();
    let sups: Vec<serde_json::Value> = suppressions
        .iter()
        .map(|s| serde_json::json!({"entry": s.entry(), "line": s.line, "reason": s.reason, "hits": s.hits}))
        .collect();
    let doc = serde_json::json!({
        "result": if v.failures.is_empty() { "pass" } else { "fail" },
        "reports": reports,
        "failures": failures,
        "accepted": v.accepted,
        "suppressed": v.suppressed,
        "suppressions": sups,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// XML escaping: the HTML renderer's, which also produces valid XML.
fn xml(s: &str) -> String {
    mapileak_reports::html::escape(s)
}

/// One `<testcase>` per session report, one `<failure>` per unaccepted item.
pub fn junit(v: &Verdict<'_>, loaded: &[Loaded]) -> String {
    let mut cases = String::new();
    // Failures by report, in one pass (not one pass per report).
    let mut by_source: HashMap<*const Loaded, Vec<&Item<'_>>> = HashMap::new();
    for &i in &v.failures {
        let item = &v.items[i];
        by_source
            .entry(std::ptr::from_ref(item.source))
            .or_default()
            .push(item);
    }
    for source in loaded {
        let s = &source.report.session;
        let failures = by_source
            .remove(&std::ptr::from_ref(source))
            .unwrap_or_default();
        let _ = write!(
            cases,
            "    <testcase classname=\"mapileak.{}\" name=\"{}\" file=\"{}\">",
            s.provider.as_str(),
            xml(&format!(
                "{} ({}, session {})",
                s.label,
                s.event.as_str(),
                s.id
            )),
            xml(&source.path.display().to_string())
        );
        for item in &failures {
            let mut body = format!("{}\n", item.message);
            for f in item.provider_frames(8) {
                let _ = match (&f.file, f.line) {
                    (Some(file), Some(line)) => {
                        writeln!(body, "    at {} ({file}:{line})", f.function)
                    }
                    _ => writeln!(body, "    at {}", f.function),
                };
            }
            let _ = write!(
                cases,
                "\n      <failure type=\"{}\" message=\"{}\">{}</failure>",
                item.what.as_str(),
                xml(&format!("{} [{}]", item.title, item.signature)),
                xml(&body)
            );
        }
        cases.push_str(if failures.is_empty() {
            "</testcase>\n"
        } else {
            "\n    </testcase>\n"
        });
    }
    let failed = loaded
        .iter()
        .filter(|l| {
            v.failures
                .iter()
                .any(|&i| std::ptr::eq(v.items[i].source, *l))
        })
        .count();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"mapileak\" tests=\"{n}\" failures=\"{failed}\">\n  <testsuite name=\"mapileak gate\" tests=\"{n}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\">\n{cases}  </testsuite>\n</testsuites>\n",
        n = loaded.len()
    )
}

/// GitHub Actions workflow commands: `::error file=F,line=L,title=T::message`.
pub fn github(v: &Verdict<'_>, reports: usize) -> String {
    let data = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let prop = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    let mut out = String::new();
    for &i in &v.failures {
        let item = &v.items[i];
        let mut props = Vec::new();
        if let Some(f) = item.top_frame()
            && let Some(file) = &f.file
        {
            props.push(format!("file={}", prop(file)));
            if let Some(line) = f.line {
                props.push(format!("line={line}"));
            }
        }
        props.push(format!(
            "title={}",
            prop(&format!("mapileak {}: {}", item.what.as_str(), item.title))
        ));
        let _ = writeln!(
            out,
            "::error {}::{}",
            props.join(","),
            data(&format!(
                "{} at {} [{}]",
                item.message,
                item.site(),
                item.signature
            ))
        );
    }
    let _ = writeln!(out, "{}", counts_line(v, reports));
    out
}
