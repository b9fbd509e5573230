//! The store dispatch: [`StateStore`] is the one seam in front of the local file store, the remote
//! Object Storage store and the in-memory store ([`MemoryStore`], for tests). It takes the lock
//! (waiting with backoff), loads, and saves with compare-and-swap and a read-back after an
//! ambiguous failure; `force-unlock` ([`Unlocked`]) is decided here from each store's lock facts.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::lock::Held;
use super::{remote, serialise};
use super::{LocalStore, LockInfo, RemoteStore, State, StateError, StateLock};
use crate::failpoint;

/// A lock `kiln force-unlock` removed.
#[derive(Clone, Debug, PartialEq)]
pub struct Unlocked {
    pub holder: LockInfo,
    /// A remote lock whose lease had run out: when its holder last renewed it (it stopped
    /// renewing then). `None`: a local lock, or one removed with `--force`.
    pub stopped_renewing: Option<DateTime<Utc>>,
}

/// An in-memory store (tests).
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<Option<State>>>,
    lock: Arc<Mutex<Option<LockInfo>>>,
}

/// Where state lives.
// One per run (cloned a few times), so its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum StateStore {
    Local(LocalStore),
    Remote(RemoteStore),
    Memory(MemoryStore),
}

/// Whether `stored` (`None`: no state) is the state (`lineage`, `serial`) a write expects —
/// serial 0 expects no state (or that one).
pub(super) fn is_version(stored: Option<&(String, u64)>, lineage: &str, serial: u64) -> bool {
    match stored {
        None => serial == 0,
        Some((l, s)) => l == lineage && *s == serial,
    }
}

/// Check an environment name before it becomes part of a path or an object name
/// ([`crate::env_name`]).
pub fn validate_env(env: &str) -> Result<(), StateError> {
    if crate::env_name::is_valid(env) {
        Ok(())
    } else {
        Err(StateError::BadEnv {
            env: env.to_string(),
        })
    }
}

pub(super) fn injected(path: String, name: &'static str, fault: failpoint::Fault) -> StateError {
    StateError::Write {
        path,
        source: failpoint::io_error(name, fault),
    }
}

