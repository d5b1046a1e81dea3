//! Object kinds: the MAPI interfaces a provider's objects implement.
//!
//! Every kind is declared once with [`declare_kind!`](crate::declare_kind),
//! which defines a `static` [`Kind`] and registers it with `inventory`, so one
//! table built at link time ([`all`]) holds every kind the process knows: the
//! predeclared MAPI interfaces in [`kinds`] and the provider's
//! own. The table lets `MAPILEAK_HISTORY` name kinds, and lets the C ABI find
//! a kind by IID.

pub mod kinds;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU8, Ordering};

/// What role objects of a kind play in a logon's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An ordinary object (table, folder, message...): alive at Logoff is a leak.
    Object,
    /// The logon object (`IABLogon`, `IMSLogon`, `IMsgStore`, `IXPLogon`): MAPI
    /// releases it after Logoff returns, so alive at Logoff is expected; alive
    /// at Shutdown is a leak.
    Logon,
    /// The provider object (`IABProvider`, ...): released after Shutdown, so
    /// alive at Logoff and Shutdown is expected; alive at process end is a leak.
    Provider,
}

/// A kind of tracked object. Declare with [`declare_kind!`](crate::declare_kind).
#[derive(Debug)]
pub struct Kind {
    name: &'static str,
    iid: u128,
    role: Role,
    history_default: bool,
    /// 0: not set at run time; 1: off; 2: on.
    history_override: AtomicU8,
}

impl Kind {
    /// A kind: `name` is the interface name (`IMAPITable`), `iid` its IID as
    /// the number `0x00020301_0000_0000_c000_000000000046`, `history` whether
    /// AddRef/Release stacks are recorded by default.
    ///
    /// Use [`declare_kind!`](crate::declare_kind) so the kind is registered.
    pub const fn new(name: &'static str, iid: u128, role: Role, history: bool) -> Self {
        Kind {
            name,
            iid,
            role,
            history_default: history,
            history_override: AtomicU8::new(0),
        }
    }

    /// The interface name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The IID as a number (`Data1` in the top 32 bits, as the GUID is written).
    pub fn iid(&self) -> u128 {
        self.iid
    }

    /// The IID in registry format, `{00020301-0000-0000-C000-000000000046}`.
    pub fn iid_string(&self) -> String {
        let v = self.iid;
        format!(
            "{{{:08X}-{:04X}-{:04X}-{:04X}-{:012X}}}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }

    /// The role of its objects.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether objects of this kind record a stack per AddRef/Release.
    /// Set by [`Kind::set_history`], else by `MAPILEAK_HISTORY`, else the
    /// declared default.
    pub fn history(&self) -> bool {
        match self.history_override.load(Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => self.history_default,
        }
    }

    /// Turns per-event history on or off for objects created from now on.
    pub fn set_history(&self, on: bool) {
        self.history_override
            .store(if on { 2 } else { 1 }, Ordering::Relaxed);
    }
}

/// The `inventory` entry of a declared kind.
#[doc(hidden)]
pub struct Registered(pub &'static Kind);

inventory::collect!(Registered);

/// Every declared kind, predeclared and the provider's own.
pub fn all() -> impl Iterator<Item = &'static Kind> {
    let predeclared = &kinds::PREDECLARED;
    let registered = inventory::iter::<Registered>
        .into_iter()
        .map(|r| r.0)
        .filter(|k| !predeclared.iter().any(|p| std::ptr::eq(*p, *k)));
    predeclared.iter().copied().chain(registered)
}

/// The declared kind with this interface name (case-sensitive).
pub fn by_name(name: &str) -> Option<&'static Kind> {
    all().find(|k| k.name == name)
}

/// The declared kind with this IID.
pub fn by_iid(iid: u128) -> Option<&'static Kind> {
    all().find(|k| k.iid == iid)
}

/// Whether history is wanted for all kinds, and the names it is wanted for.
type Wanted = (bool, BTreeSet<String>);

/// History asked for by name for kinds not declared (yet): a C or C++
/// provider's own interfaces, made at run time by name (the C ABI).
static WANTED: crate::sync::Mutex<Wanted> = crate::sync::Mutex::new((false, BTreeSet::new()));

/// Whether a kind made at run time named `name` keeps history: asked for
/// by name, or for all kinds (`MAPILEAK_HISTORY=all`,
/// `mapileak_set_history("all")`).
pub fn history_wanted(name: &str) -> bool {
    let wanted = WANTED.lock();
    wanted.0 || wanted.1.contains(name)
}

