//! The remote store's lock: the object `<key>.lock`, taken with `If-None-Match: *` (or over a
//! lapsed lease with `If-Match`), its lease ([`Lease`]) renewed by a background task while it is
//! held ([`ObjectLock`]), read by `force-unlock` ([`LeaseStanding`]), and released with the
//! `If-Match` of the etag it was last written with. The protocol is in the module above.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{RemoteStore, JSON};
use crate::oci::object_storage::{ObjectStorage, Precondition};
use crate::oci::{OciError, RetryPolicy};
use crate::state::{LockInfo, StateError};

/// The lease of a remote lock: how long a lock object holds without a renewal, and how often
/// its holder renews it (well within the length, so that a renewal delayed by retries or a
/// slow network does not let it run out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub length: Duration,
    pub renew_every: Duration,
}

impl Default for Lease {
    /// 2 minutes, renewed every 30 s: a holder must miss three renewals in a row before another
    /// kiln may take its lock; a kiln that died leaves a lock that runs out 2 minutes after.
    fn default() -> Self {
        Lease {
            length: Duration::from_secs(120),
            renew_every: Duration::from_secs(30),
        }
    }
}

/// The clock leases are stamped and judged by (tests move it; kiln uses the system clock).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    pub fn new(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(Utc::now)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// How a lock record's lease stands now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseStanding {
    /// Renewed recently: its holder runs (or died less than a lease ago). Runs until then.
    Fresh(DateTime<Utc>),
    /// Not renewed for a whole lease: its holder stopped renewing at (the record's
    /// `renewed_at`); it ran out at the second time.
    Lapsed {
        renewed_at: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    /// A record without a lease (a kiln before leases, or unreadable): nothing tells.
    Unknown,
}

/// A held lock object, and the task renewing its lease.
pub(in crate::state) struct ObjectLock {
    store: RemoteStore,
    /// The lock id of the record (ours).
    id: String,
    renewal: Arc<Mutex<Renewal>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What the renewal task and the release share.
#[derive(Debug)]
struct Renewal {
    /// The etag of the lock object as this kiln last wrote it.
    etag: String,
    /// Released: renew no more.
    stopped: bool,
}

impl ObjectLock {
    /// The lock `record` is held as the object version `etag`: renew its lease until released.
    fn start(store: &RemoteStore, record: LockInfo, etag: String) -> ObjectLock {
        let renewal = Arc::new(Mutex::new(Renewal {
            etag,
            stopped: false,
        }));
        let task = tokio::spawn(renew(store.clone(), record.clone(), renewal.clone()));
        ObjectLock {
            store: store.clone(),
            id: record.id,
            renewal,
            task: Some(task),
        }
    }

    /// Stop renewing; the etag last written.
    fn stop(&mut self) -> String {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let mut r = self.renewal.lock().expect("lock renewal");
        r.stopped = true;
        r.etag.clone()
    }

    /// Delete the lock object if it is still ours.
    pub(in crate::state) async fn release(mut self) -> Result<(), StateError> {
        let etag = self.stop();
        release(&self.store, &etag, &self.id).await
    }

