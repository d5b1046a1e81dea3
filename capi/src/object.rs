//! Counted objects: a C or C++ provider's COM objects (`mapileak_object_*`),
//! the kinds made from C names, and history for them.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void};
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use mapileak::{Kind, Provider, RefCount, Role, Session};

use crate::{attributed, guard, heap, text, text_ref};

/// `mapileak_object`: one tracked COM object's reference count.
pub struct Object {
    pub(crate) count: RefCount,
    /// `mapileak_object_destroy` was called: the object is gone, the
    /// handle kept for a late Release.
    destroyed: AtomicBool,
}

/// The object of a handle kept after `mapileak_object_destroy` is gone,
/// memory and all.
pub(crate) fn handle_gone(handle: usize) {
    // SAFETY: a handle `heap` keeps: destroyed, not freed yet.
    let object = unsafe { &*(handle as *const Object) };
    guard((), || object.count.gone());
}

/// Frees a handle kept after `mapileak_object_destroy`.
///
/// # Safety
///
/// `handle` is a handle of `mapileak_object_new*`, destroyed, not freed,
/// and not used again.
pub(crate) unsafe fn free_handle(handle: usize) {
    // SAFETY: the caller's promise: a `Box::into_raw` handle, freed once.
    let object = unsafe { Box::from_raw(handle as *mut Object) };
    guard((), move || drop(object));
}

/// The declared kind named `name`, or a kind made for it (role: an ordinary
/// object), once per name.
pub(crate) fn kind_named(name: &str) -> &'static Kind {
    let name = if name.is_empty() { "IUnknown" } else { name };
    if let Some(kind) = mapileak::kind::by_name(name) {
        return kind;
    }
    crate::fork_safe();
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    let made = made.get_or_insert_with(HashMap::new);
    if let Some(kind) = made.get(name) {
        return kind;
    }
    // Made once per name and kept for the process's life (objects and
    // reports refer to it): a provider's own interfaces, a bounded set.
    // Past [`MAX_MADE_KINDS`] names (a kind made from a label, say), the
    // rest share one kind, said once.
    if made.len() >= MAX_MADE_KINDS {
        static MORE: Kind = Kind::new("(other kinds)", 0, Role::Object, false);
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "mapileak: over {MAX_MADE_KINDS} kinds made from C names; later ones are reported as \"(other kinds)\""
            );
        });
        return &MORE;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    let history = mapileak::kind::history_wanted(leaked);
    let kind: &'static Kind = Box::leak(Box::new(Kind::new(leaked, 0, Role::Object, history)));
    made.insert(name.to_owned(), kind);
    kind
}

/// How many kinds C names make at most.
pub(crate) const MAX_MADE_KINDS: usize = 1024;

/// The kinds made from C names so far.
static MADE: Mutex<Made> = Mutex::new(None);
/// The kinds made, by name (the map made at the first).
type Made = Option<HashMap<String, &'static Kind>>;

/// Holds the lock of the kinds made from C names for `wait`, calling
/// `held` once it is held (fault injection for the `fork` tests).
#[cfg(feature = "test-hooks")]
pub(crate) fn hold_made_kinds_for(wait: std::time::Duration, held: &dyn Fn()) {
    let _made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    held();
    std::thread::sleep(wait);
}

#[cfg(unix)]
static HELD_FOR_FORK: mapileak::sync::ForkHeld<std::sync::MutexGuard<'static, Made>> =
    mapileak::sync::ForkHeld::new();

/// Takes the lock of the kinds made from C names and keeps it until
/// `release_after_fork` (before `fork`; see `crate::fork_safe`).
#[cfg(unix)]
pub(crate) fn hold_for_fork() {
    let held = MADE.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: guards of locks just taken, which every user of the slot
    // takes first.
    unsafe { HELD_FOR_FORK.keep(held) };
}

/// Releases what [`hold_for_fork`] took (after `fork`).
#[cfg(unix)]
pub(crate) fn release_after_fork() {
    // SAFETY: the thread of `hold_for_fork`, still holding its locks.
    drop(unsafe { HELD_FOR_FORK.take() });
}

/// `int mapileak_set_history(const char *kinds)`: objects of these kinds
/// (comma-separated interface names, declared ones or a provider's own, or
/// `all`) made from now on record a stack per AddRef and Release, as
/// `MAPILEAK_HISTORY` does, and over it; `none` turns it off for every
/// kind. 0, or -1 for NULL.
///
/// # Safety
///
/// `kinds` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_set_history(kinds: *const c_char) -> c_int {
    if kinds.is_null() {
        return -1;
    }
    // SAFETY: the caller's promise.
    let kinds = unsafe { text(kinds) };
    guard(-1, || {
        mapileak::kind::set_history(&kinds);
        let made = MADE.lock().unwrap_or_else(|e| e.into_inner());
        for kind in made.iter().flat_map(|m| m.values()) {
            kind.set_history(mapileak::kind::history_wanted(kind.name()));
        }
        0
    })
}

