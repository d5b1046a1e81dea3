//! Only the compilation units a lookup needs.
//!
//! `addr2line` finds the unit holding an address by reading every unit's
//! header, root entry, abbreviations and line-program header first. In a
//! debug build of 1,500 units spread over 15 MB of `.debug_info`, that walk
//! alone touches every page of the mapped file (the kernel maps the
//! neighbours of each page touched, 64 KB at a time): a Logoff that names
//! 20 stacks grew the process by 26 MB, where the units those stacks are in
//! hold a few hundred KB.
//!
//! So the units are chosen first, from `.debug_aranges` and, for a unit it
//! does not cover, from the unit's root entry (its `DW_AT_ranges` or
//! `DW_AT_low_pc`/`DW_AT_high_pc`), each read with a small `read_at` into a
//! buffer rather than through the mapping; then the units those refer to
//! (`DW_FORM_ref_addr`: a declaration or abstract origin elsewhere), whose
//! entries name the functions. Then `addr2line` gets a
//! `.debug_info` of the same size, in anonymous memory that stays untouched
//! (not resident) except where the chosen units are copied, at their own
//! offsets (references between entries stay valid), and where a one-header
//! placeholder unit spans each gap. A placeholder names an abbreviation
//! table past the end of `.debug_abbrev`, so `addr2line` skips it.
//!
//! A unit that declares no addresses (no `.debug_aranges` entry, no ranges,
//! no `DW_AT_low_pc`) is taken to have no code: every compiler in use
//! (GCC, clang, rustc) declares the addresses of a unit with code.

use std::collections::HashSet;
use std::fs::File;

use addr2line::gimli;
use addr2line::gimli::Endianity as _;

use super::Slice;

/// The first bytes of a unit read to find its root entry's addresses; a
/// root entry that does not fit is read again with up to [`ROOT_MAX`].
const ROOT_FIRST: usize = 1024;
const ROOT_MAX: usize = 64 * 1024;
/// How much of `.debug_info` one read takes (headers and root entries of
/// the units in it come from one system call, not one each).
const WINDOW: usize = 4096;
/// The longest placeholder unit (a longer gap gets several).
const GAP_MAX: u64 = 0x7fff_0000;
/// A placeholder unit's header: DWARF 4, 32-bit: length, version,
/// abbreviation offset, address size.
const GAP_HEADER: u64 = 11;

/// Where `.debug_info` is in the module's file.
pub(super) struct InfoSection {
    /// Its offset in the file.
    pub at: u64,
    /// Its size.
    pub len: u64,
}

/// One unit of `.debug_info`: its offset and size (header included).
#[derive(Clone, Copy)]
struct Unit {
    offset: u64,
    size: u64,
    /// The size of its length field: 4, or 12 (64-bit DWARF).
    width: u64,
}

/// What [`chosen`] found.
pub(super) enum Chosen {
    /// A `.debug_info` with only the units holding a probe.
    Units(memmap2::Mmap),
    /// No unit holds one.
    None,
    /// The file could not be read for them (`.debug_info` is then read
    /// whole, through the mapping).
    Unread,
}

/// A `.debug_info` holding only the units that contain one of `probes`
/// (module addresses), read from `file`; `dwarf` has the module's other
/// sections (its own `.debug_info` is not read).
pub(super) fn chosen(
    file: &File,
    info: &InfoSection,
    dwarf: &gimli::Dwarf<Slice<'_>>,
    endian: gimli::RunTimeEndian,
    probes: &[u64],
) -> Chosen {
    let source = Source {
        file,
        info,
        dwarf,
        endian,
        window: std::cell::RefCell::new(Window::default()),
    };
    select(&source, &Probes::new(probes)).unwrap_or(Chosen::Unread)
}

/// Where units are read from.
struct Source<'s, 'd> {
    file: &'s File,
    info: &'s InfoSection,
    dwarf: &'s gimli::Dwarf<Slice<'d>>,
    endian: gimli::RunTimeEndian,
    /// The last [`WINDOW`] bytes of `.debug_info` read.
    window: std::cell::RefCell<Window>,
}

/// Bytes of `.debug_info` from offset `at`.
#[derive(Default)]
struct Window {
    at: u64,
    data: Vec<u8>,
}

