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

#[path = "it/support.rs"]
mod support;
#[path = "faults/two_kilns.rs"]
mod two_kilns;

#[path = "faults/fleet.rs"]
mod fleet;
#[path = "faults/rollout.rs"]
mod rollout;

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

/// The manifest: `v2` is what the faulted apply moves to from `v1`; `edited` changes tags of
/// resources it creates.
fn manifest(p: &support::Project, v2: bool, edited: bool) -> String {
    let f = p.emu.fixtures();
    let (ad1, ad2) = (&f.availability_domains[0], &f.availability_domains[1]);
    let mut m = String::new();
    for n in 0..20 {
        m += &format!("[instance.keep{n:02}]\n");
    }
    for n in 0..3 {
        let v = if v2 { 2 } else { 1 };
        m += &format!("[instance.upd{n}]\nfreeform_tags = {{ v = \"{v}\" }}\n");
    }
    for n in 0..2 {
        let (stop, start) = if v2 {
            ("STOPPED", "RUNNING")
        } else {
            ("RUNNING", "STOPPED")
        };
        m += &format!(
            "[instance.stop{n}]\nstate = \"{stop}\"\n[instance.start{n}]\nstate = \"{start}\"\n"
        );
    }
    let ad = if v2 { ad2 } else { ad1 };
    for n in 0..2 {
        m += &format!("[instance.cbd{n}]\navailability_domain = \"{ad}\"\ncreate_before_destroy = true\n[instance.dbc{n}]\navailability_domain = \"{ad}\"\n");
        let c = if v2 { OTHER_COMPARTMENT } else { COMPARTMENT };
        m += &format!("[instance.mv{n}]\ncompartment = \"{c}\"\n");
    }
    if !v2 {
        for n in 0..3 {
            m += &format!("[instance.gone{n}]\n");
        }
    }
    let base = if v2 { "base-v2" } else { "base-v1" };
    m += &format!("[image.base]\nsource = {{ uri = \"https://objectstorage.us-ashburn-1.oraclecloud.com/n/kilnemulator/b/images/o/{base}.qcow2\" }}\n[instance.onbase]\nsource = {{ image = \"image.base\" }}\n");
    if v2 {
        let tag = if edited { "edited" } else { "first" };
        m += "[instance.builder]\n[image.golden]\nfrom_instance = \"instance.builder\"\n";
        for n in 0..3 {
            m += &format!("[instance.web{n}]\nsource = {{ image = \"image.golden\" }}\nfreeform_tags = {{ t = \"{tag}\" }}\n");
            m += &format!("[instance.new{n}]\nsource = {{ image_lookup = {{ os = \"Oracle Linux\", version = \"9\" }} }}\nfreeform_tags = {{ t = \"{tag}\" }}\nplacement = {{ availability_domains = [\"{ad1}\", \"{ad2}\"], fault_domains = \"spread\" }}\n");
        }
    }
    m
}

/// What a run may do to each address of v1, from its own state.
struct Expect {
    /// Addresses v2 declares, and the display name each has.
    declared: BTreeMap<String, String>,
    /// OCIDs of v1 that v2 keeps (neither replaced nor destroyed): they must stay live.
    kept: BTreeMap<String, String>,
}

fn expect(v1: &State, v2_addresses: &BTreeSet<String>) -> Expect {
    let replaced = |a: &str| {
        a.starts_with("instance.cbd")
            || a.starts_with("instance.dbc")
            || a == "image.base"
            || a == "instance.onbase"
    };
    let kept = v1
        .resources
        .iter()
        .filter(|(a, _)| v2_addresses.contains(*a) && !replaced(a))
        .map(|(a, r)| (a.clone(), r.id.clone().expect("v1 applied")))
        .collect();
    let declared = v2_addresses
        .iter()
        .map(|a| (a.clone(), a.split_once('.').unwrap().1.to_string()))
        .collect();
    Expect { declared, kept }
}

