//! The fault suite's second scenario: fleets in two regions, renamed, resized and moved between
//! the crash and the resume.
//!
//! Two emulators serve us-ashburn-1 and us-phoenix-1. v1 has a `count` fleet (home region), a
//! `for_each` fleet (us-phoenix-1) and two singletons; the faulted apply moves to v2: the
//! `count` fleet grows, a `for_each` key is replaced by another, a singleton moves to the other
//! region (a replacement across regions), the other is renamed by `[[moved]]`, and a new one is
//! created in us-phoenix-1. After each fault, the next apply runs on a *resume* manifest chosen
//! per crossing by the seed — the dimensions the first scenario lacked:
//! - `same`: v2 again;
//! - `resized`: the fleets' sizes and keys change again (members the faulted apply was creating
//!   leave the manifest: what their pending creates made must be destroyed, never left running);
//! - `renamed`: `[[moved]]` renames of members the faulted apply was creating (the pending
//!   create travels with the record and is found under its old address);
//! - `region changed`: what the faulted apply was creating in one region is wanted in the other
//!   (resolved where it was sent, then replaced);
//! - `aged`: every pending create and the emulators' memory of its retry token are moved past
//!   OCI's 24-hour window (the clocks move; nobody waits): kiln must search, not resend.
//!
//! The invariants are the first scenario's ([`super::invariants`]) over both emulators' records,
//! with what is declared and kept computed from each manifest.

use super::*;

use kiln::emulator::RunningEmulator;

const PHX: &str = "us-phoenix-1";

/// How the manifest changes between the faulted apply and the next (module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resume {
    Same,
    Resized,
    Renamed,
    RegionChanged,
    Aged,
}

impl Resume {
    const ALL: [Resume; 5] = [
        Resume::Same,
        Resume::Resized,
        Resume::Renamed,
        Resume::RegionChanged,
        Resume::Aged,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Resume::Same => "same",
            Resume::Resized => "resized",
            Resume::Renamed => "renamed",
            Resume::RegionChanged => "region changed",
            Resume::Aged => "aged past the token window",
        }
    }
}

/// Which manifest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    V1,
    V2,
    Resume(Resume),
}

pub struct Fleet {
    project: support::Project,
    phx: RunningEmulator,
    key: kiln::oci::keys::SigningKey,
    state_dir: tempfile::TempDir,
    v1_worlds: [World; 2],
    v1_state: Vec<u8>,
    /// v1's resources by address: their OCIDs.
    v1_ids: BTreeMap<String, String>,
}

impl Fleet {
    /// A new kiln process's clients (fresh budgets: see `Scenario::clients`).
    fn clients(&self) -> Clients {
        let mut clients = Clients::single(
            "us-ashburn-1",
            support::client_with(&self.project.emu, self.key.clone()),
        );
        clients.insert(PHX, support::client_with(&self.phx, self.key.clone()));
        clients
    }

    fn store(&self) -> StateStore {
        StateStore::local(self.project.path(), Some(self.state_dir.path()), "default").unwrap()
    }

    fn worlds(&self) -> Vec<World> {
        vec![self.project.emu.snapshot(), self.phx.snapshot()]
    }

    /// The lines that put a resource in us-phoenix-1.
    fn in_phx(&self) -> String {
        let f = self.phx.fixtures();
        format!(
            "region = \"{PHX}\"\navailability_domain = \"{}\"\nsubnet = \"{}\"\nsource = {{ image = \"{}\" }}\n",
            f.availability_domains[0], f.public_subnet_id, f.platform_images[0].id
        )
    }

    fn manifest(&self, stage: Stage) -> String {
        let phx = self.in_phx();
        let header = self.project.header().replace(
            "[defaults]",
            &format!(
                "endpoints = {{ {PHX} = \"{}\" }}\n\n[defaults]",
                self.phx.url()
            ),
        );
        let mut m = header;
        if stage == Stage::V1 {
            m += "[instance.east]\ncount = 3\n";
            m += &format!("[instance.west]\nfor_each = [\"a\", \"b\", \"c\"]\n{phx}");
            m += "[instance.hop]\n[instance.old]\n";
            return m;
        }
        let resume = match stage {
            Stage::Resume(r) => r,
            _ => Resume::Same,
        };
        match resume {
            Resume::Resized => {
                m += "[instance.east]\ncount = 2\n";
                m += &format!("[instance.west]\nfor_each = [\"a\", \"e\"]\n{phx}");
            }
            Resume::Renamed => {
                m += "[instance.east]\ncount = 3\n[instance.spare]\ndisplay_name = \"east-3\"\n";
                m += "[[moved]]\nfrom = \"instance.east[3]\"\nto = \"instance.spare\"\n";
                m += &format!("[instance.west]\nfor_each = [\"a\", \"b\", \"x\"]\n{phx}");
                m += "[[moved]]\nfrom = \"instance.west[\\\"d\\\"]\"\nto = \"instance.west[\\\"x\\\"]\"\n";
            }
            _ => {
                m += "[instance.east]\ncount = 4\n";
                m += &format!("[instance.west]\nfor_each = [\"a\", \"b\", \"d\"]\n{phx}");
            }
        }
        // The region change: what v2 puts in us-phoenix-1 goes back home.
        let away = if resume == Resume::RegionChanged {
            String::new()
        } else {
            phx.clone()
        };
        m += &format!("[instance.hop]\n{away}");
        m += "[instance.renamed]\ndisplay_name = \"old\"\n";
        m += "[[moved]]\nfrom = \"instance.old\"\nto = \"instance.renamed\"\n";
        if resume == Resume::Renamed {
            m += &format!("[instance.fresh2]\ndisplay_name = \"fresh\"\n{away}");
            m += "[[moved]]\nfrom = \"instance.fresh\"\nto = \"instance.fresh2\"\n";
        } else {
            m += &format!("[instance.fresh]\n{away}");
        }
        m
    }

