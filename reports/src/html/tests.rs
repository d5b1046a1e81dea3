//! The page's tests: each part of a report, as the page shows it.

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
        raw: Vec::new(),
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
        raw: Vec::new(),
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
    // As many as the examples shown: none left to count.
    let page = render(&many_of_one_kind(3));
    assert!(page.contains("<summary>the 3 largest of them</summary>"));
    assert!(!page.contains("more with this signature"), "{page}");
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
    assert!(page.contains("<li class=\"lib\"><code>store::IMAPITable_Vtbl::new::AddRef</code>"));
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
    assert!(page.contains("<h2 id=\"r1\">b.json: address_book &quot;GAL&quot; at shutdown</h2>"));
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

/// A finding repeated at its call says how often; one that came once does
/// not. Its other call is named for what it is.
#[test]
fn repeats_and_the_other_call_are_labelled() {
    let mut r = with_a_finding();
    let mut once = r.findings[0].clone();
    once.repeated = 0;
    once.also = Some(1);
    r.findings.push(once);
    let mut freed = r.findings[0].clone();
    freed.rule = "buffer-double-free".into();
    freed.repeated = 0;
    freed.also = Some(1);
    r.findings.push(freed);
    let page = render(&r);
    assert_eq!(page.matches("more times at this call").count(), 1, "{page}");
    assert!(page.contains("and 41 more times at this call"));
    assert_eq!(page.matches("and the later call:").count(), 1, "{page}");
    assert_eq!(
        page.matches("the buffer was allocated at:").count(),
        1,
        "{page}"
    );
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

/// A series of `n` snapshots of one process where `<Cache>::sync` gains
/// two tables per snapshot and `store::steady` keeps one.
fn growing_series(n: u64) -> Vec<crate::growth::Series> {
    let reports: Vec<Report> = (1..=n)
        .map(|seq| {
            let mut r = Report::new(crate::SessionInfo::new(
                1,
                crate::ProviderKind::MessageStore,
                "store",
                crate::Event::Snapshot,
            ));
            r.snapshot = Some(crate::SnapshotInfo::new(seq, "<periodic>", seq * 1000));
            r.stacks = vec![
                Stack::new(1, vec![frame("store::<Cache>::sync")]),
                Stack::new(2, vec![frame("store::steady")]),
            ];
            for i in 0..2 * seq {
                let mut o = LeakedObject::new(i + 10, "IMAPITable", "cached", 1);
                o.signature = "aaaa".into();
                r.objects.push(o);
            }
            let mut o = LeakedObject::new(1, "IMessage", "kept", 2);
            o.signature = "bbbb".into();
            r.objects.push(o);
            r.recount();
            r
        })
        .collect();
    let refs: Vec<&Report> = reports.iter().collect();
    crate::growth::series(&refs, |i| i.to_string()).unwrap()
}

#[test]
fn the_growth_page_draws_each_growing_site_with_its_numbers() {
    let page = render_growth(&growing_series(4), crate::growth::Limits::default());
    assert!(page.starts_with(MARKER));
    assert!(page.contains("1 growing site(s)"), "{page}");
    // The chart: four points, inline.
    let chart = page.split("<polyline").nth(1).expect("a chart");
    let points = chart
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(points.split(' ').count(), 4, "{points}");
    assert!(page.contains("count: 2 → 4 → 6 → 8"), "{page}");
    assert!(page.contains("+2.0 per snapshot"));
    // Provider text is escaped; the steady site is listed apart.
    assert!(page.contains("store::&lt;Cache&gt;::sync") && !page.contains("<Cache>"));
    assert!(page.contains("&lt;periodic&gt;"));
    let (growing, steady) = page.split_once("Did not grow steadily: 1 site(s)").unwrap();
    assert!(growing.contains("IMAPITable") && !growing.contains("store::steady"));
    assert!(steady.contains("IMessage") && steady.contains("1 → 1 → 1 → 1"));
    // Nothing loaded from elsewhere.
    assert!(!page.contains("src=") && !page.contains("href=\"http"));
}

#[test]
fn a_steady_series_has_no_growing_site() {
    let series = growing_series(2);
    let page = render_growth(&series, crate::growth::Limits::default());
    assert!(page.contains("0 growing site(s)") && page.contains("No site grew at every step."));
}
