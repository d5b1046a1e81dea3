//! The documented shutdown sequence, and the rules that check it.
//!
//! ```text
//!  Provider::init ─► Provider::logon ─► [support AddRef, SetProviderUID, Subscribe, listed]
//!  (*ProviderInit)    (IXXProvider::Logon)          │ work │
//!                                                   ▼
//!        [StoreLogoff ─► StoreLogoffTransports ─► store released]   (message store)
//!        [Unsubscribe, unlisted, MakeInvalid (transport), support Release (last)]
//!                                                   ▼
//!   Session::*_logoff ─► Session::logon_released ─► Provider::shutdown ─► Provider::released
//!   (IXXLogon::Logoff)   (MAPI: Release(logon))     (IXXProvider::Shutdown)  (MAPI: Release(provider))
//!                                                                  ▼
//!                                                   process_exit (at exit, or DLL unload)
//! ```
//!
//! A provider reports each step; mapileak checks the order and what is
//! still open when the logoff, Shutdown or process-end report is taken. Each
//! broken rule is a finding with the stack of the call that broke it, or of
//! the call whose counterpart never came. The rules are listed in
//! `docs/rules.md`; what must be closed at Logoff is checked by
//! the backend's `rules`.

use std::fmt;
use std::ops::Deref;

use mapileak_reports::ProviderKind;

use crate::backend::{self, lifecycle as imp};
use crate::protocol::Malloc;
use crate::{Reported, Scope, Session};

/// Reports everything still alive as leaked at process end (`event: exit`):
/// one report per provider (with its logons), per logon made without a
/// provider, and one for objects created outside any logon. Runs once; the
/// exit hook calls it (see docs/limits.md), and a provider DLL may call it
/// itself when it is unloaded. Nothing, in a build without the
/// instrumentation.
///
/// It never waits long for a lock: at process end, and in a DLL's detach
/// under the loader lock, a thread that held one may have been ended in the
/// middle (`ExitProcess` ends the other threads first) or be stuck. Each of
/// mapileak's locks, and the symbolizer, is waited for at most 200 ms;
/// past that nothing is written but one line saying which lock was held.
pub fn process_exit() -> Vec<Reported> {
    backend::logoff::process_exit()
}

/// Writes a snapshot of everything alive now (`event: snapshot`): one
/// report per provider (with its logons), per logon made without a
/// provider, and one for what is outside any logon, each to files of its
/// own, all with the same `snapshot.seq` and `label`. Nothing in it is a
/// leak yet: `mapileak growth` compares a series of snapshots and names
/// what grows at every step. Changes no state (the findings stay for the
/// Logoff that reports them); any thread may call it at any time, and the
/// provider's threads are not stopped while it copies what is alive.
/// Nothing, in a build without the instrumentation or with
/// `MAPILEAK=off`.
///
/// ```
/// let _taken = mapileak::snapshot("after sync 10");
/// ```
pub fn snapshot(label: &str) -> Vec<Reported> {
    backend::logoff::snapshot(label)
}

/// A provider object's life: `*ProviderInit` to `Shutdown` and its final
/// Release. Logons made through [`Provider::logon`] belong to it, so its
/// Shutdown can check them and report what they left alive. `Copy`.
/// Zero-sized without the instrumentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Provider {
    id: backend::Id,
}

// The promise of release builds.
const _: () = assert!(
    backend::LIVE || size_of::<Provider>() == 0 && size_of::<Support<u64>>() == size_of::<u64>()
);

impl Provider {
    /// `MSProviderInit` / `ABProviderInit` / `XPProviderInit` returned a
    /// provider object of type `kind`.
    #[inline(never)]
    pub fn init(kind: ProviderKind, label: impl Into<String>, malloc: Malloc) -> Provider {
        Provider {
            id: imp::init(kind, label, malloc),
        }
    }

    /// Its id, as its Shutdown report's `session.id` shows it.
    pub fn id(self) -> u64 {
        backend::number(self.id)
    }

    /// The provider record with this id, if [`Provider::init`] made one.
    pub fn by_id(id: u64) -> Option<Provider> {
        imp::by_id(id).map(|id| Provider { id })
    }

    /// Makes the provider the current owner of new objects on this thread
    /// (objects that belong to no logon, such as the provider object itself).
    pub fn enter(self) -> Scope {
        Scope::entered(backend::session::enter(self.id))
    }

    /// `IXXProvider::Logon` created a logon: starts its session.
    #[inline(never)]
    pub fn logon(self, label: impl Into<String>) -> Session {
        Session {
            id: imp::logon(self.id, label),
        }
    }

    /// `lpMalloc->AddRef()` after init: one more reference the provider
    /// owes a Release for.
    #[inline(never)]
    pub fn malloc_add_ref(self) {
        imp::malloc_add_ref(self.id);
    }

    /// `lpMalloc->Release()`: the provider let go of one reference it kept.
    /// One more Release than it took is an `over-release` finding at this
    /// call.
    #[inline(never)]
    pub fn malloc_release(self) {
        imp::malloc_release(self.id);
    }

    /// `IXXProvider::Shutdown`: checks the provider's logons and what it
    /// still holds, and reports every object of the provider and its logons
    /// still alive — logon objects included — as leaked at Shutdown. Call
    /// it as the last step of your Shutdown.
    #[inline(never)]
    pub fn shutdown(self) -> Reported {
        imp::shutdown(self.id)
    }

    /// MAPI released the provider object (after Shutdown).
    #[inline(never)]
    pub fn released(self) {
        imp::released(self.id);
    }
}

/// The support object (`IMAPISupport`) as the provider keeps it: creating
/// and cloning record an AddRef, dropping records a Release.
///
/// ```
/// # use mapileak::{ProviderKind, Session, Support};
/// # #[derive(Clone)] struct IMAPISupport;
/// # let session = Session::logon(ProviderKind::AddressBook, "ab");
/// # let lpMAPISup = IMAPISupport;
/// // IABProvider::Logon: keep the support object (AddRef).
/// let support = Support::new(session, lpMAPISup.clone());
/// // ... use it through Deref ...
/// drop(support); // IABLogon::Logoff: Release
/// ```
/// Without the instrumentation it is just `T`.
pub struct Support<T> {
    /// Its own AddRef, released when it drops.
    reference: imp::SupportRef,
    inner: T,
}

impl<T> Support<T> {
    /// Keeps `inner` (already AddRef'd, as a cloned COM pointer is) for `session`.
    #[inline(never)]
    pub fn new(session: Session, inner: T) -> Self {
        Support {
            reference: imp::SupportRef::add_ref(session.id),
            inner,
        }
    }
}

/// A clone is one more AddRef, released when it drops.
impl<T: Clone> Clone for Support<T> {
    fn clone(&self) -> Self {
        Support {
            reference: self.reference.again(),
            inner: self.inner.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Support<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Support")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<T> Deref for Support<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}
