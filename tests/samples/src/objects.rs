//! Objects every sample provider hands out: tables, messages, attachments
//! (windows-core `#[implement]` objects with a [`Tracked`] guard), and the
//! status object, a hand-written COM object counted by [`RefCount`] as a C or
//! C++ provider would write it.

use std::ffi::c_void;
use std::sync::Mutex;

use mapileak::{ObjectId, RefCount, Session, Tracked, kinds};
use windows_core::{GUID, HRESULT, IUnknown, Interface, implement};

use crate::mapi::*;
use crate::{Bug, put};

/// `E_NOINTERFACE`.
const E_NOINTERFACE: HRESULT = HRESULT(0x8000_4002_u32 as i32);
/// `E_POINTER`.
pub(crate) const E_POINTER: HRESULT = HRESULT(0x8000_4003_u32 as i32);
/// `S_OK`.
pub(crate) const S_OK: HRESULT = HRESULT(0);

/// A contents or status table.
#[implement(IMAPITable)]
pub struct Table {
    track: Tracked,
    rows: u32,
}

impl Table {
    /// A table of `rows` rows opened from `parent`, as an interface.
    pub fn open(session: Session, label: &str, parent: ObjectId, rows: u32) -> IMAPITable {
        Table {
            track: Tracked::in_session(session, &kinds::IMAPI_TABLE, label).opened_from(parent),
            rows,
        }
        .into()
    }
}

impl IMAPITable_Impl for Table_Impl {
    unsafe fn GetRowCount(&self, _flags: u32, count: *mut u32) -> HRESULT {
        let _ = &self.track;
        put(count, self.rows)
    }
}

/// A message. It keeps its parent (folder or logon) alive, and caches the
/// attachments it creates, as many providers do: both are `holds`.
#[implement(IMessage)]
pub struct Message {
    track: Tracked,
    session: Session,
    _parent: IUnknown,
    attachments: Mutex<Vec<IAttach>>,
}

impl Message {
    /// A new message in `parent` (whose tracked id is `parent_id`).
    pub fn create(
        session: Session,
        subject: &str,
        parent: IUnknown,
        parent_id: ObjectId,
    ) -> IMessage {
        Message {
            track: Tracked::in_session(session, &kinds::IMESSAGE, subject)
                .opened_from(parent_id)
                .holding(parent_id),
            session,
            _parent: parent,
            attachments: Mutex::new(Vec::new()),
        }
        .into()
    }
}

impl IMessage_Impl for Message_Impl {
    unsafe fn CreateAttach(
        &self,
        _flags: u32,
        number: *mut u32,
        attach: *mut Option<IAttach>,
    ) -> HRESULT {
        let mut cache = self.attachments.lock().unwrap_or_else(|e| e.into_inner());
        let n = cache.len() as u32;
        let new = Attach {
            track: Tracked::in_session(self.session, &kinds::IATTACH, format!("attachment {n}"))
                .opened_from(self.track.id()),
            number: n,
        };
        self.track.hold(new.track.id());
        let iface: IAttach = new.into();
        cache.push(iface.clone());
        let hr = put(number, n);
        if hr.is_err() {
            hr
        } else {
            put(attach, Some(iface))
        }
    }
}

/// An attachment.
#[implement(IAttach)]
pub struct Attach {
    track: Tracked,
    number: u32,
}

impl IAttach_Impl for Attach_Impl {
    unsafe fn GetAttachNum(&self, number: *mut u32) -> HRESULT {
        let _ = &self.track;
        put(number, self.number)
    }
}

/// The status object of a logon: a hand-written COM object embedded in its
/// logon (as C++ providers often embed it), counted by [`RefCount`]. Its
/// memory belongs to the logon, so a Release to 0 frees nothing, and an
/// over-release is a bug mapileak reports, not a use-after-free.
#[repr(C)]
pub struct Status {
    vtable: &'static IMAPIStatus_Vtbl,
    refs: RefCount,
    session: Session,
    bug: Bug,
}

