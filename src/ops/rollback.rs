//! `on_failure = "rollback"` within one apply: when a member of such a rollout failed its gate,
//! the walk ended without starting a new batch, and the state marks the members that moved
//! ([`crate::plan::rollback`]). This pass then locks the state again, plans the failed fleets
//! back onto their previous image (the plan's rollout batches: the same limits and health gate)
//! and executes that plan. What it does is recorded as it goes like any apply, so if it is
//! interrupted the next `kiln apply` plans the rest of the way back from the marks. The report
//! names the members that are back ([`Report::rolled_back`]).

use std::sync::Arc;
use std::time::Duration;

use crate::apply::execute::{self, ApplyOptions, Report};
use crate::apply::progress::Progress;
use crate::apply::walk::StopFlag;
use crate::plan::refresh::{make_plan, PlanOptions};
use crate::plan::rollback::image_of_record;
use crate::plan::Plan;
use crate::state::{LockInfo, State};

use super::Session;

/// The fleets of `plan` whose rollout (`on_failure = "rollback"`, on the way forward) had a
/// member fail in `report`.
pub(super) fn failed_fleets(plan: &Plan, report: &Report) -> Vec<String> {
    let failed = |address: &str| {
        report
            .failed
            .iter()
            .any(|(label, _)| label.split_once(' ').is_some_and(|(_, a)| a == address))
    };
    plan.rollouts
        .iter()
        .filter(|r| r.on_failure == "rollback" && r.rollback_to.is_none())
        .filter(|r| r.members().any(|m| failed(&m.address)))
        .map(|r| r.fleet.clone())
        .collect()
}

/// Lock, plan `fleets` back, execute; the plan executed (if it had anything to do) and its report.
pub(super) async fn roll_back(
    s: &Session,
    fleets: Vec<String>,
    lock_timeout: Duration,
    options: &ApplyOptions,
    stop: &StopFlag,
    progress: Arc<Progress>,
) -> Result<Option<(Plan, State, Report)>, String> {
    let err = |e: miette::Report| format!("{e:?}");
    let lock = s
        .store
        .lock(LockInfo::new("apply"), lock_timeout)
        .await
        .map_err(|e| err(e.into()))?;
    let state = match s.store.load().await {
        Ok(st) => st,
        Err(e) => {
            let _ = lock.release().await;
            return Err(err(e.into()));
        }
    };
    let envs = match s.env_states().await {
        Ok(e) => e,
        Err(e) => {
            let _ = lock.release().await;
            return Err(err(e));
        }
    };
    let opts = PlanOptions {
        targets: fleets,
        envs,
        ..s.plan_options()
    };
    let plan = match make_plan(&s.manifest, state.as_ref(), Some(&s.clients), &opts).await {
        Ok(p) => p,
        Err(e) => {
            let _ = lock.release().await;
            return Err(err(e.into()));
        }
    };
    if !plan.rollouts.iter().any(|r| r.rollback_to.is_some()) {
        lock.release().await.map_err(|e| err(e.into()))?;
        return Ok(None);
    }
    let (plan, state, report) = execute::apply(
        plan,
        s.clients.clone(),
        s.store.clone(),
        lock,
        state.unwrap_or_default(),
        options,
        stop,
        progress,
    )
    .await;
    Ok(Some((plan, state, report)))
}

/// Add what a second pass did to the first's report.
pub(super) fn merge(into: &mut Report, from: Report) {
    into.created += from.created;
    into.updated += from.updated;
    into.replaced += from.replaced;
    into.moved += from.moved;
    into.started += from.started;
    into.stopped += from.stopped;
    into.deleted += from.deleted;
    into.failed.extend(from.failed);
    into.skipped.extend(from.skipped);
    into.not_started.extend(from.not_started);
    into.elapsed += from.elapsed;
    into.networks_read += from.networks_read;
    into.warnings.extend(from.warnings);
}

/// The members of `plans`' rollouts that are back on the image they return to in `state`: for a
/// rollout on its way forward (`on_failure = "rollback"`), the members it tried that run their
/// previous image again; for a rollback, the members that run the image it returns to.
pub(super) fn rolled_back(
    plans: &[&Plan],
    tried: &dyn Fn(&str) -> bool,
    state: &State,
) -> Vec<String> {
    let runs = |address: &str| -> Option<String> {
        let rec = state.resources.get(address)?;
        rec.id.as_ref()?;
        image_of_record(&rec.attributes.parse()).map(str::to_string)
    };
    let mut out: Vec<String> = Vec::new();
    for r in plans.iter().flat_map(|p| &p.rollouts) {
        for m in r.members() {
            let back = match (&r.rollback_to, &m.previous) {
                (Some(to), _) => runs(&m.address).as_ref() == Some(to),
                (None, Some(prev)) if r.on_failure == "rollback" => {
                    tried(&m.address) && runs(&m.address).as_ref() == Some(prev)
                }
                _ => false,
            };
            if back && !out.contains(&m.address) {
                out.push(m.address.clone());
            }
        }
    }
    out.sort_by_key(|a| {
        let (f, i) = a.split_once('[').unwrap_or((a, ""));
        (
            f.to_string(),
            i.trim_end_matches(']').parse::<u64>().unwrap_or(u64::MAX),
            a.clone(),
        )
    });
    out
}