impl Source<'_, '_> {
    /// Fills `out` from `.debug_info` at `offset`: from the window when it
    /// holds them, else from a new window read there (or, when `out` is
    /// larger than a window, directly).
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let n = out.len() as u64;
        let mut w = self.window.borrow_mut();
        let held = offset >= w.at && offset + n <= w.at + w.data.len() as u64;
        if !held {
            if out.len() > WINDOW {
                return read_at(self.file, out, self.info.at + offset);
            }
            let len = (self.info.len - offset).min(WINDOW as u64) as usize;
            w.data.resize(len, 0);
            w.at = offset;
            if let Err(e) = read_at(self.file, &mut w.data, self.info.at + offset) {
                w.data.clear();
                return Err(e);
            }
        }
        let start = (offset - w.at) as usize;
        out.copy_from_slice(&w.data[start..start + out.len()]);
        Ok(())
    }
}

/// The addresses looked up, sorted.
struct Probes(Vec<u64>);

impl Probes {
    fn new(probes: &[u64]) -> Probes {
        let mut probes = probes.to_vec();
        probes.sort_unstable();
        probes.dedup();
        Probes(probes)
    }

    /// Whether one is in `begin..end`.
    fn hit(&self, begin: u64, end: u64) -> bool {
        let i = self.0.partition_point(|&p| p < begin);
        self.0.get(i).is_some_and(|&p| p < end)
    }
}

/// `None`: `.debug_info` could not be read.
fn select(source: &Source<'_, '_>, probes: &Probes) -> Option<Chosen> {
    let (listed, wanted) = listed(source.dwarf, probes);
    let mut abbreviations = None;
    let mut units = walk(source, |unit| {
        wanted.contains(&unit.offset)
            || (!listed.contains(&unit.offset)
                && root_has(source, unit, &mut abbreviations, probes))
    })?;
    if !units.iter().any(|&(_, keep)| keep) {
        return Some(Chosen::None);
    }
    referenced(source, &mut units);
    copy(source, &units).map(Chosen::Units)
}

/// The units `.debug_aranges` lists, and of those the ones holding a probe.
fn listed(dwarf: &gimli::Dwarf<Slice<'_>>, probes: &Probes) -> (HashSet<u64>, HashSet<u64>) {
    let mut listed = HashSet::new();
    let mut wanted = HashSet::new();
    let mut sets = dwarf.debug_aranges.headers();
    while let Ok(Some(set)) = sets.next() {
        let unit = set.debug_info_offset().0 as u64;
        let mut entries = set.entries();
        while let Ok(Some(entry)) = entries.next() {
            if entry.length() == 0 {
                continue;
            }
            listed.insert(unit);
            let r = entry.range();
            if probes.hit(r.begin, r.end) {
                wanted.insert(unit);
            }
        }
    }
    (listed, wanted)
}

/// Every unit of `.debug_info`, from its headers (read one by one), and
/// whether `keep` keeps it.
/// Stops at the first malformed header: what follows it is left out.
fn walk(source: &Source<'_, '_>, mut keep: impl FnMut(Unit) -> bool) -> Option<Vec<(Unit, bool)>> {
    let (len, endian) = (source.info.len, source.endian);
    let mut units = Vec::new();
    let mut offset = 0u64;
    let mut head = [0u8; 12];
    while offset + 4 <= len {
        let n = (len - offset).min(12) as usize;
        source.read(offset, &mut head[..n]).ok()?;
        let (length, width) = match endian.read_u32(&head[..4]) {
            0xffff_ffff if n == 12 => (endian.read_u64(&head[4..12]), 12),
            l if l < 0xffff_fff0 => (u64::from(l), 4),
            _ => break,
        };
        let size = match length.checked_add(width) {
            Some(size) if size >= GAP_HEADER && size <= len - offset => size,
            _ => break,
        };
        let unit = Unit {
            offset,
            size,
            width,
        };
        units.push((unit, keep(unit)));
        offset += size;
    }
    Some(units)
}

