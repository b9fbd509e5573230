//! The executor: [`apply`] walks the plan's DAG, one action per node (the arms are in `actions`,
//! what they share in `ctx`), each mutation guarded by If-Match (`guard`), each create made
//! idempotent across crashes (`create`); then it reads the network facts and sums up a [`Report`].
//!
//! The state is committed after every finished action (serial + 1, compare-and-swap), so a crash
//! or Ctrl-C loses nothing. A commit records only the records it changed — an append to the local
//! store's journal, folded into the state file at the end ([`crate::state::journal`]) — so its
//! cost does not grow with the estate (the remote store writes the whole object). Commits are
//! group commits: an action whose change is already covered by a commit that started after it
//! does not write again, so parallel actions share writes. A commit that fails stops the apply:
//! no new action starts that the state could not record.
//!
//! The first mutation of a resource sends the etag the plan captured; later nodes of the same
//! apply send the etag this apply read last — so an out-of-band change between plan and apply is
//! a 412 that overwrites nothing, and kiln never trips over its own changes.
//!
//! Replacements keep their predecessor in the state until it is destroyed: create-before-destroy
//! records the old object as *deposed* before its successor is created, so a failure or a crash
//! between the two leaves it in the state, shown in the next plan and destroyed by it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::oci::watch;
use crate::oci::{Clients, OciError};
use crate::plan::{Action, Plan};
use crate::state::{Commits, State, StateError, StateLock, StateStore};

use super::ctx::{label, Ctx};
use super::progress::{Progress, Timer};
use super::walk::{self, Outcome, StopFlag};

/// Per-kind wait limits (defaults suit real OCI: an image capture can take up to 2 hours).
#[derive(Clone, Debug)]
pub struct Timeouts {
    pub instance: Duration,
    pub image: Duration,
    pub terminate: Duration,
    pub work_request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            instance: Duration::from_secs(20 * 60),
            image: Duration::from_secs(2 * 3600),
            terminate: Duration::from_secs(20 * 60),
            work_request: Duration::from_secs(3600),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub parallelism: usize,
    pub timeouts: Timeouts,
    /// How waits read ([`watch::WaitReads`]: shared listings by default).
    pub wait_reads: watch::WaitReads,
}

/// Why a node failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum NodeError {
    #[error("`{address}` changed in OCI since the plan (etag {etag}); run `kiln plan` again")]
    #[diagnostic(
        code(kiln::apply::changed_since_plan),
        help("nothing was overwritten: review the change with `kiln plan`, then apply again")
    )]
    ChangedSincePlan {
        address: String,
        etag: String,
        source: OciError,
    },
    #[error("`{address}` changed in OCI since this apply read it; run `kiln plan` again")]
    #[diagnostic(
        code(kiln::apply::changed_since_read),
        help("nothing was overwritten: review the change with `kiln plan`, then apply again")
    )]
    ChangedSinceRead {
        address: String,
        /// The refusal, when a mutation was refused (`None`: a read before it found the change).
        #[source]
        source: Option<OciError>,
    },
    #[error("`{address}`: {source}")]
    #[diagnostic(code(kiln::apply::oci))]
    Oci { address: String, source: OciError },
    #[error("`{address}`: {source}")]
    #[diagnostic(code(kiln::apply::state))]
    State { address: String, source: StateError },
    #[error("`{address}`: {message}")]
    #[diagnostic(code(kiln::apply::invalid))]
    Invalid { address: String, message: String },
    #[error("`{address}` failed its health check {check}; the rollout stops here\n{output}")]
    #[diagnostic(
        code(kiln::apply::unhealthy),
        help("fix the image or the check, then `kiln apply` again: the rollout continues from the state (or revert the manifest to roll the moved members back)")
    )]
    Unhealthy {
        address: String,
        check: String,
        output: String,
    },
}

