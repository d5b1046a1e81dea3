//! One self-contained HTML page per report (or one page for several, with
//! an index): no external scripts, styles, fonts or requests, and a
//! Content-Security-Policy that forbids them. Readable with JavaScript off:
//! stacks are `<details>` elements; the only script is the filter box's.
//!
//! Everything that comes from the provider — labels, kinds, rule messages,
//! function names, file paths — is data, and is escaped: markup and text
//! are different types ([`out`]), so unescaped provider text does not
//! compile.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::hash::{BuildHasher, Hasher};

use crate::signature::{Origin, origin};
use crate::{Frame, LeakedObject, Report, Rule, Stack, StackId};

pub(crate) mod out;
use out::{Html, Out, Text, put};

mod growth;
pub use growth::render_growth;

/// The first line of every page, so a tool can tell its own output.
pub const MARKER: &str = "<!-- mapileak report -->";

/// Above this many objects, stacks are listed once in a Stacks section and
/// objects link to them, instead of each object carrying its own copy.
const INLINE_STACKS_UP_TO: usize = 1000;

/// Escapes text for HTML (and XML) content and attribute values. Control
/// characters and the non-characters XML forbids become U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

fn escape_into(out: &mut impl Write, s: &str) {
    for c in s.chars() {
        let _ = match c {
            '&' => out.write_str("&amp;"),
            '<' => out.write_str("&lt;"),
            '>' => out.write_str("&gt;"),
            '"' => out.write_str("&quot;"),
            '\'' => out.write_str("&#39;"),
            c if (c.is_control() && c != '\n' && c != '\t')
                || c == '\u{fffe}'
                || c == '\u{ffff}' =>
            {
                out.write_char('\u{fffd}')
            }
            c => out.write_char(c),
        };
    }
}

