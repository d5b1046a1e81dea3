//! MAPI buffers: `MAPIAllocateBuffer`, `MAPIAllocateMore`, `MAPIFreeBuffer`
//! with MAPI's semantics, tracked per session.
//!
//! - `AllocateMore(cb, parent)` links the new block to `parent`'s chain;
//!   freeing the parent frees the chain. Freeing a child is a bug
//!   (`buffer-free-child`), as is freeing twice (`buffer-double-free`) or
//!   freeing memory MAPI did not allocate (`buffer-foreign-free`, in-process
//!   only): each is a finding with the stack of the bad call, and the call
//!   is not passed on, so the provider does not crash. `FreeBuffer(NULL)`
//!   does nothing. Wrapping MAPI ([`MapiBuffers::wrap`]), memory these
//!   calls did not allocate is MAPI's own: freeing it, or `AllocateMore`
//!   on it, goes to MAPI's function unchanged.
//! - A buffer still allocated when its session logs off is listed in the
//!   report's `buffers[]` (rule `buffer-leaked`): allocating stack, bytes of
//!   the chain, number of children.
//!
//! Two uses: [`MapiBuffers::wrap`] around the real function pointers a
//! provider receives in `*ProviderInit` (the calls go through, checked), and
//! [`MapiBuffers::in_process`], a complete implementation for tests and
//! platforms without MAPI. Freed buffers stay in a quarantine of the last
//! [`QUARANTINE`] frees (and at most [`QUARANTINE_BYTES`]) before their
//! memory is released, so an address is not reused while a second free of
//! it can still be recognized.
//!
//! One table of chains serves both builds. Without the instrumentation
//! nothing is recorded or reported (no stacks, no findings, no quarantine)
//! but `in_process` keeps MAPI's semantics as this build does (a bad free
//! is not passed on), and `wrap` calls MAPI's functions directly.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;

use mapileak_reports::Rule;

use crate::backend::{self, buffers as imp};
use crate::chains::{Real, Record, Table, with_table};

pub use crate::chains::{QUARANTINE, QUARANTINE_BYTES};
use crate::{ObjectId, Session};

pub use crate::buffer_abi::*;

/// MAPI's buffer functions, tracked. See the module documentation.
pub struct MapiBuffers {
    real: Option<Real>,
}

/// What a `MAPIFreeBuffer` comes to.
enum Verdict {
    /// Freed: these quarantined chains leave the quarantine for good.
    Free(Vec<usize>),
    /// A bad call: not passed on, a finding of the session's (with the
    /// buffer's allocation, when it is one of these functions').
    Bad(Rule, String, u64, Option<imp::StackId>),
    /// MAPI's own memory: its own function frees it.
    Theirs(Real),
}

impl MapiBuffers {
    /// A complete in-process implementation (memory from the system allocator).
    pub fn in_process() -> MapiBuffers {
        MapiBuffers::started();
        MapiBuffers { real: None }
    }

    /// What the first logon or object does, done here too: the process-end
    /// report (the only one with buffers from outside any session) and the
    /// `fork` handlers (this value's table has a lock) are registered for
    /// a provider that allocates before it logs on, or never does.
    fn started() {
        backend::env::init();
        backend::exit::register();
    }

    /// Checks and records the calls, and passes the valid ones to MAPI's.
    ///
    /// # Safety
    ///
    /// The three pointers must be MAPI's functions (or ones with their
    /// contract), callable from any thread for as long as this value and the
    /// buffers it allocated live.
    pub unsafe fn wrap(
        alloc: AllocateBufferFn,
        more: AllocateMoreFn,
        free: FreeBufferFn,
    ) -> MapiBuffers {
        MapiBuffers::started();
        MapiBuffers {
            real: Some(Real { alloc, more, free }),
        }
    }

    /// MAPI's functions, when the calls go straight to them: wrapping MAPI
    /// without the instrumentation.
    fn direct(&self) -> Option<Real> {
        self.real.filter(|_| !backend::LIVE)
    }

    /// `MAPIAllocateBuffer(cb, &p)`: a new root buffer of the current
    /// session (the thread's [`Session::enter`] scope). Outside any scope
    /// it belongs to no session: it is not in any Logoff report, only in
    /// the process-end one. Code that passes sessions explicitly uses
    /// [`MapiBuffers::allocate_buffer_in`].
    #[inline(never)]
    pub fn allocate_buffer(&self, cb: u32) -> Result<*mut c_void, i32> {
        self.allocate_root(cb, imp::current_session())
    }

