//! Image versions in the plan (issue 24): pins resolved against the state, promotion from another
//! environment's state, and retention (`keep = N`).
//!
//! - **Numbers.** Every image kiln makes is tagged `kiln-version` (next to `kiln-address`): 1 for
//!   an address's first image, one more than any version the state knows for each rebuild
//!   ([`number_creates`]). The state records the current object's number in its attributes (the
//!   tag as read), a deposed one's in [`crate::state::Deposed::version`], a retained one's in
//!   [`crate::state::Retained::version`].
//! - **Pins** ([`resolve`]): `version = N` (`"previous"` = 1) is the Nth version back from the
//!   newest the state records (current first, then the retained ones, newest first); a version
//!   the state does not retain is a problem at the `version` span. `env = "staging"` is the
//!   image staging's state records for the instance's region — the record of the copy there
//!   (`image.NAME@<region>`) or of the image itself when it lives there — read from a snapshot of
//!   that state (same backend, no lock); unless it is AVAILABLE there, nothing is planned for the
//!   instance (the plan says so). A pinned source becomes that image's OCID, so a change of pin
//!   is an ordinary `source.image` change: a replacement, a boot volume replacement, a rollout.
//! - **Retention** ([`retention`], after [`super::rollout::shape`]): with `keep = N > 1`, the
//!   image a rebuild supersedes (deposed by the executor, as before) is not deleted but recorded
//!   as a retained version at the end of the apply ([`Retain`]; a kill before that leaves it
//!   deposed, and the next plan retains it again: crash-safe by construction). Versions beyond
//!   `N` are deleted oldest first with the `If-Match` of the etag read (or recorded), after
//!   every instance leaving them has moved, and never one that an instance staying on it runs
//!   (`imageId`: launched from, or boot-volume-replaced onto) or that this plan launches an
//!   instance from: the plan says which version is kept back and why. With `keep = 1` (the
//!   default) nothing changes from before: the previous image is deposed and deleted, as the
//!   rollout's "images in use" rule allows; any retained versions (a lowered `keep`) go too.
//!   The same rules apply to every image record, a region's copy (`image.NAME@<region>`)
//!   included: its `keep` is its image's.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::manifest::diagnostic::Problem;
use crate::manifest::versions::Pin;
use crate::manifest::{InstanceSource, Manifest, Ref};
use crate::state::{ResourceKind, ResourceState, State, VERSION_TAG};

use super::build::LiveRead;
use super::{Action, Change, Kind};

/// A previous image version the apply records as retained once the plan ran (moved from the
/// record's deposed objects; nothing changes in OCI).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retain {
    pub address: String,
    pub id: String,
    pub version: u64,
}

/// Another environment's state a plan read for `source = { image, env }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRead {
    pub env: String,
    /// `None`: that environment has no state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<String>,
}

/// Other environments' states, read for promotion: name → snapshot (`None`: no state).
pub type EnvStates = BTreeMap<String, Option<State>>;

/// The environments a manifest takes images from (`source = { image, env }`).
pub fn envs_read(manifest: &Manifest) -> BTreeSet<String> {
    manifest
        .instances
        .values()
        .filter_map(|i| match &i.pin.as_ref()?.which {
            Pin::Env(e) => Some(e.clone()),
            Pin::Back(_) => None,
        })
        .collect()
}

/// The versions a record holds, newest first: its current object, then the retained ones.
pub fn versions_of(r: &ResourceState) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = r
        .retained
        .iter()
        .map(|v| (v.version, v.id.clone()))
        .collect();
    out.sort_by_key(|v| std::cmp::Reverse(v.0));
    if let Some(id) = &r.id {
        let newest = r
            .version()
            .unwrap_or_else(|| out.first().map(|v| v.0 + 1).unwrap_or(1));
        out.insert(0, (newest, id.clone()));
    }
    out
}

/// The highest version number the record knows (current, deposed, retained).
fn known_max(r: &ResourceState) -> u64 {
    r.version()
        .into_iter()
        .chain(r.deposed.iter().filter_map(|d| d.version))
        .chain(r.retained.iter().map(|v| v.version))
        .max()
        .unwrap_or(0)
}

/// The highest version number the record holds once its unnumbered objects (made before kiln
/// numbered versions) are numbered above the known ones, as [`retention`] numbers them:
/// deposed ones first, then the current object.
fn highest(r: &ResourceState) -> u64 {
    let unknown = r.deposed.iter().filter(|d| d.version.is_none()).count() as u64
        + u64::from(r.id.is_some() && r.version().is_none());
    known_max(r) + unknown
}

