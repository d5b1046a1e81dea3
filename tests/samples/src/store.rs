//! A message store provider: `IMSProvider` → `IMSLogon` + `IMsgStore` →
//! `IMAPIFolder` → tables, messages, attachments.

use std::ffi::c_void;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use mapileak::{LOGOFF_ABORT, ObjectId, ProviderKind, Session, Support, Tracked, kinds};
use windows_core::{HRESULT, IUnknown, IUnknownImpl, implement};

use crate::life::{LogonCore, ProviderCore, borrowed_support};
use crate::mapi::*;
use crate::objects::{E_POINTER, Message, S_OK, Table};
use crate::{Bug, Sink, put};

const LOGOFF_ORDERLY: u32 = 0x2;
const LOGOFF_INBOUND: u32 = 0x0002_0000;
const LOGOFF_OUTBOUND: u32 = 0x0004_0000;

/// `MSProviderInit`: the provider object MAPI gets when it loads the DLL.
pub fn ms_provider_init(label: &str, bug: Bug, sink: Sink) -> IMSProvider {
    MsProvider {
        core: ProviderCore::init(
            ProviderKind::MessageStore,
            &kinds::IMS_PROVIDER,
            label,
            bug,
            sink,
        ),
    }
    .into()
}

#[implement(IMSProvider)]
struct MsProvider {
    core: ProviderCore,
}

impl IMSProvider_Impl for MsProvider_Impl {
    unsafe fn Logon(
        &self,
        support: *mut c_void,
        logon: *mut Option<IMSLogon>,
        store: *mut Option<IMsgStore>,
    ) -> HRESULT {
        let Some(support) = borrowed_support(support) else {
            return E_POINTER;
        };
        let core = LogonCore::logon(&self.core, support, "store status");
        let session = core.session;
        let label = self.core.label.as_str();
        let new_store: IMsgStore = Store {
            track: Tracked::in_session(session, &kinds::IMSG_STORE, label),
            session,
            bug: self.core.bug,
            support: core.support(),
            store_logoff_called: AtomicBool::new(false),
            cache: Mutex::new(Vec::new()),
        }
        .into();
        let new_logon: IMSLogon = MsLogon {
            _track: Tracked::in_session(session, &kinds::IMS_LOGON, label),
            core,
        }
        .into();
        let hr = put(logon, Some(new_logon));
        if hr.is_err() {
            hr
        } else {
            put(store, Some(new_store))
        }
    }

    unsafe fn Shutdown(&self, _flags: *mut u32) -> HRESULT {
        let _ = &self.core.track;
        self.core.shutdown()
    }
}

#[implement(IMSLogon)]
struct MsLogon {
    _track: Tracked,
    core: LogonCore,
}

impl IMSLogon_Impl for MsLogon_Impl {
    /// `IMSLogon::Logoff`: release what the logon holds, then report.
    unsafe fn Logoff(&self, _flags: *mut u32) -> HRESULT {
        self.core.logoff(None, Session::ms_logoff);
        S_OK
    }

    unsafe fn OpenStatusEntry(&self, status: *mut Option<IMAPIStatus>) -> HRESULT {
        put(status, Some(self.core.status.open_entry()))
    }
}

#[implement(IMsgStore)]
struct Store {
    track: Tracked,
    session: Session,
    bug: Bug,
    /// The store keeps the support object too, until its final Release.
    support: Option<Support<IMAPISupport>>,
    store_logoff_called: AtomicBool,
    /// What `Synchronize` fetched ([`Bug::UnboundedCache`]): emptied only
    /// when the store is released.
    cache: Mutex<Vec<CachedSync>>,
}

/// One `Synchronize`'s worth of the unbounded cache: the tables it
/// fetched, and the rows it copied.
struct CachedSync {
    _tables: [IMAPITable; CACHED_TABLES],
    _rows: [Box<[u8]>; CACHED_ROWS],
}

/// Tables the unbounded cache gains per `Synchronize`.
pub const CACHED_TABLES: usize = 2;
/// Heap blocks (rows) it gains per `Synchronize`.
pub const CACHED_ROWS: usize = 3;
/// Bytes of each row.
pub const CACHED_ROW_BYTES: usize = 200;

impl Store {
    fn store_logoff_transports(&self, mut flags: u32) {
        if let Some(s) = &self.support {
            // SAFETY: a live interface; out pointer to a local.
            let _ = unsafe { s.StoreLogoffTransports(&mut flags) };
            self.session.store_logoff_transports(flags);
        }
    }
}

