//! The backend without the instrumentation (a provider's release build):
//! the live backend's item names (`src/live/`), doing nothing. A session,
//! a provider and an object id are a zero-sized `Id`; an object only counts; the
//! allocator forwards; nothing is recorded, read from the environment,
//! reported or written.

/// Whether the instrumentation is compiled in (debug build or feature `force`).
pub const LIVE: bool = false;

/// What names a session, a provider or an object: nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Id;

/// The number an id shows: always 0.
#[inline(always)]
pub(crate) fn number(_: Id) -> u64 {
    0
}

pub(crate) mod env {
    use crate::settings::Mode;

    /// Nothing to read.
    #[inline(always)]
    pub(crate) fn init() {}

    /// Always `Off`: nothing is recorded.
    #[inline(always)]
    pub(crate) fn mode() -> Mode {
        Mode::Off
    }
}

pub(crate) mod exit {
    /// No process-end report, no `fork` handlers.
    #[inline(always)]
    pub(crate) fn register() {}
}

pub(crate) mod fork {
    /// No `fork` handlers: nothing of mapileak's is locked.
    #[inline(always)]
    pub(crate) fn hold_also(_: fn(), _: fn()) {}
}

pub(crate) mod logoff {
    use crate::Reported;

    /// Nothing is alive to report.
    pub(crate) fn process_exit() -> Vec<Reported> {
        Vec::new()
    }

    /// Nothing is alive to report.
    pub(crate) fn snapshot(_: &str) -> Vec<Reported> {
        Vec::new()
    }
}

pub(crate) mod session {
    use mapileak_reports::{Event, ProviderKind};

    use super::Id;
    use crate::Reported;

    #[inline(always)]
    pub(crate) fn logon(_: ProviderKind, _: impl Into<String>) -> Id {
        Id
    }

    #[inline(always)]
    pub(crate) fn enter(_: Id) -> Id {
        Id
    }

    #[inline(always)]
    pub(crate) fn leave(_: Id) {}

    /// Every id names the one zero-sized session.
    #[inline(always)]
    pub(crate) fn by_id(_: u64) -> Option<Id> {
        Some(Id)
    }

    #[inline(always)]
    pub(crate) fn current() -> Option<Id> {
        None
    }

    #[inline(always)]
    pub(crate) fn sole_open(_: Option<u64>) -> Option<Id> {
        None
    }

    pub(crate) fn logoff(_: Id, method: ProviderKind) -> Reported {
        Reported::empty(method, Event::Logoff)
    }
}

pub(crate) mod lifecycle {
    use mapileak_reports::{Event, ProviderKind};

    use super::Id;
    use crate::Reported;
    use crate::protocol::{Call, Malloc};

    #[inline(always)]
    pub(crate) fn init(_: ProviderKind, _: impl Into<String>, _: Malloc) -> Id {
        Id
    }

    #[inline(always)]
    pub(crate) fn by_id(_: u64) -> Option<Id> {
        Some(Id)
    }

    #[inline(always)]
    pub(crate) fn logon(_: Id, _: impl Into<String>) -> Id {
        Id
    }

    #[inline(always)]
    pub(crate) fn malloc_add_ref(_: Id) {}

    #[inline(always)]
    pub(crate) fn malloc_release(_: Id) {}

    pub(crate) fn shutdown(_: Id) -> Reported {
        Reported::empty(ProviderKind::Unknown, Event::Shutdown)
    }

    #[inline(always)]
    pub(crate) fn released(_: Id) {}

    #[inline(always)]
    pub(crate) fn call(_: Id, _: Call) {}

    /// A `Support`'s AddRef: nothing to record.
    pub(crate) struct SupportRef;

    impl SupportRef {
        #[inline(always)]
        pub(crate) fn add_ref(_: Id) -> SupportRef {
            SupportRef
        }

        #[inline(always)]
        pub(crate) fn again(&self) -> SupportRef {
            SupportRef
        }
    }
}

pub(crate) mod object {
    use std::fmt;

    use super::Id;
    use crate::count::{Count, Release};
    use crate::kind::Kind;

    /// `Tracked`'s inner part: nothing.
    pub(crate) struct Tracker;

    impl Tracker {
        #[inline(always)]
        pub(crate) fn new(_: Option<Id>, _: &'static Kind, _: impl Into<String>) -> Tracker {
            Tracker
        }
    }

    /// `RefCount`'s inner part: the count alone, the live one's state
    /// machine.
    pub(crate) struct Counted(Count);

    impl Counted {
        #[inline(always)]
        pub(crate) fn new(_: Option<Id>, _: &'static Kind, _: impl Into<String>) -> Counted {
            Counted(Count::new(1))
        }

