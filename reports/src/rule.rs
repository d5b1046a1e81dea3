//! The rules a finding can name: one enum, spelled once. The library
//! files findings by [`Rule`], the HTML explains them with [`Rule::help`],
//! the gate matches `rule:` suppressions against [`Rule::id`], and
//! `docs/rules.md` is checked against [`Rule::ALL`] by a test.
//!
//! In a report a finding's `rule` stays a string (the wire format is a
//! contract, and a newer writer may name a rule this reader does not know):
//! [`Rule::from_id`] reads it back.

use crate::Severity;

/// A rule of the MAPI shutdown protocol or memory contract (`docs/rules.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    /// `over-release`: IUnknown::Release was called on an object whose count was already 0: a use-after-free in a provider whose Release frees.
    OverRelease,
    /// `support-not-released`: Logoff must release every AddRef of the support object (IMAPISupport); while one is held, MAPI cannot remove the provider's MAPIUIDs and status row, and MAPIUninitialize can hang.
    SupportNotReleased,
    /// `transport-support-order`: A transport calls IMAPISupport::MakeInvalid, then releases the support object last: that Release can release the provider itself.
    TransportSupportOrder,
    /// `subscription-open`: Every IMAPISupport::Subscribe connection must be Unsubscribe'd by Logoff.
    SubscriptionOpen,
    /// `malloc-not-released`: lpMalloc, AddRef'd at ProviderInit to keep it, must be released by Shutdown.
    MallocNotReleased,
    /// `store-logoff-transports`: IMAPISupport::StoreLogoffTransports must be called exactly once: from StoreLogoff, or from the store's final Release with LOGOFF_ABORT.
    StoreLogoffTransports,
    /// `store-logoff-flags`: IMsgStore::StoreLogoff takes exactly one of LOGOFF_ABORT, LOGOFF_NO_WAIT, LOGOFF_ORDERLY, LOGOFF_PURGE, LOGOFF_QUIET.
    StoreLogoffFlags,
    /// `logon-still-listed`: Logoff must remove the logon from the provider's list of logons.
    LogonStillListed,
    /// `out-of-order`: MAPI's order is Logoff, Release(logon), Shutdown, Release(provider); nothing is used on a session after its Logoff.
    OutOfOrder,
    /// `buffer-leaked`: A MAPIAllocateBuffer block was never freed with MAPIFreeBuffer; Logoff does not free buffers.
    BufferLeaked,
    /// `buffer-free-child`: MAPIFreeBuffer was called on an AllocateMore child: only the parent may be freed, and it frees the chain.
    BufferFreeChild,
    /// `buffer-double-free`: MAPIFreeBuffer was called twice on one buffer.
    BufferDoubleFree,
    /// `buffer-foreign-free`: MAPIFreeBuffer was called on memory MAPI did not allocate.
    BufferForeignFree,
    /// `buffer-more-on-child`: MAPIAllocateMore was given an AllocateMore child as its parent: MAPI requires a MAPIAllocateBuffer block.
    BufferMoreOnChild,
    /// `alloc-dealloc-mismatch`: A heap block was freed by a function that does not match the one that allocated it (`new` freed with `free`, `malloc` with `delete`, `new[]` with `delete`).
    AllocDeallocMismatch,
    /// `heap-double-free`: A C or C++ heap block was freed a second time.
    HeapDoubleFree,
    /// `heap-bad-free`: A C or C++ heap free got an address that is no heap block (a small number, a misaligned pointer).
    HeapBadFree,
    /// `provider-uid-registered`: The provider's MAPIUIDs (IMAPISupport::SetProviderUID) are still registered at Logoff: MAPI removes them at the support object's final Release, which has not come.
    ProviderUidRegistered,
    /// `status-row-present`: The provider's status-table row (IMAPISupport::ModifyStatusRow) is still there at Logoff: MAPI removes it at the support object's final Release, which has not come.
    StatusRowPresent,
    /// `server-connection-open`: Logoff must drop the connections to remote servers the logon opened; nothing else closes them.
    ServerConnectionOpen,
    /// `shutdown-with-open-logons`: Shutdown ran while a logon of the provider had not logged off.
    ShutdownWithOpenLogons,
    /// `growth`: A site (a kind with its creation stack, a heap or MAPI buffer allocation site) grew at every step of a series of snapshots taken while the process ran: a cache or list that only grows until Logoff.
    Growth,
}

