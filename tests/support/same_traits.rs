// The traits every public type has, in every build: included by the live
// build's unit tests (src/lib.rs) and by tests/release (built without
// `force`), with the types in scope at the include.

fn debug<T: std::fmt::Debug>() {}
fn send_sync<T: Send + Sync>() {}
fn copy<T: Copy + Eq + std::hash::Hash>() {}

fn same_traits_in_every_build() {
    debug::<Session>();
    debug::<Provider>();
    debug::<ObjectId>();
    debug::<Tracked>();
    debug::<RefCount>();
    debug::<Support<u8>>();
    debug::<TrackingAllocator>();
    debug::<HeapStats>();
    debug::<buffers::BufferOwner>();
    send_sync::<Session>();
    send_sync::<Provider>();
    send_sync::<ObjectId>();
    send_sync::<Tracked>();
    send_sync::<RefCount>();
    send_sync::<Support<u8>>();
    send_sync::<TrackingAllocator>();
    send_sync::<buffers::MapiBuffers>();
    copy::<Session>();
    copy::<Provider>();
    copy::<ObjectId>();
}
