//! The words of the shutdown protocol, shared by the public API and both
//! backends: the StoreLogoff flags, whether `lpMalloc` was kept, and the
//! steps a logon reports.

/// `IMsgStore::StoreLogoff` input flags; exactly one may be passed.
pub const LOGOFF_IN_FLAGS: [(u32, &str); 5] = [
    (0x1, "LOGOFF_NO_WAIT"),
    (0x2, "LOGOFF_ORDERLY"),
    (0x4, "LOGOFF_PURGE"),
    (0x8, "LOGOFF_ABORT"),
    (0x10, "LOGOFF_QUIET"),
];

/// `LOGOFF_ABORT`, what a store's Release passes to `StoreLogoffTransports`
/// when the client never called `StoreLogoff`.
pub const LOGOFF_ABORT: u32 = 0x8;

/// Whether `*ProviderInit` kept `lpMalloc` (and so owes one Release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malloc {
    /// The provider did not keep `lpMalloc`.
    NotKept,
    /// The provider AddRef'd `lpMalloc` to keep it: Shutdown must release it.
    AddRefd,
}

/// One step of a logon's life that the provider reports (a `Session`
/// method each), for the backend to record and check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    SupportAddRef,
    SupportRelease,
    SetProviderUid,
    ModifyStatusRow,
    ServerConnected(u32),
    ServerDisconnected(u32),
    Subscribe(u32),
    Unsubscribe(u32),
    MakeInvalid,
    Listed,
    Unlisted,
    StoreLogoff(u32),
    StoreLogoffTransports(u32),
    StoreReleased,
    LogonReleased,
}
