//! Deterministic simulation: seeded random histories of whole estates, checked after every step.
//!
//! The fault-enumeration suite (`tests/faults.rs`) proves every boundary of fixed scenarios one
//! crash deep. Real estates live through long histories instead — edits, rebuilds, resizes,
//! renames, out-of-band changes, crashes and retries in any order — and reach states no fixed
//! scenario does: a crash, then the fleet shrunk, a key renamed, the region changed, the clock
//! moved past the retry token's window, a second kiln forced out. Here a generator draws such
//! histories from a seed (FoundationDB's and TigerBeetle's way) and runs them through
//! `kiln::ops` — the flows the CLI runs — against in-process emulators of two regions at time
//! scale 0, with parallelism 1 so that a history replays exactly.
//!
//! A step is one of: a manifest edit (add, remove, resize, rename with `[[moved]]` — a member or
//! the whole fleet —, retag, reshape, power state, compartment, region, `enabled`, the golden image
//! pipeline added or removed, an image rebuild), an apply (with or without one fault injected at
//! a failpoint: abort, lost answer, an error status, "Out of host capacity.", an I/O error), a
//! plan, an out-of-band change
//! through the emulator (tags, a stop, a termination), a second kiln holding the lock (refused, or
//! forced out), or the clocks moved past the 24-hour retry-token window. Every history ends with an
//! apply that must converge and a destroy that must leave nothing.
//!
//! After every step [`Sim::check`] holds kiln to the invariants of DEVELOPERS.md against the
//! emulators' own records, not kiln's state: the state loads and its serial never goes back; no
//! live resource kiln made is missing from the state (its object, a deposed one, or a pending
//! create's); nothing declared and kept by the plan was destroyed; after an apply without a fault:
//! it succeeded, nothing is pending or deposed, and the next plan is empty.
//!
//! A failing history prints its seed and the shortest history that still fails (shrunk by
//! dropping steps); `KILN_SIM_SEED=S KILN_SIM_STEPS=N cargo test --test sim` replays one seed and
//! `KILN_SIM_HISTORY='[...]'` one printed history. `KILN_SIM_HISTORIES=H` sets how many seeds the
//! main test runs (each `KILN_SIM_STEPS` long); it always adds one fresh seed, printed, and its
//! summary counts the faults that fired per class. A second test turns on
//! `failpoint::SKIP_PENDING_SAVE` (a deliberately broken kiln) and requires that the same budget
//! catches it and shrinks it.

// Tests print their own logs (the printing door is the CLI's).
#![allow(clippy::disallowed_macros)]

#[path = "it/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use kiln::apply::execute::Timeouts;
use kiln::apply::progress::Progress;
use kiln::apply::walk::StopFlag;
use kiln::emulator::{EmulatorConfig, RunningEmulator, TrustedKey, World};
use kiln::failpoint::{self, Fault};
use kiln::oci::models::{InstanceAction, UpdateInstanceDetails};
use kiln::oci::{Client, Clients, MutationOptions};
use kiln::ops::apply::{ApplyRequest, Kind};
use kiln::ops::plan::PlanRequest;
use kiln::ops::{self, Session};
use kiln::plan::{Action, Plan};
use kiln::state::{LockInfo, State, StateStore};

const REGIONS: [&str; 2] = ["us-ashburn-1", "us-phoenix-1"];
const STATUSES: [u16; 5] = [401, 404, 409, 429, 500];
/// The failpoint registry is global: one history at a time in this binary.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Every apply turns on `failpoint::SKIP_PENDING_SAVE` (a deliberately broken kiln).
static BROKEN: AtomicBool = AtomicBool::new(false);
/// Faults that fired (not merely configured), by class, since the last [`Tally::reset`].
static FIRED: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
/// The CI budget: fixed seeds 1..=HISTORIES, each STEPS long, plus one fresh seed.
const HISTORIES: u64 = 50;
const STEPS: u64 = 40;

/// One step of a history. Picks (`pick`) choose among what exists when the step runs (modulo
/// its count), so a history with steps removed still means something.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Step {
    AddFleet { region: u8, keyed: bool, size: u8 },
    RemoveFleet { pick: u32 },
    Resize { pick: u32, size: u8 },
    RenameMember { pick: u32 },
    RenameFleet { pick: u32 },
    Retag { pick: u32 },
    Reshape { pick: u32 },
    Power { pick: u32 },
    Compartment { pick: u32 },
    Region { pick: u32 },
    Enable { pick: u32 },
    Pipeline,
    Rebuild,
    Apply { fault: Option<Injected> },
    Plan,
    OutOfBand { what: Oob, pick: u32 },
    SecondKiln { forced: bool },
    Age,
}

/// A fault at the `skip`-th next crossing of `point` (none if the apply crosses it fewer times).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Injected {
    point: String,
    skip: u32,
    fault: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Oob {
    Retag,
    Stop,
    Terminate,
}

#[derive(Clone, Debug)]
enum Members {
    Count(u8),
    Keys(Vec<String>),
}

