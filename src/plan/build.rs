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
//!
//! This file holds the inputs, the result, and the order of the stages; each stage is a file:
//! `resource` (decisions 1–5 for one desired resource), `capture` (stopping and restarting
//! capture sources), `delete` (replaced images' predecessors, removed and deposed resources).
//! `order_nodes` then gives the nodes a stable topological order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};

use crate::raw_json::RawJson;

use super::desired::DesiredResource;
use super::{Action, Change, Drift, Kind};
use crate::dag::Dag;

mod capture;
mod delete;
mod resource;

/// What the state says about one address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prior {
    pub kind: Option<Kind>,
    /// The OCID, once created.
    pub id: Option<String>,
    /// The last attributes read (OCI JSON, as text: [`RawJson`]).
    pub attributes: RawJson,
    /// Create-time inputs kiln recorded (subnet, image lookup criteria, `prevent_destroy`, …).
    pub inputs: std::sync::Arc<Map<String, Value>>,
    /// A create was started (retry token recorded) but its result never reached the state.
    pub pending_create: bool,
    /// The region that create was sent to, when the state can tell
    /// ([`crate::state::PendingCreate::sent_region`]).
    pub pending_region: Option<String>,
    /// That create's retry token can no longer be trusted (older than kiln's window, or a record
    /// without the exact request): the apply looks for what it made before creating anything.
    pub pending_stale: bool,
    /// Superseded objects of this address not destroyed yet (a replacement's predecessors).
    pub deposed: Vec<String>,
    /// Images: the previous versions `keep` retains ([`super::versions`]).
    pub retained: Vec<String>,
}

/// One live read: the OCI JSON (as text, parsed where the plan compares it: [`RawJson`]) and,
/// when read with a Get, its etag.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveRead {
    pub body: RawJson,
    pub etag: Option<String>,
    /// The body's `lifecycleState` (read once).
    lifecycle: String,
}

impl LiveRead {
    pub fn new(body: RawJson, etag: Option<String>) -> LiveRead {
        let lifecycle = body.top_str("lifecycleState").unwrap_or_default();
        LiveRead {
            body,
            etag,
            lifecycle,
        }
    }

    /// A read of a value (tests, synthetic inputs).
    pub fn from_value(body: &Value, etag: Option<String>) -> LiveRead {
        LiveRead::new(RawJson::from_value(body), etag)
    }

    /// TERMINATED instances and DELETED images are gone, even though OCI still lists them.
    pub fn is_gone(&self) -> bool {
        matches!(
            self.lifecycle.as_str(),
            "TERMINATED" | "TERMINATING" | "DELETED"
        )
    }

    fn lifecycle(&self) -> &str {
        &self.lifecycle
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
    #[error(
        "`{address}` would be {doing}, but it is an adopted image (`{id}`): kiln cannot make it"
    )]
    #[diagnostic(
        code(kiln::plan::adopted_image),
        help("an image made outside kiln is kept as it is: restore `{address}`'s `region` and `source`, or declare how kiln should build a new one (`from_instance` or an import `source`) and remove the old one from the state with `kiln state rm`")
    )]
    AdoptedImage {
        address: String,
        id: String,
        /// `created (it is gone from OCI)`, `replaced (`…` cannot change in place)`.
        doing: String,
    },
}
struct Node {
    change: Change,
    /// Address-level edges, resolved to node indexes at the end.
    after: Vec<usize>,
}

/// The plan while it is built: its nodes, an index by address, what this plan (re)creates, and
/// the drift found on the way. Each stage of [`compute`] is a method, in its own file.
struct Graph<'i, 'a> {
    inp: &'i Inputs<'a>,
    by_addr: HashMap<&'a str, &'a DesiredResource>,
    nodes: Vec<Node>,
    /// Address → indexes of its nodes.
    node_of: HashMap<String, Vec<usize>>,
    /// Addresses created or replaced by this plan (their ids are known after apply only).
    recreated: HashMap<String, Action>,
    drift: Vec<Drift>,
}

