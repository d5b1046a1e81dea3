//! Sample MAPI service providers for mapileak's tests and demo.
//!
//! Three providers — an address book ([`ab`]), a message store ([`store`])
//! and a transport ([`xp`]) — whose objects are real COM objects: interfaces
//! declared with windows-core `#[interface]` under the MAPI IIDs
//! ([`mapi`]), objects built with `#[implement]` and tracked with
//! [`mapileak::Tracked`], and a hand-written status object counted with
//! [`mapileak::RefCount`]. [`host`] plays MAPI: it loads a provider, logs on,
//! does some work, and shuts down in the documented order.
//!
//! Each provider can be built with one [`Leak`] injected on purpose.

pub mod ab;
pub mod host;
pub mod mapi;
pub mod objects;
pub mod store;
pub mod xp;

use std::sync::{Arc, Mutex};

use windows_core::HRESULT;

/// The bug a sample provider is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leak {
    /// None: the clean provider.
    None,
    /// Provider code opens a table and never releases it.
    Table,
    /// Provider code forgets an object that holds another (a message caching
    /// its attachment; a distribution list caching a member): one root, the
    /// rest indirect.
    Chain,
    /// The status object is handed out without an AddRef, so the logon's own
    /// Release at Logoff over-releases it.
    OverRelease,
    /// All of the above at once (the demo).
    All,
}

impl Leak {
    /// Whether a provider built with `self` has bug `bug`.
    pub fn has(self, bug: Leak) -> bool {
        self == bug || (self == Leak::All && bug != Leak::None)
    }
}

/// Where a sample logon puts what its Logoff returned, for the host to read.
#[derive(Clone, Default)]
pub struct Sink(Arc<Mutex<Vec<mapileak::Logoff>>>);

impl Sink {
    fn push(&self, logoff: mapileak::Logoff) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(logoff);
    }

    /// Takes what the logons reported so far.
    pub fn take(&self) -> Vec<mapileak::Logoff> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Writes `value` through a COM out parameter; `E_POINTER` when it is null.
pub(crate) fn put<T>(slot: *mut T, value: T) -> HRESULT {
    if slot.is_null() {
        return HRESULT(0x8000_4003_u32 as i32);
    }
    // SAFETY: non-null, and every out parameter of the sample interfaces
    // points to a writable, initialized `T` owned by the caller (an
    // `Option<I>` holding `None`, or a plain integer), so overwriting it
    // without dropping the old value leaks nothing.
    unsafe { slot.write(value) };
    HRESULT(0)
}
