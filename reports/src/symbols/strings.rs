//! Only the strings of `.debug_str` a lookup reads.
//!
//! Function names live in `.debug_str`, which the linker merges for the
//! whole module: the names of a few hundred frames lie all over it. Read
//! through the mapping, each one made the kernel map the cached pages
//! around it too: naming 21 stacks of a 43 MB debug build left 6 of its
//! 8.75 MB of `.debug_str` in the process's memory (`MADV_RANDOM` does not
//! change that).
//!
//! So `addr2line` gets a `.debug_str` of the same size in anonymous memory,
//! zero but for the strings the chosen units' root entries name (the
//! unit's name and directory, which the file paths of its lines are built
//! from), copied at their own offsets; and a function's name, which
//! `addr2line` hands back as a place in that copy, is read from the file
//! at that offset ([`Strings::name`]), with a small `read_at`. (Line
//! tables name their files inline, DWARF 4, or in `.debug_line_str`,
//! DWARF 5 as GCC, clang and rustc write it: neither is this section.)
//!
//! For the debug build of the whole-program benchmark, the Logoff went
//! from +7.9 MB to +4.5 MB, and `.debug_str`'s share from 6 MB to 68 KB.

use std::fs::File;

use addr2line::gimli;

use super::Slice;
use super::units::read_at;

/// The longest string read (a longer one is cut there).
const MAX: usize = 64 * 1024;
/// How much of a string one read takes.
const STEP: usize = 256;

/// Where `.debug_str` is in the module's file.
pub(super) struct StrSection {
    pub at: u64,
    pub len: u64,
}

/// The sparse copy of `.debug_str` and where the section is in the file.
pub(super) struct Strings<'f> {
    pub map: memmap2::Mmap,
    file: &'f File,
    at: u64,
}

/// A `.debug_str` with only the strings the root entries of `dwarf`'s
/// units name, read from `file`; `None` when it cannot be made (the
/// section is then read through the mapping, as before).
pub(super) fn sparse<'f>(
    file: &'f File,
    section: &StrSection,
    dwarf: &gimli::Dwarf<Slice<'_>>,
) -> Option<Strings<'f>> {
    let mut map = memmap2::MmapMut::map_anon(usize::try_from(section.len).ok()?).ok()?;
    for offset in root_strings(dwarf) {
        let Some(s) = read_string(file, section, offset) else {
            continue;
        };
        // (The terminating zero is there already.)
        let start = usize::try_from(offset).ok()?;
        map.get_mut(start..start + s.len())?.copy_from_slice(&s);
    }
    Some(Strings {
        map: map.make_read_only().ok()?,
        file,
        at: section.at,
    })
}

impl Strings<'_> {
    /// The string a lookup found at `name`, when `name` lies in the copy:
    /// read from the file. `None` for a string from another section.
    pub(super) fn name(&self, name: &Slice<'_>) -> Option<Vec<u8>> {
        let base = self.map.as_ptr() as usize;
        let at = name.slice().as_ptr() as usize;
        let offset = at.checked_sub(base).filter(|&o| o < self.map.len())?;
        let section = StrSection {
            at: self.at,
            len: self.map.len() as u64,
        };
        read_string(self.file, &section, offset as u64)
    }
}

/// The `.debug_str` offsets of the names and directories of `dwarf`'s
/// units, read from their root entries without reading the strings.
fn root_strings(dwarf: &gimli::Dwarf<Slice<'_>>) -> Vec<u64> {
    let mut out = Vec::new();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        // (A placeholder of `units` has no abbreviations: skipped.)
        let Ok(abbrevs) = header.abbreviations(&dwarf.debug_abbrev) else {
            continue;
        };
        let mut entries = header.entries(&abbrevs);
        let Ok(Some(root)) = entries.next_dfs() else {
            continue;
        };
        let base = match root.attr_value(gimli::DW_AT_str_offsets_base) {
            Some(gimli::AttributeValue::DebugStrOffsetsBase(b)) => b,
            _ => gimli::DebugStrOffsetsBase::default_for_encoding_and_file(
                header.encoding(),
                gimli::DwarfFileType::Main,
            ),
        };
        for name in [gimli::DW_AT_name, gimli::DW_AT_comp_dir] {
            let offset = match root.attr_value(name) {
                Some(gimli::AttributeValue::DebugStrRef(o)) => Some(o),
                Some(gimli::AttributeValue::DebugStrOffsetsIndex(i)) => dwarf
                    .debug_str_offsets
                    .get_str_offset(header.format(), base, i)
                    .ok(),
                _ => None,
            };
            out.extend(offset.map(|o| o.0 as u64));
        }
    }
    out
}

/// The string at `offset` of the section, without its terminating zero
/// (cut at the section's end or at [`MAX`]).
fn read_string(file: &File, section: &StrSection, offset: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = offset;
    while at < section.len && out.len() < MAX {
        let n = (section.len - at).min(STEP as u64) as usize;
        let mut buf = [0u8; STEP];
        read_at(file, &mut buf[..n], section.at + at).ok()?;
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Some(out);
        }
        out.extend_from_slice(&buf[..n]);
        at += n as u64;
    }
    out.truncate(MAX);
    Some(out)
}
