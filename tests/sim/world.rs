//! A history's world and its steps: the emulators, the manifest directory, the state; the
//! edits, out-of-band changes, second kilns and ageing a step makes ([`super::apply`] has the
//! apply and the invariants).

use super::*;

/// A history's world: two emulators, a manifest directory, a local state.
pub(crate) struct Sim {
    pub(crate) emus: Arc<Vec<RunningEmulator>>,
    pub(crate) clients: Clients,
    pub(crate) client: [Client; 2],
    pub(crate) fixtures: [kiln::emulator::Fixtures; 2],
    pub(crate) dir: tempfile::TempDir,
    pub(crate) state_dir: tempfile::TempDir,
    pub(crate) model: Model,
    pub(crate) last_serial: u64,
    /// Resources the sim terminated itself (out of band).
    pub(crate) terminated: BTreeSet<String>,
    /// The images of `image.golden` live when the last apply started: address → id → version.
    pub(crate) golden_before: BTreeMap<String, BTreeMap<String, u64>>,
    /// How many were live after the last converged apply, by address.
    pub(crate) golden_cap: BTreeMap<String, usize>,
    /// Applies since the last converged one.
    pub(crate) applies_since: usize,
}

/// A violated invariant (or an unexpected error), with where it happened.
#[derive(Debug)]
pub(crate) struct Violation {
    pub(crate) step: usize,
    pub(crate) what: String,
}