/// A short explanation of a rule, for the findings table ("" for a rule
/// this version does not know).
pub fn rule_help(rule: &str) -> &'static str {
    Rule::from_id(rule).map_or("", Rule::help)
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:14px 22px}
header h1{font-size:18px;margin:0 0 4px}
header .counts span{display:inline-block;margin-right:18px}
header .bad{color:#ffb4a8;font-weight:600}
main{padding:10px 22px 40px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:14px 0;padding:10px 16px}
h2{font-size:15px;margin:4px 0 10px}
ul.tree{list-style:none;padding-left:0;margin:0}
ul.tree ul{list-style:none;padding-left:22px;border-left:2px solid #e4e7ec;margin-left:6px}
li.obj{margin:4px 0}
ul.tree>li.obj{content-visibility:auto;contain-intrinsic-size:auto 60px}
.kind{font-weight:600;color:#7a2e12}
.label{color:#2b4c7e}
.tag{font-size:11px;border-radius:3px;padding:0 5px;margin-left:6px;background:#eef0f3;color:#444}
.tag.root{background:#fde2dd;color:#8a1c0c}
.sig{font:11px monospace;color:#888}
details{margin:2px 0 2px 4px}
summary{cursor:pointer;color:#445}
ol.stack{margin:4px 0 6px;padding-left:26px;font:12px/1.4 ui-monospace,monospace}
ol.stack li.own{color:#111;font-weight:600}
ol.stack li.lib{color:#667}
ol.stack li.rt{color:#a0a6b0}
.loc{color:#6a7380;font-weight:400}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceef2;vertical-align:top}
.rule{font-weight:600;color:#8a1c0c}
.help{color:#667;font-size:12px}
#filter{font-size:14px;padding:5px 8px;width:340px;border:1px solid #c8ccd3;border-radius:4px}
.empty{color:#4a7c3a}
.site{display:flex;gap:14px;align-items:flex-start;border-bottom:1px solid #eceef2;padding:8px 0}
.spark{flex:none}
svg text{font:12px system-ui,sans-serif;fill:#1d2330}
";

const SCRIPT: &str = "
(function(){
  var box=document.getElementById('filter');
  if(!box){return;}
  box.hidden=false;
  function apply(){
    var q=box.value.trim().toLowerCase();
    var rows=document.querySelectorAll('[data-filter]');
    for(var i=0;i<rows.length;i++){
      var r=rows[i];
      r.hidden=q!==''&&r.getAttribute('data-filter').indexOf(q)<0;
    }
    var shown=document.querySelectorAll('[data-filter]:not([hidden])').length;
    document.getElementById('shown').textContent=q===''?'':shown+' shown';
  }
  box.addEventListener('input',apply);
  function openTarget(){
    var id=decodeURIComponent(location.hash.slice(1));
    var el=id&&document.getElementById(id);
    if(el&&el.tagName==='DETAILS'){el.open=true;}
  }
  window.addEventListener('hashchange',openTarget);
  openTarget();
  apply();
})();
";

fn nonce() -> String {
    // Unpredictable per page, without a dependency: std's per-process
    // random hash keys, mixed with the time.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

/// The page around what `body` writes.
fn page(out: &mut Out<'_>, title: &str, body: impl FnOnce(&mut Out<'_>)) {
    // Hex digits only: safe in an attribute.
    let nonce = nonce();
    let nonce = Text(&nonce);
    put!(
        out,
        "{}\n<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'nonce-{}'; script-src 'nonce-{}'; img-src data:; base-uri 'none'; form-action 'none'\">\n\
         <meta name=\"viewport\" content=\"width=device-width\">\n<title>{}</title>\n<style nonce=\"{}\">{}</style></head>\n<body>\n",
        MARKER,
        nonce,
        nonce,
        Text(title),
        nonce,
        STYLE
    );
    body(out);
    put!(
        out,
        "<script nonce=\"{}\">{}</script>\n</body></html>\n",
        nonce,
        SCRIPT
    );
}

/// The page of one report.
pub fn render(report: &Report) -> String {
    let mut out = Out::in_memory();
    one(&mut out, report);
    out.into_string()
}

/// The page of one report, written to `w` as it is made (nothing the size
/// of the page is held in memory; give it a buffered writer).
pub fn render_to(report: &Report, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut out = Out::to_writer(w);
    one(&mut out, report);
    out.into_result()
}

fn one(out: &mut Out<'_>, report: &Report) {
    let title = format!(
        "mapileak: {} \"{}\" {}",
        report.session.provider.as_str(),
        report.session.label,
        report.session.event.as_str()
    );
    page(out, &title, |body| {
        header(body, report);
        body.markup("<main>\n");
        filter_box(body);
        sections(body, report, "");
        body.markup("</main>\n");
    })
}

/// One page for several reports: an index, then each report's sections.
/// `reports` pairs each report with the name to show (its file name).
pub fn render_many(reports: &[(String, Report)]) -> String {
    let mut out = Out::in_memory();
    page(&mut out, "mapileak: leak reports", |body| {
        many(body, reports)
    });
    out.into_string()
}

/// `"bad"` for a count that is not 0: the class that shows it in red.
fn bad(n: u64) -> &'static str {
    if n > 0 { "bad" } else { "" }
}

fn many(body: &mut Out<'_>, reports: &[(String, Report)]) {
    let leaked: u64 = reports
        .iter()
        .fold(0u64, |n, (_, r)| n.saturating_add(r.summary.leaked_objects));
    let findings: u64 = reports
        .iter()
        .fold(0u64, |n, (_, r)| n.saturating_add(r.summary.findings));
    put!(
        body,
        "<header><h1>mapileak: {} reports</h1><div class=\"counts\"><span class=\"{}\">{} leaked objects</span><span class=\"{}\">{} findings</span></div></header>\n<main>\n",
        reports.len(),
        bad(leaked),
        leaked,
        bad(findings),
        findings
    );
    filter_box(body);
    body.markup("<section id=\"index\"><h2>Reports</h2><table><tr><th>report</th><th>provider</th><th>session</th><th>event</th><th>leaked</th><th>roots</th><th>heap bytes</th><th>buffers</th><th>findings</th></tr>\n");
    for (i, (name, r)) in reports.iter().enumerate() {
        let s = &r.summary;
        let filter =
            format!("{name} {} {}", r.session.label, r.session.provider.as_str()).to_lowercase();
        put!(
            body,
            "<tr data-filter=\"{}\"><td><a href=\"#r{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            Text(&filter),
            i,
            Text(name),
            r.session.provider.as_str(),
            Text(&r.session.label),
            r.session.event.as_str(),
            s.leaked_objects,
            s.leak_roots,
            s.heap_bytes,
            s.mapi_buffers,
            s.findings
        );
    }
    body.markup("</table></section>\n");
    for (i, (name, r)) in reports.iter().enumerate() {
        let title = format!(
            "{name}: {} \"{}\" at {}",
            r.session.provider.as_str(),
            r.session.label,
            r.session.event.as_str()
        );
        put!(body, "<h2 id=\"r{}\">{}</h2>\n", i, Text(&title));
        sections(body, r, &format!("r{i}-"));
    }
    body.markup("</main>\n");
}

fn header(out: &mut Out<'_>, r: &Report) {
    let s = &r.summary;
    let untracked = Html::of(|out| {
        let refused = |t: &str| s.tables_refused.iter().any(|r| r == t);
        if s.heap_untracked > 0 {
            put!(
                out,
                "<span class=\"bad\">{} heap blocks not tracked ({})</span>",
                s.heap_untracked,
                if refused("heap") {
                    "live table not reserved: no address space"
                } else {
                    "live table full"
                }
            );
        }
        if s.stacks_missing > 0 {
            put!(
                out,
                "<span class=\"bad\">{} stacks missing ({})</span>",
                s.stacks_missing,
                if refused("stacks") {
                    "stack table not reserved: no address space"
                } else {
                    "stack table full"
                }
            );
        }
    });
    put!(
        out,
        "<header><h1>{} \"{}\" — {}</h1><div class=\"counts\">\
         <span class=\"{}\">{} {} objects</span><span>{} roots</span>\
         <span class=\"{}\">{} heap blocks, {} bytes</span><span class=\"{}\">{} MAPI buffers</span>\
         <span class=\"{}\">{} findings</span>{}<span>session {}, process {}, {} {}</span></div></header>\n",
        r.session.provider.as_str(),
        Text(&r.session.label),
        r.session.event.as_str(),
        bad(s.leaked_objects),
        s.leaked_objects,
        leaked_or_live(r),
        s.leak_roots,
        bad(s.heap_blocks),
        s.heap_blocks,
        s.heap_bytes,
        bad(s.mapi_buffers),
        s.mapi_buffers,
        bad(s.findings),
        s.findings,
        untracked,
        r.session.id,
        r.process,
        Text(&r.tool.name),
        Text(&r.tool.version)
    );
}

/// What a report's objects are: `leaked`, or `live` in a snapshot.
fn leaked_or_live(r: &Report) -> &'static str {
    if r.session.event == crate::Event::Snapshot {
        "live"
    } else {
        "leaked"
    }
}

fn filter_box(out: &mut Out<'_>) {
    out.markup("<p><input id=\"filter\" type=\"search\" placeholder=\"filter: kind, rule, label, function…\" aria-label=\"filter\" hidden> <span id=\"shown\"></span></p>\n");
}

fn sections(out: &mut Out<'_>, r: &Report, prefix: &str) {
    let stacks: HashMap<StackId, &Stack> = r.stacks.iter().map(|s| (s.id, s)).collect();
    let inline = r.objects.len() <= INLINE_STACKS_UP_TO;
    if r.is_clean() && r.session.event == crate::Event::Snapshot {
        out.markup("<section><p class=\"empty\">Nothing alive.</p></section>\n");
        return;
    }
    if r.is_clean() {
        out.markup("<section><p class=\"empty\">Nothing leaked, nothing found.</p></section>\n");
        return;
    }
    chart(out, r);
    if !r.findings.is_empty() {
        findings(out, r, &stacks, prefix);
    }
    if !r.objects.is_empty() {
        objects(out, r, &stacks, inline, prefix);
    }
    if !r.heap.is_empty() {
        out.markup("<section><h2>Heap leaks by allocation site</h2><table><tr><th>bytes</th><th>blocks</th><th>where</th></tr>\n");
        let mut heap: Vec<_> = r.heap.iter().collect();
        heap.sort_by_key(|h| std::cmp::Reverse(h.bytes));
        for h in heap {
            let st = stacks.get(&h.stack).copied();
            put!(
                out,
                "<tr data-filter=\"{}\"><td>{}</td><td>{}</td><td>",
                Text(&filter_text(&["heap", &h.signature], st)),
                h.bytes,
                h.blocks
            );
            stack_block(out, st, h.stack, inline, prefix);
            out.markup("</td></tr>\n");
        }
        out.markup("</table></section>\n");
    }
    if !r.buffers.is_empty() {
        out.markup("<section><h2>Unfreed MAPI buffers</h2><table><tr><th>bytes</th><th>chained children</th><th>owned by</th><th>allocated at</th></tr>\n");
        let mut bufs: Vec<_> = r.buffers.iter().collect();
        bufs.sort_by_key(|b| std::cmp::Reverse(b.bytes));
        for b in bufs {
            let st = stacks.get(&b.stack).copied();
            // A buffer of a leaked object (a utility object's): part of
            // that leak, not a root of its own.
            let owner = b
                .owner
                .and_then(|id| r.objects.iter().find(|o| o.id == id))
                .map(|o| format!("{} \"{}\" (#{})", o.kind, o.label, o.id))
                .unwrap_or_else(|| "— (a leak root)".to_owned());
            put!(
                out,
                "<tr data-filter=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>",
                Text(&filter_text(&["buffer", &b.signature], st)),
                b.bytes,
                b.children,
                Text(&owner)
            );
            stack_block(out, st, b.stack, inline, prefix);
            out.markup("</td></tr>\n");
        }
        out.markup("</table></section>\n");
    }
    if !inline {
        out.markup("<section><h2>Stacks</h2>\n");
        for s in &r.stacks {
            put!(
                out,
                "<details id=\"{}stack-{}\"><summary>stack {} — {}</summary>",
                Text(prefix),
                s.id,
                s.id,
                top(Some(s))
            );
            frames(out, s);
            out.markup("</details>\n");
        }
        out.markup("</section>\n");
    }
}

/// Lower-case text a filter matches: the given words and the stack's
/// functions (text: escaped where it is written).
fn filter_text(words: &[&str], stack: Option<&Stack>) -> String {
    let mut t = words.join(" ");
    if let Some(s) = stack {
        for f in &s.frames {
            t.push(' ');
            t.push_str(&f.function);
        }
    }
    t.to_lowercase()
}

fn top(stack: Option<&Stack>) -> Html {
    match stack.and_then(Stack::top_frame) {
        Some(f) => frame_text(f),
        None => Html::of(|out| out.markup(crate::text::UNKNOWN_PLACE)),
    }
}

fn frame_text(f: &Frame) -> Html {
    Html::of(|out| {
        put!(out, "<code>{}</code>", Text(&f.function));
        if let (Some(file), Some(line)) = (&f.file, f.line) {
            put!(out, " <span class=\"loc\">{}:{}</span>", Text(file), line);
        }
    })
}

fn frames(out: &mut Out<'_>, s: &Stack) {
    out.markup("<ol class=\"stack\">");
    for f in &s.frames {
        let class = match origin(&f.function) {
            _ if f.function.contains("_Vtbl::new::") => "lib",
            Origin::Provider => "own",
            Origin::Library => "lib",
            Origin::Runtime => "rt",
        };
        put!(out, "<li class=\"{}\">{}</li>", class, frame_text(f));
    }
    out.markup("</ol>");
}

/// The stack: a collapsed `<details>` in place, or a link to the Stacks section.
fn stack_block(out: &mut Out<'_>, stack: Option<&Stack>, id: StackId, inline: bool, prefix: &str) {
    match (stack, inline) {
        (Some(s), true) => {
            put!(out, "<details><summary>{}</summary>", top(Some(s)));
            frames(out, s);
            out.markup("</details>");
        }
        _ => {
            put!(
                out,
                "{} <a href=\"#{}stack-{}\">stack {}</a>",
                top(stack),
                Text(prefix),
                id,
                id
            );
        }
    }
}

/// What a finding's other call (`also`) is, by its rule.
fn also_label(rule: &str) -> &'static str {
    if rule.starts_with("buffer-") {
        "the buffer was allocated at:"
    } else {
        "and the later call:"
    }
}

fn findings(out: &mut Out<'_>, r: &Report, stacks: &HashMap<StackId, &Stack>, prefix: &str) {
    out.markup(
        "<section><h2>Findings</h2><table><tr><th>rule</th><th>what</th><th>where</th></tr>\n",
    );
    let inline = r.objects.len() <= INLINE_STACKS_UP_TO;
    for f in &r.findings {
        let st = f.stack.and_then(|s| stacks.get(&s).copied());
        put!(
            out,
            "<tr data-filter=\"{}\"><td class=\"rule\">{}</td><td>{}<div class=\"help\">{}</div></td><td>",
            Text(&filter_text(&[&f.rule, &f.message], st)),
            Text(&f.rule),
            Text(&f.message),
            Text(rule_help(&f.rule))
        );
        if f.repeated > 0 {
            put!(
                out,
                "<div class=\"help\">and {} more times at this call</div>",
                f.repeated
            );
        }
        match f.stack {
            Some(id) => stack_block(out, st, id, inline, prefix),
            None => out.markup("—"),
        }
        if let Some(id) = f.also {
            put!(out, "<div class=\"help\">{}</div>", also_label(&f.rule));
            stack_block(out, stacks.get(&id).copied(), id, inline, prefix);
        }
        if let Some(s) = &f.subject {
            put!(
                out,
                "<div class=\"help\">{} \"{}\", created:</div>",
                Text(&s.kind),
                Text(&s.label)
            );
            stack_block(
                out,
                stacks.get(&s.created).copied(),
                s.created,
                inline,
                prefix,
            );
        }
        out.markup("</td></tr>\n");
    }
    out.markup("</table></section>\n");
}
fn objects(
    out: &mut Out<'_>,
    r: &Report,
    stacks: &HashMap<StackId, &Stack>,
    inline: bool,
    prefix: &str,
) {
    let (children, size, roots) = forest(r);
    if r.session.event == crate::Event::Snapshot {
        out.markup("<section><h2>Live objects (a snapshot: not leaks yet) — roots first, what each holds nested under it</h2>\n<ul class=\"tree\">\n");
    } else {
        out.markup("<section><h2>Leaked objects — roots first, what each holds nested under it</h2>\n<ul class=\"tree\">\n");
    }
    let tree = Tree {
        r,
        children: &children,
        size: &size,
        stacks,
        inline,
        prefix,
    };
    for group in &by_signature(r, &roots) {
        match group[..] {
            [only] => tree.write(out, only),
            _ => root_group(out, &tree, group),
        }
    }
    out.markup("</ul></section>\n");
}

/// The objects as a forest: each one's children (by index), its subtree's
/// size, and the roots, largest subtree first.
fn forest(r: &Report) -> (HashMap<usize, Vec<usize>>, Vec<usize>, Vec<usize>) {
    let index: HashMap<u64, usize> = r
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| (o.id, i))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, o) in r.objects.iter().enumerate() {
        if let Some(p) = o.parent.and_then(|p| index.get(&p)) {
            children.entry(*p).or_default().push(i);
        }
    }
    // Subtree sizes, for "largest first" (iteratively: chains can be long).
    let mut size = vec![1usize; r.objects.len()];
    let mut order: Vec<usize> = Vec::with_capacity(r.objects.len());
    let mut todo: Vec<usize> = (0..r.objects.len())
        .filter(|&i| r.objects[i].parent.is_none_or(|p| !index.contains_key(&p)))
        .collect();
    let mut roots = todo.clone();
    while let Some(i) = todo.pop() {
        order.push(i);
        todo.extend(children.get(&i).into_iter().flatten());
    }
    for &i in order.iter().rev() {
        if let Some(p) = r.objects[i].parent.and_then(|p| index.get(&p)) {
            size[*p] = size[*p].saturating_add(size[i]);
        }
    }
    roots.sort_by(|&a, &b| {
        size[b]
            .cmp(&size[a])
            .then(r.objects[a].id.cmp(&r.objects[b].id))
    });
    (children, size, roots)
}

/// Roots of one signature (one kind from one creation path: a table leaked
/// per call, a hundred thousand times) are one entry: their count, and a
/// few of them, the largest, to open. Every one is in the JSON report.
/// In order of each signature's largest root.
fn by_signature(r: &Report, roots: &[usize]) -> Vec<Vec<usize>> {
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &i in roots {
        let sig = r.objects[i].signature.as_str();
        match group_of.get(sig) {
            Some(&g) => groups[g].push(i),
            None => {
                group_of.insert(sig, groups.len());
                groups.push(vec![i]);
            }
        }
    }
    groups
}

/// The entry of several roots of one signature.
fn root_group(out: &mut Out<'_>, tree: &Tree<'_>, group: &[usize]) {
    let r = tree.r;
    let first = &r.objects[group[0]];
    let objects: usize = group.iter().map(|&i| tree.size[i]).sum();
    let created = tree.stacks.get(&first.created).copied();
    let top = created
        .and_then(Stack::top_frame)
        .map_or("", |f| f.function.as_str());
    put!(
        out,
        "<li class=\"group\" data-filter=\"{}\"><span class=\"kind\">{}</span> <span class=\"tag root\">{} leak roots</span> like <span class=\"label\">&quot;{}&quot;</span><span class=\"tag\">{} objects with what they hold</span> <span class=\"sig\">{}</span><div>created in ",
        Text(&filter_text(&[&first.kind, &first.label, top], None)),
        Text(&first.kind),
        group.len(),
        Text(&first.label),
        objects,
        Text(&first.signature)
    );
    stack_block(out, created, first.created, tree.inline, tree.prefix);
    let shown = group.len().min(GROUP_EXAMPLES);
    put!(
        out,
        "</div><details><summary>the {} largest of them</summary><ul>",
        shown
    );
    for &i in &group[..shown] {
        tree.write(out, i);
    }
    out.markup("</ul></details>");
    if group.len() > shown {
        put!(
            out,
            "<div class=\"help\">and {} more with this signature: every one is in the JSON report</div>",
            group.len() - shown
        );
    }
    out.markup("</li>\n");
}

/// How many roots of one signature the page shows.
const GROUP_EXAMPLES: usize = 3;

/// What writing an object with what it holds needs.
struct Tree<'a> {
    r: &'a Report,
    children: &'a HashMap<usize, Vec<usize>>,
    size: &'a [usize],
    stacks: &'a HashMap<StackId, &'a Stack>,
    inline: bool,
    prefix: &'a str,
}

impl Tree<'_> {
    /// Object `root` and, nested, what it holds: depth-first, iteratively
    /// (chains can be long). Enter(i) writes the item and opens its list,
    /// Leave closes them.
    fn write(&self, out: &mut Out<'_>, root: usize) {
        enum Step {
            Enter(usize),
            Leave(bool),
        }
        let mut steps = vec![Step::Enter(root)];
        while let Some(step) = steps.pop() {
            match step {
                Step::Leave(had_children) => {
                    out.markup(if had_children {
                        "</ul></li>\n"
                    } else {
                        "</li>\n"
                    });
                }
                Step::Enter(i) => {
                    let o = &self.r.objects[i];
                    object_item(
                        out,
                        o,
                        self.size[i] - 1,
                        self.stacks.get(&o.created).copied(),
                        self.stacks,
                        self.inline,
                        self.prefix,
                    );
                    let kids = self.children.get(&i);
                    steps.push(Step::Leave(kids.is_some()));
                    if let Some(kids) = kids {
                        out.markup("<ul>");
                        steps.extend(kids.iter().rev().map(|&k| Step::Enter(k)));
                    }
                }
            }
        }
    }
}

fn object_item(
    out: &mut Out<'_>,
    o: &LeakedObject,
    held: usize,
    created: Option<&Stack>,
    stacks: &HashMap<StackId, &Stack>,
    inline: bool,
    prefix: &str,
) {
    // A large report filters on the top frame only: every function of every
    // stack on 100,000 rows would make the page hundreds of megabytes.
    let filter = if inline {
        filter_text(&[&o.kind, &o.label], created)
    } else {
        let top = created
            .and_then(Stack::top_frame)
            .map_or("", |f| f.function.as_str());
        filter_text(&[&o.kind, &o.label, top], None)
    };
    put!(
        out,
        "<li class=\"obj\" data-filter=\"{}\"><span class=\"kind\">{}</span> <span class=\"label\">&quot;{}&quot;</span>",
        Text(&filter),
        Text(&o.kind),
        Text(&o.label)
    );
    if o.root {
        out.markup("<span class=\"tag root\">leak root</span>");
    } else {
        out.markup("<span class=\"tag\">indirect</span>");
    }
    if held > 0 {
        put!(out, "<span class=\"tag\">holds {}</span>", held);
    }
    if let Some(n) = o.refcount {
        put!(out, "<span class=\"tag\">refcount {}</span>", n);
    }
    put!(
        out,
        " <span class=\"sig\">{}</span><div>created in ",
        Text(&o.signature)
    );
    stack_block(out, created, o.created, inline, prefix);
    out.markup("</div>");
    let unmatched: Vec<_> = o.unmatched_addrefs().collect();
    if !unmatched.is_empty() {
        out.markup("<div>AddRefs no Release matched (the likely culprit):<ul>");
        for e in unmatched {
            out.markup("<li>");
            put!(out, "{}× ", e.unmatched);
            stack_block(out, stacks.get(&e.stack).copied(), e.stack, inline, prefix);
            out.markup("</li>");
        }
        out.markup("</ul></div>");
    }
}

/// Inline SVG bars: leaked objects by kind, and heap bytes by allocating
/// function, so the worst offender shows at a glance.
fn chart(out: &mut Out<'_>, r: &Report) {
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for o in &r.objects {
        let n = by_kind.entry(&o.kind).or_insert(0);
        *n = n.saturating_add(1);
    }
    let stacks: HashMap<StackId, &Stack> = r.stacks.iter().map(|s| (s.id, s)).collect();
    let mut by_site: BTreeMap<String, u64> = BTreeMap::new();
    for h in &r.heap {
        let f = stacks
            .get(&h.stack)
            .and_then(|s| s.top_frame())
            .map_or("??".to_owned(), |f| f.function.clone());
        let n = by_site.entry(f).or_insert(0);
        *n = n.saturating_add(h.bytes);
    }
    for b in &r.buffers {
        let n = by_site.entry("MAPI buffers".to_owned()).or_insert(0);
        *n = n.saturating_add(b.bytes);
    }
    if by_kind.is_empty() && by_site.is_empty() {
        return;
    }
    out.markup("<section><h2>At a glance</h2>\n");
    bars(
        out,
        "Leaked objects by kind",
        by_kind
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect(),
        "",
    );
    bars(
        out,
        "Leaked bytes by allocating function",
        by_site.into_iter().collect(),
        " B",
    );
    out.markup("</section>\n");
}

fn bars(out: &mut Out<'_>, title: &str, mut rows: Vec<(String, u64)>, unit: &'static str) {
    if rows.is_empty() {
        return;
    }
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    rows.truncate(12);
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    let (label_w, bar_w, row_h) = (320.0, 480.0, 22.0);
    let height = row_h * rows.len() as f64 + 28.0;
    put!(
        out,
        "<svg role=\"img\" aria-label=\"{}\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\"><text x=\"0\" y=\"14\" font-weight=\"600\">{}</text>",
        Text(title),
        label_w + bar_w + 90.0,
        height,
        label_w + bar_w + 90.0,
        height,
        Text(title)
    );
    for (i, (name, n)) in rows.iter().enumerate() {
        let y = 24.0 + i as f64 * row_h;
        let w = (*n as f64 / max as f64 * bar_w).max(2.0);
        let short: String = if name.chars().count() > 44 {
            format!(
                "…{}",
                name.chars()
                    .rev()
                    .take(43)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<String>()
            )
        } else {
            name.clone()
        };
        put!(
            out,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"{}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"{}\"><title>{}</title></rect><text x=\"{}\" y=\"{}\">{}{}</text>",
            y + 15.0,
            Text(&short),
            label_w,
            y,
            w,
            row_h - 6.0,
            if i == 0 { "#c0392b" } else { "#7f8fa6" },
            Text(name),
            label_w + w + 6.0,
            y + 15.0,
            *n,
            unit
        );
    }
    out.markup("</svg>\n");
}

#[cfg(test)]
mod tests;
