//! The DAG walk: run nodes with bounded parallelism, each the moment its dependencies finish.
//!
//! A failed node fails only its dependents — each of them is reported once as skipped (naming the
//! failed node it waited for), not as a cascade of errors — and independent branches run to the
//! end (terraform `dag/walk.go`). After a stop request nothing new starts; nodes in flight finish.
//!
//! **Slots** ([`Slots`]): the nodes of one *member* (a rolling fleet's member: its replacement,
//! and what resumes an interrupted one — a pending create, the predecessor left to destroy) share
//! one slot of a pool (the fleet's surge or unavailable budget). The member takes it when its
//! first node starts and gives it back when its last node is over (done, failed or skipped), so
//! the next member (members take a pool's slots in their order) starts the moment any member of
//! its pool is through, not when a whole batch is. A node waiting for a slot holds no place of the parallelism (a walk never deadlocks on a
//! full pool). When a pooled node fails, every member of its group (the fleet) that holds no slot
//! yet is skipped, naming it: a failed member stops its rollout while the members in flight
//! finish.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinSet;

/// What became of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<E> {
    Done,
    Failed(E),
    /// Not run because the node at this index (a dependency, directly or not) failed.
    Skipped {
        failed: usize,
    },
    /// Not started because a stop was requested (Ctrl-C).
    NotStarted,
}

/// A stop request shared with the signal handler: once set, no new node starts.
#[derive(Clone, Debug, Default)]
pub struct StopFlag {
    flag: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl StopFlag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves once a stop is requested.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// The slot pools of a walk (module doc): which member each node is of, each member's pool,
/// each pool's size, and the group each pool belongs to. Members take their pool's slots in the
/// order of their numbers.
#[derive(Clone, Debug, Default)]
pub struct Slots {
    /// Node → the member it is of (`None`: no pool). Shorter than the nodes: the rest need none.
    pub member: Vec<Option<usize>>,
    /// Member → the pool its slot is of.
    pub pool: Vec<usize>,
    /// Pool → how many members may hold a slot at once (at least 1 is used).
    pub capacity: Vec<usize>,
    /// Pool → its group.
    pub group: Vec<usize>,
}

impl Slots {
    fn member(&self, i: usize) -> Option<usize> {
        self.member.get(i).copied().flatten()
    }
}

/// Walk `deps.len()` nodes; `deps[i]` lists the nodes `i` waits for (indexes). `run(i)` does node i.
/// Returns one outcome per node, in index order.
pub async fn walk<E, F, Fut>(
    deps: &[Vec<usize>],
    parallelism: usize,
    stop: &StopFlag,
    slots: &Slots,
    run: F,
) -> Vec<Outcome<E>>
where
    E: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    let n = deps.len();
    let parallelism = parallelism.max(1);
    let mut outcome: Vec<Option<Outcome<E>>> = (0..n).map(|_| None).collect();
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    // Ready nodes in index order (the plan's order is already topological and stable).
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut running: JoinSet<(usize, Result<(), E>)> = JoinSet::new();
    // Slots taken per pool; per member: whether it holds one, and its nodes not over yet.
    let mut taken: Vec<usize> = vec![0; slots.capacity.len()];
    let mut holding: Vec<bool> = vec![false; slots.pool.len()];
    let mut left: Vec<usize> = vec![0; slots.pool.len()];
    for i in 0..n {
        if let Some(m) = slots.member(i) {
            left[m] += 1;
        }
    }
    // Per pool, the members still to take a slot, in their order: a slot goes to the first
    // (a predecessor left to destroy before the next member launches, as the batches say).
    let mut turn: Vec<std::collections::VecDeque<usize>> =
        vec![Default::default(); slots.capacity.len()];
    for (m, &p) in slots.pool.iter().enumerate() {
        turn[p].push_back(m);
    }
    // Ready nodes waiting for a slot of their member's pool.
    let mut waiting_slot: std::collections::BTreeSet<usize> = Default::default();
    let mut started = vec![false; n];
    // The nodes waiting for a slot of pool `p` try again.
    let wake = |p: usize,
                waiting_slot: &mut std::collections::BTreeSet<usize>,
                ready: &mut std::collections::BTreeSet<usize>| {
        let woken: Vec<usize> = waiting_slot
            .iter()
            .copied()
            .filter(|&w| slots.member(w).is_some_and(|x| slots.pool[x] == p))
            .collect();
        for w in woken {
            waiting_slot.remove(&w);
            ready.insert(w);
        }
    };