impl Rule {
    /// Every rule, in the order `docs/rules.md` lists them.
    pub const ALL: [Rule; 22] = [
        Rule::OverRelease,
        Rule::SupportNotReleased,
        Rule::TransportSupportOrder,
        Rule::SubscriptionOpen,
        Rule::MallocNotReleased,
        Rule::StoreLogoffTransports,
        Rule::StoreLogoffFlags,
        Rule::LogonStillListed,
        Rule::OutOfOrder,
        Rule::BufferLeaked,
        Rule::BufferFreeChild,
        Rule::BufferDoubleFree,
        Rule::BufferForeignFree,
        Rule::BufferMoreOnChild,
        Rule::AllocDeallocMismatch,
        Rule::HeapDoubleFree,
        Rule::HeapBadFree,
        Rule::ProviderUidRegistered,
        Rule::StatusRowPresent,
        Rule::ServerConnectionOpen,
        Rule::ShutdownWithOpenLogons,
        Rule::Growth,
    ];

    /// The id reports and suppressions use (`over-release`).
    pub const fn id(self) -> &'static str {
        match self {
            Rule::OverRelease => "over-release",
            Rule::SupportNotReleased => "support-not-released",
            Rule::TransportSupportOrder => "transport-support-order",
            Rule::SubscriptionOpen => "subscription-open",
            Rule::MallocNotReleased => "malloc-not-released",
            Rule::StoreLogoffTransports => "store-logoff-transports",
            Rule::StoreLogoffFlags => "store-logoff-flags",
            Rule::LogonStillListed => "logon-still-listed",
            Rule::OutOfOrder => "out-of-order",
            Rule::BufferLeaked => "buffer-leaked",
            Rule::BufferFreeChild => "buffer-free-child",
            Rule::BufferDoubleFree => "buffer-double-free",
            Rule::BufferForeignFree => "buffer-foreign-free",
            Rule::BufferMoreOnChild => "buffer-more-on-child",
            Rule::AllocDeallocMismatch => "alloc-dealloc-mismatch",
            Rule::HeapDoubleFree => "heap-double-free",
            Rule::HeapBadFree => "heap-bad-free",
            Rule::ProviderUidRegistered => "provider-uid-registered",
            Rule::StatusRowPresent => "status-row-present",
            Rule::ServerConnectionOpen => "server-connection-open",
            Rule::ShutdownWithOpenLogons => "shutdown-with-open-logons",
            Rule::Growth => "growth",
        }
    }

    /// How bad a broken rule is. Errors leak, corrupt memory or can hang
    /// `MAPIUninitialize`; warnings are duties MAPI itself performs once the
    /// provider lets go (its MAPIUIDs and status row go with the support
    /// object's final Release).
    pub const fn severity(self) -> Severity {
        match self {
            Rule::ProviderUidRegistered | Rule::StatusRowPresent => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// One line on what the rule asks, for the HTML's findings table.
    pub const fn help(self) -> &'static str {
        match self {
            Rule::OverRelease => {
                "IUnknown::Release was called on an object whose count was already 0: a use-after-free in a provider whose Release frees."
            }
            Rule::SupportNotReleased => {
                "Logoff must release every AddRef of the support object (IMAPISupport); while one is held, MAPI cannot remove the provider's MAPIUIDs and status row, and MAPIUninitialize can hang."
            }
            Rule::TransportSupportOrder => {
                "A transport calls IMAPISupport::MakeInvalid, then releases the support object last: that Release can release the provider itself."
            }
            Rule::SubscriptionOpen => {
                "Every IMAPISupport::Subscribe connection must be Unsubscribe'd by Logoff."
            }
            Rule::MallocNotReleased => {
                "lpMalloc, AddRef'd at ProviderInit to keep it, must be released by Shutdown."
            }
            Rule::StoreLogoffTransports => {
                "IMAPISupport::StoreLogoffTransports must be called exactly once: from StoreLogoff, or from the store's final Release with LOGOFF_ABORT."
            }
            Rule::StoreLogoffFlags => {
                "IMsgStore::StoreLogoff takes exactly one of LOGOFF_ABORT, LOGOFF_NO_WAIT, LOGOFF_ORDERLY, LOGOFF_PURGE, LOGOFF_QUIET."
            }
            Rule::LogonStillListed => {
                "Logoff must remove the logon from the provider's list of logons."
            }
            Rule::OutOfOrder => {
                "MAPI's order is Logoff, Release(logon), Shutdown, Release(provider); nothing is used on a session after its Logoff."
            }
            Rule::BufferLeaked => {
                "A MAPIAllocateBuffer block was never freed with MAPIFreeBuffer; Logoff does not free buffers."
            }
            Rule::BufferFreeChild => {
                "MAPIFreeBuffer was called on an AllocateMore child: only the parent may be freed, and it frees the chain."
            }
            Rule::BufferDoubleFree => "MAPIFreeBuffer was called twice on one buffer.",
            Rule::BufferForeignFree => "MAPIFreeBuffer was called on memory MAPI did not allocate.",
            Rule::BufferMoreOnChild => {
                "MAPIAllocateMore was given an AllocateMore child as its parent: MAPI requires a MAPIAllocateBuffer block (the new block still joins the root's chain and is freed with it)."
            }
            Rule::AllocDeallocMismatch => {
                "A heap block was freed by a function that does not pair with the one that allocated it (new with free, malloc with delete, new[] with delete): mapileak frees it correctly, a plain C runtime may corrupt its heap."
            }
            Rule::HeapDoubleFree => {
                "A heap block was freed a second time: the C runtime may corrupt its heap or abort; mapileak does not pass the second free on."
            }
            Rule::HeapBadFree => {
                "A heap free got an address that cannot be a heap block: mapileak does not pass it on, a plain C runtime would crash."
            }
            Rule::ProviderUidRegistered => {
                "The provider's MAPIUIDs (IMAPISupport::SetProviderUID) are still registered at Logoff: MAPI removes them at the support object's final Release, which has not come."
            }
            Rule::StatusRowPresent => {
                "The provider's status-table row (IMAPISupport::ModifyStatusRow) is still there at Logoff: MAPI removes it at the support object's final Release, which has not come."
            }
            Rule::ServerConnectionOpen => {
                "Logoff must drop the connections to remote servers the logon opened; nothing else closes them."
            }
            Rule::ShutdownWithOpenLogons => {
                "Shutdown ran while a logon of the provider had not logged off."
            }
            Rule::Growth => {
                "A site grew at every step of a series of snapshots taken while the process ran: memory a long-running Outlook loses although Logoff frees it."
            }
        }
    }

    /// The rule with this id.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::Rule;

    #[test]
    fn ids_are_unique_and_read_back() {
        for r in Rule::ALL {
            assert_eq!(Rule::from_id(r.id()), Some(r));
            assert!(!r.help().is_empty(), "{r} has help");
        }
        assert_eq!(Rule::from_id("no-such-rule"), None);
        assert_eq!(Rule::OverRelease.to_string(), "over-release");
        // One line of its own for each rule.
        let helps: std::collections::HashSet<&str> = Rule::ALL.iter().map(|r| r.help()).collect();
        assert_eq!(helps.len(), Rule::ALL.len());
    }

    /// The rules docs/rules.md marks "(warning)" are the warnings.
    #[test]
    fn docs_rules_md_marks_the_warnings() {
        let doc = include_str!("../../docs/rules.md");
        for r in Rule::ALL {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}`", r.id())))
                .unwrap_or_else(|| panic!("{r} has a row"));
            let warning = row.starts_with(&format!("| `{}` (warning)", r.id()));
            assert_eq!(
                r.severity() == crate::Severity::Warning,
                warning,
                "{r}: docs/rules.md against Rule::severity"
            );
        }
    }

    /// `docs/rules.md` lists exactly these rules, in this order.
    #[test]
    fn docs_rules_md_lists_every_rule() {
        let doc = include_str!("../../docs/rules.md");
        let listed: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let ids: Vec<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
        assert_eq!(listed, ids, "docs/rules.md's table against Rule::ALL");
    }
}
