//! The remote store: the state is the object `<prefix><env>.json` in an OCI Object Storage bucket,
//! so every CI runner shares one state.
//!
//! The protocol:
//! - Lock: the object `<key>.lock`, created with `If-None-Match: *` and holding who/host/pid/
//!   operation/since and a lease: its length and when it was last renewed. While kiln holds the
//!   lock a background task renews the lease ([`Lease`]: 2 minutes, renewed every 30 s) with a
//!   `PUT` + `If-Match` of the lock object's etag, so a renewal never revives a lock someone else
//!   took. Nothing else tells a live holder on another machine from a dead one: `kiln
//!   force-unlock` refuses a holder whose lease is fresh (unless `--force`), and a lock whose
//!   lease ran out — its holder stopped renewing — is removed by `force-unlock`, or taken over by
//!   the next kiln with a `PUT` + `If-Match` of the etag it read, with a warning naming the
//!   holder and when it stopped renewing. Either way the state itself stays guarded by the
//!   `If-Match` of every write: an old holder that wakes up finds its writes refused. The lock is
//!   released with `DELETE` + `If-Match` of the etag it was last written with, so a lock taken
//!   over is never deleted by its old holder.
//! - Writes: `PUT` with `If-Match` of the etag last read or written by this process (the first
//!   write of a new state uses `If-None-Match: *`). A 412 means another writer: kiln stops and says
//!   so, and never overwrites. A write whose answer was lost and whose retry got a 412 is checked by
//!   reading the object back: if it holds exactly the bytes sent, the write landed.
//! - Before every write the version being replaced is copied to `<key>.backup`, so one bad write
//!   is recoverable.
//! - Objects are replaced whole by PutObject, so a failed or interrupted write never leaves a
//!   half-written state.
//!
//! This module holds the store and the state object's reads and writes; `lock` the lock object
//! and its lease.

use std::sync::{Arc, Mutex};

use super::{parse, serialise, State, StateError};
use crate::oci::object_storage::{ObjectStorage, Precondition};
use crate::oci::OciError;

mod lock;
pub(super) use lock::ObjectLock;
pub use lock::{Clock, Lease, LeaseStanding};

const JSON: &str = "application/json";

/// The version of the state object this process last read or wrote.
#[derive(Clone, Debug)]
struct Known {
    /// `None`: the object did not exist.
    etag: Option<String>,
    bytes: Vec<u8>,
    /// The lineage and serial in `bytes`.
    version: Option<(String, u64)>,
}

/// The Object Storage store.
#[derive(Clone, Debug)]
pub struct RemoteStore {
    os: ObjectStorage,
    pub namespace: String,
    pub bucket: String,
    /// The state object's name: `<prefix><env>.json`.
    pub key: String,
    last: Arc<Mutex<Option<Known>>>,
    lease: Lease,
    clock: Clock,
}

impl RemoteStore {
    /// The state of environment `env`: `<prefix><env>.json` in `namespace`/`bucket`.
    pub fn new(os: ObjectStorage, namespace: &str, bucket: &str, prefix: &str, env: &str) -> Self {
        RemoteStore {
            os,
            namespace: namespace.to_string(),
            bucket: bucket.to_string(),
            key: format!("{prefix}{env}.json"),
            last: Arc::new(Mutex::new(None)),
            lease: Lease::default(),
            clock: Clock::default(),
        }
    }

    /// The store of environment `env` under the same prefix (this one is environment `own`'s).
    pub fn sibling(&self, own: &str, env: &str) -> RemoteStore {
        let prefix = self
            .key
            .strip_suffix(&format!("{own}.json"))
            .unwrap_or_default();
        RemoteStore::new(self.os.clone(), &self.namespace, &self.bucket, prefix, env)
    }

    /// The same store with another lease (tests: a short one).
    pub fn with_lease(mut self, lease: Lease) -> Self {
        self.lease = lease;
        self
    }

