//! A thin wrapper over petgraph for kiln's DAGs: nodes are labels, an edge `a → b` means
//! "b needs a first". `Display` lists nodes and their dependencies sorted, so tests can snapshot
//! it; [`Dag::to_dot`] is what `kiln graph` prints.
//!
//! A leaf: it knows nothing of kiln, so `manifest` (reference cycles) and `plan` (the action DAG)
//! share it without depending on each other.

use std::collections::BTreeSet;
use std::fmt;

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

pub type NodeId = NodeIndex<u32>;

#[derive(Clone, Debug, Default)]
pub struct Dag<N> {
    g: DiGraph<N, ()>,
}

impl<N> Dag<N> {
    pub fn new() -> Self {
        Dag { g: DiGraph::new() }
    }

    pub fn add_node(&mut self, n: N) -> NodeId {
        self.g.add_node(n)
    }

    /// `to` depends on `from`: `from` must finish before `to` starts. Duplicates are ignored.
    pub fn add_edge(&mut self, from: NodeId, to: NodeId) {
        if from != to && self.g.find_edge(from, to).is_none() {
            self.g.add_edge(from, to, ());
        }
    }

    pub fn node(&self, id: NodeId) -> &N {
        &self.g[id]
    }

    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices()
    }

    /// The nodes `id` waits for.
    pub fn dependencies(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.g.neighbors_directed(id, Direction::Incoming)
    }

    /// The nodes waiting for `id`.
    pub fn dependents(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.g.neighbors_directed(id, Direction::Outgoing)
    }

    /// Every node that (transitively) waits for `id`.
    pub fn all_dependents(&self, id: NodeId) -> BTreeSet<NodeId> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            for d in self.dependents(n) {
                if seen.insert(d) {
                    stack.push(d);
                }
            }
        }
        seen
    }

    /// Nodes in an order where every node comes after its dependencies; `Err` names a node on a cycle.
    pub fn topological_order(&self) -> Result<Vec<NodeId>, NodeId> {
        toposort(&self.g, None).map_err(|cycle| cycle.node_id())
    }
}

impl<N: fmt::Display> Dag<N> {
    /// Graphviz DOT, nodes and edges sorted by label.
    pub fn to_dot(&self) -> String {
        let mut nodes: Vec<String> = self.g.node_weights().map(|n| n.to_string()).collect();
        nodes.sort();
        let mut edges: Vec<(String, String)> = self
            .g
            .edge_indices()
            .filter_map(|e| self.g.edge_endpoints(e))
            .map(|(a, b)| (self.g[a].to_string(), self.g[b].to_string()))
            .collect();
        edges.sort();
        let mut out = String::from("digraph kiln {\n  rankdir = LR;\n  node [shape = box];\n");
        for n in nodes {
            out.push_str(&format!("  {:?};\n", n));
        }
        for (a, b) in edges {
            out.push_str(&format!("  {:?} -> {:?};\n", a, b));
        }
        out.push_str("}\n");
        out
    }
}

impl<N: fmt::Display> fmt::Display for Dag<N> {
    /// One line per node, sorted: `label <- dep1, dep2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: Vec<String> = self
            .g
            .node_indices()
            .map(|id| {
                let mut deps: Vec<String> = self
                    .dependencies(id)
                    .map(|d| self.g[d].to_string())
                    .collect();
                deps.sort();
                if deps.is_empty() {
                    self.g[id].to_string()
                } else {
                    format!("{} <- {}", self.g[id], deps.join(", "))
                }
            })
            .collect();
        lines.sort();
        for l in lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_sorted_and_dot_lists_edges() {
        let mut d = Dag::new();
        let c = d.add_node("create image.golden");
        let a = d.add_node("stop instance.builder");
        let b = d.add_node("start instance.builder");
        d.add_edge(a, c);
        d.add_edge(c, b);
        d.add_edge(c, b);
        assert_eq!(
            d.to_string(),
            "create image.golden <- stop instance.builder\nstart instance.builder <- create image.golden\nstop instance.builder\n"
        );
        assert!(d
            .to_dot()
            .contains("\"stop instance.builder\" -> \"create image.golden\";"));
        assert_eq!(d.topological_order().unwrap(), vec![a, c, b]);
        assert_eq!(d.all_dependents(a).len(), 2);
    }

    #[test]
    fn cycles_are_reported() {
        let mut d = Dag::new();
        let a = d.add_node("a");
        let b = d.add_node("b");
        d.add_edge(a, b);
        d.add_edge(b, a);
        assert!(d.topological_order().is_err());
    }
}
