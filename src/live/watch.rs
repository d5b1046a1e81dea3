//! Snapshots asked for from outside the code: by another process (a
//! control channel into the host) and periodically
//! (`MAPILEAK_SNAPSHOT_EVERY=<seconds>`). Started at the first logon or
//! provider init; with `MAPILEAK=off`, never.
//!
//! A request can do one thing: make the process write a snapshot (what
//! `crate::snapshot` writes) into its report directory. Requests that come
//! while one is being taken make one more snapshot, not one each.
//!
//! - **Windows**: a named auto-reset event, `Local\mapileak-snapshot-<pid>`,
//!   created with the default security of the process's token (its user,
//!   SYSTEM and administrators may signal it) in the logon session's
//!   namespace. The wait runs on the system thread pool, not a thread of
//!   mapileak's: a callback pins the image it runs in until it returns
//!   (`FreeLibraryWhenCallbackReturns`), and a provider DLL's unload only
//!   cancels the wait, without waiting for anything.
//! - **Unix**: opt-in, because a signal may already be the host's:
//!   `MAPILEAK_SNAPSHOT_SIGNAL=USR2` (or `USR1`, or a number) installs a
//!   handler for that signal, unless the host has one. The handler writes a
//!   byte to a pipe (all a signal handler may do); a thread of mapileak's
//!   reads it and takes the snapshot. Only the same user (or root) can
//!   signal a process.
//!
//! `mapileak snapshot PID` is the other side of both.
#![allow(unsafe_code)]

use super::once::Once;
use crate::settings::Mode;

static START: Once = Once::new("snapshot channel");

/// The label of a snapshot another process asked for.
const REQUESTED: &str = "requested";
/// The label of a periodic snapshot.
const PERIODIC: &str = "periodic";

/// Starts the channel and the periodic snapshots, once.
pub(crate) fn start() {
    START.call_once(|| {
        if super::env::mode() == Mode::Off {
            return;
        }
        let every = super::env::snapshot_every();
        platform::start(every);
    });
}

/// Takes one snapshot for the channel, never unwinding into it.
fn take(label: &str) {
    let _ = std::panic::catch_unwind(|| super::logoff::snapshot(label));
}

#[cfg(unix)]
mod platform {
    use std::ffi::c_int;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::time::Duration;

    /// The pipe's write end, for the signal handler (-1: none).
    static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
    /// The process the handler belongs to: a forked child inherits the
    /// handler and the pipe, not the thread that reads it.
    static OWNER: AtomicI32 = AtomicI32::new(0);

    extern "C" fn on_signal(_: c_int) {
        let errno = Errno::save();
        // SAFETY: getpid and write are async-signal-safe; the buffer is a
        // local byte.
        unsafe {
            if libc::getpid() == OWNER.load(Ordering::Relaxed) {
                let fd = PIPE_WRITE.load(Ordering::Relaxed);
                if fd >= 0 {
                    let byte = 1u8;
                    let _ = libc::write(fd, std::ptr::from_ref(&byte).cast(), 1);
                }
            }
        }
        errno.restore();
    }

    /// The interrupted code's `errno`, which a handler must leave as it was.
    struct Errno(c_int);

    impl Errno {
        #[cfg(target_os = "linux")]
        fn save() -> Errno {
            // SAFETY: the thread's errno location, always valid.
            Errno(unsafe { *libc::__errno_location() })
        }

        #[cfg(target_os = "linux")]
        fn restore(self) {
            // SAFETY: as in `save`.
            unsafe { *libc::__errno_location() = self.0 };
        }

        #[cfg(not(target_os = "linux"))]
        fn save() -> Errno {
            Errno(0)
        }

        #[cfg(not(target_os = "linux"))]
        fn restore(self) {}
    }