static STATUS_VTABLE: IMAPIStatus_Vtbl = IMAPIStatus_Vtbl {
    base__: UnknownVtbl {
        QueryInterface: status_query_interface,
        AddRef: status_add_ref,
        Release: status_release,
    },
    ValidateState: status_validate_state,
    OpenTable: status_open_table,
};

impl Status {
    /// A status object with one reference: the logon's own.
    pub fn new(session: Session, label: &str, bug: Bug) -> Box<Status> {
        Box::new(Status {
            vtable: &STATUS_VTABLE,
            refs: RefCount::in_session(session, &kinds::IMAPI_STATUS, label),
            session,
            bug,
        })
    }

    /// `IMSLogon::OpenStatusEntry` and the like: a new reference for the
    /// caller. The over-release scenario forgets the AddRef, a classic bug.
    pub fn open_entry(&self) -> IMAPIStatus {
        if !self.bug.has(Bug::OverRelease) {
            self.refs.add_ref();
        }
        // SAFETY: `self` is a live `Status` whose first field is the
        // IMAPIStatus vtable pointer, so its address is a valid IMAPIStatus
        // pointer; the reference handed out is counted (or, in the buggy
        // scenario, deliberately not) by `refs`, and the memory lives as long
        // as the logon that owns the box, which outlives its clients.
        unsafe { IMAPIStatus::from_raw(self as *const Status as *mut c_void) }
    }

    /// The status table (`IMAPIStatus::OpenTable`).
    pub fn open_table(&self) -> IMAPITable {
        Table::open(self.session, "status table", self.refs.id(), 1)
    }

    /// Drops the logon's own reference, at Logoff.
    pub fn release_own(&self) -> u32 {
        self.refs.release()
    }

    /// The current count.
    pub fn count(&self) -> u32 {
        self.refs.count()
    }
}

/// # Safety
/// `this` must point to a live `Status` (the COM calling contract).
unsafe fn status<'a>(this: *mut c_void) -> &'a Status {
    // SAFETY: guaranteed by the caller.
    unsafe { &*(this as *const Status) }
}

unsafe extern "system" fn status_query_interface(
    this: *mut c_void,
    iid: *const GUID,
    out: *mut *mut c_void,
) -> HRESULT {
    if iid.is_null() || out.is_null() {
        return E_POINTER;
    }
    // SAFETY: both pointers were checked non-null; COM callers pass valid ones.
    let iid = unsafe { *iid };
    if iid == IUnknown::IID || iid == IMAPIStatus::IID {
        // SAFETY: `this` is a live Status, per the COM contract.
        unsafe { status(this) }.refs.add_ref();
        // SAFETY: `out` is a valid out pointer (checked non-null above).
        unsafe { *out = this };
        S_OK
    } else {
        // SAFETY: as above.
        unsafe { *out = std::ptr::null_mut() };
        E_NOINTERFACE
    }
}

unsafe extern "system" fn status_add_ref(this: *mut c_void) -> u32 {
    // SAFETY: `this` is a live Status, per the COM contract.
    unsafe { status(this) }.refs.add_ref()
}

unsafe extern "system" fn status_release(this: *mut c_void) -> u32 {
    // SAFETY: `this` is a live Status; the memory belongs to the logon, so
    // nothing is freed here even at 0.
    unsafe { status(this) }.refs.release()
}

unsafe extern "system" fn status_validate_state(
    _this: *mut c_void,
    _ui_param: usize,
    _flags: u32,
) -> HRESULT {
    S_OK
}

unsafe extern "system" fn status_open_table(
    this: *mut c_void,
    _flags: u32,
    table: *mut Option<IMAPITable>,
) -> HRESULT {
    // SAFETY: `this` is a live Status, per the COM contract.
    put(table, Some(unsafe { status(this) }.open_table()))
}