/// A new count of 1 in `owner` (a session, a provider, or 0 for the
/// thread's current session); `None` for an unknown owner.
fn count_in(owner: u64, kind: &'static Kind, label: String) -> Option<RefCount> {
    if owner == 0 {
        return Some(attributed(|| RefCount::new(kind, label)));
    }
    if let Some(session) = Session::by_id(owner) {
        return Some(RefCount::in_session(session, kind, label));
    }
    let provider = Provider::by_id(owner)?;
    // Outside a scope, the provider's one open logon; else (none or
    // several, or a scope naming one) the provider record.
    if Session::current().is_none()
        && let Some(session) = Session::sole_open(Some(owner))
    {
        return Some(RefCount::in_session(session, kind, label));
    }
    let _scope = provider.enter();
    Some(RefCount::new(kind, label))
}

fn boxed(count: Option<RefCount>) -> *mut Object {
    count.map_or(ptr::null_mut(), |count| {
        Box::into_raw(Box::new(Object {
            count,
            destroyed: AtomicBool::new(false),
        }))
    })
}

/// `mapileak_object *mapileak_object_new(uint64_t owner, const char *kind,
/// const char *label)`: a new object with a reference count of 1, of the
/// interface `kind` (`"IMAPITable"`; names the MAPI kinds use get their
/// role, others are ordinary objects), in `owner` (a session, a provider,
/// or 0 for the thread's current session). NULL for an unknown owner.
///
/// # Safety
///
/// `kind` and `label` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_object_new(
    owner: u64,
    kind: *const c_char,
    label: *const c_char,
) -> *mut Object {
    // SAFETY: the caller's promise.
    let (kind, label) = unsafe { (text_ref(kind), text(label)) };
    guard(ptr::null_mut(), || {
        boxed(count_in(owner, kind_named(&kind), label))
    })
}

/// `mapileak_guid`: a GUID as `<guiddef.h>` lays it out.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Guid {
    /// `Data1`.
    pub data1: u32,
    /// `Data2`.
    pub data2: u16,
    /// `Data3`.
    pub data3: u16,
    /// `Data4`.
    pub data4: [u8; 8],
}

impl Guid {
    /// The number [`Kind::iid`] uses.
    fn value(&self) -> u128 {
        u128::from(self.data1) << 96
            | u128::from(self.data2) << 80
            | u128::from(self.data3) << 64
            | u128::from(u64::from_be_bytes(self.data4))
    }
}

/// `mapileak_object *mapileak_object_new_iid(uint64_t owner, const
/// mapileak_guid *iid, const char *label)`: as `mapileak_object_new`, the
/// kind found by IID among the declared ones. NULL when none has it.
///
/// # Safety
///
/// `iid` is NULL or points to a GUID; `label` is NULL or a NUL-terminated
/// string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_object_new_iid(
    owner: u64,
    iid: *const Guid,
    label: *const c_char,
) -> *mut Object {
    // SAFETY: the caller's promise.
    let (iid, label) = unsafe { (iid.as_ref().copied(), text(label)) };
    guard(ptr::null_mut(), || {
        let kind = iid.and_then(|iid| mapileak::kind::by_iid(iid.value()));
        boxed(kind.and_then(|kind| count_in(owner, kind, label)))
    })
}

/// The object behind a handle.
///
/// # Safety
///
/// `object` is NULL or a handle from `mapileak_object_new*` not yet freed.
pub(crate) unsafe fn object<'a>(object: *const Object) -> Option<&'a Object> {
    // SAFETY: the caller's promise.
    unsafe { object.as_ref() }
}

/// `uint32_t mapileak_object_add_ref(mapileak_object *object)`:
/// `IUnknown::AddRef`; returns the new count (0 for NULL).
///
/// # Safety
///
/// `object` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_object_add_ref(object: *const Object) -> u32 {
    // SAFETY: the caller's promise.
    let Some(o) = (unsafe { self::object(object) }) else {
        return 0;
    };
    if o.destroyed.load(Ordering::Acquire) {
        // Through a stale pointer: the object is gone; the Release that
        // follows is the finding.
        return 0;
    }
    guard(0, || o.count.add_ref())
}

/// `uint32_t mapileak_object_release(mapileak_object *object)`:
/// `IUnknown::Release`; returns the new count. At 0 the provider destroys
/// its object (and frees the handle). A Release at 0 stays 0 and is an
/// `over-release` finding.
///
/// # Safety
///
/// `object` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_object_release(object: *const Object) -> u32 {
    // SAFETY: the caller's promise.
    let Some(o) = (unsafe { self::object(object) }) else {
        return 0;
    };
    guard(0, || o.count.release())
}

