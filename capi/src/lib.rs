//! mapileak's C ABI: what `include/mapileak.h` declares, for MAPI providers
//! written in C or C++ (`include/mapileak.hpp` wraps it in RAII classes).
//!
//! Build the static library optimized (`cargo build -p mapileak-capi
//! --release` gives `target/release/libmapileak_c.a`, `mapileak_c.lib` with
//! MSVC), link it into the provider's debug configuration only, with the
//! system libraries `rustc --print native-static-libs` names (on Linux
//! `-lgcc_s -lpthread -ldl -lm -lc`). It is live in every build of its own
//! (mapileak's `force` feature): what turns it off is not linking it.
//!
//! Conventions, the same for every function:
//! - Nothing unwinds into C: each function catches panics and returns its
//!   failure value (0, NULL, -1, or `MAPI_E_NOT_ENOUGH_MEMORY`).
//! - Strings may be NULL (read as empty) and need not be UTF-8 (read lossily).
//! - Sessions and providers are their report ids (`uint64_t`; 0 is none).
//!   Objects are opaque pointers; the provider frees each with
//!   `mapileak_object_free` when the object it counts is destroyed.
//! - A status is 0 when done and -1 for a bad argument (an unknown id, a
//!   NULL object, an unknown mode).
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::OnceLock;

use mapileak::buffers::{
    AllocateBufferFn, AllocateMoreFn, FreeBufferFn, MAPI_E_INVALID_PARAMETER,
    MAPI_E_NOT_ENOUGH_MEMORY, MapiBuffers,
};
use mapileak::{Malloc, Mode, Provider, ProviderKind, Reported, Scope, Session};

/// `MAPILEAK_ADDRESS_BOOK`, `MAPILEAK_MESSAGE_STORE`, `MAPILEAK_TRANSPORT`.
/// `None` for another number: refused, as every bad argument is.
fn provider_kind(kind: c_int) -> Option<ProviderKind> {
    match kind {
        1 => Some(ProviderKind::AddressBook),
        2 => Some(ProviderKind::MessageStore),
        3 => Some(ProviderKind::Transport),
        _ => None,
    }
}

/// Runs `f`; a panic becomes `fail` instead of unwinding into C.
fn guard<R>(fail: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fail)
}

/// Runs `f` in the scope of the process's one open logon when the thread
/// is in no scope and exactly one logon has not logged off: what a
/// provider makes outside a scope is then that logon's, as it nearly
/// always is (MAPI logs a profile on once). With several, a scope
/// (`mapileak_enter`) tells them apart.
#[inline]
fn attributed<R>(f: impl FnOnce() -> R) -> R {
    let _scope = match Session::current() {
        Some(_) => None,
        None => Session::sole_open(None).map(Session::enter),
    };
    f()
}

/// A C string argument.
///
/// # Safety
///
/// `p` is NULL or points to a NUL-terminated string.
unsafe fn text(p: *const c_char) -> String {
    // SAFETY: the caller's promise.
    unsafe { text_ref(p) }.into_owned()
}

/// A C string argument, borrowed when it is UTF-8 (a name only looked up
/// needs no copy).
///
/// # Safety
///
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
unsafe fn text_ref<'a>(p: *const c_char) -> Cow<'a, str> {
    if p.is_null() {
        return Cow::Borrowed("");
    }
    // SAFETY: the caller's promise.
    unsafe { CStr::from_ptr(p) }.to_string_lossy()
}

/// `mapileak_summary`: the counts of a report.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Objects alive that should not be.
    pub leaked_objects: u64,
    /// Of those, the ones no other leaked object holds.
    pub leak_roots: u64,
    /// Live heap blocks attributed to the session.
    pub heap_blocks: u64,
    /// Their bytes.
    pub heap_bytes: u64,
    /// Unfreed MAPI buffers (chains count once).
    pub mapi_buffers: u64,
    /// Protocol findings.
    pub findings: u64,
    /// Attributed heap blocks the live table could not hold, process-wide
    /// so far (raise `MAPILEAK_LIVE_BLOCKS`).
    pub heap_untracked: u64,
}

impl From<&Reported> for Summary {
    fn from(logoff: &Reported) -> Summary {
        let s = &logoff.report.summary;
        Summary {
            leaked_objects: s.leaked_objects,
            leak_roots: s.leak_roots,
            heap_blocks: s.heap_blocks,
            heap_bytes: s.heap_bytes,
            mapi_buffers: s.mapi_buffers,
            findings: s.findings,
            heap_untracked: s.heap_untracked,
        }
    }
}

/// Writes `summary` to `out` unless `out` is NULL.
///
/// # Safety
///
/// `out` is NULL or valid for writing a `mapileak_summary`.
unsafe fn put(out: *mut Summary, summary: Summary) {
    if !out.is_null() {
        // SAFETY: the caller's promise.
        unsafe { out.write(summary) };
    }
}

