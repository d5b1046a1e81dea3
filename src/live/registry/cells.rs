//! Where the registry's [`Node`]s live: in pages of mapileak's own, not in
//! the provider's heap.
//!
//! As `Arc<Node>`s (168 bytes, and a label and a map entry beside), the
//! records of 50,000 objects put some 9 MB of mapileak's memory between
//! the provider's own blocks, and the provider's heap grew by as much. In
//! the whole-program benchmark's counting run, records here (and a node
//! of 80 bytes, `node`) took the overhead from 1.18x to 1.12x of the plain
//! run, and its peak memory from 26.9 to 21.7 MB. A [`NodeRef`] is the
//! same shared, counted handle (what `Arc` does, no more) to a cell in
//! chunks mapped for nodes only:
//!
//! ```text
//!  take:      [lock] own free list ─empty─► take all of `RETURNED`
//!                    ─empty─► next cell of the chunk ─full─► map a chunk
//!  give back: push on `RETURNED` (a CAS: never waits, so a last handle
//!             may drop anywhere, at DLL unload too)
//! ```
//!
//! Only the lock's holder pops, and it takes `RETURNED` whole, so the
//! lock-free stack has no ABA. Cells are reused, chunks never unmapped.
//! When the system refuses a chunk (a crowded 32-bit host), a cell comes
//! from the global allocator instead and goes back there.
#![allow(unsafe_code)]

use std::alloc::Layout;
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering, fence};

use crate::sync::Mutex;

use super::Node;
use crate::backend::vmem;

/// Bytes mapped at a time (a multiple of every system's page and of
/// Windows' allocation granularity).
const CHUNK: usize = 256 * 1024;

struct Cell {
    /// The [`NodeRef`]s to it.
    shared: AtomicUsize,
    /// From the global allocator: no chunk could be mapped.
    heap: bool,
    node: Node,
}

const CELL: Layout = Layout::new::<Cell>();

// A free cell holds the next free cell's address in its first word, and
// cells (a type's size is a multiple of its alignment) sit one after
// another from a page-aligned chunk start.
const _: () = assert!(CELL.size() >= size_of::<*mut Cell>() && CELL.align() <= 4096);
const _: () = assert!(CELL.size() <= CHUNK);

/// A shared handle to a node, like `Arc<Node>`.
pub(crate) struct NodeRef(NonNull<Cell>);

// SAFETY: a `NodeRef` gives shared access to its `Node` only, `Node` is
// `Send + Sync` (checked below), and the handle count is atomic: the
// reasons `Arc<Node>` is `Send + Sync`.
unsafe impl Send for NodeRef {}
// SAFETY: as above.
unsafe impl Sync for NodeRef {}
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<Node>();
};

/// The chunks' state, touched only under [`CHUNKS`]' lock.
pub(crate) struct Chunks {
    /// Free cells, linked through their first word.
    free: *mut Cell,
    /// The newest chunk's unused part: `next..end`.
    next: *mut u8,
    end: *mut u8,
}

// SAFETY: pointers into mapileak's own chunks, used only by the lock's
// holder, whichever thread that is.
unsafe impl Send for Chunks {}

static CHUNKS: Mutex<Chunks> = Mutex::new(Chunks {
    free: ptr::null_mut(),
    next: ptr::null_mut(),
    end: ptr::null_mut(),
});

/// Cells given back since the lock's holder last took them all.
static RETURNED: AtomicPtr<Cell> = AtomicPtr::new(ptr::null_mut());

/// A cell of a chunk, unused; `None` when the system refuses a chunk.
fn take() -> Option<NonNull<Cell>> {
    let mut c = CHUNKS.lock();
    if c.free.is_null() {
        // Acquire: the first words the givers wrote are seen.
        c.free = RETURNED.swap(ptr::null_mut(), Ordering::Acquire);
    }
    if let Some(cell) = NonNull::new(c.free) {
        // SAFETY: a free cell's first word is the next free cell's address
        // (`give_back`), and the list is this lock holder's alone.
        c.free = unsafe { cell.cast::<*mut Cell>().read() };
        return Some(cell);
    }
    if (c.end as usize) - (c.next as usize) < CELL.size() {
        let chunk = vmem::pages(CHUNK)?.as_ptr();
        c.next = chunk;
        c.end = chunk.wrapping_add(CHUNK);
    }
    let cell = c.next.cast::<Cell>();
    c.next = c.next.wrapping_add(CELL.size());
    NonNull::new(cell)
}

/// Puts an unused cell of a chunk on [`RETURNED`].
fn give_back(cell: NonNull<Cell>) {
    let mut head = RETURNED.load(Ordering::Relaxed);
    loop {
        // SAFETY: the cell is unused and not yet published: ours alone.
        unsafe { cell.cast::<*mut Cell>().write(head) };
        match RETURNED.compare_exchange_weak(
            head,
            cell.as_ptr(),
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(now) => head = now,
        }
    }
}

