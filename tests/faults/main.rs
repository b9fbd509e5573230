//! Never twice, never lost: the fault-enumeration suite.
//!
//! One scenario — about fifty resources: the golden-image DAG (a builder stopped, captured and
//! started again, three instances launched from the image), plain creates from an `image_lookup`,
//! updates, stops, starts, replacements in both orders, an image replaced under the instance
//! launched from it, moves and destroys — is applied once as a reference, listing every I/O
//! boundary it crosses (`kiln::failpoint::POINTS`: each OCI request and answer, each state lock,
//! load and save). Then, for every crossing k and every fault class that applies there — process
//! abort, lost answer (the change is made, the reply dropped), answers 401/404/409/429/500, and
//! for each launch a capacity answer (500 `InternalError` "Out of host capacity.", alone and
//! followed by a kill as the next place is tried: the `new*` instances have a `placement`) —
//! the cloud and the state are rewound, the apply runs with that one fault, and the next apply
//! (sometimes with an edited manifest: a changed tag, a newer image for the lookups) must
//! converge. After each, [`invariants`] checks against the emulator's own records, not kiln's
//! state: no display name live more often than declared, no live resource missing from the state,
//! no declared resource destroyed, the state parses and its serial only grows, network facts are
//! the instance's own (and, once converged, every instance has them), the final plan is empty.
//!
//! Everything runs in this process against the in-process emulator at time scale 0, with
//! parallelism 1 so that crossing k is the same request in every run (a failure names its seed,
//! k, point and fault, and reruns exactly). Every crossing gets abort and (where the point has an
//! answer to lose) lost; of the five error answers, each request crossing gets one, rotated by a
//! seed printed in the output (`KILN_FAULT_SEED` sets it); `KILN_FAULTS=all` runs every answer on
//! every request crossing (the nightly-style full product); `KILN_FAULT_CROSSING=k` reruns one
//! crossing (with the seed of the failure). The failpoint registry is global, so
//! this suite is its own test binary and runs its scenarios one at a time.
//!
//! The sweep runs twice: with the state in a local file (every crossing), and with the state on
//! Object Storage in the emulator (its saves and lock are OCI requests too, so they are crossings
//! of their own; a quarter of the crossings, chosen by the seed, or all with `KILN_FAULTS=all`).
//! A dead kiln's remote lock stays, its lease fresh: after an abort the harness moves its clock
//! past the lease and runs `force-unlock`, which removes it as lapsed; any other fault must leave
//! no lock behind.
//!
//! A third dimension runs two kilns on one local state ([`two_kilns`]): at every journal
//! crossing of the apply, a second kiln forces the lock (`kiln force-unlock --force`) and applies
//! to the end while the first waits at its crossing; then the first goes on, and the same
//! invariants and convergence are checked. The summary line counts its pairs per boundary;
//! `KILN_FAULTS_ONLY=two-kilns` reruns only it.
//!
//! A second, smaller scenario ([`fleet`]) runs fleets in two regions (two emulators) and resumes
//! each fault on a manifest the seed picks per crossing: the same, fleets resized and re-keyed,
//! `[[moved]]` renames of what was being created, a region change, or every pending create aged
//! past OCI's 24-hour retry-token window. Its summary line counts each.
//!
//! A third ([`rollout`]) rolls a fleet of 3 onto a new image (`max_surge = 1`,
//! `max_unavailable = 0`, a health check) and adds the rollout's limits to the invariants,
//! sampled from the emulator's world at every OCI answer: never more than `count + max_surge`
//! members, never fewer than `count - max_unavailable` RUNNING, no old member gone before its
//! successor passed the check. `KILN_FAULTS_ONLY=rollout` reruns only it.

// Tests and benchmarks print their own logs and tables (the printing door is the CLI's).
#![allow(clippy::disallowed_macros)]

#[path = "../it/support.rs"]
mod support;

mod checks;
mod fleet;
mod local;
mod rollout;
mod two_kilns;

use checks::{converge, expect, final_plan_is_empty, invariants, Expect};
use local::{reference, setup, sweep, Scenario};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln::apply::execute::{Report, Timeouts};
use kiln::apply::progress::Progress;
use kiln::apply::walk::StopFlag;
use kiln::emulator::World;
use kiln::failpoint::{self, Fault};
use kiln::oci::{Client, Clients};
use kiln::ops::{
    self,
    apply::{ApplyRequest, Kind},
    plan::PlanRequest,
    Session,
};
use kiln::plan::Plan;
use kiln::state::{State, StateStore};

use support::COMPARTMENT;

const OTHER_COMPARTMENT: &str = support::OTHER_COMPARTMENT;
const STATUSES: [u16; 5] = [401, 404, 409, 429, 500];
/// A launch request, narrowed from `oci.request` (`failpoint::cross_op`): where the capacity
/// classes apply.
const LAUNCH: &str = "oci.request.LaunchInstance";