// ---- settings ---------------------------------------------------------------

/// `int mapileak_live(void)`: 1 when the instrumentation is compiled in.
#[unsafe(no_mangle)]
pub extern "C" fn mapileak_live() -> c_int {
    c_int::from(mapileak::LIVE)
}

/// `int mapileak_set_mode(const char *mode)`: `off`, `summary` or `full`,
/// as `MAPILEAK`. -1 for anything else.
///
/// # Safety
///
/// `mode` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_set_mode(mode: *const c_char) -> c_int {
    // SAFETY: the caller's promise.
    let mode = unsafe { text(mode) };
    guard(-1, || match Mode::parse(&mode) {
        Some(m) => {
            mapileak::set_mode(m);
            0
        }
        None => -1,
    })
}

/// `void mapileak_set_output_dir(const char *dir)`: where reports go, as
/// `MAPILEAK_DIR`; NULL or "" means the default again.
///
/// # Safety
///
/// `dir` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_set_output_dir(dir: *const c_char) {
    // SAFETY: the caller's promise.
    let dir = unsafe { text(dir) };
    guard((), || mapileak::set_output_dir(dir));
}

/// `void mapileak_set_offline_symbols(int on)`: write reports with raw
/// addresses, named later by `mapileak symbolize` (as `MAPILEAK_SYMBOLS`).
#[unsafe(no_mangle)]
pub extern "C" fn mapileak_set_offline_symbols(on: c_int) {
    guard((), || mapileak::set_offline_symbols(on != 0));
}

/// `void mapileak_set_html(int on)`: also write an HTML page per report.
#[unsafe(no_mangle)]
pub extern "C" fn mapileak_set_html(on: c_int) {
    guard((), || mapileak::set_html(on != 0));
}

// ---- sessions ---------------------------------------------------------------

/// `uint64_t mapileak_logon(int provider, const char *label)`: a logon of a
/// provider of that type starts; returns its session.
///
/// # Safety
///
/// `label` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_logon(provider: c_int, label: *const c_char) -> u64 {
    // SAFETY: the caller's promise.
    let label = unsafe { text(label) };
    let Some(kind) = provider_kind(provider) else {
        return 0;
    };
    guard(0, || Session::logon(kind, label).id())
}

/// A Logoff of `session`, its counts written to `out`.
///
/// # Safety
///
/// `out` is NULL or valid for writing a `mapileak_summary`.
unsafe fn logoff(session: u64, out: *mut Summary, how: fn(Session) -> Reported) -> c_int {
    let done = guard(None, || {
        Session::by_id(session).map(|s| Summary::from(&how(s)))
    });
    match done {
        Some(summary) => {
            // SAFETY: the caller's promise on `out`.
            unsafe { put(out, summary) };
            0
        }
        None => -1,
    }
}

/// `int mapileak_ab_logoff(uint64_t session, mapileak_summary *out)`:
/// `IABLogon::Logoff`. Checks and reports the session; `out` (may be NULL)
/// gets the report's counts.
///
/// # Safety
///
/// `out` is NULL or valid for writing a `mapileak_summary`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_ab_logoff(session: u64, out: *mut Summary) -> c_int {
    // SAFETY: the caller's promise on `out`, passed on.
    unsafe { logoff(session, out, Session::ab_logoff) }
}

/// `int mapileak_ms_logoff(uint64_t session, mapileak_summary *out)`:
/// `IMSLogon::Logoff`, as [`mapileak_ab_logoff`].
///
/// # Safety
///
/// `out` is NULL or valid for writing a `mapileak_summary`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_ms_logoff(session: u64, out: *mut Summary) -> c_int {
    // SAFETY: the caller's promise on `out`, passed on.
    unsafe { logoff(session, out, Session::ms_logoff) }
}

/// `int mapileak_transport_logoff(uint64_t session, mapileak_summary *out)`:
/// `IXPLogon::TransportLogoff`, as [`mapileak_ab_logoff`].
///
/// # Safety
///
/// `out` is NULL or valid for writing a `mapileak_summary`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_transport_logoff(session: u64, out: *mut Summary) -> c_int {
    // SAFETY: the caller's promise on `out`, passed on.
    unsafe { logoff(session, out, Session::transport_logoff) }
}

thread_local! {
    /// The scopes entered on this thread through `mapileak_enter`, innermost last.
    static SCOPES: RefCell<Vec<Scope>> = const { RefCell::new(Vec::new()) };
}

