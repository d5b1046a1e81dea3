//! Names for return addresses, from a module's file: its DWARF (through
//! `addr2line`, inlined calls expanded) and, where that has none, its symbol
//! table. One code path for both places frames are named: in the process at
//! Logoff (mapileak's symbolizer) and later on a developer's machine
//! (`mapileak symbolize`, for a report written with raw addresses), so the
//! two give the same frames.
//!
//! A module is mapped, read for the addresses asked of it, and dropped:
//! only the debug info of modules the report's stacks are in is read, of
//! those only the compilation units the addresses are in ([`units`]) and
//! the strings they name ([`strings`]), and none of it is kept. Compressed
//! debug sections (`-gz`) and separate debug files are not read: such
//! modules are named from their symbol table.

use std::borrow::Cow;
use std::path::Path;

use addr2line::gimli;
use addr2line::gimli::Section as _;
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

use crate::names::{canonical, is_capture_frame};
use crate::{Frame, Module, Pdb, RawFrame, Report, Stack, StackId, signature};

#[cfg(feature = "pdb")]
mod pdb;
mod strings;
mod units;

type Slice<'a> = gimli::EndianSlice<'a, gimli::RunTimeEndian>;

/// A module's file, mapped, and its separate debug file's when it has no
/// debug info of its own (a system library: only that file's symbol table
/// is read, for the names of functions the module does not export).
pub struct ModuleFile {
    map: memmap2::Mmap,
    /// The file, open: the compilation units a lookup needs are read
    /// from it, not through the mapping.
    file: std::fs::File,
    debug: Option<memmap2::Mmap>,
}

/// `path`, mapped read only, and the open file.
fn map(path: &Path) -> Result<(memmap2::Mmap, std::fs::File), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(format!("{}: not a file", path.display()));
    }
    // SAFETY: the mapping is read only and private to its owner; a module
    // file is not written while it is loaded or read here (a rebuild
    // replaces it: a new inode, or a sharing violation on Windows). No
    // reference into it outlives its owner (`ModuleFile` lends them).
    #[allow(unsafe_code)]
    let map =
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((map, file))
}

/// Where a separate debug file with build id `id` is on a Linux system:
/// `/usr/lib/debug/.build-id/ab/cdef….debug`.
fn debug_file(id: &[u8]) -> Option<std::path::PathBuf> {
    let (first, rest) = id.split_first()?;
    let rest: String = rest.iter().map(|b| format!("{b:02x}")).collect();
    let path =
        std::path::PathBuf::from(format!("/usr/lib/debug/.build-id/{first:02x}/{rest}.debug"));
    path.is_file().then_some(path)
}

impl ModuleFile {
    /// Maps the file at `path`.
    pub fn open(path: &Path) -> Result<ModuleFile, String> {
        let (map, file) = map(path)?;
        let debug = object::File::parse(&*map)
            .ok()
            .filter(|f| f.section_by_name(".debug_info").is_none())
            .and_then(|f| f.build_id().ok().flatten().and_then(debug_file))
            .and_then(|p| self::map(&p).ok())
            .map(|(map, _)| map);
        Ok(ModuleFile { map, file, debug })
    }

    /// The file's size in bytes.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Parses the mapped file.
    pub fn read(&self) -> Result<Names<'_>, String> {
        let mut names = Names::parse(&self.map)?;
        names.source = Some(&self.file);
        names.debug = self
            .debug
            .as_deref()
            .and_then(|d| object::File::parse(d).ok());
        Ok(names)
    }
}

/// What a lookup reads instead of the mapped sections, kept while it runs:
/// the chosen units ([`units`]) and their strings ([`strings`]).
#[derive(Default)]
struct Held<'a> {
    units: Option<memmap2::Mmap>,
    strings: std::cell::OnceCell<Option<strings::Strings<'a>>>,
}

/// A module's lookup: `addr2line`'s, and the sparse `.debug_str` it reads.
type Lookup<'m, 'a> = (
    addr2line::Context<Slice<'m>>,
    Option<&'m strings::Strings<'a>>,
);

/// What a module's file says about its addresses.
pub struct Names<'a> {
    file: object::File<'a>,
    /// The module's file, open (units are read from it).
    source: Option<&'a std::fs::File>,
    endian: gimli::RunTimeEndian,
    /// The separate debug file, for its symbol table.
    debug: Option<object::File<'a>>,
    /// Function symbols: `(address, size, raw name)`, by address, read on
    /// first use.
    symbols: std::cell::OnceCell<Vec<(u64, u64, &'a [u8])>>,
    /// 32-bit Windows: symbol names carry their calling convention.
    decorated: bool,
}

