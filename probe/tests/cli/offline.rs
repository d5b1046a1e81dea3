//! Offline symbols end to end: the quick-start demo (`leaky_store`) run
//! twice, once naming its frames at Logoff and once writing raw addresses
//! (`MAPILEAK_SYMBOLS=offline`); `mapileak symbolize` then names the raw
//! reports, and they must say what the process said.

use std::path::{Path, PathBuf};
use std::process::Command;

use mapileak::reports::{Report, StackId, read_file};

use super::{code, mapileak, stderr, stdout, tmp};
use crate::start::Start as _;

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
    let out = cmd.retried(Command::output).expect("run the demo");
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
        // No signatures before names: one of no names would be the same for
        // every stack of a kind (every heap site one signature).
        let signatures: Vec<&str> = (r.objects.iter().map(|o| o.signature.as_str()))
            .chain(r.heap.iter().map(|h| h.signature.as_str()))
            .chain(r.buffers.iter().map(|b| b.signature.as_str()))
            .chain(r.findings.iter().map(|f| f.signature.as_str()))
            .collect();
        assert!(!signatures.is_empty(), "{event}");
        assert!(
            signatures.iter().all(|s| s.is_empty()),
            "{event}: {signatures:?}"
        );
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

/// A provider DLL and its PDB as Microsoft's linker makes them, in `dir`:
/// `provider.rs` (no standard library, so nothing to link but its own
/// code; `rows` is what `load_rows` returns) compiled by rustc for
/// `target` with CodeView debug info, and `legacy.rs` without any (its one
/// function, exported under MSVC's C++ name [`legacy_name`], is only a
/// public symbol in the PDB, as a library built without `/Zi` gives),
/// linked by rust-lld as `lld-link /DEBUG`. Returns the DLL's path.
#[cfg(not(windows))]
fn msvc_module(dir: &Path, target: &str, machine: &str, rows: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    // A crate with no standard library (nothing to link but its own code).
    const NO_CORE: &str = r#"#![feature(no_core, lang_items)]
#![no_core]
#![crate_type = "cdylib"]
#![allow(internal_features)]

#[lang = "pointee_sized"]
pub trait PointeeSized {}
#[lang = "meta_sized"]
pub trait MetaSized: PointeeSized {}
#[lang = "sized"]
pub trait Sized: MetaSized {}
"#;
    let source = dir.join("provider.rs");
    let provider = format!(
        r#"{NO_CORE}
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn open_store() -> i32 {{
    load_rows()
}}

#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn load_rows() -> i32 {{
    {rows}
}}
"#
    );
    std::fs::write(&source, provider).unwrap();
    let legacy = dir.join("legacy.rs");
    let legacy_source = format!(
        r#"{NO_CORE}
#[inline(never)]
#[unsafe(export_name = "{name}")]
pub extern "C" fn open() -> i32 {{
    {rows}
}}
"#,
        name = legacy_name(machine)
    );
    std::fs::write(&legacy, legacy_source).unwrap();
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let run = |cmd: &mut Command| {
        let out = cmd
            .retried(Command::output)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(out.status.success(), "{cmd:?}: {out:?}");
        out
    };
    let object = dir.join("provider.o");
    run(Command::new(&rustc)
        .env("RUSTC_BOOTSTRAP", "1")
        .args([
            "--target",
            target,
            "-g",
            "-C",
            "opt-level=0",
            "--emit",
            "obj",
            "-o",
        ])
        .arg(&object)
        .arg(&source));
    let legacy_object = dir.join("legacy.o");
    run(Command::new(&rustc)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["--target", target, "--emit", "obj", "-o"])
        .arg(&legacy_object)
        .arg(&legacy));
    // rust-lld ships beside rustc's own libraries.
    let libdir = run(Command::new(&rustc).args(["--print", "target-libdir"])).stdout;
    let libdir = PathBuf::from(String::from_utf8(libdir).unwrap().trim());
    let lld = libdir.parent().unwrap().join("bin").join("rust-lld");
    assert!(lld.is_file(), "rust-lld is not at {}", lld.display());
    let dll = dir.join("provider.dll");
    let mut link = Command::new(&lld);
    link.args([
        "-flavor",
        "link",
        "/dll",
        "/noentry",
        "/nodefaultlib",
        "/debug",
    ])
    .arg(format!("/machine:{machine}"))
    .arg(format!("/pdb:{}", dir.join("provider.pdb").display()))
    .arg(format!("/out:{}", dll.display()))
    .args(["/export:open_store", "/export:load_rows"])
    .arg(format!("/export:{}", legacy_name(machine)))
    .arg(&object)
    .arg(&legacy_object);
    run(&mut link);
    dll
}

/// `CStore::Open`, a method returning an `HRESULT` (`long`), as MSVC
/// decorates it for `machine`.
#[cfg(not(windows))]
fn legacy_name(machine: &str) -> &'static str {
    if machine == "x86" {
        "?Open@CStore@@QAEJXZ"
    } else {
        "?Open@CStore@@QEAAJXZ"
    }
}