/// Live resources in the emulators' own records (one world per region): (id, display name,
/// kiln-address tag).
fn live(worlds: &[World]) -> Vec<(String, String, Option<String>)> {
    let gone = ["TERMINATING", "TERMINATED", "DELETED"];
    worlds
        .iter()
        .flat_map(|w| w.instances.values().chain(w.images.values()))
        .filter(|r| !gone.contains(&r.state()))
        .filter(|r| r.body["displayName"] != NEWER_IMAGE)
        .map(|r| {
            (
                r.id().to_string(),
                r.body["displayName"].as_str().unwrap_or("").to_string(),
                r.body["freeformTags"]["kiln-address"]
                    .as_str()
                    .map(str::to_string),
            )
        })
        .collect()
}

/// Every invariant, checked against the emulators' records (one world per region); `Err` lists
/// the violations.
fn invariants(
    worlds: &[World],
    state: &State,
    exp: &Expect,
    last_serial: u64,
    converged: bool,
) -> Result<(), String> {
    let mut bad = Vec::new();
    if state.serial < last_serial {
        bad.push(format!(
            "the serial went back from {last_serial} to {}",
            state.serial
        ));
    }
    let live = live(worlds);
    let live_ids: BTreeSet<&str> = live.iter().map(|(id, _, _)| id.as_str()).collect();
    // Never twice.
    let mut per_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, name, _) in &live {
        *per_name.entry(name.as_str()).or_default() += 1;
    }
    for (name, n) in &per_name {
        let address = exp
            .declared
            .iter()
            .find(|(_, d)| d.as_str() == *name)
            .map(|(a, _)| a.as_str());
        let deposed = address
            .and_then(|a| state.resources.get(a))
            .map(|r| r.deposed.len())
            .unwrap_or(0);
        let (allowed, why) = match (address, converged) {
            (Some(_), true) => (1, "declared once"),
            (Some(_), false) => (1 + deposed, "declared once (plus what is deposed)"),
            (None, true) => (0, "not declared"),
            // Not declared (destroyed by this run) but possibly not destroyed yet.
            (None, false) => (1, "destroyed or about to be"),
        };
        if *n > allowed {
            bad.push(format!("`{name}` is live {n} times ({why})"));
        }
    }
    // Never lost: every live resource kiln made is in the state (its object, deposed, or the
    // resource of a pending create sent under its tag — the record may have been renamed since);
    // once converged, each is the object of the address it is tagged with (renames retagged).
    for (id, name, tag) in &live {
        let Some(address) = tag else {
            bad.push(format!("{id} (`{name}`) has no kiln-address tag"));
            continue;
        };
        let holder = state
            .resources
            .iter()
            .find(|(_, r)| {
                r.id.as_deref() == Some(id.as_str()) || r.deposed.iter().any(|d| &d.id == id)
            })
            .map(|(a, _)| a.as_str());
        let pending = state.resources.iter().any(|(a, r)| {
            r.pending_create
                .as_ref()
                .is_some_and(|p| a == address || p.sent_address().as_deref() == Some(address))
        });
        match holder {
            None if pending && !converged => {}
            None => bad.push(format!("{id} (`{address}`) is live but not in the state")),
            Some(a) if converged && a != address => bad.push(format!(
                "{id} is recorded at `{a}` but tagged `{address}` (not retagged)"
            )),
            Some(_) => {}
        }
    }
    // Nothing declared destroyed.
    for (address, id) in &exp.kept {
        if !live_ids.contains(id.as_str()) {
            bad.push(format!(
                "{id} (`{address}`, declared and kept) was destroyed"
            ));
        }
        if converged && state.resources.get(address).and_then(|r| r.id.as_deref()) != Some(id) {
            bad.push(format!("`{address}` no longer records {id}"));
        }
    }
    // Network facts, when recorded, are the instance's own primary VNIC's; once converged, every
    // live instance has them.
    for (address, r) in &state.resources {
        let Some(id) = r.id.as_deref().filter(|id| live_ids.contains(id)) else {
            continue;
        };
        let vnic = worlds.iter().find_map(|w| {
            w.vnic_attachments
                .values()
                .find(|a| a["instanceId"] == id)
                .and_then(|a| w.vnics.get(a["vnicId"].as_str().unwrap_or("")))
        });
        match (&r.network, vnic) {
            (Some(n), Some(v)) => {
                if v["id"] != n.vnic_id.as_str()
                    || v["privateIp"].as_str() != n.private_ip.as_deref()
                    || v["publicIp"].as_str() != n.public_ip.as_deref()
                {
                    bad.push(format!(
                        "`{address}` records the network {n:?}, the emulator has {v}"
                    ));
                }
            }
            (Some(n), None) => bad.push(format!(
                "`{address}` records the network {n:?}, the emulator has no VNIC for {id}"
            )),
            (None, _) if converged && id.starts_with("ocid1.instance.") => {
                bad.push(format!("`{address}` ({id}) has no network facts"))
            }
            (None, _) => {}
        }
    }
    if converged {
        for (address, r) in &state.resources {
            if !r.deposed.is_empty() || r.pending_create.is_some() {
                bad.push(format!(
                    "`{address}` still has deposed objects or a pending create"
                ));
            }
            if r.id.as_deref().is_some_and(|id| !live_ids.contains(id)) {
                bad.push(format!("`{address}` records {:?}, which is not live", r.id));
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("\n  "))
    }
}