    /// Release from a destructor: on a thread of its own with its own runtime and connections,
    /// so it works while the caller's runtime is busy or shutting down.
    // A destructor has no caller to return a failure to: it warns on stderr directly.
    #[allow(clippy::disallowed_methods)]
    pub(in crate::state) fn release_blocking(mut self) {
        let etag = self.stop();
        let id = self.id.clone();
        let store = &self.store;
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
            ..store.clone()
        };
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime starts");
            rt.block_on(release(&detached, &etag, &id))
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

impl Drop for ObjectLock {
    /// A lock dropped unreleased (its kiln is dying) is renewed no more: it runs out.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The renewal task: every `renew_every`, rewrite the lock record with `renewed_at` now, on the
/// condition that the object is still the version this kiln wrote last (`If-Match`). A refusal
/// means the lock was removed or taken over (after its lease ran out, or by `force-unlock
/// --force`): the task stops, with a warning — the state's own `If-Match` refuses this kiln's
/// later writes. Other errors are retried at the next renewal.
async fn renew(store: RemoteStore, mut record: LockInfo, renewal: Arc<Mutex<Renewal>>) {
    loop {
        tokio::time::sleep(store.lease.renew_every).await;
        let etag = {
            let r = renewal.lock().expect("lock renewal");
            if r.stopped {
                return;
            }
            r.etag.clone()
        };
        record.renewed_at = Some(store.clock.now());
        let body = serde_json::to_vec_pretty(&record).expect("lock info serialises");
        let put = store
            .os
            .put_object(
                &store.namespace,
                &store.bucket,
                &store.lock_key(),
                body,
                JSON,
                &Precondition::IfMatch(etag),
            )
            .await;
        match put {
            Ok(etag) => {
                let mut r = renewal.lock().expect("lock renewal");
                if r.stopped {
                    return;
                }
                r.etag = etag;
            }
            Err(e) if e.is_precondition_failed() || e.status == Some(404) => {
                tracing::warn!(
                    "the state lock on {} was removed or taken over by another kiln; this kiln's later state writes will be refused",
                    store.describe()
                );
                return;
            }
            Err(e) => tracing::warn!(
                "could not renew the lease of the state lock on {} (trying again in {} s): {e}",
                store.describe(),
                store.lease.renew_every.as_secs()
            ),
        }
    }
}

/// Delete the lock object if it is still ours: the version `etag`, or — when a renewal landed
/// after the etag was read (its answer lost in a release) — any version holding our lock id.
/// A 404 is believed only once a read agrees: an answer that says "gone" while our lock is still
/// there (a proxy's, or a fault the suite injects) would leave the state locked until someone
/// runs `force-unlock` (fault suite, remote state: a 404 to the release's DELETE).
async fn release(store: &RemoteStore, etag: &str, id: &str) -> Result<(), StateError> {
    let Err(e) = delete_lock(store, etag).await else {
        return Ok(());
    };
    // Not released as asked — a changed etag (412), a lock already gone (404), or a refusal that
    // need not last (a 409 Conflict, a 401 before the token's refresh): the lock is read again.
    // Still ours: deleted with the etag it has now (a second failure is the answer). Gone: there
    // is nothing left to release, unless the etag had changed (someone took it meanwhile).
    // Another's: it was taken over. (The fault suite's remote scenario, a 409 at the release.)
    let changed = e.is_precondition_failed();
    match store.lock_holder().await? {
        Some((holder, etag)) if holder.id == id => match delete_lock(store, &etag).await {
            Err(e) if e.is_precondition_failed() => taken_over(),
            Err(e) if e.status == Some(404) => Ok(()),
            r => r.map_err(|e| store.err(e)),
        },
        None if !changed => Ok(()),
        _ => taken_over(),
    }
}

fn taken_over() -> Result<(), StateError> {
    tracing::warn!("the state lock was taken over by another kiln; leaving it");
    Ok(())
}

/// `DELETE` of the lock object with `If-Match: etag`.
async fn delete_lock(store: &RemoteStore, etag: &str) -> Result<(), OciError> {
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
    result
}

impl RemoteStore {
    /// How `holder`'s lease stands on this store's clock.
    pub fn lease_standing(&self, holder: &LockInfo) -> LeaseStanding {
        match (holder.renewed_at, holder.lease_until()) {
            (Some(renewed_at), Some(until)) if until <= self.clock.now() => {
                LeaseStanding::Lapsed { renewed_at, until }
            }
            (_, Some(until)) => LeaseStanding::Fresh(until),
            _ => LeaseStanding::Unknown,
        }
    }

    /// `info` with this store's lease, renewed now.
    fn leased(&self, info: &LockInfo) -> LockInfo {
        LockInfo {
            lease_seconds: Some(self.lease.length.as_secs().max(1)),
            renewed_at: Some(self.clock.now()),
            ..info.clone()
        }
    }

    fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }

    /// `Ok(Ok(lock))`, or `Ok(Err(holder))` when another kiln holds the lock object. A lock
    /// whose lease ran out is taken over (a conditional `PUT` on the version read), with a
    /// warning naming its holder.
    pub(in crate::state) async fn try_lock(
        &self,
        info: &LockInfo,
    ) -> Result<Result<ObjectLock, String>, StateError> {
        let record = self.leased(info);
        let body = serde_json::to_vec_pretty(&record).expect("lock info serialises");
        let (ns, bucket, key) = (&self.namespace, &self.bucket, self.lock_key());
        let put = self
            .os
            .put_object(
                ns,
                bucket,
                &key,
                body.clone(),
                JSON,
                &Precondition::IfAbsent,
            )
            .await;
        match put {
            Ok(etag) => Ok(Ok(ObjectLock::start(self, record, etag))),
            Err(e) if e.is_precondition_failed() => match self.lock_holder().await? {
                // Our own create landed; only its answer was lost.
                Some((holder, etag)) if holder.id == info.id => {
                    Ok(Ok(ObjectLock::start(self, record, etag)))
                }
                Some((holder, etag)) => match self.lease_standing(&holder) {
                    LeaseStanding::Lapsed { renewed_at, until } => {
                        let taken = self
                            .os
                            .put_object(ns, bucket, &key, body, JSON, &Precondition::IfMatch(etag))
                            .await;
                        match taken {
                            Ok(etag) => {
                                tracing::warn!(
                                    "taking over the state lock of {}: it stopped renewing its lease at {} (the lease ran out at {})",
                                    holder.describe(),
                                    renewed_at.format("%Y-%m-%d %H:%M:%S UTC"),
                                    until.format("%Y-%m-%d %H:%M:%S UTC")
                                );
                                Ok(Ok(ObjectLock::start(self, record, etag)))
                            }
                            // Renewed or taken by another kiln meanwhile.
                            Err(e) if e.is_precondition_failed() || e.status == Some(404) => {
                                Ok(Err(holder.describe()))
                            }
                            Err(e) => Err(self.err(e)),
                        }
                    }
                    _ => Ok(Err(holder.describe())),
                },
                None => Ok(Err("a kiln that just released it".into())),
            },
            Err(e) => Err(self.err(e)),
        }
    }

    /// The lock object's record and etag, if there is one.
    pub(in crate::state) async fn lock_holder(
        &self,
    ) -> Result<Option<(LockInfo, String)>, StateError> {
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
                lease_seconds: None,
                renewed_at: None,
            });
            (info, obj.etag)
        }))
    }

    /// Delete the lock object if it is still the version `etag` (force-unlock).
    pub(in crate::state) async fn remove_lock(&self, etag: &str) -> Result<(), StateError> {
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
