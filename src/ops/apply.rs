//! `apply`, `apply --refresh-only`, `destroy` and `apply PLANFILE`: lock, load, plan (or take the
//! saved plan, checked against the state), then — once the caller has shown the plan and had it
//! confirmed — execute and save, and release the lock.
//!
//! The flow is split where a person may say no: [`prepare`] returns a [`Prepared`] apply that
//! holds the lock and the plan; the caller shows the plan, asks, and then calls
//! [`Prepared::execute`] or [`Prepared::cancel`]. A `Prepared` dropped on any other path (an
//! error, a panic) releases the lock as it goes. [`apply_approved`] is the whole flow without a
//! question (`--auto-approve`, the fault suite, the simulation).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::apply::execute::{self, ApplyOptions, Report, Timeouts};
use crate::apply::progress::Progress;
use crate::apply::walk::StopFlag;
use crate::oci::watch::WaitReads;
use crate::plan::refresh::{make_plan, PlanError, PlanOptions};
use crate::plan::saved::SavedPlan;
use crate::plan::Plan;
use crate::state::{LockInfo, LockReleaser, State, StateLock};

use super::Session;

/// Which apply.
#[derive(Clone, Debug)]
pub enum Kind {
    /// `kiln apply DIR`.
    Apply,
    /// `kiln apply --refresh-only`: write what OCI says into the state, change nothing in OCI.
    RefreshOnly,
    /// `kiln destroy`.
    Destroy,
    /// `kiln apply PLANFILE`: exactly this plan, if the state has not moved since it was made.
    Saved(Box<SavedPlan>),
}

/// What to apply (the flags `kiln apply` and `kiln destroy` share).
#[derive(Clone, Debug)]
pub struct ApplyRequest {
    pub kind: Kind,
    pub targets: Vec<String>,
    pub excludes: Vec<String>,
    pub replace: BTreeSet<String>,
    /// How long to wait for another kiln holding the state lock.
    pub lock_timeout: Duration,
    /// How long to wait for each kind of resource.
    pub timeouts: Timeouts,
    /// How waits read what they wait for.
    pub wait_reads: WaitReads,
    /// `--policy`: directories of Rego policies (the manifest's `[policy] dirs` are added); a
    /// saved plan is checked again.
    pub policy_dirs: Vec<std::path::PathBuf>,
}

impl ApplyRequest {
    pub fn new(kind: Kind) -> ApplyRequest {
        ApplyRequest {
            kind,
            targets: Vec::new(),
            excludes: Vec::new(),
            replace: BTreeSet::new(),
            lock_timeout: Duration::ZERO,
            timeouts: Timeouts::default(),
            wait_reads: WaitReads::default(),
            policy_dirs: Vec::new(),
        }
    }

    fn operation(&self) -> &'static str {
        match self.kind {
            Kind::Destroy => "destroy",
            _ => "apply",
        }
    }
}

/// An apply that holds the state lock and its plan, waiting to be confirmed.
pub struct Prepared<'s> {
    session: &'s Session,
    lock: StateLock,
    state: Option<State>,
    pub plan: Plan,
    /// What the policies said of the plan (`None`: no policy).
    pub policy: Option<crate::policy::Report>,
    kind: Kind,
    options: ApplyOptions,
    /// For the lock a rollback pass takes again ([`super::rollback`]).
    lock_timeout: Duration,
}

/// Lock the state (`on_lock` receives a handle that can release it from elsewhere, e.g. a signal
/// handler about to exit), load it, and plan — or check the saved plan against it.
pub async fn prepare<'s>(
    s: &'s Session,
    req: &ApplyRequest,
    on_lock: impl FnOnce(LockReleaser),
) -> miette::Result<Prepared<'s>> {
    // Policies are read before the lock: a syntax error stops nothing half-way.
    let policies = super::policy::load(&super::policy::dirs(s, &req.policy_dirs))?;
    let lock = s
        .store
        .lock(LockInfo::new(req.operation()), req.lock_timeout)
        .await?;
    on_lock(lock.releaser());
    let state = s.store.load().await?;
    let plan = match &req.kind {
        Kind::Saved(saved) => {
            saved.check_state(
                state.as_ref().map(|s| s.lineage.as_str()),
                state.as_ref().map(|s| s.serial).unwrap_or(0),
            )?;
            saved.plan.clone()
        }
        Kind::Apply | Kind::RefreshOnly | Kind::Destroy => {
            let popts = PlanOptions {
                targets: req.targets.clone(),
                excludes: req.excludes.clone(),
                refresh_only: matches!(req.kind, Kind::RefreshOnly),
                destroy: matches!(req.kind, Kind::Destroy),
                replace: req.replace.clone(),
                observe: policies.is_some(),
                envs: s.env_states().await?,
                ..s.plan_options()
            };
            make_plan(&s.manifest, state.as_ref(), Some(&s.clients), &popts)
                .await
                .map_err(PlanError::into_report)?
        }
    };
    let policy = super::policy::check(policies.as_ref(), &plan)?;
    let options = ApplyOptions {
        parallelism: s.parallelism,
        timeouts: req.timeouts.clone(),
        wait_reads: req.wait_reads,
    };
    Ok(Prepared {
        session: s,
        lock,
        state,
        plan,
        policy,
        kind: req.kind.clone(),
        options,
        lock_timeout: req.lock_timeout,
    })
}

