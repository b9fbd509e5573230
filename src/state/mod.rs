//! State: the versioned record of what kiln manages, kept like a small database.
//!
//! `state/<env>.json` holds a format version, a lineage fixed at creation, a serial that rises by
//! one with every write, and per resource address its kind, OCID, region, compartment, last etag,
//! last read attributes, the create-time inputs OCI does not return, and any pending create (the
//! retry token that makes a crashed create safe to resend). Writes are atomic (temp file, fsync,
//! rename, fsync of the directory), mode 0600, and keep the previous version as `<env>.json.backup`.
//! One writer at a time: an OS file lock on `<env>.json.lock` plus a lock record inside it (who,
//! host, pid, operation, since) so a waiting kiln can name the holder. See `state/README.md`.
//!
//! [`StateStore`] is the one seam. Behind it: the local file store ([`local`]), the remote store on
//! OCI Object Storage ([`remote`]: compare-and-swap writes with `If-Match`, a lock object created
//! with `If-None-Match: *`) for teams whose CI runners share one state, and an in-memory store
//! for tests.

pub mod local;
pub mod remote;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use local::LocalStore;
pub use remote::RemoteStore;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The state format this kiln reads and writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Instance,
    Image,
}

/// A create that was sent (or about to be) but whose result is not recorded yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingCreate {
    /// The `opc-retry-token` the create is sent with; resending it returns the same resource.
    pub retry_token: String,
    /// Hex SHA-256 of the request body (a changed request must not reuse the token).
    pub request_digest: String,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub compartment: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    pub kind: ResourceKind,
    /// The OCID; `None` while only a pending create exists.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub compartment: Option<String>,
    #[serde(default)]
    pub etag: Option<String>,
    /// The resource as last read from OCI (its JSON).
    #[serde(default)]
    pub attributes: Value,
    /// Create-time inputs OCI does not return (subnet, image lookup criteria, `prevent_destroy`, …).
    #[serde(default)]
    pub inputs: Map<String, Value>,
    #[serde(default)]
    pub pending_create: Option<PendingCreate>,
    pub updated_at: DateTime<Utc>,
}

impl ResourceState {
    pub fn new(kind: ResourceKind) -> ResourceState {
        ResourceState {
            kind,
            id: None,
            region: None,
            compartment: None,
            etag: None,
            attributes: Value::Null,
            inputs: Map::new(),
            pending_create: None,
            updated_at: Utc::now(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub lineage: String,
    pub serial: u64,
    pub resources: BTreeMap<String, ResourceState>,
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl State {
    /// A fresh state: new lineage, serial 0.
    pub fn new() -> State {
        State {
            version: FORMAT_VERSION,
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 0,
            resources: BTreeMap::new(),
        }
    }
}

/// Who holds a lock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub who: String,
    pub host: String,
    pub pid: u32,
    pub operation: String,
    pub since: DateTime<Utc>,
}

impl LockInfo {
    /// A lock record for this process.
    pub fn new(operation: &str) -> LockInfo {
        let who = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            who,
            host,
            pid: std::process::id(),
            operation: operation.into(),
            since: Utc::now(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{}@{} (pid {}, `kiln {}` since {}, lock id {})",
            self.who,
            self.host,
            self.pid,
            self.operation,
            self.since.format("%Y-%m-%d %H:%M:%S UTC"),
            self.id
        )
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    #[error("cannot read the state `{path}`: {source}")]
    #[diagnostic(code(kiln::state::unreadable))]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the state `{path}` is corrupt or truncated: {reason}")]
    #[diagnostic(code(kiln::state::corrupt), help("nothing was overwritten; the previous version is kept next to it as `.backup` — inspect it and copy it over if it is good"))]
    Corrupt { path: String, reason: String },
    #[error(
        "the state `{path}` has format version {found}, this kiln reads version {FORMAT_VERSION}"
    )]
    #[diagnostic(
        code(kiln::state::version),
        help("use the kiln version that wrote it (or a newer one); nothing was overwritten")
    )]
    Version { path: String, found: u32 },
    #[error("cannot write the state `{path}`: {source}")]
    #[diagnostic(
        code(kiln::state::unwritable),
        help("the previous state is intact; fix the problem and run again")
    )]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the state `{path}` is locked by {holder}")]
    #[diagnostic(code(kiln::state::locked), help("wait for it to finish (`--lock-timeout 5m`), or if that process is gone, run `kiln force-unlock`"))]
    Locked { path: String, holder: String },
    #[error("the state `{path}` was written by someone else since it was read (lineage {found_lineage} serial {found_serial}, expected lineage {lineage} serial {serial})")]
    #[diagnostic(
        code(kiln::state::conflict),
        help("nothing was overwritten; run the command again")
    )]
    Conflict {
        path: String,
        lineage: String,
        serial: u64,
        found_lineage: String,
        found_serial: u64,
    },
    #[error("cannot use the remote state `{path}`")]
    #[diagnostic(
        code(kiln::state::remote),
        help("the stored state is intact (writes are compare-and-swap); check the backend's namespace, bucket and credentials, then run again")
    )]
    Remote {
        path: String,
        #[source]
        source: crate::oci::OciError,
    },
    #[error("cannot migrate the state: {reason}")]
    #[diagnostic(
        code(kiln::state::migrate),
        help("nothing was written; compare the two states with `kiln state list`")
    )]
    Migrate { reason: String },
}

/// A held lock; released on drop (or with [`StateLock::release`], which reports failures).
pub struct StateLock {
    pub info: LockInfo,
    /// (lineage, serial) this lock holder wrote last: later saves need not re-read the state.
    expected: Mutex<Option<(String, u64)>>,
    held: Held,
}