impl NodeRef {
    pub(crate) fn new(node: Node) -> NodeRef {
        NodeRef::place(node, take())
    }

    /// The node in `cell`, or in the heap when there is none.
    fn place(node: Node, cell: Option<NonNull<Cell>>) -> NodeRef {
        let (cell, heap) = match cell {
            Some(cell) => (cell, false),
            None => {
                // SAFETY: `Cell` is not zero-sized.
                let p = unsafe { std::alloc::alloc(CELL) };
                let Some(p) = NonNull::new(p.cast::<Cell>()) else {
                    std::alloc::handle_alloc_error(CELL)
                };
                (p, true)
            }
        };
        let cell_value = Cell {
            shared: AtomicUsize::new(1),
            heap,
            node,
        };
        // SAFETY: the cell is valid for a `Cell`'s write, aligned, unused.
        unsafe { cell.as_ptr().write(cell_value) };
        NodeRef(cell)
    }

    fn cell(&self) -> &Cell {
        // SAFETY: the cell holds a `Cell` while a handle to it exists.
        unsafe { self.0.as_ref() }
    }
}

impl Deref for NodeRef {
    type Target = Node;

    #[inline]
    fn deref(&self) -> &Node {
        &self.cell().node
    }
}

impl Clone for NodeRef {
    fn clone(&self) -> NodeRef {
        // Relaxed, as `Arc`: a new handle comes from an existing one.
        if self.cell().shared.fetch_add(1, Ordering::Relaxed) > isize::MAX as usize {
            std::process::abort();
        }
        NodeRef(self.0)
    }
}

impl Drop for NodeRef {
    fn drop(&mut self) {
        if self.cell().shared.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Every other handle's use of the node happens before its end.
        fence(Ordering::Acquire);
        let heap = self.cell().heap;
        // SAFETY: that was the last handle: nothing else reads the cell, and
        // it holds a valid `Cell`, dropped once, here.
        unsafe { ptr::drop_in_place(self.0.as_ptr()) };
        if heap {
            // SAFETY: allocated by `NodeRef::new` with this layout.
            unsafe { std::alloc::dealloc(self.0.as_ptr().cast(), CELL) };
        } else {
            give_back(self.0);
        }
    }
}

/// The chunks' lock, held over a `fork` (see `fork`).
#[cfg(unix)]
pub(crate) fn hold() -> crate::sync::MutexGuard<'static, Chunks> {
    CHUNKS.lock()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_is_reused_after_its_last_handle_and_never_before() {
        let a = NodeRef::new(Node::for_test(1));
        let a2 = a.clone();
        let b = NodeRef::new(Node::for_test(2));
        assert_ne!(a.0, b.0);
        let gave = [a.0, b.0];
        drop(a);
        let c = NodeRef::new(Node::for_test(3));
        assert!(
            !gave.contains(&c.0),
            "a cell with a handle left is not reused"
        );
        assert_eq!(a2.id, 1, "a handle keeps its node");
        drop(a2);
        drop(b);
        // Both went back: the next two nodes get them, in some order.
        let d = NodeRef::new(Node::for_test(4));
        let e = NodeRef::new(Node::for_test(5));
        let mut got = [d.0, e.0];
        got.sort();
        let mut gave = gave;
        gave.sort();
        assert_eq!(got, gave);
        assert_eq!((c.id, d.id, e.id), (3, 4, 5));
    }

    #[test]
    fn racing_threads_never_get_the_same_cell() {
        const EACH: u64 = 3_000;
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let barrier = &barrier;
                s.spawn(move || {
                    for round in 0..3 {
                        barrier.wait();
                        let held: Vec<NodeRef> = (0..EACH)
                            .map(|i| NodeRef::new(Node::for_test((t << 32) | (round << 16) | i)))
                            .collect();
                        let copies: Vec<NodeRef> = held.iter().step_by(7).cloned().collect();
                        // Another thread handed the same cell would have
                        // written its own id over ours.
                        for (i, n) in held.iter().enumerate() {
                            assert_eq!(n.id, (t << 32) | (round << 16) | i as u64);
                        }
                        drop(held);
                        assert!(
                            copies.iter().enumerate().all(|(k, n)| {
                                n.id == (t << 32) | (round << 16) | (k as u64 * 7)
                            })
                        );
                    }
                });
            }
        });
    }

    #[test]
    fn a_node_the_chunks_had_no_room_for_lives_in_the_heap() {
        let n = NodeRef::place(Node::for_test(9), None);
        assert!(n.cell().heap);
        let m = n.clone();
        drop(n);
        assert_eq!(m.id, 9);
    }
}