    /// `MAPIAllocateBuffer(cb, &p)` for `session`, whatever scope the
    /// thread is in (the explicit style of `Tracked::in_session`).
    #[inline(never)]
    pub fn allocate_buffer_in(&self, session: Session, cb: u32) -> Result<*mut c_void, i32> {
        self.allocate_root(cb, backend::number(session.id))
    }

    fn allocate_root(&self, cb: u32, session: u64) -> Result<*mut c_void, i32> {
        if let Some(real) = self.direct() {
            return real.allocate(cb, None).map(|(p, _)| p);
        }
        let _quiet = imp::quiet();
        let (p, layout) = self.raw_alloc(cb, None)?;
        self.record(p, layout, cb, None, session);
        Ok(p)
    }

    /// `MAPIAllocateMore(cb, parent, &p)`: a block freed with `parent`'s chain.
    ///
    /// # Safety
    ///
    /// `parent` is a buffer from this value's `allocate_*`. (This build
    /// checks it and refuses others with `MAPI_E_INVALID_PARAMETER`; a
    /// release build wrapping MAPI passes it to MAPI unchecked.)
    #[inline(never)]
    pub unsafe fn allocate_more(&self, cb: u32, parent: *mut c_void) -> Result<*mut c_void, i32> {
        if let Some(real) = self.direct() {
            return real.allocate(cb, Some(parent)).map(|(p, _)| p);
        }
        let _quiet = imp::quiet();
        let found = with_table(|t| match t.records.get(&(parent as usize)) {
            Some(r) if !r.freed => Some((r.root, r.size, r.session)),
            _ => None,
        });
        let Some((root_of_parent, parent_size, session)) = found else {
            // Wrapping MAPI: a parent these calls did not allocate is
            // MAPI's (a property array from a profile section, one
            // handed to the caller): MAPI's own function decides.
            return match self.real {
                Some(_) => self.raw_alloc(cb, Some(parent)).map(|(p, _)| p),
                None => Err(MAPI_E_INVALID_PARAMETER),
            };
        };
        if root_of_parent.is_some() {
            // MAPI asks for a MAPIAllocateBuffer block; a child still works
            // (it joins its root's chain), so this is a finding, not a refusal.
            imp::finding(session, Rule::BufferMoreOnChild, None, || {
                format!(
                    "MAPIAllocateMore({cb}) given a {parent_size}-byte MAPIAllocateMore child as its parent; MAPI requires a MAPIAllocateBuffer block"
                )
            });
        }
        let root = root_of_parent.unwrap_or(parent as usize);
        let (p, layout) = self.raw_alloc(cb, Some(parent))?;
        self.record(p, layout, cb, Some(root), 0);
        Ok(p)
    }

    /// `MAPIFreeBuffer(p)`: frees a root buffer and its chain. Returns `S_OK`
    /// (0); a bad call is a finding and is not passed on.
    ///
    /// # Safety
    ///
    /// `buffer` is null or a root buffer from this value's `allocate_buffer`,
    /// not freed yet. (This build checks, reports a violation as a finding
    /// and does not pass it on; a release build wrapping MAPI passes it to
    /// MAPI unchecked.)
    #[inline(never)]
    pub unsafe fn free_buffer(&self, buffer: *mut c_void) -> u32 {
        if let Some(real) = self.direct() {
            // SAFETY: `wrap`'s contract and the caller's.
            return unsafe { (real.free)(buffer) };
        }
        if buffer.is_null() {
            return 0;
        }
        let _quiet = imp::quiet();
        match with_table(|t| self.verdict(t, buffer as usize)) {
            Verdict::Free(release) => {
                for root in release {
                    release_chain(root);
                }
                0
            }
            Verdict::Bad(rule, message, session, allocated) => {
                imp::finding(session, rule, allocated, || message);
                0
            }
            // SAFETY: `wrap`'s caller vouched for the function; the
            // pointer is the provider's, passed as MAPI would get it.
            Verdict::Theirs(real) => unsafe { (real.free)(buffer) },
        }
    }

