//! A transport provider: `IXPProvider` → `IXPLogon` → status object,
//! inbound messages.

use std::ffi::c_void;
use std::sync::Mutex;

use mapileak::{ProviderKind, Session, Tracked, kinds};
use windows_core::{HRESULT, IUnknown, IUnknownImpl, implement};

use crate::life::{LogonCore, ProviderCore, borrowed_support};
use crate::mapi::*;
use crate::objects::{E_POINTER, Message, S_OK, Status};
use crate::{Bug, Sink, put};

/// `XPProviderInit`.
pub fn xp_provider_init(label: &str, bug: Bug, sink: Sink) -> IXPProvider {
    XpProvider {
        core: ProviderCore::init(
            ProviderKind::Transport,
            &kinds::IXP_PROVIDER,
            label,
            bug,
            sink,
        ),
    }
    .into()
}

#[implement(IXPProvider)]
struct XpProvider {
    core: ProviderCore,
}

impl IXPProvider_Impl for XpProvider_Impl {
    unsafe fn TransportLogon(&self, support: *mut c_void, logon: *mut Option<IXPLogon>) -> HRESULT {
        let Some(support) = borrowed_support(support) else {
            return E_POINTER;
        };
        let core = LogonCore::logon(&self.core, support, "transport status");
        let queue = core.status.open_table();
        let new: IXPLogon = XpLogon {
            track: Tracked::in_session(core.session, &kinds::IXP_LOGON, self.core.label.as_str()),
            core,
            queue: Mutex::new(Some(queue)),
        }
        .into();
        put(logon, Some(new))
    }

    unsafe fn Shutdown(&self, _flags: *mut u32) -> HRESULT {
        self.core.shutdown()
    }
}

#[implement(IXPLogon)]
struct XpLogon {
    track: Tracked,
    core: LogonCore,
    /// The outbound queue's table, held for the whole logon.
    queue: Mutex<Option<IMAPITable>>,
}

impl IXPLogon_Impl for XpLogon_Impl {
    /// `IXPLogon::TransportLogoff`: `MakeInvalid`, then the support object last.
    unsafe fn TransportLogoff(&self, _flags: u32) -> HRESULT {
        self.core
            .logoff(Some(&self.queue), Session::transport_logoff);
        S_OK
    }

    unsafe fn OpenStatusEntry(&self, status: *mut Option<IMAPIStatus>) -> HRESULT {
        put(status, Some(self.core.status.open_entry()))
    }

    unsafe fn Poll(&self, incoming: *mut u32) -> HRESULT {
        poll_queue(&self.core.status, self.core.bug);
        let me: IUnknown = self.to_interface();
        deliver_inbound(self.core.session, me, self, self.core.bug);
        put(incoming, 1)
    }
}

/// Reads the status table; the `Table` scenario forgets it.
#[inline(never)]
fn poll_queue(status: &Status, bug: Bug) {
    let table = status.open_table();
    let mut rows = 0;
    // SAFETY: valid out pointer to a local; `table` is live.
    let _ = unsafe { table.GetRowCount(0, &mut rows) };
    if bug.has(Bug::Table) {
        std::mem::forget(table);
    }
}

/// Builds an inbound message with one attachment; the `Chain` scenario
/// forgets the message, which caches its attachment.
#[inline(never)]
fn deliver_inbound(session: Session, logon: IUnknown, owner: &XpLogon_Impl, bug: Bug) {
    let message = Message::create(session, "inbound message", logon, owner.track.id());
    let (mut n, mut attach) = (0, None);
    // SAFETY: valid out pointers to locals; `message` is live.
    let _ = unsafe { message.CreateAttach(0, &mut n, &mut attach) };
    if bug.has(Bug::Chain) {
        std::mem::forget(message);
    }
}