#[derive(Clone, Debug)]
struct Fleet {
    name: String,
    region: usize,
    members: Members,
    tag: u32,
    ocpus: u32,
    stopped: bool,
    other_compartment: bool,
    enabled: bool,
    /// Launched from `image.golden` (region 0 only).
    from_image: bool,
}

/// What the manifest declares.
#[derive(Clone, Debug, Default)]
struct Model {
    fleets: Vec<Fleet>,
    /// `[[moved]]` renames not yet applied by a successful apply.
    moved: Vec<(String, String)>,
    /// The golden image pipeline: `Some(native launch mode)`.
    image: Option<bool>,
    /// Names are never reused (a `[[moved]]` source must not be declared again).
    next: u32,
}

impl Model {
    fn name(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn pick(&mut self, pick: u32) -> Option<&mut Fleet> {
        let n = self.fleets.len();
        (n > 0).then(|| &mut self.fleets[pick as usize % n])
    }

    /// The member addresses of a fleet.
    fn members(f: &Fleet) -> Vec<String> {
        match &f.members {
            Members::Count(n) => (0..*n)
                .map(|i| format!("instance.{}[{i}]", f.name))
                .collect(),
            Members::Keys(keys) => keys
                .iter()
                .map(|k| format!("instance.{}[\"{k}\"]", f.name))
                .collect(),
        }
    }

    /// Rename `from` to `to` with `[[moved]]` (a chain a → b → c is one move a → c).
    fn rename(&mut self, from: String, to: String) {
        match self.moved.iter_mut().find(|(_, t)| *t == from) {
            Some(m) => m.1 = to,
            None => self.moved.push((from, to)),
        }
    }

    /// Every address the manifest declares.
    fn declared(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .fleets
            .iter()
            .filter(|f| f.enabled)
            .flat_map(Model::members)
            .collect();
        if self.image.is_some() {
            out.extend(["instance.builder".to_string(), "image.golden".to_string()]);
        }
        out
    }

    /// The manifest's text (after the emulators' header). Renames whose target is no longer
    /// declared (the member was dropped since) are dropped with it, as a user would.
    fn toml(&mut self, fix: &[kiln::emulator::Fixtures; 2]) -> String {
        let declared = self.declared();
        self.moved
            .retain(|(from, to)| declared.contains(to) && !declared.contains(from));
        let mut m = String::new();
        if let Some(native) = self.image {
            let mode = if native { "NATIVE" } else { "PARAVIRTUALIZED" };
            m += &format!("[instance.builder]\nstate = \"STOPPED\"\n\n[image.golden]\nfrom_instance = \"instance.builder\"\nlaunch_mode = \"{mode}\"\n\n");
        }
        for f in &self.fleets {
            m += &format!("[instance.{}]\n", f.name);
            match &f.members {
                Members::Count(n) => m += &format!("count = {n}\n"),
                Members::Keys(k) => m += &format!("for_each = {k:?}\n"),
            }
            m += &format!(
                "freeform_tags = {{ t = \"{}\" }}\nshape_config = {{ ocpus = {}, memory_in_gbs = 16 }}\n",
                f.tag, f.ocpus
            );
            if f.stopped {
                m += "state = \"STOPPED\"\n";
            }
            if f.other_compartment {
                m += &format!("compartment = \"{}\"\n", support::OTHER_COMPARTMENT);
            }
            if !f.enabled {
                m += "enabled = false\n";
            }
            if f.region == 1 {
                let x = &fix[1];
                m += &format!(
                    "region = \"{}\"\navailability_domain = \"{}\"\nsubnet = \"{}\"\nsource = {{ image = \"{}\" }}\n",
                    REGIONS[1], x.availability_domains[0], x.public_subnet_id, x.platform_images[0].id
                );
            } else if f.from_image && self.image.is_some() {
                m += "source = { image = \"image.golden\" }\n";
            }
            m += "\n";
        }
        for (from, to) in &self.moved {
            m += &format!("[[moved]]\nfrom = '{from}'\nto = '{to}'\n\n");
        }
        m
    }
}

/// Draw the next step.
fn draw(rng: &mut StdRng, model: &Model) -> Step {
    let pick = rng.gen();
    let empty = model.fleets.is_empty();
    match rng.gen_range(0..100) {
        _ if empty && rng.gen_bool(0.7) => Step::AddFleet {
            region: rng.gen_range(0..2),
            keyed: rng.gen(),
            size: rng.gen_range(1..4),
        },
        0..=5 => Step::AddFleet {
            region: rng.gen_range(0..2),
            keyed: rng.gen(),
            size: rng.gen_range(1..4),
        },
        6..=8 => Step::RemoveFleet { pick },
        9..=14 => Step::Resize {
            pick,
            size: rng.gen_range(0..5),
        },
        15..=17 => Step::RenameMember { pick },
        18..=19 => Step::RenameFleet { pick },
        20..=23 => Step::Retag { pick },
        24..=25 => Step::Reshape { pick },
        26..=28 => Step::Power { pick },
        29..=30 => Step::Compartment { pick },
        31..=32 => Step::Region { pick },
        33..=34 => Step::Enable { pick },
        35..=36 => Step::Pipeline,
        37..=38 => Step::Rebuild,
        39..=59 => Step::Apply {
            fault: Some(inject(rng)),
        },
        60..=74 => Step::Apply { fault: None },
        75..=79 => Step::Plan,
        80..=89 => Step::OutOfBand {
            what: [Oob::Retag, Oob::Stop, Oob::Terminate][rng.gen_range(0..3)],
            pick,
        },
        90..=94 => Step::SecondKiln { forced: rng.gen() },
        _ => Step::Age,
    }
}

/// A fault to inject: launches and their answers most often (where "never twice" is won or
/// lost), then any boundary.
fn inject(rng: &mut StdRng) -> Injected {
    let point = match rng.gen_range(0..10) {
        0..=2 => format!("{}.LaunchInstance", failpoint::OCI_RESPONSE),
        3 => format!("{}.LaunchInstance", failpoint::OCI_REQUEST),
        _ => failpoint::POINTS[rng.gen_range(0..failpoint::POINTS.len())].to_string(),
    };
    let base = point.split('.').take(2).collect::<Vec<_>>().join(".");
    let fault = match rng.gen_range(0..3) {
        0 => Fault::Abort,
        // No host has room (what a launch alone is answered).
        _ if point.ends_with(".LaunchInstance") && base == failpoint::OCI_REQUEST => {
            Fault::Capacity
        }
        _ => match base.as_str() {
            failpoint::OCI_REQUEST => Fault::Status(STATUSES[rng.gen_range(0..STATUSES.len())]),
            failpoint::OCI_RESPONSE
            | failpoint::STATE_SAVED
            | failpoint::STATE_JOURNALED
            | failpoint::STATE_FOLDED => Fault::Lost,
            _ => Fault::Error,
        },
    };
    // Within what an apply crosses: a few launches, a few dozen requests, a save per change,
    // one load, lock and release (a skip beyond them injects nothing: "not reached").
    let skip = match point.as_str() {
        failpoint::OCI_REQUEST | failpoint::OCI_RESPONSE => rng.gen_range(0..12),
        failpoint::STATE_LOCK | failpoint::STATE_UNLOCK | failpoint::STATE_LOAD => 0,
        p if p.starts_with("state.") => rng.gen_range(0..4),
        _ => rng.gen_range(0..3),
    };
    Injected {
        point,
        skip,
        fault: fault.arg(),
    }
}

/// A history's world: two emulators, a manifest directory, a local state.
struct Sim {
    emus: Vec<RunningEmulator>,
    clients: Clients,
    client: [Client; 2],
    fixtures: [kiln::emulator::Fixtures; 2],
    dir: tempfile::TempDir,
    state_dir: tempfile::TempDir,
    model: Model,
    last_serial: u64,
    /// Resources the sim terminated itself (out of band).
    terminated: BTreeSet<String>,
}

/// A violated invariant (or an unexpected error), with where it happened.
#[derive(Debug)]
struct Violation {
    step: usize,
    what: String,
}

impl Sim {
    async fn new() -> Sim {
        let key = fast_key();
        let config = |region: &str| EmulatorConfig {
            region: region.into(),
            trusted_keys: vec![TrustedKey {
                key_id: key.key_id.clone(),
                public_key: key.key.to_public_key(),
            }],
            time_scale: 0.0,
            ..EmulatorConfig::default()
        };
        let mut emus = Vec::new();
        for r in REGIONS {
            emus.push(support::start(config(r)).await);
        }
        let client = [
            support::client_with(&emus[0], key.clone()),
            support::client_with(&emus[1], key.clone()),
        ];
        let mut clients = Clients::single(REGIONS[0], client[0].clone());
        clients.insert(REGIONS[1].to_string(), client[1].clone());
        let fixtures = [emus[0].fixtures(), emus[1].fixtures()];
        let state_dir =
            tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
        Sim {
            emus,
            clients,
            client,
            fixtures,
            dir: tempfile::tempdir().unwrap(),
            state_dir,
            model: Model::default(),
            last_serial: 0,
            terminated: BTreeSet::new(),
        }
    }