impl<'a> Names<'a> {
    fn parse(data: &'a [u8]) -> Result<Names<'a>, String> {
        let file = object::File::parse(data).map_err(|e| format!("not a module: {e}"))?;
        let endian = if file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let decorated = file.format() == object::BinaryFormat::Pe && !file.is_64();
        Ok(Names {
            file,
            source: None,
            endian,
            debug: None,
            symbols: std::cell::OnceCell::new(),
            decorated,
        })
    }

    /// The module's DWARF for `probes` (module addresses): the sections
    /// as mapped, but for `.debug_info`, which holds only the units the
    /// probes are in when the file can be read for them ([`units`]), and
    /// then `.debug_str`, which holds only their root entries' strings
    /// (the names a lookup finds are read with [`strings::Strings::name`]).
    /// `None` when the module has no (uncompressed) DWARF or none covers a
    /// probe.
    fn dwarf<'m>(&self, probes: &[u64], held: &'m mut Held<'a>) -> Option<Lookup<'m, 'a>>
    where
        'a: 'm,
    {
        let (dwarf, info) = self.sections()?;
        let mut dwarf: gimli::Dwarf<Slice<'m>> = dwarf;
        if let (Some(source), Some(info)) = (self.source, info) {
            match units::chosen(source, &info, &dwarf, self.endian, probes) {
                units::Chosen::Units(data) => held.units = Some(data),
                units::Chosen::None => return None,
                units::Chosen::Unread => {}
            }
        }
        let held: &'m Held<'a> = held;
        if let Some(data) = held.units.as_deref() {
            dwarf.debug_info = gimli::DebugInfo::new(data, self.endian);
        }
        let strings = match (self.source, self.in_file(gimli::SectionId::DebugStr)) {
            (Some(source), Some((at, len))) if held.units.is_some() => {
                let section = strings::StrSection { at, len };
                held.strings
                    .set(strings::sparse(source, &section, &dwarf))
                    .ok();
                held.strings.get().and_then(Option::as_ref)
            }
            _ => None,
        };
        if let Some(s) = strings {
            dwarf.debug_str = gimli::DebugStr::new(&s.map, self.endian);
        }
        // Units sharing an abbreviation table (most of a Rust debug
        // build's) share one parsed copy.
        dwarf.populate_abbreviations_cache(gimli::AbbreviationsCacheStrategy::Duplicates);
        Some((addr2line::Context::from_dwarf(dwarf).ok()?, strings))
    }

    /// Section `id`, when it is stored uncompressed.
    fn uncompressed(&self, id: gimli::SectionId) -> Option<object::Section<'a, '_>> {
        self.file.section_by_name(id.name()).filter(|s| {
            s.compressed_file_range()
                .is_ok_and(|r| r.format == object::CompressionFormat::None)
        })
    }

    /// Where section `id` is in the file, when it is stored uncompressed:
    /// `(offset, size)`.
    fn in_file(&self, id: gimli::SectionId) -> Option<(u64, u64)> {
        self.uncompressed(id).and_then(|s| s.file_range())
    }

    /// The module's DWARF sections as mapped (`None`: it has no
    /// uncompressed `.debug_info`), and where `.debug_info` is in the file.
    fn sections(&self) -> Option<(gimli::Dwarf<Slice<'a>>, Option<units::InfoSection>)> {
        let section = |id: gimli::SectionId| -> Result<Slice<'a>, gimli::Error> {
            let data = self
                .uncompressed(id)
                .and_then(|s| s.data().ok())
                .unwrap_or(&[]);
            Ok(gimli::EndianSlice::new(data, self.endian))
        };
        let dwarf = gimli::Dwarf::load(section).ok()?;
        let len = dwarf.debug_info.reader().len() as u64;
        if len == 0 {
            return None;
        }
        let info = self
            .in_file(gimli::SectionId::DebugInfo)
            .filter(|&(_, l)| l == len)
            .map(|(at, len)| units::InfoSection { at, len });
        Some((dwarf, info))
    }