impl<'i, 'a> Graph<'i, 'a> {
    fn new(inp: &'i Inputs<'a>) -> Self {
        Graph {
            inp,
            by_addr: inp
                .desired
                .iter()
                .map(|d| (d.address.as_str(), d))
                .collect(),
            nodes: Vec::new(),
            node_of: HashMap::new(),
            recreated: HashMap::new(),
            drift: Vec::new(),
        }
    }

    fn push(&mut self, change: Change) -> usize {
        let i = self.nodes.len();
        self.node_of
            .entry(change.address.clone())
            .or_default()
            .push(i);
        self.nodes.push(Node {
            change,
            after: Vec::new(),
        });
        i
    }

    /// The live read of the object the state records for `addr`.
    fn live_of(&self, addr: &str) -> Option<&'a LiveRead> {
        let inp: &'i Inputs<'a> = self.inp;
        let live: &'a HashMap<String, LiveRead> = inp.live;
        let prior = inp.prior.get(addr)?;
        let id = prior.id.as_deref()?;
        live.get(id)
    }

    /// Desired resources in dependency order (the manifest rejected cycles already; a leftover
    /// cycle falls back to name order rather than looping).
    fn dependency_order(&self) -> Vec<&'a DesiredResource> {
        let desired: &'a [DesiredResource] = self.inp.desired;
        let mut order_dag = Dag::new();
        let ids: HashMap<&str, _> = desired
            .iter()
            .map(|d| (d.address.as_str(), order_dag.add_node(d.address.as_str())))
            .collect();
        for d in desired {
            for dep in &d.depends_on {
                if let Some(&from) = ids.get(dep.as_str()) {
                    order_dag.add_edge(from, ids[d.address.as_str()]);
                }
            }
        }
        match order_dag.topological_order() {
            Ok(o) => o
                .into_iter()
                .map(|n| self.by_addr[*order_dag.node(n)])
                .collect(),
            Err(_) => desired.iter().collect(),
        }
    }

    /// Creates and replacements wait for what they reference to be (re)created first.
    fn reference_edges(&mut self) {
        let inp = self.inp;
        let dep_edges: Vec<(usize, usize)> = inp
            .desired
            .iter()
            .flat_map(|d| {
                let mine: Vec<usize> = self.node_of.get(&d.address).cloned().unwrap_or_default();
                let deps: Vec<usize> = d
                    .depends_on
                    .iter()
                    .filter(|dep| self.recreated.contains_key(dep.as_str()))
                    .flat_map(|dep| {
                        self.node_of[dep]
                            .iter()
                            .copied()
                            .filter(|&n| {
                                matches!(
                                    self.nodes[n].change.action,
                                    Action::Create | Action::Replace
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect();
                mine.into_iter()
                    .filter(|&m| {
                        matches!(
                            self.nodes[m].change.action,
                            Action::Create | Action::Replace
                        )
                    })
                    .flat_map(move |m| deps.clone().into_iter().map(move |dep| (dep, m)))
            })
            .collect();
        for (dep, m) in dep_edges {
            self.nodes[m].after.push(dep);
        }
    }
}

fn instance_running(live: &LiveRead) -> bool {
    matches!(live.lifecycle(), "RUNNING" | "STARTING" | "PROVISIONING")
}

/// Compute the plan's nodes.
pub fn compute(inp: &Inputs<'_>) -> Result<Computed, BuildError> {
    let mut g = Graph::new(inp);
    // Under destroy, there are only deletes.
    if !inp.destroy {
        for d in g.dependency_order() {
            g.resource(d)?;
        }
    }
    g.reference_edges();
    g.captures();
    g.replaced_images();
    g.deletes()?;
    Ok(Computed {
        changes: order_nodes(g.nodes),
        drift: g.drift,
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
    for (i, p) in position.iter_mut().enumerate() {
        if *p == usize::MAX {
            *p = order.len();
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
mod tests;