impl StateStore {
    /// `<dir>/state/<env>.json`, or `<state_dir>/<env>.json`.
    pub fn local(
        manifest_dir: &Path,
        state_dir: Option<&Path>,
        env: &str,
    ) -> Result<StateStore, StateError> {
        validate_env(env)?;
        let dir = state_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| manifest_dir.join("state"));
        Ok(StateStore::Local(LocalStore {
            path: dir.join(format!("{env}.json")),
        }))
    }

    /// The store of environment `env` beside this one (of environment `own`): the same
    /// directory, or the same bucket and prefix. Read, never written: a promotion reads another
    /// environment's snapshot (`None`: an in-memory store has no neighbours).
    pub fn sibling(&self, own: &str, env: &str) -> Result<Option<StateStore>, StateError> {
        validate_env(env)?;
        Ok(match self {
            StateStore::Local(l) => Some(StateStore::Local(LocalStore {
                path: l.path.with_file_name(format!("{env}.json")),
            })),
            StateStore::Remote(r) => Some(StateStore::Remote(r.sibling(own, env))),
            StateStore::Memory(_) => None,
        })
    }

    pub fn memory() -> StateStore {
        StateStore::Memory(MemoryStore::default())
    }

    /// Where the state is, for messages: a path, or `objectstorage://NAMESPACE/BUCKET/OBJECT`.
    pub fn describe(&self) -> String {
        match self {
            StateStore::Local(l) => l.path.display().to_string(),
            StateStore::Remote(r) => r.describe(),
            StateStore::Memory(_) => "(memory)".into(),
        }
    }

    /// Take the lock, waiting up to `timeout`; then fail naming the holder.
    pub async fn lock(&self, info: LockInfo, timeout: Duration) -> Result<StateLock, StateError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            if let Some(fault) = failpoint::cross(failpoint::STATE_LOCK) {
                return Err(injected(self.describe(), failpoint::STATE_LOCK, fault));
            }
            match self.try_lock(&info).await? {
                Ok(lock) => return Ok(lock),
                Err(holder) => {
                    if start.elapsed() >= timeout {
                        return Err(StateError::Locked {
                            path: self.describe(),
                            holder,
                        });
                    }
                    tokio::time::sleep(delay.min(timeout.saturating_sub(start.elapsed()))).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// `Ok(Ok(lock))`, or `Ok(Err(holder))` when someone else holds it.
    async fn try_lock(&self, info: &LockInfo) -> Result<Result<StateLock, String>, StateError> {
        Ok(match self {
            StateStore::Memory(m) => {
                let mut held = m.lock.lock().expect("memory lock");
                if let Some(h) = held.as_ref() {
                    return Ok(Err(h.describe()));
                }
                *held = Some(info.clone());
                Ok(StateLock::new(info.clone(), Held::Memory(m.lock.clone())))
            }
            StateStore::Local(l) => l
                .try_lock(info)?
                .map(|f| StateLock::new(info.clone(), Held::Local(f))),
            StateStore::Remote(r) => r
                .try_lock(info)
                .await?
                .map(|o| StateLock::new(info.clone(), Held::Remote(o))),
        })
    }

    /// The current holder of the lock, if any (a record without a live holder is reported too).
    pub async fn lock_holder(&self) -> Result<Option<LockInfo>, StateError> {
        match self {
            StateStore::Memory(m) => Ok(m.lock.lock().expect("memory lock").clone()),
            StateStore::Local(l) => Ok(l.lock_holder()),
            StateStore::Remote(r) => Ok(r.lock_holder().await?.map(|(info, _)| info)),
        }
    }

    /// Remove a lock record whose holder is gone. With `expected_id`, only that lock. A holder
    /// that may still run is refused unless `force`: a local one holding the OS lock, a remote
    /// one whose lease is fresh (or records none).
    pub async fn force_unlock(
        &self,
        expected_id: Option<&str>,
        force: bool,
    ) -> Result<Option<Unlocked>, StateError> {
        let check = |holder: &Option<LockInfo>| -> Result<(), StateError> {
            if let (Some(h), Some(id)) = (holder, expected_id) {
                if h.id != id {
                    return Err(StateError::Locked {
                        path: self.describe(),
                        holder: format!("{} — not lock id {id}", h.describe()),
                    });
                }
            }
            Ok(())
        };
        let unlocked = |holder: LockInfo| Unlocked {
            holder,
            stopped_renewing: None,
        };
        match self {
            StateStore::Memory(m) => {
                let holder = m.lock.lock().expect("memory lock").clone();
                check(&holder)?;
                *m.lock.lock().expect("memory lock") = None;
                Ok(holder.map(unlocked))
            }
            StateStore::Local(l) => {
                let holder = l.lock_holder();
                check(&holder)?;
                Ok(l.force_unlock(force)?.map(unlocked))
            }
            StateStore::Remote(r) => {
                let Some((holder, etag)) = r.lock_holder().await? else {
                    return Ok(None);
                };
                check(&Some(holder.clone()))?;
                let stopped_renewing = match r.lease_standing(&holder) {
                    remote::LeaseStanding::Lapsed { renewed_at, .. } => Some(renewed_at),
                    _ if force => None,
                    remote::LeaseStanding::Fresh(until) => {
                        return Err(StateError::LeaseHeld {
                            path: self.describe(),
                            holder: holder.describe(),
                            until: until.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                        })
                    }
                    remote::LeaseStanding::Unknown => {
                        return Err(StateError::NoLease {
                            path: self.describe(),
                            holder: holder.describe(),
                        })
                    }
                };
                r.remove_lock(&etag).await?;
                Ok(Some(Unlocked {
                    holder,
                    stopped_renewing,
                }))
            }
        }
    }

    /// The state, or `None` when there is none yet.
    pub async fn load(&self) -> Result<Option<State>, StateError> {
        if let Some(fault) = failpoint::cross(failpoint::STATE_LOAD) {
            return Err(StateError::Read {
                path: self.describe(),
                source: failpoint::io_error(failpoint::STATE_LOAD, fault),
            });
        }
        match self {
            StateStore::Memory(m) => Ok(m.state.lock().expect("memory state").clone()),
            StateStore::Local(l) => l.load(),
            StateStore::Remote(r) => r.load().await,
        }
    }

    /// Write `state` with serial + 1, keeping the previous version as a backup: compare-and-swap
    /// against the stored version, which must still be the one `state` was read from or last
    /// written as (a state written by anyone else meanwhile is never overwritten). The compare
    /// and the write are one step: the local store's write gate, the memory store's mutex, the
    /// remote object's `If-Match`.
    pub async fn save(&self, lock: &StateLock, state: &mut State) -> Result<(), StateError> {
        let _held = lock; // only a lock holder saves
        let serial = state
            .serial
            .checked_add(1)
            .ok_or_else(|| StateError::Corrupt {
                path: self.describe(),
                reason: "the serial cannot grow any more".into(),
            })?;
        if let Some(fault) = failpoint::cross(failpoint::STATE_SAVE) {
            return Err(injected(self.describe(), failpoint::STATE_SAVE, fault));
        }
        let mut next = state.clone();
        next.serial = serial;
        let conflict = |stored: Option<(String, u64)>| {
            let (found_lineage, found_serial) = stored.unwrap_or_else(|| ("(no state)".into(), 0));
            StateError::Conflict {
                path: self.describe(),
                lineage: state.lineage.clone(),
                serial: state.serial,
                found_lineage,
                found_serial,
            }
        };
        let mut written = match self {
            StateStore::Local(l) => l.save(&state.lineage, state.serial, &next),
            StateStore::Memory(m) => {
                let mut stored = m.state.lock().expect("memory state");
                let version = stored.as_ref().map(|s| (s.lineage.clone(), s.serial));
                if is_version(version.as_ref(), &state.lineage, state.serial) {
                    *stored = Some(next.clone());
                    Ok(())
                } else {
                    Err(conflict(version))
                }
            }
            // The version this process read or wrote last: the object's etag guards the write
            // itself (a PUT with If-Match), so it need not be read again.
            StateStore::Remote(r) => {
                let version = match r.cached_version() {
                    Some(v) => Some(v),
                    None => r.load().await?.map(|s| (s.lineage, s.serial)),
                };
                if is_version(version.as_ref(), &state.lineage, state.serial) {
                    r.write(&next).await
                } else {
                    Err(conflict(version))
                }
            }
        };
        if written.is_ok() {
            if let Some(fault) = failpoint::cross(failpoint::STATE_SAVED) {
                written = Err(injected(self.describe(), failpoint::STATE_SAVED, fault));
            }
        }
        if let Err(e) = written {
            // An error after the write may hide a write that landed: read it back.
            if matches!(e, StateError::Conflict { .. })
                || failpoint::aborted()
                || !self.holds(&next).await
            {
                return Err(e);
            }
        }
        *state = next;
        Ok(())
    }

    /// Whether the store holds exactly `state` now.
    async fn holds(&self, state: &State) -> bool {
        match self {
            StateStore::Memory(m) => m.state.lock().expect("memory state").as_ref() == Some(state),
            StateStore::Local(l) => l.holds(&serialise(state)),
            StateStore::Remote(r) => r.holds(&serialise(state)).await,
        }
    }

    /// Store `state` as it is (lineage and serial kept): the destination of `kiln state migrate`.
    /// The caller holds this store's lock and has checked the destination's lineage.
    pub async fn write_exact(&self, lock: &StateLock, state: &State) -> Result<(), StateError> {
        let _held = lock;
        self.write(state).await
    }

    /// Write, keeping the version replaced (if any) as the backup.
    async fn write(&self, state: &State) -> Result<(), StateError> {
        match self {
            StateStore::Memory(m) => {
                *m.state.lock().expect("memory state") = Some(state.clone());
                Ok(())
            }
            StateStore::Local(l) => l.write(state),
            StateStore::Remote(r) => r.write(state).await,
        }
    }
}
