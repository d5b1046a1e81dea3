//! What a Logoff snapshot means: which leaked objects are roots, which are
//! indirect (and under whom), and which AddRefs no Release balanced.
//!
//! Pure functions over indexes and stacks, so they are tested on their own.

use std::collections::{HashMap, VecDeque};

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
pub(crate) fn balance<K: PartialEq>(
    events: &[(RefOp, u32)],
    mut frames: impl FnMut(u32) -> Vec<K>,
) -> Vec<RefEvent> {
    // Each distinct stack's frames, fetched once; references not released
    // yet, by the stack that took them (earliest first); and each stack
    // pair's score, computed once. A Release then costs one look per
    // distinct stack holding open references, not one per reference.
    let mut keys: HashMap<u32, Vec<K>> = HashMap::new();
    for &(_, stack) in events {
        keys.entry(stack).or_insert_with(|| frames(stack));
    }
    let mut open: HashMap<u32, VecDeque<usize>> = HashMap::new();
    // Stacks in the order they first took a reference (for stable ties).
    let mut open_order: Vec<u32> = Vec::new();
    let mut scores: HashMap<(u32, u32), usize> = HashMap::new();
    let mut matched = vec![false; events.len()];
    for (i, &(op, stack)) in events.iter().enumerate() {
        match op {
            RefOp::Create | RefOp::AddRef => {
                // A stack is in `open_order` exactly while its queue is
                // not empty.
                let q = open.entry(stack).or_default();
                if q.is_empty() {
                    open_order.push(stack);
                }
                q.push_back(i);
            }
            RefOp::Release => {
                // The best-scoring stack; on a tie the earliest reference.
                let mut best: Option<(u32, usize, usize)> = None; // (stack, score, first)
                for &s in &open_order {
                    let Some(&first) = open.get(&s).and_then(|q| q.front()) else {
                        continue;
                    };
                    let score = *scores
                        .entry((s, stack))
                        .or_insert_with(|| common_outer_frames(&keys[&s], &keys[&stack]));
                    let better = match best {
                        None => true,
                        Some((_, bs, bf)) => score > bs || (score == bs && first < bf),
                    };
                    if better {
                        best = Some((s, score, first));
                    }
                }
                if let Some((s, _, first)) = best
                    && let Some(q) = open.get_mut(&s)
                {
                    q.pop_front();
                    matched[first] = true;
                    if q.is_empty() {
                        open_order.retain(|&o| o != s);
                    }
                }
                matched[i] = true;
            }
        }
    }
    let mut index: HashMap<(RefOp, u32), usize> = HashMap::new();
    let mut groups: Vec<RefEvent> = Vec::new();
    for (i, &(op, stack)) in events.iter().enumerate() {
        let g = *index.entry((op, stack)).or_insert_with(|| {
            groups.push(RefEvent {
                op,
                count: 0,
                stack,
                unmatched: 0,
            });
            groups.len() - 1
        });
        groups[g].count += 1;
        if !matched[i] {
            groups[g].unmatched += 1;
        }
    }
    groups
}

fn common_outer_frames<K: PartialEq>(a: &[K], b: &[K]) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
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
