//! Network facts: the primary VNIC of each instance apply created, replaced or moved (and of those
//! the plan lists in [`crate::plan::Plan::read_network`]), read in bulk once the actions are done
//! and recorded in the state for `kiln output`.
//!
//! Bulk, like refresh: one ListVnicAttachments per compartment (every page, all its instances at
//! once), then one GetVnic per instance read — API calls = O(compartments + instances read), not
//! a list per instance. The primary VNIC is the attached one with the lowest `nicIndex` (the first
//! attached on a tie) that GetVnic does not say is secondary.
//!
//! Reads never change anything in OCI, and they come after the actions: a read that fails (or a
//! kiln that dies before it) leaves the instance recorded without network facts — never without
//! its id, never created twice. The failure is reported (the apply exits 1, the actions stay
//! done); the next plan lists the instance in `read_network` and the next apply (or
//! `kiln apply --refresh-only`) reads it. Facts that did not change are not written again.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::oci::models::{Vnic, VnicAttachment};
use crate::state::{Network, ResourceKind};

use super::ctx::Ctx;
use super::execute::NodeError;

/// An instance to read: (address, instance id, compartment).
type Target = (String, String, String);

impl Ctx {
    /// Read and record the network facts of `addresses` (those that are live instances in the
    /// state). Returns how many were read, and the failures as (label, error).
    pub(super) async fn read_networks(
        &self,
        addresses: &BTreeSet<String>,
        parallelism: usize,
    ) -> (usize, Vec<(String, String)>) {
        let targets: Vec<Target> = {
            let st = self.state.lock().await;
            addresses
                .iter()
                .filter_map(|a| {
                    let r = st.resources.get(a)?;
                    let lifecycle = r.attributes.top_str("lifecycleState");
                    if r.kind != ResourceKind::Instance
                        || matches!(lifecycle.as_deref(), Some("TERMINATING" | "TERMINATED"))
                    {
                        return None;
                    }
                    let compartment = r
                        .attributes
                        .top_str("compartmentId")
                        .or_else(|| r.compartment.clone())?;
                    Some((a.clone(), r.id.clone()?, compartment))
                })
                .collect()
        };
        if targets.is_empty() {
            return (0, Vec::new());
        }
        let label = |a: &str| format!("read the network of {a}");
        let mut failed: Vec<(String, String)> = Vec::new();

        // One ListVnicAttachments per (region, compartment).
        let compartments: BTreeSet<(Option<&'static str>, String)> = targets
            .iter()
            .map(|t| (crate::region::from_ocid(&t.1), t.2.clone()))
            .collect();
        let lists: Vec<_> = stream::iter(compartments)
            .map(|(region, c)| async move {
                let r = match self.clients.for_region(region) {
                    Ok(client) => client.list_vnic_attachments(&c, None).await,
                    Err(e) => Err(e),
                };
                (c, r)
            })
            .buffered(parallelism.max(1))
            .collect()
            .await;
        let mut attached: BTreeMap<String, Vec<VnicAttachment>> = BTreeMap::new();
        let mut unlisted: BTreeMap<String, crate::oci::OciError> = BTreeMap::new();
        for (c, r) in lists {
            match r {
                Ok(list) => {
                    for a in list.into_iter().filter(|a| a.lifecycle_state == "ATTACHED") {
                        attached.entry(a.instance_id.clone()).or_default().push(a);
                    }
                }
                Err(e) => {
                    unlisted.insert(c, e);
                }
            }
        }
        let mut todo: Vec<(Target, Vec<String>)> = Vec::new();
        for t in targets {
            if let Some(e) = unlisted.get(&t.2) {
                let e = self.oci(&t.0, e.clone());
                failed.push((label(&t.0), format!("{:?}", miette::Report::new(e))));
                continue;
            }
            let mut candidates = attached.remove(&t.1).unwrap_or_default();
            candidates.sort_by(|a, b| {
                (a.nic_index.unwrap_or(0), created(a)).cmp(&(b.nic_index.unwrap_or(0), created(b)))
            });
            let vnics: Vec<String> = candidates.into_iter().filter_map(|a| a.vnic_id).collect();
            if vnics.is_empty() {
                failed.push((
                    label(&t.0),
                    format!(
                        "`{}`: no attached VNIC of {} in compartment {}; `kiln apply` reads it again",
                        t.0, t.1, t.2
                    ),
                ));
                continue;
            }
            todo.push((t, vnics));
        }

        // One GetVnic per instance (more only if OCI says the first is not the primary).
        let reads: Vec<(Target, Result<Option<Vnic>, NodeError>)> = stream::iter(todo)
            .map(|(t, vnics)| async move {
                let mut found = Ok(None);
                for id in vnics {
                    match self.at(&id).get_vnic(&id).await {
                        Ok(r) if r.body.is_primary == Some(false) => continue,
                        Ok(r) => {
                            found = Ok(Some(r.body));
                            break;
                        }
                        Err(e) => {
                            found = Err(self.oci(&t.0, e));
                            break;
                        }
                    }
                }
                (t, found)
            })
            .buffered(parallelism.max(1))
            .collect()
            .await;
        let mut facts: Vec<(String, String, Network)> = Vec::new();
        for (t, r) in reads {
            match r {
                Ok(Some(v)) => facts.push((
                    t.0,
                    t.1,
                    Network {
                        vnic_id: v.id,
                        subnet_id: Some(v.subnet_id),
                        private_ip: v.private_ip,
                        public_ip: v.public_ip,
                        hostname_label: v.hostname_label,
                        read_at: Utc::now(),
                    },
                )),
                Ok(None) => failed.push((
                    label(&t.0),
                    format!("`{}`: none of its VNICs is the primary one", t.0),
                )),
                Err(e) => failed.push((label(&t.0), format!("{:?}", miette::Report::new(e)))),
            }
        }
        let read = facts.len();
        // Only what changed is written (the read time alone does not make a save).
        let changed: Vec<(String, String, Network)> = {
            let st = self.state.lock().await;
            facts
                .into_iter()
                .filter(|(a, id, n)| {
                    st.resources.get(a).is_some_and(|r| {
                        r.id.as_deref() == Some(id.as_str())
                            && r.network.as_ref().is_none_or(|old| !same(old, n))
                    })
                })
                .collect()
        };
        if !changed.is_empty() {
            let touched: Vec<String> = changed.iter().map(|(a, _, _)| a.clone()).collect();
            let saved = self
                .record_at("network facts", &touched, |st| {
                    for (a, id, n) in changed {
                        if let Some(r) = st.resources.get_mut(&a) {
                            if r.id.as_deref() == Some(id.as_str()) {
                                r.network = Some(n);
                            }
                        }
                    }
                })
                .await;
            if let Err(e) = saved {
                failed.push((
                    "record the network facts".into(),
                    format!("{:?}", miette::Report::new(e)),
                ));
                return (0, failed);
            }
        }
        (read, failed)
    }
}

fn created(a: &VnicAttachment) -> String {
    a.extra
        .get("timeCreated")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The same facts, whenever read.
fn same(a: &Network, b: &Network) -> bool {
    (
        &a.vnic_id,
        &a.subnet_id,
        &a.private_ip,
        &a.public_ip,
        &a.hostname_label,
    ) == (
        &b.vnic_id,
        &b.subnet_id,
        &b.private_ip,
        &b.public_ip,
        &b.hostname_label,
    )
}
