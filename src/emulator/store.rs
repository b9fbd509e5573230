//! The emulator's world: instances, images, boot volumes, work requests, retry tokens. Lifecycles
//! are evaluated lazily: a resource records a timeline of (state, from-time) steps, and every read
//! first settles it to the current time — so timing survives persistence and restarts, and every
//! transition bumps the resource's version, hence its etag.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// A future lifecycle step: at `at`, the state becomes `state`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub at: DateTime<Utc>,
    pub state: String,
}

/// One resource (instance, image, boot volume, attachment): its JSON, its version (etag), its
/// pending steps, and what the emulator knows of it that is not on the wire (`meta`: an image's
/// architecture, an instance's boot volume).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub body: Map<String, Value>,
    pub version: u64,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub meta: Map<String, Value>,
}

impl Record {
    pub fn new(body: Map<String, Value>) -> Record {
        Record {
            body,
            version: 1,
            steps: Vec::new(),
            meta: Map::new(),
        }
    }

    /// A string the emulator keeps beside the wire JSON.
    pub fn meta_str(&self, k: &str) -> Option<&str> {
        self.meta.get(k).and_then(Value::as_str)
    }

    /// A string field of the wire JSON.
    pub fn str(&self, k: &str) -> &str {
        self.body.get(k).and_then(Value::as_str).unwrap_or("")
    }

    pub fn state(&self) -> &str {
        self.body
            .get("lifecycleState")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn id(&self) -> &str {
        self.body.get("id").and_then(Value::as_str).unwrap_or("")
    }

    /// Apply every step due by `now`; each is a mutation (new etag).
    pub fn settle(&mut self, now: DateTime<Utc>) -> bool {
        let mut changed = false;
        while let Some(step) = self.steps.first() {
            if step.at > now {
                break;
            }
            let step = self.steps.remove(0);
            self.body
                .insert("lifecycleState".into(), Value::String(step.state));
            self.version += 1;
            changed = true;
        }
        changed
    }

    /// Set the state now and schedule the rest.
    pub fn transition(&mut self, now_state: &str, steps: Vec<Step>) {
        self.body.insert(
            "lifecycleState".into(),
            Value::String(now_state.to_string()),
        );
        self.steps = steps;
        self.version += 1;
    }

    pub fn touch(&mut self) {
        self.version += 1;
    }

    /// When the last scheduled step happens (now if none).
    pub fn settles_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.steps.last().map(|s| s.at).unwrap_or(now)
    }

    /// The etag: opaque, different for every version of every resource.
    pub fn etag(&self) -> String {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(format!("{}#{}", self.id(), self.version).as_bytes());
        h[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A work request: its status follows the resource's timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkRequestRec {
    pub id: String,
    pub operation_type: String,
    pub compartment_id: String,
    pub resources: Vec<Value>,
    pub accepted: DateTime<Utc>,
    pub finishes: DateTime<Utc>,
    #[serde(default)]
    pub failed: Option<String>,
}

impl WorkRequestRec {
    pub fn to_json(&self, now: DateTime<Utc>) -> Value {
        let total = (self.finishes - self.accepted).num_milliseconds().max(1) as f64;
        let done = (now - self.accepted).num_milliseconds() as f64;
        let (status, pct, started, finished) = if now >= self.finishes {
            (
                if self.failed.is_some() {
                    "FAILED"
                } else {
                    "SUCCEEDED"
                },
                100.0,
                Some(self.accepted),
                Some(self.finishes),
            )
        } else if done <= 0.0 {
            ("ACCEPTED", 0.0, None, None)
        } else {
            (
                "IN_PROGRESS",
                ((done / total) * 100.0).clamp(0.0, 99.0).floor(),
                Some(self.accepted),
                None,
            )
        };
        let mut v = json!({
            "id": self.id,
            "operationType": self.operation_type,
            "status": status,
            "compartmentId": self.compartment_id,
            "resources": self.resources,
            "percentComplete": pct,
            "timeAccepted": rfc3339(self.accepted),
        });
        if let Some(t) = started {
            v["timeStarted"] = json!(rfc3339(t));
        }
        if let Some(t) = finished {
            v["timeFinished"] = json!(rfc3339(t));
        }
        v
    }
}

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
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl World {
    pub fn settle(&mut self, now: DateTime<Utc>) {
        for r in self
            .instances
            .values_mut()
            .chain(self.images.values_mut())
            .chain(self.boot_volumes.values_mut())
            .chain(self.boot_volume_attachments.values_mut())
        {
            r.settle(now);
        }
        // Retry tokens expire after 24 hours.
        self.retry_tokens
            .retain(|_, r| now - r.at < ChronoDuration::hours(24));
    }

    pub fn load(path: &Path) -> Result<World, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
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