/// What [`resolve`] found.
#[derive(Default)]
pub struct Resolved {
    /// The manifest with every pinned `source` made the OCID it resolved to (`None`: no pins).
    pub manifest: Option<Manifest>,
    /// Instances nothing is planned for (their environment has no AVAILABLE image for them).
    pub skipped: BTreeSet<String>,
    /// The environments read.
    pub envs: Vec<EnvRead>,
    /// What the plan says about them.
    pub notes: Vec<String>,
}

/// Resolve every pin of `manifest` against `state` and the other environments' `envs`.
/// `default_region` is where an instance without `region` lives. Problems (a version not
/// retained) are returned all at once.
pub fn resolve(
    manifest: &Manifest,
    state: Option<&State>,
    envs: &EnvStates,
    default_region: Option<&str>,
) -> Result<Resolved, Vec<Problem>> {
    let mut out = Resolved::default();
    let mut problems = Vec::new();
    let pinned: Vec<&String> = manifest
        .instances
        .iter()
        .filter(|(_, s)| s.pin.is_some())
        .map(|(n, _)| n)
        .collect();
    if pinned.is_empty() {
        return Ok(out);
    }
    let mut m = manifest.copy();
    let mut read: BTreeSet<String> = BTreeSet::new();
    for name in pinned {
        let spec = m.instances.get_mut(name).expect("pinned instance");
        let Some(pin) = spec.pin.take() else { continue };
        let InstanceSource::Image(Ref::Resource(image)) = &spec.source else {
            continue;
        };
        let image = image.to_string();
        let address = spec.address.to_string();
        match &pin.which {
            Pin::Back(0) => {}
            Pin::Back(n) => {
                // In a region the image is copied to, the copy's versions (`image@<region>`),
                // as an unpinned reference resolves to the copy there.
                let region = spec.region.as_deref().or(default_region);
                let versions = state
                    .and_then(|s| {
                        region
                            .and_then(|r| s.resources.get(&format!("{image}@{r}")))
                            .or_else(|| s.resources.get(&image))
                    })
                    .map(versions_of)
                    .unwrap_or_default();
                match versions.get(*n as usize) {
                    Some((_, id)) => spec.source = InstanceSource::Image(Ref::Ocid(id.clone())),
                    None => {
                        let kept = match versions.is_empty() {
                            true => "none".to_string(),
                            false => versions
                                .iter()
                                .enumerate()
                                .map(|(i, (v, _))| match i {
                                    0 => format!("{v} (newest)"),
                                    _ => v.to_string(),
                                })
                                .collect::<Vec<_>>()
                                .join(", "),
                        };
                        problems.push(
                            Problem::error(
                                "version_not_retained",
                                format!("`{address}` asks for {} of `{image}`, which the state does not keep", pin.which),
                            )
                            .at(&pin.at, format!("{} version(s) kept", versions.len()))
                            .help(format!("versions kept: {kept}; a rebuild keeps the previous versions only with `keep` > 1 on `{image}`")),
                        );
                    }
                }
            }
            Pin::Env(env) => {
                if *env == manifest.env {
                    problems.push(
                        Problem::error(
                            "invalid_source",
                            format!("`{address}` takes its image from environment `{env}`, which is this one"),
                        )
                        .at(&pin.at, "this environment")
                        .help("remove `env` to use this environment's own image"),
                    );
                    continue;
                }
                let snapshot = envs.get(env).and_then(Option::as_ref);
                if read.insert(env.clone()) {
                    out.envs.push(EnvRead {
                        env: env.clone(),
                        serial: snapshot.map(|s| s.serial),
                        lineage: snapshot.map(|s| s.lineage.clone()),
                    });
                }
                let region = spec.region.as_deref().or(default_region);
                match snapshot.and_then(|s| image_in(s, &image, region)) {
                    Some(id) => spec.source = InstanceSource::Image(Ref::Ocid(id)),
                    None => {
                        out.notes.push(format!(
                            "environment `{env}` has no AVAILABLE `{image}` in {}{}: nothing is planned for `{address}`",
                            region.unwrap_or("the provider's region"),
                            match snapshot {
                                Some(s) => format!(" (its state, serial {})", s.serial),
                                None => " (it has no state)".into(),
                            }
                        ));
                        out.skipped.insert(address);
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    out.manifest = Some(m);
    Ok(out)
}

/// The AVAILABLE image `state` records for `image` in `region`: its copy there, or the image
/// itself when it lives there.
fn image_in(state: &State, image: &str, region: Option<&str>) -> Option<String> {
    let available = |r: &ResourceState| {
        r.kind == ResourceKind::Image
            && r.attributes.top_str("lifecycleState").as_deref() == Some("AVAILABLE")
    };
    if let Some(region) = region {
        if let Some(r) = state.resources.get(&format!("{image}@{region}")) {
            return r.id.clone().filter(|_| available(r));
        }
    }
    let r = state.resources.get(image)?;
    let id = r.id.clone()?;
    let there = r
        .region
        .clone()
        .or_else(|| crate::region::from_ocid(&id).map(str::to_string));
    match (region, there) {
        (Some(want), Some(is)) if want != is => None,
        _ => available(r).then_some(id),
    }
}

/// Tag every image this plan makes with its `kiln-version`: one more than the highest the
/// state knows for its address (1 for the first).
pub fn number_creates(changes: &mut [Change], state: Option<&State>) {
    for c in changes.iter_mut().filter(|c| {
        c.kind == Kind::Image && !c.deposed && matches!(c.action, Action::Create | Action::Replace)
    }) {
        let next = state
            .and_then(|s| s.resources.get(&c.address))
            .map(highest)
            .unwrap_or(0)
            + 1;
        if let Some(request) = c.request.as_mut() {
            request.edit(|body| {
                if let Value::Object(body) = body {
                    let tags = body.entry("freeformTags").or_insert_with(|| json!({}));
                    if let Value::Object(t) = tags {
                        t.insert(VERSION_TAG.into(), json!(next.to_string()));
                    }
                }
            });
        }
    }
}

/// The `keep` of an image record's address (`image.NAME`, or a copy `image.NAME@<region>`):
/// 0 when the manifest no longer declares it — the image, or the copy's region in its `regions`
/// (so a removed region's retained copies go with it) — or under destroy.
fn keep_of(manifest: &Manifest, address: &str, destroy: bool) -> u64 {
    let (base, region) = match address.split_once('@') {
        Some((base, region)) => (base, Some(region)),
        None => (address, None),
    };
    match destroy {
        true => 0,
        false => manifest
            .images
            .values()
            .find(|i| i.address.to_string() == base)
            .filter(|i| region.is_none_or(|r| i.copies.regions.iter().any(|c| c == r)))
            .map(|i| i.keep)
            .unwrap_or(0),
    }
}

/// Apply `keep` to the changes [`super::build`] and [`super::rollout::shape`] computed: the
/// versions to record as retained, and warnings for the versions kept back.
pub fn retention(
    changes: &mut Vec<Change>,
    manifest: &Manifest,
    state: Option<&State>,
    live: &HashMap<String, LiveRead>,
    refreshed: bool,
    destroy: bool,
) -> (Vec<Retain>, Vec<String>) {
    let (mut retain, mut warnings) = (Vec::new(), Vec::new());
    let Some(state) = state else {
        return (retain, warnings);
    };
    // Instances that leave their image in this plan (replaced, boot-volume-replaced, deleted).
    let moving: BTreeSet<String> = changes
        .iter()
        .filter(|c| {
            c.kind == Kind::Instance
                && matches!(c.action, Action::Replace | Action::Update | Action::Delete)
        })
        .map(|c| c.address.clone())
        .collect();
    // What each instance of the state runs: `imageId` (launched from, or replaced onto).
    let runs = |addr: &str| -> Option<String> {
        let r = state.resources.get(addr)?;
        let id = r.id.as_ref()?;
        match live.get(id) {
            Some(l) if l.is_gone() => None,
            Some(l) => l.body.top_str("imageId"),
            None if refreshed => None,
            None => r.attributes.top_str("imageId"),
        }
    };
    // Images this plan launches an instance from, by OCID (a pin onto a retained version).
    let launched: BTreeSet<String> = changes
        .iter()
        .filter_map(|c| c.request.as_ref()?.str_at(&["sourceDetails", "imageId"]))
        .collect();
    let gone = |id: &str| refreshed && live.get(id).is_none_or(LiveRead::is_gone);
    let mut drop = BTreeSet::new();
    let mut extra: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut added: Vec<Change> = Vec::new();
    // Each record's deletes, newest first (`previous` is sorted so): chained oldest first.
    let mut chains: Vec<Vec<usize>> = Vec::new();
    for (addr, r) in state
        .resources
        .iter()
        .filter(|(_, r)| r.kind == ResourceKind::Image)
    {
        let keep = keep_of(manifest, addr, destroy);
        let replaced = changes.iter().any(|c| {
            &c.address == addr && c.kind == Kind::Image && !c.deposed && c.action == Action::Replace
        });
        // The previous versions once this plan ran: (version, id, deposed now, etag recorded).
        let mut previous: Vec<(u64, String, bool, Option<String>)> = r
            .retained
            .iter()
            .map(|v| (v.version, v.id.clone(), false, v.etag.clone()))
            .collect();
        if keep > 1 {
            let mut next_unknown = known_max(r);
            let mut number = |v: Option<u64>| {
                v.unwrap_or_else(|| {
                    next_unknown += 1;
                    next_unknown
                })
            };
            for d in &r.deposed {
                previous.push((number(d.version), d.id.clone(), true, d.etag.clone()));
            }
            if let (true, Some(id)) = (replaced, &r.id) {
                previous.push((number(r.version()), id.clone(), true, r.etag.clone()));
            }
        }
        previous.retain(|(_, id, _, _)| !gone(id));
        previous.sort_by_key(|v| std::cmp::Reverse(v.0));
        let allowed = keep.saturating_sub(1) as usize;
        let mut chain = Vec::new();
        for (n, (version, id, deposed, etag)) in previous.into_iter().enumerate() {
            // The delete nodes `build` planned for it (a deposed predecessor's).
            let planned: Vec<usize> = (0..changes.len())
                .filter(|&i| {
                    let c = &changes[i];
                    c.kind == Kind::Image
                        && c.action == Action::Delete
                        && c.id.as_deref() == Some(id.as_str())
                })
                .collect();
            let users: Vec<&str> = state
                .resources
                .keys()
                .map(String::as_str)
                .filter(|a| a.starts_with("instance.") && runs(a).as_deref() == Some(id.as_str()))
                .collect();
            let staying: Vec<String> = users
                .iter()
                .filter(|u| !moving.contains(**u))
                .map(|u| format!("`{u}`"))
                .chain(
                    launched
                        .contains(&id)
                        .then(|| "an instance this plan launches".to_string()),
                )
                .collect();
            let doomed = n >= allowed;
            if doomed && staying.is_empty() {
                // Deleted, after every instance leaving it moved.
                // ... and once its address's new version exists (a successor first).
                let after: Vec<usize> = (0..changes.len())
                    .filter(|&j| {
                        let o = &changes[j];
                        (o.kind == Kind::Instance && users.contains(&o.address.as_str()))
                            || (&o.address == addr
                                && !o.deposed
                                && matches!(o.action, Action::Create | Action::Replace))
                    })
                    .collect();
                match planned.first() {
                    Some(&i) => {
                        chain.push(i);
                        extra.push((i, after));
                    }
                    None => {
                        chain.push(changes.len() + added.len());
                        extra.push((changes.len() + added.len(), after));
                        added.push(Change {
                            address: addr.clone(),
                            kind: Kind::Image,
                            action: Action::Delete,
                            reason: match keep {
                                0 => format!("retained version {version} of an image no longer in the manifest"),
                                _ => format!("version {version}: beyond `keep = {keep}`"),
                            },
                            attributes: Vec::new(),
                            region: None,
                            id: Some(id.clone()),
                            etag: live.get(&id).and_then(|l| l.etag.clone()).or(etag),
                            request: None,
                            inputs: None,
                            depends_on: Vec::new(),
                            deposed: true,
                            observed: None,
                            pending: false,
                        });
                    }
                }
                continue;
            }
            if doomed {
                warnings.push(format!(
                    "`{addr}` version {version} ({id}) is kept back beyond `keep = {keep}`: {} {} it (launched from it or its boot volume replaced onto it); a later plan deletes it once nothing runs it",
                    staying.join(", "),
                    match staying.len() {
                        1 => "still runs",
                        _ => "still run",
                    }
                ));
            }
            // Kept: no delete; a deposed one becomes a retained version.
            drop.extend(planned);
            if deposed {
                retain.push(Retain {
                    address: addr.clone(),
                    id,
                    version,
                });
            }
        }
        chains.push(chain);
    }
    let base = changes.len();
    changes.extend(added);
    for (i, after) in extra {
        let after: Vec<usize> = after.into_iter().filter(|&j| j != i && j < base).collect();
        changes[i].depends_on.extend(after);
    }
    // Oldest first: each version's delete waits for the delete of the version before it.
    for chain in chains {
        for pair in chain.windows(2) {
            let (newer, older) = (pair[0], pair[1]);
            if !changes[newer].depends_on.contains(&older) {
                changes[newer].depends_on.push(older);
            }
        }
    }
    if !drop.is_empty() {
        super::rollout::remove_nodes(changes, &drop);
    }
    super::rollout::reorder(changes);
    (retain, warnings)
}