/// Keeps also the units the kept ones refer to (`DW_FORM_ref_addr`: a
/// function's declaration or abstract origin in another unit, as LTO and
/// Rust's `compiler_builtins` write them), and the ones those refer to:
/// a name is looked up there.
fn referenced(source: &Source<'_, '_>, units: &mut [(Unit, bool)]) {
    let mut todo: Vec<usize> = (0..units.len()).filter(|&i| units[i].1).collect();
    let mut bytes = Vec::new();
    while let Some(i) = todo.pop() {
        let unit = units[i].0;
        // Its header first: most units' abbreviations cannot refer across.
        let mut head = [0u8; 32];
        let head = &mut head[..(unit.size as usize).min(32)];
        if source.read(unit.offset, head).is_err() {
            continue;
        }
        cut(head, unit.width, source.endian);
        let header = gimli::DebugInfo::new(&*head, source.endian).units().next();
        if !matches!(header, Ok(Some(h)) if refers_across(source.dwarf, h.debug_abbrev_offset())) {
            continue;
        }
        bytes.resize(unit.size as usize, 0);
        if read_at(source.file, &mut bytes, source.info.at + unit.offset).is_err() {
            continue;
        }
        for target in references(&bytes, source) {
            // The unit holding `target`: the last one starting at or before it.
            let j = units.partition_point(|(u, _)| u.offset <= target);
            if let Some(j) = j.checked_sub(1)
                && !units[j].1
            {
                units[j].1 = true;
                todo.push(j);
            }
        }
    }
}

/// The `.debug_info` offsets the entries of the unit in `bytes` refer to
/// in other units (as far as its entries can be read).
fn references(bytes: &[u8], source: &Source<'_, '_>) -> Vec<u64> {
    let mut found = Vec::new();
    let Ok(Some(header)) = gimli::DebugInfo::new(bytes, source.endian).units().next() else {
        return found;
    };
    let Ok(abbrevs) = source
        .dwarf
        .debug_abbrev
        .abbreviations(header.debug_abbrev_offset())
    else {
        return found;
    };
    let Ok(mut entries) = header.entries_raw(&abbrevs, None) else {
        return found;
    };
    while !entries.is_empty() {
        let Ok(abbrev) = entries.read_abbreviation() else {
            break;
        };
        for spec in abbrev.map(|a| a.attributes()).unwrap_or_default() {
            match entries.read_attribute(*spec) {
                Ok(attr) => {
                    if let gimli::AttributeValue::DebugInfoRef(target) = attr.value() {
                        found.push(target.0 as u64);
                    }
                }
                Err(_) => return found,
            }
        }
    }
    found
}

/// Whether abbreviation table `table` has an attribute that can refer to
/// another unit (`DW_FORM_ref_addr`, or a form given in the entry): most
/// units' have none, and their entries need not be read. Unreadable: yes.
fn refers_across(dwarf: &gimli::Dwarf<Slice<'_>>, table: gimli::DebugAbbrevOffset) -> bool {
    use gimli::Reader as _;
    use gimli::Section as _;
    let mut r = *dwarf.debug_abbrev.reader();
    let scan = |r: &mut Slice<'_>| -> gimli::Result<bool> {
        r.skip(table.0)?;
        // code, tag, children, then (name, form[, constant]) pairs to (0, 0).
        while r.read_uleb128()? != 0 {
            r.read_uleb128()?;
            r.read_u8()?;
            loop {
                let (name, form) = (r.read_uleb128()?, r.read_uleb128()?);
                if name == 0 && form == 0 {
                    break;
                }
                match gimli::DwForm(form as u16) {
                    gimli::DW_FORM_ref_addr | gimli::DW_FORM_indirect => return Ok(true),
                    gimli::DW_FORM_implicit_const => {
                        r.read_sleb128()?;
                    }
                    _ => {}
                }
            }
        }
        Ok(false)
    };
    scan(&mut r).unwrap_or(true)
}

