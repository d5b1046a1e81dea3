//! The page of a series of snapshots (`mapileak growth -o`): each growing
//! site as a small inline SVG chart with its numbers beside it, largest
//! growth first; then the sites that did not grow steadily.

use super::out::{Out, Text, put};
use super::{filter_box, filter_text, frames, page, top};
use crate::growth::{Limits, Series, Site};

/// Sites listed under "did not grow steadily", at most, per process.
const OTHER_SITES_SHOWN: usize = 200;

/// The page of `series` (one per process), judged by `limits`.
pub fn render_growth(series: &[Series], limits: Limits) -> String {
    let mut out = Out::in_memory();
    let growing: usize = series.iter().map(|s| s.growing(limits).count()).sum();
    let points: usize = series.iter().map(|s| s.points.len()).sum();
    page(&mut out, "mapileak: growth between snapshots", |body| {
        put!(
            body,
            "<header><h1>mapileak: growth over {} snapshot(s)</h1><div class=\"counts\"><span class=\"{}\">{} growing site(s)</span><span>{} process(es)</span></div></header>\n<main>\n",
            points,
            super::bad(growing as u64),
            growing,
            series.len()
        );
        filter_box(body);
        for s in series {
            process(body, s, limits);
        }
        body.markup("</main>\n");
    });
    out.into_string()
}

fn process(body: &mut Out<'_>, s: &Series, limits: Limits) {
    put!(
        body,
        "<section><h2>Process {}: {} snapshot(s)</h2><table class=\"points\"><tr><th>#</th><th>label</th><th>taken</th></tr>\n",
        s.process,
        s.points.len()
    );
    let start = s.points.first().map_or(0, |p| p.taken_ms);
    for p in &s.points {
        let after = p.taken_ms.saturating_sub(start) as f64 / 1000.0;
        put!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            p.seq,
            Text(&p.label),
            Text(&format!("+{after:.1} s"))
        );
    }
    body.markup("</table></section>\n");
    let growing: Vec<&Site> = s.growing(limits).collect();
    body.markup("<section class=\"growing\"><h2>Growing sites</h2>\n");
    if growing.is_empty() {
        body.markup("<p class=\"empty\">No site grew at every step.</p>\n");
    }
    for site in &growing {
        growing_site(body, site);
    }
    body.markup("</section>\n");
    // By address: one lookup per site, not a scan of the growing ones.
    let grew: std::collections::HashSet<*const Site> =
        growing.iter().map(|g| std::ptr::from_ref(*g)).collect();
    let others: Vec<&Site> = s
        .sites
        .iter()
        .filter(|x| !grew.contains(&std::ptr::from_ref(*x)))
        .collect();
    if others.is_empty() {
        return;
    }
    put!(
        body,
        "<section><h2>Did not grow steadily: {} site(s)</h2><table><tr><th>site</th><th>where</th><th>count at each snapshot</th></tr>\n",
        others.len()
    );
    for site in others.iter().take(OTHER_SITES_SHOWN) {
        put!(
            body,
            "<tr data-filter=\"{}\"><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            Text(&filter_text(&[&site.kind], site.stack.as_ref())),
            Text(&site.title()),
            top(site.stack.as_ref()),
            Text(&numbers(&site.counts))
        );
    }
    body.markup("</table>");
    if others.len() > OTHER_SITES_SHOWN {
        put!(
            body,
            "<p>{} more: see <code>mapileak growth</code>'s text output.</p>",
            others.len() - OTHER_SITES_SHOWN
        );
    }
    body.markup("</section>\n");
}

fn growing_site(body: &mut Out<'_>, site: &Site) {
    put!(
        body,
        "<div class=\"site\" data-filter=\"{}\"><div class=\"spark\">",
        Text(&filter_text(&["growth", &site.kind], site.stack.as_ref()))
    );
    spark(body, &site.counts, &format!("{} count", site.title()));
    put!(
        body,
        "</div><div><span class=\"kind\">{}</span> created at {} <span class=\"tag root\">+{} per snapshot</span>\n<div>count: {}</div>",
        Text(&site.title()),
        top(site.stack.as_ref()),
        Text(&format!("{:.1}", site.count_per_step())),
        Text(&numbers(&site.counts))
    );
    if site.bytes.iter().any(|&b| b > 0) {
        put!(
            body,
            "<div>bytes: {} (+{} per snapshot)</div>",
            Text(&numbers(&site.bytes)),
            Text(&format!("{:.0}", site.bytes_per_step()))
        );
    }
    put!(
        body,
        "<div class=\"sig\">growth signature {}; site {}</div>",
        Text(&site.growth_signature()),
        Text(&site.signature)
    );
    if let Some(stack) = &site.stack {
        body.markup("<details><summary>stack</summary>");
        frames(body, stack);
        body.markup("</details>");
    }
    body.markup("</div></div>\n");
}

/// `3 → 6 → 9`.
fn numbers(values: &[u64]) -> String {
    values
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" → ")
}

/// A small line chart of `values`, from 0 to their largest.
fn spark(body: &mut Out<'_>, values: &[u64], title: &str) {
    let (w, h) = (160.0, 44.0);
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = if values.len() > 1 {
        w / (values.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - 2.0 - v as f64 / max * (h - 4.0)
            )
        })
        .collect();
    put!(
        body,
        "<svg role=\"img\" aria-label=\"{}\" width=\"{}\" height=\"{}\" viewBox=\"-2 0 {} {}\"><title>{}</title><polyline fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\" points=\"{}\"/></svg>",
        Text(title),
        w + 4.0,
        h,
        w + 4.0,
        h,
        Text(title),
        Text(&points.join(" "))
    );
}