    loop {
        while running.len() < parallelism && !stop.is_stopped() {
            let Some(i) = ready.pop_first() else { break };
            if let Some(m) = slots.member(i).filter(|&m| !holding[m]) {
                let p = slots.pool[m];
                if taken[p] >= slots.capacity[p].max(1) || turn[p].front() != Some(&m) {
                    waiting_slot.insert(i);
                    continue;
                }
                taken[p] += 1;
                holding[m] = true;
                turn[p].pop_front();
                // The next member's turn.
                wake(p, &mut waiting_slot, &mut ready);
            }
            started[i] = true;
            let fut = run(i);
            running.spawn(async move { (i, fut.await) });
        }
        if running.is_empty() {
            break;
        }
        let joined = tokio::select! {
            j = running.join_next() => j,
            _ = stop.notify.notified() => continue,
        };
        let Some(joined) = joined else { break };
        let (i, result) = match joined {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let mut over = vec![i];
        match result {
            Ok(()) => {
                outcome[i] = Some(Outcome::Done);
                for &d in &dependents[i] {
                    waiting[d] -= 1;
                    if waiting[d] == 0 && outcome[d].is_none() {
                        ready.insert(d);
                    }
                }
            }
            Err(e) => {
                outcome[i] = Some(Outcome::Failed(e));
                // Skip everything downstream, naming this node once; a pooled node also skips
                // the members of its group that hold no slot yet.
                let mut stack = dependents[i].clone();
                if let Some(group) = slots.member(i).map(|m| slots.group[slots.pool[m]]) {
                    stack.extend((0..n).filter(|&j| {
                        slots
                            .member(j)
                            .is_some_and(|m| slots.group[slots.pool[m]] == group && !holding[m])
                    }));
                }
                while let Some(d) = stack.pop() {
                    if outcome[d].is_none() && !started[d] {
                        outcome[d] = Some(Outcome::Skipped { failed: i });
                        ready.remove(&d);
                        waiting_slot.remove(&d);
                        over.push(d);
                        stack.extend(dependents[d].iter().copied());
                    }
                }
            }
        }
        // A member whose last node is over gives its slot back: the nodes waiting for one of
        // that pool are ready again (in index order).
        for d in over {
            let Some(m) = slots.member(d) else { continue };
            left[m] -= 1;
            let p = slots.pool[m];
            if left[m] == 0 && holding[m] {
                holding[m] = false;
                taken[p] -= 1;
                wake(p, &mut waiting_slot, &mut ready);
            } else if left[m] == 0 {
                // Over without a slot (skipped): it no longer has a turn.
                turn[p].retain(|&x| x != m);
                wake(p, &mut waiting_slot, &mut ready);
            }
        }
    }
    outcome
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::NotStarted))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[tokio::test]
    async fn failure_skips_only_dependents() {
        // 0 → 1 → 2 ; 3 independent ; 0 fails
        let deps = vec![vec![], vec![0], vec![1], vec![]];
        let ran = Arc::new(Mutex::new(Vec::new()));
        let r = ran.clone();
        let out = walk(&deps, 2, &StopFlag::new(), &Slots::default(), move |i| {
            let r = r.clone();
            async move {
                r.lock().unwrap().push(i);
                if i == 0 {
                    Err("boom")
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(
            out,
            vec![
                Outcome::Failed("boom"),
                Outcome::Skipped { failed: 0 },
                Outcome::Skipped { failed: 0 },
                Outcome::Done
            ]
        );
        let mut ran = ran.lock().unwrap().clone();
        ran.sort();
        assert_eq!(ran, vec![0, 3]);
    }

    #[tokio::test]
    async fn parallelism_is_bounded_and_nodes_start_when_their_dependencies_finish() {
        let deps: Vec<Vec<usize>> = (0..6)
            .map(|i| if i == 5 { vec![0, 1, 2, 3, 4] } else { vec![] })
            .collect();
        let live = Arc::new(Mutex::new((0usize, 0usize)));
        let l = live.clone();
        let out = walk(&deps, 3, &StopFlag::new(), &Slots::default(), move |_| {
            let l = l.clone();
            async move {
                {
                    let mut g = l.lock().unwrap();
                    g.0 += 1;
                    g.1 = g.1.max(g.0);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                l.lock().unwrap().0 -= 1;
                Ok::<(), ()>(())
            }
        })
        .await;
        assert!(out.iter().all(|o| *o == Outcome::Done));
        assert_eq!(live.lock().unwrap().1, 3);
    }

    #[tokio::test]
    async fn after_stop_nothing_new_starts_but_running_nodes_finish() {
        let deps = vec![vec![], vec![0], vec![]];
        let stop = StopFlag::new();
        let s = stop.clone();
        let out = walk(&deps, 1, &stop, &Slots::default(), move |i| {
            let s = s.clone();
            async move {
                if i == 0 {
                    s.stop();
                }
                Ok::<(), ()>(())
            }
        })
        .await;
        assert_eq!(
            out,
            vec![Outcome::Done, Outcome::NotStarted, Outcome::NotStarted]
        );
    }

    #[tokio::test]
    async fn a_pool_bounds_its_nodes_hands_a_freed_slot_on_and_a_failure_stops_its_group() {
        // Members 0..6 (a node each) in pool 0 (2 slots, group 0); node 6 in no pool.
        let deps: Vec<Vec<usize>> = vec![vec![]; 7];
        let slots = Slots {
            member: (0..7).map(|i| (i < 6).then_some(i)).collect(),
            pool: vec![0; 6],
            capacity: vec![2],
            group: vec![0],
        };
        let live = Arc::new(Mutex::new((0usize, 0usize, Vec::new())));
        let l = live.clone();
        let out = walk(&deps, 3, &StopFlag::new(), &slots, move |i| {
            let l = l.clone();
            async move {
                {
                    let mut g = l.lock().unwrap();
                    if i < 6 {
                        g.0 += 1;
                        g.1 = g.1.max(g.0);
                    }
                    g.2.push(i);
                }
                tokio::task::yield_now().await;
                if i < 6 {
                    l.lock().unwrap().0 -= 1;
                }
                if i == 3 {
                    Err("unhealthy")
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let g = live.lock().unwrap();
        assert_eq!(g.1, 2, "never more than the pool's slots at once");
        assert_eq!(out[3], Outcome::Failed("unhealthy"));
        assert_eq!(out[6], Outcome::Done, "a node of no pool is not stopped");
        // Members after the failed one that had not started are skipped, naming it.
        for (i, o) in out.iter().enumerate().take(6).skip(4) {
            assert!(
                matches!(o, Outcome::Skipped { failed: 3 })
                    || (*o == Outcome::Done && g.2.contains(&i)),
                "node {i}: {o:?}"
            );
        }
        assert!(out
            .iter()
            .take(6)
            .any(|o| matches!(o, Outcome::Skipped { failed: 3 })));
    }

    #[tokio::test]
    async fn a_node_waiting_for_a_slot_holds_no_place_of_the_walk() {
        // Parallelism 2, pool of 1: node 0 (pooled) runs until node 2 (no pool) has run. If
        // node 1, waiting for node 0's slot, held the second place, node 2 could never start.
        let deps = vec![vec![], vec![], vec![]];
        let slots = Slots {
            member: vec![Some(0), Some(1), None],
            pool: vec![0, 0],
            capacity: vec![1],
            group: vec![0],
        };
        let two_ran = Arc::new(Notify::new());
        let out = walk(&deps, 2, &StopFlag::new(), &slots, |i| {
            let two_ran = two_ran.clone();
            async move {
                match i {
                    0 => two_ran.notified().await,
                    2 => two_ran.notify_one(),
                    _ => {}
                }
                Ok::<(), ()>(())
            }
        })
        .await;
        assert!(out.iter().all(|o| *o == Outcome::Done));
    }

    #[tokio::test]
    async fn a_member_holds_its_slot_from_its_first_node_to_its_last() {
        // Member 0 is nodes 0 → 1 (a resumed create, then the predecessor's delete); member 1 is
        // node 2. One slot: node 2 must not run between nodes 0 and 1.
        let deps = vec![vec![], vec![0], vec![]];
        let slots = Slots {
            member: vec![Some(0), Some(0), Some(1)],
            pool: vec![0, 0],
            capacity: vec![1],
            group: vec![0],
        };
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        let out = walk(&deps, 3, &StopFlag::new(), &slots, move |i| {
            let o = o.clone();
            async move {
                o.lock().unwrap().push(i);
                Ok::<(), ()>(())
            }
        })
        .await;
        assert!(out.iter().all(|o| *o == Outcome::Done));
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    }
}
