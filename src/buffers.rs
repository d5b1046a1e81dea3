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
#![allow(unsafe_code)]
// Without the instrumentation the calls go straight to MAPI's functions,
// or to a plain in-process implementation with MAPI's chain semantics;
// what the live path reads is then unused.
#![cfg_attr(not(any(debug_assertions, feature = "force")), allow(unused_variables))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
#[cfg(any(debug_assertions, feature = "force"))]
use std::collections::VecDeque;
use std::ffi::c_void;

#[cfg(any(debug_assertions, feature = "force"))]
use mapileak_reports::Rule;
#[cfg(any(debug_assertions, feature = "force"))]
use parking_lot::Mutex;

use crate::ObjectId;
use crate::context::Session;
#[cfg(any(debug_assertions, feature = "force"))]
use crate::{
    context::{self, Quiet},
    registry::{self, PendingFinding},
    stack,
};

pub use crate::buffer_abi::*;

/// Frees held back before their memory is released (none without the
/// instrumentation).
pub const QUARANTINE: usize = if crate::LIVE { 4096 } else { 0 };
/// Bytes held back at most: a few large freed buffers do not pin more.
pub const QUARANTINE_BYTES: u64 = if crate::LIVE { 16 << 20 } else { 0 };

#[derive(Clone, Copy)]
struct Real {
    alloc: AllocateBufferFn,
    more: AllocateMoreFn,
    free: FreeBufferFn,
}

/// MAPI's buffer functions, tracked. See the module documentation.
pub struct MapiBuffers {
    real: Option<Real>,
    /// Without the instrumentation, in-process: each root's chain, with
    /// layouts.
    #[cfg(not(any(debug_assertions, feature = "force")))]
    chains: std::sync::Mutex<HashMap<usize, Vec<(usize, Layout)>>>,
}

#[cfg(any(debug_assertions, feature = "force"))]
struct Record {
    session: u64,
    stack: stack::StackId,
    size: u64,
    /// The chain's root, for a child.
    root: Option<usize>,
    children: Vec<usize>,
    freed: bool,
    /// Handed to the caller ([`MapiBuffers::to_caller`]): not the logon's to free.
    to_caller: bool,
    /// The object that owns it (0: none): a leaked buffer of a leaked
    /// object is listed under it.
    owner: u64,
    /// Where the memory came from: `None` for the real MAPI functions.
    layout: Option<Layout>,
    real: Option<Real>,
}

#[cfg(any(debug_assertions, feature = "force"))]
#[derive(Default)]
struct Table {
    records: HashMap<usize, Record>,
    /// Freed roots, oldest first, with the bytes of their chains.
    quarantine: VecDeque<(usize, u64)>,
    quarantined_bytes: u64,
}

#[cfg(any(debug_assertions, feature = "force"))]
static TABLE: Mutex<Option<Table>> = Mutex::new(None);

#[cfg(all(unix, any(debug_assertions, feature = "force")))]
thread_local! {
    static HELD_FOR_FORK: std::cell::RefCell<Option<parking_lot::MutexGuard<'static, Option<Table>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Takes the buffer table's lock and keeps it on this thread (before `fork`).
#[cfg(all(unix, any(debug_assertions, feature = "force")))]
pub(crate) fn hold_for_fork() {
    let held = TABLE.lock();
    let _ = HELD_FOR_FORK.try_with(|h| *h.borrow_mut() = Some(held));
}

/// Releases what `hold_for_fork` took (after `fork`).
#[cfg(all(unix, any(debug_assertions, feature = "force")))]
pub(crate) fn release_after_fork() {
    // The guards drop here, releasing the locks.
    drop(HELD_FOR_FORK.try_with(|h| h.borrow_mut().take()));
}

#[cfg(any(debug_assertions, feature = "force"))]
fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    f(TABLE.lock().get_or_insert_with(Table::default))
}

impl MapiBuffers {
    /// A complete in-process implementation (memory from the system allocator).
    pub fn in_process() -> MapiBuffers {
        MapiBuffers {
            real: None,
            #[cfg(not(any(debug_assertions, feature = "force")))]
            chains: Default::default(),
        }
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
        MapiBuffers {
            real: Some(Real { alloc, more, free }),
            #[cfg(not(any(debug_assertions, feature = "force")))]
            chains: Default::default(),
        }
    }

