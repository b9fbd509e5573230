//! The fault suite's rollout scenario (issue 23): a fleet of 3 rolled from one image to the next
//! with `max_surge = 1`, `max_unavailable = 0` and a health check, every crossing of that apply
//! faulted in every class that applies there ([`super::faults`]), then the next apply must
//! converge. The first crossing of each boundary always, and half of the others (the three
//! members cross the same pattern), scattered by the seed; every one with `KILN_FAULTS=all`.
//!
//! Besides the first scenario's invariants ([`super::invariants`]: no duplicate, nothing
//! untracked, the serial grows, the final plan empty), the rollout's own limits are checked
//! against the emulator's records, not kiln's: an observer on the failpoint hook reads the
//! emulator's world after every OCI answer (at the request crossing instead when the answer is
//! the faulted point, and once more when the apply ended). The suite's emulator runs at time
//! scale 0 and kiln at parallelism 1, so the world changes only while a request is served and
//! every change is seen before the next request leaves: no violation falls between two samples.
//! At each sample
//! - at most `count + max_surge` = 4 members exist (not TERMINATED),
//! - at least `count - max_unavailable` = 3 are RUNNING,
//! - every member of v1 that is gone (TERMINATING or TERMINATED) has a successor of its display
//!   name that the health check saw (the check appends `KILN_INSTANCE_ID` to `checked.log`).

use super::*;

use std::sync::atomic::{AtomicBool, Ordering};

const COUNT: usize = 3;
const SURGE: usize = 1;
const UNAVAILABLE: usize = 0;

/// The health check: it passes, and leaves a trace of each instance it saw healthy.
const CHECK: &str = "command = [\"sh\", \"-c\", \"echo $KILN_INSTANCE_ID >> checked.log\"], timeout = \"0s\", interval = \"0s\"";

pub struct Rollout {
    project: Arc<support::Project>,
    /// Each kiln run gets fresh clients, as every CLI run does (their rate budgets stay theirs).
    key: kiln::oci::keys::SigningKey,
    state_dir: tempfile::TempDir,
    /// The fleet's image before (v1) and after (v2) the rollout.
    images: (String, String),
    v1_world: World,
    v1_state: Vec<u8>,
    /// v1's members: display name → OCID.
    v1_members: BTreeMap<String, String>,
}

/// What the observer saw: the limits' extremes and every violation.
#[derive(Debug)]
struct Seen {
    most_existing: usize,
    fewest_running: usize,
    samples: usize,
    violations: Vec<String>,
}

impl Default for Seen {
    fn default() -> Self {
        Seen {
            most_existing: 0,
            fewest_running: usize::MAX,
            samples: 0,
            violations: Vec::new(),
        }
    }
}

impl Rollout {
    fn store(&self) -> StateStore {
        StateStore::local(self.project.path(), Some(self.state_dir.path()), "default").unwrap()
    }

    fn clients(&self) -> Clients {
        Clients::single(
            "us-ashburn-1",
            support::client_with(&self.project.emu, self.key.clone()),
        )
    }

    fn write(&self, v2: bool) {
        let image = if v2 { &self.images.1 } else { &self.images.0 };
        self.project.write(&format!(
            "[instance.web]\ncount = {COUNT}\nsource = {{ image = \"{image}\" }}\n\n[instance.web.rollout]\nmax_surge = {SURGE}\nmax_unavailable = {UNAVAILABLE}\nhealth_check = {{ {CHECK} }}\n"
        ));
    }

    /// What v2 declares (address → display name); it keeps none of v1's OCIDs (all replaced).
    fn expect(&self) -> Expect {
        let m = kiln::manifest::load(self.project.path(), None).expect("the manifest is valid");
        Expect {
            declared: kiln::plan::from_manifest::desired(&m)
                .into_iter()
                .map(|d| (d.address, d.display_name))
                .collect(),
            kept: BTreeMap::new(),
        }
    }

    /// Back to the applied v1 (the cloud, the state, no lock, no check seen), with v2 written.
    fn rewind(&self) {
        self.project.emu.restore(self.v1_world.clone());
        for leftover in [
            "default.json.backup",
            "default.json.lock",
            "default.json.journal",
        ] {
            let _ = std::fs::remove_file(self.state_dir.path().join(leftover));
        }
        std::fs::write(self.state_dir.path().join("default.json"), &self.v1_state).unwrap();
        let _ = std::fs::remove_file(self.project.path().join("checked.log"));
        self.write(true);
    }

    async fn state(&self) -> Result<State, String> {
        self.store()
            .load()
            .await
            .map_err(|e| format!("{:?}", miette::Report::new(e)))?
            .ok_or_else(|| "the state is gone".to_string())
    }
}

