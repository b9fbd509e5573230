//! Plans: what `kiln plan` computes and `kiln apply` executes.
//!
//! A [`Plan`] is plain data. It keeps what the state said apart from what was read live (so drift
//! can be shown on its own), lists every [`Change`] as a node of a DAG (`depends_on`), and records
//! every etag the executor will send as `If-Match`. The human view and `--json` are both rendered
//! from this one structure ([`render`]).
//!
//! Stages inside this module, in the order data flows:
//! - [`refresh`]: [`refresh::make_plan`], the entry point — [`lookup`] (names resolved to OCIDs
//!   with list calls, cached per plan), `[[moved]]` renames, the live reads, then [`build`], then
//!   [`checks`] (what the plan creates or changes checked against OCI's lists: shape, domains,
//!   image, subnet) and `image_checks` (an instance's shape against its image's compatible
//!   shapes, an image's capabilities against OCI's global schema); `live`: those reads (in bulk,
//!   the etags of what will change, image lookups);
//! - [`image_caps`]: an image's `shapes` and `capabilities` as desired attributes, read live only
//!   for the images that declare them;
//! - [`from_manifest`] and [`desired`]: the manifest's resources as flat lists of desired
//!   attributes, each classed as updatable in place, a move (compartment), or forcing replacement
//!   (with the reason);
//!   [`image_copies`]: an image's copies in other regions (`image.NAME@<region>`), and the
//!   references that mean them;
//! - [`diff`]: desired vs live (what OCI says now) → attribute changes, and state vs live → drift;
//! - [`build`]: desired resources, prior state and live reads → the plan's nodes and edges (a pure
//!   function: per resource, image captures, deletes);
//! - [`select`]: what `--target` and `--exclude` keep;
//! - [`tags`]: the `kiln-address` tag check (a recorded OCID tagged with another address is
//!   refused) and the retag of a renamed resource;
//! - [`rollback`]: `on_failure = "rollback"`: the fleets moved back onto their previous image;
//! - [`rollout`]: boot volume replacements, and a fleet's replacements released in batches;
//! - [`versions`]: image versions — `kiln-version` numbers, `keep` (retained versions, deleted
//!   oldest first, never one in use), `version` pins and `env` promotion resolved from states;
//! - [`render`]: terraform-like text and the JSON format; [`saved`]: plan files (`--out`);
//! - [`markdown`]: a pull-request comment (`--format markdown`);
//! - [`terraform`]: the plan in the shape of Terraform's JSON plan (`--json=terraform`), for the
//!   tools that read it (conftest/OPA, Checkov, PR bots).
//!
//! Beside them: [`import`] (an OCI instance as a manifest table and a state record, the inverse of
//! [`from_manifest`]; [`import_image`]: a custom image made outside kiln, adopted) and [`synthetic`] (plan inputs of any size for the benchmark).
//!
//! The DAG itself is the generic leaf [`crate::dag`]; [`Plan::graph`] draws the changes as one
//! (for `kiln graph --actions`).

pub mod build;
pub mod checks;
pub mod desired;
pub mod diff;
pub mod from_manifest;
pub mod image_caps;
mod image_checks;
pub mod image_copies;
pub mod import;
pub mod import_image;
mod live;
pub mod lookup;
pub mod markdown;
mod observe;
pub mod refresh;
pub mod render;
pub mod rollback;
pub mod rollout;
pub mod saved;
pub mod select;
pub mod synthetic;
pub mod tags;
pub mod terraform;
pub mod versions;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::raw_json::RawJson;

/// Version of the `--json` and saved-plan formats.
pub const FORMAT_VERSION: &str = "1";

/// The kind of a managed resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Instance,
    Image,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Instance => "instance",
            Kind::Image => "image",
        }
    }
}

/// What one node of the plan does. Closed on purpose: the executor has one arm per variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Launch an instance / create (capture or import) an image.
    Create,
    /// Update attributes in place (UpdateInstance / UpdateImage).
    Update,
    /// Destroy and create again (an attribute cannot change in place).
    Replace,
    /// Change compartment (ChangeInstanceCompartment / ChangeImageCompartment).
    Move,
    /// Power on an instance.
    Start,
    /// Power off an instance.
    Stop,
    /// Terminate an instance / delete an image.
    Delete,
}

impl Action {
    /// The terraform-like symbol used in the human view.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Move => ">",
            Action::Start => "▶",
            Action::Stop => "■",
            Action::Delete => "-",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Move => "move",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Delete => "delete",
        }
    }
}

