//! Tables reserved on first use, not carried in the image.
//!
//! The stack interner and the allocator's live table are large (tens of
//! MiB). As zero-initialised statics they sat in the image's `.bss`: the
//! Windows loader commits all of it when the provider DLL loads, even with
//! `MAPILEAK=off` and in a 32-bit Outlook, where address space is scarce. A
//! [`Lazy`] table is a null pointer until first used; then it maps zeroed
//! pages (`mmap`, `VirtualAlloc`), which the system backs only as they are
//! touched.
//!
//! ```text
//!  null ──first use: fix len, map zeroed pages, CAS──► [header | slots ...]
//!                       (a thread that loses the race unmaps its own)
//! ```
//!
//! Mapping is a system call: no allocation, no lock, so it may happen
//! inside the allocator hook. A table lives until the process ends.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Types whose all-zero bytes are a valid value, shareable between threads.
///
/// # Safety
///
/// All-zero memory must be a valid, initialized `Self`, and `Self` must be
/// `Sync` with an alignment of at most [`HEADER`] bytes.
pub(crate) unsafe trait Zeroed: Sync {}

// SAFETY: atomics of integers are valid when zero, `Sync`, aligned to 8 at most.
unsafe impl Zeroed for AtomicU32 {}
// SAFETY: as above.
unsafe impl Zeroed for AtomicU64 {}
// SAFETY: as above.
unsafe impl Zeroed for AtomicUsize {}

/// Bytes before the first slot (a cache line, unused): slots start aligned.
const HEADER: usize = 64;

/// A table of `T`, mapped on first use, with a power-of-two slot count.
pub(crate) struct Lazy<T> {
    /// The mapping's (page-aligned) base, with log2 of the slot count in
    /// its low bits: one load gives both, so a lookup's address waits for
    /// one load, not two in a row.
    base: AtomicPtr<u8>,
    /// The slot count, fixed by the first thread that maps: every mapper
    /// agrees on it.
    len: AtomicUsize,
    /// Set when the system refused the mapping: it is not asked again (a
    /// 32-bit host short of address space would be asked on every
    /// allocation otherwise), and reports say what was lost.
    refused: AtomicBool,
    _slots: PhantomData<T>,
}

/// Fault injection (feature `test-hooks`): every mapping from now on is
/// refused, as in a host short of address space.
#[cfg(feature = "test-hooks")]
pub(crate) static REFUSE_ALL: AtomicBool = AtomicBool::new(false);

/// The low bits of [`Lazy::base`] that hold log2 of the slot count.
const SHIFT_BITS: usize = 63;

impl<T: Zeroed> Lazy<T> {
    pub(crate) const fn new() -> Self {
        Lazy {
            base: AtomicPtr::new(std::ptr::null_mut()),
            len: AtomicUsize::new(0),
            refused: AtomicBool::new(false),
            _slots: PhantomData,
        }
    }

    /// The table, if it has been mapped.
    #[inline(always)]
    pub(crate) fn get(&self) -> Option<&'static [T]> {
        self.get_pow2().map(|(t, _)| t)
    }

    /// The table and log2 of its length, if it has been mapped.
    #[inline(always)]
    pub(crate) fn get_pow2(&self) -> Option<(&'static [T], u32)> {
        let tagged = self.base.load(Ordering::Acquire);
        if tagged.is_null() {
            return None;
        }
        let shift = (tagged.addr() & SHIFT_BITS) as u32;
        let len = 1usize << shift;
        let base = tagged.map_addr(|a| a & !SHIFT_BITS);
        // SAFETY: a non-null base was published (Release) by `map`, tagged
        // with log2 of its slot count, on a mapping of
        // `HEADER + len * size_of::<T>()` zeroed bytes from the system,
        // never unmapped while published: the slots are valid `T`s
        // (`Zeroed`), aligned (page-aligned base, `T`'s alignment divides
        // `HEADER`), for the rest of the process.
        Some((
            unsafe { std::slice::from_raw_parts(base.add(HEADER).cast::<T>(), len) },
            shift,
        ))
    }

    /// The table, mapped now with `len` slots (rounded up to a power of
    /// two) if it was not yet; `None` when the system has no memory for it.
    #[inline(always)]
    pub(crate) fn get_or_map(&self, len: impl FnOnce() -> usize) -> Option<&'static [T]> {
        match self.get() {
            Some(t) => Some(t),
            None if self.refused.load(Ordering::Relaxed) => None,
            None => self.map(len()),
        }
    }

    /// Whether the system refused to map the table (it is then never
    /// asked again).
    pub(crate) fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    #[cold]
    #[inline(never)]
    fn map(&self, want: usize) -> Option<&'static [T]> {
        const { assert!(std::mem::align_of::<T>() <= HEADER) };
        let want = want.checked_next_power_of_two()?;
        let len = match self
            .len
            .compare_exchange(0, want, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => want,
            Err(fixed) => fixed,
        };
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())?
            .checked_add(HEADER)?;
        #[cfg(feature = "test-hooks")]
        let base = if REFUSE_ALL.load(Ordering::Relaxed) {
            None
        } else {
            os::map(bytes)
        };
        #[cfg(not(feature = "test-hooks"))]
        let base = os::map(bytes);
        let Some(base) = base else {
            self.refused.store(true, Ordering::Relaxed);
            return None;
        };
        // Page-aligned: the low bits are free for the shift (< 64).
        let tagged = base.map_addr(|a| a | len.trailing_zeros() as usize);
        if self
            .base
            .compare_exchange(
                std::ptr::null_mut(),
                tagged,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // Another thread mapped it first; ours was never published.
            // SAFETY: `base` is our own mapping of `bytes` bytes, unused.
            unsafe { os::unmap(base, bytes) };
        }
        self.get()
    }
}