    /// The same store with another clock (tests: one they move).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn describe(&self) -> String {
        format!(
            "objectstorage://{}/{}/{}",
            self.namespace, self.bucket, self.key
        )
    }

    fn backup_key(&self) -> String {
        format!("{}.backup", self.key)
    }

    fn err(&self, source: OciError) -> StateError {
        StateError::Remote {
            path: self.describe(),
            source,
        }
    }

    /// The lineage and serial of the version this process read or wrote last, if it did.
    pub(super) fn cached_version(&self) -> Option<(String, u64)> {
        self.last
            .lock()
            .expect("remote state cache")
            .as_ref()
            .and_then(|k| k.version.clone())
    }

    fn remember(&self, known: Known) {
        *self.last.lock().expect("remote state cache") = Some(known);
    }

    fn parse_bytes(&self, bytes: &[u8]) -> Result<State, StateError> {
        let text = std::str::from_utf8(bytes).map_err(|_| StateError::Corrupt {
            path: self.describe(),
            reason: "not UTF-8".into(),
        })?;
        parse(&self.describe(), text)
    }

    pub(super) async fn load(&self) -> Result<Option<State>, StateError> {
        let got = self
            .os
            .get_object(&self.namespace, &self.bucket, &self.key)
            .await
            .map_err(|e| self.err(e))?;
        match got {
            Some(obj) => {
                let state = self.parse_bytes(&obj.body)?;
                self.remember(Known {
                    etag: Some(obj.etag),
                    bytes: obj.body,
                    version: Some((state.lineage.clone(), state.serial)),
                });
                Ok(Some(state))
            }
            None => {
                self.remember(Known {
                    etag: None,
                    bytes: Vec::new(),
                    version: None,
                });
                Ok(None)
            }
        }
    }

    /// Compare-and-swap `state` over the version last read or written.
    pub(super) async fn write(&self, state: &State) -> Result<(), StateError> {
        let cached = self.last.lock().expect("remote state cache").clone();
        let known = match cached {
            Some(k) => k,
            None => {
                self.load().await?;
                self.last
                    .lock()
                    .expect("remote state cache")
                    .clone()
                    .expect("load remembers")
            }
        };
        let (ns, bucket) = (&self.namespace, &self.bucket);
        if known.etag.is_some() {
            self.os
                .put_object(
                    ns,
                    bucket,
                    &self.backup_key(),
                    known.bytes.clone(),
                    JSON,
                    &Precondition::None,
                )
                .await
                .map_err(|e| self.err(e))?;
        }
        let bytes = serialise(state);
        let version = Some((state.lineage.clone(), state.serial));
        let precondition = match &known.etag {
            Some(etag) => Precondition::IfMatch(etag.clone()),
            None => Precondition::IfAbsent,
        };
        match self
            .os
            .put_object(ns, bucket, &self.key, bytes.clone(), JSON, &precondition)
            .await
        {
            Ok(etag) => {
                self.remember(Known {
                    etag: Some(etag),
                    bytes,
                    version,
                });
                Ok(())
            }
            Err(e) if e.is_precondition_failed() => {
                let current = self
                    .os
                    .get_object(ns, bucket, &self.key)
                    .await
                    .map_err(|e| self.err(e))?;
                match current {
                    // Our own write landed; only its answer was lost.
                    Some(cur) if cur.body == bytes => {
                        self.remember(Known {
                            etag: Some(cur.etag),
                            bytes,
                            version,
                        });
                        Ok(())
                    }
                    other => {
                        let found = other.and_then(|o| self.parse_bytes(&o.body).ok());
                        let (lineage, serial) =
                            known.version.unwrap_or_else(|| ("(none)".into(), 0));
                        Err(StateError::Conflict {
                            path: self.describe(),
                            lineage,
                            serial,
                            found_lineage: found
                                .as_ref()
                                .map(|s| s.lineage.clone())
                                .unwrap_or_else(|| "(none)".into()),
                            found_serial: found.as_ref().map(|s| s.serial).unwrap_or(0),
                        })
                    }
                }
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Whether the object holds exactly `bytes` now (a write whose success was not reported);
    /// if so, its etag becomes the version this process knows.
    pub(super) async fn holds(&self, bytes: &[u8]) -> bool {
        let Ok(Some(cur)) = self
            .os
            .get_object(&self.namespace, &self.bucket, &self.key)
            .await
        else {
            return false;
        };
        if cur.body != bytes {
            return false;
        }
        let version = self
            .parse_bytes(&cur.body)
            .ok()
            .map(|s| (s.lineage, s.serial));
        self.remember(Known {
            etag: Some(cur.etag),
            bytes: cur.body,
            version,
        });
        true
    }
}