/// How an attribute can change on a live resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttrClass {
    /// Sent in UpdateInstanceDetails / UpdateImageDetails.
    Update,
    /// The compartment: ChangeCompartment.
    Move,
    /// Cannot change: the resource is replaced.
    Replace,
    /// The desired power state (RUNNING / STOPPED): a start or stop action.
    Power,
}

/// One attribute that differs, desired vs live (or state vs live, in [`Drift`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttrChange {
    /// Manifest path of the attribute, e.g. `shape_config.ocpus` or `freeform_tags.team`.
    pub path: String,
    /// The current value (live, or state for a plan without refresh); `null` when unset.
    pub before: Value,
    /// The value after the change; `null` when it will be unset.
    pub after: Value,
    /// True when this attribute alone forces the resource to be replaced.
    pub forces_replacement: bool,
    /// Why it forces replacement (shown as `# forces replacement (why)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// One node of the plan's DAG.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Resource address, e.g. `instance.web`.
    pub address: String,
    pub kind: Kind,
    pub action: Action,
    /// Why this action is planned, in one line.
    pub reason: String,
    /// The attributes that change (empty for power actions and deletes).
    pub attributes: Vec<AttrChange>,
    /// The region of the resource this node makes (`None`: the provider's). Existing resources
    /// are reached in the region of their OCID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The resource's OCID when it exists already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The etag read live for this resource: sent as `If-Match` by the executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The request body the executor sends (LaunchInstanceDetails, CreateImageDetails,
    /// UpdateInstanceDetails, …), exactly as planned. A reference to another managed resource's
    /// id is written `{"$ref": "image.golden"}` and resolved from state when the node runs.
    /// Kept as text (a plan of 10,000 launches holds 10,000), parsed where it is sent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::raw_json::option_as_value"
    )]
    pub request: Option<RawJson>,
    /// Create-time inputs to record in state once created (same `$ref` placeholders), as text.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::raw_json::option_as_value"
    )]
    pub inputs: Option<RawJson>,
    /// Indexes into [`Plan::changes`] of the nodes that must finish first.
    #[serde(default)]
    pub depends_on: Vec<usize>,
    /// A delete of the previous version of a replaced image (create-before-destroy): it runs
    /// after everything launched from the image moved to the new one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deposed: bool,
    /// Digest of the resource as the plan read it, lifecycle state aside ([`observed_digest`]):
    /// when a guarded mutation is refused (412, or 409 while the resource is changing state), a
    /// resource that differs from this only in its lifecycle was not changed by anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// The address has an unfinished create (a pending create in the state) that this node
    /// resolves first — resent with its retry token to the region it was sent to, or what it
    /// made found and adopted — and then acts on what it made: a delete destroys it, a replace
    /// replaces it (its `region` is where the create was sent). A create resolves its own
    /// pending create without this flag.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

/// The fields of a resource that change with its lifecycle alone (a capture, a stop, a start).
const LIFECYCLE_FIELDS: &[&str] = &["lifecycleState", "timeMaintenanceRebootDue"];

/// Hex SHA-256 of a resource's JSON without its [`LIFECYCLE_FIELDS`].
pub fn observed_digest(body: &Value) -> String {
    use sha2::{Digest, Sha256};
    let mut b = body.clone();
    if let Value::Object(m) = &mut b {
        for f in LIFECYCLE_FIELDS {
            m.remove(*f);
        }
    }
    hex::encode(Sha256::digest(
        serde_json::to_vec(&b).expect("json serialises"),
    ))
}

/// A resource changed outside kiln: live differs from what the state last recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub address: String,
    /// `before` = state, `after` = live.
    pub attributes: Vec<AttrChange>,
    /// Set when the resource is gone (404, TERMINATED or DELETED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone: Option<String>,
}

/// Counts per action, for the summary line and `--json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    #[serde(rename = "move")]
    pub move_: usize,
    pub start: usize,
    pub stop: usize,
    pub delete: usize,
    pub drifted: usize,
}

/// Whether the summaries (the plan's and the apply's) count `c` on its own: the delete of a
/// predecessor that a replacement in the same plan supersedes is part of that replacement (the
/// plan shows it under the replacement); a predecessor left by an earlier apply is a destroy.
pub fn counted_alone(c: &Change, changes: &[Change]) -> bool {
    !(c.deposed
        && c.action == Action::Delete
        && changes
            .iter()
            .any(|o| o.address == c.address && o.action == Action::Replace))
}

