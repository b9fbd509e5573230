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
//! [`StateStore`] is the one seam: the local file store and an in-memory store for tests behind it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state `{path}` is corrupt or truncated: {reason}")]
    #[diagnostic(code(kiln::state::corrupt), help("nothing was overwritten; the previous version is kept next to it as `.backup` — inspect it and copy it over if it is good"))]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "the state `{path}` has format version {found}, this kiln reads version {FORMAT_VERSION}"
    )]
    #[diagnostic(
        code(kiln::state::version),
        help("use the kiln version that wrote it (or a newer one); nothing was overwritten")
    )]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write the state `{path}`: {source}")]
    #[diagnostic(
        code(kiln::state::unwritable),
        help("the previous state is intact; fix the problem and run again")
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state `{path}` is locked by {holder}")]
    #[diagnostic(code(kiln::state::locked), help("wait for it to finish (`--lock-timeout 5m`), or if that process is gone, run `kiln force-unlock`"))]
    Locked { path: PathBuf, holder: String },
    #[error("the state `{path}` was written by someone else since it was read (lineage {found_lineage} serial {found_serial}, expected lineage {lineage} serial {serial})")]
    #[diagnostic(
        code(kiln::state::conflict),
        help("nothing was overwritten; run the command again")
    )]
    Conflict {
        path: PathBuf,
        lineage: String,
        serial: u64,
        found_lineage: String,
        found_serial: u64,
    },
}

/// A held lock; released on drop.
pub struct StateLock {
    pub info: LockInfo,
    /// (lineage, serial) this lock holder wrote last: later saves need not re-read the file.
    expected: Mutex<Option<(String, u64)>>,
    file: Option<File>,
    path: PathBuf,
    memory: Option<Arc<Mutex<Option<LockInfo>>>>,
}

impl Drop for StateLock {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Clear the record, then release the OS lock.
            let _ = file.set_len(0);
            let _ = fs4::fs_std::FileExt::unlock(&file);
            let _ = std::fs::remove_file(&self.path);
        }
        if let Some(m) = &self.memory {
            *m.lock().expect("memory lock") = None;
        }
    }
}

/// The local file store.
#[derive(Clone, Debug)]
pub struct LocalStore {
    pub path: PathBuf,
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
    Memory(MemoryStore),
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

fn backup_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".backup");
    PathBuf::from(p)
}