    fn store(&self) -> StateStore {
        StateStore::local(self.dir.path(), Some(self.state_dir.path()), "default").unwrap()
    }

    fn write(&mut self) {
        let fixtures = self.fixtures.clone();
        let f = &fixtures[0];
        let header = format!(
            "[defaults]\ncompartment = \"{}\"\navailability_domain = \"{}\"\nshape = \"VM.Standard.E4.Flex\"\nshape_config = {{ ocpus = 1, memory_in_gbs = 16 }}\nsubnet = \"{}\"\nsource = {{ image = \"{}\" }}\n\n",
            support::COMPARTMENT,
            f.availability_domains[0],
            f.public_subnet_id,
            f.platform_images[0].id
        );
        std::fs::write(
            self.dir.path().join("kiln.toml"),
            header + &self.model.toml(&fixtures),
        )
        .unwrap();
    }

    fn session(&self) -> Result<Session, String> {
        let m = kiln::manifest::load(self.dir.path(), None).map_err(|e| format!("{e:?}"))?;
        Ok(Session::from_parts(
            m,
            self.store(),
            self.clients.clone(),
            "emulator",
            1,
        ))
    }

    async fn state(&self) -> Result<Option<State>, String> {
        self.store().load().await.map_err(|e| format!("{e:?}"))
    }