/// `bytes` of zeroed memory of mapileak's own, outside every heap, for the
/// rest of the process; `None` when the system refuses (or `REFUSE_ALL`).
/// A system call: no allocation, no lock.
pub(crate) fn pages(bytes: usize) -> Option<std::ptr::NonNull<u8>> {
    #[cfg(feature = "test-hooks")]
    if REFUSE_ALL.load(Ordering::Relaxed) {
        return None;
    }
    os::map(bytes).and_then(std::ptr::NonNull::new)
}

#[cfg(unix)]
mod os {
    /// `bytes` of zeroed, readable and writable memory, backed on touch.
    pub(super) fn map(bytes: usize) -> Option<*mut u8> {
        // SAFETY: an anonymous private mapping at an address the kernel
        // picks; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        (p != libc::MAP_FAILED).then_some(p.cast())
    }

    /// # Safety
    ///
    /// `base` must be a mapping of `bytes` bytes from [`map`], no longer used.
    pub(super) unsafe fn unmap(base: *mut u8, bytes: usize) {
        // SAFETY: the caller's contract.
        unsafe { libc::munmap(base.cast(), bytes) };
    }
}

#[cfg(windows)]
mod os {
    use std::ffi::c_void;

    const MEM_COMMIT: u32 = 0x1000;
    const MEM_RESERVE: u32 = 0x2000;
    const MEM_RELEASE: u32 = 0x8000;
    const PAGE_READWRITE: u32 = 0x04;

    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn VirtualAlloc(addr: *mut c_void, size: usize, kind: u32, protect: u32) -> *mut c_void;
        fn VirtualFree(addr: *mut c_void, size: usize, kind: u32) -> i32;
    }

    /// `bytes` of zeroed, readable and writable memory, backed on touch.
    pub(super) fn map(bytes: usize) -> Option<*mut u8> {
        // SAFETY: a new region at an address the system picks; committed
        // pages read as zero and get physical memory when first touched.
        let p = unsafe {
            VirtualAlloc(
                std::ptr::null_mut(),
                bytes,
                MEM_RESERVE | MEM_COMMIT,
                PAGE_READWRITE,
            )
        };
        (!p.is_null()).then_some(p.cast())
    }

    /// # Safety
    ///
    /// `base` must be a mapping from [`map`], no longer used.
    pub(super) unsafe fn unmap(base: *mut u8, _bytes: usize) {
        // SAFETY: the caller's contract; MEM_RELEASE takes size 0.
        unsafe { VirtualFree(base.cast(), 0, MEM_RELEASE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_mapped_once_zeroed_and_shared() {
        static T: Lazy<AtomicU64> = Lazy::new();
        assert!(T.get().is_none(), "nothing before first use");
        let tables: Vec<usize> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| T.get_or_map(|| 1 << 20).unwrap().as_ptr() as usize))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            tables.iter().all(|&t| t == tables[0]),
            "one table: {tables:?}"
        );
        let t = T.get().unwrap();
        assert_eq!(t.len(), 1 << 20);
        assert!(
            t.iter()
                .step_by(4096)
                .all(|s| s.load(Ordering::Relaxed) == 0)
        );
        t[12345].store(7, Ordering::Relaxed);
        assert_eq!(
            T.get_or_map(|| 1).unwrap()[12345].load(Ordering::Relaxed),
            7
        );
    }

    /// Zero-initialised bytes the image asks for: `.bss` and the like
    /// (ELF `SHT_NOBITS` sections outside TLS; PE sections' virtual size
    /// beyond their raw data).
    fn zeroed_image_bytes(image: &[u8]) -> u64 {
        let u16_at = |o: usize| u16::from_le_bytes([image[o], image[o + 1]]) as usize;
        let u32_at = |o: usize| u32::from_le_bytes(image[o..o + 4].try_into().unwrap()) as u64;
        let u64_at = |o: usize| u64::from_le_bytes(image[o..o + 8].try_into().unwrap());
        if image.starts_with(b"\x7fELF") {
            let (off, size, count) = (u64_at(0x28) as usize, u16_at(0x3a), u16_at(0x3c));
            (0..count)
                .map(|i| off + i * size)
                .filter(|&h| {
                    u32_at(h + 4) == 8 && u64_at(h + 8) & 0x2 != 0 && u64_at(h + 8) & 0x400 == 0
                })
                .map(|h| u64_at(h + 0x20))
                .sum()
        } else if image.starts_with(b"MZ") {
            let pe = u32_at(0x3c) as usize;
            let (count, optional) = (u16_at(pe + 6), u16_at(pe + 20));
            let table = pe + 24 + optional;
            (0..count)
                .map(|i| table + i * 40)
                .map(|h| u32_at(h + 8).saturating_sub(u32_at(h + 16)))
                .sum()
        } else {
            panic!("neither ELF nor PE")
        }
    }

    #[test]
    fn the_image_carries_no_large_zeroed_tables() {
        // The interner and the live table once took about 94 MiB of `.bss`,
        // committed at load even with `MAPILEAK=off`. This test program
        // links all of mapileak's tables.
        let image = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let zeroed = zeroed_image_bytes(&image);
        assert!(
            zeroed < 1 << 20,
            "{zeroed} zero-initialised bytes in the image"
        );
    }
}
