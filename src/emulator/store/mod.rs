//! The emulator's world: instances, images, boot volumes, work requests, retry tokens. Lifecycles
//! are evaluated lazily: a resource records a timeline of (state, from-time) steps, and every
//! request first settles the world to the current time — so timing survives persistence and
//! restarts, and every transition bumps the resource's version, hence its etag.
//!
//! A request costs what it touches, not the size of the world ([`Index`], never persisted,
//! rebuilt from the records on load and restore): settling visits only the records whose next
//! step is due (a due-time index), instances are listed from their compartment's index (and
//! their VNIC attachments from each instance's), private IPs from their subnet's VNICs, public IPs
//! from their compartment's VNICs, and a launch finds a free private IP and hostname label from
//! per-subnet indexes. Retry tokens
//! expire when looked up (and are purged once an hour).
//!
//! One resource's record and a work request's are in `record`; this module holds the world that
//! keeps them, its indexes, settling and persistence.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod record;
pub use record::{Record, Step, WorkRequestRec};

/// A response kept for an `opc-retry-token`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    pub operation: String,
    pub target: String,
    pub body_sha256: String,
    pub at: DateTime<Utc>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Which collection of the world a record is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Coll {
    Instance,
    Image,
    BootVolume,
    BootVolumeAttachment,
}

/// Lookups that keep a request's cost independent of the world's size. Derived from the records
/// (never persisted; [`World::rebuild_index`]) and kept up to date by every change: a record
/// given steps is [`World::schedule`]d, a VNIC made is [`World::add_vnic`]ed, an instance that
/// reaches TERMINATED releases its addresses in [`World::settle`], a move re-files it
/// ([`World::file_instance`]).
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// (when, collection, id) of each record's next lifecycle step (stale entries are harmless:
    /// settling a record applies only what is due).
    due: BTreeSet<(DateTime<Utc>, Coll, String)>,
    /// Instance ids per compartment.
    instances_by_compartment: HashMap<String, BTreeSet<String>>,
    /// Per subnet, the private IPs (as numbers) and lower-case hostname labels held by the VNICs
    /// of instances that are not TERMINATED.
    ips: HashMap<String, BTreeSet<u32>>,
    labels: HashMap<String, HashMap<String, usize>>,
    /// The VNICs of each instance, and the VNIC attachments.
    vnics_of: HashMap<String, Vec<String>>,
    attachments_of: HashMap<String, Vec<String>>,
    /// Per VNIC: its instance and its private IPs.
    instance_of: HashMap<String, String>,
    private_ips_of: HashMap<String, Vec<String>>,
    /// VNIC ids per compartment (a VNIC stays where it was made when its instance moves, as on
    /// OCI) and per subnet.
    vnics_by_compartment: HashMap<String, BTreeSet<String>>,
    vnics_by_subnet: HashMap<String, BTreeSet<String>>,
    /// When expired retry tokens were last purged.
    purged: Option<DateTime<Utc>>,
}

/// Indexes are derived data: two worlds with the same records are the same world.
impl PartialEq for Index {
    fn eq(&self, _: &Index) -> bool {
        true
    }
}

/// Everything the emulator holds; persisted as one JSON document with `--data`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct World {
    pub instances: BTreeMap<String, Record>,
    pub images: BTreeMap<String, Record>,
    /// Boot volumes and their attachments, made at launch (older data files kept minimal boot
    /// volume stubs under `boot_volumes`: they are dropped).
    #[serde(default, rename = "boot_volume_records")]
    pub boot_volumes: BTreeMap<String, Record>,
    #[serde(default)]
    pub boot_volume_attachments: BTreeMap<String, Record>,
    /// Primary VNIC attachments (by attachment id) and VNICs (by id), made at launch.
    #[serde(default)]
    pub vnic_attachments: BTreeMap<String, Value>,
    #[serde(default)]
    pub vnics: BTreeMap<String, Value>,
    /// The primary private IP of every VNIC (by private IP id).
    #[serde(default)]
    pub private_ips: BTreeMap<String, Value>,
    pub work_requests: BTreeMap<String, WorkRequestRec>,
    pub retry_tokens: BTreeMap<String, Replay>,
    /// Per instance: when its last image capture finished (for the cooldown).
    pub last_capture: BTreeMap<String, DateTime<Utc>>,
    /// Creation counter, to order resources created in the same millisecond.
    pub serial: u64,
    /// Object Storage buckets by name (one namespace).
    #[serde(default)]
    pub buckets: BTreeMap<String, super::object_storage::BucketRec>,
    /// Object Storage work requests (CopyObject), by id ([`super::object_copy`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub object_work_requests: BTreeMap<String, super::object_copy::ObjectWorkRequest>,
    /// Copies to other regions a handler made, for the pipeline to hand over once it lets go
    /// of this world ([`super::peers`]).
    #[serde(skip)]
    pub outbox: Vec<super::peers::Delivery>,
    /// Custom images' capability schemas by id ([`super::capabilities`]).
    #[serde(default)]
    pub capability_schemas: BTreeMap<String, Record>,
    #[serde(skip)]
    pub index: Index,
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How long an `opc-retry-token` is honoured.
pub fn retry_token_lifetime() -> ChronoDuration {
    ChronoDuration::hours(24)
}

