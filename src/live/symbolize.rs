//! Symbol lookup, at report time only: the interned stacks (`stack`)
//! turned into report stacks. Unlike capture, this allocates, maps module
//! files and reads debug info, so the allocator hook never comes here.
//! Process end and `fork` know when a thread is inside it
//! (`symbolizer_free_within`, `hold_for_fork`).
//!
//! The addresses a report needs are grouped by module; each module's file
//! is mapped, read for its addresses (`mapileak_reports::symbols`, the code
//! `mapileak symbolize` runs too) and dropped before the next: only the
//! debug info covering the report's stacks is read, and none is kept after
//! the report. With `MAPILEAK_SYMBOLS=offline` no debug info is read at
//! all: stacks keep their raw addresses, with each module's identity.
//! (MSVC builds name frames through `backtrace` and dbghelp, which reads
//! PDBs; their offline reports are named where DWARF is.)

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use mapileak_reports::names::is_capture_frame;
use mapileak_reports::symbols::ModuleFile;
use mapileak_reports::{Frame, Module, RawFrame, Stack, StackId};

use super::stack::frames;

/// Turns interned stacks into report stacks.
#[derive(Default)]
pub(crate) struct Symbolizer {
    /// Raw addresses and module identities instead of names.
    offline: bool,
}

/// The addresses of one module, by the file it was loaded from.
struct InModule {
    /// Its load address.
    base: usize,
    addresses: Vec<usize>,
}

impl Symbolizer {
    /// A symbolizer as the settings say (`MAPILEAK_SYMBOLS`).
    pub(crate) fn from_settings() -> Symbolizer {
        Symbolizer {
            offline: crate::settings::offline_symbols(),
        }
    }

    /// The report form of stack `id` (see [`Symbolizer::stacks`]).
    #[cfg(test)]
    pub(crate) fn stack(&mut self, id: StackId) -> Stack {
        let (mut stacks, _) = self.stacks(&[id]);
        stacks.pop().unwrap_or_else(|| Stack::new(id, Vec::new()))
    }

    /// The report forms of stacks `ids`: inlined frames expanded, mapileak's
    /// own frames (the capture machinery, the allocator hook) dropped from
    /// the top; offline, their raw addresses, and the modules they are in.
    pub(crate) fn stacks(&self, ids: &[StackId]) -> (Vec<Stack>, Vec<Module>) {
        let _gate = SYMBOLIZER.read();
        let _resolving = Resolving::enter();
        let raw: Vec<(StackId, Vec<usize>)> = ids.iter().map(|&id| (id, frames(id))).collect();
        let mut modules: BTreeMap<PathBuf, InModule> = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        // (An address in no module stays unnamed: `?? (0x…)`, or a raw
        // frame without a module.)
        for &addr in raw.iter().flat_map(|(_, a)| a) {
            if seen.insert(addr)
                && let Some((path, base)) = symtab::module_of(addr)
            {
                modules
                    .entry(path)
                    .or_insert_with(|| InModule {
                        base,
                        addresses: Vec::new(),
                    })
                    .addresses
                    .push(addr);
            }
        }
        if self.offline {
            offline(raw, modules)
        } else {
            (named(raw, &names(modules)), Vec::new())
        }
    }
}

/// Each address's frames, module by module.
#[cfg(not(all(windows, target_env = "msvc")))]
fn names(modules: BTreeMap<PathBuf, InModule>) -> HashMap<usize, Vec<Frame>> {
    let mut names = HashMap::new();
    for (path, m) in modules {
        // A module whose file cannot be read: its frames stay unnamed.
        let Ok(file) = ModuleFile::open(&path) else {
            continue;
        };
        let Ok(module) = file.read() else {
            continue;
        };
        let rebase = module.image_base().wrapping_sub(m.base as u64);
        let own: Vec<u64> = m
            .addresses
            .iter()
            .map(|&a| (a as u64).wrapping_add(rebase))
            .collect();
        names.extend(m.addresses.into_iter().zip(module.frames(&own)));
        // The module's mapping and parsed debug info go here.
    }
    names
}

/// Each address's frames, through `backtrace` (dbghelp reads the PDBs).
#[cfg(all(windows, target_env = "msvc"))]
fn names(modules: BTreeMap<PathBuf, InModule>) -> HashMap<usize, Vec<Frame>> {
    modules
        .into_values()
        .flat_map(|m| m.addresses)
        .map(|addr| (addr, resolve(addr)))
        .collect()
}

/// Stacks with names: each address's frames, `?? (0x…)` where there are
/// none.
fn named(raw: Vec<(StackId, Vec<usize>)>, names: &HashMap<usize, Vec<Frame>>) -> Vec<Stack> {
    raw.into_iter()
        .map(|(id, addrs)| {
            let mut out = Vec::new();
            for addr in addrs {
                match names.get(&addr) {
                    Some(frames) if !frames.is_empty() => out.extend(frames.iter().cloned()),
                    _ => out.push(Frame::new(format!("?? ({addr:#x})"), None, None)),
                }
            }
            Stack::new(id, without_own_frames(out))
        })
        .collect()
}

/// `frames` without mapileak's own at the top (the capture machinery, the
/// allocator hook).
fn without_own_frames(mut frames: Vec<Frame>) -> Vec<Frame> {
    let own = frames
        .iter()
        .take_while(|f| is_capture_frame(&f.function))
        .count();
    frames.drain(..own);
    frames
}

