//! Rollouts in the plan: a scheduling constraint on the DAG, not a second executor.
//!
//! A pass over the nodes [`super::build`] computed, run by [`super::refresh`] before the plan is
//! shown:
//! 1. **boot volume replacement**: an instance with `replace_method = "boot_volume"` whose
//!    replacement is forced only by what OCI's boot volume replacement can carry (`source.image`,
//!    a growing `boot_volume_size_in_gbs`) is updated in place instead: an `update` node whose
//!    request is UpdateInstanceDetails with `sourceDetails` (`UpdateInstanceSourceViaImageDetails`:
//!    `imageId`, `isPreserveBootVolumeEnabled`, `bootVolumeSizeInGBs`; oci-go-sdk v65
//!    `core/update_instance_source_via_image_details.go`), plus any other in-place update. What it
//!    cannot carry (subnet, availability domain, `assign_public_ip`, `user_data`, …) still
//!    replaces, and the reason says so.
//! 2. **batches**: the members of a fleet with `rollout` that this plan replaces (or
//!    boot-volume-replaces) are split into batches, which decide each member's method and are
//!    what the plan shows: the schedule at its slowest. The executor runs them without barriers:
//!    each member takes a slot of its fleet's surge or unavailable pool and the next member starts
//!    as soon as any slot frees (`apply::rollout::slots`); a failed member stops the fleet while
//!    the members in flight finish. With limits `(surge, unavailable)` a batch
//!    of new instances has `surge` members launched before their predecessor goes (create first;
//!    the old one goes once the new one is healthy) and `unavailable` members whose predecessor
//!    goes first: at most `count + surge` members exist, at least `count - unavailable` are
//!    healthy. A member being boot-volume-replaced is unavailable, so those batches have
//!    `unavailable` members (the manifest refuses `max_unavailable = 0` with boot volume
//!    replacement, and a percentage that rounds down to zero for the fleet's size). A fleet
//!    being rolled back ([`super::rollback`]) is batched the same way, its
//!    [`Rollout::rollback_to`] set.
//! 3. **images in use**: the delete of a previous image (deposed) waits for every node of a
//!    member that still runs it, and is left out of the plan while a member that this plan does
//!    not move (replace, update or destroy) still runs it (it stays deposed until the last
//!    member left it).
//!
//! The health gate itself (RUNNING, the check, `min_healthy_time`) runs in the executor
//! ([`crate::apply`]'s `rollout`), which finds each member's gate here ([`Rollout`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::manifest::rollout::ReplaceMethod;
use crate::manifest::Manifest;

use super::build::{LiveRead, Prior};
use super::desired::DesiredResource;
use super::diff::{self, AttrDiff};
use super::{Action, AttrClass, Change, Kind};

/// How one member moves onto the new source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// UpdateInstance with `sourceDetails`: the same instance, a new boot volume.
    BootVolume,
    /// A new instance launched before the old one goes (the old one goes once it is healthy).
    CreateFirst,
    /// The old instance goes first, then the new one is launched.
    DestroyFirst,
}

impl Method {
    pub fn describe(self) -> &'static str {
        match self {
            Method::BootVolume => "boot volume replacement",
            Method::CreateFirst => "new instance, then the old one goes",
            Method::DestroyFirst => "the old instance goes, then a new one",
        }
    }
}

/// One member of a rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub address: String,
    pub method: Method,
    /// Why the member moves (the node's reason).
    pub why: String,
    /// The image it runs before it moves: where `on_failure = "rollback"` returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// The gate a member passes before the next batch starts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// Program and arguments (empty: RUNNING is healthy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Where the check runs: the manifest directory.
    #[serde(default)]
    pub dir: String,
    pub timeout_ms: u64,
    pub interval_ms: u64,
    pub min_healthy_ms: u64,
    /// The fleet is declared STOPPED: a member passes once it launched (RUNNING or STOPPED, as
    /// it may already have been stopped when a rollout resumes); no check can run on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

