//! A message store whose host never logs off: mapileak's process-end report
//! (`event: exit`) still says what leaked. Used by the tests.
//!
//! ```text
//! cargo run --example no_logoff -- return          # main returns
//! cargo run --example no_logoff -- exit            # std::process::exit(3)
//! cargo run --example no_logoff -- released-early  # provider released before Shutdown
//! cargo run --example no_logoff -- no-logon         # objects tracked, no logon at all
//! ```

use mapileak_samples::life::HostSupport;
use mapileak_samples::mapi::{IMAPISupport, IMSProvider, IMsgStore};
use mapileak_samples::{Bug, Sink, store};
use windows_core::Interface;

fn main() {
    let how = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "return".to_owned());
    if how == "no-logon" {
        // A helper object tracked before (or without) any logon.
        std::mem::forget(mapileak::Tracked::new(
            &mapileak::kinds::IMAPI_TABLE,
            "made before any logon",
        ));
        return;
    }
    let provider: IMSProvider =
        store::ms_provider_init("never logged off", Bug::None, Sink::default());
    if how == "released-early" {
        // MAPI's final Release of the provider, with no Shutdown before it.
        drop(provider);
        return;
    }
    let support: IMAPISupport = HostSupport::default().into();
    let (mut logon, mut store) = (None, None);
    // SAFETY: live interfaces, out pointers to locals.
    unsafe { provider.Logon(support.as_raw(), &mut logon, &mut store) }
        .ok()
        .expect("IMSProvider::Logon");
    let store: IMsgStore = store.expect("store");
    let mut folder = None;
    // SAFETY: as above.
    unsafe { store.OpenRootFolder(&mut folder) }
        .ok()
        .expect("OpenRootFolder");
    // The host forgets everything: no Logoff, no Shutdown.
    std::mem::forget((provider, logon, store, folder, support));
    if how == "exit" {
        std::process::exit(3);
    }
}