/// The module's own address of exported function `name`, a few bytes in
/// (as a return address inside it would be).
#[cfg(not(windows))]
fn inside(dll: &Path, name: &str) -> u64 {
    use object::Object as _;
    let data = std::fs::read(dll).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let base = file.relative_address_base();
    let export = file
        .exports()
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.name() == object::NameOrOrdinal::Name(name.as_bytes()))
        .unwrap_or_else(|| panic!("{name} not exported by {}", dll.display()));
    let object::ExportTarget::Address { address } = export.target() else {
        panic!("{name}: {export:?}");
    };
    // (The image's base plus the function's offset.)
    assert!(address > base, "{address:#x}");
    address + 2
}

/// A report written in a 32-bit or 64-bit host with `MAPILEAK_SYMBOLS=offline`
/// whose stack is in a DLL Microsoft's linker made (no DWARF: a PDB): the
/// CLI names it from the PDB, found by `--modules`, and refuses another
/// build's PDB in one line.
#[cfg(not(windows))]
#[test]
fn a_dll_built_by_microsofts_linker_is_named_from_its_pdb() {
    use mapileak::reports::{Event, ProviderKind, RawFrame, SessionInfo, Stack};
    for (target, machine) in [
        ("x86_64-pc-windows-msvc", "x64"),
        ("i686-pc-windows-msvc", "x86"),
    ] {
        let dir = tmp(&format!("offline-pdb-{machine}"));
        let built = msvc_module(&dir.join("build"), target, machine, 7);
        let module = mapileak_reports::symbols::ModuleFile::open(&built).unwrap();
        // As the process records it (the PDB's path is the one the linker
        // wrote into the DLL), from a host where the DLL was elsewhere.
        let recorded = module
            .read()
            .unwrap()
            .identity(r"C:\Program Files\Store\provider.dll", module.len());
        let pdb = recorded.pdb.clone().expect("a PDB record");
        assert!(pdb.path.ends_with("provider.pdb"), "{pdb:?}");
        // The build output, moved: the PDB is not at its recorded path.
        let moved = dir.join("moved");
        std::fs::rename(dir.join("build"), &moved).unwrap();
        let dll = moved.join("provider.dll");

        let mut r = Report::new(SessionInfo::new(
            1,
            ProviderKind::MessageStore,
            "32-bit Outlook".to_owned(),
            Event::Logoff,
        ));
        r.modules.push(recorded.clone());
        r.stacks.push(Stack::unnamed(
            1,
            vec![
                RawFrame::new(Some(0), inside(&dll, "load_rows")),
                RawFrame::new(Some(0), inside(&dll, "open_store")),
                RawFrame::new(Some(0), inside(&dll, legacy_name(machine))),
            ],
        ));
        let raw = dir.join("raw.json");
        std::fs::write(&raw, serde_json::to_vec(&r).unwrap()).unwrap();

        // Found by --modules: the DLL and its PDB.
        let out = dir.join("named.json");
        let symbolize = || mapileak(&[&"symbolize", &raw, &"-o", &out, &"--modules", &moved]);
        // What the CLI said besides where it wrote.
        let problems = |o: &std::process::Output| -> Vec<String> {
            assert_eq!(code(o), 0, "{}", stderr(o));
            stderr(o)
                .lines()
                .filter(|l| !l.contains(" wrote "))
                .map(str::to_owned)
                .collect()
        };
        let o = symbolize();
        assert_eq!(problems(&o), Vec::<String>::new(), "{machine}");
        let named = read_file(&out).unwrap();
        let frames = &named.stack(1).unwrap().frames;
        let names: Vec<&str> = frames.iter().map(|f| f.function.as_str()).collect();
        // The last from its public symbol, undecorated as dbghelp does.
        assert_eq!(
            names,
            [
                "provider::load_rows",
                "provider::open_store",
                "CStore::Open"
            ],
            "{machine}"
        );
        assert_eq!(frames[2].file, None, "{machine}: no line record");
        for f in &frames[..2] {
            assert!(
                f.file
                    .as_deref()
                    .is_some_and(|p| p.ends_with("provider.rs"))
                    && f.line.is_some(),
                "{machine}: {f:?}"
            );
        }

        // A damaged PDB: a line saying so at worst, never a panic.
        let good = std::fs::read(moved.join("provider.pdb")).unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..6 {
            let mut bytes = good.clone();
            for _ in 0..50 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Past the header, so the reading goes deep.
                let at = 4096 + (seed as usize % (bytes.len() - 4096));
                bytes[at] = (seed >> 40) as u8;
            }
            std::fs::write(moved.join("provider.pdb"), &bytes).unwrap();
            let said = problems(&symbolize());
            assert!(said.len() <= 1, "{said:?}");
        }

        // The PDB of another build of the same source beside the DLL: not
        // used, said in one line, the frames not named from it.
        msvc_module(&dir.join("other"), target, machine, 8);
        std::fs::copy(dir.join("other/provider.pdb"), moved.join("provider.pdb")).unwrap();
        let said = problems(&symbolize());
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("another build's PDB"), "{said:?}");
        let unnamed = read_file(&out).unwrap();
        assert!(
            !unnamed.stack(1).unwrap().mentions("provider::load_rows"),
            "{machine}: {:?}",
            unnamed.stacks
        );

        // No PDB at all: said in one line.
        std::fs::remove_file(moved.join("provider.pdb")).unwrap();
        let said = problems(&symbolize());
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].contains("its PDB provider.pdb is not found"),
            "{said:?}"
        );
    }
}