/// One sample of the emulator's world against the rollout's limits (module doc).
fn sample(project: &support::Project, v1: &BTreeMap<String, String>, seen: &Mutex<Seen>) {
    let w = project.emu.snapshot();
    let checked = std::fs::read_to_string(project.path().join("checked.log")).unwrap_or_default();
    let checked: BTreeSet<&str> = checked.lines().map(str::trim).collect();
    let name = |r: &kiln::emulator::store::Record| {
        r.body["displayName"].as_str().unwrap_or("").to_string()
    };
    let existing: Vec<_> = w
        .instances
        .values()
        .filter(|r| r.state() != "TERMINATED")
        .collect();
    let running = existing.iter().filter(|r| r.state() == "RUNNING").count();
    let mut s = seen.lock().unwrap();
    s.samples += 1;
    s.most_existing = s.most_existing.max(existing.len());
    s.fewest_running = s.fewest_running.min(running);
    if existing.len() > COUNT + SURGE {
        let names: Vec<String> = existing.iter().map(|r| name(r)).collect();
        s.violations.push(format!(
            "{} members existed at once (count + max_surge = {}): {names:?}",
            existing.len(),
            COUNT + SURGE
        ));
    }
    if running < COUNT - UNAVAILABLE {
        s.violations.push(format!(
            "only {running} members were RUNNING (count - max_unavailable = {})",
            COUNT - UNAVAILABLE
        ));
    }
    for (display, old) in v1 {
        let gone = w
            .instances
            .get(old)
            .is_none_or(|r| matches!(r.state(), "TERMINATING" | "TERMINATED"));
        if !gone {
            continue;
        }
        let successor_healthy = w
            .instances
            .values()
            .any(|r| r.id() != old && name(r) == *display && checked.contains(r.id()));
        if !successor_healthy {
            s.violations.push(format!(
                "{old} (`{display}`) went before a successor was seen healthy"
            ));
        }
    }
}