    fn write(&self, stage: Stage) {
        std::fs::write(self.project.path().join("kiln.toml"), self.manifest(stage)).unwrap();
    }

    /// What `stage`'s manifest declares (address → display name) and keeps of v1 (the OCIDs of
    /// v1's resources it declares, renamed or not, other than the one that changes region).
    fn expect(&self, stage: Stage) -> Expect {
        let m = kiln::manifest::load_str(self.project.path(), &self.manifest(stage))
            .expect("the scenario's manifests are valid");
        let declared: BTreeMap<String, String> = kiln::plan::from_manifest::desired(&m)
            .into_iter()
            .map(|d| (d.address, d.display_name))
            .collect();
        let renamed = |a: &str| match a {
            "instance.old" => "instance.renamed".to_string(),
            a => a.to_string(),
        };
        let kept = self
            .v1_ids
            .iter()
            .filter(|(a, _)| a.as_str() != "instance.hop")
            .map(|(a, id)| (renamed(a), id.clone()))
            .filter(|(a, _)| declared.contains_key(a))
            .collect();
        Expect { declared, kept }
    }

    /// Back to the applied v1 (both clouds, the state, no lock), with v2 written.
    fn rewind(&self) {
        self.project.emu.restore(self.v1_worlds[0].clone());
        self.phx.restore(self.v1_worlds[1].clone());
        for leftover in [
            "default.json.backup",
            "default.json.lock",
            "default.json.journal",
        ] {
            let _ = std::fs::remove_file(self.state_dir.path().join(leftover));
        }
        std::fs::write(self.state_dir.path().join("default.json"), &self.v1_state).unwrap();
        self.write(Stage::V2);
    }

    async fn state(&self) -> Result<State, String> {
        self.store()
            .load()
            .await
            .map_err(|e| format!("{:?}", miette::Report::new(e)))?
            .ok_or_else(|| "the state is gone".to_string())
    }

    /// Move every pending create, and both emulators' memory of every retry token, 25 hours
    /// into the past: the state written whole (its journal folded in), the worlds restored.
    async fn age(&self) -> Result<(), String> {
        let day = chrono::Duration::hours(25);
        let mut st = self.state().await?;
        for r in st.resources.values_mut() {
            if let Some(p) = r.pending_create.as_mut() {
                p.started_at -= day;
            }
        }
        let _ = std::fs::remove_file(self.state_dir.path().join("default.json.journal"));
        std::fs::write(
            self.state_dir.path().join("default.json"),
            serde_json::to_vec(&st).unwrap(),
        )
        .map_err(|e| e.to_string())?;
        for emu in [&self.project.emu, &self.phx] {
            let mut w = emu.snapshot();
            for r in w.retry_tokens.values_mut() {
                r.at -= day;
            }
            emu.restore(w);
        }
        Ok(())
    }
}