    /// `MAPIAllocateBuffer(cb, &p)`: a new root buffer of the current
    /// session (the thread's [`Session::enter`] scope). Outside any scope
    /// it belongs to no session: it is not in any Logoff report, only in
    /// the process-end one. Code that passes sessions explicitly uses
    /// [`MapiBuffers::allocate_buffer_in`].
    #[inline(never)]
    pub fn allocate_buffer(&self, cb: u32) -> Result<*mut c_void, i32> {
        #[cfg(any(debug_assertions, feature = "force"))]
        return {
            let _quiet = Quiet::new();
            let (p, layout) = self.raw_alloc(cb, None)?;
            self.record(p, layout, cb, None, context::current_id());
            Ok(p)
        };
        #[cfg(not(any(debug_assertions, feature = "force")))]
        self.plain_allocate_buffer(cb)
    }

    /// `MAPIAllocateBuffer(cb, &p)` for `session`, whatever scope the
    /// thread is in (the explicit style of `Tracked::in_session`).
    #[inline(never)]
    pub fn allocate_buffer_in(&self, session: Session, cb: u32) -> Result<*mut c_void, i32> {
        #[cfg(any(debug_assertions, feature = "force"))]
        return {
            let _quiet = Quiet::new();
            let (p, layout) = self.raw_alloc(cb, None)?;
            self.record(p, layout, cb, None, session.id());
            Ok(p)
        };
        #[cfg(not(any(debug_assertions, feature = "force")))]
        self.plain_allocate_buffer(cb)
    }

