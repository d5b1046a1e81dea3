//! The release-build backend: the same names as the live one, zero-sized
//! (but `RefCount`, which must still count), every call an inlined no-op.
//!
//! Compiled in every build so that its sizes are checked in every build.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Kind, ObjectId, Session};

macro_rules! shared_methods {
    () => {
        /// Always the zero-sized id.
        #[inline(always)]
        pub fn id(&self) -> ObjectId {
            ObjectId::NONE
        }
        /// No-op.
        #[inline(always)]
        pub fn opened_from(self, _parent: ObjectId) -> Self {
            self
        }
        /// No-op.
        #[inline(always)]
        pub fn set_opened_from(&self, _parent: ObjectId) {}
        /// No-op.
        #[inline(always)]
        pub fn holding(self, _other: ObjectId) -> Self {
            self
        }
        /// No-op.
        #[inline(always)]
        pub fn hold(&self, _other: ObjectId) {}
        /// No-op.
        #[inline(always)]
        pub fn release_hold(&self, _other: ObjectId) {}
    };
}

/// The object guard (zero-sized).
#[derive(Debug)]
pub struct Tracked;

impl Tracked {
    /// No-op.
    #[inline(always)]
    pub fn new(_kind: &'static Kind, _label: impl Into<String>) -> Tracked {
        Tracked
    }
    /// No-op.
    #[inline(always)]
    pub fn in_session(
        _session: Session,
        _kind: &'static Kind,
        _label: impl Into<String>,
    ) -> Tracked {
        Tracked
    }
    shared_methods!();
}

/// A plain COM reference count that never wraps below 0.
#[derive(Debug)]
pub struct RefCount(AtomicU32);