/// `uint32_t mapileak_object_release_final(const mapileak_object *object, int
/// *last)`: `IUnknown::Release`, and `*last` (may be NULL) is 1 exactly
/// when this Release took the count from 1 to 0: the caller destroys the
/// object then, and only then. A Release of a destroyed object (through a
/// stale pointer: one Release too many) returns 0 with `*last` 0 and is an
/// `over-release` finding: nothing is destroyed twice.
///
/// # Safety
///
/// `object` is NULL or a live handle (destroyed or not); `last` is NULL or
/// valid for writing an `int`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_object_release_final(
    object: *const Object,
    last: *mut c_int,
) -> u32 {
    // SAFETY: the caller's promise.
    let (n, zeroed) = match unsafe { self::object(object) } {
        Some(o) => guard((0, false), || o.count.release_final()),
        None => (0, false),
    };
    if !last.is_null() {
        // SAFETY: the caller's promise.
        unsafe { last.write(c_int::from(zeroed)) };
    }
    n
}

/// `void mapileak_object_destroy(mapileak_object *object, const void
/// *memory)`: the object is destroyed (its destructor runs; C++:
/// `~RefCount`), and its count lives at `memory`. The object is no longer
/// alive; the handle is kept with the object's heap block, when that block
/// is one of `mapileak_malloc`'s (`MAPILEAK_REPLACE_OPERATOR_NEW`) and freed
/// next on this thread: the block then stays in a bounded quarantine, its
/// bytes intact, so a Release through a stale pointer is an `over-release`
/// finding, not a use-after-free. A second call is ignored; NULL is.
///
/// # Safety
///
/// `object` is NULL or a live handle, not used after its block leaves the
/// quarantine (or, when `memory` is in no such block, after it is
/// destroyed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_object_destroy(object: *mut Object, memory: *const c_void) {
    // SAFETY: the caller's promise.
    let Some(o) = (unsafe { self::object(object) }) else {
        return;
    };
    if o.destroyed.swap(true, Ordering::AcqRel) {
        return;
    }
    guard((), || o.count.destroyed());
    if heap::in_use() {
        // SAFETY: the caller's promise: a live handle, not used again.
        unsafe { heap::dying(object as usize, memory as usize) };
    } else {
        // No block of mapileak's can hold it (the provider's operator new
        // is its own): nothing to keep.
        // SAFETY: the caller's promise: not used again.
        unsafe { free_handle(object as usize) };
    }
}

/// `uint32_t mapileak_object_count(const mapileak_object *object)`: the count now.
///
/// # Safety
///
/// `object` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_object_count(object: *const Object) -> u32 {
    // SAFETY: the caller's promise.
    unsafe { self::object(object) }.map_or(0, |o| o.count.count())
}

/// `uint64_t mapileak_object_id(const mapileak_object *object)`: its id in reports.
///
/// # Safety
///
/// `object` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_object_id(object: *const Object) -> u64 {
    // SAFETY: the caller's promise.
    unsafe { self::object(object) }.map_or(0, |o| o.count.id().get())
}

/// `uint64_t mapileak_object_memory_tag(const mapileak_object *object)`: a
/// word for the object to keep in its own memory (a field), so the heap
/// block holding it is reported as the object's, not as a separate heap
/// leak (mapileak.hpp's RefCount keeps it). 0 for NULL.
///
/// # Safety
///
/// `object` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_object_memory_tag(object: *const Object) -> u64 {
    // SAFETY: the caller's promise.
    unsafe { self::object(object) }.map_or(0, |o| o.count.id().memory_tag())
}

/// Exports `int NAME(mapileak_object *object, mapileak_object *other)`.
macro_rules! object_link {
    ($($(#[$doc:meta])* $name:ident => $method:ident;)*) => {$(
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// `object` and `other` are NULL or live handles.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(object: *const Object, other: *const Object) -> c_int {
            // SAFETY: the caller's promise.
            let (Some(o), Some(other)) = (unsafe { self::object(object) }, unsafe { self::object(other) }) else {
                return -1;
            };
            guard(-1, || {
                o.count.$method(other.count.id());
                0
            })
        }
    )*};
}

object_link! {
    /// `int mapileak_object_set_opened_from(mapileak_object *object, mapileak_object
    /// *parent)`: it was opened from `parent` (a message from its folder).
    mapileak_object_set_opened_from => set_opened_from;
    /// `int mapileak_object_hold(mapileak_object *object, mapileak_object
    /// *other)`: it now keeps a reference on `other`; a leaked holder makes
    /// what it holds an indirect leak.
    mapileak_object_hold => hold;
    /// `int mapileak_object_release_hold(mapileak_object *object,
    /// mapileak_object *other)`: it let go of one reference on `other`.
    mapileak_object_release_hold => release_hold;
}

/// `void mapileak_object_free(mapileak_object *object)`: the object is
/// destroyed; the handle is gone. NULL is ignored.
///
/// # Safety
///
/// `object` is NULL or a live handle, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_object_free(object: *mut Object) {
    if object.is_null() {
        return;
    }
    // SAFETY: the caller's promise: a handle from `Box::into_raw`, freed once.
    let object = unsafe { Box::from_raw(object) };
    guard((), move || drop(object));
}
