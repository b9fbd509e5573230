//! The first scenario: about fifty resources (the golden-image DAG, lookups, updates, power
//! changes, replacements in both orders, moves, destroys), applied once as a reference, then
//! swept crossing by crossing with the state local or on Object Storage (the module doc of the
//! suite says how).

use super::*;

/// The manifest: `v2` is what the faulted apply moves to from `v1`; `edited` changes tags of
/// resources it creates.
pub(crate) fn manifest(p: &support::Project, v2: bool, edited: bool) -> String {
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

pub(crate) struct Scenario {
    pub(crate) project: support::Project,
    /// The suite's own client, for its setup (image files, the newer image); each kiln run gets
    /// a fresh one ([`Scenario::clients`]).
    pub(crate) client: Client,
    pub(crate) key: kiln::oci::keys::SigningKey,
    /// The state on Object Storage (in the emulator, so rewinding the cloud rewinds it too)
    /// rather than in a local file.
    pub(crate) remote: bool,
    pub(crate) state_dir: tempfile::TempDir,
    pub(crate) v1_world: World,
    pub(crate) v1_state: Vec<u8>,
    pub(crate) expect: Expect,
}

impl Scenario {
    pub(crate) fn state_path(&self) -> PathBuf {
        self.state_dir.path().join("default.json")
    }

    /// The clients of a new kiln process: fresh, as every run of the CLI builds its own. A
    /// client carries adaptive rate budgets ([`kiln::oci::budget`]); shared across the sweep's
    /// runs, the 429s injected into one paced every later run (the suite's wall time grew from
    /// minutes to ~25 minutes while its CPU time stayed under 5 minutes).
    pub(crate) fn clients(&self) -> Clients {
        Clients::single(
            "us-ashburn-1",
            support::client_with(&self.project.emu, self.key.clone()),
        )
    }

    /// The store, as a new kiln process would open it.
    pub(crate) fn store(&self) -> StateStore {
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

    pub(crate) fn write(&self, v2: bool, edited: bool) {
        self.project.write(&manifest(&self.project, v2, edited));
    }

    /// Back to the applied v1: the cloud, the state (and no lock left).
    pub(crate) fn rewind(&self) {
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
    pub(crate) async fn state(&self) -> Result<State, String> {
        self.store()
            .load()
            .await
            .map_err(|e| format!("{:?}", miette::Report::new(e)))?
            .ok_or_else(|| "the state is gone".to_string())
    }
}

pub(crate) async fn setup(remote: bool) -> Scenario {
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
pub(crate) async fn reference(s: &Scenario) -> Vec<&'static str> {
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

/// One run: the fault at crossing `k` (the `j`-th crossing of `point`), then convergence.
pub(crate) async fn run_one(
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

/// A newer "Oracle Linux 9" image, so `image_lookup`s resolve differently on the next apply.
pub(crate) async fn import_newer_image(s: &Scenario) {
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
pub(crate) async fn sweep(
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