impl World {
    fn record_mut(&mut self, coll: Coll, id: &str) -> Option<&mut Record> {
        match coll {
            Coll::Instance => self.instances.get_mut(id),
            Coll::Image => self.images.get_mut(id),
            Coll::BootVolume => self.boot_volumes.get_mut(id),
            Coll::BootVolumeAttachment => self.boot_volume_attachments.get_mut(id),
        }
    }

    /// Note the next step of the record `id` (call after giving it steps).
    pub fn schedule(&mut self, coll: Coll, id: &str) {
        let at = self
            .record_mut(coll, id)
            .and_then(|r| r.steps.first())
            .map(|s| s.at);
        if let Some(at) = at {
            self.index.due.insert((at, coll, id.to_string()));
        }
    }

    /// File the instance `id` under its compartment now (after a launch or a move).
    pub fn file_instance(&mut self, id: &str) {
        for ids in self.index.instances_by_compartment.values_mut() {
            ids.remove(id);
        }
        if let Some(r) = self.instances.get(id) {
            let c = r.str("compartmentId").to_string();
            self.index
                .instances_by_compartment
                .entry(c)
                .or_default()
                .insert(id.to_string());
        }
    }

    /// The ids of the instances in `compartment`.
    pub fn instances_in(&self, compartment: &str) -> impl Iterator<Item = &Record> + '_ {
        self.index
            .instances_by_compartment
            .get(compartment)
            .into_iter()
            .flatten()
            .filter_map(|id| self.instances.get(id))
    }

    /// Replace the VNIC `vnic_id` with `new` (an UpdateVnic): the old hostname label is released
    /// and the new one taken.
    pub fn set_vnic(&mut self, vnic_id: &str, new: Value) {
        if let Some(old) = self.vnics.get(vnic_id) {
            take_address(&mut self.index, old, -1);
        }
        take_address(&mut self.index, &new, 1);
        self.vnics.insert(vnic_id.to_string(), new);
    }

    /// A VNIC of `instance` was made (the VNIC, its attachment and its private IP are in the
    /// world): its address and hostname label are taken.
    pub fn add_vnic(&mut self, instance: &str, attachment: &str, vnic_id: &str, private_ip: &str) {
        self.index_vnic(instance, attachment, vnic_id);
        self.index
            .private_ips_of
            .entry(vnic_id.to_string())
            .or_default()
            .push(private_ip.to_string());
        if let Some(v) = self.vnics.get(vnic_id) {
            take_address(&mut self.index, v, 1);
        }
    }

    /// File the VNIC `vnic_id` attached to `instance` by `attachment`.
    fn index_vnic(&mut self, instance: &str, attachment: &str, vnic_id: &str) {
        let ix = &mut self.index;
        ix.vnics_of
            .entry(instance.to_string())
            .or_default()
            .push(vnic_id.to_string());
        ix.attachments_of
            .entry(instance.to_string())
            .or_default()
            .push(attachment.to_string());
        ix.instance_of
            .insert(vnic_id.to_string(), instance.to_string());
        if let Some(v) = self.vnics.get(vnic_id) {
            for (by, key) in [
                (&mut ix.vnics_by_compartment, "compartmentId"),
                (&mut ix.vnics_by_subnet, "subnetId"),
            ] {
                by.entry(v[key].as_str().unwrap_or("").to_string())
                    .or_default()
                    .insert(vnic_id.to_string());
            }
        }
    }

    /// The VNIC attachments of `instance`.
    pub fn attachments_of(&self, instance: &str) -> impl Iterator<Item = &Value> + '_ {
        self.index
            .attachments_of
            .get(instance)
            .into_iter()
            .flatten()
            .filter_map(|id| self.vnic_attachments.get(id))
    }

    /// The VNICs made in `compartment`, or in `subnet` (ids).
    pub fn vnics_in_compartment(&self, compartment: &str) -> impl Iterator<Item = &String> + '_ {
        self.index
            .vnics_by_compartment
            .get(compartment)
            .into_iter()
            .flatten()
    }

    pub fn vnics_in_subnet(&self, subnet: &str) -> impl Iterator<Item = &String> + '_ {
        self.index.vnics_by_subnet.get(subnet).into_iter().flatten()
    }

    /// The instance the VNIC `vnic_id` is attached to, if it is not TERMINATED.
    pub fn live_instance_of(&self, vnic_id: &str) -> Option<&Record> {
        self.index
            .instance_of
            .get(vnic_id)
            .and_then(|i| self.instances.get(i))
            .filter(|i| i.state() != "TERMINATED")
    }

    /// The private IPs of the VNIC `vnic_id`.
    pub fn private_ips_of(&self, vnic_id: &str) -> impl Iterator<Item = &Value> + '_ {
        self.index
            .private_ips_of
            .get(vnic_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.private_ips.get(id))
    }

    /// The private IPs held in `subnet` (as numbers).
    pub fn used_ips(&self, subnet: &str) -> Option<&BTreeSet<u32>> {
        self.index.ips.get(subnet)
    }

    /// Whether a live VNIC in `subnet` has the hostname label `label` (case-insensitively).
    pub fn label_taken(&self, subnet: &str, label: &str) -> bool {
        self.index
            .labels
            .get(subnet)
            .is_some_and(|l| l.contains_key(&label.to_ascii_lowercase()))
    }

    /// Rebuild every index from the records (after loading or restoring a world).
    pub fn rebuild_index(&mut self) {
        self.index = Index::default();
        let mut due = BTreeSet::new();
        for (coll, map) in [
            (Coll::Instance, &self.instances),
            (Coll::Image, &self.images),
            (Coll::BootVolume, &self.boot_volumes),
            (Coll::BootVolumeAttachment, &self.boot_volume_attachments),
        ] {
            for (id, r) in map {
                if let Some(s) = r.steps.first() {
                    due.insert((s.at, coll, id.clone()));
                }
            }
        }
        self.index.due = due;
        for (id, r) in &self.instances {
            self.index
                .instances_by_compartment
                .entry(r.str("compartmentId").to_string())
                .or_default()
                .insert(id.clone());
        }
        let attachments: Vec<(String, String, String)> = self
            .vnic_attachments
            .iter()
            .filter_map(|(id, a)| {
                Some((
                    a["instanceId"].as_str()?.to_string(),
                    id.clone(),
                    a["vnicId"].as_str()?.to_string(),
                ))
            })
            .collect();
        for (id, p) in &self.private_ips {
            if let Some(vnic) = p["vnicId"].as_str() {
                self.index
                    .private_ips_of
                    .entry(vnic.to_string())
                    .or_default()
                    .push(id.clone());
            }
        }
        for (instance, attachment, vnic) in attachments {
            self.index_vnic(&instance, &attachment, &vnic);
            let live = self
                .instances
                .get(&instance)
                .is_some_and(|i| i.state() != "TERMINATED");
            if let (true, Some(v)) = (live, self.vnics.get(&vnic)) {
                take_address(&mut self.index, v, 1);
            }
        }
    }

    /// Apply every lifecycle step due by `now` (only the records that have one due).
    pub fn settle(&mut self, now: DateTime<Utc>) {
        #[cfg(debug_assertions)]
        self.check_index();
        while self.index.due.first().is_some_and(|first| first.0 <= now) {
            let (_, coll, id) = self.index.due.pop_first().expect("not empty");
            let Some(r) = self.record_mut(coll, &id) else {
                continue;
            };
            let was_terminated = r.state() == "TERMINATED";
            r.settle(now);
            let terminated = !was_terminated && r.state() == "TERMINATED";
            let next = r.steps.first().map(|s| s.at);
            if let Some(at) = next {
                self.index.due.insert((at, coll, id.clone()));
            }
            if coll == Coll::Instance && terminated {
                // A terminated instance's private IPs are released.
                for vnic in self.index.vnics_of.get(&id).cloned().unwrap_or_default() {
                    if let Some(v) = self.vnics.get(&vnic) {
                        take_address(&mut self.index, v, -1);
                    }
                }
            }
        }
        // Retry tokens expire after 24 hours (checked when looked up; purged hourly).
        if self
            .index
            .purged
            .is_none_or(|t| now - t >= ChronoDuration::hours(1))
        {
            self.retry_tokens
                .retain(|_, r| now - r.at < retry_token_lifetime());
            self.index.purged = Some(now);
        }
    }

    /// In debug builds, for worlds small enough to check on every request: every record with a
    /// next step is in the due index (a change that gave a record steps without scheduling them
    /// would freeze its lifecycle).
    #[cfg(debug_assertions)]
    fn check_index(&self) {
        let n = self.instances.len()
            + self.images.len()
            + self.boot_volumes.len()
            + self.boot_volume_attachments.len();
        if n > 1000 {
            return;
        }
        for (coll, map) in [
            (Coll::Instance, &self.instances),
            (Coll::Image, &self.images),
            (Coll::BootVolume, &self.boot_volumes),
            (Coll::BootVolumeAttachment, &self.boot_volume_attachments),
        ] {
            for (id, r) in map {
                if let Some(s) = r.steps.first() {
                    assert!(
                        self.index.due.contains(&(s.at, coll, id.clone())),
                        "{coll:?} {id} has a step at {} that is not scheduled",
                        s.at
                    );
                }
            }
        }
        for (c, ids) in &self.index.instances_by_compartment {
            for id in ids {
                assert_eq!(
                    self.instances.get(id).map(|r| r.str("compartmentId")),
                    Some(c.as_str()),
                    "instance {id} is filed under {c}"
                );
            }
        }
        let filed: usize = self
            .index
            .instances_by_compartment
            .values()
            .map(BTreeSet::len)
            .sum();
        assert_eq!(filed, self.instances.len(), "every instance is filed");
        // The network indexes hold every VNIC, attachment and private IP where its record says.
        let ix = &self.index;
        let has = |m: &HashMap<String, Vec<String>>, k: &str, id: &str| {
            m.get(k).is_some_and(|v| v.iter().any(|x| x == id))
        };
        let count = |m: &HashMap<String, Vec<String>>| m.values().map(Vec::len).sum::<usize>();
        for (id, a) in &self.vnic_attachments {
            let (instance, vnic) = (a["instanceId"].as_str(), a["vnicId"].as_str());
            assert!(
                has(&ix.attachments_of, instance.unwrap_or(""), id),
                "attachment {id} is indexed"
            );
            if let Some(vnic) = vnic {
                assert_eq!(ix.instance_of.get(vnic).map(String::as_str), instance);
            }
        }
        assert_eq!(count(&ix.attachments_of), self.vnic_attachments.len());
        for (id, p) in &self.private_ips {
            assert!(
                has(&ix.private_ips_of, p["vnicId"].as_str().unwrap_or(""), id),
                "private IP {id} is indexed"
            );
        }
        assert_eq!(count(&ix.private_ips_of), self.private_ips.len());
        for (by, key) in [
            (&ix.vnics_by_compartment, "compartmentId"),
            (&ix.vnics_by_subnet, "subnetId"),
        ] {
            for (id, v) in &self.vnics {
                assert!(
                    by.get(v[key].as_str().unwrap_or(""))
                        .is_some_and(|s| s.contains(id)),
                    "VNIC {id} is filed by {key}"
                );
            }
            assert_eq!(
                by.values().map(BTreeSet::len).sum::<usize>(),
                self.vnics.len()
            );
        }
    }

    pub fn load(path: &Path) -> Result<World, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str::<World>(&text)
                .map(|mut w| {
                    w.rebuild_index();
                    w
                })
                .map_err(|e| format!("`{}` is not emulator data: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(World::default()),
            Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
        }
    }

    /// Atomic write: temp file in the same directory, fsync, rename.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(
            &mut tmp,
            serde_json::to_string(self)
                .expect("world serialises")
                .as_bytes(),
        )?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Count the VNIC `v`'s private IP and hostname label in (`+1`) or out (`-1`) of its subnet.
fn take_address(index: &mut Index, v: &Value, by: i32) {
    let Some(subnet) = v["subnetId"].as_str() else {
        return;
    };
    if let Some(ip) = v["privateIp"]
        .as_str()
        .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
    {
        let ips = index.ips.entry(subnet.to_string()).or_default();
        if by > 0 {
            ips.insert(u32::from(ip));
        } else {
            ips.remove(&u32::from(ip));
        }
    }
    if let Some(label) = v["hostnameLabel"].as_str() {
        let labels = index.labels.entry(subnet.to_string()).or_default();
        let n = labels.entry(label.to_ascii_lowercase()).or_default();
        if by > 0 {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                labels.remove(&label.to_ascii_lowercase());
            }
        }
    }
}
