//! The `mapileak` command on large reports, as CI runs it: the release
//! binary, a report of N leaked objects (a third of them held by another)
//! from 2,000 unique creation stacks. Each command's time is shown as a
//! ratio to reading the same report into memory (`read_file`) in this
//! process, measured in the same run, and in seconds (best of three).
//! Targets (DESIGN.md): gate, diff and render of 100,000 objects under a
//! second; 1,000,000 under ten.
//!
//! `gate_100_function_suppressions`: the same gate with 100 `function:`
//! suppressions (target: under a second at 100,000).
//!
//! `cargo bench -p mapileak-probe --bench cli` prints
//! `mapileak-bench <command>_<n> seconds=<float> vs_read=<float>` lines.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use mapileak_reports::{
    Event, Frame, LeakedObject, ProviderKind, Report, SessionInfo, Stack, read_file,
};

const STACKS: u32 = 2_000;

fn report(n: u64) -> Report {
    let mut r = Report::new(SessionInfo::new(
        1,
        ProviderKind::MessageStore,
        "bench",
        Event::Logoff,
    ));
    for s in 1..=STACKS {
        r.stacks.push(Stack::new(
            s,
            (0..12)
                .map(|d| {
                    Frame::new(
                        format!("store::folder{s}::open_{d}"),
                        Some(format!("src/folder{}.rs", s % 40)),
                        Some(10 + d),
                    )
                })
                .collect(),
        ));
    }
    for i in 0..n {
        let held = i % 3 == 2;
        let kind = ["IMAPITable", "IMessage", "IAttach"][(i % 3) as usize];
        let created = (i % u64::from(STACKS)) as u32 + 1;
        let mut object = LeakedObject::new(i + 1, kind, format!("object {i}"), created);
        object.refcount = Some(1);
        object.root = !held;
        object.parent = held.then_some(i);
        object.opened_from = held.then_some(i);
        object.signature = format!("{:016x}", i % 5_000);
        r.objects.push(object);
    }
    r.recount();
    r
}

fn best(mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let out = Command::new(env!("CARGO_BIN_EXE_mapileak"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("run mapileak");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("mapileak-bench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for n in [100_000u64, 1_000_000] {
        let path = dir.join(format!("r{n}.json"));
        std::fs::write(&path, serde_json::to_vec(&report(n)).unwrap()).unwrap();
        let read = best(|| {
            read_file(Path::new(&path)).unwrap();
        });
        let html = dir.join("out.html");
        let _ = std::fs::remove_file(&html);
        // 100 `function:` suppressions, as a provider with a vendor SDK's
        // known leaks keeps: 99 that match no frame, one that matches a
        // stack in 2,000.
        let sups = dir.join("suppressions.txt");
        let mut text: String = (0..99)
            .map(|k| format!("function:*vendor_sdk_{k}::* reason: known\n"))
            .collect();
        text.push_str("function:store::folder7::open_* reason: known\n");
        std::fs::write(&sups, text).unwrap();
        let lines = [
            ("gate", best(|| run(&[&"gate", &path]))),
            (
                "gate_100_function_suppressions",
                best(|| run(&[&"gate", &"--suppressions", &sups, &path])),
            ),
            (
                "gate_junit",
                best(|| run(&[&"gate", &"--format", &"junit", &path])),
            ),
            ("diff", best(|| run(&[&"diff", &path, &path]))),
            ("render", best(|| run(&[&"render", &path, &"-o", &html]))),
        ];
        for (name, s) in lines {
            println!(
                "mapileak-bench {name}_{n} seconds={s:.3} vs_read={:.2}",
                s / read
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
