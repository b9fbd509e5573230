//! The state format: what `state/<env>.json` holds ([`State`]: format version, lineage, serial,
//! and per address a [`ResourceState`] with its pending create, deposed objects and network
//! facts), and its stored form ([`serialise`]). Reading and checking it is [`super::check`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::raw_json::RawJson;

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
    /// Images: the version it was (its `kiln-version` tag, read before it was deposed), so that
    /// it keeps its number when it becomes a retained version ([`Retained`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// A previous version of an image that `keep = N` retains (issue 24): kiln still owns it, a
/// plan may pin an instance to it (`source = { image, version }`), and it is deleted (oldest
/// first, with the `If-Match` of `etag`) once more than `N` versions exist and no instance of
/// the estate runs it. The current object's version is its `kiln-version` freeform tag, which
/// the recorded attributes carry ([`ResourceState::version`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retained {
    pub id: String,
    /// The etag kiln last saw for it: the `If-Match` of its delete.
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub compartment: Option<String>,
    /// Its `kiln-version`: 1 for an address's first image, one more for each rebuild.
    pub version: u64,
    /// When it stopped being the current version.
    pub since: DateTime<Utc>,
}

/// The freeform tag that numbers an image's versions (next to `kiln-address`).
pub const VERSION_TAG: &str = "kiln-version";

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
    /// Images with `keep > 1`: the previous versions kept (see [`Retained`]), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retained: Vec<Retained>,
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
            retained: Vec::new(),
            network: None,
            renamed_from: None,
            updated_at: Utc::now(),
        }
    }

    /// Nothing left to track: no object, no pending create, nothing deposed or retained.
    pub fn is_empty(&self) -> bool {
        self.id.is_none()
            && self.pending_create.is_none()
            && self.deposed.is_empty()
            && self.retained.is_empty()
    }

    /// The current object's version: its `kiln-version` tag as last read (`None`: untagged, an
    /// image made before kiln numbered them, or no object).
    pub fn version(&self) -> Option<u64> {
        self.id.as_ref()?;
        self.attributes
            .str_at(&["freeformTags", VERSION_TAG])?
            .parse()
            .ok()
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

    /// Record the deposed image `id` as the retained version `version` (a plan's retain step,
    /// `plan::versions`): nothing when it is not deposed (already retained, or gone). A number
    /// already taken (a state edited by hand) gives it the next free one.
    pub fn retain_version(&mut self, id: &str, version: u64) {
        let Some(at) = self.deposed.iter().position(|d| d.id == id) else {
            return;
        };
        let d = self.deposed.remove(at);
        let taken =
            self.retained.iter().any(|v| v.version == version) || self.version() == Some(version);
        let version = match taken {
            false => version,
            true => {
                self.retained
                    .iter()
                    .map(|v| v.version)
                    .chain(self.version())
                    .max()
                    .unwrap_or(0)
                    + 1
            }
        };
        self.retained.push(Retained {
            id: d.id,
            etag: d.etag,
            compartment: d.compartment,
            version,
            since: d.since,
        });
        self.retained.sort_by_key(|v| v.version);
    }

    /// Every OCID this address owns: its object, its deposed ones and its retained versions.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.id
            .as_deref()
            .into_iter()
            .chain(self.deposed.iter().map(|d| d.id.as_str()))
            .chain(self.retained.iter().map(|d| d.id.as_str()))
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

/// The stored form: compact JSON and a newline (states of thousands of resources are written
/// after every action).
pub(crate) fn serialise(state: &State) -> Vec<u8> {
    let mut v = Vec::new();
    serialise_to(state, &mut v).expect("a state serialises into memory");
    v
}

/// [`serialise`] written to `w` as it is made (a state of 10,000 instances is ~30 MB: a file
/// write does not hold it whole in memory).
pub(crate) fn serialise_to(state: &State, mut w: impl std::io::Write) -> std::io::Result<()> {
    serde_json::to_writer(&mut w, state).map_err(std::io::Error::other)?;
    w.write_all(b"\n")?;
    w.flush()
}