    pub(super) fn start(every: Option<Duration>) {
        let signal = super::super::env::snapshot_signal();
        if signal.is_none() && every.is_none() {
            return;
        }
        let mut fds = [-1 as c_int; 2];
        // SAFETY: a valid array of two descriptors for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            crate::backend::trace::line(format_args!(
                "snapshot requests are off: cannot make a pipe: {}",
                std::io::Error::last_os_error()
            ));
            return;
        }
        let [read, write] = fds;
        let spawned = std::thread::Builder::new()
            .name("mapileak-snapshots".to_owned())
            .spawn(move || serve(read, every));
        if let Err(e) = spawned {
            crate::backend::trace::line(format_args!(
                "snapshot requests are off: cannot start a thread: {e}"
            ));
            return;
        }
        if let Some(signal) = signal {
            install(signal, write);
        }
    }

    /// Installs the handler for `signal`, unless the host handles it.
    fn install(signal: c_int, write: c_int) {
        // SAFETY: getpid has no preconditions.
        OWNER.store(unsafe { libc::getpid() }, Ordering::Relaxed);
        PIPE_WRITE.store(write, Ordering::Relaxed);
        // SAFETY: sigaction structs zeroed then filled as the man page says;
        // the handler is an `extern "C" fn(c_int)` of static lifetime that
        // only does async-signal-safe work.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                crate::backend::trace::line(format_args!(
                    "MAPILEAK_SNAPSHOT_SIGNAL: signal {signal} cannot be handled; snapshot requests are off"
                ));
                return;
            }
            if old.sa_sigaction != libc::SIG_DFL {
                crate::backend::trace::line(format_args!(
                    "MAPILEAK_SNAPSHOT_SIGNAL: the host already handles signal {signal}; snapshot requests are off (choose another signal)"
                ));
                return;
            }
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_signal as extern "C" fn(c_int) as usize;
            new.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            let _ = libc::sigaction(signal, &new, std::ptr::null_mut());
        }
    }

    /// The thread: a snapshot per wake-up by the handler (however many
    /// bytes wait), and one per period.
    fn serve(read: c_int, every: Option<Duration>) {
        let timeout = every.map_or(-1, |d| {
            c_int::try_from(d.as_millis().max(1)).unwrap_or(c_int::MAX)
        });
        let mut next = every.map(|d| std::time::Instant::now() + d);
        loop {
            let mut fd = libc::pollfd {
                fd: read,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut fd, 1, timeout) };
            if n > 0 && fd.revents & libc::POLLIN != 0 {
                let mut buf = [0u8; 64];
                // SAFETY: reads into a local buffer of its size; the pipe
                // is non-blocking, so this ends when it is empty.
                while unsafe { libc::read(read, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
                super::take(super::REQUESTED);
            }
            if let (Some(at), Some(d)) = (next, every)
                && std::time::Instant::now() >= at
            {
                super::take(super::PERIODIC);
                next = Some(std::time::Instant::now() + d);
            }
        }
    }
}

#[cfg(windows)]
mod platform {
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
    use std::time::Duration;

    type Handle = *mut c_void;