enum Held {
    Local(local::FileLock),
    Memory(Arc<Mutex<Option<LockInfo>>>),
    Remote(remote::ObjectLock),
    Released,
}

impl StateLock {
    fn new(info: LockInfo, held: Held) -> StateLock {
        StateLock {
            info,
            expected: Mutex::new(None),
            held,
        }
    }

    /// Release now, reporting a failure (dropping releases too, best effort).
    pub async fn release(mut self) -> Result<(), StateError> {
        match std::mem::replace(&mut self.held, Held::Released) {
            Held::Remote(l) => l.release().await,
            other => {
                self.held = other;
                Ok(())
            }
        }
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.held, Held::Released) {
            Held::Local(f) => f.release(),
            Held::Memory(m) => *m.lock().expect("memory lock") = None,
            Held::Remote(l) => l.release_blocking(),
            Held::Released => {}
        }
    }
}

/// An in-memory store (tests).
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<Option<State>>>,
    lock: Arc<Mutex<Option<LockInfo>>>,
}

/// Where state lives.
#[derive(Clone, Debug)]
pub enum StateStore {
    Local(LocalStore),
    Remote(RemoteStore),
    Memory(MemoryStore),
}

/// Parse a state document, refusing other format versions.
pub(crate) fn parse(path: &str, text: &str) -> Result<State, StateError> {
    let v: Value = serde_json::from_str(text).map_err(|e| StateError::Corrupt {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    let version = v
        .get("version")
        .and_then(Value::as_u64)
        .ok_or_else(|| StateError::Corrupt {
            path: path.to_string(),
            reason: "no `version`".into(),
        })?;
    if version != FORMAT_VERSION as u64 {
        return Err(StateError::Version {
            path: path.to_string(),
            found: version as u32,
        });
    }
    serde_json::from_value(v).map_err(|e| StateError::Corrupt {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

/// The stored form: compact JSON and a newline (states of thousands of resources are written
/// after every action).
pub(crate) fn serialise(state: &State) -> Vec<u8> {
    let mut v = serde_json::to_vec(state).expect("state serialises");
    v.push(b'\n');
    v
}

impl StateStore {
    /// `<dir>/state/<env>.json`, or `<state_dir>/<env>.json`.
    pub fn local(manifest_dir: &Path, state_dir: Option<&Path>, env: &str) -> StateStore {
        let dir = state_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| manifest_dir.join("state"));
        StateStore::Local(LocalStore {
            path: dir.join(format!("{env}.json")),
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

    /// Remove a lock record (the holder is gone). With `expected_id`, only that lock.
    pub async fn force_unlock(
        &self,
        expected_id: Option<&str>,
    ) -> Result<Option<LockInfo>, StateError> {
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
        match self {
            StateStore::Memory(m) => {
                let holder = m.lock.lock().expect("memory lock").clone();
                check(&holder)?;
                *m.lock.lock().expect("memory lock") = None;
                Ok(holder)
            }
            StateStore::Local(l) => {
                let holder = l.lock_holder();
                check(&holder)?;
                l.remove_lock()?;
                Ok(holder)
            }
            StateStore::Remote(r) => {
                let held = r.lock_holder().await?;
                let holder = held.as_ref().map(|(info, _)| info.clone());
                check(&holder)?;
                if let Some((_, etag)) = held {
                    r.remove_lock(&etag).await?;
                }
                Ok(holder)
            }
        }
    }

    /// The state, or `None` when there is none yet.
    pub async fn load(&self) -> Result<Option<State>, StateError> {
        match self {
            StateStore::Memory(m) => Ok(m.state.lock().expect("memory state").clone()),
            StateStore::Local(l) => l.load(),
            StateStore::Remote(r) => r.load().await,
        }
    }

    /// Write `state` with serial + 1, keeping the previous version as a backup.
    /// Refuses when the stored state is not the one `state` was read from.
    pub async fn save(&self, lock: &StateLock, state: &mut State) -> Result<(), StateError> {
        // The lock makes this process the only writer; the serial it last wrote or read is the
        // stored one unless the lock was broken (force-unlock) — then refuse rather than overwrite.
        // (The remote store also compares and swaps on the object's etag.)
        // A remote store remembers the version it read last: its etag guards the write, so it
        // need not be read again.
        let known = lock.expected.lock().expect("lock state").clone();
        let cached = match self {
            StateStore::Remote(r) => r.cached_version(),
            _ => None,
        };
        let check = match known.or(cached) {
            Some(version) => Some(version),
            None => self.load().await?.map(|cur| (cur.lineage, cur.serial)),
        };
        if let Some((lineage, serial)) = check.clone() {
            if lineage != state.lineage || serial != state.serial {
                return Err(StateError::Conflict {
                    path: self.describe(),
                    lineage: state.lineage.clone(),
                    serial: state.serial,
                    found_lineage: lineage,
                    found_serial: serial,
                });
            }
        }
        let mut next = state.clone();
        next.serial += 1;
        self.write(&next).await?;
        *lock.expected.lock().expect("lock state") = Some((next.lineage.clone(), next.serial));
        *state = next;
        Ok(())
    }

    /// Store `state` as it is (lineage and serial kept): the destination of `kiln state migrate`.
    /// The caller holds this store's lock and has checked the destination's lineage.
    pub async fn write_exact(&self, lock: &StateLock, state: &State) -> Result<(), StateError> {
        self.write(state).await?;
        *lock.expected.lock().expect("lock state") = Some((state.lineage.clone(), state.serial));
        Ok(())
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
