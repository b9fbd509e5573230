//! Making a plan: resolve the manifest's lookups by name ([`super::lookup`]), read the live state in bulk, compute, then read the etags of what will change
//! (the reads themselves are in `live`); `[[moved]]` renames before, then image pins and
//! promotions resolved against the states ([`super::versions`]); `keep` applied after
//! the rollout pass, and the observed values filled in after.
//!
//! API calls per plan = O(pages + changes), not O(resources): instances are read with
//! ListInstances per compartment (the largest page size, every page), images with GetImage (a
//! manifest has few), and only resources with a planned mutation get a GetInstance/GetImage — for
//! the etag the executor sends as If-Match. Reads run concurrently (bounded) and are never reused
//! across a mutation (each plan reads afresh). `image_lookup`s are resolved once per distinct
//! lookup, for creates only.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::manifest::Manifest;
use crate::oci::{Clients, OciError};
use crate::state::{ResourceKind, State};

use super::build::{self, Inputs, LiveRead, Prior};
use super::from_manifest;
use super::live::{read_etags, read_live, resolve_lookups};
use super::lookup::Catalog;
use super::{rollout, select, versions, Action, Kind, Partial, Plan, Summary, FORMAT_VERSION};

/// How to plan.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Read live state (false: plan from state alone, `--refresh=false`).
    pub refresh: bool,
    /// `--target`: only these addresses and what they depend on ([`super::select`]).
    pub targets: Vec<String>,
    /// `--exclude`: everything but these addresses and what depends on them.
    pub excludes: Vec<String>,
    /// `--refresh-only`: plan no change; apply writes what was read live into the state.
    pub refresh_only: bool,
    /// `kiln destroy`.
    pub destroy: bool,
    /// `--replace`.
    pub replace: BTreeSet<String>,
    /// Concurrent reads.
    pub parallelism: usize,
    /// For the header: what kiln talks to.
    pub endpoint: String,
    /// Record every resource as seen ([`super::Plan::observed`]) for the views of whole
    /// resources (`--json=terraform`, policies, saved plans).
    pub observe: bool,
    /// Snapshots of the other environments' states the manifest takes images from
    /// (`source = { image, env }`; [`super::versions::envs_read`] names them).
    pub envs: super::versions::EnvStates,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Build(#[from] build::BuildError),
    #[error("`{0}` is not a resource of this manifest or its state")]
    #[diagnostic(
        code(kiln::plan::unknown_target),
        help("addresses look like `instance.NAME` or `image.NAME`; see `kiln state list`")
    )]
    UnknownTarget(String),
    #[error("`[[moved]]` from `{from}` to `{to}`, but the state has both")]
    #[diagnostic(
        code(kiln::plan::moved_both),
        help("one of them is not what the manifest means: `kiln state rm` the wrong one (or `kiln state mv` it elsewhere), then plan again")
    )]
    MovedBoth { from: String, to: String },
    #[error("`{address}` is not a resource of this manifest or its state")]
    #[diagnostic(code(kiln::plan::unknown_exclude), help("{help}"))]
    UnknownExclude { address: String, help: String },
    #[error(
        "the state names {count} resource(s) tagged with another address; nothing was planned"
    )]
    #[diagnostic(
        code(kiln::plan::address_tags),
        help("the state mistakes one resource for another (a hand edit, or `kiln state mv` to the wrong address); nothing is destroyed or replaced for it: move each record to the address its resource is tagged with (`kiln state mv`), or fix the state, then plan again")
    )]
    AddressTags {
        count: usize,
        #[related]
        mismatches: Vec<super::tags::Mismatch>,
    },
    /// Lookups that found none or several, or values OCI's lists lack: at their spans, as the
    /// manifest's own problems are.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error("the manifest names things by name, but this plan has no OCI client to look them up")]
    #[diagnostic(
        code(kiln::plan::lookup_offline),
        help("lookups (`compartment = {{ path }}`, `{{ lookup = ... }}`) are resolved with list calls; give OCIDs to plan without OCI")
    )]
    Offline,
    #[error("no image matches `image_lookup` {criteria} of `{address}`")]
    #[diagnostic(
        code(kiln::plan::image_lookup),
        help("check `os` and `version` against `oci compute image list`")
    )]
    NoImage { address: String, criteria: String },
}

impl PlanError {
    /// As a report the command line shows: a manifest's problems as the loader's are (so they
    /// render, and exit, the same).
    pub fn into_report(self) -> miette::Report {
        match self {
            PlanError::Manifest(m) => m.into(),
            e => e.into(),
        }
    }
}