/// `int mapileak_enter(uint64_t id)`: the session (or provider) becomes the
/// calling thread's current one, owner of the objects, heap blocks and
/// buffers created without one, until the matching `mapileak_leave`.
/// Scopes nest.
#[unsafe(no_mangle)]
pub extern "C" fn mapileak_enter(id: u64) -> c_int {
    guard(-1, || {
        let scope = match (Session::by_id(id), Provider::by_id(id)) {
            (Some(session), _) => session.enter(),
            (None, Some(provider)) => provider.enter(),
            (None, None) => return -1,
        };
        // From a thread-local destructor the list may be gone: then the
        // scope ends at once, quietly (no panic message).
        match SCOPES.try_with(|s| s.borrow_mut().push(scope)) {
            Ok(()) => 0,
            Err(_) => -1,
        }
    })
}

/// `void mapileak_leave(void)`: ends the innermost scope this thread
/// entered with `mapileak_enter` (nothing when there is none).
#[unsafe(no_mangle)]
pub extern "C" fn mapileak_leave() {
    guard((), || {
        // Dropping the scope (after the borrow ends) restores the session
        // that was current before it.
        let _scope = SCOPES.try_with(|s| s.borrow_mut().pop()).ok().flatten();
    });
}

/// `uint64_t mapileak_current(void)`: the calling thread's current session, or 0.
#[unsafe(no_mangle)]
pub extern "C" fn mapileak_current() -> u64 {
    guard(0, || Session::current().map_or(0, Session::id))
}

/// `int mapileak_process_exit(void)`: reports everything still alive as
/// leaked at process end (`event: exit`): one report per provider with its
/// logons, per logon without a provider, and one for objects outside any.
/// Returns how many reports it made. It runs once (later calls return 0);
/// an `atexit` hook calls it when the process exits normally, and a
/// provider DLL should call it from `DLL_PROCESS_DETACH`.
#[unsafe(no_mangle)]
pub extern "C" fn mapileak_process_exit() -> c_int {
    guard(0, || {
        c_int::try_from(mapileak::process_exit().len()).unwrap_or(c_int::MAX)
    })
}

/// `int mapileak_snapshot(const char *label)`: writes a snapshot of what is
/// alive now (`event: snapshot`): one report per provider with its logons,
/// per logon without a provider, and one for what is outside any logon,
/// each to files of its own. Changes no state; any thread, any time.
/// Returns the number of reports (0 with `MAPILEAK=off`).
///
/// # Safety
///
/// `label` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_snapshot(label: *const c_char) -> c_int {
    // SAFETY: the caller's promise.
    let label = unsafe { text(label) };
    guard(0, || {
        c_int::try_from(mapileak::snapshot(&label).len()).unwrap_or(c_int::MAX)
    })
}

// ---- provider life -----------------------------------------------------------

/// `uint64_t mapileak_provider_init(int provider, const char *label, int
/// malloc_addrefd)`: `*ProviderInit` returned a provider object; pass 1 for
/// `malloc_addrefd` when it kept (AddRef'd) `lpMalloc`. Returns the provider.
///
/// # Safety
///
/// `label` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_provider_init(
    provider: c_int,
    label: *const c_char,
    malloc_addrefd: c_int,
) -> u64 {
    // SAFETY: the caller's promise.
    let label = unsafe { text(label) };
    let malloc = if malloc_addrefd != 0 {
        Malloc::AddRefd
    } else {
        Malloc::NotKept
    };
    guard(0, || {
        provider_kind(provider).map_or(0, |kind| Provider::init(kind, label, malloc).id())
    })
}

/// `uint64_t mapileak_provider_logon(uint64_t provider, const char *label)`:
/// the provider's `Logon` created a logon; returns its session (0 for an
/// unknown provider).
///
/// # Safety
///
/// `label` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_provider_logon(provider: u64, label: *const c_char) -> u64 {
    // SAFETY: the caller's promise.
    let label = unsafe { text(label) };
    guard(0, || {
        Provider::by_id(provider).map_or(0, |p| p.logon(label).id())
    })
}

/// `int mapileak_provider_shutdown(uint64_t provider, mapileak_summary *out)`:
/// `IXXProvider::Shutdown` — checks the provider and its logons and reports
/// what they left alive.
///
/// # Safety
///
/// `out` is NULL or valid for writing a `mapileak_summary`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_provider_shutdown(provider: u64, out: *mut Summary) -> c_int {
    let done = guard(None, || {
        Provider::by_id(provider).map(|p| Summary::from(&p.shutdown()))
    });
    match done {
        Some(summary) => {
            // SAFETY: the caller's promise.
            unsafe { put(out, summary) };
            0
        }
        None => -1,
    }
}