    /// What freeing `addr` comes to; a good free marks the chain freed and
    /// quarantines it.
    fn verdict(&self, t: &mut Table, addr: usize) -> Verdict {
        match t.records.get(&addr) {
            // Wrapping MAPI, memory these calls did not allocate is
            // MAPI's (what IProfSect::GetProps returned, say): it goes
            // to MAPI's own function unchanged, and is no finding.
            None => match self.real {
                Some(real) => Verdict::Theirs(real),
                None => Verdict::Bad(
                    Rule::BufferForeignFree,
                    format!(
                        "MAPIFreeBuffer({addr:#x}) on memory MAPIAllocateBuffer did not allocate"
                    ),
                    imp::current_session(),
                    None,
                ),
            },
            Some(r) if r.freed => Verdict::Bad(
                Rule::BufferDoubleFree,
                format!(
                    "MAPIFreeBuffer called a second time on a {}-byte MAPI buffer",
                    r.size
                ),
                r.session,
                Some(r.stack),
            ),
            Some(r) if r.root.is_some() => Verdict::Bad(
                Rule::BufferFreeChild,
                format!(
                    "MAPIFreeBuffer called on a {}-byte MAPIAllocateMore child; only its parent may be freed, which frees the chain",
                    r.size
                ),
                r.session,
                Some(r.stack),
            ),
            Some(r) => {
                let chain: Vec<usize> = std::iter::once(addr)
                    .chain(r.children.iter().copied())
                    .collect();
                let mut bytes = 0;
                for a in &chain {
                    if let Some(c) = t.records.get_mut(a) {
                        c.freed = true;
                        bytes += c.size;
                    }
                }
                Verdict::Free(t.quarantine(addr, bytes))
            }
        }
    }
    /// The provider hands `buffer` (a root, with its chain) to its caller —
    /// `GetProps`' property array, `QueryRows`' row set — who frees it with
    /// MAPI's own `MAPIFreeBuffer`, a call this wrapper never sees. From now
    /// on the buffer is not the logon's to free and no report lists it
    /// (with [`MapiBuffers::in_process`], `free_buffer` still frees it).
    /// `false`, changing nothing, for null or for what is not a live root
    /// buffer of these functions.
    pub fn to_caller(&self, buffer: *mut c_void) -> bool {
        if self.direct().is_some() {
            return !buffer.is_null();
        }
        {
            let _quiet = imp::quiet();
            let addr = buffer as usize;
            with_table(|t| {
                let Some(r) = t.records.get_mut(&addr) else {
                    return false;
                };
                if r.freed || r.to_caller || r.root.is_some() {
                    return false;
                }
                if r.layout.is_some() {
                    // Our memory: the caller frees it through us.
                    r.to_caller = true;
                } else {
                    // MAPI's: MAPI frees it, and may hand the address out again.
                    let children = std::mem::take(&mut r.children);
                    t.records.remove(&addr);
                    for c in children {
                        t.records.remove(&c);
                    }
                }
                true
            })
        }
    }

    /// The provider hands a row set to its caller — `QueryRows`' `SRowSet`,
    /// or an `ADRLIST`, which has the same layout — who frees it with
    /// `FreeProws` (`FreePadrlist`): each row's property array and the set
    /// itself, all with MAPI's `MAPIFreeBuffer`. Hands the set and every
    /// row's property array over as [`to_caller`](Self::to_caller) does;
    /// `false` when the set itself is not a live root buffer of these
    /// functions (rows are handed over all the same).
    ///
    /// # Safety
    ///
    /// `rows` is null or points to a readable `SRowSet` (`cRows`, then
    /// that many `SRow`s).
    pub unsafe fn rows_to_caller(&self, rows: *mut c_void) -> bool {
        if rows.is_null() {
            return false;
        }
        /// MAPI's `SRow` (and `ADRENTRY`).
        #[repr(C)]
        struct Row {
            pad: u32,
            values: u32,
            props: *mut c_void,
        }
        /// MAPI's `SRowSet` (and `ADRLIST`), its rows after the count.
        #[repr(C)]
        struct RowSet {
            count: u32,
            rows: [Row; 0],
        }
        let set = rows.cast::<RowSet>();
        // SAFETY: the caller's promise: a readable row set, its `count`
        // rows after the count.
        let props: Vec<*mut c_void> = unsafe {
            let count = (*set).count as usize;
            let first = std::ptr::addr_of!((*set).rows).cast::<Row>();
            (0..count).map(|i| (*first.add(i)).props).collect()
        };
        for p in props.into_iter().filter(|p| !p.is_null()) {
            self.to_caller(p);
        }
        self.to_caller(rows)
    }

    /// Makes `owner` the owner of `buffer` (a live root of these
    /// functions): when both leak, the buffer is listed under the object,
    /// not as a leak root of its own. `false` for what is not a live root.
    pub fn set_owner(&self, buffer: *mut c_void, owner: ObjectId) -> bool {
        if self.direct().is_some() {
            return !buffer.is_null();
        }
        with_table(|t| match t.records.get_mut(&(buffer as usize)) {
            Some(r) if !r.freed && r.root.is_none() => {
                r.owner = owner.get();
                true
            }
            _ => false,
        })
    }