pub async fn setup() -> Fleet {
    let key = fast_key();
    let config = |region: &str| kiln::emulator::EmulatorConfig {
        region: region.into(),
        trusted_keys: vec![kiln::emulator::TrustedKey {
            key_id: key.key_id.clone(),
            public_key: key.key.to_public_key(),
        }],
        time_scale: 0.0,
        ..kiln::emulator::EmulatorConfig::default()
    };
    let project = support::Project::new(config("us-ashburn-1")).await;
    let phx = support::start(config(PHX)).await;
    let state_dir = match tempfile::tempdir_in("/dev/shm") {
        Ok(d) => d,
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let mut f = Fleet {
        project,
        phx,
        key,
        state_dir,
        v1_worlds: [World::default(), World::default()],
        v1_state: Vec::new(),
        v1_ids: BTreeMap::new(),
    };
    f.write(Stage::V1);
    let r = apply(f.project.path(), &f.store(), &f.clients())
        .await
        .unwrap();
    assert!(r.ok(), "v1 applies: {}", report_errors(&r));
    f.v1_worlds = [f.project.emu.snapshot(), f.phx.snapshot()];
    f.v1_state = std::fs::read(f.state_dir.path().join("default.json")).unwrap();
    f.v1_ids = f
        .state()
        .await
        .unwrap()
        .resources
        .into_iter()
        .filter_map(|(a, r)| Some((a, r.id?)))
        .collect();
    f
}

/// The reference run of v1 → v2: every crossing, in order.
async fn reference(f: &Fleet) -> Vec<&'static str> {
    f.rewind();
    let log: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let _scenario = fail::FailScenario::setup();
    for point in failpoint::POINTS {
        let log = log.clone();
        fail::cfg_callback(*point, move || log.lock().unwrap().push(point)).unwrap();
    }
    let r = apply(f.project.path(), &f.store(), &f.clients())
        .await
        .unwrap();
    for point in failpoint::POINTS {
        fail::remove(point);
    }
    assert!(r.ok(), "the reference apply: {}", report_errors(&r));
    let crossings = log.lock().unwrap().clone();
    crossings
}

/// One run: the fault at the `j`-th crossing of `point`, then the next apply on `resume`.
async fn run_one(
    f: &Fleet,
    point: &'static str,
    j: usize,
    fault: Class,
    resume: Resume,
) -> Result<(), String> {
    f.rewind();
    let last_serial = f.state().await?.serial;
    {
        let _scenario = fail::FailScenario::setup();
        faulted_apply(f.project.path(), &f.store(), &f.clients(), point, j, fault).await?;
    }
    let st = f.state().await?;
    invariants(&f.worlds(), &st, &f.expect(Stage::V2), last_serial, false)
        .map_err(|v| format!("after the faulted apply:\n  {v}"))?;
    f.write(Stage::Resume(resume));
    if resume == Resume::Aged {
        f.age().await?;
    }
    let again = apply(f.project.path(), &f.store(), &f.clients()).await?;
    if !again.ok() {
        return Err(format!("the next apply failed:\n{}", report_errors(&again)));
    }
    let st2 = f.state().await?;
    let exp = f.expect(Stage::Resume(resume));
    invariants(&f.worlds(), &st2, &exp, st.serial, true)
        .map_err(|v| format!("after the next apply:\n  {v}"))?;
    let p = plan(f.project.path(), &f.store(), &f.clients()).await?;
    final_plan_is_empty(&p)
}

/// Fault every crossing of v1 → v2 (abort, and the crossing's other fault), each resumed on the
/// manifest the seed picks for it; returns the (dimension, count) pairs and the failures.
pub async fn sweep(f: &Fleet, seed: u64, all: bool) -> (BTreeMap<String, usize>, Vec<String>) {
    let crossings = reference(f).await;
    let points: BTreeSet<&str> = crossings.iter().copied().collect();
    println!(
        "fault suite (fleets in two regions): seed {seed}; {} crossings of {} boundaries in the reference apply",
        crossings.len(),
        points.len()
    );
    let only: Option<usize> = std::env::var("KILN_FAULT_CROSSING")
        .ok()
        .and_then(|k| k.parse().ok());
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut pairs: BTreeMap<String, usize> = BTreeMap::new();
    let mut resumes: BTreeMap<Resume, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut runs = 0;
    for (k, point) in crossings.iter().copied().enumerate() {
        let j = *seen.entry(point).and_modify(|n| *n += 1).or_insert(0);
        if only.is_some_and(|o| o != k) {
            continue;
        }
        for (i, fault) in faults(point, k, seed, all).into_iter().enumerate() {
            let resume = Resume::ALL
                [(seed as usize).wrapping_add(k * 2 + i).wrapping_mul(7) % Resume::ALL.len()];
            runs += 1;
            *pairs.entry(format!("{point}×{}", fault.arg())).or_default() += 1;
            *resumes.entry(resume).or_default() += 1;
            let t = std::time::Instant::now();
            let result = run_one(f, point, j, fault, resume).await;
            let what = format!("fault {}, resumed {}", fault.arg(), resume.name());
            tally(
                &mut failures,
                ("fleets in two regions", seed),
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
        "fault suite (fleets in two regions): {runs} (crossing, fault) pairs checked — resumed: {}; {}",
        resumes
            .iter()
            .map(|(r, n)| format!("{}: {n}", r.name()))
            .collect::<Vec<_>>()
            .join(", "),
        pairs
            .iter()
            .map(|(p, n)| format!("{p}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (r, n) in resumes {
        pairs.insert(format!("resumed {}", r.name()), n);
    }
    (pairs, failures)
}
