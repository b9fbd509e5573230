//! State: the versioned record of what kiln manages, kept like a small database.
//!
//! `state/<env>.json` holds a format version, a lineage fixed at creation, a serial that rises by
//! one with every write, and per resource address its kind, OCID, region, compartment, last etag,
//! last read attributes, the create-time inputs OCI does not return, any pending create (the
//! retry token that makes a crashed create safe to resend), and for instances the network facts of
//! the primary VNIC ([`Network`]: what `kiln output` prints). Writes are atomic (temp file, fsync,
//! rename, fsync of the directory), mode 0600, and keep the previous version as `<env>.json.backup`.
//! An apply records each commit by appending the records it changed to `<env>.json.journal`, and
//! folds the journal into the state at its end ([`journal`], [`Commits`]): a commit costs the
//! size of the change, not of the state.
//! One writer at a time: an OS file lock on `<env>.json.lock` plus a lock record inside it (who,
//! host, pid, operation, since) so a waiting kiln can name the holder. See `state/README.md`.
//!
//! [`StateStore`] is the one seam. Behind it: the local file store ([`local`]), the remote store on
//! OCI Object Storage ([`remote`]: compare-and-swap writes with `If-Match`, a lock object created
//! with `If-None-Match: *`) for teams whose CI runners share one state, and an in-memory store
//! for tests.

mod check;
pub mod journal;
pub mod local;
pub mod remote;

pub use check::address_kind;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::failpoint;

pub use local::LocalStore;
pub use remote::RemoteStore;

use chrono::{DateTime, Utc};

pub use crate::raw_json::RawJson;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The state format this kiln writes. Version 2 added deposed objects and the exact request of a
/// pending create; version 3 the region and address a pending create was sent to and under. A
/// kiln that knows only an older version refuses a newer state rather than drop what it holds;
/// this kiln reads the older ones and writes them as version 3 (every write is the current
/// format: [`StateStore::load`] upgrades in memory).
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format this kiln reads (and upgrades on its next write).
pub const OLDEST_FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Instance,
    Image,
}

/// A create that was sent (or about to be) but whose result is not recorded yet.
///
/// It is kept, with its token and its exact request, until the outcome is known: resending the
/// same request with the same token returns the resource the first send made (or makes it, if the
/// first send never arrived), so a crash, a lost answer or a refusal that says nothing about the
/// first send (401, 404, 5xx) can never lead to a second resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingCreate {
    /// The `opc-retry-token` the create is sent with; resending it returns the same resource.
    pub retry_token: String,
    /// Hex SHA-256 of the request body.
    pub request_digest: String,
    /// The exact request body sent with the token (references resolved). `None` in states written
    /// by format version 1, which kept only the digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub compartment: Option<String>,
    /// The region the create was sent to (format 3). `None` in older states: see
    /// [`PendingCreate::sent_region`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The address the create was sent under — its `kiln-address` tag — which a `[[moved]]` or
    /// `kiln state mv` since does not change (format 3). `None` in older states: see
    /// [`PendingCreate::sent_address`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// How long kiln trusts a retry token: OCI honours one for 24 hours, kiln for a little less.
pub const TOKEN_LIFETIME_HOURS: i64 = 23;

/// Regional OCIDs a create request may name, each of which pins the request to its region.
const REGIONAL_FIELDS: &[&[&str]] = &[
    &["createVnicDetails", "subnetId"],
    &["sourceDetails", "imageId"],
    &["sourceDetails", "bootVolumeId"],
    &["instanceId"],
];

impl PendingCreate {
    /// The region the create was sent to: recorded since format 3. For an older record, the
    /// region of a regional OCID its stored request names (a launch's subnet or image, a
    /// capture's instance) — OCI refuses a request naming another region's subnet, so the first
    /// send went there or made nothing. `None`: the record cannot tell (a format-1 record, an
    /// import from an Object Storage URI); the caller uses the region the manifest gives the
    /// address, or the provider's, as the kiln that wrote it did.
    pub fn sent_region(&self) -> Option<String> {
        if let Some(r) = &self.region {
            return Some(r.clone());
        }
        let request = self.request.as_ref()?;
        REGIONAL_FIELDS.iter().find_map(|path| {
            let id = path.iter().try_fold(request, |v, k| v.get(*k))?.as_str()?;
            crate::region::from_ocid(id).map(str::to_string)
        })
    }

