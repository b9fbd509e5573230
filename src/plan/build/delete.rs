//! Deletes, each after everything that stops depending on it: the previous object of a replaced
//! image (create before destroy), resources in state the manifest no longer has (or all, for
//! `kiln destroy`) — unfinished creates of such addresses included, destroyed once resolved —
//! and the deposed predecessors of earlier replacements.

use std::collections::HashMap;

use serde_json::Value;

use super::super::{Action, Change, Kind};
use super::{BuildError, Graph, LiveRead};

impl Graph<'_, '_> {
    /// Replaced images: create before destroy. The old image is deleted by its own node, after
    /// the replacement exists and everything launched from it has been replaced.
    pub(super) fn replaced_images(&mut self) {
        let inp = self.inp;
        let replaced_images: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].change.action == Action::Replace
                    && self.nodes[i].change.kind == Kind::Image
            })
            .collect();
        for r in replaced_images {
            let (address, old_id, etag) = (
                self.nodes[r].change.address.clone(),
                self.nodes[r].change.id.clone(),
                self.nodes[r].change.etag.clone(),
            );
            let Some(old_id) = old_id else { continue };
            let dependents: Vec<usize> = inp
                .desired
                .iter()
                .filter(|d| d.depends_on.contains(&address))
                .flat_map(|d| self.node_of.get(&d.address).cloned().unwrap_or_default())
                .collect();
            let i = self.push(Change {
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
                pending: false,
            });
            self.nodes[i].after.push(r);
            self.nodes[i].after.extend(dependents);
        }
    }

    /// `prevent_destroy` is the manifest's: removing it (or the resource) from the manifest lifts
    /// it. (Only `kiln destroy` deletes a declared resource.)
    fn prevent_destroy(&self, addr: &str) -> Result<(), BuildError> {
        let inp = self.inp;
        if inp.destroy && self.by_addr.get(addr).is_some_and(|d| d.prevent_destroy) {
            return Err(BuildError::PreventDestroy {
                address: addr.to_string(),
            });
        }
        Ok(())
    }

    /// Resources in state that the manifest no longer has (or all, for destroy), and the deposed
    /// predecessors of earlier replacements (whatever the manifest says: kiln owns them).
    pub(super) fn deletes(&mut self) -> Result<(), BuildError> {
        let inp = self.inp;
        let undeclared = |addr: &str| inp.destroy || !self.by_addr.contains_key(addr);
        let doomed: Vec<_> = inp
            .prior
            .iter()
            .flat_map(|(addr, p)| {
                let own =
                    p.id.clone()
                        .filter(|_| undeclared(addr))
                        .map(|id| (addr, p, id, false));
                own.into_iter()
                    .chain(p.deposed.iter().map(move |id| (addr, p, id.clone(), true)))
            })
            .collect();
        // An unfinished create of an address the manifest no longer declares (or of any, under
        // destroy) is a resource too: its node resolves it, then destroys what it made. Also
        // when the address still records an object that is gone (the re-create of an instance
        // terminated outside kiln: the simulation's seed 234).
        let no_object = |p: &super::Prior| {
            p.id.as_ref()
                .is_none_or(|id| inp.refreshed && inp.live.get(id).is_none_or(LiveRead::is_gone))
        };
        let pending: Vec<(&String, &super::Prior)> = inp
            .prior
            .iter()
            .filter(|(addr, p)| p.pending_create && no_object(p) && undeclared(addr))
            .collect();
        for (addr, p) in pending {
            self.prevent_destroy(addr)?;
            let kind = p.kind.unwrap_or(if addr.starts_with("image.") {
                Kind::Image
            } else {
                Kind::Instance
            });
            let how = if p.pending_stale {
                "kiln looks for what it made (its retry token is past its window) and destroys it"
            } else {
                "it is resent with its retry token, and what it made is destroyed"
            };
            self.push(Change {
                address: addr.clone(),
                kind,
                region: p.pending_region.clone(),
                action: Action::Delete,
                reason: if inp.destroy {
                    format!("kiln destroy; an earlier create did not finish: {how}")
                } else {
                    format!("no longer in the manifest; an earlier create did not finish: {how}")
                },
                attributes: Vec::new(),
                id: None,
                etag: None,
                request: None,
                inputs: None,
                depends_on: Vec::new(),
                deposed: false,
                observed: None,
                pending: true,
            });
        }
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
            if !deposed {
                self.prevent_destroy(addr)?;
            }
            let kind = p.kind.unwrap_or(if addr.starts_with("image.") {
                Kind::Image
            } else {
                Kind::Instance
            });
            let i = self.push(Change {
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
                pending: false,
            });
            if deposed {
                // Create before destroy: a predecessor goes once its successor exists.
                let successor: Vec<usize> = self.node_of[addr.as_str()]
                    .iter()
                    .copied()
                    .filter(|&n| {
                        matches!(
                            self.nodes[n].change.action,
                            Action::Create | Action::Replace
                        )
                    })
                    .collect();
                self.nodes[i].after.extend(successor);
            }
            delete_nodes.push((i, id));
        }
        // A delete waits for every node of the resources that used it: instances launched from a
        // deleted image, images captured from a deleted instance. (What each address used is
        // read once: the recorded attributes are text.)
        let image_of: HashMap<&str, Option<String>> = if delete_nodes.is_empty() {
            HashMap::new()
        } else {
            inp.prior
                .iter()
                .map(|(addr, p)| {
                    (
                        addr.as_str(),
                        p.attributes.str_at(&["sourceDetails", "imageId"]),
                    )
                })
                .collect()
        };
        let mut users_of: HashMap<&str, Vec<&str>> = HashMap::new();
        for (addr, p) in inp.prior {
            if !self.node_of.contains_key(addr.as_str()) {
                continue;
            }
            let image = image_of.get(addr.as_str()).and_then(|i| i.as_deref());
            let source = p.inputs.get("source_instance").and_then(Value::as_str);
            for used in image.into_iter().chain(source) {
                if p.id.as_deref() != Some(used) {
                    users_of.entry(used).or_default().push(addr.as_str());
                }
            }
        }
        for (i, id) in &delete_nodes {
            let users: Vec<usize> = users_of
                .get(id.as_str())
                .into_iter()
                .flatten()
                .flat_map(|addr| self.node_of[*addr].clone())
                .filter(|n| n != i)
                .collect();
            self.nodes[*i].after.extend(users);
        }
        // Under destroy, dependents go first: an image is deleted after the instances launched from it.
        if inp.destroy {
            let deleting: HashMap<&str, Vec<usize>> =
                delete_nodes.iter().fold(HashMap::new(), |mut m, (i, id)| {
                    m.entry(id.as_str()).or_default().push(*i);
                    m
                });
            let mut edges = Vec::new();
            for (j, _) in &delete_nodes {
                let addr_j = self.nodes[*j].change.address.as_str();
                let image = image_of.get(addr_j).and_then(|i| i.as_deref());
                for i in image.and_then(|id| deleting.get(id)).into_iter().flatten() {
                    if i != j {
                        edges.push((*i, *j));
                    }
                }
            }
            for (i, j) in edges {
                self.nodes[i].after.push(j);
            }
        }
        Ok(())
    }
}