/// What the harness does at a crossing: one fault, or (capacity) one answer and then a kill at
/// the next launch request — between a capacity failure and the next try.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Class {
    One(Fault),
    CapacityThenAbort,
}

impl Class {
    fn arg(self) -> String {
        match self {
            Class::One(f) => f.arg(),
            Class::CapacityThenAbort => "capacity+abort".into(),
        }
    }

    /// The failpoint action that fires this class once.
    fn action(self) -> String {
        match self {
            Class::One(f) => format!("1*return({})", f.arg()),
            Class::CapacityThenAbort => "1*return(capacity)->1*return(abort)".into(),
        }
    }
}
/// The image the harness imports itself (not kiln's).
const NEWER_IMAGE: &str = "Oracle-Linux-9-newer";

/// The session of the manifest in `dir` over the suite's own store and client: the flows below
/// are `kiln::ops`'s, the ones the CLI runs.
fn session(dir: &Path, store: &StateStore, clients: &Clients) -> Result<Session, String> {
    let m = kiln::manifest::load(dir, None).map_err(|e| format!("{e:?}"))?;
    // Parallelism 1, so that crossing k is the same request in every run.
    Ok(Session::from_parts(
        m,
        store.clone(),
        clients.clone(),
        "emulator",
        1,
    ))
}

/// `kiln plan`.
async fn plan(dir: &Path, store: &StateStore, clients: &Clients) -> Result<Plan, String> {
    let s = session(dir, store, clients)?;
    ops::plan::plan(&s, &PlanRequest::default())
        .await
        .map(|c| c.plan)
        .map_err(|e| format!("{e:?}"))
}

/// `kiln apply --auto-approve`.
async fn apply(dir: &Path, store: &StateStore, clients: &Clients) -> Result<Report, String> {
    let s = session(dir, store, clients)?;
    let t = Duration::from_secs(30);
    let req = ApplyRequest {
        lock_timeout: Duration::from_secs(5),
        timeouts: Timeouts {
            instance: t,
            image: t,
            terminate: t,
            work_request: t,
        },
        ..ApplyRequest::new(Kind::Apply)
    };
    let applied =
        ops::apply::apply_approved(&s, &req, &StopFlag::new(), Arc::new(Progress::Silent))
            .await
            .map_err(|e| format!("{e:?}"))?;
    Ok(applied.report.unwrap_or_default())
}

fn report_errors(r: &Report) -> String {
    r.failed
        .iter()
        .map(|(l, e)| format!("{l}: {e}"))
        .chain(
            r.skipped
                .iter()
                .map(|(l, b)| format!("{l}: skipped ({b} failed)")),
        )
        .collect::<Vec<_>>()
        .join("\n")
}

/// The suite's own small key (`tests/fixtures/signing/README.md`): its signatures are cheap.
fn fast_key() -> kiln::oci::keys::SigningKey {
    let key = kiln::oci::keys::load_private_key(&support::key_path("fault-suite-1024.pem"), None)
        .unwrap();
    let fingerprint = kiln::oci::keys::fingerprint(&key.to_public_key());
    kiln::oci::keys::SigningKey::new(
        key,
        format!("{}/{}/{fingerprint}", support::TENANCY, support::USER),
    )
}

/// The faults that apply at a crossing of `point` (the `k`-th), given the seed.
fn faults(point: &str, k: usize, seed: u64, all: bool) -> Vec<Class> {
    if point == LAUNCH {
        // The same request's `oci.request` crossing has the other classes.
        return vec![Class::One(Fault::Capacity), Class::CapacityThenAbort];
    }
    let mut out = vec![Fault::Abort];
    match point {
        failpoint::OCI_REQUEST => {
            if all {
                out.extend(STATUSES.map(Fault::Status));
            } else {
                out.push(Fault::Status(
                    STATUSES[(seed as usize).wrapping_add(k) % STATUSES.len()],
                ));
            }
        }
        failpoint::OCI_RESPONSE
        | failpoint::STATE_SAVED
        | failpoint::STATE_JOURNALED
        | failpoint::STATE_FOLDED => out.push(Fault::Lost),
        _ => out.push(Fault::Error),
    }
    out.into_iter().map(Class::One).collect()
}

