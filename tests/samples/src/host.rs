//! A small MAPI stand-in that drives a provider through the documented
//! order — `*ProviderInit`, Logon (with a support object), work, Logoff,
//! Release(logon), Shutdown, Release(provider) — and returns what the
//! provider's Logoff and Shutdown reported. Bugs of the client or of MAPI
//! ([`Bug::BadStoreLogoffFlags`], [`Bug::LogoffTwice`],
//! [`Bug::ObjectAfterLogoff`], [`Bug::ShutdownWithOpenLogon`]) are played
//! here.

use windows_core::Interface;

use crate::life::HostSupport;
use crate::mapi::*;
use crate::{Bug, Outcome, Sink, ab, store, xp};

/// Which sample provider to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// [`ab`].
    AddressBook,
    /// [`store`].
    MessageStore,
    /// [`xp`].
    Transport,
}

impl Provider {
    /// All three.
    pub const ALL: [Provider; 3] = [
        Provider::AddressBook,
        Provider::MessageStore,
        Provider::Transport,
    ];
}

/// How the client ends a message store session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorePath {
    /// `IMsgStore::StoreLogoff`, then the store's Release.
    StoreLogoff,
    /// The store's Release alone.
    ReleaseOnly,
}

/// Runs one session of `provider` built with `bug` (a message store ends
/// through StoreLogoff), and returns its reports.
pub fn run(provider: Provider, label: &str, bug: Bug) -> Outcome {
    match provider {
        Provider::AddressBook => address_book_session(label, bug),
        Provider::MessageStore => message_store_session(label, bug, StorePath::StoreLogoff),
        Provider::Transport => transport_session(label, bug),
    }
}

/// Runs one message store session ended through `path`.
pub fn run_store(label: &str, bug: Bug, path: StorePath) -> Outcome {
    message_store_session(label, bug, path)
}

/// A long-running message store session, as Outlook keeps one for days:
/// Logon, then rounds of `IMsgStore::Synchronize`, each followed by
/// `after_sync(round)` (where a soak test takes its snapshot) until it
/// returns false, then StoreLogoff, Logoff and Shutdown in MAPI's order.
pub fn soak_store(label: &str, bug: Bug, mut after_sync: impl FnMut(u32) -> bool) -> Outcome {
    let StoreLogon {
        sink,
        _support,
        provider,
        logon,
        store,
    } = store_logon(label, bug);
    // SAFETY (every block below): live interfaces, out pointers to locals.
    for round in 1.. {
        unsafe { store.Synchronize(0) }.ok().expect("Synchronize");
        if !after_sync(round) {
            break;
        }
    }
    let mut flags = 0x2;
    unsafe { store.StoreLogoff(&mut flags) }
        .ok()
        .expect("IMsgStore::StoreLogoff");
    drop(store);
    let mut flags = 0;
    unsafe { logon.Logoff(&mut flags) }
        .ok()
        .expect("IMSLogon::Logoff");
    drop(logon);
    unsafe { provider.Shutdown(&mut flags) }
        .ok()
        .expect("IMSProvider::Shutdown");
    drop(provider);
    sink.take()
}

/// A client's use of a status object: open, validate, release.
fn check_status(status: IMAPIStatus) {
    // SAFETY: `status` is a live interface.
    let _ = unsafe { status.ValidateState(0, 0) };
}

/// A message store provider MAPI loaded and logged on: the sink its
/// reports go to, the support object MAPI handed it, the provider, its
/// logon and its store.
struct StoreLogon {
    sink: Sink,
    _support: IMAPISupport,
    provider: IMSProvider,
    logon: IMSLogon,
    store: IMsgStore,
}

/// `MSProviderInit`, then `IMSProvider::Logon` with a support object.
fn store_logon(label: &str, bug: Bug) -> StoreLogon {
    let sink = Sink::default();
    let support: IMAPISupport = HostSupport::default().into();
    let provider = store::ms_provider_init(label, bug, sink.clone());
    let (mut logon, mut store) = (None, None);
    // SAFETY: live interfaces, out pointers to locals.
    unsafe { provider.Logon(support.as_raw(), &mut logon, &mut store) }
        .ok()
        .expect("IMSProvider::Logon");
    StoreLogon {
        sink,
        _support: support,
        provider,
        logon: logon.expect("logon"),
        store: store.expect("store"),
    }
}