/// Turns history on for the kinds `list` names (comma-separated, or `all`),
/// or off for every kind with `none`: declared kinds at once, kinds a C or
/// C++ provider makes later by name when they are made. `force`: over a
/// choice made before (a call); else only kinds nothing set yet (the
/// environment). Returns the names no declared kind has.
pub(crate) fn apply_history(list: &str, force: bool) -> Vec<String> {
    let set = |k: &Kind, to: u8| {
        if force {
            k.history_override.store(to, Ordering::Relaxed);
        } else {
            let _ =
                k.history_override
                    .compare_exchange(0, to, Ordering::Relaxed, Ordering::Relaxed);
        }
    };
    let mut unknown = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.eq_ignore_ascii_case("all") {
            all().for_each(|k| set(k, 2));
            WANTED.lock().0 = true;
        } else if name.eq_ignore_ascii_case("none") {
            all().for_each(|k| set(k, 1));
            *WANTED.lock() = (false, BTreeSet::new());
        } else {
            let mut found = false;
            for k in all().filter(|k| k.name == name) {
                found = true;
                set(k, 2);
            }
            if !found {
                WANTED.lock().1.insert(name.to_owned());
                unknown.push(name.to_owned());
            }
        }
    }
    unknown
}

#[cfg(all(unix, any(debug_assertions, feature = "force")))]
static WANTED_HELD_FOR_FORK: crate::sync::ForkHeld<crate::sync::MutexGuard<'static, Wanted>> =
    crate::sync::ForkHeld::new();

/// Takes the history-by-name lock and keeps it until
/// [`release_after_fork`] (before `fork`: a kind made by name in the child takes it). The live backend's.
#[cfg(all(unix, any(debug_assertions, feature = "force")))]
#[allow(unsafe_code)]
pub(crate) fn hold_for_fork() {
    let held = WANTED.lock();
    // SAFETY: guards of locks just taken, which every user of the slot
    // takes first.
    unsafe { WANTED_HELD_FOR_FORK.keep(held) };
}

/// Releases what [`hold_for_fork`] took (after `fork`).
#[cfg(all(unix, any(debug_assertions, feature = "force")))]
#[allow(unsafe_code)]
pub(crate) fn release_after_fork() {
    // SAFETY: the thread of `hold_for_fork`, still holding its locks.
    drop(unsafe { WANTED_HELD_FOR_FORK.take() });
}

/// [`apply_history`] from code (the C ABI's `mapileak_set_history`): over
/// the environment's choice.
pub fn set_history(list: &str) {
    apply_history(list, true);
}

/// Declares a kind of tracked object and registers it.
///
/// ```
/// mapileak::declare_kind! {
///     /// Our private search-folder object.
///     pub static ISEARCH_CACHE = ("ISearchCache", 0x8c3d0a5e_2b1f_4a8e_9d42_7e1c5a3b6f10, Object, history: true);
/// }
/// assert_eq!(ISEARCH_CACHE.name(), "ISearchCache");
/// assert!(mapileak::kind::by_name("ISearchCache").is_some());
/// ```
///
/// The role is one of `Object`, `Logon`, `Provider` ([`Role`]).
#[macro_export]
macro_rules! declare_kind {
    ($($(#[$m:meta])* $vis:vis static $id:ident = ($name:expr, $iid:expr, $role:ident, history: $hist:expr);)+) => {$(
        $(#[$m])*
        $vis static $id: $crate::Kind = $crate::Kind::new($name, $iid, $crate::Role::$role, $hist);
        $crate::__inventory::submit! { $crate::kind::Registered(&$id) }
    )+};
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::declare_kind! {
        static IHISTORY_PROBE = ("IHistoryProbe", 0x1, Object, history: false);
        static IHISTORY_PINNED = ("IHistoryPinned", 0x2, Object, history: false);
    }

    #[test]
    fn history_env_turns_named_kinds_on_and_reports_unknown_names() {
        IHISTORY_PINNED.set_history(false);
        let unknown = apply_history(" IHistoryProbe , INoSuchKind,IHistoryPinned", false);
        assert_eq!(unknown, ["INoSuchKind"]);
        // A kind a C provider makes later by that name keeps history.
        assert!(history_wanted("INoSuchKind"));
        assert!(!history_wanted("INotNamed"));
        assert!(IHISTORY_PROBE.history());
        assert!(
            !IHISTORY_PINNED.history(),
            "the API wins over the environment"
        );
    }

    #[test]
    fn predeclared_kinds_are_found_by_name_and_iid() {
        let table = by_iid(0x00020301_0000_0000_c000_000000000046).expect("IMAPITable");
        assert_eq!(table.name(), "IMAPITable");
        assert_eq!(table.iid_string(), "{00020301-0000-0000-C000-000000000046}");
        assert_eq!(by_name("IMSLogon").map(Kind::role), Some(Role::Logon));
        assert_eq!(by_name("IXPProvider").map(Kind::role), Some(Role::Provider));
    }
}