/// Exports `int NAME(uint64_t provider)` calling a `Provider` method.
macro_rules! provider_event {
    ($($(#[$doc:meta])* $name:ident => $method:ident;)*) => {$(
        $(#[$doc])*
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(provider: u64) -> c_int {
            guard(-1, || match Provider::by_id(provider) {
                Some(p) => {
                    p.$method();
                    0
                }
                None => -1,
            })
        }
    )*};
}

provider_event! {
    /// `int mapileak_provider_malloc_add_ref(uint64_t provider)`: the
    /// provider AddRef'd `lpMalloc` once more (after init).
    mapileak_provider_malloc_add_ref => malloc_add_ref;
    /// `int mapileak_provider_malloc_release(uint64_t provider)`: the provider
    /// released one reference on `lpMalloc`; one more than it took is an
    /// `over-release` finding.
    mapileak_provider_malloc_release => malloc_release;
    /// `int mapileak_provider_released(uint64_t provider)`: MAPI's final
    /// Release of the provider object (after Shutdown).
    mapileak_provider_released => released;
}

/// Session `id`, or for 0 the thread's current one (its scope), or outside
/// any scope the one open logon.
fn session_or_current(id: u64) -> Option<Session> {
    match id {
        0 => Session::current().or_else(|| Session::sole_open(None)),
        id => Session::by_id(id),
    }
}

/// Exports `int NAME(uint64_t session)` calling a `Session` method.
macro_rules! session_event {
    ($($(#[$doc:meta])* $name:ident => $method:ident $(($arg:ident: $ty:ty))?;)*) => {$(
        $(#[$doc])*
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(session: u64 $(, $arg: $ty)?) -> c_int {
            guard(-1, || match session_or_current(session) {
                Some(s) => {
                    s.$method($($arg)?);
                    0
                }
                None => -1,
            })
        }
    )*};
}

session_event! {
    /// `int mapileak_support_add_ref(uint64_t session)`: the logon AddRef'd
    /// its support object.
    mapileak_support_add_ref => support_add_ref;
    /// `int mapileak_support_release(uint64_t session)`: it released one.
    mapileak_support_release => support_release;
    /// `int mapileak_set_provider_uid(uint64_t session)`: `IMAPISupport::SetProviderUID`.
    mapileak_set_provider_uid => set_provider_uid;
    /// `int mapileak_modify_status_row(uint64_t session)`: `IMAPISupport::ModifyStatusRow`.
    mapileak_modify_status_row => modify_status_row;
    /// `int mapileak_subscribe(uint64_t session, uint32_t connection)`: `IMAPISupport::Subscribe`.
    mapileak_subscribe => subscribe(connection: u32);
    /// `int mapileak_unsubscribe(uint64_t session, uint32_t connection)`: `IMAPISupport::Unsubscribe`.
    mapileak_unsubscribe => unsubscribe(connection: u32);
    /// `int mapileak_server_connected(uint64_t session, uint32_t id)`: the
    /// logon opened connection `id` to a remote server.
    mapileak_server_connected => server_connected(id: u32);
    /// `int mapileak_server_disconnected(uint64_t session, uint32_t id)`: it
    /// closed it.
    mapileak_server_disconnected => server_disconnected(id: u32);
    /// `int mapileak_make_invalid(uint64_t session)`: `IMAPISupport::MakeInvalid` on the logon object.
    mapileak_make_invalid => make_invalid;
    /// `int mapileak_listed(uint64_t session)`: the logon went into the provider's list of logons.
    mapileak_listed => listed;
    /// `int mapileak_unlisted(uint64_t session)`: it left that list.
    mapileak_unlisted => unlisted;
    /// `int mapileak_store_logoff(uint64_t session, uint32_t flags)`: `IMsgStore::StoreLogoff`.
    mapileak_store_logoff => store_logoff(flags: u32);
    /// `int mapileak_store_logoff_transports(uint64_t session, uint32_t flags)`:
    /// `IMAPISupport::StoreLogoffTransports`.
    mapileak_store_logoff_transports => store_logoff_transports(flags: u32);
    /// `int mapileak_store_released(uint64_t session)`: the store object's final Release.
    mapileak_store_released => store_released;
    /// `int mapileak_logon_released(uint64_t session)`: the logon object's final Release.
    mapileak_logon_released => logon_released;
}

// ---- objects -----------------------------------------------------------------

mod object;
pub use object::*;

// ---- MAPI buffers --------------------------------------------------------------

static BUFFERS: OnceLock<MapiBuffers> = OnceLock::new();

fn buffers() -> &'static MapiBuffers {
    if let Some(buffers) = BUFFERS.get() {
        return buffers;
    }
    // Made outside the `OnceLock`, whose initialization a child forked
    // meanwhile would wait for for good: `set` only moves it in.
    let _ = BUFFERS.set(MapiBuffers::in_process());
    BUFFERS.get_or_init(MapiBuffers::in_process)
}

/// Has mapileak's `fork` handlers (Unix) take this library's own locks
/// too (the kinds made from C names, the aligned blocks, the quarantine),
/// before its own: a child forked while another thread held one would
/// otherwise wait on it (for good, or at every free). Called before each
/// of those locks is first taken; a load once done.
#[inline]
pub(crate) fn fork_safe() {
    #[cfg(unix)]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        static DONE: AtomicBool = AtomicBool::new(false);
        if !DONE.load(Ordering::Relaxed) && !DONE.swap(true, Ordering::AcqRel) {
            mapileak::hold_across_fork(hold_for_fork, release_after_fork);
        }
    }
}

#[cfg(unix)]
fn hold_for_fork() {
    object::hold_for_fork();
    heap::hold_for_fork();
}

#[cfg(unix)]
fn release_after_fork() {
    heap::release_after_fork();
    object::release_after_fork();
}

/// `int mapileak_buffers_wrap(LPALLOCATEBUFFER, LPALLOCATEMORE,
/// LPFREEBUFFER)`: the buffer functions below check and record each call and
/// pass it to these (the ones the provider received at init). Call it once,
/// before the first buffer; until then, and without it, they use an
/// in-process implementation. -1 when a pointer is NULL or buffers were
/// already used.
///
/// # Safety
///
/// The three functions are MAPI's (or keep their contract), callable from
/// any thread for as long as the process uses the buffer functions.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_buffers_wrap(
    alloc: Option<AllocateBufferFn>,
    more: Option<AllocateMoreFn>,
    free: Option<FreeBufferFn>,
) -> c_int {
    let (Some(alloc), Some(more), Some(free)) = (alloc, more, free) else {
        return -1;
    };
    // SAFETY: the caller's promise.
    let wrapped = unsafe { MapiBuffers::wrap(alloc, more, free) };
    guard(-1, || match BUFFERS.set(wrapped) {
        Ok(()) => 0,
        Err(_) => -1,
    })
}

/// `SCODE mapileak_allocate_buffer(ULONG cb, LPVOID *buffer)`: `MAPIAllocateBuffer`.
///
/// # Safety
///
/// `buffer` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn mapileak_allocate_buffer(cb: u32, buffer: *mut *mut c_void) -> i32 {
    if buffer.is_null() {
        return MAPI_E_INVALID_PARAMETER;
    }
    match guard(Err(MAPI_E_NOT_ENOUGH_MEMORY), || {
        attributed(|| buffers().allocate_buffer(cb))
    }) {
        Ok(p) => {
            // SAFETY: the caller's promise.
            unsafe { buffer.write(p) };
            0
        }
        Err(code) => code,
    }
}

