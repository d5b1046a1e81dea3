//! The table of MAPI buffer chains behind `MapiBuffers`, in both builds:
//! every block its functions allocated and have not released yet, roots
//! with their children, and the quarantine of freed roots. The live
//! backend also reads it for reports (`live/buffers.rs`).

use std::alloc::Layout;
use std::collections::{HashMap, VecDeque};

use crate::sync::Mutex;
use mapileak_reports::StackId;

use crate::backend;
use crate::buffer_abi::{AllocateBufferFn, AllocateMoreFn, FreeBufferFn};

/// Frees held back before their memory is released (none without the
/// instrumentation).
pub const QUARANTINE: usize = if backend::LIVE { 4096 } else { 0 };
/// Bytes held back at most: a few large freed buffers do not pin more.
pub const QUARANTINE_BYTES: u64 = if backend::LIVE { 16 << 20 } else { 0 };

/// MAPI's own buffer functions, wrapped.
#[derive(Clone, Copy)]
pub(crate) struct Real {
    pub(crate) alloc: AllocateBufferFn,
    pub(crate) more: AllocateMoreFn,
    pub(crate) free: FreeBufferFn,
}

/// One block these functions allocated: a root or a child of one.
pub(crate) struct Record {
    pub(crate) session: u64,
    pub(crate) stack: StackId,
    pub(crate) size: u64,
    /// The chain's root, for a child.
    pub(crate) root: Option<usize>,
    pub(crate) children: Vec<usize>,
    pub(crate) freed: bool,
    /// Handed to the caller (`MapiBuffers::to_caller`): not the logon's to free.
    pub(crate) to_caller: bool,
    /// The object that owns it (0: none): a leaked buffer of a leaked
    /// object is listed under it.
    pub(crate) owner: u64,
    /// Where the memory came from: `None` for the real MAPI functions.
    pub(crate) layout: Option<Layout>,
    pub(crate) real: Option<Real>,
}

/// Every block these functions allocated and have not released yet.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) records: HashMap<usize, Record>,
    /// Freed roots, oldest first, with the bytes of their chains.
    quarantine: VecDeque<(usize, u64)>,
    quarantined_bytes: u64,
}

pub(crate) static TABLE: Mutex<Option<Table>> = Mutex::new(None);

pub(crate) fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    f(TABLE.lock().get_or_insert_with(Table::default))
}

impl Table {
    /// Puts the freed chain of `root` (`bytes` in all) in the quarantine;
    /// returns the oldest ones that leave it.
    pub(crate) fn quarantine(&mut self, root: usize, bytes: u64) -> Vec<usize> {
        self.quarantine.push_back((root, bytes));
        self.quarantined_bytes += bytes;
        let mut release = Vec::new();
        while self.quarantine.len() > QUARANTINE
            || (self.quarantined_bytes > QUARANTINE_BYTES && self.quarantine.len() > 1)
        {
            if let Some((old, bytes)) = self.quarantine.pop_front() {
                self.quarantined_bytes -= bytes;
                release.push(old);
            }
        }
        release
    }
}