struct Scenario {
    project: support::Project,
    /// The suite's own client, for its setup (image files, the newer image); each kiln run gets
    /// a fresh one ([`Scenario::clients`]).
    client: Client,
    key: kiln::oci::keys::SigningKey,
    /// The state on Object Storage (in the emulator, so rewinding the cloud rewinds it too)
    /// rather than in a local file.
    remote: bool,
    state_dir: tempfile::TempDir,
    v1_world: World,
    v1_state: Vec<u8>,
    expect: Expect,
}

impl Scenario {
    fn state_path(&self) -> PathBuf {
        self.state_dir.path().join("default.json")
    }

    /// The clients of a new kiln process: fresh, as every run of the CLI builds its own. A
    /// client carries adaptive rate budgets ([`kiln::oci::budget`]); shared across the sweep's
    /// runs, the 429s injected into one paced every later run (the suite's wall time grew from
    /// minutes to ~25 minutes while its CPU time stayed under 5 minutes).
    fn clients(&self) -> Clients {
        Clients::single(
            "us-ashburn-1",
            support::client_with(&self.project.emu, self.key.clone()),
        )
    }

    /// The store, as a new kiln process would open it.
    fn store(&self) -> StateStore {
        if self.remote {
            let os = kiln::oci::object_storage::ObjectStorage::new(support::client_with(
                &self.project.emu,
                self.key.clone(),
            ));
            let f = self.project.emu.fixtures();
            // No lease renewal falls inside a run (it would be a crossing of its own, at a
            // time that varies): renewals every hour.
            StateStore::Remote(
                kiln::state::RemoteStore::new(os, &f.namespace, &f.bucket, "faults/", "default")
                    .with_lease(kiln::state::remote::Lease {
                        length: Duration::from_secs(4 * 3600),
                        renew_every: Duration::from_secs(3600),
                    }),
            )
        } else {
            StateStore::local(self.project.path(), Some(self.state_dir.path()), "default").unwrap()
        }
    }

    fn write(&self, v2: bool, edited: bool) {
        self.project.write(&manifest(&self.project, v2, edited));
    }

    /// Back to the applied v1: the cloud, the state (and no lock left).
    fn rewind(&self) {
        self.project.emu.restore(self.v1_world.clone());
        if !self.remote {
            for leftover in [
                "default.json.backup",
                "default.json.lock",
                "default.json.journal",
            ] {
                let _ = std::fs::remove_file(self.state_dir.path().join(leftover));
            }
            std::fs::write(self.state_path(), &self.v1_state).unwrap();
        }
        self.write(true, false);
    }

    /// The state as stored (through kiln's own loader: it must accept it).
    async fn state(&self) -> Result<State, String> {
        self.store()
            .load()
            .await
            .map_err(|e| format!("{:?}", miette::Report::new(e)))?
            .ok_or_else(|| "the state is gone".to_string())
    }
}

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