/// What happened, for the summary and the exit code.
#[derive(Debug, Default)]
pub struct Report {
    pub created: usize,
    pub updated: usize,
    pub replaced: usize,
    /// Compartment moves and `[[moved]]` renames.
    pub moved: usize,
    pub started: usize,
    pub stopped: usize,
    pub deleted: usize,
    /// (node label, error)
    pub failed: Vec<(String, String)>,
    /// (node label, the failed node it waited for)
    pub skipped: Vec<(String, String)>,
    pub not_started: Vec<String>,
    pub elapsed: Duration,
    /// The plan was `--refresh-only`: the summary says what was recorded.
    pub refresh_only: bool,
    /// State records replaced with a fresh read (accepted drift, refresh-only).
    pub refreshed: usize,
    /// Addresses dropped from the state because their resource is gone.
    pub forgotten: usize,
    /// Instances whose network facts were read.
    pub networks_read: usize,
    /// What went wrong without failing anything (printed, not counted).
    pub warnings: Vec<String>,
    /// The plan was limited by `--target` / `--exclude`: what it left out, under the summary.
    pub partial: Option<String>,
    /// Rollout members moved back onto their previous image (`on_failure = "rollback"`).
    pub rolled_back: Vec<String>,
    /// Resumed creates made as first requested (the retry of a create whose answer was lost
    /// sends the first request again) while the manifest changed what only an update or a
    /// replacement brings: the next apply does (`kiln plan` shows it).
    pub behind: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && self.not_started.is_empty()
    }

    pub fn summary_line(&self) -> String {
        if self.refresh_only {
            return format!(
                "Refresh {}: {} records refreshed, {} gone resources dropped from the state, network facts of {} instances read, {} failed; nothing was changed in OCI in {}",
                if self.ok() { "complete" } else { "incomplete" },
                self.refreshed,
                self.forgotten,
                self.networks_read,
                self.failed.len(),
                super::progress::human(self.elapsed)
            );
        }
        let mut partial = match &self.partial {
            Some(p) => format!("\n{p}"),
            None => String::new(),
        };
        if !self.behind.is_empty() {
            partial.push_str(&format!(
                "\nCreated as first requested (an earlier create resumed with its retry token), behind the manifest: {} — run `kiln apply` again to bring them up to it",
                self.behind.join(", ")
            ));
        }
        if !self.rolled_back.is_empty() {
            partial.push_str(&format!(
                "\nRolled back onto the previous image: {}",
                self.rolled_back.join(", ")
            ));
        }
        format!(
            "Apply {}: {} created, {} updated, {} replaced, {} moved, {} started, {} stopped, {} destroyed, {} failed, {} skipped in {}{partial}",
            if self.ok() { "complete" } else { "incomplete" },
            self.created,
            self.updated,
            self.replaced,
            self.moved,
            self.started,
            self.stopped,
            self.deleted,
            self.failed.len(),
            self.skipped.len() + self.not_started.len(),
            super::progress::human(self.elapsed)
        )
    }
}