/// Stacks of raw addresses, in the modules' own addresses, and the
/// modules' identities: no debug info is read.
fn offline(
    raw: Vec<(StackId, Vec<usize>)>,
    modules: BTreeMap<PathBuf, InModule>,
) -> (Vec<Stack>, Vec<Module>) {
    let mut index: HashMap<usize, RawFrame> = HashMap::new();
    let mut out_modules = Vec::new();
    for (path, m) in modules {
        let known = ModuleFile::open(&path).ok().and_then(|file| {
            let size = file.len();
            let header = file.read().ok()?;
            Some((
                header.identity(&path.display().to_string(), size),
                header.image_base(),
            ))
        });
        let Some((identity, image_base)) = known else {
            continue;
        };
        let n = out_modules.len() as u32;
        out_modules.push(identity);
        let rebase = image_base.wrapping_sub(m.base as u64);
        for addr in m.addresses {
            index.insert(
                addr,
                RawFrame::new(Some(n), (addr as u64).wrapping_add(rebase)),
            );
        }
    }
    let stacks = raw
        .into_iter()
        .map(|(id, addrs)| {
            let frames = addrs
                .into_iter()
                .map(|a| {
                    index
                        .get(&a)
                        .copied()
                        .unwrap_or_else(|| RawFrame::new(None, a as u64))
                })
                .collect();
            Stack::unnamed(id, frames)
        })
        .collect();
    (stacks, out_modules)
}

/// Threads inside the symbolizer (`backtrace::resolve`, which holds its own
/// lock): process end waits for none of them beyond a moment.
static RESOLVING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether no thread is inside the symbolizer, waiting up to `wait` for
/// the ones that are: at process end a thread ended there holds its lock
/// for good.
pub(crate) fn symbolizer_free_within(wait: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    while RESOLVING.load(std::sync::atomic::Ordering::Acquire) != 0 {
        if start.elapsed() >= wait {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    true
}

/// Whether naming frames would first load a library: with MSVC the
/// symbolizer is dbghelp.dll, loaded on first use, and process end may run
/// under the loader lock (a DLL's detach), where loading one can deadlock.
/// (mingw builds read DWARF from the image file: nothing is loaded.)
#[cfg(all(windows, target_env = "msvc"))]
#[allow(unsafe_code)]
pub(crate) fn symbolizer_would_load_library() -> bool {
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn GetModuleHandleW(name: *const u16) -> *mut std::ffi::c_void;
    }
    let name: Vec<u16> = "dbghelp.dll\0".encode_utf16().collect();
    // SAFETY: a NUL-terminated UTF-16 name; the call only reads it and
    // takes no reference on the module.
    unsafe { GetModuleHandleW(name.as_ptr()) }.is_null()
}

/// Whether naming frames would first load a library: never here.
#[cfg(not(all(windows, target_env = "msvc")))]
pub(crate) fn symbolizer_would_load_library() -> bool {
    false
}

/// Runs `f` counted as inside the symbolizer (fault injection: see `testing`).
#[cfg(feature = "test-hooks")]
pub(crate) fn as_if_resolving(f: impl FnOnce()) {
    let _resolving = Resolving::enter();
    f();
}

/// Counts a thread in the symbolizer while it lives.
struct Resolving;

impl Resolving {
    fn enter() -> Resolving {
        RESOLVING.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Resolving
    }
}

impl Drop for Resolving {
    fn drop(&mut self) {
        RESOLVING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Held (shared) while a thread symbolizes: `fork` takes it exclusively,
/// so no thread is inside `backtrace::resolve` (and its own lock) at fork.
static SYMBOLIZER: crate::sync::RwLock<()> = crate::sync::RwLock::new(());

#[cfg(unix)]
static HELD_FOR_FORK: crate::sync::ForkHeld<crate::sync::RwLockWriteGuard<'static, ()>> =
    crate::sync::ForkHeld::new();

/// Takes the symbolizer (waiting for the threads inside it) and keeps it until
/// `release_after_fork` (before `fork`).
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn hold_for_fork() {
    let held = SYMBOLIZER.write();
    // SAFETY: guards of locks just taken, which every user of the slot
    // takes first.
    unsafe { HELD_FOR_FORK.keep(held) };
}

/// Releases what `hold_for_fork` took (after `fork`).
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn release_after_fork() {
    // The guards drop here, releasing the locks.
    // SAFETY: the thread of `hold_for_fork`, still holding its locks.
    drop(unsafe { HELD_FOR_FORK.take() });
}

#[cfg(all(windows, target_env = "msvc"))]
fn resolve(addr: usize) -> Vec<Frame> {
    use mapileak_reports::names::canonical;
    use mapileak_reports::symbols::undecorated;
    let mut frames = Vec::new();
    backtrace::resolve(addr as *mut std::ffi::c_void, |symbol| {
        // One name per function on every platform and toolchain.
        let function = symbol
            .name()
            .map(|n| canonical(&undecorated(format!("{n:#}"), cfg!(target_arch = "x86"))))
            .unwrap_or_else(|| "??".to_owned());
        frames.push(Frame::new(
            function,
            symbol.filename().map(|p| p.display().to_string()),
            symbol.lineno(),
        ));
    });
    if frames.is_empty() {
        frames.push(Frame::new(format!("?? ({addr:#x})"), None, None));
    }
    frames
}

mod symtab;