    /// The address the create was sent under: recorded since format 3; for an older record, the
    /// `kiln-address` tag of its stored request. `None`: the record cannot tell (format 1).
    pub fn sent_address(&self) -> Option<String> {
        self.address.clone().or_else(|| {
            self.request
                .as_ref()?
                .pointer("/freeformTags/kiln-address")?
                .as_str()
                .map(str::to_string)
        })
    }

    /// Whether the stored token is inside kiln's window at `now` ([`TOKEN_LIFETIME_HOURS`]).
    /// Past it, kiln searches for what the first send made before it creates anything.
    pub fn token_fresh(&self, now: DateTime<Utc>) -> bool {
        now - self.started_at < chrono::Duration::hours(TOKEN_LIFETIME_HOURS)
    }
}

/// A previous object of an address that a replacement superseded and that is not destroyed yet
/// (create-before-destroy): kiln still owns it, shows it in every plan and destroys it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deposed {
    pub id: String,
    /// The etag kiln last saw for it: the `If-Match` of its delete.
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub compartment: Option<String>,
    pub since: DateTime<Utc>,
}

/// The primary VNIC of an instance as apply last read it (ListVnicAttachments, then GetVnic):
/// what `kiln output` prints, so that it needs no network. Recorded after an instance is created,
/// replaced or moved, and by `kiln apply --refresh-only`; absent in states written before kiln
/// recorded it, and when the read failed (the next apply reads it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The primary VNIC's OCID.
    pub vnic_id: String,
    #[serde(default)]
    pub subnet_id: Option<String>,
    #[serde(default)]
    pub private_ip: Option<String>,
    /// `None`: the VNIC has no public IP.
    #[serde(default)]
    pub public_ip: Option<String>,
    /// The DNS hostname label of the primary private IP (`None` without DNS).
    #[serde(default)]
    pub hostname_label: Option<String>,
    pub read_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// The resource as last read from OCI (its JSON, kept as text: [`RawJson`]).
    #[serde(default)]
    pub attributes: RawJson,
    /// Create-time inputs OCI does not return (subnet, image lookup criteria, `prevent_destroy`, …).
    /// (Shared: a plan's prior state holds the same map.)
    #[serde(default)]
    pub inputs: std::sync::Arc<Map<String, Value>>,
    #[serde(default)]
    pub pending_create: Option<PendingCreate>,
    /// Superseded objects of this address still to be destroyed (see [`Deposed`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deposed: Vec<Deposed>,
    /// Instances: the primary VNIC's addresses, for `kiln output` (see [`Network`]). Cleared when
    /// the address gets another object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// The address this record had before a `[[moved]]` or `kiln state mv` renamed it, while its
    /// resource may still carry that address's `kiln-address` tag (format 3): a plan accepts
    /// that tag and retags the resource. Cleared once kiln reads it tagged with this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
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
            attributes: RawJson::null(),
            inputs: Default::default(),
            pending_create: None,
            deposed: Vec::new(),
            network: None,
            renamed_from: None,
            updated_at: Utc::now(),
        }
    }

    /// Nothing left to track: no object, no pending create, nothing deposed.
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.pending_create.is_none() && self.deposed.is_empty()
    }

    /// The address no longer has an object (destroyed, deposed or gone): drop what was read of it.
    pub fn clear_object(&mut self) {
        self.id = None;
        self.etag = None;
        self.attributes = RawJson::null();
        self.network = None;
    }

    /// Rename the record from `from` (its address until now): it remembers the address its
    /// resources are tagged with until kiln retags them ([`ResourceState::renamed_from`]).
    pub fn renamed(mut self, from: &str, to: &str) -> ResourceState {
        let tagged = self.renamed_from.take().unwrap_or_else(|| from.to_string());
        self.renamed_from = (tagged != to).then_some(tagged);
        self
    }

    /// Every OCID this address owns: its object and its deposed ones.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.id
            .as_deref()
            .into_iter()
            .chain(self.deposed.iter().map(|d| d.id.as_str()))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    #[error("the state journal `{path}` cannot be trusted: {reason}")]
    #[diagnostic(code(kiln::state::journal), help("nothing was overwritten; the journal holds the commits of an apply that did not finish (one line each: a checksum, then the records it changed), the state file beside it the state before that apply — inspect both (`state/README.md`); what that apply created is named in the journal, and `kiln import` adopts it"))]
    Journal { path: String, reason: String },
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
    #[error("the state `{path}` is locked by {holder}, which is still running")]
    #[diagnostic(
        code(kiln::state::holder_alive),
        help("wait for it to finish; `kiln force-unlock --force` breaks the lock anyway (its later saves are then refused, never overwriting)")
    )]
    HolderAlive { path: String, holder: String },
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
    #[error("`{env}` is not an environment name")]
    #[diagnostic(
        code(kiln::state::env),
        help("environment names are letters, digits, `-`, `_` and `.`, at most 64 (`envs/<ENV>.toml`, `state/<ENV>.json`)")
    )]
    BadEnv { env: String },
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
    /// Shared with [`LockReleaser`]s, so a signal handler can release it before the process exits.
    held: Arc<Mutex<Held>>,
}