    /// The address the module's own addresses count from: its preferred
    /// load address (a PE image's base, an ELF executable's first segment;
    /// 0 for a shared object). A runtime address minus the load address
    /// plus this is the module's own.
    pub fn image_base(&self) -> u64 {
        match self.file.format() {
            object::BinaryFormat::Elf => {
                use object::ObjectSegment as _;
                self.file
                    .segments()
                    .map(|s| s.address())
                    .min()
                    .map_or(0, |a| a & !0xfff)
            }
            _ => self.file.relative_address_base(),
        }
    }

    /// The module's identity, as a report records it.
    pub fn identity(&self, path: &str, size: u64) -> Module {
        let mut m = Module::new(path, size);
        m.build_id = self
            .file
            .build_id()
            .ok()
            .flatten()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect());
        m.pdb = self.file.pdb_info().ok().flatten().map(|cv| {
            let g = cv.guid();
            let guid = format!(
                "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{}",
                u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
                u16::from_le_bytes([g[4], g[5]]),
                u16::from_le_bytes([g[6], g[7]]),
                g[8],
                g[9],
                g[10..]
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect::<String>()
            );
            Pdb::new(guid, cv.age(), String::from_utf8_lossy(cv.path()))
        });
        m
    }

    /// The frames at each of `addresses` (return addresses, in the
    /// module's own addresses): the function the call is in and the calls
    /// inlined into it there, innermost first. Empty where the module knows
    /// nothing. Only the debug info covering these addresses is read.
    pub fn frames(&self, addresses: &[u64]) -> Vec<Vec<Frame>> {
        // The call is the instruction before the return address.
        let probes: Vec<u64> = addresses.iter().map(|a| a.wrapping_sub(1)).collect();
        let mut held = Held::default();
        let dwarf = self.dwarf(&probes, &mut held);
        probes
            .iter()
            .map(|&probe| self.frames_in(dwarf.as_ref(), probe))
            .collect()
    }

    /// The frames at `probe`, the call instruction's address.
    fn frames_in(&self, dwarf: Option<&Lookup<'_, 'a>>, probe: u64) -> Vec<Frame> {
        let mut frames = Vec::new();
        if let Some((dwarf, strings)) = dwarf
            && let Ok(mut found) = dwarf.find_frames(probe).skip_all_loads()
        {
            while let Ok(Some(frame)) = found.next() {
                let name = match &frame.function {
                    // A name in the sparse `.debug_str`: from the file.
                    Some(f) => strings
                        .and_then(|s| s.name(&f.name))
                        .or_else(|| f.raw_name().ok().map(|n| n.into_owned().into_bytes()))
                        // (Unreadable: `??`, not an empty name.)
                        .filter(|n| !n.is_empty()),
                    None => self.symbol(probe).map(<[u8]>::to_vec),
                };
                let (file, line) = frame
                    .location
                    .map_or((None, None), |l| (l.file.map(str::to_owned), l.line));
                frames.push(Frame::new(self.name(name.as_deref()), file, line));
            }
        }
        if frames.is_empty()
            && let Some(raw) = self.symbol(probe)
        {
            frames.push(Frame::new(self.name(Some(raw)), None, None));
        }
        // The function itself (the last of its inlined frames): a C++
        // function the debug info names without its class or namespace (an
        // anonymous namespace's, a static one) gets the symbol table's
        // fuller name.
        if let Some(outer) = frames.last_mut()
            && is_cpp_source(outer.file.as_deref())
            && !outer.function.contains("::")
            && let Some(full) = self.symbol(probe).map(|raw| self.name(Some(raw)))
            && (full.starts_with(&format!("{}(", outer.function))
                || full.contains(&format!("::{}(", outer.function)))
        {
            outer.function = full;
        }
        frames
    }

    /// The raw name of the function symbol holding `probe`.
    fn symbol(&self, probe: u64) -> Option<&'a [u8]> {
        let symbols = self.symbols.get_or_init(|| {
            let mut all = function_symbols(&self.file);
            if let Some(debug) = &self.debug {
                all.extend(function_symbols(debug));
            }
            all.sort_by_key(|&(a, _, _)| a);
            all.dedup_by_key(|&mut (a, _, _)| a);
            all
        });
        let i = symbols
            .partition_point(|&(a, _, _)| a <= probe)
            .checked_sub(1)?;
        let (start, size, name) = symbols[i];
        // A PE image's COFF symbols have no size: a function then runs to
        // the next symbol.
        let within = if size == 0 {
            symbols.get(i + 1).is_none_or(|&(next, _, _)| probe < next)
        } else {
            probe <= start.saturating_add(size)
        };
        within.then_some(name)
    }

    /// A raw name as reports show it: demangled, undecorated, canonical.
    fn name(&self, raw: Option<&[u8]>) -> String {
        match raw {
            Some(raw) => canonical(&undecorated(demangle(raw), self.decorated)),
            None => "??".to_owned(),
        }
    }
}

