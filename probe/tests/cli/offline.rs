//! Offline symbols end to end: the quick-start demo (`leaky_store`) run
//! twice, once naming its frames at Logoff and once writing raw addresses
//! (`MAPILEAK_SYMBOLS=offline`); `mapileak symbolize` then names the raw
//! reports, and they must say what the process said.

use std::path::{Path, PathBuf};
use std::process::Command;

use mapileak::reports::{Report, StackId, read_file};

use super::{code, mapileak, stderr, stdout, tmp};

/// The demo's reports in `dir`, frames named there or (`offline`) not.
fn demo(dir: &Path, offline: bool) {
    let mut cmd = Command::new(super::examples::example("leaky_store"));
    cmd.env("MAPILEAK_DIR", dir)
        .env_remove("MAPILEAK")
        .env_remove("MAPILEAK_SYMBOLS")
        .env_remove("MAPILEAK_HISTORY");
    if offline {
        cmd.env("MAPILEAK_SYMBOLS", "offline");
    }
    let out = cmd.output().expect("run the demo");
    assert!(out.status.success(), "{out:?}");
}

/// The report of event `event` (`logoff`, `shutdown`, `exit`) in `dir`.
fn report_file(dir: &Path, event: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&format!("-{event}.json")))
        })
        .unwrap_or_else(|| panic!("no {event} report in {}", dir.display()))
}

/// What a report says, stack ids replaced by their frames: the same for
/// two runs of one program.
fn said(r: &Report) -> Vec<String> {
    let frames = |id: StackId| {
        r.stack(id).map_or_else(
            || "no stack".to_owned(),
            |s| {
                s.frames
                    .iter()
                    .map(|f| format!("{f}"))
                    .collect::<Vec<_>>()
                    .join(" < ")
            },
        )
    };
    let mut out = Vec::new();
    for o in &r.objects {
        out.push(format!(
            "object {} {:?} root={} refs={:?} sig={} at {}",
            o.kind,
            o.label,
            o.root,
            o.refcount,
            o.signature,
            frames(o.created)
        ));
    }
    for h in &r.heap {
        out.push(format!(
            "heap {}x{} sig={} at {}",
            h.blocks,
            h.bytes,
            h.signature,
            frames(h.stack)
        ));
    }
    for b in &r.buffers {
        out.push(format!(
            "buffer {} sig={} at {}",
            b.bytes,
            b.signature,
            frames(b.stack)
        ));
    }
    for f in &r.findings {
        out.push(format!(
            "finding {} sig={} at {}",
            f.rule,
            f.signature,
            f.stack.map_or_else(String::new, frames)
        ));
    }
    out.sort();
    out
}

/// The gate's text with report paths left out (they differ by run).
fn verdicts(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| match l.find(", report ") {
            Some(i) => l[..i].to_owned(),
            None => l.to_owned(),
        })
        .collect()
}

