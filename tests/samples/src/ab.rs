//! An address book provider: `IABProvider` → `IABLogon` → `IABContainer` →
//! tables, distribution lists, mail users.

use std::sync::Mutex;

use std::ffi::c_void;

use mapileak::{ProviderKind, Session, Tracked, kinds};
use windows_core::{HRESULT, IUnknownImpl, implement};

use crate::life::{LogonCore, ProviderCore, borrowed_support};
use crate::mapi::*;
use crate::objects::{E_POINTER, S_OK, Table};
use crate::{Bug, Sink, put};

/// `ABProviderInit`.
pub fn ab_provider_init(label: &str, bug: Bug, sink: Sink) -> IABProvider {
    AbProvider {
        core: ProviderCore::init(
            ProviderKind::AddressBook,
            &kinds::IAB_PROVIDER,
            label,
            bug,
            sink,
        ),
    }
    .into()
}

#[implement(IABProvider)]
struct AbProvider {
    core: ProviderCore,
}

impl IABProvider_Impl for AbProvider_Impl {
    unsafe fn Logon(&self, support: *mut c_void, logon: *mut Option<IABLogon>) -> HRESULT {
        let Some(support) = borrowed_support(support) else {
            return E_POINTER;
        };
        let core = LogonCore::logon(&self.core, support, "address book status");
        let new: IABLogon = AbLogon {
            track: Tracked::in_session(core.session, &kinds::IAB_LOGON, self.core.label.as_str()),
            core,
        }
        .into();
        put(logon, Some(new))
    }

    unsafe fn Shutdown(&self, _flags: *mut u32) -> HRESULT {
        self.core.shutdown()
    }
}

#[implement(IABLogon)]
struct AbLogon {
    track: Tracked,
    core: LogonCore,
}

impl IABLogon_Impl for AbLogon_Impl {
    unsafe fn Logoff(&self, _flags: u32) -> HRESULT {
        self.core.logoff(None, Session::ab_logoff);
        S_OK
    }

    unsafe fn OpenStatusEntry(&self, status: *mut Option<IMAPIStatus>) -> HRESULT {
        put(status, Some(self.core.status.open_entry()))
    }

    unsafe fn OpenRootContainer(&self, container: *mut Option<IABContainer>) -> HRESULT {
        let logon: IABLogon = self.to_interface();
        let new: IABContainer = Container {
            track: Tracked::in_session(
                self.core.session,
                &kinds::IAB_CONTAINER,
                "Global Address List",
            )
            .opened_from(self.track.id())
            .holding(self.track.id()),
            session: self.core.session,
            bug: self.core.bug,
            _logon: logon,
        }
        .into();
        put(container, Some(new))
    }
}

#[implement(IABContainer)]
struct Container {
    track: Tracked,
    session: Session,
    bug: Bug,
    _logon: IABLogon,
}

impl IABContainer_Impl for Container_Impl {
    unsafe fn GetContentsTable(&self, _flags: u32, table: *mut Option<IMAPITable>) -> HRESULT {
        put(
            table,
            Some(Table::open(
                self.session,
                "contents of Global Address List",
                self.track.id(),
                12,
            )),
        )
    }

    unsafe fn OpenDistList(&self, _flags: u32, list: *mut Option<IDistList>) -> HRESULT {
        let container: IABContainer = self.to_interface();
        let new: IDistList = DistList {
            track: Tracked::in_session(self.session, &kinds::IDIST_LIST, "Sales team")
                .opened_from(self.track.id())
                .holding(self.track.id()),
            session: self.session,
            members: Mutex::new(Vec::new()),
            _container: container,
        }
        .into();
        put(list, Some(new))
    }

    unsafe fn ResolveNames(&self, _flags: u32) -> HRESULT {
        let me: IABContainer = self.to_interface();
        resolve_names(&me, self.bug);
        expand_dist_list(&me, self.bug);
        S_OK
    }
}

/// Looks names up in the container's contents; the `Table` scenario
/// forgets the table.
#[inline(never)]
fn resolve_names(container: &IABContainer, bug: Bug) {
    let mut table = None;
    // SAFETY: valid out pointers to locals; `container` is live.
    unsafe {
        if container.GetContentsTable(0, &mut table).is_ok()
            && let Some(t) = &table
        {
            let mut rows = 0;
            let _ = t.GetRowCount(0, &mut rows);
        }
    }
    if bug.has(Bug::Table) {
        std::mem::forget(table);
    }
}

/// Expands a distribution list to its first member; the `Chain` scenario
/// forgets the list, which caches the member and holds its container.
#[inline(never)]
fn expand_dist_list(container: &IABContainer, bug: Bug) {
    let mut list = None;
    // SAFETY: valid out pointers to locals; `container` and the list are live.
    unsafe {
        if container.OpenDistList(0, &mut list).is_ok()
            && let Some(l) = &list
        {
            let mut user = None;
            let _ = l.OpenMember(0, &mut user);
        }
    }
    if bug.has(Bug::Chain) {
        std::mem::forget(list);
    }
}

/// A distribution list that caches the members it opened.
#[implement(IDistList)]
struct DistList {
    track: Tracked,
    session: Session,
    members: Mutex<Vec<IMailUser>>,
    _container: IABContainer,
}

impl IDistList_Impl for DistList_Impl {
    unsafe fn OpenMember(&self, index: u32, user: *mut Option<IMailUser>) -> HRESULT {
        let new = MailUser {
            track: Tracked::in_session(self.session, &kinds::IMAIL_USER, format!("member {index}"))
                .opened_from(self.track.id()),
        };
        self.track.hold(new.track.id());
        let iface: IMailUser = new.into();
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(iface.clone());
        put(user, Some(iface))
    }
}

#[implement(IMailUser)]
struct MailUser {
    track: Tracked,
}

impl IMailUser_Impl for MailUser_Impl {
    unsafe fn GetAddressType(&self, kind: *mut u32) -> HRESULT {
        let _ = &self.track;
        put(kind, 6) // MAPI_MAILUSER
    }
}
