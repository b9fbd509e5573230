//! The DAG walk: run nodes with bounded parallelism, each the moment its dependencies finish.
//!
//! A failed node fails only its dependents — each of them is reported once as skipped (naming the
//! failed node it waited for), not as a cascade of errors — and independent branches run to the
//! end (terraform `dag/walk.go`). After a stop request nothing new starts; nodes in flight finish.

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

/// Walk `deps.len()` nodes; `deps[i]` lists the nodes `i` waits for (indexes). `run(i)` does node i.
/// Returns one outcome per node, in index order.
pub async fn walk<E, F, Fut>(
    deps: &[Vec<usize>],
    parallelism: usize,
    stop: &StopFlag,
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

    loop {
        while running.len() < parallelism && !stop.is_stopped() {
            let Some(i) = ready.pop_first() else { break };
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
                // Skip everything downstream, naming this node once.
                let mut stack = dependents[i].clone();
                while let Some(d) = stack.pop() {
                    if outcome[d].is_none() {
                        outcome[d] = Some(Outcome::Skipped { failed: i });
                        ready.remove(&d);
                        stack.extend(dependents[d].iter().copied());
                    }
                }
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
        let out = walk(&deps, 2, &StopFlag::new(), move |i| {
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
        let out = walk(&deps, 3, &StopFlag::new(), move |_| {
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
        let out = walk(&deps, 1, &stop, move |i| {
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
}