/// The apply of a run: `class` injected at the `j`-th crossing of `point` (the caller holds the
/// `FailScenario`); a hang is a failure, whatever the apply returned is not (the next one
/// converges).
async fn faulted_apply(
    dir: &Path,
    store: &StateStore,
    clients: &Clients,
    point: &str,
    j: usize,
    class: Class,
) -> Result<(), String> {
    let action = match j {
        0 => class.action(),
        j => format!("{j}*off->{}", class.action()),
    };
    fail::cfg(point, &action).unwrap();
    let faulted = tokio::time::timeout(Duration::from_secs(120), apply(dir, store, clients))
        .await
        .map_err(|_| "the faulted apply hung".to_string())?;
    failpoint::revive();
    drop(faulted);
    Ok(())
}

/// A run's outcome: logged with `KILN_FAULTS_VERBOSE`; when it broke an invariant, named in
/// `failures` with the scenario, seed, crossing and `what` was done there (enough to replay it).
fn tally(
    failures: &mut Vec<String>,
    (scenario, seed): (&str, u64),
    (k, point, j): (usize, &str, usize),
    what: &str,
    result: Result<(), String>,
    started: std::time::Instant,
) {
    if std::env::var_os("KILN_FAULTS_VERBOSE").is_some() {
        eprintln!(
            "{scenario}: crossing {k} {point} #{j} {what}: {:?} in {:?}",
            result.as_ref().map(|_| "ok"),
            started.elapsed()
        );
    }
    if let Err(e) = result {
        failures.push(format!(
            "{scenario}, seed {seed}, crossing {k} ({point} #{j}), {what}: {e}"
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_at_every_boundary_neither_duplicates_nor_loses() {
    assert!(
        fail::has_failpoints(),
        "this suite needs kiln built with `--features failpoints`"
    );
    let all = std::env::var("KILN_FAULTS").is_ok_and(|v| v == "all");
    let seed: u64 = std::env::var("KILN_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand_seed);
    // Every crossing with the local store; with the remote store (whose writes are OCI requests
    // and whose lock outlives a dead holder), a quarter of them in the normal run, all of them
    // with KILN_FAULTS=all. One scenario at a time: the failpoint registry is global.
    // `KILN_FAULTS_ONLY=two-kilns` reruns only that dimension (a failure names its seed).
    let only_two_kilns = std::env::var("KILN_FAULTS_ONLY").is_ok_and(|v| v == "two-kilns");
    // `KILN_FAULTS_ONLY=rollout` reruns only the rollout scenario (`rollout`).
    if std::env::var("KILN_FAULTS_ONLY").is_ok_and(|v| v == "rollout") {
        let fleet = rollout::setup().await;
        let (_, failures) = rollout::sweep(&fleet, seed, all).await;
        assert!(
            failures.is_empty(),
            "{} fault runs broke an invariant:\n{}",
            failures.len(),
            failures.join("\n\n")
        );
        return;
    }
    let local = setup(false).await;
    let (local_pairs, mut failures) = if only_two_kilns {
        Default::default()
    } else {
        sweep(&local, seed, all, None).await
    };
    // Two kilns on one (local) state: a forced unlock at every journal crossing.
    let crossings = reference(&local).await;
    let (two_kilns, two_kilns_failures) = two_kilns::sweep(&local, &crossings, seed).await;
    failures.extend(two_kilns_failures);
    drop(local);
    let mut remote_pairs = BTreeMap::new();
    let mut fleet_runs = 0;
    if !only_two_kilns {
        let remote = setup(true).await;
        let sample = (!all).then_some((4, 0));
        let (pairs, remote_failures) = sweep(&remote, seed, all, sample).await;
        remote_pairs = pairs;
        failures.extend(remote_failures);
        drop(remote);
        // The second scenario: fleets in two regions, resumed on changed manifests (`fleet`).
        let fleets = fleet::setup().await;
        let (fleet_pairs, fleet_failures) = fleet::sweep(&fleets, seed, all).await;
        failures.extend(fleet_failures);
        fleet_runs = fleet_pairs
            .iter()
            .filter(|(k, _)| k.starts_with("resumed "))
            .map(|(_, n)| n)
            .sum();
        // The third: a fleet rolled onto a new image, its limits sampled (`rollout`).
        let rolling = rollout::setup().await;
        let (rollout_pairs, rollout_failures) = rollout::sweep(&rolling, seed, all).await;
        failures.extend(rollout_failures);
        fleet_runs += rollout_pairs.values().sum::<usize>();
    }
    let checked: usize = local_pairs
        .values()
        .chain(remote_pairs.values())
        .sum::<usize>()
        + fleet_runs;
    let two_kilns_pairs: usize = two_kilns.values().sum();
    println!(
        "fault suite: {checked} (crossing, fault) pairs checked in all, seed {seed}; two kilns on one state with a forced unlock at a journal crossing: {two_kilns_pairs} pairs ({})",
        two_kilns
            .iter()
            .map(|(p, n)| format!("{p}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        failures.is_empty(),
        "{} fault runs broke an invariant:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn rand_seed() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}