/// `SCODE mapileak_allocate_buffer_in(uint64_t session, ULONG cb, LPVOID
/// *buffer)`: `MAPIAllocateBuffer` for `session`, whatever scope the thread
/// is in. An unknown session is `MAPI_E_INVALID_PARAMETER`.
///
/// # Safety
///
/// `buffer` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn mapileak_allocate_buffer_in(
    session: u64,
    cb: u32,
    buffer: *mut *mut c_void,
) -> i32 {
    if buffer.is_null() {
        return MAPI_E_INVALID_PARAMETER;
    }
    match guard(Err(MAPI_E_NOT_ENOUGH_MEMORY), || {
        match Session::by_id(session) {
            Some(s) => buffers().allocate_buffer_in(s, cb),
            None => Err(MAPI_E_INVALID_PARAMETER),
        }
    }) {
        Ok(p) => {
            // SAFETY: the caller's promise.
            unsafe { buffer.write(p) };
            0
        }
        Err(code) => code,
    }
}

/// `SCODE mapileak_allocate_more(ULONG cb, LPVOID object, LPVOID *buffer)`:
/// `MAPIAllocateMore`, linked to `object`'s chain.
///
/// # Safety
///
/// `buffer` is NULL or valid for writing a pointer; `object` is a buffer
/// from these functions, not freed (MAPI's own contract). A debug build
/// checks it and refuses others with `MAPI_E_INVALID_PARAMETER`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn mapileak_allocate_more(
    cb: u32,
    object: *mut c_void,
    buffer: *mut *mut c_void,
) -> i32 {
    if buffer.is_null() {
        return MAPI_E_INVALID_PARAMETER;
    }
    let made = guard(Err(MAPI_E_NOT_ENOUGH_MEMORY), || {
        // SAFETY: the caller's promise, which is `allocate_more`'s.
        unsafe { buffers().allocate_more(cb, object) }
    });
    match made {
        Ok(p) => {
            // SAFETY: the caller's promise.
            unsafe { buffer.write(p) };
            0
        }
        Err(code) => code,
    }
}