        #[inline(always)]
        pub(crate) fn add_ref(&self) -> u32 {
            self.0.add_ref()
        }

        #[inline(always)]
        pub(crate) fn release(&self) -> Release {
            self.0.release()
        }

        #[inline(always)]
        pub(crate) fn destroyed(&self) {
            self.0.clear();
        }

        #[inline(always)]
        pub(crate) fn gone(&self) {}

        #[inline(always)]
        pub(crate) fn count(&self) -> u32 {
            self.0.get()
        }
    }

    macro_rules! no_links {
        ($t:ident) => {
            impl $t {
                #[inline(always)]
                pub(crate) fn id(&self) -> Id {
                    Id
                }

                #[inline(always)]
                pub(crate) fn opened_from(&self, _: Id) {}

                #[inline(always)]
                pub(crate) fn hold(&self, _: Id) {}

                #[inline(always)]
                pub(crate) fn release_hold(&self, _: Id) {}

                pub(crate) fn describe(&self, _: &mut fmt::DebugStruct<'_, '_>) {}
            }
        };
    }
    no_links!(Tracker);
    no_links!(Counted);

    /// No object is alive.
    #[inline(always)]
    pub(crate) fn alive(_: u64) -> Option<Id> {
        None
    }

    #[inline(always)]
    pub(crate) fn memory_tag(_: Id) -> u64 {
        0
    }
}

pub(crate) mod heap {
    #![allow(unsafe_code)]

    use std::alloc::{GlobalAlloc, Layout, System};

    use mapileak_reports::Rule;

    /// Nothing tells `System` apart: every call forwards.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct SystemFlag;
    pub(crate) const SYSTEM: SystemFlag = SystemFlag;
    pub(crate) const NOT_SYSTEM: SystemFlag = SystemFlag;

    /// Never: the inner allocator takes every call.
    #[inline(always)]
    pub(crate) fn via_system(_: SystemFlag) -> bool {
        false
    }

    /// `System`'s, as it is ([`via_system`] is false: not reached).
    ///
    /// # Safety
    ///
    /// `GlobalAlloc::alloc`'s contract.
    #[inline(always)]
    pub(crate) unsafe fn system_alloc(layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    /// `System`'s, as it is ([`via_system`] is false: not reached).
    ///
    /// # Safety
    ///
    /// `GlobalAlloc::dealloc`'s contract.
    #[inline(always)]
    pub(crate) unsafe fn system_dealloc(ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    /// Nothing recorded: nothing to carry over a realloc.
    #[derive(Clone, Copy)]
    pub(crate) struct Origin;

    #[inline(always)]
    pub(crate) fn before_realloc(_: *mut u8) -> Origin {
        Origin
    }

    #[inline(always)]
    pub(crate) fn after_realloc(_: *mut u8, _: *mut u8, _: usize, _: usize, _: Origin) {}

    #[inline(always)]
    pub(crate) fn stats() -> [u64; 6] {
        [0; 6]
    }

    #[inline(always)]
    pub(crate) fn on_alloc(_: *mut u8, _: usize) {}

    #[inline(always)]
    pub(crate) fn on_free(_: *mut u8, _: usize) {}

    #[inline(always)]
    pub(crate) fn on_alloc_indexed(_: *mut u8, _: usize) -> u32 {
        0
    }

    #[inline(always)]
    pub(crate) fn on_free_indexed(_: *mut u8, _: usize, _: u32) {}

    #[inline(always)]
    pub(crate) fn finding(_: Rule, _: impl FnOnce() -> String) {}
}

pub(crate) mod buffers {
    use mapileak_reports::Rule;

    use super::Id;

    /// No stacks: 0 for each.
    pub(crate) type StackId = mapileak_reports::StackId;

    /// Nothing to mark.
    pub(crate) struct Quiet;

    #[inline(always)]
    pub(crate) fn quiet() -> Quiet {
        Quiet
    }

    #[inline(always)]
    pub(crate) fn capture() -> StackId {
        0
    }

    #[inline(always)]
    pub(crate) fn current_session() -> u64 {
        0
    }

    #[inline(always)]
    pub(crate) fn buffer_owner() -> u64 {
        0
    }

    #[inline(always)]
    pub(crate) fn enter_owner(_: Id) -> Id {
        Id
    }

    #[inline(always)]
    pub(crate) fn leave_owner(_: Id) {}

    #[inline(always)]
    pub(crate) fn finding(_: u64, _: Rule, _: Option<StackId>, _: impl FnOnce() -> String) {}
}
