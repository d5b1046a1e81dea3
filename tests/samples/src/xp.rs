//! A transport provider: `IXPProvider` → `IXPLogon` → status object,
//! inbound messages.

use mapileak::{ProviderKind, Session, Tracked, kinds};
use windows_core::{HRESULT, IUnknown, IUnknownImpl, implement};

use crate::mapi::*;
use crate::objects::{Message, S_OK, Status};
use crate::{Leak, Sink, put};

/// `XPProviderInit`.
pub fn xp_provider_init(label: &str, leak: Leak, sink: Sink) -> IXPProvider {
    XpProvider {
        _track: Tracked::new(&kinds::IXP_PROVIDER, label),
        label: label.to_owned(),
        leak,
        sink,
    }
    .into()
}

#[implement(IXPProvider)]
struct XpProvider {
    _track: Tracked,
    label: String,
    leak: Leak,
    sink: Sink,
}

impl IXPProvider_Impl for XpProvider_Impl {
    unsafe fn TransportLogon(&self, _flags: u32, logon: *mut Option<IXPLogon>) -> HRESULT {
        let session = Session::logon(ProviderKind::Transport, self.label.as_str());
        let new: IXPLogon = XpLogon {
            track: Tracked::in_session(session, &kinds::IXP_LOGON, self.label.as_str()),
            session,
            status: Status::new(session, "transport status", self.leak),
            sink: self.sink.clone(),
            leak: self.leak,
        }
        .into();
        put(logon, Some(new))
    }

    unsafe fn Shutdown(&self, _flags: *mut u32) -> HRESULT {
        S_OK
    }
}

#[implement(IXPLogon)]
struct XpLogon {
    track: Tracked,
    session: Session,
    status: Box<Status>,
    sink: Sink,
    leak: Leak,
}

impl IXPLogon_Impl for XpLogon_Impl {
    unsafe fn TransportLogoff(&self, _flags: u32) -> HRESULT {
        self.status.release_own();
        self.sink.push(self.session.transport_logoff());
        S_OK
    }

    unsafe fn OpenStatusEntry(&self, status: *mut Option<IMAPIStatus>) -> HRESULT {
        put(status, Some(self.status.open_entry()))
    }

    unsafe fn Poll(&self, incoming: *mut u32) -> HRESULT {
        poll_queue(&self.status, self.leak);
        let me: IUnknown = self.to_interface();
        deliver_inbound(self.session, me, self, self.leak);
        put(incoming, 1)
    }
}

/// Reads the status table; the `Table` scenario forgets it.
#[inline(never)]
fn poll_queue(status: &Status, leak: Leak) {
    let table = status.open_table();
    let mut rows = 0;
    // SAFETY: valid out pointer to a local; `table` is live.
    let _ = unsafe { table.GetRowCount(0, &mut rows) };
    if leak.has(Leak::Table) {
        std::mem::forget(table);
    }
}

/// Builds an inbound message with one attachment; the `Chain` scenario
/// forgets the message, which caches its attachment.
#[inline(never)]
fn deliver_inbound(session: Session, logon: IUnknown, owner: &XpLogon_Impl, leak: Leak) {
    let message = Message::create(session, "inbound message", logon, owner.track.id());
    let (mut n, mut attach) = (0, None);
    // SAFETY: valid out pointers to locals; `message` is live.
    let _ = unsafe { message.CreateAttach(0, &mut n, &mut attach) };
    if leak.has(Leak::Chain) {
        std::mem::forget(message);
    }
}