/// Execute `plan`. The state must be the one the plan was made from (the caller checked it and
/// holds `lock`). Returns the plan (without its requests, each dropped once its node sent it, nor
/// the attribute lists it showed), the final state and a report; the lock is released.
// Called from one place (`ops::apply`), which holds each of these apart.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    mut plan: Plan,
    clients: Clients,
    store: StateStore,
    lock: StateLock,
    state: State,
    opts: &ApplyOptions,
    stop: &StopFlag,
    progress: Arc<Progress>,
) -> (Plan, State, Report) {
    let timer = Timer::start();
    // Each node's request goes to its node (dropped once sent), and the attributes the plan
    // showed are not kept: the plan is shared with the nodes, not copied.
    let requests = Requests::take(&mut plan);
    let plan = Arc::new(plan);
    let ctx = Arc::new(Ctx {
        clients,
        lock,
        state: Mutex::new(state),
        changed: std::sync::atomic::AtomicU64::new(0),
        commits: Mutex::new((0, Commits::new(store))),
        dirty: std::sync::Mutex::new(BTreeSet::new()),
        touched: Mutex::new(HashSet::new()),
        timeouts: opts.timeouts.clone(),
        progress: progress.clone(),
        stop: stop.clone(),
        watches: watch::Watches::new(opts.wait_reads),
        network_stale: std::sync::Mutex::new(BTreeSet::new()),
        behind: std::sync::Mutex::new(BTreeSet::new()),
        rollouts: plan.rollouts.clone(),
        rollout_counts: std::sync::Mutex::new(BTreeMap::new()),
        rolling_back: std::sync::Mutex::new(BTreeSet::new()),
        seen_running: Default::default(),
        exports: Default::default(),
        inputs_seen: Default::default(),
    });
    let mut report = Report {
        refresh_only: plan.refresh_only,
        partial: plan
            .partial
            .as_ref()
            .map(crate::plan::render::partial_summary),
        ..Report::default()
    };
    // Every region the plan touches needs its client before anything starts (a request sent to
    // another region would read a resource as gone).
    let unreachable: Vec<String> = plan
        .changes
        .iter()
        .filter_map(|c| {
            let reach = match &c.id {
                Some(id) => ctx.clients.for_id(id).map(|_| ()),
                None => ctx.clients.for_region(c.region.as_deref()).map(|_| ()),
            };
            reach.err().map(|e| format!("{}: {}", label(c), e.message))
        })
        .collect();
    if !unreachable.is_empty() {
        report.failed.push((
            "reach every region of the plan".into(),
            unreachable.join("\n"),
        ));
        stop.stop();
    }
    // A journal left by a kiln that died is folded first: this apply starts its own.
    {
        let st = ctx.state.lock().await;
        let mut commits = ctx.commits.lock().await;
        if let Err(e) = commits.1.begin(&ctx.lock, &st).await {
            report.failed.push((
                "fold the state journal left by an earlier apply".into(),
                format!("{:?}", miette::Report::new(e)),
            ));
            stop.stop();
        }
    }
    // `[[moved]]` renames done in the state, counted with the moves in the summary.
    let mut renamed = 0;
    if !plan.moved.is_empty() {
        let moved = plan.moved.clone();
        let touched: Vec<String> = moved
            .iter()
            .flat_map(|(from, to)| [from.clone(), to.clone()])
            .collect();
        if let Err(e) = ctx
            .record_at("state", &touched, |st| {
                for (from, to) in &moved {
                    if !st.resources.contains_key(to) {
                        if let Some(r) = st.resources.remove(from) {
                            st.resources.insert(to.clone(), r.renamed(from, to));
                        }
                    }
                }
            })
            .await
        {
            // Nothing else may run on a state that does not have the names the plan uses.
            report
                .failed
                .push(("move state addresses".into(), e.to_string()));
            stop.stop();
        } else {
            renamed = moved.len();
        }
    }
    if !plan.forget.is_empty() || !plan.forget_deposed.is_empty() {
        let (forget, forget_deposed) = (plan.forget.clone(), plan.forget_deposed.clone());
        let touched: Vec<String> = forget
            .iter()
            .cloned()
            .chain(forget_deposed.iter().map(|(a, _)| a.clone()))
            .collect();
        if let Err(e) = ctx
            .record_at("state", &touched, |st| {
                for a in &forget {
                    if let Some(r) = st.resources.get_mut(a) {
                        r.id = None;
                        r.network = None;
                    }
                }
                for (a, id) in &forget_deposed {
                    if let Some(r) = st.resources.get_mut(a) {
                        r.deposed.retain(|d| &d.id != id);
                        r.retained.retain(|d| &d.id != id);
                    }
                }
                st.resources.retain(|_, r| !r.is_empty());
            })
            .await
        {
            report
                .failed
                .push(("forget gone resources".into(), e.to_string()));
        } else {
            report.forgotten = plan.forget.len();
        }
    }
    // Drift the plan showed and changes nothing of: the state takes what OCI says (the plan was
    // approved with it), so the next plan does not show it again; under `--refresh-only`, also
    // every record OCI now describes differently (`plan.refresh`).
    let changing: HashSet<&str> = plan.changes.iter().map(|c| c.address.as_str()).collect();
    let accept: BTreeSet<&str> = plan
        .drift
        .iter()
        .filter(|d| d.gone.is_none())
        .map(|d| d.address.as_str())
        .chain(plan.refresh.iter().map(String::as_str))
        .filter(|a| !changing.contains(a) && !plan.forget.iter().any(|f| f == a))
        .collect();
    for address in accept {
        match ctx.accept_drift(address).await {
            Ok(()) => report.refreshed += 1,
            Err(e) => report
                .failed
                .push((format!("refresh {address}"), e.to_string())),
        }
    }
    let deps: Vec<Vec<usize>> = plan.changes.iter().map(|c| c.depends_on.clone()).collect();
    let slots = super::rollout::slots(&plan.rollouts, &plan.changes);
    // The plan is shared with the nodes, not copied (a copy of 10,000 launches' requests was a
    // fifth of the apply's peak of memory: BENCHMARKS.md section 6); each node takes its request.
    let outcomes = walk::walk(&deps, opts.parallelism, stop, &slots, |i| {
        let ctx = ctx.clone();
        let c = requests.give(&plan.changes[i], i);
        async move {
            let c = &c;
            let l = label(c);
            ctx.progress.started(&l);
            let t = Timer::start();
            // The progress line says why the action waits when a request of it is retried.
            let observer: crate::oci::client::RetryObserver = {
                let (progress, l) = (ctx.progress.clone(), l.clone());
                Arc::new(move |n| progress.step(&l, &n.to_string()))
            };
            let r = crate::oci::client::observe_retries(observer, ctx.run(c)).await;
            match &r {
                Ok(()) => ctx.progress.finished(&l, t.elapsed(), Ok(())),
                Err(e) => ctx.progress.finished(&l, t.elapsed(), Err(&e.to_string())),
            }
            r.map_err(|e| format!("{:?}", miette::Report::new(e)))
        }
    })
    .await;
    // The network facts of what was created, replaced or moved (and of what the state lacks):
    // reads only, after every action, so a failed read fails no action (see `network`).
    if !stop.is_stopped() {
        let mut wanted: BTreeSet<String> = plan.read_network.iter().cloned().collect();
        wanted.extend(
            ctx.network_stale
                .lock()
                .expect("network set")
                .iter()
                .cloned(),
        );
        let (read, failed) = ctx.read_networks(&wanted, opts.parallelism).await;
        report.networks_read = read;
        report.failed.extend(failed);
    }
    // Images with `keep > 1`: the previous versions the plan keeps are retained (a predecessor
    // this apply deposed, or one an earlier apply deposed and never retained). Safe at any
    // point: only a deposed object is moved, and a kill before this leaves it deposed for the
    // next plan to retain.
    if !plan.retain.is_empty() {
        let retain = plan.retain.clone();
        let touched: Vec<String> = retain.iter().map(|r| r.address.clone()).collect();
        if let Err(e) = ctx
            .record_at("state", &touched, |st| {
                for r in &retain {
                    if let Some(rec) = st.resources.get_mut(&r.address) {
                        rec.retain_version(&r.id, r.version);
                    }
                }
            })
            .await
        {
            report
                .failed
                .push(("retain image versions".into(), e.to_string()));
        }
    }
    report.behind = ctx.behind.lock().expect("behind").iter().cloned().collect();
    let mut counts: BTreeMap<Action, usize> = BTreeMap::new();
    for (i, o) in outcomes.into_iter().enumerate() {
        let c = &plan.changes[i];
        match o {
            // Counted as the plan counted it (a replaced image's predecessor is the replacement's).
            Outcome::Done if !crate::plan::counted_alone(c, &plan.changes) => {}
            Outcome::Done => *counts.entry(c.action).or_default() += 1,
            Outcome::Failed(e) => report.failed.push((label(c), e)),
            Outcome::Skipped { failed } => report
                .skipped
                .push((label(c), label(&plan.changes[failed]))),
            Outcome::NotStarted => report.not_started.push(label(c)),
        }
    }
    let n = |a| counts.get(&a).copied().unwrap_or(0);
    report.created = n(Action::Create);
    report.updated = n(Action::Update);
    report.replaced = n(Action::Replace);
    report.moved = n(Action::Move) + renamed;
    report.started = n(Action::Start);
    report.stopped = n(Action::Stop);
    report.deleted = n(Action::Delete);
    report.elapsed = timer.elapsed();
    let ctx = Arc::try_unwrap(ctx).ok().expect("every node finished");
    // The journal folded into the state file; changes whose commit failed are saved whole.
    let unrecorded = !ctx.dirty.lock().expect("dirty set").is_empty();
    {
        let mut st = ctx.state.lock().await;
        let mut commits = ctx.commits.lock().await;
        if let Err(e) = commits.1.finish(&ctx.lock, &mut st, unrecorded).await {
            let taken_over = matches!(e, StateError::Conflict { .. });
            let e = format!("{:?}", miette::Report::new(e));
            if unrecorded {
                report.failed.push(("record the state".into(), e));
            } else if taken_over {
                // Another kiln broke the lock (`force-unlock --force`) and wrote the state: it
                // folded this apply's journal first (under the write gate), so every commit
                // acknowledged here is in what it wrote; nothing is written over it.
                report.failed.push((
                    "fold the state journal".into(),
                    format!("another kiln took the state over during this apply and folded its journal (every commit was recorded): {e}"),
                ));
            } else {
                // Every commit is durable in the journal: the next kiln folds it.
                report.warnings.push(format!(
                    "the state journal was not folded into the state file (the next kiln run folds it): {e}"
                ));
            }
        }
    }
    if let Err(e) = ctx.lock.release().await {
        report.failed.push((
            "release the state lock".into(),
            format!("{:?}", miette::Report::new(e)),
        ));
    }
    drop(requests);
    let plan = Arc::try_unwrap(plan).unwrap_or_else(|p| (*p).clone());
    (plan, ctx.state.into_inner(), report)
}

/// The plan's requests, one per node, each taken by its node when it runs (a node runs once).
struct Requests(Vec<std::sync::Mutex<Option<crate::raw_json::RawJson>>>);

impl Requests {
    /// Move every request out of `plan`, and drop the attributes it showed (no action reads
    /// them; a plan of 10,000 launches holds ~15 MB of them).
    fn take(plan: &mut Plan) -> Requests {
        Requests(
            plan.changes
                .iter_mut()
                .map(|c| {
                    c.attributes = Vec::new();
                    std::sync::Mutex::new(c.request.take())
                })
                .collect(),
        )
    }

    /// Node `i`'s change with its request (the request leaves this table).
    fn give(&self, c: &crate::plan::Change, i: usize) -> crate::plan::Change {
        let request = self.0[i].lock().expect("requests").take();
        crate::plan::Change {
            request,
            ..c.clone()
        }
    }
}
