//! From desired resources, prior state and live reads to the plan's nodes and edges.
//!
//! This is a pure function of its inputs (no I/O), so it can be tested and benchmarked on its
//! own; [`super::refresh`] gathers the inputs.
//!
//! Decisions, in the order they are made for each desired resource (in dependency order, so a
//! reference to a resource that is created or replaced by this plan is "known after apply"):
//! 1. not in state, never created, or gone from OCI → **create**;
//! 2. an attribute that cannot change in place differs → **replace** (with every reason);
//! 3. otherwise the compartment differs → **move**; updatable attributes differ → **update**;
//! 4. the power state differs → **start** / **stop** (after any update or move);
//! 5. drift: for the attributes the manifest manages, state vs live.
//!
//! Then images captured from an instance get their source stopped first (and started again after
//! when it should run and `restart_source` is set), and resources in state but no longer in the
//! manifest are **deleted** after everything that stops depending on them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::desired::{DesiredResource, Power};
use super::diff::{self, Resolved};
use super::{Action, AttrChange, AttrClass, Change, Drift, Kind};
use crate::dag::Dag;

/// What the state says about one address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prior {
    pub kind: Option<Kind>,
    /// The OCID, once created.
    pub id: Option<String>,
    /// The last attributes read (OCI JSON).
    pub attributes: Value,
    /// Create-time inputs kiln recorded (subnet, image lookup criteria, `prevent_destroy`, …).
    pub inputs: Map<String, Value>,
    /// A create was started (retry token recorded) but its result never reached the state.
    pub pending_create: bool,
    /// Superseded objects of this address not destroyed yet (a replacement's predecessors).
    pub deposed: Vec<String>,
}

/// One live read: the OCI JSON and, when read with a Get, its etag.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveRead {
    pub body: Value,
    pub etag: Option<String>,
}

impl LiveRead {
    /// TERMINATED instances and DELETED images are gone, even though OCI still lists them.
    pub fn is_gone(&self) -> bool {
        matches!(
            self.body.get("lifecycleState").and_then(Value::as_str),
            Some("TERMINATED" | "TERMINATING" | "DELETED")
        )
    }

    fn lifecycle(&self) -> &str {
        self.body
            .get("lifecycleState")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// Everything the plan is computed from.
pub struct Inputs<'a> {
    pub desired: &'a [DesiredResource],
    pub prior: &'a BTreeMap<String, Prior>,
    /// Live reads by OCID. An id in `prior` that is missing here was not found (404).
    pub live: &'a HashMap<String, LiveRead>,
    /// False with `--refresh=false`: the state's attributes stand in for live reads.
    pub refreshed: bool,
    /// `kiln destroy`: every resource in state is deleted.
    pub destroy: bool,
    /// `--replace ADDR`: forced replacements.
    pub force_replace: &'a BTreeSet<String>,
    /// The provider's region: where a resource without `region` lives.
    pub default_region: Option<&'a str>,
}

/// The result: nodes in a stable order (dependencies first) and drift.
#[derive(Clone, Debug, PartialEq)]
pub struct Computed {
    pub changes: Vec<Change>,
    pub drift: Vec<Drift>,
}

/// Errors that stop a plan (the manifest was valid, but the plan cannot be made safely).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum BuildError {
    #[error("`{address}` would be destroyed, but it has `prevent_destroy` set")]
    #[diagnostic(
        code(kiln::plan::prevent_destroy),
        help("remove `prevent_destroy` from `{address}` first if you really mean to destroy it")
    )]
    PreventDestroy { address: String },
}

struct Node {
    change: Change,
    /// Address-level edges, resolved to node indexes at the end.
    after: Vec<usize>,
}

fn instance_running(live: &LiveRead) -> bool {
    matches!(live.lifecycle(), "RUNNING" | "STARTING" | "PROVISIONING")
}

