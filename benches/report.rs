//! A report of 100,000 leaked objects: Logoff's whole cost (analysis,
//! symbolizing each unique stack once, JSON and HTML written) as a ratio to
//! serializing the finished report with serde_json alone, measured in the
//! same run. Target (DESIGN.md): JSON + HTML in under a second.
//!
//! `cargo bench --bench report`. The last line is
//! `mapileak-bench report_100k ns_per_object=<float> vs_json_only=<float> html_bytes=<int>`.

use std::hint::black_box;
use std::time::Instant;

use mapileak::{ProviderKind, Session, Tracked, kinds};

const OBJECTS: usize = 100_000;

#[inline(never)]
fn open_table(i: usize) -> Tracked {
    Tracked::new(&kinds::IMAPI_TABLE, format!("table {i}"))
}

#[inline(never)]
fn open_message(i: usize) -> Tracked {
    Tracked::new(&kinds::IMESSAGE, format!("message {i}"))
}

#[inline(never)]
fn open_attachment(i: usize, message: &Tracked) -> Tracked {
    Tracked::new(&kinds::IATTACH, format!("attachment {i}")).opened_from(message.id())
}

fn main() {
    let dir = std::env::temp_dir().join(format!("mapileak-bench-{}", std::process::id()));
    mapileak::set_output_dir(&dir);
    mapileak::set_html(true);
    mapileak::set_mode(mapileak::Mode::Summary);
    let session = Session::logon(ProviderKind::MessageStore, "bench");
    {
        let _scope = session.enter();
        let mut i = 0;
        while i < OBJECTS {
            let t = open_table(i);
            let m = open_message(i + 1);
            let a = open_attachment(i + 2, &m);
            m.hold(a.id());
            std::mem::forget((t, m, a));
            i += 3;
        }
    }
    let t = Instant::now();
    let logoff = session.ms_logoff();
    let total = t.elapsed().as_secs_f64();
    let n = logoff.report.objects.len();
    assert!(n >= OBJECTS, "{n} objects");
    assert_eq!(logoff.files.len(), 2, "JSON and HTML written");
    let html_bytes = std::fs::metadata(&logoff.files[1]).map_or(0, |m| m.len());

    let t = Instant::now();
    black_box(serde_json::to_vec_pretty(&logoff.report).unwrap());
    let json_only = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "mapileak-bench report_100k ns_per_object={:.1} vs_json_only={:.2} html_bytes={html_bytes}",
        total * 1e9 / n as f64,
        total / json_only
    );
}
