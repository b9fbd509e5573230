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
//! host, pid, operation, since) so a waiting kiln can name the holder. Every write is a
//! compare-and-swap by construction, so a lock broken by `kiln force-unlock --force` can make the
//! old holder's writes fail but never lose or roll back anyone's: the local store compares and
//! writes under a short OS lock on the state folder ([`gate`]), the remote store with `If-Match`.
//! See `state/README.md`.
//!
//! [`StateStore`] is the one seam. Behind it: the local file store ([`local`]), the remote store on
//! OCI Object Storage ([`remote`]: compare-and-swap writes with `If-Match`, a lock object created
//! with `If-None-Match: *`) for teams whose CI runners share one state, and an in-memory store
//! for tests.

mod check;
mod commits;
mod gate;
pub mod journal;
pub mod local;
mod lock;
pub mod remote;

pub use check::address_kind;
pub use commits::Commits;
use lock::Held;
pub use lock::{LockInfo, LockReleaser, StateLock};

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
    #[error("the state `{path}` is locked by {holder}, which renewed its lease: it holds until {until} unless renewed again")]
    #[diagnostic(
        code(kiln::state::lease_held),
        help("the holder renews its lease while it runs: wait for it to finish; if it is gone, its lease runs out by {until} and `kiln force-unlock` then removes it (or the next run takes it over); `kiln force-unlock --force` removes it now (its later saves are then refused, never overwriting)")
    )]
    LeaseHeld {
        path: String,
        holder: String,
        until: String,
    },
    #[error("the state `{path}` is locked by {holder}, whose lock records no lease (a kiln without leases, or an unreadable record): nothing tells whether it still runs")]
    #[diagnostic(
        code(kiln::state::no_lease),
        help("if that kiln is gone, `kiln force-unlock --force` removes the lock (a holder still running then has its later saves refused, never overwriting)")
    )]
    NoLease { path: String, holder: String },
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
fn is_version(stored: Option<&(String, u64)>, lineage: &str, serial: u64) -> bool {
    match stored {
        None => serial == 0,
        Some((l, s)) => l == lineage && *s == serial,
    }
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