/// One fleet's rollout: its limits, its gate and its batches, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// `instance.web`.
    pub fleet: String,
    /// Members the manifest declares.
    pub size: usize,
    /// As written (`1`, `"25%"`).
    pub max_surge: String,
    pub max_unavailable: String,
    /// Resolved for `size` (surge rounded up, unavailable down).
    pub surge: u64,
    pub unavailable: u64,
    pub on_failure: String,
    pub gate: Gate,
    pub batches: Vec<Vec<Member>>,
    /// The fleet returns to this image: an earlier rollout failed with `on_failure =
    /// "rollback"` ([`super::rollback`]). A member failing its gate on the way back pauses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<String>,
}

impl Rollout {
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.batches.iter().flatten()
    }
}

/// What boot volume replacement carries besides the image.
const CARRIED: &[&str] = &["source.image", "boot_volume_size_in_gbs"];

/// `instance.web[10]` → `("instance.web", 10)`; string keys sort after numbers.
fn member_key(address: &str) -> (String, u64, String) {
    let (fleet, rest) = address.split_once('[').unwrap_or((address, ""));
    let idx = rest.trim_end_matches(']');
    (
        fleet.to_string(),
        idx.parse().unwrap_or(u64::MAX),
        idx.to_string(),
    )
}

/// The pass (module doc). Returns the rollouts and warnings; `changes` keeps a topological order.
pub fn shape(
    changes: &mut Vec<Change>,
    manifest: &Manifest,
    desired: &[DesiredResource],
    live: &HashMap<String, LiveRead>,
    prior: &BTreeMap<String, Prior>,
) -> (Vec<Rollout>, Vec<String>) {
    let mut warnings = Vec::new();
    let specs: HashMap<String, &crate::manifest::InstanceSpec> = manifest
        .instances
        .values()
        .map(|s| (s.address.to_string(), s))
        .collect();
    let by_addr: HashMap<&str, &DesiredResource> =
        desired.iter().map(|d| (d.address.as_str(), d)).collect();

    // 1. boot volume replacement
    for c in changes.iter_mut() {
        let Some(spec) = specs.get(&c.address) else {
            continue;
        };
        if c.action != Action::Replace
            || c.kind != Kind::Instance
            || spec.replace_method != ReplaceMethod::BootVolume
        {
            continue;
        }
        let Some(d) = by_addr.get(c.address.as_str()) else {
            continue;
        };
        let cannot: Vec<String> = c
            .attributes
            .iter()
            .filter(|a| a.forces_replacement && !CARRIED.contains(&a.path.as_str()))
            .map(|a| format!("`{}`", a.path))
            .chain(
                c.attributes
                    .iter()
                    .filter(|a| a.path == "boot_volume_size_in_gbs")
                    .filter(|a| match (a.before.as_u64(), a.after.as_u64()) {
                        (Some(b), Some(n)) => n < b,
                        (Some(_), None) => true,
                        _ => false,
                    })
                    .map(|_| "a smaller `boot_volume_size_in_gbs`".to_string()),
            )
            .chain(
                c.attributes
                    .iter()
                    .filter(|a| !a.forces_replacement)
                    .filter(|a| {
                        d.attrs
                            .iter()
                            .any(|x| x.path == a.path && x.class == AttrClass::Move)
                    })
                    .map(|a| format!("`{}`", a.path)),
            )
            .chain(
                c.reason
                    .contains("--replace")
                    .then(|| "`--replace`".to_string()),
            )
            .chain(
                spec.shape
                    .starts_with("BM.")
                    .then(|| "a bare metal shape".to_string()),
            )
            .collect();
        let carried = c
            .attributes
            .iter()
            .any(|a| a.forces_replacement && CARRIED.contains(&a.path.as_str()));
        if !cannot.is_empty() || !carried || c.id.is_none() {
            if !cannot.is_empty() {
                c.reason = format!(
                    "{}; boot volume replacement cannot carry {}",
                    c.reason,
                    cannot.join(", ")
                );
            }
            continue;
        }
        let id = c.id.clone().expect("checked");
        let live_body = live.get(&id).map(|l| l.body.parse()).unwrap_or(Value::Null);
        let create = c.request.as_ref().map(|r| r.parse()).unwrap_or(Value::Null);
        let mut source = json!({
            "sourceType": "image",
            "imageId": create["sourceDetails"]["imageId"].clone(),
            "isPreserveBootVolumeEnabled": spec.preserve_boot_volume,
        });
        // The new volume keeps the declared size and Vault key (UpdateInstanceSourceViaImageDetails
        // has both; its performance is the old volume's).
        for k in ["bootVolumeSizeInGBs", "kmsKeyId"] {
            if let Some(v) = create["sourceDetails"].get(k) {
                source[k] = v.clone();
            }
        }
        let others: Vec<AttrDiff> = c
            .attributes
            .iter()
            .filter(|a| !a.forces_replacement)
            .map(|a| AttrDiff {
                change: a.clone(),
                class: AttrClass::Update,
            })
            .collect();
        let mut body = diff::update_body(d, &live_body, &others);
        body["sourceDetails"] = source;
        let names: Vec<String> = c
            .attributes
            .iter()
            .map(|a| format!("`{}`", a.path))
            .collect();
        c.action = Action::Update;
        c.reason = format!(
            "{} changed: boot volume replacement (the OCID, VNIC, IPs and hostname stay)",
            names.join(", ")
        );
        for a in c.attributes.iter_mut() {
            a.forces_replacement = false;
        }
        c.request = Some(body.into());
        c.inputs = Some(d.input_values().into());
    }

    // A predecessor still TERMINATING (an apply died after its terminate was sent) still
    // exists: the rollout waits for it as for any old member, before its first batch.
    for (addr, p) in prior {
        if specs.get(addr).is_none_or(|s| s.rollout.is_none()) {
            continue;
        }
        for old in &p.deposed {
            let terminating = live
                .get(old)
                .and_then(|l| l.body.top_str("lifecycleState"))
                .is_some_and(|s| s == "TERMINATING");
            let planned = changes
                .iter()
                .any(|c| c.action == Action::Delete && c.id.as_deref() == Some(old.as_str()));
            if terminating && !planned {
                changes.push(Change {
                    address: addr.clone(),
                    kind: Kind::Instance,
                    action: Action::Delete,
                    reason: "the previous instance, still terminating: the rollout waits for it"
                        .into(),
                    attributes: Vec::new(),
                    region: None,
                    id: Some(old.clone()),
                    etag: None,
                    request: None,
                    inputs: None,
                    depends_on: Vec::new(),
                    deposed: true,
                    pending: false,
                    observed: None,
                });
            }
        }
    }

    // 2. batches
    let back = super::rollback::rolling_back(prior);
    // The image a member runs now (read live, else recorded).
    let runs = |addr: &str| -> Option<String> {
        let p = prior.get(addr)?;
        let id = p.id.as_ref()?;
        let body = match live.get(id) {
            Some(l) if !l.is_gone() => l.body.parse(),
            _ => p.attributes.parse(),
        };
        super::rollback::image_of_record(&body).map(str::to_string)
    };
    let mut rollouts = Vec::new();
    let mut fleets: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let size_of = |fleet: &str| {
        specs
            .values()
            .filter(|s| format!("instance.{}", s.address.fleet()) == fleet)
            .count()
    };
    for (i, c) in changes.iter().enumerate() {
        let Some(spec) = specs.get(&c.address) else {
            continue;
        };
        if spec.rollout.is_none() {
            continue;
        }
        let bvr = c.action == Action::Update
            && c.request.as_ref().is_some_and(|r| {
                r.parse_keys(&["sourceDetails"])
                    .get("sourceDetails")
                    .is_some()
            });
        // A predecessor left by an interrupted create-first replacement: it goes once its
        // successor passed the gate (it was never seen healthy).
        let finish = c.action == Action::Delete && c.deposed && c.kind == Kind::Instance;
        // A member that is down (an apply died while its boot volume was being replaced) is
        // unavailable until it is started and healthy again.
        let down = c.action == Action::Start && c.kind == Kind::Instance;
        if (c.action == Action::Replace && !c.deposed) || bvr || finish || down {
            fleets
                .entry(format!("instance.{}", spec.address.fleet()))
                .or_default()
                .push(i);
        }
    }
    for (fleet, mut nodes) in fleets {
        nodes.sort_by_key(|&i| member_key(&changes[i].address));
        let first = &changes[nodes[0]].address;
        let spec = specs[first];
        let r = spec.rollout.clone().expect("filtered");
        let size = size_of(&fleet);
        let (surge, unavailable) = r.limits(size as u64);
        // The manifest refuses boot volume replacement with `max_unavailable` 0, as a count or as
        // a percentage rounding down to 0 (`manifest::rollout`); one at a time is never reached.
        let bvr_batch = unavailable.max(1);
        let mut batches: Vec<Vec<(usize, Member)>> = Vec::new();
        let mut cur: Vec<(usize, Member)> = Vec::new();
        let (mut used_surge, mut used_unavail) = (0u64, 0u64);
        for &i in &nodes {
            let c = &changes[i];
            let bvr = c.action == Action::Update || c.action == Action::Start;
            // Fenceposts make `surge + unavailable` at least 1, and `bvr_batch` is at least 1:
            // an empty batch always takes a member.
            let finish = c.action == Action::Delete;
            let method = loop {
                let m = if finish {
                    // Its successor exists already: it holds a surge slot (or, without surge,
                    // an unavailable one) until the old one is gone.
                    (used_surge < surge.max(1) || used_unavail < unavailable)
                        .then_some(Method::CreateFirst)
                } else if bvr {
                    (used_unavail < bvr_batch).then_some(Method::BootVolume)
                } else if used_surge < surge {
                    Some(Method::CreateFirst)
                } else if used_unavail < unavailable {
                    Some(Method::DestroyFirst)
                } else {
                    None
                };
                match m {
                    Some(m) => break m,
                    None => {
                        batches.push(std::mem::take(&mut cur));
                        (used_surge, used_unavail) = (0, 0);
                    }
                }
            };
            match method {
                Method::CreateFirst => used_surge += 1,
                _ => used_unavail += 1,
            }
            cur.push((
                i,
                Member {
                    address: c.address.clone(),
                    method,
                    why: c.reason.clone(),
                    previous: runs(&c.address),
                },
            ));
        }
        if !cur.is_empty() {
            batches.push(cur);
        }
        // A member's way of going is its node's `create_before_destroy` input; the executor
        // gives its members slots of the fleet's pools (`apply::rollout::slots`), so the batches
        // are no barriers.
        for (i, m) in batches.iter().flatten() {
            if let (Some(inputs), true) =
                (changes[*i].inputs.as_mut(), m.method != Method::BootVolume)
            {
                inputs.edit(|inputs| {
                    if let Value::Object(inputs) = inputs {
                        inputs.insert(
                            "create_before_destroy".into(),
                            Value::Bool(m.method == Method::CreateFirst),
                        );
                    }
                });
            }
        }
        let gate = Gate {
            command: r
                .health_check
                .as_ref()
                .map(|h| h.command.clone())
                .unwrap_or_default(),
            dir: manifest.dir.display().to_string(),
            timeout_ms: r
                .health_check
                .as_ref()
                .map(|h| h.timeout.as_millis() as u64)
                .unwrap_or(0),
            interval_ms: r
                .health_check
                .as_ref()
                .map(|h| h.interval.as_millis() as u64)
                .unwrap_or(0),
            min_healthy_ms: r.min_healthy_time.as_millis() as u64,
            stopped: spec.state == crate::manifest::PowerState::Stopped,
        };
        rollouts.push(Rollout {
            size,
            max_surge: r.max_surge.to_string(),
            max_unavailable: r.max_unavailable.to_string(),
            surge,
            unavailable,
            on_failure: r.on_failure.as_str().to_string(),
            gate,
            batches: batches
                .into_iter()
                .map(|b| b.into_iter().map(|(_, m)| m).collect())
                .collect(),
            rollback_to: back.get(&fleet).cloned(),
            fleet,
        });
    }

    // 3. images in use (a member this plan destroys leaves its image too: the delete waits)
    let moving: BTreeSet<&str> = changes
        .iter()
        .filter(|c| {
            c.kind == Kind::Instance
                && matches!(c.action, Action::Replace | Action::Update | Action::Delete)
        })
        .map(|c| c.address.as_str())
        .collect();
    let image_of = |addr: &str| -> Option<String> {
        let id = prior.get(addr)?.id.as_ref()?;
        let l = live.get(id)?;
        if l.is_gone() {
            return None;
        }
        l.body.parse()["imageId"].as_str().map(str::to_string)
    };
    let mut drop = BTreeSet::new();
    let mut extra: Vec<(usize, usize)> = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        if c.kind != Kind::Image || c.action != Action::Delete || !c.deposed {
            continue;
        }
        let Some(old) = &c.id else { continue };
        let users: Vec<&str> = prior
            .keys()
            .map(String::as_str)
            .filter(|a| a.starts_with("instance."))
            .filter(|a| image_of(a).as_deref() == Some(old.as_str()))
            .collect();
        if users.iter().any(|u| !moving.contains(u)) {
            drop.insert(i);
            warnings.push(format!(
                "the previous `{}` ({old}) is kept: {} still run it",
                c.address,
                users
                    .iter()
                    .filter(|u| !moving.contains(*u))
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        }
        for (j, o) in changes.iter().enumerate() {
            if users.contains(&o.address.as_str()) && o.kind == Kind::Instance {
                extra.push((i, j));
            }
        }
    }
    for (i, j) in extra {
        changes[i].depends_on.push(j);
    }
    if !drop.is_empty() {
        remove_nodes(changes, &drop);
    }
    reorder(changes);
    (rollouts, warnings)
}

/// Remove the nodes `drop`: what depended on them no longer does.
pub(super) fn remove_nodes(changes: &mut Vec<Change>, drop: &BTreeSet<usize>) {
    let mut map = vec![usize::MAX; changes.len()];
    let mut n = 0;
    for (i, slot) in map.iter_mut().enumerate() {
        if !drop.contains(&i) {
            *slot = n;
            n += 1;
        }
    }
    let old = std::mem::take(changes);
    for (i, mut c) in old.into_iter().enumerate() {
        if drop.contains(&i) {
            continue;
        }
        c.depends_on = c
            .depends_on
            .iter()
            .filter(|d| !drop.contains(d))
            .map(|&d| map[d])
            .collect();
        changes.push(c);
    }
}

/// A topological order again (dependencies first), keeping the present order where it can.
pub(super) fn reorder(changes: &mut Vec<Change>) {
    let n = changes.len();
    let mut indegree: Vec<usize> = Vec::with_capacity(n);
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, c) in changes.iter_mut().enumerate() {
        c.depends_on.sort_unstable();
        c.depends_on.dedup();
        c.depends_on.retain(|&d| d != i);
        indegree.push(c.depends_on.len());
        for &d in &c.depends_on {
            dependents[d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() != n {
        // A cycle cannot come from batches of a fleet whose members depend on nothing of each
        // other; keep the order as it is rather than lose nodes.
        return;
    }
    let mut position = vec![0; n];
    for (p, &i) in order.iter().enumerate() {
        position[i] = p;
    }
    let mut slots: Vec<Option<Change>> = std::mem::take(changes).into_iter().map(Some).collect();
    for &i in &order {
        let mut c = slots[i].take().expect("each once");
        c.depends_on = c.depends_on.iter().map(|&d| position[d]).collect();
        c.depends_on.sort_unstable();
        changes.push(c);
    }
}
