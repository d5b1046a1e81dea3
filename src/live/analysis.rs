//! What a Logoff snapshot means: which leaked objects are roots, which are
//! indirect (and under whom), and which AddRefs no Release balanced.
//!
//! Pure functions over indexes and stacks, so they are tested on their own.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use mapileak_reports::{RefEvent, RefOp};

/// Where one leaked object goes in the report tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    pub root: bool,
    /// For an indirect leak: the index of the leaked object it is shown under.
    pub parent: Option<usize>,
}

/// Splits leaked objects into roots and indirect leaks.
///
/// `holds[i]` lists the objects object `i` keeps a reference on (indexes
/// into the same slice, which is in creation order). A root is an object no
/// other leaked object holds. Cycles are condensed first (Tarjan's strongly
/// connected components): a cycle nothing outside holds is rooted at its
/// earliest-created member. Every indirect leak is shown under a holder,
/// reached breadth-first from the roots.
pub(crate) fn place(holds: &[Vec<usize>]) -> Vec<Placement> {
    let n = holds.len();
    let comp = components(holds);
    let mut held_from_outside = vec![false; n];
    for (i, hs) in holds.iter().enumerate() {
        for &j in hs {
            if comp[j] != comp[i] {
                held_from_outside[comp[j]] = true;
            }
        }
    }
    // The earliest member of each component without an outside holder.
    let mut seen_comp = vec![false; n];
    let mut out = vec![
        Placement {
            root: false,
            parent: None
        };
        n
    ];
    let mut queue = VecDeque::new();
    let mut visited = vec![false; n];
    for i in 0..n {
        let c = comp[i];
        if !held_from_outside[c] && !seen_comp[c] {
            seen_comp[c] = true;
            out[i].root = true;
            visited[i] = true;
            queue.push_back(i);
        }
    }
    while let Some(i) = queue.pop_front() {
        for &j in &holds[i] {
            if !visited[j] {
                visited[j] = true;
                out[j].parent = Some(i);
                queue.push_back(j);
            }
        }
    }
    out
}