fn parse(path: &Path, text: &str) -> Result<State, StateError> {
    let v: Value = serde_json::from_str(text).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let version = v
        .get("version")
        .and_then(Value::as_u64)
        .ok_or_else(|| StateError::Corrupt {
            path: path.to_path_buf(),
            reason: "no `version`".into(),
        })?;
    if version != FORMAT_VERSION as u64 {
        return Err(StateError::Version {
            path: path.to_path_buf(),
            found: version as u32,
        });
    }
    serde_json::from_value(v).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
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

    pub fn describe(&self) -> String {
        match self {
            StateStore::Local(l) => l.path.display().to_string(),
            StateStore::Memory(_) => "(memory)".into(),
        }
    }

    fn path(&self) -> PathBuf {
        match self {
            StateStore::Local(l) => l.path.clone(),
            StateStore::Memory(_) => PathBuf::from("(memory)"),
        }
    }

    /// Take the lock, waiting up to `timeout`; then fail naming the holder.
    pub async fn lock(&self, info: LockInfo, timeout: Duration) -> Result<StateLock, StateError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            match self.try_lock(&info)? {
                Ok(lock) => return Ok(lock),
                Err(holder) => {
                    if start.elapsed() >= timeout {
                        return Err(StateError::Locked {
                            path: self.path(),
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
    fn try_lock(&self, info: &LockInfo) -> Result<Result<StateLock, String>, StateError> {
        match self {
            StateStore::Memory(m) => {
                let mut held = m.lock.lock().expect("memory lock");
                if let Some(h) = held.as_ref() {
                    return Ok(Err(h.describe()));
                }
                *held = Some(info.clone());
                Ok(Ok(StateLock {
                    expected: Mutex::new(None),
                    info: info.clone(),
                    file: None,
                    path: PathBuf::new(),
                    memory: Some(m.lock.clone()),
                }))
            }
            StateStore::Local(l) => {
                let path = lock_path(&l.path);
                let write_err = |source| StateError::Write {
                    path: path.clone(),
                    source,
                };
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(write_err)?;
                }
                let mut file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(write_err)?;
                match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
                    Ok(true) => {}
                    Ok(false) | Err(_) => {
                        let mut text = String::new();
                        let _ = file.read_to_string(&mut text);
                        let holder = serde_json::from_str::<LockInfo>(&text)
                            .map(|h| h.describe())
                            .unwrap_or_else(|_| "another kiln process".into());
                        return Ok(Err(holder));
                    }
                }
                // The OS lock is ours. A record left here belongs to a process that died holding it
                // (the OS releases flocks on exit): it is stale, and taken over with a warning.
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                if let Ok(stale) = serde_json::from_str::<LockInfo>(&text) {
                    tracing::warn!("taking over a stale lock left by {}", stale.describe());
                }
                file.set_len(0).map_err(write_err)?;
                file.rewind().map_err(write_err)?;
                file.write_all(
                    serde_json::to_string_pretty(info)
                        .expect("lock info serialises")
                        .as_bytes(),
                )
                .map_err(write_err)?;
                file.sync_all().map_err(write_err)?;
                Ok(Ok(StateLock {
                    expected: Mutex::new(None),
                    info: info.clone(),
                    file: Some(file),
                    path,
                    memory: None,
                }))
            }
        }
    }

    /// The current holder of the lock, if any (a record without a live OS lock is reported too).
    pub fn lock_holder(&self) -> Option<LockInfo> {
        match self {
            StateStore::Memory(m) => m.lock.lock().expect("memory lock").clone(),
            StateStore::Local(l) => std::fs::read_to_string(lock_path(&l.path))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok()),
        }
    }

    /// Remove a lock record (the holder is gone). With `expected_id`, only that lock.
    pub async fn force_unlock(
        &self,
        expected_id: Option<&str>,
    ) -> Result<Option<LockInfo>, StateError> {
        let holder = self.lock_holder();
        if let (Some(h), Some(id)) = (&holder, expected_id) {
            if h.id != id {
                return Err(StateError::Locked {
                    path: self.path(),
                    holder: format!("{} — not lock id {id}", h.describe()),
                });
            }
        }
        match self {
            StateStore::Memory(m) => *m.lock.lock().expect("memory lock") = None,
            StateStore::Local(l) => {
                let p = lock_path(&l.path);
                if p.exists() {
                    std::fs::remove_file(&p)
                        .map_err(|source| StateError::Write { path: p, source })?;
                }
            }
        }
        Ok(holder)
    }

    /// The state, or `None` when there is none yet.
    pub async fn load(&self) -> Result<Option<State>, StateError> {
        match self {
            StateStore::Memory(m) => Ok(m.state.lock().expect("memory state").clone()),
            StateStore::Local(l) => match std::fs::read_to_string(&l.path) {
                Ok(text) => parse(&l.path, &text).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(StateError::Read {
                    path: l.path.clone(),
                    source,
                }),
            },
        }
    }

    /// Write `state` with serial + 1, atomically, keeping the previous version as a backup.
    /// Refuses when the stored state is not the one `state` was read from.
    pub async fn save(&self, lock: &StateLock, state: &mut State) -> Result<(), StateError> {
        // The lock makes this process the only writer; the serial it last wrote or read is the
        // one on disk unless the lock was broken (force-unlock) — then refuse rather than overwrite.
        let known = lock.expected.lock().expect("lock state").clone();
        let check = match known {
            Some(e) => Some(e),
            None => self.load().await?.map(|cur| (cur.lineage, cur.serial)),
        };
        if let Some((lineage, serial)) = check.clone() {
            if lineage != state.lineage || serial != state.serial {
                return Err(StateError::Conflict {
                    path: self.path(),
                    lineage: state.lineage.clone(),
                    serial: state.serial,
                    found_lineage: lineage,
                    found_serial: serial,
                });
            }
        }
        let mut next = state.clone();
        next.serial += 1;
        match self {
            StateStore::Memory(m) => *m.state.lock().expect("memory state") = Some(next.clone()),
            StateStore::Local(l) => write_atomic(&l.path, &next, check.is_some())?,
        }
        *lock.expected.lock().expect("lock state") = Some((next.lineage.clone(), next.serial));
        *state = next;
        Ok(())
    }
}

fn write_atomic(path: &Path, state: &State, keep_backup: bool) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    // Compact: states of thousands of resources are written after every action.
    let text = serde_json::to_string(state).expect("state serialises");
    let mut tmp = tempfile::Builder::new()
        .prefix(".kiln-state-")
        .tempfile_in(dir)
        .map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    tmp.write_all(text.as_bytes()).map_err(err)?;
    tmp.write_all(b"\n").map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    if keep_backup {
        // Hard-link the old version as the backup so the rename below replaces only `path`.
        let backup = backup_path(path);
        let _ = std::fs::remove_file(&backup);
        std::fs::hard_link(path, &backup)
            .or_else(|_| std::fs::copy(path, &backup).map(|_| ()))
            .map_err(err)?;
    }
    tmp.persist(path).map_err(|e| err(e.error))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
