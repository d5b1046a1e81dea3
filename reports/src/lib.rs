//! The report model of mapileak, pure data: what leaked in one MAPI logon
//! session, the v1 JSON wire format, and leak signatures.
//!
//! Nothing here runs inside a provider's allocator and nothing here holds
//! global state, so the CLI (`mapileak-probe`) and the library share it.
//!
//! # Wire format (v1)
//!
//! A report is one JSON object. `format` is always `"mapileak-report"` and
//! `version` is [`VERSION`]; a reader refuses other versions rather than guess.
//! The field names below are a contract relied on by CI scripts: new fields
//! may be added, existing ones keep their name, type and meaning.
//!
//! | field | meaning |
//! |---|---|
//! | `tool` | `name` and `version` of the writer |
//! | `process` | the writing process's id (object ids are unique within it) |
//! | `session` | `id`, `provider` (`address_book`, `message_store`, `transport`, `unknown` for objects outside any logon), `label`, `event` (`logoff`, `shutdown`, `exit`) |
//! | `summary` | counts: `leaked_objects`, `leak_roots`, `heap_blocks`, `heap_bytes`, `mapi_buffers`, `findings`, `heap_untracked` (attributed heap blocks the live table could not hold, process-wide; 0 when absent), `stacks_missing` (stack captures that found no room, process-wide; 0 when absent), `tables_refused` (tables the system refused to reserve: `stacks`, `heap`; absent when none) |
//! | `objects[]` | leaked objects: `id`, `kind`, `label`, `refcount`, `root`, `parent` (the leaked holder it is shown under), `opened_from`, `signature`, `created` (stack id), `events[]`, `events_dropped` (history older than the 4,096 events kept per object) |
//! | `heap[]` | live heap blocks per allocation site: `stack`, `blocks`, `bytes`, `signature` |
//! | `buffers[]` | unfreed MAPI buffers: `stack`, `bytes`, `children`, `signature`, `owner` (the leaked object it belongs to, a MAPI utility object's buffer: part of that leak, not a root; absent for a root) |
//! | `findings[]` | protocol findings: `rule`, `severity`, `message`, `stack`, `object`, `subject` (`kind`, `label`, `created` stack and, history on, `events` of that object), `also` (another call involved: for an over-release, the Release that found the count at 0), `signature`, `repeated` (how many more of this rule at this same call came after the kept ones: at most 8 are kept per rule and call; absent when none) |
//! | `stacks[]` | `id`, `frames[]` of `function`, `file`, `line` (innermost first); `raw[]` of `module`, `address` instead of frames in a report written with `MAPILEAK_SYMBOLS=offline` |
//! | `modules[]` | in such a report, the modules raw frames are in: `path`, `size`, `build_id` (ELF), `pdb` (`guid`, `age`, `path`: PE) |
#![deny(missing_docs)]
// One exception, `symbols` mapping a module's file, says why it holds.
#![deny(unsafe_code)]

#[cfg(test)]
mod api;
pub mod growth;
pub mod html;
mod model;
pub mod names;
mod read;
mod rule;
pub mod signature;
#[cfg(feature = "symbolize")]
pub mod symbols;
pub mod text;

pub use model::*;
pub use read::{
    MAX_REPORT_BYTES, ReadError, from_json, read_capped, read_file, write_atomic,
    write_atomic_with, write_new_while, write_new_with,
};
pub use rule::Rule;