    /// `MAPIAllocateMore(cb, parent, &p)`: a block freed with `parent`'s chain.
    ///
    /// # Safety
    ///
    /// `parent` is a buffer from this value's `allocate_*`. (This build
    /// checks it and refuses others with `MAPI_E_INVALID_PARAMETER`; a
    /// release build passes it to MAPI unchecked.)
    #[inline(never)]
    pub unsafe fn allocate_more(&self, cb: u32, parent: *mut c_void) -> Result<*mut c_void, i32> {
        #[cfg(any(debug_assertions, feature = "force"))]
        return {
            let _quiet = Quiet::new();
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
                registry::add_finding(
                    session,
                    PendingFinding::error(
                        Rule::BufferMoreOnChild,
                        format!(
                            "MAPIAllocateMore({cb}) given a {parent_size}-byte MAPIAllocateMore child as its parent; MAPI requires a MAPIAllocateBuffer block"
                        ),
                        stack::capture(),
                    ),
                );
            }
            let root = root_of_parent.unwrap_or(parent as usize);
            let (p, layout) = self.raw_alloc(cb, Some(parent))?;
            self.record(p, layout, cb, Some(root), 0);
            Ok(p)
        };
        // SAFETY: the caller's promise, passed on.
        #[cfg(not(any(debug_assertions, feature = "force")))]
        unsafe {
            self.plain_allocate_more(cb, parent)
        }
    }

    /// `MAPIFreeBuffer(p)`: frees a root buffer and its chain. Returns `S_OK`
    /// (0); a bad call is a finding and is not passed on.
    ///
    /// # Safety
    ///
    /// `buffer` is null or a root buffer from this value's `allocate_buffer`,
    /// not freed yet. (This build checks, reports a violation as a finding
    /// and does not pass it on; a release build passes it to MAPI unchecked.)
    #[inline(never)]
    pub unsafe fn free_buffer(&self, buffer: *mut c_void) -> u32 {
        #[cfg(any(debug_assertions, feature = "force"))]
        return {
            if buffer.is_null() {
                return 0;
            }
            let _quiet = Quiet::new();
            let addr = buffer as usize;
            enum Verdict {
                Free(Vec<usize>),
                Bad(Rule, String, u64),
                Theirs(Real),
            }
            let verdict = with_table(|t| match t.records.get(&addr) {
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
                        context::current_id(),
                    ),
                },
                Some(r) if r.freed => Verdict::Bad(
                    Rule::BufferDoubleFree,
                    format!(
                        "MAPIFreeBuffer called a second time on a {}-byte MAPI buffer",
                        r.size
                    ),
                    r.session,
                ),
                Some(r) if r.root.is_some() => Verdict::Bad(
                    Rule::BufferFreeChild,
                    format!(
                        "MAPIFreeBuffer called on a {}-byte MAPIAllocateMore child; only its parent may be freed, which frees the chain",
                        r.size
                    ),
                    r.session,
                ),
                Some(r) => {
                    let chain: Vec<usize> = std::iter::once(addr)
                        .chain(r.children.iter().copied())
                        .collect();
                    for a in &chain {
                        if let Some(c) = t.records.get_mut(a) {
                            c.freed = true;
                        }
                    }
                    let bytes: u64 = chain
                        .iter()
                        .filter_map(|a| t.records.get(a))
                        .map(|c| c.size)
                        .sum();
                    t.quarantine.push_back((addr, bytes));
                    t.quarantined_bytes += bytes;
                    let mut release = Vec::new();
                    while t.quarantine.len() > QUARANTINE
                        || (t.quarantined_bytes > QUARANTINE_BYTES && t.quarantine.len() > 1)
                    {
                        if let Some((old, bytes)) = t.quarantine.pop_front() {
                            t.quarantined_bytes -= bytes;
                            release.push(old);
                        }
                    }
                    Verdict::Free(release)
                }
            });
            match verdict {
                Verdict::Free(release) => {
                    for root in release {
                        release_chain(root);
                    }
                    0
                }
                Verdict::Bad(rule, message, session) => {
                    let stack = stack::capture();
                    registry::add_finding(session, PendingFinding::error(rule, message, stack));
                    0
                }
                // SAFETY: `wrap`'s caller vouched for the function; the
                // pointer is the provider's, passed as MAPI would get it.
                Verdict::Theirs(real) => unsafe { (real.free)(buffer) },
            }
        };
        // SAFETY: the caller's promise, passed on.
        #[cfg(not(any(debug_assertions, feature = "force")))]
        unsafe {
            self.plain_free_buffer(buffer)
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
        #[cfg(any(debug_assertions, feature = "force"))]
        return {
            let _quiet = Quiet::new();
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
        };
        #[cfg(not(any(debug_assertions, feature = "force")))]
        !buffer.is_null()
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
        #[cfg(any(debug_assertions, feature = "force"))]
        return with_table(|t| match t.records.get_mut(&(buffer as usize)) {
            Some(r) if !r.freed && r.root.is_none() => {
                r.owner = owner.get();
                true
            }
            _ => false,
        });
        #[cfg(not(any(debug_assertions, feature = "force")))]
        {
            let _ = owner;
            !buffer.is_null()
        }
    }

    /// Records a new block: a root of `session`, or a child joining `root`'s
    /// chain (and session).
    #[cfg(any(debug_assertions, feature = "force"))]
    fn record(
        &self,
        p: *mut c_void,
        layout: Option<Layout>,
        cb: u32,
        root: Option<usize>,
        session: u64,
    ) {
        let stack = stack::capture();
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
                    owner: context::buffer_owner(),
                    layout,
                    real: self.real,
                },
            );
        });
    }

    #[cfg(any(debug_assertions, feature = "force"))]
    fn raw_alloc(
        &self,
        cb: u32,
        parent: Option<*mut c_void>,
    ) -> Result<(*mut c_void, Option<Layout>), i32> {
        match self.real {
            Some(real) => {
                let mut p: *mut c_void = std::ptr::null_mut();
                // SAFETY: `wrap`'s caller vouched for the functions; `p` is a
                // valid out pointer and `parent` a live buffer we recorded.
                let hr = unsafe {
                    match parent {
                        None => (real.alloc)(cb, &mut p),
                        Some(parent) => (real.more)(cb, parent, &mut p),
                    }
                };
                if hr < 0 || p.is_null() {
                    Err(if hr < 0 { hr } else { MAPI_E_NOT_ENOUGH_MEMORY })
                } else {
                    Ok((p, None))
                }
            }
            None => {
                let (p, layout) = in_process_block(cb)?;
                Ok((p as *mut c_void, Some(layout)))
            }
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
        #[cfg(any(debug_assertions, feature = "force"))]
        previous: context::enter_buffer_owner(owner.get()),
        _not_send: std::marker::PhantomData,
    }
}

/// The guard of [`owned_by`]; restores the previous owner when dropped.
#[derive(Debug)]
#[must_use = "the buffers belong to the owner only while the guard lives"]
pub struct BufferOwner {
    #[cfg(any(debug_assertions, feature = "force"))]
    previous: u64,
    _not_send: std::marker::PhantomData<*const ()>,
}

#[cfg(any(debug_assertions, feature = "force"))]
impl Drop for BufferOwner {
    fn drop(&mut self) {
        context::leave_buffer_owner(self.previous);
    }
}

/// An in-process buffer's memory (both builds' `in_process`): at least one
/// byte, 16-aligned, from the system allocator; free it with this layout.
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