/// The kept units, copied from the file at their own offsets into
/// anonymous memory the size of the units walked; a placeholder unit
/// over each run of the others.
fn copy(source: &Source<'_, '_>, units: &[(Unit, bool)]) -> Option<memmap2::Mmap> {
    let end = units.last().map_or(0, |(u, _)| u.offset + u.size);
    let mut map = memmap2::MmapMut::map_anon(usize::try_from(end).ok()?).ok()?;
    let mut at = 0;
    while at < units.len() {
        let (first, keep) = units[at];
        if keep {
            let range = first.offset as usize..(first.offset + first.size) as usize;
            read_at(source.file, &mut map[range], source.info.at + first.offset).ok()?;
            at += 1;
            continue;
        }
        // A gap: this unit and the ones after it up to the next kept.
        let mut gap_end = first.offset + first.size;
        while at + 1 < units.len() && !units[at + 1].1 {
            at += 1;
            gap_end = units[at].0.offset + units[at].0.size;
        }
        placeholders(&mut map, first.offset, gap_end, source.endian);
        at += 1;
    }
    map.make_read_only().ok()
}

/// Placeholder units over `start..end` (at least [`GAP_HEADER`] bytes).
fn placeholders(map: &mut [u8], start: u64, end: u64, endian: gimli::RunTimeEndian) {
    let mut at = start;
    while at < end {
        let left = end - at;
        // Never leave a tail too short for a header of its own.
        let size = if left <= GAP_MAX {
            left
        } else if left - GAP_MAX >= GAP_HEADER {
            GAP_MAX
        } else {
            GAP_MAX - GAP_HEADER
        };
        let h = at as usize;
        endian.write_u32(&mut map[h..h + 4], (size - 4) as u32);
        endian.write_u16(&mut map[h + 4..h + 6], 4);
        endian.write_u32(&mut map[h + 6..h + 10], u32::MAX);
        map[h + 10] = 8;
        at += size;
    }
}

/// The last abbreviation table parsed (neighbouring units often share one).
type LastTable = Option<(gimli::DebugAbbrevOffset, gimli::Abbreviations)>;

/// Whether the root entry of `unit` (one `.debug_aranges` does not list)
/// declares an address range with a probe in it.
fn root_has(
    source: &Source<'_, '_>,
    unit: Unit,
    abbreviations: &mut LastTable,
    probes: &Probes,
) -> bool {
    let mut want = (unit.size as usize).min(ROOT_FIRST);
    loop {
        let mut buf = vec![0u8; want];
        if source.read(unit.offset, &mut buf).is_err() {
            return false;
        }
        cut(&mut buf, unit.width, source.endian);
        let found = Root::read(&buf, source, abbreviations)
            .and_then(|root| root.map_or(Ok(false), |r| r.has(source.dwarf, probes)));
        match found {
            Ok(found) => return found,
            Err(gimli::Error::UnexpectedEof(_)) if want < (unit.size as usize).min(ROOT_MAX) => {
                want = (unit.size as usize).min(ROOT_MAX);
            }
            // Unreadable: not a unit addresses can be named from.
            Err(_) => return false,
        }
    }
}

/// What a unit's root entry says of its addresses.
struct Root {
    encoding: gimli::Encoding,
    low: Option<u64>,
    high: Option<u64>,
    size: Option<u64>,
    low_index: Option<gimli::DebugAddrIndex>,
    high_index: Option<gimli::DebugAddrIndex>,
    ranges: Option<RangeList>,
    addr_base: gimli::DebugAddrBase,
    rnglists_base: gimli::DebugRngListsBase,
}

/// Where a root entry's range list is.
enum RangeList {
    /// At this offset (`DW_FORM_sec_offset`).
    At(gimli::RangeListsOffset),
    /// At this index of the unit's offsets (`DW_FORM_rnglistx`).
    Index(gimli::DebugRngListsIndex),
}

