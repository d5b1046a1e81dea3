//! What a logon (or provider) opened and has not closed yet, as the
//! shutdown rules need it: recorded by `lifecycle` at each call, copied
//! into the snapshot for `rules` at Logoff.

use mapileak_reports::{ProviderKind, StackId};

/// What the shutdown rules need to remember about a session or provider.
#[derive(Default, Clone)]
pub(crate) struct Life {
    /// Stacks of the support-object AddRefs not released yet.
    pub support_refs: Vec<StackId>,
    /// The final support Release: its stack and the session's objects alive then.
    pub support_final_release: Option<(StackId, Vec<u64>)>,
    pub made_invalid: bool,
    /// Open `Subscribe` connections and their stacks.
    pub subscriptions: Vec<(u32, StackId)>,
    /// Where the logon was put in the provider's list, while it is there.
    pub listed: Option<StackId>,
    /// Whether `IMsgStore::StoreLogoff` was called.
    pub store_logoff: bool,
    pub store_logoff_transports: u32,
    pub store_released: bool,
    /// The first `IMAPISupport::SetProviderUID`, while the support object
    /// is held.
    pub provider_uid: Option<StackId>,
    /// The first `IMAPISupport::ModifyStatusRow`.
    pub status_row: Option<StackId>,
    /// Open connections to remote servers, and where each was opened.
    pub connections: Vec<(u32, StackId)>,
    /// Provider: the stacks of `lpMalloc` AddRefs (at init, and later
    /// ones) not released yet.
    pub malloc_refs: Vec<StackId>,
}

/// What the Logoff rules read of one logon, copied when its Logoff runs.
#[derive(Clone)]
pub(crate) struct LogonFacts {
    pub kind: ProviderKind,
    pub label: String,
    /// Its provider record (0: none declared).
    pub provider_record: u64,
    /// Where it was created (the Logon).
    pub opened: StackId,
    pub life: Life,
}
