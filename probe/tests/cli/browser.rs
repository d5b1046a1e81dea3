//! The HTML report in a real browser: Debian's Chromium, headless, driven
//! through the DevTools protocol. Screenshots land in
//! `target/tmp/browser/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mapileak::reports::{
    Event, Finding, Frame, LeakedObject, ProviderKind, Report, SessionInfo, Severity, Stack,
};
use mapileak_samples::Bug;
use mapileak_samples::host::{self, Provider};
use serde_json::Value;

use super::cdp::Browser;
use super::{DIR, code, mapileak, stderr, tmp};

fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn browser(name: &str) -> Browser {
    Browser::launch(
        &tmp(&format!("chromium-profile-{name}")),
        Duration::from_secs(120),
    )
}

fn url(path: &Path) -> String {
    format!("file://{}", path.canonicalize().unwrap().display())
}

/// Loads a page and checks what every page must: no errors, no requests.
fn load(b: &mut Browser, page: &Path) {
    let u = url(page);
    b.open(&u);
    assert_eq!(b.errors(), Vec::<String>::new(), "console errors in {u}");
    assert_eq!(
        b.requests_besides(&u),
        Vec::<String>::new(),
        "network requests from {u}"
    );
}

fn strings(v: Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The demo's HTML (the sample store with its bugs, written by the library
/// at Logoff) shows the table, the message chain and their stacks, and the
/// filter box filters.
#[test]
fn the_demo_page_shows_the_leaks_and_filters() {
    let dir = tmp("browser-demo");
    let logoff = {
        let _one = DIR.lock().unwrap_or_else(|e| e.into_inner());
        mapileak::set_output_dir(&dir);
        mapileak::set_html(true);
        let mut o = host::run(Provider::MessageStore, "Personal Folders (demo)", Bug::All);
        mapileak::set_html(false);
        o.logoffs.remove(0)
    };
    let html = logoff
        .files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "html"))
        .expect("an HTML page beside the JSON");
    let mut b = browser("demo");
    load(&mut b, html);

    // Roots first, largest first: the message (holding two), then the table.
    let roots = strings(b.eval("[...document.querySelectorAll('ul.tree > li.obj')].map(li => li.querySelector('.kind').textContent + ' ' + li.querySelector('.label').textContent)"));
    assert_eq!(
        roots,
        [
            "IMessage \"incoming message\"",
            "IMAPITable \"contents of Inbox\""
        ]
    );
    let under_message = strings(b.eval("[...document.querySelectorAll('ul.tree > li.obj:first-child > ul > li.obj > .kind')].map(e => e.textContent).sort()"));
    assert_eq!(under_message, ["IAttach", "IMAPIFolder"]);
    // Stacks are collapsed, and hold the creating functions with file:line.
    assert_eq!(
        b.eval("[...document.querySelectorAll('details')].filter(d => d.open).length"),
        0
    );
    let table_stack = b.eval(
        "document.querySelector('ul.tree > li.obj:nth-child(2) details ol.stack').textContent",
    );
    let table_stack = table_stack.as_str().unwrap();
    assert!(
        table_stack.contains("refresh_unread_count") && table_stack.contains("store.rs:"),
        "{table_stack}"
    );
    assert!(
        b.eval("document.querySelectorAll('ol.stack li.own').length")
            .as_u64()
            .unwrap()
            > 0,
        "provider frames set apart"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('td.rule').length"),
        4,
        "over-release, support-not-released, and the MAPIUIDs and status row it keeps"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('svg rect').length"),
        4,
        "one bar per leaked kind"
    );
    b.eval("document.querySelector('ul.tree > li.obj details').open = true");
    b.screenshot(&out_dir().join("demo.png"));

    // Typing in the filter box narrows the rows.
    b.eval("document.getElementById('filter').focus()");
    b.type_text("IMAPITable");
    let visible = strings(b.eval("[...document.querySelectorAll('[data-filter]')].filter(r => !r.hidden && r.offsetParent !== null).map(r => r.querySelector('.kind, .rule') ? r.querySelector('.kind, .rule').textContent : r.tagName)"));
    assert_eq!(visible, ["IMAPITable"], "only the table row is left");
    b.eval("const f = document.getElementById('filter'); f.value = ''; f.focus()");
    b.type_text("over-release");
    let visible = strings(b.eval("[...document.querySelectorAll('[data-filter]')].filter(r => !r.hidden).map(r => (r.querySelector('.kind, .rule') || r).textContent)"));
    assert_eq!(visible, ["over-release"]);
    b.screenshot(&out_dir().join("demo-filtered.png"));
}

