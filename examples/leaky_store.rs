//! The quick-start demo: a message store provider with three bugs, run
//! through one MAPI session by the sample host.
//!
//! ```text
//! cargo run --example leaky_store
//! ```
//!
//! mapileak reports at `IMSLogon::Logoff`: its trace goes to stderr (no
//! `tracing` subscriber is installed here, as in a provider DLL inside
//! Outlook), its JSON report and HTML page to `MAPILEAK_DIR` (default:
//! `mapileak` in the system's temporary directory). This program then prints the report's
//! leak tree, the way a provider's own test would read it.

use mapileak::reports::{Report, Stack};
use mapileak_samples::Bug;
use mapileak_samples::host::{self, Provider};

fn main() {
    // Write the HTML page next to the JSON report (as MAPILEAK_HTML=1 does).
    mapileak::set_html(true);
    let outcome = host::run(Provider::MessageStore, "Personal Folders (demo)", Bug::All);
    let logoff = &outcome.logoffs[0];
    let report = &logoff.report;

    println!();
    println!(
        "{} \"{}\": {} leaked objects, {} of them roots; {} finding(s)",
        report.session.provider.logoff_method(),
        report.session.label,
        report.summary.leaked_objects,
        report.summary.leak_roots,
        report.summary.findings
    );
    for root in report.roots() {
        print_object(report, root, 1);
    }
    for f in &report.findings {
        println!("  finding {}: {}", f.rule, f.message);
        if let Some(stack) = f.stack.and_then(|s| report.stack(s)) {
            print_frames(stack, 4);
        }
    }
    println!();
    if logoff.files.is_empty() {
        println!("no report written (see the error above)");
    }
    for file in &logoff.files {
        println!("report written: {}", file.display());
    }
}

fn print_object(report: &Report, o: &mapileak::reports::LeakedObject, depth: usize) {
    let pad = "  ".repeat(depth);
    let refcount = o
        .refcount
        .map(|n| format!(", refcount {n}"))
        .unwrap_or_default();
    let how = if o.root {
        "leak root"
    } else {
        "held by the object above"
    };
    println!("{pad}{} \"{}\" ({how}{refcount})", o.kind, o.label);
    if let Some(stack) = report.stack(o.created) {
        print_frames(stack, depth + 2);
    }
    for child in report.children_of(o.id) {
        print_object(report, child, depth + 1);
    }
}

/// The provider's own frames of a stack: where to look.
fn print_frames(stack: &Stack, depth: usize) {
    let pad = "  ".repeat(depth);
    for f in stack.provider_frames().take(5) {
        println!("{pad}{f}");
    }
}