/// Tarjan's algorithm, iterative (a chain of 100,000 objects must not
/// overflow the stack). Returns the component index of each node.
fn components(holds: &[Vec<usize>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = holds.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut comp = vec![UNSEEN; n];
    let mut stack = Vec::new();
    let mut next_index = 0;
    let mut next_comp = 0;
    // (node, next edge to look at)
    let mut work: Vec<(usize, usize)> = Vec::new();
    for start in 0..n {
        if index[start] != UNSEEN {
            continue;
        }
        work.push((start, 0));
        while let Some(&mut (v, ref mut edge)) = work.last_mut() {
            // First visit (a node is pushed only while unseen, and is seen
            // before its first edge is taken).
            if index[v] == UNSEEN {
                index[v] = next_index;
                low[v] = next_index;
                next_index += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = holds[v].get(*edge) {
                *edge += 1;
                if index[w] == UNSEEN {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = next_comp;
                    if w == v {
                        break;
                    }
                }
                next_comp += 1;
            }
        }
    }
    comp
}

/// Pairs each Release with the AddRef (or the creation) it most likely
/// undoes, and returns the events grouped by (op, stack) with the number
/// left unmatched — the references the provider forgot.
///
/// A Release is matched with the open reference whose stack shares the
/// longest run of outer frames with its own (the same function took and
/// dropped it), the earliest one on a tie (the creator's reference is
/// usually released last, by its owner, from elsewhere). `frames` gives a stack's
/// frames, innermost first, as comparable keys: function names, so that two
/// call sites in one function count as the same frame.
pub(crate) fn balance<K: Eq + Hash>(
    events: &[(RefOp, u32)],
    mut frames: impl FnMut(u32) -> Vec<K>,
) -> Vec<RefEvent> {
    // The stacks form a trie, outermost frame first: the references a
    // Release could undo with a score of d are those whose stack lies
    // under the node its own path reaches at depth d. Numbered in
    // depth-first order, a node's stacks are one range of positions, and a
    // min-tree over the positions gives each range's earliest open
    // reference. A Release then costs a binary search over its depth and a
    // logarithm each: O(n log n) in the events, whatever the number of
    // distinct stacks holding references.
    let trie = Trie::new(events, &mut frames);
    let mut open: Vec<VecDeque<usize>> = vec![VecDeque::new(); trie.stacks.len()];
    let mut earliest = MinTree::new(trie.stacks.len());
    let mut matched = vec![false; events.len()];
    for (i, &(op, stack)) in events.iter().enumerate() {
        let s = trie.index[&stack];
        match op {
            RefOp::Create | RefOp::AddRef => {
                if open[s].is_empty() {
                    earliest.set(trie.stacks[s].position, i);
                }
                open[s].push_back(i);
            }
            RefOp::Release => {
                matched[i] = true;
                let path = &trie.stacks[s].path;
                let holds = |depth: usize| {
                    let (lo, hi) = trie.ranges[path[depth]];
                    earliest.min(lo, hi)
                };
                if holds(0).is_none() {
                    continue;
                }
                // The deepest node on the path with an open reference under
                // it (the root has one; below it the ranges only shrink).
                let (mut lo, mut hi) = (0, path.len() - 1);
                while lo < hi {
                    let mid = (lo + hi).div_ceil(2);
                    if holds(mid).is_some() {
                        lo = mid;
                    } else {
                        hi = mid - 1;
                    }
                }
                let Some(first) = holds(lo) else { continue };
                let owner = trie.index[&events[first].1];
                matched[first] = true;
                open[owner].pop_front();
                let position = trie.stacks[owner].position;
                match open[owner].front() {
                    Some(&next) => earliest.set(position, next),
                    None => earliest.clear(position),
                }
            }
        }
    }
    let mut index: HashMap<(RefOp, u32), usize> = HashMap::new();
    let mut groups: Vec<RefEvent> = Vec::new();
    for (i, &(op, stack)) in events.iter().enumerate() {
        let g = *index.entry((op, stack)).or_insert_with(|| {
            groups.push(RefEvent::new(op, 0, stack));
            groups.len() - 1
        });
        groups[g].count += 1;
        if !matched[i] {
            groups[g].unmatched += 1;
        }
    }
    groups
}

/// The distinct stacks of a balance, as paths in a trie of their frames
/// (outermost first), with each node's stacks one range of positions.
struct Trie {
    /// Stack id to its index in `stacks`.
    index: HashMap<u32, usize>,
    stacks: Vec<TrieStack>,
    /// Per node: the positions `lo..hi` of the stacks ending at or under it.
    ranges: Vec<(usize, usize)>,
}

struct TrieStack {
    /// The nodes from the root (depth 0) to the stack's last frame.
    path: Vec<usize>,
    /// Where the stack sits in depth-first order.
    position: usize,
}

impl Trie {
    fn new<K: Eq + Hash>(events: &[(RefOp, u32)], frames: &mut impl FnMut(u32) -> Vec<K>) -> Trie {
        let mut children: Vec<HashMap<K, usize>> = vec![HashMap::new()];
        let mut ending: Vec<Vec<usize>> = vec![Vec::new()];
        let mut index = HashMap::new();
        let mut stacks = Vec::new();
        for &(_, stack) in events {
            if index.contains_key(&stack) {
                continue;
            }
            let mut at = 0;
            let mut path = vec![0];
            for key in frames(stack).into_iter().rev() {
                at = match children[at].get(&key) {
                    Some(&child) => child,
                    None => {
                        let child = children.len();
                        children.push(HashMap::new());
                        ending.push(Vec::new());
                        children[at].insert(key, child);
                        child
                    }
                };
                path.push(at);
            }
            ending[at].push(stacks.len());
            index.insert(stack, stacks.len());
            stacks.push(TrieStack { path, position: 0 });
        }
        // Depth first, without recursion: a node's range opens when it is
        // entered and closes when its last child is done.
        let mut ranges = vec![(0, 0); children.len()];
        let mut next = 0;
        let mut work: Vec<(usize, bool)> = vec![(0, false)];
        while let Some((node, done)) = work.pop() {
            if done {
                ranges[node].1 = next;
                continue;
            }
            ranges[node].0 = next;
            for &s in &ending[node] {
                stacks[s].position = next;
                next += 1;
            }
            work.push((node, true));
            work.extend(children[node].values().map(|&c| (c, false)));
        }
        Trie {
            index,
            stacks,
            ranges,
        }
    }
}

/// The smallest value set in a range of positions, in O(log n).
struct MinTree {
    n: usize,
    /// Leaves at `n..2n`, each inner node the min of its two children.
    tree: Vec<usize>,
}

impl MinTree {
    const EMPTY: usize = usize::MAX;

    fn new(n: usize) -> MinTree {
        MinTree {
            n,
            tree: vec![Self::EMPTY; 2 * n],
        }
    }

    fn set(&mut self, position: usize, value: usize) {
        let mut at = position + self.n;
        self.tree[at] = value;
        while at > 1 {
            at /= 2;
            self.tree[at] = self.tree[2 * at].min(self.tree[2 * at + 1]);
        }
    }

    fn clear(&mut self, position: usize) {
        self.set(position, Self::EMPTY);
    }

    /// The smallest value in `lo..hi`, if any is set.
    fn min(&self, lo: usize, hi: usize) -> Option<usize> {
        let (mut lo, mut hi) = (lo + self.n, hi + self.n);
        let mut best = Self::EMPTY;
        while lo < hi {
            if lo % 2 == 1 {
                best = best.min(self.tree[lo]);
                lo += 1;
            }
            if hi % 2 == 1 {
                hi -= 1;
                best = best.min(self.tree[hi]);
            }
            lo /= 2;
            hi /= 2;
        }
        (best != Self::EMPTY).then_some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(p: &[Placement]) -> Vec<usize> {
        p.iter()
            .enumerate()
            .filter(|(_, p)| p.root)
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn a_message_holding_its_folder_is_the_root() {
        // 0 folder, 1 message (holds folder and its attachment 2)
        let p = place(&[vec![], vec![0, 2], vec![]]);
        assert_eq!(roots(&p), vec![1]);
        assert_eq!(p[0].parent, Some(1));
        assert_eq!(p[2].parent, Some(1));
    }

    #[test]
    fn a_cycle_is_rooted_at_its_earliest_member() {
        // 0 folder <-> 1 message, 2 held by 1, 3 alone
        let p = place(&[vec![1], vec![0, 2], vec![], vec![]]);
        assert_eq!(roots(&p), vec![0, 3]);
        assert_eq!(p[1].parent, Some(0));
        assert_eq!(p[2].parent, Some(1));
    }

    #[test]
    fn a_held_cycle_is_indirect() {
        // 0 holds 1, 1 <-> 2
        let p = place(&[vec![1], vec![2], vec![1]]);
        assert_eq!(roots(&p), vec![0]);
        assert_eq!(p[2].parent, Some(1));
    }

    #[test]
    fn long_chains_do_not_overflow() {
        let n = 200_000;
        let holds: Vec<Vec<usize>> = (0..n)
            .map(|i| if i + 1 < n { vec![i + 1] } else { vec![0] })
            .collect();
        let p = place(&holds);
        assert_eq!(roots(&p), vec![0]);
        assert_eq!(p[n - 1].parent, Some(n - 2));
    }

    #[test]
    fn balancer_names_the_addref_no_release_matched() {
        // 1 created by open(), 2 AddRef in cache(), 3 its Release in cache(),
        // 4 AddRef in forget() that nobody releases, 5 open()'s final Release.
        let frames = |id: u32| -> Vec<&str> {
            match id {
                1 => vec!["RefCount::new", "open", "main"],
                2 => vec!["RefCount::add_ref", "cache", "open", "main"],
                3 => vec!["RefCount::release", "cache", "open", "main"],
                4 => vec!["RefCount::add_ref", "forget", "main"],
                5 => vec!["RefCount::release", "open", "main"],
                _ => vec![],
            }
        };
        let events = [
            (RefOp::Create, 1),
            (RefOp::AddRef, 2),
            (RefOp::AddRef, 4),
            (RefOp::Release, 3),
            (RefOp::Release, 5),
        ];
        let groups = balance(&events, frames);
        let unmatched: Vec<u32> = groups
            .iter()
            .filter(|g| g.unmatched > 0)
            .map(|g| g.stack)
            .collect();
        assert_eq!(unmatched, vec![4]);
        // The forgotten AddRef taken before the cached one: the best match
        // is not the first open reference.
        let events = [
            (RefOp::Create, 1),
            (RefOp::AddRef, 4),
            (RefOp::AddRef, 2),
            (RefOp::Release, 3),
            (RefOp::Release, 5),
        ];
        let unmatched: Vec<u32> = balance(&events, frames)
            .iter()
            .filter(|g| g.unmatched > 0)
            .map(|g| g.stack)
            .collect();
        assert_eq!(unmatched, vec![4]);
    }

    /// The balancer as first written, one score per open reference: the
    /// meaning the indexed one must keep.
    fn balance_by_scanning(events: &[(RefOp, u32)], frames: impl Fn(u32) -> Vec<u32>) -> Vec<bool> {
        let common = |a: &[u32], b: &[u32]| {
            a.iter()
                .rev()
                .zip(b.iter().rev())
                .take_while(|(x, y)| x == y)
                .count()
        };
        let mut open: Vec<usize> = Vec::new();
        let mut matched = vec![false; events.len()];
        for (i, &(op, stack)) in events.iter().enumerate() {
            if op != RefOp::Release {
                open.push(i);
                continue;
            }
            matched[i] = true;
            let best = open.iter().enumerate().max_by_key(|&(_, &o)| {
                (
                    common(&frames(events[o].1), &frames(stack)),
                    std::cmp::Reverse(o),
                )
            });
            if let Some((at, &o)) = best {
                matched[o] = true;
                open.remove(at);
            }
        }
        matched
    }

    /// Random histories over a few functions and depths: the indexed
    /// balancer leaves the same references unmatched as the scan.
    #[test]
    fn the_indexed_balancer_agrees_with_the_scan() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..300 {
            // Stack ids 0..40; a stack's frames derive from its id.
            let stacks: Vec<Vec<u32>> = (0..40)
                .map(|_| (0..1 + next(6)).map(|_| next(4) as u32).collect())
                .collect();
            let frames = |s: u32| stacks[s as usize].clone();
            let len = 1 + next(60) as usize;
            let events: Vec<(RefOp, u32)> = (0..len)
                .map(|i| {
                    let op = match (i, next(3)) {
                        (0, _) => RefOp::Create,
                        (_, 0) => RefOp::Release,
                        _ => RefOp::AddRef,
                    };
                    (op, next(40) as u32)
                })
                .collect();
            let expected = balance_by_scanning(&events, frames);
            let mut unmatched_expected: HashMap<(RefOp, u32), u32> = HashMap::new();
            for (i, &e) in events.iter().enumerate() {
                *unmatched_expected.entry(e).or_default() += u32::from(!expected[i]);
            }
            for g in balance(&events, frames) {
                assert_eq!(
                    g.unmatched,
                    unmatched_expected[&(g.op, g.stack)],
                    "{events:?} {stacks:?}"
                );
            }
        }
    }

    /// Equal scores: the earliest open reference wins, whichever stack
    /// took its first reference first.
    #[test]
    fn a_tie_goes_to_the_earliest_open_reference() {
        let frames = |id: u32| -> Vec<&str> {
            match id {
                1 => vec!["add_ref", "a", "main"],
                2 => vec!["add_ref", "b", "main"],
                3 => vec!["release", "a", "main"],
                _ => vec!["release", "z", "main"],
            }
        };
        let events = [
            (RefOp::AddRef, 1),  // 0: a
            (RefOp::AddRef, 2),  // 1: b
            (RefOp::AddRef, 1),  // 2: a again
            (RefOp::Release, 3), // a's own: takes 0
            (RefOp::Release, 4), // a tie between a (2) and b (1): b's is earlier
        ];
        let unmatched: Vec<(u32, u32)> = balance(&events, frames)
            .iter()
            .filter(|g| g.unmatched > 0)
            .map(|g| (g.stack, g.unmatched))
            .collect();
        assert_eq!(unmatched, vec![(1, 1)]);
    }
}
