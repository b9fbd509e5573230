//! `plan` and `graph`: read the state (one snapshot, no lock needed), plan against live reads —
//! the plan as data for the caller to render, save or draw.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::dag::Dag;
use crate::plan::refresh::{make_plan, PlanError, PlanOptions};
use crate::plan::Plan;
use crate::policy::Report;
use crate::state::{LockInfo, StateError};

use super::Session;

/// What to plan (the flags of `kiln plan`).
#[derive(Clone, Debug)]
pub struct PlanRequest {
    /// Read live state first (`--refresh=false`: plan from the state alone).
    pub refresh: bool,
    /// `--refresh-only`: only drift, no change.
    pub refresh_only: bool,
    /// `--target`, `--exclude`, `--replace`.
    pub targets: Vec<String>,
    pub excludes: Vec<String>,
    pub replace: BTreeSet<String>,
    /// How long to wait for another kiln holding the state lock to finish before reading beside
    /// it (zero: read beside it at once).
    pub lock_timeout: Duration,
    /// `--policy`: directories of Rego policies (the manifest's `[policy] dirs` are added).
    pub policy_dirs: Vec<PathBuf>,
    /// Keep every resource as seen in the plan ([`Plan::observed`]): for `--json=terraform`,
    /// policies, markdown and saved plans.
    pub observe: bool,
}

impl Default for PlanRequest {
    fn default() -> Self {
        PlanRequest {
            refresh: true,
            refresh_only: false,
            targets: Vec::new(),
            excludes: Vec::new(),
            replace: BTreeSet::new(),
            lock_timeout: Duration::ZERO,
            observe: false,
            policy_dirs: Vec::new(),
        }
    }
}

impl PlanRequest {
    /// The planner's options for `s`.
    pub fn options(&self, s: &Session) -> PlanOptions {
        PlanOptions {
            refresh: self.refresh,
            targets: self.targets.clone(),
            excludes: self.excludes.clone(),
            refresh_only: self.refresh_only,
            replace: self.replace.clone(),
            observe: self.observe,
            ..s.plan_options()
        }
    }
}

/// A plan and what the policies said of it.
#[derive(Clone, Debug)]
pub struct Checked {
    pub plan: Plan,
    /// `None`: no policy to check.
    pub policy: Option<Report>,
}

/// `kiln plan`: the plan of the session's manifest against its state and OCI, checked against
/// the policies (a denial is in the report; the caller decides what it means for its exit).
pub async fn plan(s: &Session, req: &PlanRequest) -> miette::Result<Checked> {
    if req.refresh_only && !req.refresh {
        return Err(miette::miette!(
            help = "drop `--refresh=false`: a refresh-only plan is the live reads",
            "`--refresh-only` reads OCI; it cannot be combined with `--refresh=false`"
        ));
    }
    let policies = super::policy::load(&super::policy::dirs(s, &req.policy_dirs))?;
    let req = PlanRequest {
        observe: req.observe || policies.is_some(),
        ..req.clone()
    };
    let plan = planned(s, "plan", &req).await?;
    let policy = super::policy::check(policies.as_ref(), &plan)?;
    Ok(Checked { plan, policy })
}

/// Load and plan. A plan reads; it needs one consistent snapshot of the state, not the lock: the
/// local store reads the state file and its journal together (under the folder's gate, shared:
/// no fold or append falls between the two reads), the remote store one object. So a plan
/// beside a running apply (a CI drift check) reads the state as that apply has recorded it so
/// far, and says so ([`Plan::locked_by`]); a plan saved then names that serial, and applying it
/// is refused as stale once the apply records more. With `--lock-timeout`, the plan first
/// waits up to that long for the lock to be free (and holds it while it reads and plans); if it
/// is still held then, it reads beside its holder all the same.
async fn planned(s: &Session, operation: &str, req: &PlanRequest) -> miette::Result<Plan> {
    let lock = match req.lock_timeout.is_zero() {
        true => None,
        false => match s
            .store
            .lock(LockInfo::new(operation), req.lock_timeout)
            .await
        {
            Ok(lock) => Some(lock),
            Err(StateError::Locked { .. }) => None,
            Err(e) => return Err(e.into()),
        },
    };
    let holder = match &lock {
        Some(_) => None,
        None => s.store.lock_holder().await?,
    };
    let state = s.store.load().await?;
    let opts = PlanOptions {
        envs: s.env_states().await?,
        ..req.options(s)
    };
    let mut plan = make_plan(&s.manifest, state.as_ref(), Some(&s.clients), &opts)
        .await
        .map_err(PlanError::into_report)?;
    plan.locked_by = holder;
    if let Some(lock) = lock {
        lock.release().await?;
    }
    Ok(plan)
}

/// `kiln graph`: the resource graph with each resource's planned actions, or (`actions`) the
/// plan's action DAG.
pub async fn graph(
    s: &Session,
    actions: bool,
    lock_timeout: Duration,
) -> miette::Result<Dag<String>> {
    let req = PlanRequest {
        lock_timeout,
        ..PlanRequest::default()
    };
    let plan = planned(s, "graph", &req).await?;
    Ok(if actions {
        plan.graph()
    } else {
        let resources: Vec<String> = s.manifest.resources().map(|a| a.to_string()).collect();
        let edges: Vec<(String, String)> = s
            .manifest
            .edges()
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        plan.resource_graph(&resources, &edges)
    })
}