fn message_store_session(label: &str, bug: Bug, path: StorePath) -> Outcome {
    let StoreLogon {
        sink,
        _support,
        provider,
        logon,
        store,
    } = store_logon(label, bug);
    // SAFETY (every block below): live interfaces, out pointers to locals.

    // Work: a client looks at the store's status, synchronizes, reads the Inbox.
    let mut status = None;
    unsafe { logon.OpenStatusEntry(&mut status) }
        .ok()
        .expect("OpenStatusEntry");
    check_status(status.expect("status"));
    unsafe { store.Synchronize(0) }.ok().expect("Synchronize");
    let mut folder = None;
    unsafe { store.OpenRootFolder(&mut folder) }
        .ok()
        .expect("OpenRootFolder");
    let folder = folder.expect("folder");
    let mut table = None;
    unsafe { folder.GetContentsTable(0, &mut table) }
        .ok()
        .expect("GetContentsTable");
    drop((table, folder));

    // The client shuts the store down; MAPI then logs the logon off.
    if path == StorePath::StoreLogoff {
        let mut flags = if bug == Bug::BadStoreLogoffFlags {
            0x2 | 0x4
        } else {
            0x2
        };
        unsafe { store.StoreLogoff(&mut flags) }
            .ok()
            .expect("IMsgStore::StoreLogoff");
    }
    drop(store);
    let mut flags = 0;
    if bug != Bug::ShutdownWithOpenLogon {
        unsafe { logon.Logoff(&mut flags) }
            .ok()
            .expect("IMSLogon::Logoff");
    }
    if bug == Bug::LogoffTwice {
        unsafe { logon.Logoff(&mut flags) }
            .ok()
            .expect("IMSLogon::Logoff");
    }
    if bug == Bug::ObjectAfterLogoff {
        let mut status = None;
        unsafe { logon.OpenStatusEntry(&mut status) }
            .ok()
            .expect("OpenStatusEntry");
        let mut table = None;
        unsafe { status.expect("status").OpenTable(0, &mut table) }
            .ok()
            .expect("OpenTable");
    }
    if bug != Bug::ShutdownWithOpenLogon {
        drop(logon);
    }
    unsafe { provider.Shutdown(&mut flags) }
        .ok()
        .expect("IMSProvider::Shutdown");
    drop(provider);
    sink.take()
}

fn address_book_session(label: &str, bug: Bug) -> Outcome {
    let sink = Sink::default();
    let support: IMAPISupport = HostSupport::default().into();
    let provider = ab::ab_provider_init(label, bug, sink.clone());
    let mut logon = None;
    // SAFETY (every block below): live interfaces, out pointers to locals.
    unsafe { provider.Logon(support.as_raw(), &mut logon) }
        .ok()
        .expect("IABProvider::Logon");
    let logon = logon.expect("logon");

    let mut status = None;
    unsafe { logon.OpenStatusEntry(&mut status) }
        .ok()
        .expect("OpenStatusEntry");
    check_status(status.expect("status"));
    let mut container = None;
    unsafe { logon.OpenRootContainer(&mut container) }
        .ok()
        .expect("OpenRootContainer");
    let container = container.expect("container");
    unsafe { container.ResolveNames(0) }
        .ok()
        .expect("ResolveNames");
    drop(container);

    if bug != Bug::ShutdownWithOpenLogon {
        unsafe { logon.Logoff(0) }.ok().expect("IABLogon::Logoff");
    }
    if bug == Bug::LogoffTwice {
        unsafe { logon.Logoff(0) }.ok().expect("IABLogon::Logoff");
    }
    if bug == Bug::ObjectAfterLogoff {
        let mut container = None;
        unsafe { logon.OpenRootContainer(&mut container) }
            .ok()
            .expect("OpenRootContainer");
    }
    if bug != Bug::ShutdownWithOpenLogon {
        drop(logon);
    }
    let mut flags = 0;
    unsafe { provider.Shutdown(&mut flags) }
        .ok()
        .expect("IABProvider::Shutdown");
    drop(provider);
    sink.take()
}

fn transport_session(label: &str, bug: Bug) -> Outcome {
    let sink = Sink::default();
    let support: IMAPISupport = HostSupport::default().into();
    let provider = xp::xp_provider_init(label, bug, sink.clone());
    let mut logon = None;
    // SAFETY (every block below): live interfaces, out pointers to locals.
    unsafe { provider.TransportLogon(support.as_raw(), &mut logon) }
        .ok()
        .expect("IXPProvider::TransportLogon");
    let logon = logon.expect("logon");

    let mut status = None;
    unsafe { logon.OpenStatusEntry(&mut status) }
        .ok()
        .expect("OpenStatusEntry");
    check_status(status.expect("status"));
    let mut incoming = 0;
    unsafe { logon.Poll(&mut incoming) }.ok().expect("Poll");

    if bug != Bug::ShutdownWithOpenLogon {
        unsafe { logon.TransportLogoff(0) }
            .ok()
            .expect("IXPLogon::TransportLogoff");
    }
    if bug == Bug::LogoffTwice {
        unsafe { logon.TransportLogoff(0) }
            .ok()
            .expect("IXPLogon::TransportLogoff");
    }
    if bug == Bug::ObjectAfterLogoff {
        unsafe { logon.Poll(&mut incoming) }.ok().expect("Poll");
    }
    if bug != Bug::ShutdownWithOpenLogon {
        drop(logon);
    }
    let mut flags = 0;
    unsafe { provider.Shutdown(&mut flags) }
        .ok()
        .expect("IXPProvider::Shutdown");
    drop(provider);
    sink.take()
}
