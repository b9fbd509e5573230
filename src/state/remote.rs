//! The remote store: the state is the object `<prefix><env>.json` in an OCI Object Storage bucket,
//! so every CI runner shares one state.
//!
//! The protocol:
//! - Lock: the object `<key>.lock`, created with `If-None-Match: *` and holding who/host/pid/
//!   operation/since; released with `DELETE` + `If-Match` of the etag it was created with, so a
//!   lock taken over after `kiln force-unlock` is never deleted by its old holder.
//! - Writes: `PUT` with `If-Match` of the etag last read or written by this process (the first
//!   write of a new state uses `If-None-Match: *`). A 412 means another writer: kiln stops and says
//!   so, and never overwrites. A write whose answer was lost and whose retry got a 412 is checked by
//!   reading the object back: if it holds exactly the bytes sent, the write landed.
//! - Before every write the version being replaced is copied to `<key>.backup`, so one bad write
//!   is recoverable.
//! - Objects are replaced whole by PutObject, so a failed or interrupted write never leaves a
//!   half-written state.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;

use super::{parse, serialise, LockInfo, State, StateError};
use crate::oci::object_storage::{ObjectStorage, Precondition};
use crate::oci::{OciError, RetryPolicy};

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
}

/// A held lock object.
pub(super) struct ObjectLock {
    store: RemoteStore,
    etag: String,
}

impl ObjectLock {
    /// Delete the lock object if it is still ours.
    pub(super) async fn release(self) -> Result<(), StateError> {
        release(&self.store, &self.etag).await
    }

    /// Release from a destructor: on a thread of its own with its own runtime and connections,
    /// so it works while the caller's runtime is busy or shutting down.
    // A destructor has no caller to return a failure to: it warns on stderr directly.
    #[allow(clippy::disallowed_methods)]
    pub(super) fn release_blocking(self) {
        let ObjectLock { store, etag } = self;
        let detached = RemoteStore {
            os: ObjectStorage::new(store.os.client().detached(
                Duration::from_secs(10),
                RetryPolicy {
                    max_attempts: 4,
                    max_elapsed: Duration::from_secs(20),
                    base_delay: Duration::from_millis(100),
                    max_delay: Duration::from_secs(2),
                },
            )),
            ..store
        };
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime starts");
            rt.block_on(release(&detached, &etag))
        })
        .join();
        match joined {
            Ok(Ok(())) => {}
            // Written without `eprintln!`, which would panic on a closed stderr.
            Ok(Err(e)) => {
                let _ = writeln!(std::io::stderr(), "warning: could not release the state lock: {e}; if it stays, run `kiln force-unlock`");
            }
            Err(_) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: could not release the state lock; if it stays, run `kiln force-unlock`"
                );
            }
        }
    }
}

async fn release(store: &RemoteStore, etag: &str) -> Result<(), StateError> {
    let key = store.lock_key();
    let delete = || {
        store
            .os
            .delete_object(&store.namespace, &store.bucket, &key, Some(etag))
    };
    let mut result = delete().await.map(|_| ());
    // A 401 is about the credentials or the clock, not the lock: one freshly signed try more (its
    // 404 means the first one went through after all).
    if matches!(&result, Err(e) if e.status == Some(401)) {
        result = match delete().await {
            Err(e) if e.status == Some(404) => Ok(()),
            r => r.map(|_| ()),
        };
    }
    match result {
        Ok(()) => Ok(()),
        // Someone force-unlocked it and another kiln holds it now: not ours to delete.
        Err(e) if e.is_precondition_failed() => {
            tracing::warn!("the state lock was taken over by another kiln; leaving it");
            Ok(())
        }
        Err(e) => Err(store.err(e)),
    }
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
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "objectstorage://{}/{}/{}",
            self.namespace, self.bucket, self.key
        )
    }

    fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
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

    /// `Ok(Ok(lock))`, or `Ok(Err(holder))` when another kiln holds the lock object.
    pub(super) async fn try_lock(
        &self,
        info: &LockInfo,
    ) -> Result<Result<ObjectLock, String>, StateError> {
        let body = serde_json::to_vec_pretty(info).expect("lock info serialises");
        let put = self
            .os
            .put_object(
                &self.namespace,
                &self.bucket,
                &self.lock_key(),
                body,
                JSON,
                &Precondition::IfAbsent,
            )
            .await;
        match put {
            Ok(etag) => Ok(Ok(ObjectLock {
                store: self.clone(),
                etag,
            })),
            Err(e) if e.is_precondition_failed() => match self.lock_holder().await? {
                // Our own create landed; only its answer was lost.
                Some((holder, etag)) if holder.id == info.id => Ok(Ok(ObjectLock {
                    store: self.clone(),
                    etag,
                })),
                Some((holder, _)) => Ok(Err(holder.describe())),
                None => Ok(Err("a kiln that just released it".into())),
            },
            Err(e) => Err(self.err(e)),
        }
    }

    /// The lock object's record and etag, if there is one.
    pub(super) async fn lock_holder(&self) -> Result<Option<(LockInfo, String)>, StateError> {
        let got = self
            .os
            .get_object(&self.namespace, &self.bucket, &self.lock_key())
            .await
            .map_err(|e| self.err(e))?;
        Ok(got.map(|obj| {
            let info = serde_json::from_slice::<LockInfo>(&obj.body).unwrap_or_else(|_| LockInfo {
                id: "(unreadable)".into(),
                who: "unknown".into(),
                host: "unknown".into(),
                pid: 0,
                operation: "(an unreadable lock record)".into(),
                since: Utc::now(),
            });
            (info, obj.etag)
        }))
    }

    /// Delete the lock object if it is still the version `etag` (force-unlock).
    pub(super) async fn remove_lock(&self, etag: &str) -> Result<(), StateError> {
        match self
            .os
            .delete_object(&self.namespace, &self.bucket, &self.lock_key(), Some(etag))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_precondition_failed() => Err(StateError::Locked {
                path: self.describe(),
                holder: "a kiln that took the lock while it was being removed; nothing was removed"
                    .into(),
            }),
            Err(e) => Err(self.err(e)),
        }
    }
}