fn prior_of(state: Option<&State>) -> BTreeMap<String, Prior> {
    state
        .map(|s| {
            s.resources
                .iter()
                .map(|(addr, r)| {
                    let kind = match r.kind {
                        ResourceKind::Instance => Kind::Instance,
                        ResourceKind::Image => Kind::Image,
                    };
                    (
                        addr.clone(),
                        Prior {
                            kind: Some(kind),
                            id: r.id.clone(),
                            attributes: r.attributes.clone(),
                            inputs: r.inputs.clone(),
                            pending_create: r.pending_create.is_some(),
                            pending_region: r.pending_create.as_ref().and_then(|p| p.sent_region()),
                            pending_stale: r.pending_create.as_ref().is_some_and(|p| {
                                !p.token_fresh(chrono::Utc::now()) || p.request.is_none()
                            }),
                            deposed: r.deposed.iter().map(|d| d.id.clone()).collect(),
                            retained: r.retained.iter().map(|v| v.id.clone()).collect(),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The state with the manifest's `[[moved]]` renames made (`None`: nothing to rename), the
/// renames, and warnings for moves with nothing to move.
// A private helper's three results, named in its doc; a struct would only rename them.
#[allow(clippy::type_complexity)]
fn apply_moves(
    manifest: &Manifest,
    state: Option<&State>,
) -> Result<(Option<State>, Vec<(String, String)>, Vec<String>), PlanError> {
    let mut renamed: Option<State> = None;
    let mut moved = Vec::new();
    let mut warnings = Vec::new();
    for m in &manifest.moved {
        let (from, to) = (m.from.to_string(), m.to.to_string());
        let current = renamed.as_ref().or(state);
        let has = |a: &str| current.is_some_and(|s| s.resources.contains_key(a));
        match (has(&from), has(&to)) {
            (true, true) => return Err(PlanError::MovedBoth { from, to }),
            (true, false) => {
                let st = renamed.get_or_insert_with(|| state.cloned().unwrap_or_default());
                if let Some(r) = st.resources.remove(&from) {
                    st.resources.insert(to.clone(), r.renamed(&from, &to));
                }
                moved.push((from, to));
            }
            (false, true) => warnings.push(format!(
                "`[[moved]]` from `{from}` to `{to}` is done; the `[[moved]]` table can be removed"
            )),
            (false, false) => warnings.push(format!(
                "`[[moved]]` from `{from}`: the state has no `{from}` (nothing to move)"
            )),
        }
    }
    Ok((renamed, moved, warnings))
}

/// Record what the plan read of each resource a change mutates (see [`super::Change::observed`]).
fn fill_observed(changes: &mut [super::Change], live: &HashMap<String, LiveRead>) {
    for c in changes.iter_mut().filter(|c| c.action != Action::Create) {
        if let Some(read) = c.id.as_ref().and_then(|id| live.get(id)) {
            c.observed = Some(super::observed_digest(&read.body.parse()));
        }
    }
}

/// The plan for `manifest` against `state` and (with a client) live OCI.
pub async fn make_plan(
    manifest: &Manifest,
    state: Option<&State>,
    clients: Option<&Clients>,
    opts: &PlanOptions,
) -> Result<Plan, PlanError> {
    // Names resolved to OCIDs first: the resolved manifest is what is diffed and sent.
    let mut catalog = clients.map(Catalog::new);
    let resolved_manifest;
    let (manifest, lookups) = match (manifest.has_lookups(), catalog.as_mut()) {
        (false, _) => (manifest, Vec::new()),
        (true, None) => return Err(PlanError::Offline),
        (true, Some(cat)) => match super::lookup::resolve(manifest, cat).await? {
            Ok((m, r)) => {
                resolved_manifest = m;
                (&resolved_manifest, r)
            }
            Err(problems) => return Err(manifest.problems(problems).into()),
        },
    };
    let (moved_state, moved, mut warnings) = apply_moves(manifest, state)?;
    let state = moved_state.as_ref().or(state);
    // Pinned image versions and images promoted from another environment, as OCIDs.
    let default_region = (manifest.provider.region.clone())
        .or_else(|| clients.map(|c| c.default_region().to_string()));
    let pins = match versions::resolve(manifest, state, &opts.envs, default_region.as_deref()) {
        Ok(p) => p,
        Err(problems) => return Err(manifest.problems(problems).into()),
    };
    let manifest = pins.manifest.as_ref().unwrap_or(manifest);
    warnings.extend(pins.notes.iter().cloned());
    let mut desired = from_manifest::desired(manifest);
    let mut prior = prior_of(state);
    // A fleet whose rollout failed with `on_failure = "rollback"` returns to its previous image.
    super::rollback::hold(&mut desired, &prior);
    let known_owned: BTreeSet<String> = desired
        .iter()
        .map(|d| d.address.clone())
        .chain(prior.keys().cloned())
        .collect();
    let known: BTreeSet<&str> = known_owned.iter().map(String::as_str).collect();
    select::check(&opts.targets, &opts.replace, &opts.excludes, &known)?;
    if let Some(clients) = clients {
        // Every region of the state and of the manifest must be reachable before anything is
        // read: a resource read in the wrong region would look gone.
        for id in prior
            .values()
            .flat_map(|p| p.id.iter().chain(&p.deposed).chain(&p.retained))
        {
            clients.for_id(id)?;
        }
        for d in &desired {
            clients.for_region(d.region.as_deref())?;
        }
        // An unfinished create is resolved in the region it was sent to.
        for r in prior.values().filter_map(|p| p.pending_region.as_deref()) {
            clients.for_region(Some(r))?;
        }
    }
    // Excluded resources are neither read nor planned (see `select`).
    let mut excluded = select::excluded(&opts.excludes, &known, &desired, &prior, opts.destroy);
    // An instance whose environment has no image for it: nothing is planned for it.
    excluded.extend(pins.skipped.iter().cloned());
    let targeted = select::targeted(&opts.targets, &known, &desired, &prior, opts.destroy);
    // What `--exclude` leaves out is known without a read when only one side has it (a declared
    // resource the state lacks is a create, a recorded one no longer declared a destroy); those
    // on both sides would need a read to tell. (A destroy leaves every excluded one standing.)
    let (excluded_pending, excluded_unread) = {
        let declared: BTreeSet<&str> = desired.iter().map(|d| d.address.as_str()).collect();
        excluded.iter().fold((0, 0), |(pending, unread), a| {
            match (
                declared.contains(a.as_str()),
                prior.contains_key(a),
                opts.destroy,
            ) {
                (true, true, _) | (_, true, true) => (pending, unread + 1),
                (true, false, false) | (false, true, false) => (pending + 1, unread),
                _ => (pending, unread),
            }
        })
    };
    desired.retain(|d| !excluded.contains(&d.address));
    prior.retain(|a, _| !excluded.contains(a));
    let selected = |a: &str| targeted.as_ref().is_none_or(|t| t.contains(a));

    let refreshed = (opts.refresh || opts.refresh_only) && clients.is_some();
    let mut live = match (refreshed, clients) {
        (true, Some(c)) => read_live(c, &prior, &desired, opts.parallelism).await?,
        _ => HashMap::new(),
    };
    let mismatches = super::tags::mismatches(manifest, state, &prior, &live);
    if !mismatches.is_empty() {
        return Err(PlanError::AddressTags {
            count: mismatches.len(),
            mismatches,
        });
    }
    let compute = |live: &HashMap<String, LiveRead>| {
        build::compute(&Inputs {
            desired: &desired,
            prior: &prior,
            live,
            refreshed,
            destroy: opts.destroy,
            force_replace: &opts.replace,
            default_region: manifest
                .provider
                .region
                .as_deref()
                .or(clients.map(|c| c.default_region())),
        })
    };
    // Boot volume replacements and rollout batches shape what `build` computed.
    let compute = |live: &HashMap<String, LiveRead>| {
        compute(live).map(|mut c| {
            let (r, mut w) = rollout::shape(&mut c.changes, manifest, &desired, live, &prior);
            // Image versions: numbered, and `keep` applied.
            versions::number_creates(&mut c.changes, state);
            let (retain, kept) = versions::retention(
                &mut c.changes,
                manifest,
                state,
                live,
                refreshed,
                opts.destroy,
            );
            w.extend(kept);
            (c, r, w, retain)
        })
    };
    let (mut computed, mut rollouts, mut rollout_warnings, mut retain) = compute(&live)?;
    // A refresh-only plan executes no change: no etags, no image lookups.
    if !opts.refresh_only {
        if let (true, Some(c)) = (refreshed, clients) {
            // Planned again with what the Gets read (nothing read: the same plan).
            if read_etags(c, &computed.changes, &mut live, opts.parallelism).await? {
                (computed, rollouts, rollout_warnings, retain) = compute(&live)?;
            }
        }
        if let Some(c) = clients {
            resolve_lookups(c, &mut computed.changes, &desired).await?;
        }
    }
    fill_observed(&mut computed.changes, &live);
    let all_changes = Summary::of(&computed.changes, &[]).changes();
    let changes = match (&targeted, opts.refresh_only) {
        (_, true) => Vec::new(),
        (Some(t), false) => select::keep_changes(computed.changes, t),
        (None, false) => computed.changes,
    };
    // What OCI would refuse at launch is a problem at its span now (only for what changes).
    if let (Some(cat), false) = (catalog.as_mut(), opts.refresh_only) {
        let mut problems = super::checks::check(manifest, &changes, cat).await?;
        // A value already refused (a shape OCI does not have) is not reported twice.
        for p in super::image_checks::check(manifest, &changes, cat).await? {
            if !problems.iter().any(|q| q.at.is_some() && q.at == p.at) {
                problems.push(p);
            }
        }
        if !problems.is_empty() {
            return Err(manifest.problems(problems).into());
        }
    }
    // A rollout keeps the members still planned (`--target instance.web[2]` rolls that one).
    let planned: BTreeSet<&str> = changes.iter().map(|c| c.address.as_str()).collect();
    for r in rollouts.iter_mut() {
        for b in r.batches.iter_mut() {
            b.retain(|m| planned.contains(m.address.as_str()));
        }
        r.batches.retain(|b| !b.is_empty());
    }
    rollouts.retain(|r| !r.batches.is_empty() && !opts.refresh_only);
    warnings.extend(rollout_warnings);
    if opts.refresh_only {
        retain.clear();
    }
    let mut drift = computed.drift;
    let all_drift = drift.len();
    drift.retain(|d| selected(&d.address));
    let partial = (!opts.targets.is_empty() || !opts.excludes.is_empty()).then(|| Partial {
        targets: opts.targets.clone(),
        excludes: opts.excludes.clone(),
        changes_outside: match opts.refresh_only {
            true => 0,
            false => all_changes - Summary::of(&changes, &[]).changes() + excluded_pending,
        },
        drifted_outside: all_drift - drift.len(),
        not_read: excluded_unread,
    });
    let desired_addrs: BTreeSet<&str> = desired.iter().map(|d| d.address.as_str()).collect();
    let is_gone = |id: &String| live.get(id).is_none_or(LiveRead::is_gone);
    let forget: Vec<String> = if refreshed {
        prior
            .iter()
            .filter(|(a, p)| {
                // Refresh-only accepts that a declared resource is gone, as drift.
                (opts.destroy || opts.refresh_only || !desired_addrs.contains(a.as_str()))
                    && !p.pending_create
                    && selected(a)
            })
            .filter(|(_, p)| p.id.as_ref().is_none_or(is_gone))
            .map(|(a, _)| a.clone())
            .collect()
    } else {
        Vec::new()
    };
    let forget_deposed: Vec<(String, String)> = if refreshed {
        prior
            .iter()
            .filter(|(a, _)| selected(a))
            .flat_map(|(a, p)| p.deposed.iter().chain(&p.retained).map(move |id| (a, id)))
            .filter(|(_, id)| is_gone(id))
            .map(|(a, id)| (a.clone(), id.clone()))
            .collect()
    } else {
        Vec::new()
    };
    // Refresh-only: every record OCI now describes differently (drifted or not) is read again.
    let refresh: Vec<String> = if opts.refresh_only {
        prior
            .iter()
            .filter(|(a, _)| selected(a))
            .filter(|(_, p)| {
                p.id.as_ref()
                    .and_then(|id| live.get(id))
                    .is_some_and(|l| !l.is_gone() && l.body != p.attributes)
            })
            .map(|(a, _)| a.clone())
            .collect()
    } else {
        Vec::new()
    };
    // (A replaced instance is read once its successor exists; a deleted one is not read.)
    let superseded: BTreeSet<&str> = changes
        .iter()
        .filter(|c| matches!(c.action, Action::Replace | Action::Delete) && !c.deposed)
        .map(|c| c.address.as_str())
        .collect();
    let read_network: Vec<String> = match (state, opts.destroy) {
        (Some(st), false) => st
            .resources
            .iter()
            .filter(|(a, r)| {
                r.kind == ResourceKind::Instance
                    && prior.contains_key(*a)
                    && selected(a)
                    && !superseded.contains(a.as_str())
                    && (opts.refresh_only || r.network.is_none())
                    && r.id.as_ref().is_some_and(|id| !refreshed || !is_gone(id))
            })
            .map(|(a, _)| a.clone())
            .collect(),
        _ => Vec::new(),
    };
    let observed = match opts.observe {
        true => super::observe::observe(state, &prior, &desired, &live),
        false => Vec::new(),
    };
    Ok(Plan {
        observed,
        regions: {
            let mut r = manifest.regions();
            if let Some(c) = clients {
                r.insert(c.default_region().to_string());
            }
            if r.len() > 1 {
                r.into_iter().collect()
            } else {
                Vec::new()
            }
        },
        forget_deposed,
        moved,
        warnings,
        retain,
        envs: pins.envs,
        format_version: FORMAT_VERSION.to_string(),
        env: manifest.env.clone(),
        endpoint: opts.endpoint.clone(),
        state_lineage: state.map(|s| s.lineage.clone()),
        state_serial: state.map(|s| s.serial).unwrap_or(0),
        summary: Summary::of(&changes, &drift),
        changes,
        drift,
        forget,
        refresh_only: opts.refresh_only,
        refresh,
        read_network,
        rollouts,
        locked_by: None,
        partial,
        lookups,
    })
}