impl Drop for Store {
    /// The store's final Release: without a StoreLogoff, the store logs the
    /// transports off itself, with `LOGOFF_ABORT`.
    fn drop(&mut self) {
        let called = self.store_logoff_called.load(Ordering::Relaxed);
        if !self.bug.has(Bug::StoreLogoffTransportsNever)
            && (!called || self.bug.has(Bug::StoreLogoffTransportsTwice))
        {
            let flags = if self.bug.has(Bug::ReleaseWithoutAbort) {
                LOGOFF_ORDERLY
            } else {
                LOGOFF_ABORT
            };
            self.store_logoff_transports(flags);
        }
        self.session.store_released();
    }
}

impl Store_Impl {
    fn root_folder(&self) -> IMAPIFolder {
        let store: IMsgStore = self.to_interface();
        Folder {
            track: Tracked::in_session(self.session, &kinds::IMAPI_FOLDER, "Inbox")
                .opened_from(self.track.id())
                .holding(self.track.id()),
            session: self.session,
            _store: store,
        }
        .into()
    }
}

impl IMsgStore_Impl for Store_Impl {
    unsafe fn OpenRootFolder(&self, folder: *mut Option<IMAPIFolder>) -> HRESULT {
        put(folder, Some(self.root_folder()))
    }

    unsafe fn Synchronize(&self, _flags: u32) -> HRESULT {
        // What the provider allocates while it runs for this logon is the
        // logon's (heap blocks included).
        let _scope = self.session.enter();
        let folder = self.root_folder();
        refresh_unread_count(&folder, self.bug);
        file_incoming_message(&folder, self.bug);
        if self.bug.has(Bug::UnboundedCache) {
            let fetched = cache_synchronized(self.session, self.track.id());
            self.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(fetched);
        }
        S_OK
    }

    /// `IMsgStore::StoreLogoff`: the client shuts this store down.
    unsafe fn StoreLogoff(&self, flags: *mut u32) -> HRESULT {
        if flags.is_null() {
            return E_POINTER;
        }
        // SAFETY: non-null in/out parameter from the caller.
        let requested = unsafe { *flags };
        self.session.store_logoff(requested);
        if !self.bug.has(Bug::StoreLogoffTransportsNever) {
            self.store_logoff_transports(requested);
        }
        self.store_logoff_called.store(true, Ordering::Relaxed);
        put(flags, requested | LOGOFF_INBOUND | LOGOFF_OUTBOUND)
    }
}

/// What one `Synchronize` puts in the unbounded cache.
#[inline(never)]
fn cache_synchronized(session: Session, store: ObjectId) -> CachedSync {
    CachedSync {
        _tables: std::array::from_fn(|_| Table::open(session, "synchronized rows", store, 1)),
        _rows: std::array::from_fn(|i| vec![i as u8; CACHED_ROW_BYTES].into_boxed_slice()),
    }
}

/// Counts the rows of the Inbox; the `Table` scenario forgets the table.
#[inline(never)]
fn refresh_unread_count(folder: &IMAPIFolder, bug: Bug) -> u32 {
    let mut table = None;
    let mut rows = 0;
    // SAFETY: valid out pointers to locals; `folder` is a live interface.
    unsafe {
        if folder.GetContentsTable(0, &mut table).is_err() {
            return 0;
        }
        if let Some(t) = &table {
            let _ = t.GetRowCount(0, &mut rows);
        }
    }
    if bug.has(Bug::Table) {
        std::mem::forget(table);
    }
    rows
}

/// Files an incoming message with one attachment; the `Chain` scenario
/// forgets the message, which holds its attachment and its folder.
#[inline(never)]
fn file_incoming_message(folder: &IMAPIFolder, bug: Bug) {
    let mut message = None;
    // SAFETY: valid out pointers to locals; `folder` and the message are live.
    unsafe {
        if folder.CreateMessage(0, &mut message).is_err() {
            return;
        }
        if let Some(m) = &message {
            let (mut n, mut attach) = (0, None);
            let _ = m.CreateAttach(0, &mut n, &mut attach);
        }
    }
    if bug.has(Bug::Chain) {
        std::mem::forget(message);
    }
}

#[implement(IMAPIFolder)]
struct Folder {
    track: Tracked,
    session: Session,
    _store: IMsgStore,
}

impl Folder_Impl {
    fn id(&self) -> ObjectId {
        self.track.id()
    }
}

impl IMAPIFolder_Impl for Folder_Impl {
    unsafe fn GetContentsTable(&self, _flags: u32, table: *mut Option<IMAPITable>) -> HRESULT {
        put(
            table,
            Some(Table::open(self.session, "contents of Inbox", self.id(), 3)),
        )
    }

    unsafe fn CreateMessage(&self, _flags: u32, message: *mut Option<IMessage>) -> HRESULT {
        let me: IUnknown = self.to_interface();
        put(
            message,
            Some(Message::create(
                self.session,
                "incoming message",
                me,
                self.id(),
            )),
        )
    }
}