fn hostile() -> Report {
    let evil = [
        "<script>window.__pwned = 1</script>",
        "\"><img src=x onerror=\"window.__pwned = 2\">",
        "</style><style>body{display:none}</style>",
        "</script><script>window.__pwned = 3</script>",
        "' onmouseover='window.__pwned = 4",
        "<svg onload=\"window.__pwned = 5\">",
        "javascript:window.__pwned = 6",
    ];
    let mut r = Report::new(SessionInfo::new(
        1,
        ProviderKind::MessageStore,
        evil[0].to_owned(),
        Event::Logoff,
    ));
    r.stacks.push(Stack::new(
        1,
        evil.iter()
            .enumerate()
            .map(|(i, e)| {
                Frame::new(
                    format!("provider::{e}"),
                    Some(format!("C:\\src\\{e}.rs")),
                    Some(i as u32),
                )
            })
            .collect(),
    ));
    for (i, e) in evil.iter().enumerate() {
        let mut object = LeakedObject::new(i as u64 + 1, format!("I{e}"), *e, 1);
        object.refcount = Some(1);
        object.signature = e.to_string();
        r.objects.push(object);
        let mut finding = Finding::new(*e, Severity::Error, *e, Some(1));
        finding.signature = e.to_string();
        r.findings.push(finding);
    }
    r.recount();
    r
}