// One per held lock, so its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Held {
    Local(local::FileLock),
    Memory(Arc<Mutex<Option<LockInfo>>>),
    Remote(remote::ObjectLock),
    Released,
}

impl Held {
    /// Release without reporting (a destructor, or a process about to exit).
    fn release_now(&mut self) {
        if self.faulted().is_none() {
            self.release_unchecked();
        }
    }

    /// Cross the unlock boundary; on an injected fault, forget the lock as a process that died
    /// here would: its local flock closes with it (the record stays, stale), a lock object stays.
    fn faulted(&mut self) -> Option<failpoint::Fault> {
        if matches!(self, Held::Released) {
            return None;
        }
        let fault = failpoint::cross(failpoint::STATE_UNLOCK)?;
        *self = Held::Released;
        Some(fault)
    }

    fn release_unchecked(&mut self) {
        match std::mem::replace(self, Held::Released) {
            Held::Local(f) => f.release(),
            Held::Memory(m) => *m.lock().expect("memory lock") = None,
            Held::Remote(l) => l.release_blocking(),
            Held::Released => {}
        }
    }
}

/// A handle that releases a [`StateLock`] from elsewhere (e.g. the second Ctrl-C, right before
/// the process exits). Releasing twice is harmless.
#[derive(Clone)]
pub struct LockReleaser(Arc<Mutex<Held>>);

impl LockReleaser {
    /// Release now, best effort, blocking the calling thread for at most a few seconds.
    pub fn release_now(&self) {
        self.0.lock().expect("state lock handle").release_now();
    }
}

impl StateLock {
    fn new(info: LockInfo, held: Held) -> StateLock {
        StateLock {
            info,
            held: Arc::new(Mutex::new(held)),
        }
    }

    pub fn releaser(&self) -> LockReleaser {
        LockReleaser(self.held.clone())
    }

