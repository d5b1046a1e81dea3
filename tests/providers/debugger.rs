//! Windows: with no `tracing` subscriber (a provider DLL inside Outlook),
//! the Logoff traces reach the debugger output, where DebugView shows them.
//! This test listens the way DebugView does, through the `DBWIN_BUFFER`
//! shared-memory protocol, while the demo runs in a child process.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::examples::example;
use crate::start::Start as _;

type Handle = *mut c_void;

#[link(name = "kernel32")]
unsafe extern "system" {
    fn CreateEventW(attrs: *mut c_void, manual: i32, initial: i32, name: *const u16) -> Handle;
    fn CreateFileMappingW(
        file: Handle,
        attrs: *mut c_void,
        protect: u32,
        size_high: u32,
        size_low: u32,
        name: *const u16,
    ) -> Handle;
    fn MapViewOfFile(
        map: Handle,
        access: u32,
        off_high: u32,
        off_low: u32,
        len: usize,
    ) -> *mut c_void;
    fn UnmapViewOfFile(view: *const c_void) -> i32;
    fn SetEvent(event: Handle) -> i32;
    fn WaitForSingleObject(handle: Handle, ms: u32) -> u32;
    fn CloseHandle(handle: Handle) -> i32;
}

const PAGE_READWRITE: u32 = 0x04;
const FILE_MAP_READ: u32 = 0x04;
const WAIT_OBJECT_0: u32 = 0;
const BUFFER: usize = 4096;

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// A DebugView of this test's own: the debugger-output lines of every
/// process, with the writer's process id, until dropped.
struct DebugView {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(u32, String)>>>,
}

/// The listener's handles and view, moved to its thread.
struct Listener {
    ready: Handle,
    data: Handle,
    map: Handle,
    view: *const u8,
}

// SAFETY: kernel handles and a mapped view may be used from any thread; the
// listener is moved to one thread and used only there.
unsafe impl Send for Listener {}

impl DebugView {
    fn start() -> DebugView {
        // SAFETY: plain Win32 calls with NUL-terminated names; every handle
        // is checked before use and closed by the listener thread.
        let listener = unsafe {
            let ready = CreateEventW(
                std::ptr::null_mut(),
                0,
                0,
                wide("DBWIN_BUFFER_READY").as_ptr(),
            );
            let data = CreateEventW(
                std::ptr::null_mut(),
                0,
                0,
                wide("DBWIN_DATA_READY").as_ptr(),
            );
            let map = CreateFileMappingW(
                -1isize as Handle,
                std::ptr::null_mut(),
                PAGE_READWRITE,
                0,
                BUFFER as u32,
                wide("DBWIN_BUFFER").as_ptr(),
            );
            assert!(
                !ready.is_null() && !data.is_null() && !map.is_null(),
                "DBWIN objects"
            );
            let view = MapViewOfFile(map, FILE_MAP_READ, 0, 0, BUFFER).cast::<u8>();
            assert!(!view.is_null(), "DBWIN_BUFFER view");
            Listener {
                ready,
                data,
                map,
                view,
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let l = listener;
            let mut lines = Vec::new();
            // SAFETY: the handles and the view are valid until closed below;
            // the writer fills the view before it sets DBWIN_DATA_READY and
            // waits for DBWIN_BUFFER_READY before it writes again.
            unsafe {
                SetEvent(l.ready);
                while !flag.load(Ordering::SeqCst) {
                    if WaitForSingleObject(l.data, 50) != WAIT_OBJECT_0 {
                        continue;
                    }
                    let pid = std::ptr::read_unaligned(l.view.cast::<u32>());
                    let text = std::slice::from_raw_parts(l.view.add(4), BUFFER - 4);
                    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
                    lines.push((pid, String::from_utf8_lossy(&text[..end]).into_owned()));
                    SetEvent(l.ready);
                }
                UnmapViewOfFile(l.view.cast());
                CloseHandle(l.map);
                CloseHandle(l.data);
                CloseHandle(l.ready);
            }
            lines
        });
        DebugView {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<(u32, String)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default()
    }
}

#[test]
fn without_a_subscriber_logoff_traces_reach_the_debugger_output() {
    let view = DebugView::start();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("debugger");
    let _ = std::fs::remove_dir_all(&dir);
    let child = Command::new(example("leaky_store"))
        .env("MAPILEAK_DIR", &dir)
        .env_remove("MAPILEAK")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .retried(Command::spawn)
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = view.finish();
    let demo: Vec<&str> = lines
        .iter()
        .filter(|(p, _)| *p == pid)
        .map(|(_, l)| l.as_str())
        .collect();
    for want in [
        "mapileak: leaked IMAPITable \"contents of Inbox\" created in mapileak_samples::objects::Table::open",
        "mapileak: over-release: ",
        "mapileak: message_store \"Personal Folders (demo)\" logoff: ",
    ] {
        assert!(
            demo.iter().any(|l| l.starts_with(want)),
            "{want:?} not in the debugger output: {lines:#?}"
        );
    }
    // Each line once, as on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let on_stderr = stderr
        .lines()
        .filter(|l| l.starts_with("mapileak: "))
        .count();
    assert_eq!(demo.len(), on_stderr, "{demo:#?}\n{stderr}");
}