impl Root {
    /// The root entry of the unit at the start of `buf`; `None` for a unit
    /// that holds no code of its own (a type or partial unit).
    fn read(
        buf: &[u8],
        source: &Source<'_, '_>,
        abbreviations: &mut LastTable,
    ) -> gimli::Result<Option<Root>> {
        let Some(header) = gimli::DebugInfo::new(buf, source.endian).units().next()? else {
            return Ok(None);
        };
        if !matches!(
            header.type_(),
            gimli::UnitType::Compilation | gimli::UnitType::Skeleton(_)
        ) {
            return Ok(None);
        }
        let table = header.debug_abbrev_offset();
        if abbreviations.as_ref().is_none_or(|(at, _)| *at != table) {
            *abbreviations = Some((table, source.dwarf.debug_abbrev.abbreviations(table)?));
        }
        let Some((_, abbrevs)) = abbreviations.as_ref() else {
            return Ok(None);
        };
        let mut entries = header.entries_raw(abbrevs, None)?;
        let Some(abbrev) = entries.read_abbreviation()? else {
            return Ok(None);
        };
        let mut root = Root {
            encoding: header.encoding(),
            low: None,
            high: None,
            size: None,
            low_index: None,
            high_index: None,
            ranges: None,
            addr_base: gimli::DebugAddrBase(0),
            rnglists_base: gimli::DebugRngListsBase(0),
        };
        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            use gimli::AttributeValue as V;
            match (attr.name(), attr.value()) {
                (gimli::DW_AT_low_pc, V::Addr(a)) => root.low = Some(a),
                (gimli::DW_AT_low_pc, V::DebugAddrIndex(i)) => root.low_index = Some(i),
                (gimli::DW_AT_high_pc, V::Addr(a)) => root.high = Some(a),
                (gimli::DW_AT_high_pc, V::DebugAddrIndex(i)) => root.high_index = Some(i),
                (gimli::DW_AT_high_pc, V::Udata(n)) => root.size = Some(n),
                (gimli::DW_AT_ranges, V::RangeListsRef(o)) => {
                    root.ranges = Some(RangeList::At(gimli::RangeListsOffset(o.0)))
                }
                (gimli::DW_AT_ranges, V::DebugRngListsIndex(i)) => {
                    root.ranges = Some(RangeList::Index(i))
                }
                (gimli::DW_AT_addr_base, V::DebugAddrBase(b)) => root.addr_base = b,
                (gimli::DW_AT_rnglists_base, V::DebugRngListsBase(b)) => root.rnglists_base = b,
                _ => {}
            }
        }
        Ok(Some(root))
    }

    /// Whether a probe is in the unit's addresses: its range list's, or
    /// `low..high`.
    fn has(&self, dwarf: &gimli::Dwarf<Slice<'_>>, probes: &Probes) -> gimli::Result<bool> {
        let encoding = self.encoding;
        let address = |i| {
            dwarf
                .debug_addr
                .get_address(encoding.address_size, self.addr_base, i)
        };
        let low = match self.low_index {
            Some(i) => Some(address(i)?),
            None => self.low,
        };
        let high = match self.high_index {
            Some(i) => Some(address(i)?),
            None => self.high,
        };
        let offset = match self.ranges {
            Some(RangeList::At(offset)) => Some(offset),
            Some(RangeList::Index(i)) => {
                Some(dwarf.ranges.get_offset(encoding, self.rnglists_base, i)?)
            }
            None => None,
        };
        if let Some(offset) = offset {
            let mut list = dwarf.ranges.ranges(
                offset,
                encoding,
                low.unwrap_or(0),
                &dwarf.debug_addr,
                self.addr_base,
            )?;
            while let Some(r) = list.next()? {
                if r.begin < r.end && probes.hit(r.begin, r.end) {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        Ok(match (low, high, self.size) {
            (Some(l), Some(h), _) => l < h && probes.hit(l, h),
            (Some(l), None, Some(n)) => probes.hit(l, l.saturating_add(n)),
            _ => false,
        })
    }
}

/// Makes the unit at the start of `buf` (cut short by a read of only its
/// first bytes) say that it ends where `buf` does, so it parses.
fn cut(buf: &mut [u8], width: u64, endian: gimli::RunTimeEndian) {
    let length = buf.len() as u64 - width;
    if width == 12 {
        endian.write_u64(&mut buf[4..12], length);
    } else {
        endian.write_u32(&mut buf[..4], length as u32);
    }
}

/// Fills `buf` from `file` at `at`, not through a mapping: the pages read
/// stay the kernel's cache, not the process's memory.
pub(super) fn read_at(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            match std::os::windows::fs::FileExt::seek_read(file, &mut buf[done..], at + done as u64)
            {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, buf, at);
        Err(std::io::ErrorKind::Unsupported.into())
    }
}