    /// Records a new block: a root of `session`, or a child joining `root`'s
    /// chain (and session).
    fn record(
        &self,
        p: *mut c_void,
        layout: Option<Layout>,
        cb: u32,
        root: Option<usize>,
        session: u64,
    ) {
        let stack = imp::capture();
        with_table(|t| {
            let session = match root {
                None => session,
                Some(r) => t.records.get(&r).map_or(0, |r| r.session),
            };
            if let Some(r) = root.and_then(|r| t.records.get_mut(&r)) {
                r.children.push(p as usize);
            }
            t.records.insert(
                p as usize,
                Record {
                    session,
                    stack,
                    size: u64::from(cb),
                    root,
                    children: Vec::new(),
                    freed: false,
                    to_caller: false,
                    owner: imp::buffer_owner(),
                    layout,
                    real: self.real,
                },
            );
        });
    }

    fn raw_alloc(
        &self,
        cb: u32,
        parent: Option<*mut c_void>,
    ) -> Result<(*mut c_void, Option<Layout>), i32> {
        match self.real {
            Some(real) => real.allocate(cb, parent),
            None => {
                let (p, layout) = in_process_block(cb)?;
                Ok((p as *mut c_void, Some(layout)))
            }
        }
    }
}

impl Real {
    /// `MAPIAllocateBuffer`, or `MAPIAllocateMore` on `parent`.
    fn allocate(
        self,
        cb: u32,
        parent: Option<*mut c_void>,
    ) -> Result<(*mut c_void, Option<Layout>), i32> {
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: `wrap`'s caller vouched for the functions; `p` is a
        // valid out pointer and `parent` a buffer the provider passed.
        let hr = unsafe {
            match parent {
                None => (self.alloc)(cb, &mut p),
                Some(parent) => (self.more)(cb, parent, &mut p),
            }
        };
        if hr < 0 || p.is_null() {
            Err(if hr < 0 { hr } else { MAPI_E_NOT_ENOUGH_MEMORY })
        } else {
            Ok((p, None))
        }
    }
}

/// While the returned guard lives, the MAPI buffers the calling thread
/// allocates belong to `owner`: wrap it around the calls that make a MAPI
/// utility object built on the provider's allocators (`CreateIProp`,
/// `CreateTable`) and the calls into it. When the object and such a buffer
/// leak, the buffer is listed under the object, not as a root of its own.
/// Guards nest. Zero-sized without the instrumentation.
pub fn owned_by(owner: ObjectId) -> BufferOwner {
    BufferOwner {
        previous: imp::enter_owner(owner.0),
        _not_send: std::marker::PhantomData,
    }
}

/// The guard of [`owned_by`]; restores the previous owner when dropped.
#[derive(Debug)]
#[must_use = "the buffers belong to the owner only while the guard lives"]
pub struct BufferOwner {
    previous: backend::Id,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for BufferOwner {
    fn drop(&mut self) {
        imp::leave_owner(self.previous);
    }
}

/// An in-process buffer's memory: at least one byte, 16-aligned, from the
/// system allocator; free it with this layout.
fn in_process_block(cb: u32) -> Result<(usize, Layout), i32> {
    let layout =
        Layout::from_size_align(cb.max(1) as usize, 16).map_err(|_| MAPI_E_NOT_ENOUGH_MEMORY)?;
    // SAFETY: the layout's size is at least 1.
    let p = unsafe { System.alloc(layout) };
    if p.is_null() {
        Err(MAPI_E_NOT_ENOUGH_MEMORY)
    } else {
        Ok((p as usize, layout))
    }
}

/// Releases a quarantined chain's memory and forgets its records.
fn release_chain(root: usize) {
    let records: Vec<(usize, Record)> = with_table(|t| {
        let children = t
            .records
            .get(&root)
            .map(|r| r.children.clone())
            .unwrap_or_default();
        std::iter::once(root)
            .chain(children)
            .filter_map(|a| t.records.remove(&a).map(|r| (a, r)))
            .collect()
    });
    for (addr, r) in records {
        match (r.layout, r.real) {
            // SAFETY: allocated by `raw_alloc` with this layout, freed once
            // (its record is gone now).
            (Some(layout), _) => unsafe { System.dealloc(addr as *mut u8, layout) },
            // SAFETY: a root MAPI allocated; MAPI frees the chain with it.
            (None, Some(real)) if r.root.is_none() => unsafe {
                (real.free)(addr as *mut c_void);
            },
            _ => {}
        }
    }
}
