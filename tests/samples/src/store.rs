//! A message store provider: `IMSProvider` → `IMSLogon` + `IMsgStore` →
//! `IMAPIFolder` → tables, messages, attachments.

use mapileak::{ObjectId, ProviderKind, Session, Tracked, kinds};
use windows_core::{HRESULT, IUnknown, IUnknownImpl, implement};

use crate::mapi::*;
use crate::objects::{Message, S_OK, Status, Table};
use crate::{Leak, Sink, put};

/// `MSProviderInit`: the provider object MAPI gets when it loads the DLL.
pub fn ms_provider_init(label: &str, leak: Leak, sink: Sink) -> IMSProvider {
    MsProvider {
        _track: Tracked::new(&kinds::IMS_PROVIDER, label),
        label: label.to_owned(),
        leak,
        sink,
    }
    .into()
}

#[implement(IMSProvider)]
struct MsProvider {
    _track: Tracked,
    label: String,
    leak: Leak,
    sink: Sink,
}

impl IMSProvider_Impl for MsProvider_Impl {
    unsafe fn Logon(
        &self,
        _flags: u32,
        logon: *mut Option<IMSLogon>,
        store: *mut Option<IMsgStore>,
    ) -> HRESULT {
        let session = Session::logon(ProviderKind::MessageStore, self.label.as_str());
        let new_logon: IMSLogon = MsLogon {
            _track: Tracked::in_session(session, &kinds::IMS_LOGON, self.label.as_str()),
            session,
            status: Status::new(session, "store status", self.leak),
            sink: self.sink.clone(),
        }
        .into();
        let new_store: IMsgStore = Store {
            track: Tracked::in_session(session, &kinds::IMSG_STORE, self.label.as_str()),
            session,
            leak: self.leak,
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
        S_OK
    }
}

#[implement(IMSLogon)]
struct MsLogon {
    _track: Tracked,
    session: Session,
    status: Box<Status>,
    sink: Sink,
}

impl IMSLogon_Impl for MsLogon_Impl {
    /// `IMSLogon::Logoff`: release what the logon holds, then report.
    unsafe fn Logoff(&self, _flags: *mut u32) -> HRESULT {
        self.status.release_own();
        self.sink.push(self.session.ms_logoff());
        S_OK
    }

    unsafe fn OpenStatusEntry(&self, status: *mut Option<IMAPIStatus>) -> HRESULT {
        put(status, Some(self.status.open_entry()))
    }
}

#[implement(IMsgStore)]
struct Store {
    track: Tracked,
    session: Session,
    leak: Leak,
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
        let folder = self.root_folder();
        refresh_unread_count(&folder, self.leak);
        file_incoming_message(&folder, self.leak);
        S_OK
    }
}

/// Counts the rows of the Inbox; the `Table` scenario forgets the table.
#[inline(never)]
fn refresh_unread_count(folder: &IMAPIFolder, leak: Leak) -> u32 {
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
    if leak.has(Leak::Table) {
        std::mem::forget(table);
    }
    rows
}

/// Files an incoming message with one attachment; the `Chain` scenario
/// forgets the message, which holds its attachment and its folder.
#[inline(never)]
fn file_incoming_message(folder: &IMAPIFolder, leak: Leak) {
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
    if leak.has(Leak::Chain) {
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