    /// Release now, reporting a failure (dropping releases too, best effort).
    pub async fn release(self) -> Result<(), StateError> {
        let held = {
            let mut guard = self.held.lock().expect("state lock handle");
            if let Some(fault) = guard.faulted() {
                return Err(StateError::Write {
                    path: "(the state lock)".into(),
                    source: failpoint::io_error(failpoint::STATE_UNLOCK, fault),
                });
            }
            std::mem::replace(&mut *guard, Held::Released)
        };
        match held {
            Held::Remote(l) => l.release().await,
            mut other => {
                other.release_unchecked();
                Ok(())
            }
        }
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        if let Ok(mut held) = self.held.lock() {
            held.release_now();
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

/// Parse and check a state document (`path` names it in errors): the loader of every store.
pub use check::parse;

/// The stored form: compact JSON and a newline (states of thousands of resources are written
/// after every action).
pub(crate) fn serialise(state: &State) -> Vec<u8> {
    let mut v = serde_json::to_vec(state).expect("state serialises");
    v.push(b'\n');
    v
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

fn injected(path: String, name: &'static str, fault: failpoint::Fault) -> StateError {
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

    /// Remove a lock record whose holder is gone. With `expected_id`, only that lock. A local
    /// lock whose holder is still running (it holds the OS lock) is refused unless `force`.
    pub async fn force_unlock(
        &self,
        expected_id: Option<&str>,
        force: bool,
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
                l.force_unlock(force)
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

    /// The lineage and serial stored now (`None`: no state), for compare-and-swap.
    async fn stored_version(&self) -> Result<Option<(String, u64)>, StateError> {
        match self {
            StateStore::Memory(m) => Ok(m
                .state
                .lock()
                .expect("memory state")
                .as_ref()
                .map(|s| (s.lineage.clone(), s.serial))),
            StateStore::Local(l) => l.version(),
            // The version this process read or wrote last: the object's etag guards the write
            // itself (a PUT with If-Match), so it need not be read again.
            StateStore::Remote(r) => match r.cached_version() {
                Some(v) => Ok(Some(v)),
                None => Ok(r.load().await?.map(|s| (s.lineage, s.serial))),
            },
        }
    }

    /// Write `state` with serial + 1, keeping the previous version as a backup: compare-and-swap
    /// against the stored version, which must still be the one `state` was read from or last
    /// written as (a state written by anyone else meanwhile is never overwritten).
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
        let stored = self.stored_version().await?;
        let expected =
            (state.serial > 0 || stored.is_some()).then(|| (state.lineage.clone(), state.serial));
        if stored != expected {
            let (found_lineage, found_serial) = stored.unwrap_or_else(|| ("(no state)".into(), 0));
            return Err(StateError::Conflict {
                path: self.describe(),
                lineage: state.lineage.clone(),
                serial: state.serial,
                found_lineage,
                found_serial,
            });
        }
        let mut next = state.clone();
        next.serial = serial;
        let mut written = self.write(&next).await;
        if written.is_ok() {
            if let Some(fault) = failpoint::cross(failpoint::STATE_SAVED) {
                written = Err(injected(self.describe(), failpoint::STATE_SAVED, fault));
            }
        }
        if let Err(e) = written {
            // An error after the write may hide a write that landed: read it back.
            if failpoint::aborted() || !self.holds(&next).await {
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

/// The state writes of an apply: each commit records only the records it changed where the
/// store can append — the local store's journal ([`journal`]), folded into the state file at the
/// end — and the whole state elsewhere (the remote store: `state/README.md` says why). Every
/// write is a compare-and-swap.
pub struct Commits {
    store: StateStore,
    journal: Option<journal::Writer>,
}

impl Commits {
    pub fn new(store: StateStore) -> Commits {
        Commits {
            store,
            journal: None,
        }
    }

    /// Whether commits take only the changed records ([`Commits::append`]) rather than the
    /// whole state ([`Commits::save`]).
    pub fn journaled(&self) -> bool {
        matches!(self.store, StateStore::Local(_))
    }

    fn journal_error(
        &self,
        e: journal::WriteError,
        l: &LocalStore,
        lineage: &str,
        serial: u64,
    ) -> StateError {
        match e {
            journal::WriteError::Io(source) => StateError::Write {
                path: l.journal_path().display().to_string(),
                source,
            },
            journal::WriteError::Moved(reason) => {
                tracing::debug!("state moved under the journal: {reason}");
                self.conflict(l, lineage, serial)
            }
        }
    }

    /// A compare-and-swap refusal: `(lineage, serial)` was expected; what is stored now is
    /// named as well as it can be read.
    fn conflict(&self, l: &LocalStore, lineage: &str, serial: u64) -> StateError {
        let (found_lineage, found_serial) = match l.version() {
            Ok(Some(v)) => v,
            Ok(None) => ("(no state)".into(), 0),
            Err(_) => ("(unreadable)".into(), 0),
        };
        StateError::Conflict {
            path: self.store.describe(),
            lineage: lineage.to_string(),
            serial,
            found_lineage,
            found_serial,
        }
    }

    /// Before the first commit: fold a journal a kiln that died left beside the state (the
    /// state given was loaded with it folded in), so this apply starts its own.
    pub async fn begin(&mut self, lock: &StateLock, state: &State) -> Result<(), StateError> {
        let _held = lock;
        let StateStore::Local(l) = &self.store else {
            return Ok(());
        };
        if !l.has_journal() {
            return Ok(());
        }
        if l.version()? != Some((state.lineage.clone(), state.serial)) {
            return Err(self.conflict(l, &state.lineage, state.serial));
        }
        self.fold(state)
    }

    /// Write `state` whole with its serial (the journal's last) and remove the journal.
    fn fold(&self, state: &State) -> Result<(), StateError> {
        let StateStore::Local(l) = &self.store else {
            return Ok(());
        };
        if let Some(fault) = failpoint::cross(failpoint::STATE_FOLD) {
            return Err(injected(
                self.store.describe(),
                failpoint::STATE_FOLD,
                fault,
            ));
        }
        let mut written = l.write(state);
        if written.is_ok() {
            if let Some(fault) = failpoint::cross(failpoint::STATE_FOLDED) {
                written = Err(injected(
                    self.store.describe(),
                    failpoint::STATE_FOLDED,
                    fault,
                ));
            }
        }
        match written {
            // An error after the write may hide a write that landed: read it back (the journal
            // left beside it is ignored as folded).
            Err(_) if !failpoint::aborted() && l.holds(&serialise(state)) => Ok(()),
            other => other,
        }
    }

    /// Record `changes` (address → its record now, `None`: gone) as serial `serial` + 1 of the
    /// state (`lineage`, `serial`); the new serial once it is durable.
    pub async fn append(
        &mut self,
        lock: &StateLock,
        lineage: &str,
        serial: u64,
        changes: BTreeMap<String, Option<ResourceState>>,
    ) -> Result<u64, StateError> {
        let _held = lock;
        let StateStore::Local(l) = &self.store else {
            unreachable!("only the local store appends")
        };
        let next = serial.checked_add(1).ok_or_else(|| StateError::Corrupt {
            path: self.store.describe(),
            reason: "the serial cannot grow any more".into(),
        })?;
        let entry = journal::Entry {
            serial: next,
            resources: changes,
        };
        let result = match &mut self.journal {
            Some(w) => w.append(&entry),
            None => {
                // The first commit: the stored state must be the one this apply started from,
                // with no journal beside it (`begin` folded any).
                let stored = l.version()?;
                let expected =
                    (serial > 0 || stored.is_some()).then(|| (lineage.to_string(), serial));
                if stored != expected || l.has_journal() {
                    return Err(self.conflict(l, lineage, serial));
                }
                let state_id = l.state_id()?;
                journal::Writer::create(
                    &l.journal_path(),
                    &l.path,
                    state_id,
                    lineage,
                    serial,
                    &entry,
                )
                .map(|w| self.journal = Some(w))
            }
        };
        result.map_err(|e| self.journal_error(e, l, lineage, serial))?;
        Ok(next)
    }

    /// Save the whole state (serial + 1, compare-and-swap): the stores without a journal.
    pub async fn save(&mut self, lock: &StateLock, state: &mut State) -> Result<(), StateError> {
        self.store.save(lock, state).await
    }

    /// After the last commit: fold the journal into the state file (`state` is what it holds,
    /// serial included). With `unrecorded`, `state` has changes whose commit failed: they are
    /// saved whole (serial + 1) instead, if the store still takes them.
    pub async fn finish(
        &mut self,
        lock: &StateLock,
        state: &mut State,
        unrecorded: bool,
    ) -> Result<(), StateError> {
        let _held = lock;
        match (&self.store, self.journal.take()) {
            (StateStore::Local(l), Some(w)) => {
                w.check()
                    .map_err(|e| self.journal_error(e, l, &state.lineage, state.serial))?;
                #[cfg(debug_assertions)]
                if !unrecorded {
                    // Every change was committed with the addresses it touched: the journal
                    // folds to exactly the state in memory.
                    let on_disk = l.load().expect("the journal this apply wrote loads");
                    assert_eq!(
                        on_disk.as_ref(),
                        Some(&*state),
                        "the journal does not fold to the state in memory: a change was recorded without its address"
                    );
                }
                if unrecorded {
                    state.serial =
                        state
                            .serial
                            .checked_add(1)
                            .ok_or_else(|| StateError::Corrupt {
                                path: self.store.describe(),
                                reason: "the serial cannot grow any more".into(),
                            })?;
                }
                self.fold(state)
            }
            _ if unrecorded => self.store.save(lock, state).await,
            _ => Ok(()),
        }
    }
}