    const GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS: u32 = 0x4;
    const WAIT_TIMEOUT: u32 = 0x102;

    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn CreateEventW(
            attributes: *mut c_void,
            manual: i32,
            initial: i32,
            name: *const u16,
        ) -> Handle;
        fn CreateThreadpoolWait(
            callback: unsafe extern "system" fn(*mut c_void, *mut c_void, *mut c_void, u32),
            context: *mut c_void,
            environment: *mut c_void,
        ) -> *mut c_void;
        fn SetThreadpoolWait(wait: *mut c_void, handle: Handle, timeout: *const i64);
        fn FreeLibraryWhenCallbackReturns(instance: *mut c_void, module: Handle);
        fn CloseHandle(handle: Handle) -> i32;
        fn GetModuleHandleExW(flags: u32, name: *const c_void, module: *mut *mut c_void) -> i32;
    }

    /// The event another process signals.
    static EVENT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    /// The thread pool's wait on it.
    static WAIT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    /// The period in 100 ns units (0: none).
    static EVERY: AtomicU64 = AtomicU64::new(0);

    /// The event's name for process `pid`: the first copy of mapileak in
    /// a process (each provider DLL built with it has its own) takes
    /// `Local\mapileak-snapshot-<pid>`, later ones `-<pid>-2` ... up to
    /// [`COPIES`]; `mapileak snapshot PID` signals them all.
    fn event_name(pid: u32, copy: u32) -> String {
        if copy == 1 {
            format!("Local\\mapileak-snapshot-{pid}")
        } else {
            format!("Local\\mapileak-snapshot-{pid}-{copy}")
        }
    }

    /// The most copies of mapileak in one process that take requests.
    const COPIES: u32 = 16;
    const ERROR_ALREADY_EXISTS: i32 = 183;

    /// A new event under the first free name: another copy of mapileak in
    /// this process (another provider DLL) may have the first.
    fn new_event() -> Option<Handle> {
        for copy in 1..=COPIES {
            let name = event_name(std::process::id(), copy);
            let wide: Vec<u16> = name.encode_utf16().chain(Some(0)).collect();
            // SAFETY: a NUL-terminated name; default security, auto-reset,
            // not signalled.
            let event = unsafe { CreateEventW(std::ptr::null_mut(), 0, 0, wide.as_ptr()) };
            let error = std::io::Error::last_os_error();
            if event.is_null() {
                crate::backend::trace::line(format_args!(
                    "snapshot requests are off: cannot create the event {name}: {error}"
                ));
                return None;
            }
            if error.raw_os_error() != Some(ERROR_ALREADY_EXISTS) {
                return Some(event);
            }
            // SAFETY: a handle just opened, closed once.
            unsafe { CloseHandle(event) };
        }
        crate::backend::trace::line(format_args!(
            "snapshot requests are off: {COPIES} copies of mapileak in this process take them already"
        ));
        None
    }

    pub(super) fn start(every: Option<Duration>) {
        if let Some(d) = every {
            let units = u64::try_from(d.as_nanos() / 100)
                .unwrap_or(u64::MAX / 2)
                .max(1);
            EVERY.store(units, Ordering::Relaxed);
        }
        let Some(event) = new_event() else {
            return;
        };
        // SAFETY: a callback of the right signature and static lifetime; no
        // context; the default environment.
        let wait =
            unsafe { CreateThreadpoolWait(on_wait, std::ptr::null_mut(), std::ptr::null_mut()) };
        if wait.is_null() {
            crate::backend::trace::line(format_args!(
                "snapshot requests are off: cannot wait on the thread pool: {}",
                std::io::Error::last_os_error()
            ));
            return;
        }
        EVENT.store(event, Ordering::Release);
        WAIT.store(wait, Ordering::Release);
        arm();
    }

    /// (Re)starts the wait: it fires once per `SetThreadpoolWait`.
    fn arm() {
        let (wait, event) = (WAIT.load(Ordering::Acquire), EVENT.load(Ordering::Acquire));
        if wait.is_null() {
            return;
        }
        // Negative: relative, in 100 ns units.
        let every = EVERY.load(Ordering::Relaxed);
        let timeout = -(i64::try_from(every).unwrap_or(i64::MAX));
        let timeout = if every == 0 {
            std::ptr::null()
        } else {
            std::ptr::from_ref(&timeout)
        };
        // SAFETY: a live wait object and event; the timeout is read during
        // the call only.
        unsafe { SetThreadpoolWait(wait, event, timeout) };
    }

    unsafe extern "system" fn on_wait(
        instance: *mut c_void,
        _context: *mut c_void,
        _wait: *mut c_void,
        result: u32,
    ) {
        // The image this code is in stays loaded until the callback has
        // returned, even if the provider DLL is released meanwhile.
        let mut module: Handle = std::ptr::null_mut();
        let here = on_wait as *const c_void;
        // SAFETY: FROM_ADDRESS with an address inside this image; the
        // handle (whose count it raised) is given back when the callback
        // returns.
        unsafe {
            if GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, here, &mut module) != 0 {
                FreeLibraryWhenCallbackReturns(instance, module);
            }
        }
        super::take(if result == WAIT_TIMEOUT {
            super::PERIODIC
        } else {
            super::REQUESTED
        });
        arm();
    }

    /// The image is being unloaded: the wait is cancelled (nothing waited
    /// for; a callback already running holds the image until it returns).
    pub(crate) fn stop() {
        let wait = WAIT.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !wait.is_null() {
            // SAFETY: a live wait object; a null handle cancels it.
            unsafe { SetThreadpoolWait(wait, std::ptr::null_mut(), std::ptr::null()) };
        }
    }
}

#[cfg(windows)]
pub(crate) use platform::stop;