/// A file's function symbols: `(address, size, raw name)`.
fn function_symbols<'a>(file: &object::File<'a>) -> Vec<(u64, u64, &'a [u8])> {
    file.symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
        .filter_map(|s| Some((s.address(), s.size(), s.name_bytes().ok()?)))
        .collect()
}

/// Names a report written with raw addresses (`MAPILEAK_SYMBOLS=offline`)
/// as the process would have: each module's file is found by `locate`
/// (given the module as recorded; `None`: not found), checked to be the
/// same build (size, build id, PDB record), read for the addresses in it
/// and dropped; stacks lose mapileak's own top frames, and signatures are
/// computed from the names. Returns one line per module that could not be
/// used (its frames stay `?? (file+0x…)`). A report with names is left as
/// it is.
pub fn name_report(
    report: &mut Report,
    locate: impl Fn(&Module) -> Option<std::path::PathBuf>,
) -> Vec<String> {
    if report.stacks.iter().all(|s| s.raw.is_empty()) {
        report.modules.clear();
        return Vec::new();
    }
    let mut problems = Vec::new();
    // Frames per (stack index, raw index), module by module.
    let mut named: Vec<Vec<Vec<Frame>>> = report
        .stacks
        .iter()
        .map(|s| vec![Vec::new(); s.raw.len()])
        .collect();
    for (m, module) in report.modules.iter().enumerate() {
        let wanted: Vec<(usize, usize, u64)> = report
            .stacks
            .iter()
            .enumerate()
            .flat_map(|(si, s)| {
                s.raw.iter().enumerate().filter_map(move |(ri, r)| {
                    (r.module == Some(m as u32)).then_some((si, ri, r.address))
                })
            })
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let (file, path) = match open_checked(module, &locate) {
            Ok(found) => found,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let names = match file.read() {
            Ok(names) => names,
            Err(e) => {
                problems.push(format!("{}: {e}", module.path));
                continue;
            }
        };
        let addresses: Vec<u64> = wanted.iter().map(|w| w.2).collect();
        #[cfg(feature = "pdb")]
        let from_pdb = pdb_frames(module, &path, &names, &addresses, &locate, &mut problems);
        #[cfg(not(feature = "pdb"))]
        let from_pdb = {
            let _ = path;
            None
        };
        let frames = from_pdb.unwrap_or_else(|| names.frames(&addresses));
        for ((si, ri, _), frames) in wanted.into_iter().zip(frames) {
            named[si][ri] = frames;
        }
    }
    let modules = std::mem::take(&mut report.modules);
    for (stack, frames) in report.stacks.iter_mut().zip(named) {
        if stack.raw.is_empty() {
            continue;
        }
        let mut out = Vec::new();
        for (raw, mut frames) in stack.raw.iter().zip(frames) {
            if frames.is_empty() {
                frames.push(Frame::new(unnamed(raw, &modules), None, None));
            }
            out.extend(frames);
        }
        let own = out
            .iter()
            .take_while(|f| is_capture_frame(&f.function))
            .count();
        out.drain(..own);
        *stack = Stack::new(stack.id, out);
    }
    resign(report);
    problems
}

/// `?? (file+0x1234)` for a frame no module named.
fn unnamed(raw: &RawFrame, modules: &[Module]) -> String {
    match raw.module.and_then(|m| modules.get(m as usize)) {
        Some(m) => {
            let file = m.path.rsplit(['/', '\\']).next().unwrap_or(&m.path);
            format!("?? ({file}+{:#x})", raw.address)
        }
        None => format!("?? ({:#x})", raw.address),
    }
}

/// Module `module`'s file, where `locate` finds it, if it is the build the
/// report recorded; and where it was found.
fn open_checked(
    module: &Module,
    locate: &impl Fn(&Module) -> Option<std::path::PathBuf>,
) -> Result<(ModuleFile, std::path::PathBuf), String> {
    let path = locate(module).ok_or_else(|| format!("{}: not found", module.path))?;
    let file = ModuleFile::open(&path)?;
    let names = file
        .read()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let found = names.identity(&module.path, file.len());
    let differs = found.size != module.size
        || (module.build_id.is_some() && found.build_id != module.build_id)
        || (module.pdb.is_some() && found.pdb != module.pdb);
    if differs {
        return Err(format!(
            "{}: another build than the report's (size {}, build id {}; the report's: size {}, build id {})",
            path.display(),
            found.size,
            found.build_id.as_deref().unwrap_or("none"),
            module.size,
            module.build_id.as_deref().unwrap_or("none"),
        ));
    }
    drop(names);
    Ok((file, path))
}

/// The frames at `addresses` from the PDB of `module` (built by
/// Microsoft's toolchain: a PDB record, no DWARF), found by `locate` (as
/// the module is: by its file name, then where the report says it was) or
/// beside the module's file at `path`. `None` (a line in `problems` when a
/// PDB is wanted but not usable) where the module is named otherwise.
#[cfg(feature = "pdb")]
fn pdb_frames(
    module: &Module,
    path: &Path,
    names: &Names<'_>,
    addresses: &[u64],
    locate: &impl Fn(&Module) -> Option<std::path::PathBuf>,
    problems: &mut Vec<String>,
) -> Option<Vec<Vec<Frame>>> {
    let expected = module.pdb.as_ref()?;
    if names.file.section_by_name(".debug_info").is_some() {
        return None;
    }
    let file_name = expected
        .path
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(&expected.path);
    let found = locate(&Module::new(expected.path.clone(), 0)).or_else(|| {
        let beside = path.with_file_name(file_name);
        beside.is_file().then_some(beside)
    });
    let Some(found) = found else {
        problems.push(format!(
            "{}: its PDB {file_name} is not found (give its directory with --modules)",
            module.path
        ));
        return None;
    };
    let base = names.image_base();
    let rvas: Vec<u32> = addresses
        .iter()
        .map(|&a| a.wrapping_sub(base) as u32)
        .collect();
    match pdb::PdbFile::open(&found, expected).and_then(|p| p.frames(&rvas)) {
        Ok(frames) => Some(frames),
        Err(e) => {
            problems.push(e);
            None
        }
    }
}

/// Every signature of the report, from its stacks' names: as the process
/// computes them when it names frames itself.
fn resign(report: &mut Report) {
    let frames: std::collections::HashMap<StackId, &[Frame]> = report
        .stacks
        .iter()
        .map(|s| (s.id, s.frames.as_slice()))
        .collect();
    let of = |id: StackId| frames.get(&id).copied().unwrap_or(&[]);
    for o in &mut report.objects {
        o.signature = signature::compute(&o.kind, of(o.created));
    }
    for h in &mut report.heap {
        h.signature = signature::compute("heap", of(h.stack));
    }
    for b in &mut report.buffers {
        b.signature = signature::compute("buffer", of(b.stack));
    }
    for f in &mut report.findings {
        f.signature = signature::compute(&f.rule, f.stack.map_or(&[][..], of));
    }
}

/// A Rust (legacy or v0) or C++ (Itanium; with feature `pdb`, MSVC's
/// decoration too) name demangled, Rust's without its hash, MSVC's as
/// dbghelp names it (`?Open@CStore@@QAEJXZ`: `CStore::Open`); others as
/// they are.
pub fn demangle(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if let Ok(d) = rustc_demangle::try_demangle(&text) {
        return format!("{d:#}");
    }
    #[cfg(feature = "pdb")]
    if text.starts_with('?')
        && let Ok(d) = msvc_demangler::demangle(&text, msvc_demangler::DemangleFlags::NAME_ONLY)
    {
        return d;
    }
    if let Ok(symbol) = cpp_demangle::Symbol::new(raw)
        && let Ok(d) = symbol.demangle()
    {
        return d;
    }
    match text {
        Cow::Borrowed(s) => s.to_owned(),
        Cow::Owned(s) => s,
    }
}

/// A name as the source wrote it. On 32-bit Windows (`decorated`) a
/// symbol-table name is decorated: `_name` (cdecl), `_name@8` (stdcall),
/// `@name@8` (fastcall), and a mangled C++ name has one underscore more
/// (`__Z...`). Elsewhere names are as written.
pub fn undecorated(name: String, decorated: bool) -> String {
    /// `name@8` without its `@8` (a __stdcall function's argument bytes).
    fn stdcall(n: &str) -> &str {
        match n.rsplit_once('@') {
            Some((head, bytes))
                if !bytes.is_empty() && bytes.bytes().all(|c| c.is_ascii_digit()) =>
            {
                head
            }
            _ => n,
        }
    }
    if !decorated {
        return name;
    }
    // A C++ method MAPI calls is __stdcall too: `__ZN...@12`.
    if let Some(mangled) = name.strip_prefix('_').filter(|m| m.starts_with("_Z")) {
        let mangled = stdcall(mangled);
        let demangled = demangle(mangled.as_bytes());
        return if demangled == mangled {
            name
        } else {
            demangled
        };
    }
    let bare = match name.as_bytes().first() {
        Some(b'_' | b'@') => stdcall(&name[1..]),
        _ => return name,
    };
    let plain = !bare.is_empty() && bare.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if plain { bare.to_owned() } else { name }
}

/// A C++ source or header file, by its extension.
fn is_cpp_source(file: Option<&str>) -> bool {
    file.and_then(|f| f.rsplit_once('.'))
        .is_some_and(|(_, ext)| {
            matches!(ext, "cpp" | "cc" | "cxx" | "C" | "hpp" | "hh" | "hxx" | "h")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_demangle_and_undecorate() {
        assert_eq!(
            demangle(b"_ZN5store4open17h0123456789abcdefE"),
            "store::open"
        );
        assert_eq!(demangle(b"_Z3fooi"), "foo(int)");
        assert_eq!(demangle(b"plain_c"), "plain_c");
        assert_eq!(undecorated("_Release@4".into(), true), "Release");
        assert_eq!(undecorated("@fast@8".into(), true), "fast");
        assert_eq!(undecorated("__Z3fooi@4".into(), true), "foo(int)");
        assert_eq!(undecorated("_Release@4".into(), false), "_Release@4");
    }

    /// MSVC's decoration, as dbghelp undecorates it: scope and name only.
    #[cfg(feature = "pdb")]
    #[test]
    fn msvc_names_read_as_dbghelp_names_them() {
        for (decorated, name) in [
            ("?Open@CStore@@QAEJXZ", "CStore::Open"),
            (
                "?GetContentsTable@CFolder@@UEAAJKPEAPEAUIMAPITable@@@Z",
                "CFolder::GetContentsTable",
            ),
            ("??0CStore@@QAE@XZ", "CStore::CStore"),
            ("??1CStore@@UAE@XZ", "CStore::~CStore"),
            (
                "?Logon@?A0x1b2c3d4e@@YGJPAUIMAPISupport@@@Z",
                "`anonymous namespace'::Logon",
            ),
            (
                "?Release@?$CComObject@VCStore@@@ATL@@UAGKXZ",
                "ATL::CComObject<class CStore>::Release",
            ),
        ] {
            assert_eq!(demangle(decorated.as_bytes()), name, "{decorated}");
        }
        // Not a decorated name after all: as it was.
        assert_eq!(demangle(b"?not@decorated"), "?not@decorated");
    }

    #[test]
    fn this_test_binary_names_its_own_functions() {
        let exe = std::env::current_exe().unwrap();
        let module = ModuleFile::open(&exe).unwrap();
        let names = module.read().unwrap();
        // A function of this file, by its symbol: the module's own address
        // of `demangle` (no runtime address needed).
        names.symbol(0);
        let (start, _, _) = names
            .symbols
            .get()
            .unwrap()
            .iter()
            .copied()
            .find(|&(_, _, n)| demangle(n).ends_with("symbols::demangle"))
            .expect("demangle in the symbol table");
        let frames = names.frames(&[start + 2]).remove(0);
        assert!(
            frames
                .iter()
                .any(|f| f.function.ends_with("symbols::demangle")),
            "{frames:?}"
        );
        let id = names.identity("x", 1);
        assert!(
            id.build_id.is_some() || id.pdb.is_some() || cfg!(windows),
            "{id:?}"
        );
    }

    #[test]
    fn units_read_for_some_addresses_name_them_as_all_units_do() {
        let exe = std::env::current_exe().unwrap();
        let module = ModuleFile::open(&exe).unwrap();
        let chosen = module.read().unwrap();
        let mut whole = module.read().unwrap();
        whole.source = None;
        chosen.symbol(0);
        let symbols = chosen.symbols.get().unwrap();
        // Functions from all over the binary (this crate's, std's,
        // serde's), a few bytes in: as a return address would be.
        let step = (symbols.len() / 40).max(1);
        let mut addresses: Vec<u64> = symbols.iter().step_by(step).map(|s| s.0 + 3).collect();
        // And functions whose debug info refers to another unit's entries
        // (Rust's compiler_builtins, as LTO writes them).
        let builtins: Vec<u64> = symbols
            .iter()
            .filter(|s| demangle(s.2).starts_with("compiler_builtins::") || s.2 == b"__udivti3")
            .take(8)
            .map(|s| s.0 + 3)
            .collect();
        assert!(!builtins.is_empty());
        for &b in &builtins {
            // Alone: its unit is chosen for it, and the units it refers to.
            assert_eq!(chosen.frames(&[b]), whole.frames(&[b]), "{b:#x}");
        }
        addresses.extend(builtins);
        let named = chosen.frames(&addresses);
        assert_eq!(named, whole.frames(&addresses));
        let _ = &mut whole;
        assert!(
            named
                .iter()
                .filter(|f| f.iter().any(|f| f.line.is_some()))
                .count()
                > 10,
            "{named:?}"
        );

        // Only the units holding them are read: far fewer than there are.
        let probes: Vec<u64> = addresses.iter().map(|a| a - 1).collect();
        let mut held = Held::default();
        assert!(chosen.dwarf(&probes, &mut held).is_some());
        // Of `.debug_str`, only the chosen units' names and directories
        // were copied (the names above were read from the file).
        let strings = held.strings.get().and_then(Option::as_ref);
        let copied = strings.expect("a sparse .debug_str").map.iter();
        let (copied, all) = (copied.clone().filter(|&&b| b != 0).count(), copied.len());
        assert!(copied > 0 && copied < all / 20, "{copied} of {all} bytes");
        let data = held.units.expect("units chosen");
        let info = chosen.file.section_by_name(".debug_info").unwrap();
        let count = |data: &[u8]| {
            let mut units = gimli::DebugInfo::new(data, chosen.endian).units();
            let mut n = 0;
            while let Some(unit) = units.next().unwrap() {
                // Not a placeholder.
                if unit.debug_abbrev_offset().0 != u32::MAX as usize {
                    n += 1;
                }
            }
            n
        };
        let total = count(info.data().unwrap());
        let real = count(&data);
        assert!(real >= 1 && real < total / 2, "{real} of {total} units");

        // Without `.debug_aranges` (clang's default), each unit's root
        // entry says where it is: the same units are chosen.
        let (mut sections, info) = chosen.sections().unwrap();
        sections.debug_aranges = gimli::DebugAranges::new(&[], chosen.endian);
        let units::Chosen::Units(roots) = units::chosen(
            chosen.source.unwrap(),
            &info.unwrap(),
            &sections,
            chosen.endian,
            &probes,
        ) else {
            panic!("no units chosen from root entries");
        };
        assert!(roots[..] == data[..]);
    }

    #[test]
    fn a_damaged_debug_info_names_what_it_can_and_never_panics() {
        let exe = std::env::current_exe().unwrap();
        let original = std::fs::read(&exe).unwrap();
        let (at, len) = {
            let file = object::File::parse(&*original).unwrap();
            let info = file.section_by_name(".debug_info").unwrap();
            let (at, len) = info.file_range().unwrap();
            (at as usize, len as usize)
        };
        let addresses: Vec<u64> = {
            let module = ModuleFile::open(&exe).unwrap();
            let names = module.read().unwrap();
            names.symbol(0);
            let symbols = names.symbols.get().unwrap();
            let step = (symbols.len() / 20).max(1);
            symbols.iter().step_by(step).map(|s| s.0 + 3).collect()
        };
        let dir = std::env::temp_dir().join(format!("mapileak-units-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let damaged = dir.join("damaged");
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..8 {
            let mut bytes = original.clone();
            // A unit header's length made reserved, huge or tiny; then
            // bytes anywhere in the section.
            let first = at + (round * 7919 % len.max(1));
            let word: u32 = [0xffff_fff5, 0xffff_fff0, 3, u32::MAX - 1][round % 4];
            bytes[first..first + 4].copy_from_slice(&word.to_le_bytes());
            for _ in 0..64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes[at + (seed as usize % len)] = (seed >> 32) as u8;
            }
            std::fs::write(&damaged, &bytes).unwrap();
            let module = ModuleFile::open(&damaged).unwrap();
            let names = module.read().unwrap();
            assert_eq!(names.frames(&addresses).len(), addresses.len());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