impl Prepared<'_> {
    /// Whether there is anything to do (a saved plan is applied as it was made).
    pub fn is_noop(&self) -> bool {
        !matches!(self.kind, Kind::Saved(_)) && self.plan.is_noop()
    }

    /// The question to ask before executing (`None`: apply without asking — a saved plan was
    /// reviewed when it was made; a refresh-only apply with nothing to record asks nothing).
    pub fn question(&self) -> Option<&'static str> {
        let p = &self.plan;
        match self.kind {
            Kind::Saved(_) => None,
            Kind::Destroy if !p.changes.is_empty() => Some("destroy these resources"),
            Kind::RefreshOnly if !(p.drift.is_empty() && p.forget.is_empty()) => {
                Some("write what OCI says into the state")
            }
            Kind::Apply if !p.changes.is_empty() => Some("perform these actions"),
            _ => None,
        }
    }

    /// Release the lock and refuse when a policy denied the plan (before anything asks or runs).
    pub async fn refuse_if_denied(self) -> miette::Result<Self> {
        match super::policy::enforce(self.policy.as_ref()) {
            Ok(()) => Ok(self),
            Err(denied) => {
                self.lock.release().await?;
                Err(denied.into())
            }
        }
    }

    /// Release the lock without doing anything (no changes, or the answer was no).
    pub async fn cancel(self) -> miette::Result<()> {
        Ok(self.lock.release().await?)
    }

    /// Execute the plan, saving the state after every action, and release the lock. `stop`
    /// ends it early (no new action starts; those in flight finish and are saved). The caller
    /// has passed [`Prepared::refuse_if_denied`].
    pub async fn execute(self, stop: &StopFlag, progress: Arc<Progress>) -> Executed {
        assert!(
            super::policy::enforce(self.policy.as_ref()).is_ok(),
            "a plan a policy denied is never executed"
        );
        let s = self.session;
        let (plan, mut state, mut report) = execute::apply(
            self.plan,
            s.clients.clone(),
            s.store.clone(),
            self.lock,
            self.state.unwrap_or_default(),
            &self.options,
            stop,
            progress.clone(),
        )
        .await;
        // `on_failure = "rollback"`: the failed fleets go back, in a second pass.
        let fleets = super::rollback::failed_fleets(&plan, &report);
        let mut back = None;
        if !fleets.is_empty() && !stop.is_stopped() {
            let pass = super::rollback::roll_back(
                s,
                fleets,
                self.lock_timeout,
                &self.options,
                stop,
                progress,
            )
            .await;
            match pass {
                Ok(Some((plan, st, r))) => {
                    state = st;
                    super::rollback::merge(&mut report, r);
                    back = Some(plan);
                }
                Ok(None) => {}
                Err(e) => report.failed.push((
                    "roll the failed rollout back (the next `kiln apply` does)".into(),
                    e,
                )),
            }
        }
        let untried: Vec<&str> = report
            .skipped
            .iter()
            .map(|(l, _)| l.as_str())
            .chain(report.not_started.iter().map(String::as_str))
            .filter_map(|l| l.split_once(' ').map(|(_, a)| a))
            .collect();
        let tried = |a: &str| !untried.contains(&a);
        let plans: Vec<&Plan> = std::iter::once(&plan).chain(back.as_ref()).collect();
        report.rolled_back = super::rollback::rolled_back(&plans, &tried, &state);
        drop(plans);
        Executed {
            plan,
            state,
            report,
        }
    }
}

/// What [`Prepared::execute`] did: the plan it executed (given back, not copied, without the
/// requests and attribute lists its nodes no longer need: [`execute::apply`]), the final state
/// and the report.
pub struct Executed {
    pub plan: Plan,
    pub state: State,
    pub report: Report,
}

/// What an apply without a question did.
pub struct Applied {
    pub plan: Plan,
    /// `None` when the plan had nothing to do.
    pub report: Option<Report>,
}

/// The whole apply, approved in advance (`--auto-approve`): prepare, execute unless there is
/// nothing to do, release.
pub async fn apply_approved(
    s: &Session,
    req: &ApplyRequest,
    stop: &StopFlag,
    progress: Arc<Progress>,
) -> miette::Result<Applied> {
    let prepared = prepare(s, req, |_| {}).await?.refuse_if_denied().await?;
    if prepared.is_noop() {
        let plan = prepared.plan.clone();
        prepared.cancel().await?;
        return Ok(Applied { plan, report: None });
    }
    let done = prepared.execute(stop, progress).await;
    Ok(Applied {
        plan: done.plan,
        report: Some(done.report),
    })
}