#[test]
fn a_report_written_raw_is_named_by_the_cli_as_the_process_names_it() {
    let named = tmp("offline-named");
    let raw = tmp("offline-raw");
    demo(&named, false);
    demo(&raw, true);

    for event in ["logoff", "shutdown", "exit"] {
        let raw_file = report_file(&raw, event);
        let r = read_file(&raw_file).unwrap();
        // Raw: no names at all, the addresses and the modules they are in.
        assert!(!r.stacks.is_empty(), "{event}");
        for s in &r.stacks {
            assert!(s.frames.is_empty() && !s.raw.is_empty(), "{event}: {s:?}");
        }
        let demo_module = r
            .modules
            .iter()
            .find(|m| m.path.contains("leaky_store"))
            .unwrap_or_else(|| panic!("{event}: {:?}", r.modules));
        assert!(demo_module.size > 0);
        if cfg!(target_os = "linux") {
            assert!(demo_module.build_id.is_some(), "{demo_module:?}");
        }
        // No page for a report without names.
        assert!(!raw_file.with_extension("html").exists());

        let out = raw.join(format!("{event}-named.json"));
        let o = mapileak(&[&"symbolize", &raw_file, &"-o", &out]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(stderr(&o).contains("stack(s) named"), "{}", stderr(&o));
        let from_cli = read_file(&out).unwrap();
        assert!(from_cli.modules.is_empty());
        assert!(from_cli.stacks.iter().all(|s| s.raw.is_empty()));
        let in_process = read_file(&report_file(&named, event)).unwrap();
        assert_eq!(said(&from_cli), said(&in_process), "{event}");
        std::fs::remove_file(&out).unwrap();
    }
    let logoff = read_file(&report_file(&named, "logoff")).unwrap();
    let said_logoff = said(&logoff).join("\n");
    assert!(
        said_logoff.contains("object IMAPITable \"contents of Inbox\" root=true")
            && said_logoff.contains("mapileak_samples::objects::Table::open"),
        "{said_logoff}"
    );

    // The gate names a raw report itself: the same verdicts.
    let g_named = mapileak(&[&"gate", &named]);
    let g_raw = mapileak(&[&"gate", &raw]);
    assert_eq!(code(&g_named), 1);
    assert_eq!(code(&g_raw), 1, "{}", stderr(&g_raw));
    assert_eq!(verdicts(&stdout(&g_raw)), verdicts(&stdout(&g_named)));
}

#[test]
fn modules_are_found_by_name_and_another_build_is_refused() {
    let raw = tmp("offline-moved");
    demo(&raw, true);
    let file = report_file(&raw, "logoff");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let modules = json["modules"].as_array_mut().unwrap();
    let demo_module = modules
        .iter_mut()
        .find(|m| m["path"].as_str().unwrap().contains("leaky_store"))
        .unwrap();
    let real = PathBuf::from(demo_module["path"].as_str().unwrap());
    let name = real.file_name().unwrap().to_owned();
    // The report came from another machine: the module is not where it says.
    demo_module["path"] = format!("/nowhere/built/{}", name.to_string_lossy()).into();
    let moved = raw.join("moved.json");
    std::fs::write(&moved, serde_json::to_vec(&json).unwrap()).unwrap();

    let out = raw.join("moved-named.json");
    let o = mapileak(&[&"symbolize", &moved, &"-o", &out]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    let unnamed = read_file(&out).unwrap();
    let text = format!("{:?}", unnamed.stacks);
    assert!(
        text.contains(&format!("?? ({}+0x", name.to_string_lossy())),
        "{text}"
    );

    // `--modules DIR`: the build output on the developer's machine.
    let dir = real.parent().unwrap();
    let o = mapileak(&[&"symbolize", &moved, &"-o", &out, &"--modules", &dir]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stderr(&o).contains("not found"), "{}", stderr(&o));
    let named = read_file(&out).unwrap();
    assert!(
        named
            .stacks
            .iter()
            .any(|s| s.mentions("mapileak_samples::objects::Table::open")),
        "{:?}",
        named.stacks
    );

    // A file of that name from another build is not used.
    let other = raw.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_mapileak"), other.join(&name)).unwrap();
    let o = mapileak(&[&"symbolize", &moved, &"-o", &out, &"--modules", &other]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("another build"), "{}", stderr(&o));
    assert!(
        !read_file(&out)
            .unwrap()
            .stacks
            .iter()
            .any(|s| s.mentions("Table::open"))
    );
}

#[test]
fn symbolize_refuses_what_it_should_not_touch() {
    let raw = tmp("offline-refusals");
    demo(&raw, true);
    let file = report_file(&raw, "logoff");
    // Output over a file that is not a report: refused, the file kept.
    let notes = raw.join("notes.txt");
    std::fs::write(&notes, "my notes").unwrap();
    let o = mapileak(&[&"symbolize", &file, &"-o", &notes]);
    assert_eq!(code(&o), 2);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not a mapileak report"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes");
    // In place: allowed (the input is a report); then it has names, and a
    // second run says so.
    let o = mapileak(&[&"symbolize", &file, &"-o", &file]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = mapileak(&[&"symbolize", &file, &"-o", &raw.join("again.json")]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("have names already"), "{}", stderr(&o));
    // A module path that is no regular file (a directory here; a FIFO is
    // refused the same way, never opened).
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_file(&tmp_raw(&raw), "logoff")).unwrap())
            .unwrap();
    for m in json["modules"].as_array_mut().unwrap() {
        m["path"] = raw.display().to_string().into();
    }
    let odd = raw.join("odd.json");
    std::fs::write(&odd, serde_json::to_vec(&json).unwrap()).unwrap();
    let o = mapileak(&[&"symbolize", &odd, &"-o", &raw.join("odd-named.json")]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
}

/// Another raw run of the demo, beside `dir`.
fn tmp_raw(dir: &Path) -> PathBuf {
    let d = dir.join("second");
    std::fs::create_dir_all(&d).unwrap();
    demo(&d, true);
    d
}
