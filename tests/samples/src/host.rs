//! A small MAPI stand-in that drives a provider through the documented
//! order: `*ProviderInit`, Logon, work, Logoff, Release(logon), Shutdown,
//! Release(provider) — and returns what the logon's Logoff reported.

use crate::mapi::*;
use crate::{Leak, Sink, ab, store, xp};

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

/// Runs one session of `provider` built with `leak`, and returns its Logoff
/// report.
pub fn run(provider: Provider, label: &str, leak: Leak) -> mapileak::Logoff {
    let sink = Sink::default();
    match provider {
        Provider::AddressBook => address_book_session(label, leak, &sink),
        Provider::MessageStore => message_store_session(label, leak, &sink),
        Provider::Transport => transport_session(label, leak, &sink),
    }
    let mut reports = sink.take();
    assert_eq!(reports.len(), 1, "one Logoff per session");
    reports.remove(0)
}

/// A client's use of a status object: open, validate, release.
fn check_status(status: IMAPIStatus) {
    // SAFETY: `status` is a live interface.
    let _ = unsafe { status.ValidateState(0, 0) };
}

fn message_store_session(label: &str, leak: Leak, sink: &Sink) {
    let provider = store::ms_provider_init(label, leak, sink.clone());
    let (mut logon, mut store) = (None, None);
    // SAFETY (every block below): live interfaces, out pointers to locals.
    unsafe { provider.Logon(0, &mut logon, &mut store) }
        .ok()
        .expect("IMSProvider::Logon");
    let (logon, store) = (logon.expect("logon"), store.expect("store"));

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

    // Shutdown, in MAPI's order.
    let mut flags = 0;
    unsafe { logon.Logoff(&mut flags) }
        .ok()
        .expect("IMSLogon::Logoff");
    drop(logon);
    drop(store);
    unsafe { provider.Shutdown(&mut flags) }
        .ok()
        .expect("IMSProvider::Shutdown");
    drop(provider);
}

fn address_book_session(label: &str, leak: Leak, sink: &Sink) {
    let provider = ab::ab_provider_init(label, leak, sink.clone());
    let mut logon = None;
    // SAFETY (every block below): live interfaces, out pointers to locals.
    unsafe { provider.Logon(0, &mut logon) }
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

    unsafe { logon.Logoff(0) }.ok().expect("IABLogon::Logoff");
    drop(logon);
    let mut flags = 0;
    unsafe { provider.Shutdown(&mut flags) }
        .ok()
        .expect("IABProvider::Shutdown");
    drop(provider);
}

fn transport_session(label: &str, leak: Leak, sink: &Sink) {
    let provider = xp::xp_provider_init(label, leak, sink.clone());
    let mut logon = None;
    // SAFETY (every block below): live interfaces, out pointers to locals.
    unsafe { provider.TransportLogon(0, &mut logon) }
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

    unsafe { logon.TransportLogoff(0) }
        .ok()
        .expect("IXPLogon::TransportLogoff");
    drop(logon);
    let mut flags = 0;
    unsafe { provider.Shutdown(&mut flags) }
        .ok()
        .expect("IXPProvider::Shutdown");
    drop(provider);
}