impl RefCount {
    /// A count of 1.
    #[inline(always)]
    pub fn new(_kind: &'static Kind, _label: impl Into<String>) -> RefCount {
        RefCount(AtomicU32::new(1))
    }
    /// A count of 1.
    #[inline(always)]
    pub fn in_session(
        _session: Session,
        _kind: &'static Kind,
        _label: impl Into<String>,
    ) -> RefCount {
        RefCount(AtomicU32::new(1))
    }
    shared_methods!();
    /// `IUnknown::AddRef`.
    #[inline(always)]
    pub fn add_ref(&self) -> u32 {
        self.0.fetch_add(1, Ordering::Relaxed).saturating_add(1)
    }
    /// `IUnknown::Release`; stays at 0.
    #[inline(always)]
    pub fn release(&self) -> u32 {
        match self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        {
            Ok(n) => n - 1,
            Err(_) => 0,
        }
    }
    /// The current count.
    #[inline(always)]
    pub fn count(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

// The promise of release builds, checked by the compiler in every build.
const _: () = {
    assert!(size_of::<Tracked>() == 0);
    assert!(size_of::<RefCount>() == size_of::<u32>());
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds;

    #[test]
    fn refcount_still_counts_and_never_wraps() {
        let rc = RefCount::new(&kinds::IMAPI_STATUS, "status");
        assert_eq!(rc.add_ref(), 2);
        assert_eq!(rc.release(), 1);
        assert_eq!(rc.release(), 0);
        assert_eq!(rc.release(), 0, "over-release must not wrap");
    }
}

pub mod buffers {
    //! MAPI buffers in a release build: the real functions called directly,
    //! or a plain in-process implementation with MAPI's chain semantics.
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::collections::HashMap;
    use std::ffi::c_void;
    use std::sync::Mutex;

    use super::Session;

    pub use crate::buffer_abi::*;
    /// No quarantine in this build.
    pub const QUARANTINE: usize = 0;
    /// No quarantine in release builds.
    pub const QUARANTINE_BYTES: u64 = 0;

    /// MAPI's buffer functions.
    pub struct MapiBuffers {
        real: Option<(AllocateBufferFn, AllocateMoreFn, FreeBufferFn)>,
        /// In-process: each root's chain, with layouts.
        chains: Mutex<HashMap<usize, Vec<(usize, Layout)>>>,
    }

    impl MapiBuffers {
        /// A plain in-process implementation.
        pub fn in_process() -> MapiBuffers {
            MapiBuffers {
                real: None,
                chains: Mutex::new(HashMap::new()),
            }
        }

        /// Calls MAPI's functions directly.
        ///
        /// # Safety
        ///
        /// The pointers must be MAPI's functions (or ones with their contract).
        pub unsafe fn wrap(
            alloc: AllocateBufferFn,
            more: AllocateMoreFn,
            free: FreeBufferFn,
        ) -> MapiBuffers {
            MapiBuffers {
                real: Some((alloc, more, free)),
                chains: Mutex::new(HashMap::new()),
            }
        }

        fn alloc(cb: u32) -> Result<(usize, Layout), i32> {
            let layout = Layout::from_size_align(cb.max(1) as usize, 16)
                .map_err(|_| MAPI_E_NOT_ENOUGH_MEMORY)?;
            // SAFETY: the size is at least 1.
            let p = unsafe { System.alloc(layout) };
            if p.is_null() {
                Err(MAPI_E_NOT_ENOUGH_MEMORY)
            } else {
                Ok((p as usize, layout))
            }
        }

        /// `MAPIAllocateBuffer`.
        pub fn allocate_buffer(&self, cb: u32) -> Result<*mut c_void, i32> {
            if let Some((alloc, _, _)) = self.real {
                let mut p = std::ptr::null_mut();
                // SAFETY: `wrap`'s contract; `p` is a valid out pointer.
                let hr = unsafe { alloc(cb, &mut p) };
                return if hr < 0 { Err(hr) } else { Ok(p) };
            }
            let (p, layout) = Self::alloc(cb)?;
            self.chains
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(p, vec![(p, layout)]);
            Ok(p as *mut c_void)
        }

        /// `MAPIAllocateBuffer`; the session is not recorded.
        pub fn allocate_buffer_in(&self, _session: Session, cb: u32) -> Result<*mut c_void, i32> {
            self.allocate_buffer(cb)
        }

        /// `MAPIAllocateMore`.
        ///
        /// # Safety
        ///
        /// `parent` is a buffer from this value's `allocate_*`.
        pub unsafe fn allocate_more(
            &self,
            cb: u32,
            parent: *mut c_void,
        ) -> Result<*mut c_void, i32> {
            if let Some((_, more, _)) = self.real {
                let mut p = std::ptr::null_mut();
                // SAFETY: `wrap`'s contract and this function's; `p` is a valid out pointer.
                let hr = unsafe { more(cb, parent, &mut p) };
                return if hr < 0 { Err(hr) } else { Ok(p) };
            }
            let mut chains = self.chains.lock().unwrap_or_else(|e| e.into_inner());
            let root = chains
                .iter()
                .find(|(_, c)| c.iter().any(|&(a, _)| a == parent as usize))
                .map(|(&r, _)| r)
                .ok_or(MAPI_E_INVALID_PARAMETER)?;
            let (p, layout) = Self::alloc(cb)?;
            chains.entry(root).or_default().push((p, layout));
            Ok(p as *mut c_void)
        }

        /// The buffer goes to the caller: nothing is tracked in this build.
        pub fn to_caller(&self, buffer: *mut c_void) -> bool {
            !buffer.is_null()
        }

        /// `MAPIFreeBuffer`: frees a root and its chain.
        ///
        /// # Safety
        ///
        /// `buffer` is null or a root buffer from `allocate_buffer`, not freed yet.
        pub unsafe fn free_buffer(&self, buffer: *mut c_void) -> u32 {
            if let Some((_, _, free)) = self.real {
                // SAFETY: `wrap`'s contract and this function's.
                return unsafe { free(buffer) };
            }
            let chain = self
                .chains
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(buffer as usize));
            for (a, layout) in chain.into_iter().flatten() {
                // SAFETY: allocated by `alloc` with this layout, and removed
                // from the table, so freed once.
                unsafe { System.dealloc(a as *mut u8, layout) };
            }
            0
        }
    }
}
