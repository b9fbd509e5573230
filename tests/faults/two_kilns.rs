//! The fault suite's dimension "two kilns on one state, with a forced unlock at every journal
//! crossing" (issue 21): at the k-th crossing of a journal boundary (`state.journal`,
//! `state.journaled`, `state.fold`, `state.folded`) of the faulted apply, a second kiln runs
//! `kiln force-unlock --force` and applies to the end; then the first goes on. Whatever the first
//! still does must fail its compare-and-swap or be harmless: the invariants hold after both (no
//! duplicate, nothing untracked, nothing declared destroyed, the serial grows), and the next
//! apply converges to an empty plan.
//!
//! The second kiln runs inside the failpoint's callback, on the same runtime
//! (`block_in_place`), while the first waits at its crossing: deterministic, no sleeps.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln::failpoint;

use super::{apply, converge, invariants, report_errors, tally, Scenario};

/// The journal boundaries.
pub const POINTS: [&str; 4] = [
    failpoint::STATE_JOURNAL,
    failpoint::STATE_JOURNALED,
    failpoint::STATE_FOLD,
    failpoint::STATE_FOLDED,
];

/// One pair: the second kiln takes over at the `j`-th crossing of `point`.
async fn run_one(s: &Scenario, point: &'static str, j: usize) -> Result<(), String> {
    s.rewind();
    let last_serial = s.state().await?.serial;
    let second: Arc<Mutex<Option<Result<String, String>>>> = Arc::default();
    let first = {
        let _scenario = fail::FailScenario::setup();
        let crossed = AtomicUsize::new(0);
        let (dir, store, client) = (s.project.path().to_path_buf(), s.store(), s.clients());
        let handle = tokio::runtime::Handle::current();
        let out = second.clone();
        fail::cfg_callback(point, move || {
            // The first kiln's j-th crossing (the second kiln's own come after it).
            if crossed.fetch_add(1, Ordering::SeqCst) != j {
                return;
            }
            let result = tokio::task::block_in_place(|| {
                handle.block_on(async {
                    store
                        .force_unlock(None, true)
                        .await
                        .map_err(|e| format!("force-unlock: {e}"))?;
                    let r = apply(&dir, &store, &client).await?;
                    Ok(report_errors(&r))
                })
            });
            *out.lock().unwrap() = Some(result);
        })
        .unwrap();
        let first = tokio::time::timeout(
            Duration::from_secs(120),
            apply(s.project.path(), &s.store(), &s.clients()),
        )
        .await
        .map_err(|_| "the first kiln hung".to_string())?;
        fail::remove(point);
        first
    };
    let second = second
        .lock()
        .unwrap()
        .take()
        .ok_or("the second kiln never ran")?;
    // The second kiln ran on a state it could trust and finished its work.
    match &second {
        Ok(errors) if errors.is_empty() => {}
        other => return Err(format!("the second kiln: {other:?}")),
    }
    let store = s.store();
    if let Some(left) = store.lock_holder().await.map_err(|e| e.to_string())? {
        return Err(format!("a lock was left behind: {left:?}"));
    }
    let st = s.state().await?;
    invariants(
        &[s.project.emu.snapshot()],
        &st,
        &s.expect,
        last_serial,
        false,
    )
    .map_err(|v| {
        format!(
            "after both kilns (the first: {}):\n  {v}",
            first
                .as_ref()
                .map(report_errors)
                .unwrap_or_else(|e| e.clone())
        )
    })?;
    converge(s, st.serial).await
}

/// Every journal crossing of the reference apply, each with a second kiln taking over there.
/// Returns the pair counts per point and the failures.
pub async fn sweep(
    s: &Scenario,
    crossings: &[&'static str],
    seed: u64,
) -> (BTreeMap<&'static str, usize>, Vec<String>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut pairs: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (k, point) in crossings.iter().copied().enumerate() {
        if !POINTS.contains(&point) {
            continue;
        }
        let j = *seen.entry(point).and_modify(|n| *n += 1).or_insert(0);
        *pairs.entry(point).or_default() += 1;
        let t = std::time::Instant::now();
        let result = run_one(s, point, j).await;
        tally(
            &mut failures,
            ("two kilns on one state", seed),
            (k, point, j),
            "forced unlock",
            result,
            t,
        );
        if failures.len() >= 5 {
            break;
        }
    }
    (pairs, failures)
}