/// The calls without the instrumentation: MAPI's functions directly, or
/// the plain in-process chains.
#[cfg(not(any(debug_assertions, feature = "force")))]
impl MapiBuffers {
    fn plain_allocate_buffer(&self, cb: u32) -> Result<*mut c_void, i32> {
        if let Some(real) = self.real {
            let mut p = std::ptr::null_mut();
            // SAFETY: `wrap`'s contract; `p` is a valid out pointer.
            let hr = unsafe { (real.alloc)(cb, &mut p) };
            return if hr < 0 { Err(hr) } else { Ok(p) };
        }
        let (p, layout) = in_process_block(cb)?;
        self.chains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p, vec![(p, layout)]);
        Ok(p as *mut c_void)
    }

    /// # Safety
    ///
    /// `allocate_more`'s contract.
    unsafe fn plain_allocate_more(&self, cb: u32, parent: *mut c_void) -> Result<*mut c_void, i32> {
        if let Some(real) = self.real {
            let mut p = std::ptr::null_mut();
            // SAFETY: `wrap`'s contract and the caller's; `p` is a valid out pointer.
            let hr = unsafe { (real.more)(cb, parent, &mut p) };
            return if hr < 0 { Err(hr) } else { Ok(p) };
        }
        let mut chains = self.chains.lock().unwrap_or_else(|e| e.into_inner());
        let root = chains
            .iter()
            .find(|(_, c)| c.iter().any(|&(a, _)| a == parent as usize))
            .map(|(&r, _)| r)
            .ok_or(MAPI_E_INVALID_PARAMETER)?;
        let (p, layout) = in_process_block(cb)?;
        chains.entry(root).or_default().push((p, layout));
        Ok(p as *mut c_void)
    }

    /// # Safety
    ///
    /// `free_buffer`'s contract.
    unsafe fn plain_free_buffer(&self, buffer: *mut c_void) -> u32 {
        if let Some(real) = self.real {
            // SAFETY: `wrap`'s contract and the caller's.
            return unsafe { (real.free)(buffer) };
        }
        let chain = self
            .chains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(buffer as usize));
        for (a, layout) in chain.into_iter().flatten() {
            // SAFETY: allocated by `in_process_block` with this layout, and
            // removed from the table, so freed once.
            unsafe { System.dealloc(a as *mut u8, layout) };
        }
        0
    }
}

/// Runs `f` holding the table's lock (fault injection: see `testing`).
#[cfg(any(debug_assertions, feature = "force"))]
pub(crate) fn with_table_locked(f: impl FnOnce()) {
    let _held = TABLE.lock();
    f();
}

/// Releases a quarantined chain's memory and forgets its records.
#[cfg(any(debug_assertions, feature = "force"))]
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

/// An unfreed chain, as a report sees it.
#[cfg(any(debug_assertions, feature = "force"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LiveBuffer {
    pub session: u64,
    pub stack: stack::StackId,
    /// Bytes of the root and its children.
    pub bytes: u64,
    pub children: u64,
    /// The object that owns it, or 0.
    pub owner: u64,
}

/// Unfreed chains of the sessions `pick` accepts.
#[cfg(any(debug_assertions, feature = "force"))]
pub(crate) fn live_in(pick: impl Fn(u64) -> bool) -> Vec<LiveBuffer> {
    live_in_within(pick, None).unwrap_or_default()
}

/// [`live_in`], the table's lock waited for at most `wait` (`None`: as
/// long as it takes); `None` when it was not free in time.
#[cfg(any(debug_assertions, feature = "force"))]
pub(crate) fn live_in_within(
    pick: impl Fn(u64) -> bool,
    wait: Option<std::time::Duration>,
) -> Option<Vec<LiveBuffer>> {
    let mut table = match wait {
        None => TABLE.lock(),
        Some(d) => TABLE.try_lock_for(d)?,
    };
    let t = table.get_or_insert_with(Table::default);
    Some({
        let mut out: Vec<_> = t
            .records
            .iter()
            .filter(|(_, r)| !r.freed && !r.to_caller && r.root.is_none() && pick(r.session))
            .map(|(_, r)| {
                let bytes = r.size
                    + r.children
                        .iter()
                        .filter_map(|c| t.records.get(c))
                        .map(|c| c.size)
                        .sum::<u64>();
                LiveBuffer {
                    session: r.session,
                    stack: r.stack,
                    bytes,
                    children: r.children.len() as u64,
                    owner: r.owner,
                }
            })
            .collect();
        out.sort_unstable();
        out
    })
}