impl Summary {
    pub fn of(changes: &[Change], drift: &[Drift]) -> Summary {
        let mut s = Summary {
            drifted: drift.len(),
            ..Summary::default()
        };
        for c in changes.iter().filter(|c| counted_alone(c, changes)) {
            *match c.action {
                Action::Create => &mut s.create,
                Action::Update => &mut s.update,
                Action::Replace => &mut s.replace,
                Action::Move => &mut s.move_,
                Action::Start => &mut s.start,
                Action::Stop => &mut s.stop,
                Action::Delete => &mut s.delete,
            } += 1;
        }
        s
    }

    pub fn changes(&self) -> usize {
        self.create + self.update + self.replace + self.move_ + self.start + self.stop + self.delete
    }
}

/// What a plan limited by `--target` / `--exclude` left out — the header and the summary say so,
/// as Terraform's "Resource targeting is in effect" does, and `--detailed-exitcode` counts what
/// is known to be pending outside (see [`Plan::pending`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partial {
    /// The `--target` selectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// The `--exclude` selectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    /// Changes found outside the selection and left out of this plan, counted as the summary
    /// counts. Known because everything not excluded is read, targeted or not; of the excluded
    /// resources, those only the manifest or only the state has (a create, a destroy).
    pub changes_outside: usize,
    /// Drifted resources outside the selection (not shown).
    pub drifted_outside: usize,
    /// Resources `--exclude` left out (with what depends on them) that both the manifest and the
    /// state have: not read, so what they need is not known.
    pub not_read: usize,
}

/// The plan: everything `kiln apply` needs to execute it exactly, and everything the views show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    /// Environment name (`default` without `--env`).
    pub env: String,
    /// What kiln talks to, for the header (e.g. `embedded emulator, lifecycle times scaled ×0.01`).
    pub endpoint: String,
    /// The regions the manifest spans, when more than the provider's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Lineage and serial of the state the plan was made from (`None` when there was no state).
    #[serde(default)]
    pub state_lineage: Option<String>,
    #[serde(default)]
    pub state_serial: u64,
    /// The DAG's nodes, in a stable order (dependencies before dependents).
    pub changes: Vec<Change>,
    /// Changes made outside kiln, reported even when the plan also fixes them.
    pub drift: Vec<Drift>,
    /// Addresses dropped from state: gone from OCI and no longer in the manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forget: Vec<String>,
    /// Deposed objects dropped from state because they are gone from OCI: (address, OCID).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forget_deposed: Vec<(String, String)>,
    /// `[[moved]]` renames the apply makes in the state first: (from, to).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved: Vec<(String, String)>,
    /// Images with `keep > 1`: previous versions the apply records as retained once its changes
    /// ran (nothing changes in OCI; [`versions`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retain: Vec<versions::Retain>,
    /// The other environments whose state this plan read for `source = { image, env }`, with
    /// the serial read (the header names them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envs: Vec<versions::EnvRead>,
    /// Things the user should know that do not stop the plan (e.g. a `[[moved]]` already done).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub summary: Summary,
    /// `--refresh-only`: no changes; apply writes what OCI says into the state (the drift is
    /// accepted, gone resources are dropped from it) and changes nothing in OCI.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh_only: bool,
    /// Addresses whose state record apply replaces with a fresh read (a Get, no mutation): under
    /// `--refresh-only`, every one OCI describes differently from the state. (Drift on resources
    /// no change touches is recorded so too, in any apply.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refresh: Vec<String>,
    /// Instances whose network facts (primary VNIC: IPs, hostname) apply reads and records,
    /// changing nothing in OCI: those the state has none of (a state from before kiln recorded
    /// them, a read that failed), or every instance under `--refresh-only`. Instances that apply
    /// creates, replaces or moves are read too, without being listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_network: Vec<String>,
    /// Every resource of the manifest and the state as the plan saw it (the state's record, the
    /// live read), for the views that show whole resources rather than changed attributes
    /// ([`terraform`]: `before`, `prior_state`, no-op resources). Filled only when a view or a
    /// saved plan needs it ([`refresh::PlanOptions::observe`]); never part of kiln's `--json`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed: Vec<Observed>,
    /// Fleets whose members this plan replaces a few at a time (`rollout`): limits, health gate
    /// and batches, in order ([`rollout`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<rollout::Rollout>,
    /// Another kiln held the state lock when this plan read the state (a plan takes no lock: it
    /// reads one consistent snapshot): its record — who, host, pid, operation, since. The plan
    /// is of the state as that kiln had recorded it (`state_serial`); saved, it is refused as
    /// stale once that kiln records more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<crate::state::LockInfo>,
    /// Set when `--target` or `--exclude` limited the plan: what it left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<Partial>,
    /// The manifest's lookups by name and the OCIDs they resolved to (what was diffed and is
    /// sent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lookups: Vec<lookup::Resolved>,
}