async fn setup(remote: bool) -> Scenario {
    let key = fast_key();
    let config = kiln::emulator::EmulatorConfig {
        trusted_keys: vec![kiln::emulator::TrustedKey {
            key_id: key.key_id.clone(),
            public_key: key.key.to_public_key(),
        }],
        time_scale: 0.0,
        ..kiln::emulator::EmulatorConfig::default()
    };
    let project = support::Project::new(config).await;
    let client = support::client_with(&project.emu, key.clone());
    // The image files the manifests import (the emulator imports only objects that exist).
    for base in ["base-v1", "base-v2"] {
        support::put_image_file(&project.emu, &client, &format!("{base}.qcow2")).await;
    }
    let state_dir = match tempfile::tempdir_in("/dev/shm") {
        Ok(d) => d,
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let mut s = Scenario {
        project,
        client,
        key,
        remote,
        state_dir,
        v1_world: World::default(),
        v1_state: Vec::new(),
        expect: Expect {
            declared: BTreeMap::new(),
            kept: BTreeMap::new(),
        },
    };
    s.write(false, false);
    let r = apply(s.project.path(), &s.store(), &s.clients())
        .await
        .unwrap();
    assert!(r.ok(), "v1 applies: {}", report_errors(&r));
    s.v1_world = s.project.emu.snapshot();
    if !remote {
        s.v1_state = std::fs::read(s.state_path()).unwrap();
    }
    s.write(true, false);
    let v2: BTreeSet<String> = kiln::manifest::load(s.project.path(), None)
        .unwrap()
        .resources()
        .map(|a| a.to_string())
        .collect();
    s.expect = expect(&s.state().await.unwrap(), &v2);
    s
}

/// The reference run: every crossing of every boundary, in order.
async fn reference(s: &Scenario) -> Vec<&'static str> {
    s.rewind();
    let log: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let _scenario = fail::FailScenario::setup();
    for point in failpoint::POINTS.iter().chain([&LAUNCH]) {
        let log = log.clone();
        fail::cfg_callback(*point, move || log.lock().unwrap().push(point)).unwrap();
    }
    let r = apply(s.project.path(), &s.store(), &s.clients())
        .await
        .unwrap();
    for point in failpoint::POINTS.iter().chain([&LAUNCH]) {
        fail::remove(point);
    }
    assert!(r.ok(), "the reference apply: {}", report_errors(&r));
    let crossings = log.lock().unwrap().clone();
    crossings
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

/// One run: the fault at crossing `k` (the `j`-th crossing of `point`), then convergence.
async fn run_one(
    s: &Scenario,
    point: &'static str,
    j: usize,
    class: Class,
    edit: bool,
) -> Result<(), String> {
    s.rewind();
    let last_serial = s.state().await?.serial;
    {
        let _scenario = fail::FailScenario::setup();
        faulted_apply(s.project.path(), &s.store(), &s.clients(), point, j, class).await?;
    }
    // A lock is left only by a kiln that died (or failed to release it); its user then runs
    // `kiln force-unlock`, as the lock error says.
    let store = s.store();
    let left = store.lock_holder().await.map_err(|e| e.to_string())?;
    if left.is_some() {
        let dead = matches!(class, Class::One(Fault::Abort) | Class::CapacityThenAbort)
            || point == failpoint::STATE_UNLOCK;
        if !dead && s.remote {
            return Err(format!("the lock was left behind: {left:?}"));
        }
        if s.remote {
            // Its lease is fresh: `force-unlock` refuses until it runs out (the clock moved past
            // it), then removes it as lapsed.
            match store.force_unlock(None, false).await {
                Err(kiln::state::StateError::LeaseHeld { .. }) => {}
                other => return Err(format!("a dead kiln's fresh lease: {other:?}")),
            }
            let StateStore::Remote(r) = store else {
                unreachable!()
            };
            let later =
                kiln::state::remote::Clock::new(|| chrono::Utc::now() + chrono::Duration::hours(5));
            let removed = StateStore::Remote(r.with_clock(later))
                .force_unlock(None, false)
                .await
                .map_err(|e| e.to_string())?;
            if removed.is_none_or(|u| u.stopped_renewing.is_none()) {
                return Err("the lapsed lock was not reported as lapsed".into());
            }
        }
    }
    let st = s.state().await?;
    invariants(
        &[s.project.emu.snapshot()],
        &st,
        &s.expect,
        last_serial,
        false,
    )
    .map_err(|v| format!("after the faulted apply:\n  {v}"))?;
    if edit {
        s.write(true, true);
        import_newer_image(s).await;
    }
    converge(s, st.serial).await
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

/// The next apply after a fault: it succeeds, keeps the invariants (the serial grows from
/// `since`) and leaves an empty plan.
async fn converge(s: &Scenario, since: u64) -> Result<(), String> {
    let again = apply(s.project.path(), &s.store(), &s.clients()).await?;
    if !again.ok() {
        return Err(format!("the next apply failed:\n{}", report_errors(&again)));
    }
    let st2 = s.state().await?;
    invariants(&[s.project.emu.snapshot()], &st2, &s.expect, since, true)
        .map_err(|v| format!("after the next apply:\n  {v}"))?;
    let p = plan(s.project.path(), &s.store(), &s.clients()).await?;
    final_plan_is_empty(&p)
}

/// The plan after convergence changes, forgets and reads nothing, and sees no drift.
fn final_plan_is_empty(p: &kiln::plan::Plan) -> Result<(), String> {
    if !p.changes.is_empty()
        || !p.drift.is_empty()
        || !p.forget.is_empty()
        || !p.forget_deposed.is_empty()
        || !p.read_network.is_empty()
    {
        return Err(format!(
            "the final plan is not empty:\n{}",
            kiln::plan::render::text(p, kiln::plan::render::Style::default())
        ));
    }
    Ok(())
}

/// A newer "Oracle Linux 9" image, so `image_lookup`s resolve differently on the next apply.
async fn import_newer_image(s: &Scenario) {
    let uri = support::put_image_file(&s.project.emu, &s.client, "ol9-newer.qcow2").await;
    let details: kiln::oci::models::CreateImageDetails =
        serde_json::from_value(serde_json::json!({
            "compartmentId": COMPARTMENT,
            "displayName": NEWER_IMAGE,
            "imageSourceDetails": {
                "sourceType": "objectStorageUri",
                "sourceUri": uri,
                "operatingSystem": "Oracle Linux",
                "operatingSystemVersion": "9"
            }
        }))
        .unwrap();
    s.client
        .create_image(&details, &Default::default())
        .await
        .expect("the newer image is imported");
}

/// Fault every crossing (or, with `sample`, every crossing `k` with `k % n == r`) in each
/// applicable way; returns the (point, fault) counts and the failures.
async fn sweep(
    s: &Scenario,
    seed: u64,
    all: bool,
    sample: Option<(usize, usize)>,
) -> (BTreeMap<(&'static str, String), usize>, Vec<String>) {
    let crossings = reference(s).await;
    let points: BTreeSet<&str> = crossings.iter().copied().collect();
    let backend = if s.remote {
        "remote state"
    } else {
        "local state"
    };
    println!(
        "fault suite ({backend}): seed {seed}{}; {} crossings of {} boundaries in the reference apply{}",
        if all { " (KILN_FAULTS=all)" } else { "" },
        crossings.len(),
        points.len(),
        match sample {
            Some((n, _)) => format!("; one crossing in {n}, picked by the seed"),
            None => String::new(),
        }
    );
    let only: Option<usize> = std::env::var("KILN_FAULT_CROSSING")
        .ok()
        .and_then(|k| k.parse().ok());
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut pairs: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut runs = 0;
    for (k, point) in crossings.iter().copied().enumerate() {
        let j = *seen.entry(point).and_modify(|n| *n += 1).or_insert(0);
        let picked = |(n, r): (usize, usize)| {
            // Scattered, not periodic: crossings repeat in patterns a `k % n` would alias with.
            let h = (k as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
            h as usize % n == r
        };
        if only.is_some_and(|o| o != k) || sample.is_some_and(|s| !picked(s)) {
            continue;
        }
        for fault in faults(point, k, seed, all) {
            let edit = (k + runs) % 4 == 1;
            runs += 1;
            *pairs.entry((point, fault.arg())).or_default() += 1;
            let t = std::time::Instant::now();
            let result = run_one(s, point, j, fault, edit).await;
            let what = format!(
                "fault {}{}",
                fault.arg(),
                if edit { ", edited manifest" } else { "" }
            );
            tally(
                &mut failures,
                (backend, seed),
                (k, point, j),
                &what,
                result,
                t,
            );
            if failures.len() >= 5 {
                return (pairs, failures);
            }
        }
    }
    let summary: Vec<String> = pairs
        .iter()
        .map(|((p, f), n)| format!("{p}×{f}: {n}"))
        .collect();
    println!(
        "fault suite ({backend}): {runs} (crossing, fault) pairs checked — {}",
        summary.join(", ")
    );
    (pairs, failures)
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