/// `ULONG mapileak_free_buffer(LPVOID buffer)`: `MAPIFreeBuffer`. NULL is a no-op.
///
/// # Safety
///
/// `buffer` is NULL or a root buffer from these functions, not freed
/// (MAPI's own contract). A debug build checks it, reports a bad call as a
/// finding and does not pass it on.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn mapileak_free_buffer(buffer: *mut c_void) -> u32 {
    guard(0, || {
        // SAFETY: the caller's promise, which is `free_buffer`'s.
        unsafe { buffers().free_buffer(buffer) }
    })
}

/// `int mapileak_buffer_to_caller(LPVOID buffer)`: the provider returns
/// `buffer` (a root from `mapileak_allocate_buffer`, with its chain) to its
/// caller, who frees it with MAPI's own MAPIFreeBuffer: it is no longer the
/// logon's to free, and no report lists it. 0, or -1 for NULL or what is
/// not a live root buffer.
#[unsafe(no_mangle)]
pub extern "C" fn mapileak_buffer_to_caller(buffer: *mut c_void) -> c_int {
    guard(-1, || if buffers().to_caller(buffer) { 0 } else { -1 })
}

/// `int mapileak_rows_to_caller(void *rows)`: the provider returns a row
/// set (`QueryRows`' `SRowSet`, or an `ADRLIST`) to its caller, who frees
/// each row's property array and the set with MAPI's own functions
/// (`FreeProws`): the set and every row's `lpProps` are handed over as
/// `mapileak_buffer_to_caller` does. 0, or -1 for NULL or when the set is
/// not a live root buffer of these functions (its rows are handed over all
/// the same).
///
/// # Safety
///
/// `rows` is NULL or points to a readable `SRowSet` (`cRows`, then that
/// many `SRow`s).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_rows_to_caller(rows: *mut c_void) -> c_int {
    // SAFETY: the caller's promise.
    guard(-1, || {
        if unsafe { buffers().rows_to_caller(rows) } {
            0
        } else {
            -1
        }
    })
}

/// `int mapileak_buffer_set_owner(void *buffer, const mapileak_object
/// *owner)`: `buffer` (a live root of these functions) belongs to `owner`:
/// when both leak, the buffer is listed under the object, not as a leak
/// root of its own. 0, or -1 for NULL or what is not a live root.
///
/// # Safety
///
/// `owner` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_buffer_set_owner(
    buffer: *mut c_void,
    owner: *const Object,
) -> c_int {
    // SAFETY: the caller's promise.
    let Some(owner) = (unsafe { object(owner) }) else {
        return -1;
    };
    guard(-1, || {
        if buffers().set_owner(buffer, owner.count.id()) {
            0
        } else {
            -1
        }
    })
}

thread_local! {
    /// The buffer owners entered on this thread, innermost last.
    static OWNERS: RefCell<Vec<mapileak::buffers::BufferOwner>> = const { RefCell::new(Vec::new()) };
}

/// `int mapileak_buffer_owner_enter(const mapileak_object *owner)`: until
/// the matching `mapileak_buffer_owner_leave`, the MAPI buffers this thread
/// allocates belong to `owner`: wrap it around the calls that make a MAPI
/// utility object on the provider's allocators (`CreateIProp`,
/// `CreateTable`) and the calls into it. Owners nest. -1 for NULL.
///
/// # Safety
///
/// `owner` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_buffer_owner_enter(owner: *const Object) -> c_int {
    // SAFETY: the caller's promise.
    let Some(owner) = (unsafe { object(owner) }) else {
        return -1;
    };
    guard(-1, || {
        let entered = mapileak::buffers::owned_by(owner.count.id());
        match OWNERS.try_with(|o| o.borrow_mut().push(entered)) {
            Ok(()) => 0,
            Err(_) => -1,
        }
    })
}

/// `void mapileak_buffer_owner_leave(void)`: ends the innermost
/// `mapileak_buffer_owner_enter` of this thread (nothing when there is
/// none).
#[unsafe(no_mangle)]
pub extern "C" fn mapileak_buffer_owner_leave() {
    guard((), || {
        let _owner = OWNERS.try_with(|o| o.borrow_mut().pop()).ok().flatten();
    });
}

/// `int mapileak__test_hold_lock(const char *which)`: fault injection for
/// the process-end tests (feature `test-hooks`), not declared in mapileak.h: a new thread takes
/// the lock `which` names (see `mapileak::testing::LOCKS`) and keeps it for
/// good, as a thread ended inside mapileak would. Returns 0 once it is
/// held, -1 for an unknown name.
///
/// # Safety
///
/// `which` is NULL or a NUL-terminated string.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak__test_hold_lock(which: *const c_char) -> c_int {
    // SAFETY: the caller's promise.
    let which = unsafe { text(which) };
    if !mapileak::testing::LOCKS.contains(&which.as_str()) {
        return -1;
    }
    guard(-1, move || {
        let (held, is_held) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            mapileak::testing::hold_lock(&which, move || {
                let _ = held.send(());
            })
        });
        if is_held.recv().is_ok() { 0 } else { -1 }
    })
}