/// One resource as a plan saw it: what the state recorded and what was read live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub address: String,
    pub kind: Kind,
    /// Whether the manifest declares it (a resource only the state has is deleted or forgotten).
    pub declared: bool,
    /// The OCID, when it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The resource's OCI JSON as the state last recorded it (`None`: not in the state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    /// The resource's OCI JSON as read live (`None`: not read, or gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<Value>,
    /// The create-time inputs the state recorded (subnet, public IP choice, boot volume size).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub inputs: serde_json::Map<String, Value>,
    /// Instances: the primary VNIC's facts the state recorded (subnet, private IP, hostname).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::state::Network>,
}

impl Plan {
    /// True when applying would change nothing and nothing drifted.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.drift.is_empty() && self.moved.is_empty()
    }

    /// Whether anything is known to be pending (`--detailed-exitcode` 2): a change or drift in
    /// this plan, an image version to record as retained or a previous version gone from OCI
    /// to drop from the state (the apply changes the state), or — in a partial plan — changes or
    /// drift found outside its selection. What `--exclude` left unread is not known, and the
    /// plan says so instead.
    pub fn pending(&self) -> bool {
        !self.is_empty()
            || !self.retain.is_empty()
            || !self.forget_deposed.is_empty()
            || self
                .partial
                .as_ref()
                .is_some_and(|p| p.changes_outside > 0 || p.drifted_outside > 0)
    }

    /// Whether applying changes nothing at all, in OCI or in the state.
    pub fn is_noop(&self) -> bool {
        self.is_empty()
            && self.forget.is_empty()
            && self.forget_deposed.is_empty()
            && self.retain.is_empty()
            && self.refresh.is_empty()
            && self.read_network.is_empty()
    }

    /// The resource graph, for `kiln graph`: every resource (`resources`, the manifest's, and
    /// those this plan deletes), an edge `a → b` when `b` uses `a` (`edges` are
    /// `(dependent, dependency)`, as [`crate::manifest::Manifest::edges`] gives them), and each
    /// node labelled with its resource's planned actions in the order they run (none: no label).
    pub fn resource_graph(
        &self,
        resources: &[String],
        edges: &[(String, String)],
    ) -> crate::dag::Dag<String> {
        let mut actions: BTreeMap<&str, Vec<String>> =
            resources.iter().map(|r| (r.as_str(), Vec::new())).collect();
        for c in &self.changes {
            let what = match c.deposed {
                true => format!("{} previous version", c.action.as_str()),
                false => c.action.as_str().to_string(),
            };
            actions.entry(c.address.as_str()).or_default().push(what);
        }
        let mut dag = crate::dag::Dag::new();
        let ids: BTreeMap<&str, _> = actions
            .iter()
            .map(|(addr, acts)| {
                let label = match acts.is_empty() {
                    true => addr.to_string(),
                    false => format!("{addr}\n({})", acts.join(", ")),
                };
                (*addr, dag.add_node(label))
            })
            .collect();
        for (dependent, dependency) in edges {
            if let (Some(&a), Some(&b)) =
                (ids.get(dependency.as_str()), ids.get(dependent.as_str()))
            {
                dag.add_edge(a, b);
            }
        }
        dag
    }

    /// The DAG of the changes, for `kiln graph --actions` (the executor walks `depends_on` itself).
    pub fn graph(&self) -> crate::dag::Dag<String> {
        let mut dag = crate::dag::Dag::new();
        let ids: Vec<_> = self
            .changes
            .iter()
            .map(|c| dag.add_node(format!("{} {}", c.action.as_str(), c.address)))
            .collect();
        for (i, c) in self.changes.iter().enumerate() {
            for &d in &c.depends_on {
                dag.add_edge(ids[d], ids[i]);
            }
        }
        dag
    }
}