/// Sample the world at every crossing of `points` (callbacks on the failpoint hook); `stop`
/// ends the sampling.
fn observe(r: &Rollout, points: &[&'static str], seen: &Arc<Mutex<Seen>>, on: &Arc<AtomicBool>) {
    for point in points {
        let (project, v1, seen, on) = (
            r.project.clone(),
            r.v1_members.clone(),
            seen.clone(),
            on.clone(),
        );
        fail::cfg_callback(*point, move || {
            if on.load(Ordering::SeqCst) {
                sample(&project, &v1, &seen);
            }
        })
        .unwrap();
    }
}

pub async fn setup() -> Rollout {
    let key = fast_key();
    let config = kiln::emulator::EmulatorConfig {
        trusted_keys: vec![kiln::emulator::TrustedKey {
            key_id: key.key_id.clone(),
            public_key: key.key.to_public_key(),
        }],
        time_scale: 0.0,
        ..kiln::emulator::EmulatorConfig::default()
    };
    let project = Arc::new(support::Project::new(config).await);
    let ol: Vec<String> = project
        .emu
        .fixtures()
        .platform_images
        .iter()
        .filter(|i| i.operating_system == "Oracle Linux" && i.arch == "x86_64")
        .map(|i| i.id.clone())
        .collect();
    let state_dir = match tempfile::tempdir_in("/dev/shm") {
        Ok(d) => d,
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let mut r = Rollout {
        project,
        key,
        state_dir,
        images: (ol[0].clone(), ol[1].clone()),
        v1_world: World::default(),
        v1_state: Vec::new(),
        v1_members: BTreeMap::new(),
    };
    r.write(false);
    let applied = apply(r.project.path(), &r.store(), &r.clients())
        .await
        .unwrap();
    assert!(applied.ok(), "v1 applies: {}", report_errors(&applied));
    r.v1_world = r.project.emu.snapshot();
    r.v1_state = std::fs::read(r.state_dir.path().join("default.json")).unwrap();
    r.v1_members = r
        .v1_world
        .instances
        .values()
        .filter(|i| i.state() == "RUNNING")
        .map(|i| {
            (
                i.body["displayName"].as_str().unwrap_or("").to_string(),
                i.id().to_string(),
            )
        })
        .collect();
    assert_eq!(r.v1_members.len(), COUNT, "v1's fleet: {:?}", r.v1_members);
    r
}

/// The reference run of the rollout: every crossing, in order (and the limits kept).
async fn reference(r: &Rollout) -> Vec<&'static str> {
    r.rewind();
    let log: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let on = Arc::new(AtomicBool::new(true));
    let _scenario = fail::FailScenario::setup();
    for point in failpoint::POINTS.iter().chain([&LAUNCH]) {
        let (log, project, v1, seen, on) = (
            log.clone(),
            r.project.clone(),
            r.v1_members.clone(),
            seen.clone(),
            on.clone(),
        );
        let observed = *point == failpoint::OCI_RESPONSE;
        fail::cfg_callback(*point, move || {
            log.lock().unwrap().push(point);
            if observed && on.load(Ordering::SeqCst) {
                sample(&project, &v1, &seen);
            }
        })
        .unwrap();
    }
    let applied = apply(r.project.path(), &r.store(), &r.clients())
        .await
        .unwrap();
    for point in failpoint::POINTS.iter().chain([&LAUNCH]) {
        fail::remove(point);
    }
    assert!(
        applied.ok(),
        "the reference apply: {}",
        report_errors(&applied)
    );
    sample(&r.project, &r.v1_members, &seen);
    let seen = seen.lock().unwrap();
    assert!(
        seen.violations.is_empty() && seen.samples > 1,
        "the reference rollout: {seen:?}"
    );
    let crossings = log.lock().unwrap().clone();
    crossings
}

/// One run: the fault at the `j`-th crossing of `point`, then the next apply; the limits are
/// sampled throughout both.
async fn run_one(r: &Rollout, point: &'static str, j: usize, fault: Class) -> Result<(), String> {
    r.rewind();
    let last_serial = r.state().await?.serial;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let on = Arc::new(AtomicBool::new(true));
    let _scenario = fail::FailScenario::setup();
    // The observer sits on the answer crossing, or on the request crossing when the answer is
    // the one faulted (a change is then seen as the next request leaves, or at the end).
    let watch = if point == failpoint::OCI_RESPONSE {
        failpoint::OCI_REQUEST
    } else {
        failpoint::OCI_RESPONSE
    };
    observe(r, &[watch], &seen, &on);
    faulted_apply(r.project.path(), &r.store(), &r.clients(), point, j, fault).await?;
    fail::remove(point);
    sample(&r.project, &r.v1_members, &seen);
    let exp = r.expect();
    let st = r.state().await?;
    invariants(&[r.project.emu.snapshot()], &st, &exp, last_serial, false)
        .map_err(|v| format!("after the faulted apply:\n  {v}"))?;
    // The next apply, watched on both crossings (nothing is faulted now).
    fail::remove(watch);
    observe(
        r,
        &[failpoint::OCI_REQUEST, failpoint::OCI_RESPONSE],
        &seen,
        &on,
    );
    let again = apply(r.project.path(), &r.store(), &r.clients()).await?;
    on.store(false, Ordering::SeqCst);
    sample(&r.project, &r.v1_members, &seen);
    {
        let seen = seen.lock().unwrap();
        if !seen.violations.is_empty() {
            return Err(format!(
                "the rollout's limits, sampled from the emulator {} times:\n  {}",
                seen.samples,
                seen.violations.join("\n  ")
            ));
        }
    }
    if !again.ok() {
        return Err(format!("the next apply failed:\n{}", report_errors(&again)));
    }
    let st2 = r.state().await?;
    invariants(&[r.project.emu.snapshot()], &st2, &exp, st.serial, true)
        .map_err(|v| format!("after the next apply:\n  {v}"))?;
    let live_images: BTreeSet<String> = r
        .project
        .emu
        .snapshot()
        .instances
        .values()
        .filter(|i| i.state() != "TERMINATED")
        .map(|i| i.body["imageId"].as_str().unwrap_or("").to_string())
        .collect();
    if live_images != BTreeSet::from([r.images.1.clone()]) {
        return Err(format!(
            "after the next apply the fleet runs {live_images:?}, not only {}",
            r.images.1
        ));
    }
    let p = plan(r.project.path(), &r.store(), &r.clients()).await?;
    final_plan_is_empty(&p)
}

/// Fault every crossing of the rollout in each applicable way; returns the (point × fault)
/// counts and the failures.
pub async fn sweep(r: &Rollout, seed: u64, all: bool) -> (BTreeMap<String, usize>, Vec<String>) {
    let crossings = reference(r).await;
    let points: BTreeSet<&str> = crossings.iter().copied().collect();
    println!(
        "fault suite (rollout): seed {seed}; {} crossings of {} boundaries in the reference rollout{}",
        crossings.len(),
        points.len(),
        if all {
            " (KILN_FAULTS=all)"
        } else {
            "; the first of each boundary and half of the others, picked by the seed"
        }
    );
    let only: Option<usize> = std::env::var("KILN_FAULT_CROSSING")
        .ok()
        .and_then(|k| k.parse().ok());
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut pairs: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut runs = 0;
    for (k, point) in crossings.iter().copied().enumerate() {
        let j = *seen.entry(point).and_modify(|n| *n += 1).or_insert(0);
        // Cheap by default: the first crossing of each boundary, and half of the others,
        // scattered by the seed (the members repeat one pattern); all with KILN_FAULTS=all.
        let h = (k as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let picked = all || j == 0 || h % 2 == 0;
        if only.map_or(!picked, |o| o != k) {
            continue;
        }
        for fault in faults(point, k, seed, all) {
            runs += 1;
            *pairs.entry(format!("{point}×{}", fault.arg())).or_default() += 1;
            let t = std::time::Instant::now();
            let result = run_one(r, point, j, fault).await;
            let what = format!("fault {}", fault.arg());
            tally(
                &mut failures,
                ("rollout", seed),
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
    println!(
        "fault suite (rollout): {runs} (crossing, fault) pairs checked, the limits sampled at every answer — {}",
        pairs
            .iter()
            .map(|(p, n)| format!("{p}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    (pairs, failures)
}