#[test]
fn provider_strings_are_escaped_and_never_run() {
    let dir = tmp("browser-hostile");
    let json = dir.join("hostile.json");
    std::fs::write(&json, serde_json::to_vec(&hostile()).unwrap()).unwrap();
    let page = dir.join("hostile.html");
    let o = mapileak(&[&"render", &json, &"-o", &page]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(
        !html.contains("<img") && !html.contains("<svg onload"),
        "no markup from the data"
    );

    let mut b = browser("hostile");
    load(&mut b, &page);
    assert_eq!(
        b.eval("typeof window.__pwned"),
        "undefined",
        "nothing from the report ran"
    );
    assert_eq!(
        b.eval("getComputedStyle(document.body).display"),
        "block",
        "the page's style survived"
    );
    let text = b
        .eval("document.body.textContent")
        .as_str()
        .unwrap()
        .to_owned();
    for needle in [
        "<script>window.__pwned = 1</script>",
        "\"><img src=x onerror=",
        "</style><style>body{display:none}</style>",
    ] {
        assert!(text.contains(needle), "{needle:?} is shown as text");
    }
    assert_eq!(
        b.eval("document.querySelectorAll('ul.tree > li.obj').length"),
        7
    );
    b.eval("document.querySelectorAll('details').forEach(d => d.open = true)");
    b.screenshot(&out_dir().join("hostile.png"));
}

#[test]
fn several_reports_render_as_one_page_with_an_index() {
    let runs = tmp("browser-index-runs");
    {
        let _one = DIR.lock().unwrap_or_else(|e| e.into_inner());
        mapileak::set_output_dir(&runs);
        host::run(Provider::Transport, "Transport", Bug::Chain);
        host::run(Provider::AddressBook, "AddressBook", Bug::None);
    }
    let reports = std::fs::read_dir(&runs).unwrap().count();
    let page = tmp("browser-index").join("index.html");
    let o = mapileak(&[&"render", &runs, &"-o", &page]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut b = browser("index");
    load(&mut b, &page);
    assert_eq!(
        b.eval("document.querySelectorAll('#index tr[data-filter]').length"),
        reports as u64
    );
    let first = b.eval("document.querySelector('#index a').getAttribute('href')");
    assert!(
        b.eval(&format!(
            "!!document.getElementById({:?})",
            &first.as_str().unwrap()[1..]
        ))
        .as_bool()
        .unwrap()
    );
    assert!(
        b.eval("document.body.textContent.includes('inbound message')")
            .as_bool()
            .unwrap()
    );
    b.screenshot(&out_dir().join("index.png"));

    // Rendering again over our own page is fine; over someone else's file, not.
    assert_eq!(code(&mapileak(&[&"render", &runs, &"-o", &page])), 0);
    let theirs = tmp("browser-index").join("notes.html");
    std::fs::write(&theirs, "my notes").unwrap();
    let o = mapileak(&[&"render", &runs, &"-o", &theirs]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("not written by mapileak"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "my notes");
}

/// A Logoff's worth at scale: 100,002 leaked objects, two thirds of them
/// roots, from 640 creation paths. The page groups the roots by signature
/// (640 entries, a few examples each, the rest counted): it stays small
/// and a browser opens it, filter and all. (Its load time is the report
/// benchmark's business, not a test's.)
#[test]
fn a_hundred_thousand_leaks_make_a_page_a_browser_opens() {
    const STACKS: u32 = 640;
    let mut r = Report::new(SessionInfo::new(
        1,
        ProviderKind::MessageStore,
        "at scale",
        Event::Logoff,
    ));
    for s in 1..=STACKS {
        r.stacks.push(Stack::new(
            s,
            (0..8)
                .map(|d| {
                    Frame::new(
                        format!("store::path{s}::call_{d}"),
                        Some(format!("src/path{s}.rs")),
                        Some(d),
                    )
                })
                .collect(),
        ));
    }
    for i in 0..100_002u64 {
        let held = i % 3 == 2;
        let stack = (i % u64::from(STACKS)) as u32 + 1;
        let kind = if held { "IMessage" } else { "IMAPITable" };
        let mut object = LeakedObject::new(i + 1, kind, format!("object {i}"), stack);
        object.refcount = Some(1);
        object.root = !held;
        object.parent = held.then_some(i);
        object.signature = format!("{:016x}", u64::from(stack) * 2 + u64::from(held));
        r.objects.push(object);
    }
    r.recount();
    let dir = tmp("browser-scale");
    let json = dir.join("scale.json");
    std::fs::write(&json, serde_json::to_vec(&r).unwrap()).unwrap();
    let page = dir.join("scale.html");
    let o = mapileak(&[&"render", &json, &"-o", &page]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let bytes = std::fs::metadata(&page).unwrap().len();
    assert!(bytes < 5 << 20, "{bytes} bytes");

    let mut b = browser("scale");
    load(&mut b, &page);
    let groups = b.eval("document.querySelectorAll('ul.tree > li.group').length");
    // Every creation path's roots are one entry.
    assert_eq!(groups, u64::from(STACKS));
    assert!(
        b.eval("document.body.textContent.includes('more with this signature')")
            .as_bool()
            .unwrap()
    );
    b.eval("var f=document.getElementById('filter'); f.value='path7::'; f.dispatchEvent(new Event('input'))");
    let shown = b.eval("document.querySelectorAll('ul.tree > li.group:not([hidden])').length");
    assert!(shown.as_u64().unwrap() >= 1, "{shown}");
    b.screenshot(&out_dir().join("scale.png"));
}

/// The page of a series of snapshots (`mapileak growth -o`), from the soak
/// example's store with its growing cache: a chart per growing site,
/// largest growth first, numbers beside it, and the filter box.
#[test]
fn the_growth_page_charts_each_growing_site() {
    let d = tmp("browser-growth");
    super::growth::soak(&d, "cache", 4);
    let page = tmp("browser-growth-page").join("growth.html");
    let o = mapileak(&[&"growth", &d, &"-o", &page]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let mut b = browser("growth");
    load(&mut b, &page);
    let sites = strings(b.eval(
        "[...document.querySelectorAll('.growing .site')].map(s => s.querySelector('.kind').textContent)",
    ));
    // The rows gain 3 blocks per round, the tables 2: rows first.
    assert_eq!(sites, ["heap", "IMAPITable"]);
    // Each chart is drawn and rises: 4 points, y falling (SVG's y grows down).
    let ys = b.eval(
        "[...document.querySelectorAll('.growing .site polyline')].map(p => [...p.points].map(q => q.y))",
    );
    for line in ys.as_array().unwrap() {
        let y: Vec<f64> = line
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(y.len(), 4, "{y:?}");
        assert!(y.windows(2).all(|w| w[1] < w[0]), "rising: {y:?}");
    }
    let numbers = b.eval("document.querySelector('.growing .site').textContent");
    assert!(
        numbers.as_str().unwrap().contains("3 → 6 → 9 → 12"),
        "{numbers}"
    );
    b.screenshot(&out_dir().join("growth.png"));
    b.eval("document.getElementById('filter').focus()");
    b.type_text("IMAPITable");
    let visible =
        b.eval("[...document.querySelectorAll('.growing .site')].filter(s => !s.hidden).length");
    assert_eq!(visible, 1);
}
