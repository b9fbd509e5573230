//! One record of the emulator's world: a resource's JSON, its version (hence its etag) and its
//! lifecycle timeline ([`Record`], [`Step`]), and a work request whose status follows the clock
//! ([`WorkRequestRec`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::rfc3339;

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
