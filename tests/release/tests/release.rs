//! mapileak in a release build: every call is a no-op, nothing is recorded
//! or written, types are zero-sized, and the answers agree with the live
//! build's where they mean the same (the event a Shutdown report names, the
//! report directory `MAPILEAK_DIR` gives). One process, no harness: the
//! environment is set before anything else runs.

use std::mem::size_of;

use mapileak::{
    Event, Malloc, ObjectId, Provider, ProviderKind, RefCount, Scope, Session, Tracked,
    TrackingAllocator, kinds,
};

// Built without debug assertions and without `force`: the no-op API.
const _: () = assert!(!mapileak::LIVE);

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator::system();

mod traits {
    use mapileak::{
        HeapStats, ObjectId, Provider, RefCount, Session, Support, Tracked, TrackingAllocator,
        buffers,
    };

    include!("../../support/same_traits.rs");

    /// The same list as the live build's (src/lib.rs).
    pub fn check() {
        same_traits_in_every_build();
    }
}

fn main() {
    traits::check();
    let dir = std::env::temp_dir().join(format!("mapileak-release-{}", std::process::id()));
    // SAFETY: no other thread runs yet (no test harness), nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var("MAPILEAK_DIR", &dir) };
    assert_eq!(
        mapileak::output_dir(),
        dir,
        "MAPILEAK_DIR, as the live build reads it"
    );

    assert_eq!(size_of::<Session>(), 0);
    assert_eq!(size_of::<Scope>(), 0);
    assert_eq!(size_of::<Tracked>(), 0);
    assert_eq!(size_of::<ObjectId>(), 0);
    assert_eq!(size_of::<Provider>(), 0);
    assert_eq!(size_of::<RefCount>(), size_of::<u32>());
    assert_eq!(size_of::<mapileak::buffers::BufferOwner>(), 0);
    let _owner = mapileak::buffers::owned_by(counted_id());
    // Release destroys exactly once; a destroyed count stays at 0.
    let counted = RefCount::new(&kinds::IMAPI_TABLE, "table");
    assert_eq!(counted.add_ref(), 2);
    assert_eq!(counted.release_final(), (1, false));
    assert_eq!(counted.release_final(), (0, true));
    assert_eq!(counted.release_final(), (0, false));
    let destroyed = RefCount::new(&kinds::IMAPI_TABLE, "table");
    destroyed.destroyed();
    destroyed.gone();
    assert_eq!(destroyed.release_final(), (0, false));
    assert!(Session::sole_open(None).is_none());

    let provider = Provider::init(ProviderKind::MessageStore, "release", Malloc::AddRefd);
    let session = provider.logon("store");
    {
        let _scope = session.enter();
        Box::leak(Box::new(Tracked::new(&kinds::IMAPI_TABLE, "forgotten")));
        std::mem::forget(vec![0u8; 4096]);
    }
    let status = RefCount::in_session(session, &kinds::IMAPI_STATUS, "status");
    assert_eq!(status.release(), 0);
    assert_eq!(status.release(), 0, "an over-release never wraps");
    session.subscribe(7);

    let logoff = session.ms_logoff();
    assert!(logoff.report.is_clean() && logoff.files.is_empty());
    assert_eq!(logoff.report.session.event, Event::Logoff);
    let shutdown = provider.shutdown();
    assert_eq!(shutdown.report.session.event, Event::Shutdown);
    assert!(shutdown.files.is_empty());
    assert!(mapileak::process_exit().is_empty());
    assert_eq!(
        mapileak::heap_stats().allocs,
        0,
        "the allocator only forwards"
    );
    assert!(!dir.exists(), "nothing written");

    // The settings are the live build's own code: they answer the same,
    // but nothing is recorded whatever the mode is set to.
    let chosen = dir.join("chosen");
    mapileak::set_output_dir(&chosen);
    assert_eq!(mapileak::output_dir(), chosen);
    mapileak::set_output_dir("");
    assert_eq!(mapileak::output_dir(), dir, "back to MAPILEAK_DIR");
    mapileak::set_html(true);
    assert!(mapileak::html());
    mapileak::set_trace_roots(3);
    assert_eq!(mapileak::trace_roots(), 3);
    mapileak::set_mode(mapileak::Mode::Full);
    assert_eq!(mapileak::mode(), mapileak::Mode::Off);

    // MAPI buffers in-process: MAPI's chain semantics, nothing recorded.
    let buffers = mapileak::buffers::MapiBuffers::in_process();
    let root = buffers.allocate_buffer(64).unwrap();
    // SAFETY: `root` is a live buffer of `buffers`; the chain is freed once.
    unsafe {
        let child = buffers.allocate_more(16, root).unwrap();
        assert!(!child.is_null());
        assert!(buffers.allocate_more(8, std::ptr::dangling_mut()).is_err());
        // As in the live build, a child may be a parent (it joins the root's
        // chain) but is not freed on its own, and a bad free is not passed on.
        let grandchild = buffers.allocate_more(4, child).unwrap();
        assert!(!grandchild.is_null());
        assert_eq!(buffers.free_buffer(child), 0);
        assert!(buffers.to_caller(root));
        assert_eq!(buffers.free_buffer(root), 0);
        assert_eq!(buffers.free_buffer(root), 0, "a second free is not passed on");
    }
    let support = mapileak::Support::new(session, 7u8);
    assert_eq!(*support.clone(), 7);
    assert_eq!(size_of::<mapileak::Support<u64>>(), size_of::<u64>());
    println!("release: 1 passed, 0 failed");
}

/// An object's id, as a provider gets one (every id is the same zero-sized
/// one in this build).
fn counted_id() -> ObjectId {
    RefCount::new(&kinds::IMAPI_TABLE, "owner").id()
}