    /// Live resources of both emulators: (id, kiln-address tag).
    fn live(&self) -> Vec<(String, Option<String>)> {
        let gone = ["TERMINATING", "TERMINATED", "DELETED"];
        self.emus
            .iter()
            .flat_map(|e| {
                let w: World = e.snapshot();
                w.instances
                    .values()
                    .chain(w.images.values())
                    .filter(|r| !gone.contains(&r.state()))
                    .filter(|r| r.body.get("compartmentId").is_some_and(|c| !c.is_null()))
                    .map(|r| {
                        (
                            r.id().to_string(),
                            r.body["freeformTags"]["kiln-address"]
                                .as_str()
                                .map(str::to_string),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Run one step; `Err` is a violated invariant.
    async fn step(&mut self, step: &Step) -> Result<(), String> {
        match step.clone() {
            Step::AddFleet {
                region,
                keyed,
                size,
            } => {
                let name = self.model.name("f");
                let members = if keyed {
                    Members::Keys((0..size).map(|i| format!("k{i}")).collect())
                } else {
                    Members::Count(size)
                };
                let from_image = region == 0 && self.model.image.is_some() && size % 2 == 1;
                self.model.fleets.push(Fleet {
                    name,
                    region: region as usize,
                    members,
                    tag: 0,
                    ocpus: 1,
                    stopped: false,
                    other_compartment: false,
                    enabled: true,
                    from_image,
                });
            }
            Step::RemoveFleet { pick } => {
                if !self.model.fleets.is_empty() {
                    let n = self.model.fleets.len();
                    self.model.fleets.remove(pick as usize % n);
                }
            }
            Step::Resize { pick, size } => {
                if let Some(f) = self.model.pick(pick) {
                    f.members = match &f.members {
                        Members::Count(_) => Members::Count(size),
                        Members::Keys(k) => {
                            let mut k = k.clone();
                            k.truncate(size as usize);
                            let mut i = 0;
                            while k.len() < size as usize {
                                let key = format!("n{i}");
                                if !k.contains(&key) {
                                    k.push(key);
                                }
                                i += 1;
                            }
                            Members::Keys(k)
                        }
                    };
                }
            }
            Step::RenameMember { pick } => {
                let fresh = self.model.name("r");
                if let Some(f) = self.model.pick(pick) {
                    if let Members::Keys(k) = &mut f.members {
                        if let Some(first) = k.first_mut() {
                            let from = format!("instance.{}[\"{first}\"]", f.name);
                            *first = fresh;
                            let to = format!("instance.{}[\"{first}\"]", f.name);
                            self.model.rename(from, to);
                        }
                    }
                }
            }
            Step::RenameFleet { pick } => {
                let fresh = self.model.name("f");
                if let Some(f) = self.model.pick(pick) {
                    let old = Model::members(f);
                    f.name = fresh;
                    let new = Model::members(f);
                    let moves: Vec<_> = old.into_iter().zip(new).collect();
                    for (from, to) in moves {
                        self.model.rename(from, to);
                    }
                }
            }
            Step::Retag { pick } => {
                if let Some(f) = self.model.pick(pick) {
                    f.tag += 1;
                }
            }
            Step::Reshape { pick } => {
                if let Some(f) = self.model.pick(pick) {
                    f.ocpus = 3 - f.ocpus;
                }
            }
            Step::Power { pick } => {
                if let Some(f) = self.model.pick(pick) {
                    f.stopped = !f.stopped;
                }
            }
            Step::Compartment { pick } => {
                if let Some(f) = self.model.pick(pick) {
                    f.other_compartment = !f.other_compartment;
                }
            }
            Step::Region { pick } => {
                if let Some(f) = self.model.pick(pick) {
                    f.region = 1 - f.region;
                    f.from_image = false;
                }
            }
            Step::Enable { pick } => {
                if let Some(f) = self.model.pick(pick) {
                    f.enabled = !f.enabled;
                }
            }
            Step::Pipeline => {
                self.model.image = match self.model.image {
                    Some(_) => None,
                    None => Some(false),
                };
            }
            Step::Rebuild => {
                if let Some(native) = self.model.image.as_mut() {
                    *native = !*native;
                }
            }
            Step::Apply { fault } => return self.apply(fault.as_ref()).await,
            Step::Plan => {
                self.write();
                let s = self.session()?;
                ops::plan::plan(&s, &PlanRequest::default())
                    .await
                    .map_err(|e| format!("a plan failed: {e:?}"))?;
            }
            Step::OutOfBand { what, pick } => self.out_of_band(what, pick).await?,
            Step::SecondKiln { forced } => self.second_kiln(forced).await?,
            Step::Age => self.age().await?,
        }
        self.check(false).await
    }

    /// An apply, with `fault` injected; then the invariants (and, without a fault, convergence).
    async fn apply(&mut self, fault: Option<&Injected>) -> Result<(), String> {
        self.write();
        let s = self.session()?;
        // What is declared and live now, by OCID: only a planned replace or destroy may end it.
        let declared: BTreeSet<String> = s.manifest.resources().map(|a| a.to_string()).collect();
        let renames: BTreeMap<&str, &str> = self
            .model
            .moved
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let live: BTreeSet<String> = self.live().into_iter().map(|(id, _)| id).collect();
        let kept: BTreeMap<String, String> = match self.state().await? {
            Some(st) => st
                .resources
                .iter()
                .filter_map(|(a, r)| {
                    let mut now = a.as_str();
                    while let Some(next) = renames.get(now) {
                        now = next;
                    }
                    let id = r.id.clone()?;
                    (declared.contains(now) && live.contains(&id)).then(|| (id, now.to_string()))
                })
                .collect(),
            None => BTreeMap::new(),
        };
        let req = ApplyRequest {
            lock_timeout: Duration::ZERO,
            timeouts: Timeouts {
                instance: Duration::from_secs(30),
                image: Duration::from_secs(30),
                terminate: Duration::from_secs(30),
                work_request: Duration::from_secs(30),
            },
            ..ApplyRequest::new(Kind::Apply)
        };
        let outcome = {
            let scenario =
                (fault.is_some() || BROKEN.load(Ordering::SeqCst)).then(fail::FailScenario::setup);
            if let Some(f) = fault {
                let action = match f.skip {
                    0 => format!("1*return({})", f.fault),
                    k => format!("{k}*off->1*return({})", f.fault),
                };
                fail::cfg(&f.point, &action).unwrap();
            }
            if BROKEN.load(Ordering::SeqCst) {
                fail::cfg(failpoint::SKIP_PENDING_SAVE, "return").unwrap();
            }
            let r = tokio::time::timeout(
                Duration::from_secs(120),
                ops::apply::apply_approved(&s, &req, &StopFlag::new(), Arc::new(Progress::Silent)),
            )
            .await
            .map_err(|_| "the apply hung".to_string())?;
            failpoint::revive();
            if let Some(f) = fault {
                // Fired unless the fault is still to come in the registry.
                let unfired = (0..=f.skip).any(|_| fail::eval(&f.point, |_| ()).is_some());
                Tally::count(if unfired { "not reached" } else { &f.fault });
            }
            drop(scenario);
            r
        };
        drop(s);
        // A planned replace or destroy names the OCID it ends.
        let planned: BTreeSet<String> = match &outcome {
            Ok(a) => ended_by(&a.plan),
            Err(_) => BTreeSet::new(),
        };
        let now_live: BTreeSet<String> = self.live().into_iter().map(|(id, _)| id).collect();
        for (id, address) in &kept {
            if !planned.contains(id) && !now_live.contains(id) {
                return Err(format!(
                    "{id} (`{address}`, declared and not planned for replacement or destruction) was destroyed"
                ));
            }
        }
        match (fault, outcome) {
            (Some(_), _) => self.check(false).await,
            (None, Err(e)) => Err(format!("an apply without a fault failed: {e}")),
            (None, Ok(a)) => {
                let report = a.report.unwrap_or_default();
                if !report.ok() {
                    let errors: Vec<String> = report
                        .failed
                        .iter()
                        .map(|(l, e)| format!("{l}: {e}"))
                        .collect();
                    return Err(format!(
                        "an apply without a fault failed:\n    {}",
                        errors.join("\n    ")
                    ));
                }
                self.model.moved.clear();
                if !report.behind.is_empty() {
                    // A resumed create was made as first requested and the manifest has moved
                    // on (the report says so and asks for another apply): that apply converges.
                    self.check(false).await?;
                    return Box::pin(self.apply(None)).await;
                }
                self.check(true).await
            }
        }
    }

    /// Every invariant, against the emulators' records. `converged`: after a successful apply
    /// without a fault — nothing pending or deposed, everything live recorded by id, and the next
    /// plan empty.
    async fn check(&mut self, converged: bool) -> Result<(), String> {
        let st = self
            .state()
            .await
            .map_err(|e| format!("kiln refuses its own state: {e}"))?
            .unwrap_or_default();
        if st.serial < self.last_serial {
            return Err(format!(
                "the serial went back from {} to {}",
                self.last_serial, st.serial
            ));
        }
        self.last_serial = st.serial;
        let mut bad = Vec::new();
        // Never lost: every live resource kiln made is recorded (its object, a deposed one, or
        // what a pending create made), and each record accounts for one live resource at most.
        let mut by_id: BTreeMap<&str, &str> = BTreeMap::new();
        for (a, r) in &st.resources {
            for id in r.ids() {
                by_id.insert(id, a);
            }
        }
        let mut unmatched: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, tag) in self.live() {
            if by_id.contains_key(id.as_str()) {
                continue;
            }
            match tag {
                Some(t) => unmatched.entry(t).or_default().push(id),
                None => bad.push(format!("{id} is live without a kiln-address tag")),
            }
        }
        for (address, ids) in &unmatched {
            let pending = st
                .resources
                .iter()
                .filter(|(a, r)| {
                    r.pending_create.is_some()
                        && (*a == address || pending_address(r).as_ref() == Some(address))
                })
                .count();
            let allowed = if converged { 0 } else { pending };
            if ids.len() > allowed {
                bad.push(format!(
                    "`{address}`: {} live and not in the state ({})",
                    ids.join(", "),
                    if converged {
                        "after a successful apply"
                    } else {
                        "more than its pending creates"
                    }
                ));
            }
        }
        if converged {
            let live: BTreeSet<String> = self.live().into_iter().map(|(id, _)| id).collect();
            for (a, r) in &st.resources {
                if r.pending_create.is_some() || !r.deposed.is_empty() {
                    bad.push(format!(
                        "`{a}` still has a pending create or deposed objects"
                    ));
                }
                if let Some(id) = r.id.as_deref().filter(|id| !live.contains(*id)) {
                    bad.push(format!("`{a}` records {id}, which is not live"));
                }
            }
            let s = self.session()?;
            let plan = ops::plan::plan(&s, &PlanRequest::default())
                .await
                .map_err(|e| format!("the plan after a successful apply failed: {e:?}"))?
                .plan;
            if !plan.is_empty() {
                bad.push(format!(
                    "the plan after a successful apply is not empty:\n{}",
                    kiln::plan::render::text(&plan, kiln::plan::render::Style::default())
                ));
            }
        }
        match bad.is_empty() {
            true => Ok(()),
            false => Err(bad.join("\n  ")),
        }
    }

    async fn out_of_band(&mut self, what: Oob, pick: u32) -> Result<(), String> {
        let Some(st) = self.state().await? else {
            return Ok(());
        };
        let ids: Vec<String> = st
            .resources
            .values()
            .filter_map(|r| r.id.clone())
            .filter(|id| id.starts_with("ocid1.instance."))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let id = &ids[pick as usize % ids.len()];
        let c = &self.client[usize::from(id.contains(".phx."))];
        let Ok(got) = c.get_instance(id).await else {
            return Ok(());
        };
        if matches!(
            got.body.lifecycle_state.as_str(),
            "TERMINATED" | "TERMINATING"
        ) {
            return Ok(());
        }
        let opts = MutationOptions::if_match(got.etag.as_deref());
        // Refusals (a state that does not allow it) are OCI's to make; the sim goes on.
        let _ = match what {
            Oob::Retag => {
                let mut tags = got.body.freeform_tags.clone();
                tags.insert("t".into(), "changed-outside".into());
                let details = UpdateInstanceDetails {
                    freeform_tags: Some(tags),
                    ..Default::default()
                };
                c.update_instance(id, &details, &opts).await.map(|_| ())
            }
            Oob::Stop => c
                .instance_action(id, InstanceAction::Stop, None, &opts)
                .await
                .map(|_| ()),
            Oob::Terminate => {
                self.terminated.insert(id.clone());
                c.terminate_instance(id, None, None, &opts)
                    .await
                    .map(|_| ())
            }
        };
        Ok(())
    }

    /// A second kiln holds the lock: an apply must refuse and change nothing; or (`forced`) the
    /// user forces the holder out and applies.
    async fn second_kiln(&mut self, forced: bool) -> Result<(), String> {
        self.write();
        let other = self.store();
        let Ok(held) = other
            .lock(LockInfo::new("second kiln"), Duration::ZERO)
            .await
        else {
            return Err("the lock was left held".into());
        };
        if forced {
            let open = ops::Open {
                state_dir: Some(self.state_dir.path().to_path_buf()),
                ..ops::Open::default()
            };
            let stores = ops::state::Stores::open(self.dir.path(), &open)
                .await
                .map_err(|e| format!("{e:?}"))?;
            ops::state::force_unlock(&stores, None, true)
                .await
                .map_err(|e| format!("force-unlock failed: {e:?}"))?;
            let r = self.apply(None).await;
            drop(held);
            return r;
        }
        let live_before = self.live();
        let s = self.session()?;
        let r = ops::apply::apply_approved(
            &s,
            &ApplyRequest::new(Kind::Apply),
            &StopFlag::new(),
            Arc::new(Progress::Silent),
        )
        .await;
        drop(held);
        if r.is_ok() {
            return Err("an apply ran while another kiln held the lock".into());
        }
        if self.live() != live_before {
            return Err("an apply refused the lock but changed OCI".into());
        }
        Ok(())
    }

    /// The clocks move past the 24-hour retry-token window: OCI forgets the tokens, and every
    /// pending create is as old as that.
    async fn age(&mut self) -> Result<(), String> {
        let day = chrono::Duration::hours(25);
        for emu in &self.emus {
            let mut w = emu.snapshot();
            for r in w.retry_tokens.values_mut() {
                r.at -= day;
            }
            emu.restore(w);
        }
        let Some(mut st) = self.state().await? else {
            return Ok(());
        };
        if !st.resources.values().any(|r| r.pending_create.is_some()) {
            return Ok(());
        }
        for r in st.resources.values_mut() {
            if let Some(p) = r.pending_create.as_mut() {
                p.started_at -= day;
            }
        }
        let path = self.state_dir.path().join("default.json");
        let _ = std::fs::remove_file(path.with_extension("json.journal"));
        std::fs::write(&path, serde_json::to_vec(&st).unwrap()).map_err(|e| e.to_string())
    }

    /// The end of every history: an apply that converges, then a destroy that leaves nothing.
    async fn finish(&mut self) -> Result<(), String> {
        self.apply(None).await?;
        let s = self.session()?;
        let d = ops::apply::apply_approved(
            &s,
            &ApplyRequest::new(Kind::Destroy),
            &StopFlag::new(),
            Arc::new(Progress::Silent),
        )
        .await
        .map_err(|e| format!("destroy failed: {e:?}"))?;
        if let Some(r) = d.report.filter(|r| !r.ok()) {
            return Err(format!("destroy failed: {:?}", r.failed));
        }
        let left: Vec<String> = self
            .live()
            .into_iter()
            .filter(|(_, tag)| tag.is_some())
            .map(|(id, tag)| format!("{id} (`{}`)", tag.unwrap_or_default()))
            .collect();
        if !left.is_empty() {
            return Err(format!("destroy left {}", left.join(", ")));
        }
        Ok(())
    }
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

/// The OCIDs a plan replaces or destroys.
fn ended_by(plan: &Plan) -> BTreeSet<String> {
    plan.changes
        .iter()
        .filter(|c| matches!(c.action, Action::Replace | Action::Delete))
        .filter_map(|c| c.id.clone())
        .collect()
}

/// The address a pending create was sent under, when the state records it.
fn pending_address(r: &kiln::state::ResourceState) -> Option<String> {
    let v = serde_json::to_value(r.pending_create.as_ref()?).ok()?;
    v.get("address")?.as_str().map(str::to_string)
}

/// Run `history` on a fresh world; the first violation stops it.
async fn run(history: &[Step]) -> Result<(), Violation> {
    let mut sim = Sim::new().await;
    for (i, step) in history.iter().enumerate() {
        sim.step(step)
            .await
            .map_err(|what| Violation { step: i, what })?;
    }
    sim.finish().await.map_err(|what| Violation {
        step: history.len(),
        what,
    })
}

/// The history of `seed`, `steps` long (the model is replayed to draw each step).
fn history(seed: u64, steps: usize) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut out = Vec::new();
    for _ in 0..steps {
        let s = draw(&mut rng, &model);
        // Keep the drawing model's fleet count in step (edits only; apply outcomes do not
        // change what is declared).
        match &s {
            Step::AddFleet {
                region,
                keyed,
                size,
            } => model.fleets.push(Fleet {
                name: String::new(),
                region: *region as usize,
                members: if *keyed {
                    Members::Keys(vec![String::new(); *size as usize])
                } else {
                    Members::Count(*size)
                },
                tag: 0,
                ocpus: 1,
                stopped: false,
                other_compartment: false,
                enabled: true,
                from_image: false,
            }),
            Step::RemoveFleet { pick } if !model.fleets.is_empty() => {
                let n = model.fleets.len();
                model.fleets.remove(*pick as usize % n);
            }
            _ => {}
        }
        out.push(s);
    }
    out
}

/// The shortest history (by dropping steps) that still fails, within a time budget.
async fn shrink(mut failing: Vec<Step>, budget: Duration) -> Vec<Step> {
    let start = Instant::now();
    // Everything after the failing step goes at once.
    if let Err(v) = run(&failing).await {
        failing.truncate((v.step + 1).min(failing.len()));
    }
    let mut i = failing.len();
    while i > 0 && start.elapsed() < budget {
        i -= 1;
        let mut candidate = failing.clone();
        candidate.remove(i);
        if run(&candidate).await.is_err() {
            failing = candidate;
        }
    }
    failing
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Counters over a run of the simulation.
struct Tally;

impl Tally {
    fn reset() {
        FIRED.lock().unwrap().clear();
    }

    fn count(class: &str) {
        *FIRED.lock().unwrap().entry(class.to_string()).or_default() += 1;
    }

    /// `abort 12, lost 30, …` (and how many drawn faults the apply never reached).
    fn line() -> String {
        let fired = FIRED.lock().unwrap();
        let mut parts: Vec<String> = fired
            .iter()
            .filter(|(k, _)| *k != "not reached")
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        parts.push(format!(
            "not reached {}",
            fired.get("not reached").copied().unwrap_or(0)
        ));
        parts.join(", ")
    }
}

/// A violation the simulation found: where, and the shortest history that still fails.
struct Found {
    seed: u64,
    steps: usize,
    violation: Violation,
    shrunk: Vec<Step>,
    /// How the shrunk history fails (none if it no longer does: the shrink ran out of time).
    last: Option<Violation>,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (seed, steps) = (self.seed, self.steps);
        write!(
            f,
            "the simulation found a violation: seed {seed}, step {} of {steps}:\n  {}\n\nshortest failing history ({} steps{}):\n{}\n\nreplay: KILN_SIM_SEED={seed} KILN_SIM_STEPS={steps} cargo test --test sim\n   or: KILN_SIM_HISTORY='{}' cargo test --test sim",
            self.violation.step,
            self.violation.what,
            self.shrunk.len(),
            self.last.as_ref().map(|l| format!(", fails at step {}: {}", l.step, l.what)).unwrap_or_default(),
            self.shrunk.iter().enumerate().map(|(i, s)| format!("  {i}: {s:?}")).collect::<Vec<_>>().join("\n"),
            serde_json::to_string(&self.shrunk).unwrap(),
        )
    }
}

/// Run the seeds, counting steps; the first violation is shrunk (within `shrink_budget`).
async fn explore(
    seeds: &[u64],
    steps: usize,
    shrink_budget: Duration,
) -> Result<usize, Box<Found>> {
    let mut total = 0;
    for &seed in seeds {
        let h = history(seed, steps);
        total += h.len() + 1;
        if let Err(violation) = run(&h).await {
            let shrunk = shrink(h, shrink_budget).await;
            let last = run(&shrunk).await.err();
            return Err(Box::new(Found {
                seed,
                steps,
                violation,
                shrunk,
                last,
            }));
        }
    }
    Ok(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_histories_keep_every_invariant() {
    let _one = ONE_AT_A_TIME.lock().await;
    if let Ok(h) = std::env::var("KILN_SIM_HISTORY") {
        let history: Vec<Step> =
            serde_json::from_str(&h).expect("KILN_SIM_HISTORY: a JSON list of steps");
        if let Err(v) = run(&history).await {
            panic!("step {}: {}", v.step, v.what);
        }
        return;
    }
    let steps = env_u64("KILN_SIM_STEPS").unwrap_or(STEPS) as usize;
    let (seeds, named) = match env_u64("KILN_SIM_SEED") {
        Some(s) => (vec![s], format!("seed {s}")),
        None => {
            let n = env_u64("KILN_SIM_HISTORIES").unwrap_or(HISTORIES);
            let fresh: u64 = rand::random();
            println!("simulation: fresh seed {fresh} (KILN_SIM_SEED={fresh} replays it)");
            let seeds: Vec<u64> = (1..=n).chain([fresh]).collect();
            (seeds, format!("seeds 1..={n} and fresh {fresh}"))
        }
    };
    Tally::reset();
    let started = Instant::now();
    let total = match explore(&seeds, steps, Duration::from_secs(120)).await {
        Ok(total) => total,
        Err(found) => panic!("{found}"),
    };
    println!(
        "simulation: {} histories, {total} steps ({named}), every invariant held, in {:.0?}; faults fired: {}",
        seeds.len(),
        started.elapsed(),
        Tally::line(),
    );
}

/// Turns the deliberately broken kiln off again, even when the test fails.
struct Unbreak;

impl Drop for Unbreak {
    fn drop(&mut self) {
        BROKEN.store(false, Ordering::SeqCst);
    }
}

/// The simulation is not a test that cannot fail: with a kiln that sends a create before its
/// pending create is recorded (`failpoint::SKIP_PENDING_SAVE`), the CI budget of fixed seeds
/// finds an instance the state does not know (the next apply would launch it twice), and shrinks
/// the history to the few steps that still fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_sent_without_its_pending_record_is_caught() {
    let _one = ONE_AT_A_TIME.lock().await;
    BROKEN.store(true, Ordering::SeqCst);
    let _unbreak = Unbreak;
    let seeds: Vec<u64> = (1..=HISTORIES).collect();
    let found = match explore(&seeds, STEPS as usize, Duration::from_secs(30)).await {
        Ok(total) => panic!("{total} steps of a broken kiln and the simulation found nothing"),
        Err(found) => found,
    };
    println!("caught, as it must be:\n{found}");
    let what = &found.violation.what;
    assert!(
        what.contains("not in the state"),
        "found something else than the broken invariant: {what}"
    );
    let last = found.last.as_ref().expect("the shrunk history still fails");
    assert!(
        last.what.contains("not in the state"),
        "the shrunk history fails otherwise: {}",
        last.what
    );
    assert!(
        found.shrunk.len() <= found.violation.step + 1 && found.shrunk.len() <= 6,
        "not shrunk: {} steps",
        found.shrunk.len()
    );
}
