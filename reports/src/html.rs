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
        if s.heap_untracked > 0 {
            put!(
                out,
                "<span class=\"bad\">{} heap blocks not tracked (live table full)</span>",
                s.heap_untracked
            );
        }
    });
    put!(
        out,
        "<header><h1>{} \"{}\" — {}</h1><div class=\"counts\">\
         <span class=\"{}\">{} leaked objects</span><span>{} roots</span>\
         <span class=\"{}\">{} heap blocks, {} bytes</span><span class=\"{}\">{} MAPI buffers</span>\
         <span class=\"{}\">{} findings</span>{}<span>session {}, process {}, {} {}</span></div></header>\n",
        r.session.provider.as_str(),
        Text(&r.session.label),
        r.session.event.as_str(),
        bad(s.leaked_objects),
        s.leaked_objects,
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

fn filter_box(out: &mut Out<'_>) {
    out.markup("<p><input id=\"filter\" type=\"search\" placeholder=\"filter: kind, rule, label, function…\" aria-label=\"filter\" hidden> <span id=\"shown\"></span></p>\n");
}

fn sections(out: &mut Out<'_>, r: &Report, prefix: &str) {
    let stacks: HashMap<StackId, &Stack> = r.stacks.iter().map(|s| (s.id, s)).collect();
    let inline = r.objects.len() <= INLINE_STACKS_UP_TO;
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
        None => Html::of(|out| out.markup("an unknown place")),
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
            out.markup("<div class=\"help\">and the later call:</div>");
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
    let roots = todo.clone();
    while let Some(i) = todo.pop() {
        order.push(i);
        todo.extend(children.get(&i).into_iter().flatten());
    }
    for &i in order.iter().rev() {
        if let Some(p) = r.objects[i].parent.and_then(|p| index.get(&p)) {
            size[*p] = size[*p].saturating_add(size[i]);
        }
    }
    let mut roots = roots;
    roots.sort_by(|&a, &b| {
        size[b]
            .cmp(&size[a])
            .then(r.objects[a].id.cmp(&r.objects[b].id))
    });

    out.markup("<section><h2>Leaked objects — roots first, what each holds nested under it</h2>\n<ul class=\"tree\">\n");
    // Roots of one signature (one kind from one creation path: a table
    // leaked per call, a hundred thousand times) are one entry: their
    // count, and a few of them, the largest, to open. Every one is in the
    // JSON report.
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &i in &roots {
        let sig = r.objects[i].signature.as_str();
        match group_of.get(sig) {
            Some(&g) => groups[g].push(i),
            None => {
                group_of.insert(sig, groups.len());
                groups.push(vec![i]);
            }
        }
    }
    let tree = Tree {
        r,
        children: &children,
        size: &size,
        stacks,
        inline,
        prefix,
    };
    for group in &groups {
        if let [only] = group[..] {
            tree.write(out, only);
            continue;
        }
        let first = &r.objects[group[0]];
        let objects: usize = group.iter().map(|&i| size[i]).sum();
        let created = stacks.get(&first.created).copied();
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
        stack_block(out, created, first.created, inline, prefix);
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
    out.markup("</ul></section>\n");
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
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_quotes_and_what_xml_forbids() {
        assert_eq!(
            escape("<a href=\"x\" title='y'>&</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        // Control characters and XML's non-characters become U+FFFD; a
        // line break and a tab stay.
        assert_eq!(
            escape("a\u{1}b\u{7f}c\u{fffe}d\u{ffff}e\n\tf"),
            "a\u{fffd}b\u{fffd}c\u{fffd}d\u{fffd}e\n\tf"
        );
        assert_eq!(escape("plain"), "plain");
    }

    /// A report with one finding, made by hand.
    fn with_a_finding() -> Report {
        let mut r = Report::new(crate::SessionInfo {
            id: 3,
            provider: crate::ProviderKind::MessageStore,
            label: "Inbox <store>".into(),
            event: crate::Event::Logoff,
        });
        r.stacks.push(Stack {
            id: 1,
            frames: vec![Frame {
                function: "store::Logon::logoff".into(),
                file: Some("store.rs".into()),
                line: Some(12),
            }],
        });
        r.findings.push(crate::Finding {
            rule: "over-release".into(),
            severity: crate::Severity::Error,
            message: "Release at 0".into(),
            stack: Some(1),
            object: None,
            subject: None,
            also: None,
            signature: "0123456789abcdef".into(),
            repeated: 41,
        });
        r.recount();
        r
    }

    fn frame(function: &str) -> Frame {
        Frame {
            function: function.into(),
            file: Some("store.rs".into()),
            line: Some(3),
        }
    }

    /// A report with a bit of everything: a root holding an indirect
    /// leak, history, heap sites, a buffer and an over-release.
    fn rich() -> Report {
        let mut r = with_a_finding();
        r.stacks.push(Stack {
            id: 2,
            frames: vec![
                frame("store::IMAPITable_Vtbl::new::AddRef"),
                frame("store::Folder::contents_table"),
                frame("std::rt::lang_start"),
                frame("mapileak::object::Tracked::new"),
            ],
        });
        let object = |id: u64, parent: Option<u64>| crate::LeakedObject {
            id,
            kind: if parent.is_none() {
                "IMAPIFolder"
            } else {
                "IMessage"
            }
            .into(),
            label: format!("o{id}"),
            refcount: Some(2),
            root: parent.is_none(),
            parent,
            opened_from: None,
            signature: format!("sig{id:013}"),
            created: 2,
            events: Vec::new(),
            events_dropped: 0,
        };
        let mut root = object(10, None);
        root.events.push(crate::RefEvent {
            op: crate::RefOp::AddRef,
            count: 3,
            stack: 2,
            unmatched: 2,
        });
        r.objects = vec![root, object(11, Some(10))];
        r.heap = vec![
            crate::HeapSite {
                stack: 2,
                blocks: 4,
                bytes: 400,
                signature: "heapsig000000001".into(),
            },
            crate::HeapSite {
                stack: 1,
                blocks: 1,
                bytes: 100,
                signature: "heapsig000000002".into(),
            },
        ];
        r.buffers = vec![
            crate::Buffer {
                stack: 1,
                bytes: 64,
                children: 2,
                signature: "bufsig0000000001".into(),
                owner: None,
            },
            crate::Buffer {
                stack: 1,
                bytes: 16,
                children: 0,
                signature: "bufsig0000000002".into(),
                owner: Some(r.objects[0].id),
            },
        ];
        r.findings[0].also = Some(2);
        r.findings[0].subject = Some(crate::Subject {
            kind: "IMAPITable".into(),
            label: "contents".into(),
            created: 2,
            events: Vec::new(),
        });
        r.summary.heap_untracked = 7;
        r.recount();
        r
    }

    /// `n` roots from one creation path (one signature), each holding one
    /// message, and one root of another kind.
    fn many_of_one_kind(n: u64) -> Report {
        let mut r = with_a_finding();
        let object = |id: u64, kind: &str, sig: &str, parent: Option<u64>| LeakedObject {
            id,
            kind: kind.into(),
            label: format!("object {id}"),
            refcount: Some(1),
            root: parent.is_none(),
            parent,
            opened_from: None,
            signature: sig.into(),
            created: 1,
            events: Vec::new(),
            events_dropped: 0,
        };
        for i in 0..n {
            r.objects
                .push(object(2 * i + 1, "IMAPITable", "aaaaaaaaaaaaaaaa", None));
            r.objects.push(object(
                2 * i + 2,
                "IMessage",
                "bbbbbbbbbbbbbbbb",
                Some(2 * i + 1),
            ));
        }
        r.objects
            .push(object(1_000_000, "IMAPIFolder", "cccccccccccccccc", None));
        r.recount();
        r
    }

    #[test]
    fn roots_of_one_signature_are_one_entry_with_a_few_examples() {
        let page = render(&many_of_one_kind(10));
        // One entry for the ten tables: their count, what they hold, three
        // of them (each with its message) to open, the rest counted.
        assert_eq!(page.matches("<li class=\"group\"").count(), 1, "{page}");
        assert!(page.contains("<span class=\"tag root\">10 leak roots</span> like <span class=\"label\">&quot;object 1&quot;</span><span class=\"tag\">20 objects with what they hold</span>"), "{page}");
        assert!(page.contains("<summary>the 3 largest of them</summary>"));
        assert!(page.contains("and 7 more with this signature: every one is in the JSON report"));
        assert_eq!(
            page.matches("IMessage</span>").count(),
            3,
            "the examples' messages"
        );
        // A root alone in its signature is as before.
        assert!(page.contains("IMAPIFolder</span> <span class=\"label\">&quot;object 1000000&quot;</span><span class=\"tag root\">leak root</span>"));
    }

    #[test]
    fn a_hundred_thousand_leaks_of_a_few_kinds_make_a_small_page() {
        let page = render(&many_of_one_kind(50_000));
        assert!(page.len() < 1 << 20, "{} bytes", page.len());
    }

    #[test]
    fn a_page_shows_every_part_of_its_report() {
        let r = rich();
        let page = render(&r);
        // The header's counts, in red where they are not 0.
        assert!(
            page.contains("<span class=\"bad\">2 leaked objects</span><span>1 roots</span>"),
            "{page}"
        );
        assert!(page.contains("<span class=\"bad\">5 heap blocks, 500 bytes</span>"));
        assert!(page.contains("<span class=\"bad\">2 MAPI buffers</span>"));
        assert!(
            page.contains("<span class=\"bad\">7 heap blocks not tracked (live table full)</span>")
        );
        assert!(page.contains("<input id=\"filter\""));
        // The objects: the root, with what it holds nested under it.
        let root = page
            .find("<li class=\"obj\" data-filter=\"imapifolder o10 ")
            .expect("the root");
        let child = page
            .find("<span class=\"label\">&quot;o11&quot;</span>")
            .expect("the child");
        assert!(root < child);
        assert!(page[root..child].contains("<span class=\"tag root\">leak root</span><span class=\"tag\">holds 1</span><span class=\"tag\">refcount 2</span>"));
        assert!(page[child..].contains("<span class=\"tag\">indirect</span>"));
        assert!(page.contains("AddRefs no Release matched (the likely culprit):<ul><li>2× "));
        // Stacks in place: the provider's frames marked, a vtable trampoline not.
        assert!(page.contains("<details><summary><code>store::Folder::contents_table</code>"));
        assert!(
            page.contains("<li class=\"lib\"><code>store::IMAPITable_Vtbl::new::AddRef</code>")
        );
        assert!(page.contains("<li class=\"own\"><code>store::Folder::contents_table</code>"));
        assert!(page.contains("<li class=\"rt\"><code>std::rt::lang_start</code>"));
        assert!(
            !page.contains("<h2>Stacks</h2>"),
            "inline below 1000 objects"
        );
        // Heap sites largest first, the buffer, the finding's later call and subject.
        let (a, b) = (
            page.find("heapsig000000001").unwrap(),
            page.find("heapsig000000002").unwrap(),
        );
        assert!(a < b);
        assert!(page.contains("<h2>Unfreed MAPI buffers</h2>"));
        assert!(page.contains("<td>64</td><td>2</td><td>— (a leak root)</td>"));
        let owner = &r.objects[0];
        assert!(
            page.contains(&format!(
                "<td>16</td><td>0</td><td>{} &quot;{}&quot; (#{})</td>",
                owner.kind, owner.label, owner.id
            )),
            "{page}"
        );
        assert!(page.contains("<div class=\"help\">and the later call:</div>"));
        assert!(page.contains("<div class=\"help\">and 41 more times at this call</div>"));
        assert!(page.contains("<div class=\"help\">IMAPITable \"contents\", created:</div>"));
        // The chart: bars scaled to the largest, labels shortened.
        assert!(page.contains("<h2>At a glance</h2>"));
        assert!(page.contains("aria-label=\"Leaked objects by kind\" width=\"890\" height=\"72\" viewBox=\"0 0 890 72\""), "{page}");
        assert!(page.contains("<rect x=\"320\" y=\"24\" width=\"480.0\" height=\"16\" fill=\"#c0392b\"><title>IMAPIFolder</title></rect><text x=\"806\" y=\"39\">1</text>"), "{page}");
        assert!(page.contains("<rect x=\"320\" y=\"46\" width=\"480.0\" height=\"16\" fill=\"#7f8fa6\"><title>IMessage</title>"), "{page}");
        // 400 of 400 bytes, 100, 64 + 16 (the MAPI buffers): widths in proportion.
        assert!(page.contains("<text x=\"0\" y=\"61\">store::Logon::logoff</text><rect x=\"320\" y=\"46\" width=\"120.0\" height=\"16\" fill=\"#7f8fa6\"><title>store::Logon::logoff</title></rect><text x=\"446\" y=\"61\">100 B</text>"), "100 of 400 bytes");
        assert!(page.contains("width=\"96.0\""), "80 of 400 bytes");
        assert!(
            page.contains("<text x=\"806\" y=\"39\">400 B</text>"),
            "{page}"
        );
        assert!(page.contains(
            "aria-label=\"Leaked bytes by allocating function\" width=\"890\" height=\"94\""
        ));
    }

    /// Zeros are not red, a leaf holds nothing, a finding's stack is in
    /// place, and objects alone make a chart.
    #[test]
    fn the_small_cases() {
        let mut r = with_a_finding();
        let page = render(&r);
        assert!(
            page.contains("<span class=\"\">0 leaked objects</span>"),
            "{page}"
        );
        assert!(!page.contains("not tracked"));
        let row = &page[page.find("Release at 0").unwrap()..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(
            row.contains("<details><summary><code>store::Logon::logoff</code>"),
            "{row}"
        );
        assert!(!page.contains("At a glance"), "nothing to chart");
        r.objects = rich().objects;
        r.recount();
        let page = render(&r);
        assert!(page.contains("At a glance"));
        let leaf = &page[page.find("&quot;o11&quot;").unwrap()..];
        assert!(
            !leaf[..leaf.find("</li>").unwrap()].contains("holds"),
            "{leaf}"
        );
    }

    #[test]
    fn long_names_are_shortened_in_the_chart() {
        let mut r = rich();
        let long = format!("store::{}::f", "x".repeat(60));
        r.stacks[1].frames[1].function = long.clone();
        let page = render(&r);
        let tail: String = long
            .chars()
            .rev()
            .take(43)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert!(page.contains(&format!(">…{tail}</text>")), "{page}");
        assert!(page.contains(&format!("<title>{long}</title>")));
        // 44 characters still fit.
        let fits = format!("store::{}", "y".repeat(37));
        assert_eq!(fits.chars().count(), 44);
        r.stacks[1].frames[1].function = fits.clone();
        assert!(render(&r).contains(&format!("<text x=\"0\" y=\"39\">{fits}</text>")));
    }

    #[test]
    fn above_a_thousand_objects_stacks_are_listed_once() {
        let mut r = rich();
        let proto = r.objects[1].clone();
        for id in 100..1100 {
            let mut o = proto.clone();
            o.id = id;
            o.parent = None;
            o.root = true;
            r.objects.push(o);
        }
        r.recount();
        let page = render(&r);
        assert!(page.contains("<h2>Stacks</h2>"));
        assert!(page.contains(
            "<details id=\"stack-2\"><summary>stack 2 — <code>store::Folder::contents_table</code>"
        ));
        assert!(page.contains("<a href=\"#stack-2\">stack 2</a>"));
        // Filtered on the top frame only.
        assert!(
            page.contains("data-filter=\"imessage o11 store::folder::contents_table\""),
            "{}",
            &page[..2000]
        );
    }

    #[test]
    fn render_to_writes_what_render_makes() {
        let r = rich();
        let mut bytes = Vec::new();
        render_to(&r, &mut bytes).unwrap();
        let written = String::from_utf8(bytes).unwrap();
        let made = render(&r);
        // The same page but for its nonce.
        let strip = |p: &str| p.split("nonce").count();
        assert_eq!(strip(&written), strip(&made));
        assert_eq!(written.len(), made.len());
        assert!(written.starts_with(MARKER));
        // A failing writer: the error comes back.
        struct Broken;
        impl std::io::Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let e = render_to(&r, &mut Broken).unwrap_err();
        assert_eq!(e.to_string(), "disk full");
    }

    #[test]
    fn one_page_for_several_reports_has_an_index() {
        let clean = Report::new(crate::SessionInfo {
            id: 4,
            provider: crate::ProviderKind::AddressBook,
            label: "GAL".into(),
            event: crate::Event::Shutdown,
        });
        let page = render_many(&[("a.json".into(), rich()), ("b.json".into(), clean)]);
        assert!(page.starts_with(MARKER));
        assert!(page.contains("<h1>mapileak: 2 reports</h1><div class=\"counts\"><span class=\"bad\">2 leaked objects</span><span class=\"bad\">1 findings</span>"), "{page}");
        assert!(page.contains("<td><a href=\"#r0\">a.json</a></td><td>message_store</td><td>Inbox &lt;store&gt;</td><td>logoff</td><td>2</td><td>1</td><td>500</td><td>2</td><td>1</td>"), "{page}");
        assert!(page.contains("<td><a href=\"#r1\">b.json</a></td><td>address_book</td><td>GAL</td><td>shutdown</td><td>0</td>"));
        assert!(
            page.contains("<h2 id=\"r1\">b.json: address_book &quot;GAL&quot; at shutdown</h2>")
        );
        assert!(page.contains("Nothing leaked, nothing found."));
    }

    #[test]
    fn findings_carry_their_rules_help_line() {
        assert_eq!(rule_help("over-release"), Rule::OverRelease.help());
        assert_eq!(rule_help("no-such-rule"), "");
        let page = render(&with_a_finding());
        assert!(
            page.contains(&format!(
                "<div class=\"help\">{}</div>",
                escape(Rule::OverRelease.help())
            )),
            "{page}"
        );
        assert!(page.contains("Inbox &lt;store&gt;"));
    }

    /// The Content-Security-Policy's nonce: fresh per page, 16 hex digits,
    /// the one the page's style and script carry.
    #[test]
    fn each_page_has_its_own_nonce() {
        let nonce_of = |page: &str| {
            let at = page.find("style-src 'nonce-").unwrap() + "style-src 'nonce-".len();
            page[at..at + 16].to_owned()
        };
        let report = with_a_finding();
        let (a, b) = (render(&report), render(&report));
        let (na, nb) = (nonce_of(&a), nonce_of(&b));
        assert_ne!(na, nb);
        for (page, nonce) in [(&a, &na), (&b, &nb)] {
            assert!(nonce.bytes().all(|c| c.is_ascii_hexdigit()), "{nonce}");
            assert!(page.contains(&format!("script-src 'nonce-{nonce}'")));
            assert!(page.contains(&format!("<style nonce=\"{nonce}\">")));
            assert!(page.contains(&format!("<script nonce=\"{nonce}\">")));
        }
    }
}