/// Compute the plan's nodes.
pub fn compute(inp: &Inputs<'_>) -> Result<Computed, BuildError> {
    let empty = LiveRead {
        body: Value::Null,
        etag: None,
    };
    let by_addr: HashMap<&str, &DesiredResource> = inp
        .desired
        .iter()
        .map(|d| (d.address.as_str(), d))
        .collect();

    // Desired resources in dependency order (the manifest rejected cycles already; a leftover
    // cycle falls back to name order rather than looping).
    let mut order_dag = Dag::new();
    let ids: HashMap<&str, _> = inp
        .desired
        .iter()
        .map(|d| (d.address.as_str(), order_dag.add_node(d.address.as_str())))
        .collect();
    for d in inp.desired {
        for dep in &d.depends_on {
            if let Some(&from) = ids.get(dep.as_str()) {
                order_dag.add_edge(from, ids[d.address.as_str()]);
            }
        }
    }
    let order: Vec<&DesiredResource> = match order_dag.topological_order() {
        Ok(o) => o.into_iter().map(|n| by_addr[*order_dag.node(n)]).collect(),
        Err(_) => inp.desired.iter().collect(),
    };

    let mut nodes: Vec<Node> = Vec::new();
    let mut drift = Vec::new();
    // address → indexes of its nodes, and whether it is (re)created by this plan.
    let mut node_of: HashMap<String, Vec<usize>> = HashMap::new();
    let mut recreated: HashMap<String, Action> = HashMap::new();

    let live_of = |addr: &str| -> Option<&LiveRead> {
        let prior = inp.prior.get(addr)?;
        let id = prior.id.as_deref()?;
        inp.live.get(id)
    };

    let push = |nodes: &mut Vec<Node>,
                node_of: &mut HashMap<String, Vec<usize>>,
                change: Change|
     -> usize {
        let i = nodes.len();
        node_of.entry(change.address.clone()).or_default().push(i);
        nodes.push(Node {
            change,
            after: Vec::new(),
        });
        i
    };

    if inp.destroy {
        // Only deletes; handled below with the resources that left the manifest.
    } else {
        for d in &order {
            let prior = inp.prior.get(&d.address);
            let id = prior.and_then(|p| p.id.clone());
            let state_read;
            let live: Option<&LiveRead> = if inp.refreshed {
                live_of(&d.address)
            } else {
                state_read = prior.map(|p| LiveRead {
                    body: p.attributes.clone(),
                    etag: None,
                });
                state_read.as_ref()
            };
            let resolve = |addr: &str| -> Resolved {
                if recreated.contains_key(addr) {
                    return Resolved::AfterApply(addr.to_string());
                }
                match inp.prior.get(addr).and_then(|p| p.id.clone()) {
                    Some(id) => Resolved::Known(Value::String(id)),
                    None => Resolved::AfterApply(addr.to_string()),
                }
            };
            let base = Change {
                address: d.address.clone(),
                kind: d.kind,
                region: d.region.clone(),
                action: Action::Create,
                reason: String::new(),
                attributes: Vec::new(),
                id: id.clone(),
                etag: live.and_then(|l| l.etag.clone()),
                request: None,
                inputs: None,
                depends_on: Vec::new(),
                deposed: false,
                observed: None,
            };

            // 1. create
            let gone = id.is_some() && live.is_none_or(LiveRead::is_gone);
            if id.is_none() || gone {
                if gone {
                    drift.push(Drift {
                        address: d.address.clone(),
                        attributes: Vec::new(),
                        gone: Some(match live {
                            Some(l) => format!(
                                "{} is {} in OCI",
                                id.as_deref().unwrap_or(""),
                                l.lifecycle()
                            ),
                            None => format!("{} was not found in OCI", id.as_deref().unwrap_or("")),
                        }),
                    });
                }
                let attrs = d
                    .attrs
                    .iter()
                    .filter(|a| a.class != AttrClass::Power)
                    .map(|a| AttrChange {
                        path: a.path.clone(),
                        before: Value::Null,
                        after: match &a.value {
                            super::desired::DesiredValue::Known(v) => v.clone(),
                            super::desired::DesiredValue::IdOf(addr) => match resolve(addr) {
                                Resolved::Known(v) => v,
                                Resolved::AfterApply(a) => {
                                    Value::String(format!("(id of {a}, known after apply)"))
                                }
                            },
                        },
                        forces_replacement: false,
                        why: None,
                    })
                    .collect();
                let reason = if gone {
                    "gone from OCI: it is created again".to_string()
                } else if prior.is_some_and(|p| p.pending_create) {
                    "an earlier create did not finish: it is resumed with the same retry token"
                        .to_string()
                } else {
                    "not in state".to_string()
                };
                let i = push(
                    &mut nodes,
                    &mut node_of,
                    Change {
                        action: Action::Create,
                        reason,
                        attributes: attrs,
                        id: None,
                        etag: None,
                        request: Some(d.create_body.clone()),
                        inputs: Some(d.input_values()),
                        ..base
                    },
                );
                recreated.insert(d.address.clone(), Action::Create);
                if d.power == Some(Power::Stopped) {
                    let s = push(
                        &mut nodes,
                        &mut node_of,
                        Change {
                            address: d.address.clone(),
                            kind: d.kind,
                            region: d.region.clone(),
                            action: Action::Stop,
                            reason: "desired state is STOPPED".into(),
                            attributes: Vec::new(),
                            id: None,
                            etag: None,
                            request: None,
                            inputs: None,
                            depends_on: Vec::new(),
                            deposed: false,
                            observed: None,
                        },
                    );
                    nodes[s].after.push(i);
                }
                continue;
            }
            let live = live.unwrap_or(&empty);
            let prior = prior.expect("an id comes from state");

            // 5. drift (reported even when the plan also fixes it)
            if inp.refreshed {
                let changed = diff::drift(d, &prior.attributes, &live.body);
                if !changed.is_empty() {
                    drift.push(Drift {
                        address: d.address.clone(),
                        attributes: changed,
                        gone: None,
                    });
                }
            }

            // 2.-3. attribute changes
            let mut diffs = diff::diff(d, &live.body, &prior.inputs, &resolve);
            // A resource lives in one region: another region is another resource.
            let wanted_region = d.region.as_deref().or(inp.default_region);
            let region_now = id.as_deref().and_then(crate::region::from_ocid);
            if let (Some(want), Some(now)) = (wanted_region, region_now) {
                if want != now {
                    diffs.push(diff::AttrDiff {
                        change: AttrChange {
                            path: "region".into(),
                            before: Value::String(now.into()),
                            after: Value::String(want.into()),
                            forces_replacement: true,
                            why: Some("a resource cannot move to another region".into()),
                        },
                        class: AttrClass::Replace,
                    });
                }
            }
            let forced = inp.force_replace.contains(&d.address);
            let replace: Vec<_> = diffs
                .iter()
                .filter(|x| x.class == AttrClass::Replace)
                .collect();
            if !replace.is_empty() || forced {
                let mut reason: Vec<String> = replace
                    .iter()
                    .map(|x| format!("`{}` cannot change in place", x.change.path))
                    .collect();
                if forced {
                    reason.insert(0, "forced with `--replace`".into());
                }
                if d.prevent_destroy {
                    return Err(BuildError::PreventDestroy {
                        address: d.address.clone(),
                    });
                }
                push(
                    &mut nodes,
                    &mut node_of,
                    Change {
                        action: Action::Replace,
                        reason: reason.join("; "),
                        attributes: diffs.iter().map(|x| x.change.clone()).collect(),
                        request: Some(d.create_body.clone()),
                        inputs: Some(d.input_values()),
                        ..base.clone()
                    },
                );
                recreated.insert(d.address.clone(), Action::Replace);
                if d.power == Some(Power::Stopped) {
                    let r = nodes.len() - 1;
                    let s = push(
                        &mut nodes,
                        &mut node_of,
                        Change {
                            action: Action::Stop,
                            reason: "desired state is STOPPED".into(),
                            attributes: Vec::new(),
                            id: None,
                            etag: None,
                            ..base.clone()
                        },
                    );
                    nodes[s].after.push(r);
                }
                continue;
            }
            let mut own = Vec::new();
            let moves: Vec<_> = diffs
                .iter()
                .filter(|x| x.class == AttrClass::Move)
                .map(|x| x.change.clone())
                .collect();
            if !moves.is_empty() {
                own.push(push(
                    &mut nodes,
                    &mut node_of,
                    Change {
                        action: Action::Move,
                        reason: "the compartment changed".into(),
                        attributes: moves,
                        request: Some(serde_json::json!({ "compartmentId": d.compartment })),
                        ..base.clone()
                    },
                ));
            }
            let updates: Vec<_> = diffs
                .iter()
                .filter(|x| x.class == AttrClass::Update)
                .map(|x| x.change.clone())
                .collect();
            if !updates.is_empty() {
                let names: Vec<_> = updates.iter().map(|u| format!("`{}`", u.path)).collect();
                let i = push(
                    &mut nodes,
                    &mut node_of,
                    Change {
                        action: Action::Update,
                        reason: format!("{} changed", names.join(", ")),
                        attributes: updates,
                        request: Some(diff::update_body(d, &live.body, &diffs)),
                        ..base.clone()
                    },
                );
                nodes[i].after.extend(own.iter().copied());
                own.push(i);
            }

            // 4. power
            if d.kind == Kind::Instance {
                let running = instance_running(live);
                let action = match d.power {
                    Some(Power::Running) if !running => {
                        Some((Action::Start, "desired state is RUNNING"))
                    }
                    Some(Power::Stopped) if running => {
                        Some((Action::Stop, "desired state is STOPPED"))
                    }
                    _ => None,
                };
                if let Some((action, reason)) = action {
                    let i = push(
                        &mut nodes,
                        &mut node_of,
                        Change {
                            action,
                            reason: reason.into(),
                            ..base.clone()
                        },
                    );
                    nodes[i].after.extend(own.iter().copied());
                }
            }
        }
    }

    // Creates and replacements wait for what they reference to be (re)created first.
    let dep_edges: Vec<(usize, usize)> = inp
        .desired
        .iter()
        .flat_map(|d| {
            let mine: Vec<usize> = node_of.get(&d.address).cloned().unwrap_or_default();
            let deps: Vec<usize> = d
                .depends_on
                .iter()
                .filter(|dep| recreated.contains_key(dep.as_str()))
                .flat_map(|dep| {
                    node_of[dep]
                        .iter()
                        .copied()
                        .filter(|&n| {
                            matches!(nodes[n].change.action, Action::Create | Action::Replace)
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            mine.into_iter()
                .filter(|&m| matches!(nodes[m].change.action, Action::Create | Action::Replace))
                .flat_map(move |m| deps.clone().into_iter().map(move |dep| (dep, m)))
        })
        .collect();
    for (dep, m) in dep_edges {
        nodes[m].after.push(dep);
    }

    // Image captures: the source instance must be STOPPED.
    for d in inp.desired.iter().filter(|d| d.kind == Kind::Image) {
        let (Some(source), Some(_)) = (d.captured_from.as_deref(), recreated.get(&d.address))
        else {
            continue;
        };
        let Some(src) = by_addr.get(source) else {
            continue;
        };
        let capture: Vec<usize> = node_of[&d.address]
            .iter()
            .copied()
            .filter(|&n| matches!(nodes[n].change.action, Action::Create | Action::Replace))
            .collect();
        let src_nodes = node_of.get(source).cloned().unwrap_or_default();
        let src_stop = src_nodes
            .iter()
            .copied()
            .find(|&n| nodes[n].change.action == Action::Stop);
        let src_start = src_nodes
            .iter()
            .copied()
            .find(|&n| nodes[n].change.action == Action::Start);
        let src_live_running =
            live_of(source).is_some_and(instance_running) && !recreated.contains_key(source);
        let will_run_before_capture =
            recreated.contains_key(source) || src_live_running || src_start.is_some();
        let stop = match src_stop {
            Some(s) => Some(s),
            None if will_run_before_capture => {
                let s = push(
                    &mut nodes,
                    &mut node_of,
                    Change {
                        address: source.to_string(),
                        kind: Kind::Instance,
                        region: None,
                        action: Action::Stop,
                        reason: format!(
                            "`{}` is captured from it: the source must be STOPPED",
                            d.address
                        ),
                        attributes: Vec::new(),
                        id: inp.prior.get(source).and_then(|p| p.id.clone()),
                        etag: live_of(source).and_then(|l| l.etag.clone()),
                        request: None,
                        inputs: None,
                        depends_on: Vec::new(),
                        deposed: false,
                        observed: None,
                    },
                );
                Some(s)
            }
            None => None,
        };
        if let Some(stop) = stop {
            // The stop comes after every other node of the source (create, update, move, start).
            let before: Vec<usize> = src_nodes
                .iter()
                .copied()
                .filter(|&n| n != stop && Some(n) != src_start)
                .collect();
            nodes[stop].after.extend(before);
            if let Some(start) = src_start {
                // The source was stopped and should run: start it after the capture instead.
                nodes[start].change.reason = format!(
                    "desired state is RUNNING (after `{}` is captured)",
                    d.address
                );
                nodes[start].after.extend(capture.iter().copied());
            }
            for &c in &capture {
                nodes[c].after.push(stop);
            }
            if src.power == Some(Power::Running) && d.restart_source && src_start.is_none() {
                let s = push(
                    &mut nodes,
                    &mut node_of,
                    Change {
                        address: source.to_string(),
                        kind: Kind::Instance,
                        region: None,
                        action: Action::Start,
                        reason: format!(
                            "started again after `{}` is captured (`restart_source`)",
                            d.address
                        ),
                        attributes: Vec::new(),
                        id: inp.prior.get(source).and_then(|p| p.id.clone()),
                        etag: None,
                        request: None,
                        inputs: None,
                        depends_on: Vec::new(),
                        deposed: false,
                        observed: None,
                    },
                );
                nodes[s].after.extend(capture.iter().copied());
                nodes[s].after.push(stop);
            }
        } else {
            for &c in &capture {
                nodes[c].after.extend(src_nodes.iter().copied());
            }
        }
    }

    // Replaced images: create before destroy. The old image is deleted by its own node, after
    // the replacement exists and everything launched from it has been replaced.
    let replaced_images: Vec<usize> = (0..nodes.len())
        .filter(|&i| {
            nodes[i].change.action == Action::Replace && nodes[i].change.kind == Kind::Image
        })
        .collect();
    for r in replaced_images {
        let (address, old_id, etag) = (
            nodes[r].change.address.clone(),
            nodes[r].change.id.clone(),
            nodes[r].change.etag.clone(),
        );
        let Some(old_id) = old_id else { continue };
        let dependents: Vec<usize> = inp
            .desired
            .iter()
            .filter(|d| d.depends_on.contains(&address))
            .flat_map(|d| node_of.get(&d.address).cloned().unwrap_or_default())
            .collect();
        let i = push(
            &mut nodes,
            &mut node_of,
            Change {
                address: address.clone(),
                kind: Kind::Image,
                region: None,
                action: Action::Delete,
                reason:
                    "the previous image, once its replacement exists and its dependents moved to it"
                        .into(),
                attributes: Vec::new(),
                id: Some(old_id),
                etag,
                request: None,
                inputs: None,
                depends_on: Vec::new(),
                deposed: true,
                observed: None,
            },
        );
        nodes[i].after.push(r);
        nodes[i].after.extend(dependents);
    }

    // Deletes: resources in state that the manifest no longer has (or all, for destroy), and the
    // deposed predecessors of earlier replacements (whatever the manifest says: kiln owns them).
    let doomed = inp.prior.iter().flat_map(|(addr, p)| {
        let own =
            p.id.clone()
                .filter(|_| inp.destroy || !by_addr.contains_key(addr.as_str()))
                .map(|id| (addr, p, id, false));
        own.into_iter()
            .chain(p.deposed.iter().map(move |id| (addr, p, id.clone(), true)))
    });
    let mut delete_nodes = Vec::new();
    for (addr, p, id, deposed) in doomed {
        let live = if inp.refreshed {
            inp.live.get(&id)
        } else {
            None
        };
        if inp.refreshed && live.is_none_or(LiveRead::is_gone) {
            continue; // already gone: nothing to do (the state entry is dropped by apply)
        }
        // `prevent_destroy` is the manifest's: removing it (or the resource) from the manifest
        // lifts it.
        if !deposed
            && inp.destroy
            && by_addr
                .get(addr.as_str())
                .is_some_and(|d| d.prevent_destroy)
        {
            return Err(BuildError::PreventDestroy {
                address: addr.clone(),
            });
        }
        let kind = p.kind.unwrap_or(if addr.starts_with("image.") {
            Kind::Image
        } else {
            Kind::Instance
        });
        let i = push(
            &mut nodes,
            &mut node_of,
            Change {
                address: addr.clone(),
                kind,
                region: None,
                action: Action::Delete,
                reason: if deposed {
                    format!("{id} was superseded by a replacement and is not destroyed yet")
                } else if inp.destroy {
                    "kiln destroy".into()
                } else {
                    "in state but no longer in the manifest".into()
                },
                attributes: Vec::new(),
                id: Some(id.clone()),
                etag: live.and_then(|l| l.etag.clone()),
                request: None,
                inputs: None,
                depends_on: Vec::new(),
                deposed,
                observed: None,
            },
        );
        if deposed {
            // Create before destroy: a predecessor goes once its successor exists.
            let successor: Vec<usize> = node_of[addr.as_str()]
                .iter()
                .copied()
                .filter(|&n| matches!(nodes[n].change.action, Action::Create | Action::Replace))
                .collect();
            nodes[i].after.extend(successor);
        }
        delete_nodes.push((i, id));
    }
    // A delete waits for every node of the resources that used it: instances launched from a
    // deleted image, images captured from a deleted instance.
    for (i, id) in &delete_nodes {
        let users: Vec<usize> = inp
            .prior
            .iter()
            .filter(|(addr, p)| {
                p.id.as_deref() != Some(id.as_str())
                    && (diff::at(&p.attributes, &["sourceDetails".into(), "imageId".into()])
                        .as_str()
                        == Some(id)
                        || p.inputs.get("source_instance").and_then(Value::as_str) == Some(id))
                    && node_of.contains_key(addr.as_str())
            })
            .flat_map(|(addr, _)| node_of[addr.as_str()].clone())
            .filter(|n| n != i)
            .collect();
        nodes[*i].after.extend(users);
    }
    // Under destroy, dependents go first: an image is deleted after the instances launched from it.
    if inp.destroy {
        let snapshot: Vec<(usize, String)> = delete_nodes.clone();
        for (i, id) in &snapshot {
            for (j, _) in &snapshot {
                let addr_j = &nodes[*j].change.address;
                if let Some(pj) = inp.prior.get(addr_j) {
                    let uses =
                        diff::at(&pj.attributes, &["sourceDetails".into(), "imageId".into()])
                            .as_str()
                            == Some(id);
                    if uses && i != j {
                        nodes[*i].after.push(*j);
                    }
                }
            }
        }
    }

    Ok(Computed {
        changes: order_nodes(nodes),
        drift,
    })
}

/// Topological order with a stable tie-break (address, action), and `depends_on` as indexes into it.
fn order_nodes(nodes: Vec<Node>) -> Vec<Change> {
    let n = nodes.len();
    let mut indegree = vec![0usize; n];
    let mut deps: Vec<BTreeSet<usize>> = nodes
        .iter()
        .map(|x| x.after.iter().copied().collect())
        .collect();
    for (i, d) in deps.iter_mut().enumerate() {
        d.remove(&i);
    }
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        indegree[i] = d.len();
        for &x in d {
            dependents[x].push(i);
        }
    }
    let key = |i: usize| (nodes[i].change.address.clone(), nodes[i].change.action, i);
    let mut ready: BTreeSet<(String, Action, usize)> =
        (0..n).filter(|&i| indegree[i] == 0).map(key).collect();
    let mut position = vec![usize::MAX; n];
    let mut order = Vec::with_capacity(n);
    while let Some(first) = ready.iter().next().cloned() {
        ready.remove(&first);
        let i = first.2;
        position[i] = order.len();
        order.push(i);
        for &x in &dependents[i] {
            indegree[x] -= 1;
            if indegree[x] == 0 {
                ready.insert(key(x));
            }
        }
    }
    // Nodes on a cycle (not expected: the manifest refuses cycles) keep their relative order.
    for i in 0..n {
        if position[i] == usize::MAX {
            position[i] = order.len();
            order.push(i);
        }
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    order
        .iter()
        .map(|&i| {
            let node = slots[i].take().expect("each node once");
            let mut change = node.change;
            let mut d: Vec<usize> = deps[i]
                .iter()
                .map(|&x| position[x])
                .filter(|&p| p < position[i])
                .collect();
            d.sort_unstable();
            change.depends_on = d;
            change
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::desired::{DesiredAttr, DesiredValue, Lookup};
    use serde_json::json;

    fn instance(name: &str, power: Power, image: Option<&str>) -> DesiredResource {
        let mut attrs = vec![
            DesiredAttr {
                path: "display_name".into(),
                lookup: Lookup::live("displayName"),
                value: DesiredValue::Known(json!(name)),
                class: AttrClass::Update,
                why: None,
            },
            DesiredAttr {
                path: "availability_domain".into(),
                lookup: Lookup::live("availabilityDomain"),
                value: DesiredValue::Known(json!("AD-1")),
                class: AttrClass::Replace,
                why: Some("an instance cannot move to another availability domain"),
            },
        ];
        if let Some(img) = image {
            attrs.push(DesiredAttr {
                path: "source.image".into(),
                lookup: Lookup::live("sourceDetails.imageId"),
                value: DesiredValue::IdOf(img.into()),
                class: AttrClass::Replace,
                why: Some("the boot image"),
            });
        }
        DesiredResource {
            address: format!("instance.{name}"),
            kind: Kind::Instance,
            region: None,
            display_name: name.into(),
            compartment: "c".into(),
            attrs,
            power: Some(power),
            depends_on: image.into_iter().map(str::to_string).collect(),
            captured_from: None,
            restart_source: true,
            ignore_changes: vec![],
            prevent_destroy: false,
            create_before_destroy: false,
            preserve_boot_volume: false,
            create_body: Value::Null,
        }
    }

    fn image(name: &str, from: &str) -> DesiredResource {
        DesiredResource {
            address: format!("image.{name}"),
            kind: Kind::Image,
            region: None,
            display_name: name.into(),
            compartment: "c".into(),
            attrs: vec![DesiredAttr {
                path: "from_instance".into(),
                lookup: Lookup::Input("source_instance".into()),
                value: DesiredValue::IdOf(from.into()),
                class: AttrClass::Replace,
                why: Some("an image is captured once"),
            }],
            power: None,
            depends_on: vec![from.into()],
            captured_from: Some(from.into()),
            restart_source: true,
            ignore_changes: vec![],
            prevent_destroy: false,
            create_before_destroy: false,
            preserve_boot_volume: false,
            create_body: Value::Null,
        }
    }

    fn run(
        desired: &[DesiredResource],
        prior: &BTreeMap<String, Prior>,
        live: &HashMap<String, LiveRead>,
    ) -> Computed {
        compute(&Inputs {
            desired,
            prior,
            live,
            refreshed: true,
            destroy: false,
            force_replace: &BTreeSet::new(),
            default_region: None,
        })
        .unwrap()
    }

    fn dag(c: &Computed) -> String {
        let plan = crate::plan::Plan {
            format_version: "1".into(),
            env: "t".into(),
            endpoint: "e".into(),
            regions: vec![],
            state_lineage: None,
            state_serial: 0,
            changes: c.changes.clone(),
            drift: c.drift.clone(),
            forget: vec![],
            forget_deposed: vec![],
            moved: vec![],
            warnings: vec![],
            summary: Default::default(),
            refresh_only: false,
            refresh: vec![],
            read_network: vec![],
        };
        plan.graph().to_string()
    }

    fn prior(id: &str, attrs: Value) -> Prior {
        Prior {
            kind: None,
            id: Some(id.into()),
            attributes: attrs,
            inputs: Map::new(),
            pending_create: false,
            deposed: Vec::new(),
        }
    }

    #[test]
    fn golden_image_from_empty_state_orders_stop_capture_start_then_fleet() {
        let desired = vec![
            instance("builder", Power::Running, None),
            image("golden", "instance.builder"),
            instance("web1", Power::Running, Some("image.golden")),
            instance("web2", Power::Running, Some("image.golden")),
        ];
        let c = run(&desired, &BTreeMap::new(), &HashMap::new());
        assert_eq!(
            dag(&c),
            "create image.golden <- create instance.builder, stop instance.builder\n\
             create instance.builder\n\
             create instance.web1 <- create image.golden\n\
             create instance.web2 <- create image.golden\n\
             start instance.builder <- create image.golden, stop instance.builder\n\
             stop instance.builder <- create instance.builder\n"
        );
    }

    #[test]
    fn capture_from_a_running_instance_stops_and_restarts_it() {
        let desired = vec![
            instance("builder", Power::Running, None),
            image("golden", "instance.builder"),
        ];
        let mut p = BTreeMap::new();
        let attrs = json!({"displayName": "builder", "availabilityDomain": "AD-1", "lifecycleState": "RUNNING"});
        p.insert("instance.builder".to_string(), prior("i1", attrs.clone()));
        let mut live = HashMap::new();
        live.insert(
            "i1".to_string(),
            LiveRead {
                body: attrs,
                etag: Some("e1".into()),
            },
        );
        let c = run(&desired, &p, &live);
        assert_eq!(
            dag(&c),
            "create image.golden <- stop instance.builder\n\
             start instance.builder <- create image.golden, stop instance.builder\n\
             stop instance.builder\n"
        );
        let stop = c.changes.iter().find(|x| x.action == Action::Stop).unwrap();
        assert_eq!(stop.etag.as_deref(), Some("e1"));
        assert!(c.drift.is_empty());
    }

    #[test]
    fn matching_live_state_plans_nothing_and_oci_added_fields_are_ignored() {
        let desired = vec![instance("web", Power::Running, None)];
        let mut p = BTreeMap::new();
        let attrs = json!({"displayName": "web", "availabilityDomain": "AD-1", "lifecycleState": "RUNNING"});
        p.insert("instance.web".to_string(), prior("i1", attrs));
        let mut live = HashMap::new();
        let body = json!({"displayName": "web", "availabilityDomain": "AD-1", "lifecycleState": "RUNNING",
            "definedTags": {"Oracle-Tags": {"CreatedBy": "someone"}}});
        live.insert("i1".to_string(), LiveRead { body, etag: None });
        let c = run(&desired, &p, &live);
        assert!(c.changes.is_empty() && c.drift.is_empty(), "{c:?}");
    }

    #[test]
    fn out_of_band_rename_is_drift_and_an_update_replacement_is_reasoned() {
        let desired = vec![instance("web", Power::Stopped, None)];
        let mut p = BTreeMap::new();
        let attrs = json!({"displayName": "web", "availabilityDomain": "AD-1", "lifecycleState": "RUNNING"});
        p.insert("instance.web".to_string(), prior("i1", attrs));
        let mut live = HashMap::new();
        let body = json!({"displayName": "renamed", "availabilityDomain": "AD-1", "lifecycleState": "RUNNING"});
        live.insert("i1".to_string(), LiveRead { body, etag: None });
        let c = run(&desired, &p, &live);
        assert_eq!(c.drift.len(), 1);
        assert_eq!(
            dag(&c),
            "stop instance.web <- update instance.web\nupdate instance.web\n"
        );

        let mut live2 = live.clone();
        live2.get_mut("i1").unwrap().body["availabilityDomain"] = json!("AD-2");
        let c = run(&desired, &p, &live2);
        assert_eq!(c.changes[0].action, Action::Replace);
        assert!(c.changes[0]
            .reason
            .contains("`availability_domain` cannot change in place"));
    }

    #[test]
    fn removed_resources_are_deleted_after_their_users_and_gone_ones_are_recreated() {
        let desired = vec![instance("web", Power::Running, Some("image.new"))];
        let mut p = BTreeMap::new();
        p.insert(
            "image.old".to_string(),
            prior("img1", json!({"lifecycleState": "AVAILABLE"})),
        );
        p.insert(
            "instance.web".to_string(),
            prior("i1", json!({"displayName": "web", "availabilityDomain": "AD-1", "sourceDetails": {"imageId": "img1"}})),
        );
        let mut live = HashMap::new();
        live.insert(
            "img1".to_string(),
            LiveRead {
                body: json!({"lifecycleState": "AVAILABLE"}),
                etag: None,
            },
        );
        // instance.web is gone (404): recreated, drift says so; image.old deleted after it.
        let c = run(&desired, &p, &live);
        assert_eq!(
            dag(&c),
            "create instance.web\ndelete image.old <- create instance.web\n"
        );
        assert!(c.drift[0].gone.as_deref().unwrap().contains("not found"));
    }

    #[test]
    fn prevent_destroy_is_the_manifests() {
        // The state still records `prevent_destroy` from when it was created; the manifest is
        // what counts: removing the resource (and its flag) from the manifest lifts it.
        let mut p = BTreeMap::new();
        let mut pr = prior(
            "i1",
            json!({"displayName": "db", "availabilityDomain": "AD-1"}),
        );
        pr.inputs.insert("prevent_destroy".into(), json!(true));
        p.insert("instance.db".to_string(), pr);
        let mut live = HashMap::new();
        live.insert(
            "i1".to_string(),
            LiveRead {
                body: json!({"displayName": "db", "availabilityDomain": "AD-1", "lifecycleState": "RUNNING"}),
                etag: None,
            },
        );
        let run = |desired: &[DesiredResource], destroy| {
            compute(&Inputs {
                desired,
                prior: &p,
                live: &live,
                refreshed: true,
                destroy,
                force_replace: &BTreeSet::new(),
                default_region: None,
            })
        };
        let removed = run(&[], false).unwrap();
        assert_eq!(removed.changes[0].action, Action::Delete);
        let mut db = instance("db", Power::Running, None);
        db.prevent_destroy = true;
        let err = run(std::slice::from_ref(&db), true).unwrap_err();
        assert!(err.to_string().contains("prevent_destroy"));
        db.prevent_destroy = false;
        assert_eq!(run(&[db], true).unwrap().changes[0].action, Action::Delete);
    }
}
