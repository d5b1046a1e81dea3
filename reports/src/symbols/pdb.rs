//! Names from a PDB file, for a module Microsoft's toolchain built: its
//! DLL carries no debug info of its own, only the record (GUID, age, path)
//! of the PDB that does. A report written offline in the host (a 32-bit
//! Outlook, say) is named here on the developer's machine, as dbghelp names
//! the frames in the process: the function (no arguments, no return type),
//! the calls inlined into it, file and line.

use std::path::Path;

use pdb_addr2line::pdb;

use crate::names::canonical;
use crate::{Frame, Pdb};

/// The PDB at `path`, checked to be the one `expected` records.
pub(super) struct PdbFile {
    pdb: pdb::PDB<'static, std::fs::File>,
    /// Where it is, for messages.
    path: std::path::PathBuf,
}

impl PdbFile {
    /// Opens `path` and checks its GUID and age against `expected`'s.
    pub(super) fn open(path: &Path, expected: &Pdb) -> Result<PdbFile, String> {
        let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let file = std::fs::File::open(path).map_err(|e| at(&e))?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(at(&"not a file"));
        }
        let mut pdb = pdb::PDB::open(file).map_err(|e| at(&e))?;
        let info = pdb.pdb_information().map_err(|e| at(&e))?;
        // The module's record carries the age of the PDB's debug info stream
        // (the PDB's own header counts every write).
        let age = pdb
            .debug_information()
            .ok()
            .and_then(|d| d.age())
            .unwrap_or(info.age);
        let guid = info.guid.as_hyphenated().to_string().to_uppercase();
        if !guid.eq_ignore_ascii_case(&expected.guid) || age != expected.age {
            return Err(format!(
                "{}: another build's PDB than the report's (GUID {guid}, age {age}; the report's: {}, {})",
                path.display(),
                expected.guid,
                expected.age
            ));
        }
        Ok(PdbFile {
            pdb,
            path: path.to_owned(),
        })
    }

    /// The frames at each of `rvas` (return addresses, relative to the
    /// image), innermost first; empty where the PDB knows nothing.
    pub(super) fn frames(self, rvas: &[u32]) -> Result<Vec<Vec<Frame>>, String> {
        let path = self.path;
        let at = |e: pdb_addr2line::Error| format!("{}: {e}", path.display());
        let data = pdb_addr2line::ContextPdbData::try_from_pdb(self.pdb).map_err(at)?;
        // As dbghelp names a function: no return type, no arguments.
        let flags = pdb_addr2line::TypeFormatterFlags::NO_FUNCTION_RETURN
            | pdb_addr2line::TypeFormatterFlags::NO_ARGUMENTS;
        let context = data.make_context_with_formatter_flags(flags).map_err(at)?;
        Ok(rvas
            .iter()
            .map(|&rva| {
                // The call is the instruction before the return address.
                let found = context.find_frames(rva.wrapping_sub(1)).ok().flatten();
                found.map_or_else(Vec::new, |f| {
                    f.frames
                        .into_iter()
                        .map(|frame| {
                            // A public symbol's name (a function the PDB
                            // has no private record of) is still decorated.
                            let name = frame
                                .function
                                .map_or_else(|| "??".to_owned(), |f| super::demangle(f.as_bytes()));
                            Frame::new(
                                canonical(&name),
                                frame.file.map(|f| f.into_owned()),
                                frame.line,
                            )
                        })
                        .collect()
                })
            })
            .collect())
    }
}