/// `int mapileak__test_hold_lock_for(const char *which, unsigned ms)`: for
/// the `fork` tests (feature `test-hooks`), not declared in mapileak.h: a
/// new thread takes this library's own lock `which` names (`quarantine`,
/// `made kinds`), keeps it `ms` milliseconds and lets it go. Returns 0 once
/// it is held, -1 for an unknown name.
///
/// # Safety
///
/// `which` is NULL or a NUL-terminated string.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak__test_hold_lock_for(which: *const c_char, ms: u32) -> c_int {
    // SAFETY: the caller's promise.
    let which = unsafe { text(which) };
    let hold: fn(std::time::Duration, &dyn Fn()) = match which.as_str() {
        "quarantine" => heap::hold_quarantine_for,
        "made kinds" => object::hold_made_kinds_for,
        _ => return -1,
    };
    guard(-1, move || {
        let (held, is_held) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            hold(std::time::Duration::from_millis(ms.into()), &|| {
                let _ = held.send(());
            })
        });
        if is_held.recv().is_ok() { 0 } else { -1 }
    })
}

// ---- the C and C++ heap ----------------------------------------------------------

mod heap;

/// The alignment `malloc` gives (larger ones take the aligned path).
const MALLOC_ALIGN: usize = 2 * std::mem::size_of::<usize>();

/// `void *mapileak_malloc(size_t size)`: `malloc`, tracked: a block made
/// in a session's scope (outside any, the one open logon's) and alive at
/// its Logoff is reported with the stack that allocated it. NULL when out
/// of memory. The block is the C runtime's own: `mapileak_free` frees it,
/// and so would a plain `free`, unseen.
#[unsafe(no_mangle)]
pub extern "C" fn mapileak_malloc(size: usize) -> *mut c_void {
    guard(ptr::null_mut(), || {
        attributed(|| heap::allocate(size, MALLOC_ALIGN, false, heap::Source::Malloc)).cast()
    })
}

/// `void *mapileak_calloc(size_t count, size_t size)`: `calloc`, tracked.
#[unsafe(no_mangle)]
pub extern "C" fn mapileak_calloc(count: usize, size: usize) -> *mut c_void {
    let Some(total) = count.checked_mul(size) else {
        return ptr::null_mut();
    };
    guard(ptr::null_mut(), || {
        attributed(|| heap::allocate(total, MALLOC_ALIGN, true, heap::Source::Malloc)).cast()
    })
}

/// `void *mapileak_aligned_malloc(size_t size, size_t align)`: a block
/// aligned to `align` (a power of two). NULL for another alignment. Freed
/// by `mapileak_free`.
#[unsafe(no_mangle)]
pub extern "C" fn mapileak_aligned_malloc(size: usize, align: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        return ptr::null_mut();
    }
    guard(ptr::null_mut(), || {
        attributed(|| heap::allocate(size, align, false, heap::Source::Malloc)).cast()
    })
}

/// `void *mapileak_new(size_t size, size_t align, int array)`: C++'s
/// `operator new` (`array`: `operator new[]`), aligned to `align` (a power
/// of two; 0 for the default). NULL when out of memory (mapileak.hpp turns
/// that into `std::bad_alloc`). Freed by `mapileak_delete`.
#[unsafe(no_mangle)]
pub extern "C" fn mapileak_new(size: usize, align: usize, array: c_int) -> *mut c_void {
    let align = if align == 0 { MALLOC_ALIGN } else { align };
    if !align.is_power_of_two() {
        return ptr::null_mut();
    }
    let source = if array != 0 {
        heap::Source::NewArray
    } else {
        heap::Source::New
    };
    guard(ptr::null_mut(), || {
        attributed(|| heap::allocate(size.max(1), align, false, source)).cast()
    })
}

/// `void *mapileak_realloc(void *block, size_t size)`: `realloc`, tracked:
/// the moved block is recorded at the caller of `mapileak_realloc`. NULL
/// `block` allocates; on failure NULL, and `block` stays valid; `size` 0
/// frees `block` and returns NULL (as glibc's and Windows' `realloc` do).
/// A block of the C runtime that mapileak did not make goes to its
/// `realloc`.
///
/// # Safety
///
/// `block` is NULL or a live block of the C runtime's heap (these
/// functions' included).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_realloc(block: *mut c_void, size: usize) -> *mut c_void {
    if block.is_null() {
        return mapileak_malloc(size);
    }
    guard(ptr::null_mut(), || {
        // SAFETY: the caller's promise.
        attributed(|| unsafe { heap::realloc(block.cast(), size) }).cast()
    })
}