impl Sim {
    pub(crate) async fn new() -> Sim {
        let key = fast_key();
        // Served together: CopyObject reaches the other region (the golden image's copy).
        let peers = kiln::emulator::peers::Peers::new();
        let config = |region: &str| EmulatorConfig {
            region: region.into(),
            peers: peers.clone(),
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
        kiln::oci::object_storage::ObjectStorage::new(client[0].clone())
            .create_bucket(&fixtures[0].namespace, BUCKET, support::COMPARTMENT)
            .await
            .expect("the export bucket is made");
        let state_dir =
            tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
        Sim {
            emus: Arc::new(emus),
            clients,
            client,
            fixtures,
            dir: tempfile::tempdir().unwrap(),
            state_dir,
            model: Model::default(),
            last_serial: 0,
            terminated: BTreeSet::new(),
            golden_before: BTreeMap::new(),
            golden_cap: BTreeMap::new(),
            applies_since: 0,
        }
    }

    pub(crate) fn store(&self) -> StateStore {
        StateStore::local(self.dir.path(), Some(self.state_dir.path()), "default").unwrap()
    }

    pub(crate) fn write(&mut self) {
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

    pub(crate) fn session(&self) -> Result<Session, String> {
        let m = kiln::manifest::load(self.dir.path(), None).map_err(|e| format!("{e:?}"))?;
        Ok(Session::from_parts(
            m,
            self.store(),
            self.clients.clone(),
            "emulator",
            1,
        ))
    }

    pub(crate) async fn state(&self) -> Result<Option<State>, String> {
        self.store().load().await.map_err(|e| format!("{e:?}"))
    }

    /// Live resources of both emulators: (id, kiln-address tag).
    pub(crate) fn live(&self) -> Vec<(String, Option<String>)> {
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
    pub(crate) async fn step(&mut self, step: &Step) -> Result<(), String> {
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
                    rollout: None,
                    placed: false,
                    launch: 0,
                    pin: None,
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
            Step::Rollout { pick, roll } => {
                let image = self.model.image.is_some();
                if let Some(f) = self.model.pick(pick) {
                    f.rollout = roll;
                    if roll.is_some() && f.region == 0 && image {
                        f.from_image = !f.from_image;
                    }
                }
            }
            Step::Place { pick } => {
                if let Some(f) = self.model.pick(pick) {
                    f.placed = !f.placed;
                }
            }
            Step::Launch { pick, kind } => {
                if let Some(f) = self.model.pick(pick) {
                    f.launch = kind;
                }
            }
            Step::Keep { keep } => {
                self.model.keep = (keep > 0).then_some(keep);
                if keep > 0 && self.model.image.is_none() {
                    self.model.image = Some(false);
                }
            }
            Step::Pin { pick, back } => {
                let versions = golden_versions(self.state().await?.as_ref());
                let (image, copy) = (self.model.image.is_some(), self.model.copy);
                let can: Vec<usize> = (0..self.model.fleets.len())
                    .filter(|&i| self.model.fleets[i].region == 0 || copy)
                    .collect();
                if image && !can.is_empty() {
                    let f = &mut self.model.fleets[can[pick as usize % can.len()]];
                    match back {
                        None => f.pin = None,
                        Some(b) => {
                            f.from_image = true;
                            f.pin = Some(b % (versions[f.region] as u8 + 1));
                        }
                    }
                }
            }
            Step::Copy => match self.model.image {
                Some(_) => self.model.copy = !self.model.copy,
                None => {
                    self.model.image = Some(false);
                    self.model.copy = true;
                }
            },
            Step::Apply { fault } => return self.apply(fault.as_ref()).await,
            Step::Plan => {
                self.write();
                let stale = self.stale_pins().await?;
                // A pin beyond `keep` is refused with the manifest (before any plan).
                let s = match self.session() {
                    Err(e) if !stale.is_empty() => return refused_for_pin(&e),
                    s => s?,
                };
                let r = ops::plan::plan(&s, &PlanRequest::default()).await;
                match (r, stale.is_empty()) {
                    (Err(e), true) => return Err(format!("a plan failed: {e:?}")),
                    (Ok(_), false) => {
                        return Err(format!(
                            "a plan took a pin to a version the state does not keep ({stale:?})"
                        ))
                    }
                    (Err(e), false) => refused_for_pin(&format!("{e:?}"))?,
                    (Ok(_), true) => {}
                }
            }
            Step::OutOfBand { what, pick } => self.out_of_band(what, pick).await?,
            Step::SecondKiln { forced } => self.second_kiln(forced).await?,
            Step::Age => self.age().await?,
        }
        self.check(false).await
    }
    pub(crate) async fn out_of_band(&mut self, what: Oob, pick: u32) -> Result<(), String> {
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
    pub(crate) async fn second_kiln(&mut self, forced: bool) -> Result<(), String> {
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
        // A pin beyond `keep` is refused with the manifest, before the lock is asked for.
        let s = match self.session() {
            Err(e) if !self.stale_pins().await?.is_empty() => return refused_for_pin(&e),
            s => s?,
        };
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
    pub(crate) async fn age(&mut self) -> Result<(), String> {
        let day = chrono::Duration::hours(25);
        for emu in self.emus.iter() {
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
    pub(crate) async fn finish(&mut self) -> Result<(), String> {
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
pub(crate) fn fast_key() -> kiln::oci::keys::SigningKey {
    let key = kiln::oci::keys::load_private_key(&support::key_path("fault-suite-1024.pem"), None)
        .unwrap();
    let fingerprint = kiln::oci::keys::fingerprint(&key.to_public_key());
    kiln::oci::keys::SigningKey::new(
        key,
        format!("{}/{}/{fingerprint}", support::TENANCY, support::USER),
    )
}

/// The OCIDs a plan replaces or destroys.
pub(crate) fn ended_by(plan: &Plan) -> BTreeSet<String> {
    plan.changes
        .iter()
        .filter(|c| matches!(c.action, Action::Replace | Action::Delete))
        .filter_map(|c| c.id.clone())
        .collect()
}

/// The address a pending create was sent under, when the state records it.
pub(crate) fn pending_address(r: &kiln::state::ResourceState) -> Option<String> {
    let v = serde_json::to_value(r.pending_create.as_ref()?).ok()?;
    v.get("address")?.as_str().map(str::to_string)
}