/// `void mapileak_free(void *block)`: `free`: a block of these functions,
/// or of the C runtime's own `malloc` (`strdup`'s, say), which goes to its
/// `free`. A block of `mapileak_new` is an `alloc-dealloc-mismatch`
/// finding, and is freed correctly. NULL is ignored.
///
/// # Safety
///
/// `block` is NULL or a live block of the C runtime's heap (these
/// functions' included).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_free(block: *mut c_void) {
    if !block.is_null() {
        // SAFETY: the caller's promise.
        guard((), || unsafe {
            heap::free(block.cast(), heap::Source::Malloc)
        })
    }
}

/// `void mapileak_delete(void *block, int array)`: C++'s `operator
/// delete` (`array`: `operator delete[]`). A block that other function
/// made (`malloc`, or `new[]` for `delete`) is an `alloc-dealloc-mismatch`
/// finding, and is freed correctly; a block of the C runtime that mapileak
/// did not make goes to its `free`. NULL is ignored.
///
/// # Safety
///
/// `block` is NULL or a live block of the C runtime's heap (these
/// functions' included).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapileak_delete(block: *mut c_void, array: c_int) {
    if !block.is_null() {
        let how = if array != 0 {
            heap::Source::NewArray
        } else {
            heap::Source::New
        };
        // SAFETY: the caller's promise.
        guard((), || unsafe { heap::free(block.cast(), how) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block holding a count destroyed just before: quarantined.
    fn delete_counted(size: usize) -> *mut c_void {
        // SAFETY: NUL-terminated strings; the block is live and freed once;
        // the handle is destroyed once, its count "living" in the block.
        unsafe {
            let object = mapileak_object_new(0, c"IMAPITable".as_ptr(), c"q".as_ptr());
            let block = mapileak_malloc(size);
            mapileak_object_destroy(object, block.cast::<u8>().add(8).cast());
            mapileak_free(block);
            block
        }
    }

    #[test]
    fn kinds_made_from_c_names_are_bounded() {
        for i in 0..MAX_MADE_KINDS + 10 {
            let name = std::ffi::CString::new(format!("IBounded{i}")).unwrap();
            let kind = kind_named(name.to_str().unwrap());
            if i < MAX_MADE_KINDS {
                assert_eq!(kind.name(), format!("IBounded{i}"));
            } else {
                assert_eq!(kind.name(), "(other kinds)");
            }
        }
        // A name made before is still its own kind.
        assert_eq!(kind_named("IBounded3").name(), "IBounded3");
    }

    #[test]
    fn the_quarantine_stays_within_its_bounds() {
        for _ in 0..20 {
            delete_counted(1 << 20);
        }
        assert_eq!(heap::quarantined(), (16, 16 << 20), "16 MiB at most");
        let mut last = ptr::null_mut();
        for _ in 0..heap::MAX_BLOCKS + 100 {
            last = delete_counted(64);
        }
        assert_eq!(
            heap::quarantined(),
            (heap::MAX_BLOCKS, 64 * heap::MAX_BLOCKS)
        );
        // A second free of a quarantined block (the destructor run again) is
        // left alone: no double free, the quarantine unchanged.
        // SAFETY: a block of ours, still in the quarantine.
        unsafe { mapileak_free(last) };
        assert_eq!(
            heap::quarantined(),
            (heap::MAX_BLOCKS, 64 * heap::MAX_BLOCKS)
        );
        // A block without a destroyed count in it is freed at once.
        let plain = mapileak_malloc(64);
        // SAFETY: a live block of ours.
        unsafe { mapileak_free(plain) };
        assert_eq!(heap::quarantined().0, heap::MAX_BLOCKS);
    }

    #[test]
    fn calls_from_thread_local_destructors_stay_quiet() {
        // A provider's thread-local cache whose destructor still calls in,
        // after this crate's own thread-locals may be gone: no panic, so no
        // panic message printed (the hook counts them).
        static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {
            PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        struct LateCaller(u64);
        impl Drop for LateCaller {
            fn drop(&mut self) {
                mapileak_enter(self.0);
                mapileak_leave();
                let _ = mapileak_current();
            }
        }
        thread_local! {
            static LATE: std::cell::RefCell<Option<LateCaller>> = const { std::cell::RefCell::new(None) };
        }
        // SAFETY: a NUL-terminated label.
        let session = unsafe { mapileak_logon(2, c"late".as_ptr()) };
        std::thread::spawn(move || {
            // The caller's value first: thread-locals are destroyed in the
            // reverse order of their first use, so this crate's scope list
            // (first used below) is gone when the caller's destructor runs.
            LATE.with(|l| *l.borrow_mut() = Some(LateCaller(session)));
            assert_eq!(mapileak_enter(session), 0);
            mapileak_leave();
        })
        .join()
        .unwrap();
        std::panic::set_hook(previous);
        assert_eq!(PANICS.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
