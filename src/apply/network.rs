//! Network facts: the primary VNIC of each instance apply created, replaced or moved (and of those
//! the plan lists in [`crate::plan::Plan::read_network`]), read in bulk once the actions are done
//! and recorded in the state for `kiln output`.
//!
//! Bulk, like refresh: API calls = O(compartments + subnets + pages), not one per instance.
//! - One ListVnicAttachments per (region, compartment) (every page, all its instances at once)
//!   says which VNICs each instance has, in which subnet and availability domain.
//! - An instance with one attached VNIC: that VNIC is its primary one. Their private IPs, hostname
//!   labels and public IPs come from one ListPrivateIps per subnet (every private IP of the
//!   subnet; the VNIC's primary private IP is the one with `isPrimary`) and one ListPublicIps per
//!   (region, compartment, availability domain) of those private IPs (`scope=AVAILABILITY_DOMAIN`,
//!   `lifetime=EPHEMERAL`: an ephemeral public IP is in its private IP's compartment and AD; the
//!   one whose `privateIpId` is the primary private IP is the instance's; none: no public IP).
//!   A private IP the subnet's list lacks (an instance caught mid-change) is read with GetVnic.
//! - An instance with several attached VNICs: GetVnic, in the order of `nicIndex` (the first
//!   attached on a tie), until one is not said to be secondary — the primary VNIC.
//! - When the lists would cost as many calls as GetVnic per instance (a lone instance, a few
//!   spread over subnets and ADs, or subnets and ADs that hold many more VNICs than are read, as
//!   far as the attachment lists tell), GetVnic per instance, which reads the same facts.
//!   Reserved public IPs (kiln never assigns one) are not listed: an instance given one outside
//!   kiln shows it only through GetVnic.
//!
//! Reads never change anything in OCI, and they come after the actions: a read that fails (or a
//! kiln that dies before it) leaves the instance recorded without network facts — never without
//! its id, never created twice. A failed list fails the read of the instances it was for (no
//! retry per instance). The failure is reported (the apply exits 1, the actions stay done); the
//! next plan lists the instance in `read_network` and the next apply (or
//! `kiln apply --refresh-only`) reads it. Facts that did not change are not written again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Utc;
use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::oci::models::{PrivateIp, PublicIp, Vnic, VnicAttachment};
use crate::oci::OciError;
use crate::state::{Network, ResourceKind};

use super::ctx::Ctx;
use super::execute::NodeError;

/// An instance to read: (address, instance id, compartment).
type Target = (String, String, String);

/// A region (None: the default one) and a subnet, or a compartment and an AD, listed once.
type Region = Option<&'static str>;

/// Items per page of the lists read here.
const PAGE: usize = 1000;

/// An instance whose only attached VNIC is read from the lists.
struct Listed {
    target: Target,
    region: Region,
    attachment: VnicAttachment,
}

/// How many instances' network facts one state commit records.
const NETWORK_COMMIT: usize = 256;

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
        let parallelism = parallelism.max(1);
        let mut failed: Vec<(String, String)> = Vec::new();

        // One ListVnicAttachments per (region, compartment).
        let compartments: BTreeSet<(Region, String)> = targets
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
            .buffered(parallelism)
            .collect()
            .await;
        let mut attached: BTreeMap<String, Vec<VnicAttachment>> = BTreeMap::new();
        let mut unlisted: BTreeMap<String, OciError> = BTreeMap::new();
        // How many attached VNICs each (region, subnet) and (region, compartment, AD) is known to
        // have: the least its list can cost.
        let mut in_subnet: HashMap<(Region, String), usize> = HashMap::new();
        let mut in_ad: HashMap<(Region, String, String), usize> = HashMap::new();
        for (c, r) in lists {
            match r {
                Ok(list) => {
                    for a in list.into_iter().filter(|a| a.lifecycle_state == "ATTACHED") {
                        let region = crate::region::from_ocid(&a.instance_id);
                        *in_subnet.entry((region, a.subnet_id.clone())).or_default() += 1;
                        if let Some(ad) = &a.availability_domain {
                            *in_ad.entry((region, c.clone(), ad.clone())).or_default() += 1;
                        }
                        attached.entry(a.instance_id.clone()).or_default().push(a);
                    }
                }
                Err(e) => {
                    unlisted.insert(c, e);
                }
            }
        }
        let mut one: Vec<Listed> = Vec::new();
        let mut several: Vec<(Target, Vec<String>)> = Vec::new();
        for t in targets {
            if let Some(e) = unlisted.get(&t.2) {
                failed.push(self.failure(&t.0, e.clone()));
                continue;
            }
            let mut candidates = attached.remove(&t.1).unwrap_or_default();
            candidates.retain(|a| a.vnic_id.is_some());
            if candidates.is_empty() {
                failed.push((
                    label(&t.0),
                    format!(
                        "`{}`: no attached VNIC of {} in compartment {}; `kiln apply` reads it again",
                        t.0, t.1, t.2
                    ),
                ));
                continue;
            }
            if candidates.len() == 1 && candidates[0].availability_domain.is_some() {
                let region = crate::region::from_ocid(&t.1);
                let attachment = candidates.pop().expect("one");
                one.push(Listed {
                    target: t,
                    region,
                    attachment,
                });
                continue;
            }
            candidates.sort_by(|a, b| {
                (a.nic_index.unwrap_or(0), created(a)).cmp(&(b.nic_index.unwrap_or(0), created(b)))
            });
            let vnics: Vec<String> = candidates.into_iter().filter_map(|a| a.vnic_id).collect();
            several.push((t, vnics));
        }

        // The lists, when they cost fewer calls than one GetVnic per instance.
        let subnets: BTreeSet<(Region, String)> = one
            .iter()
            .map(|l| (l.region, l.attachment.subnet_id.clone()))
            .collect();
        let ads: BTreeSet<(Region, String, String)> = one
            .iter()
            .map(|l| {
                let ad = l.attachment.availability_domain.clone().unwrap_or_default();
                (l.region, l.target.2.clone(), ad)
            })
            .collect();
        let pages = |n: usize| n.div_ceil(PAGE).max(1);
        let cost: usize = subnets
            .iter()
            .map(|k| pages(in_subnet.get(k).copied().unwrap_or(0)))
            .chain(
                ads.iter()
                    .map(|k| pages(in_ad.get(k).copied().unwrap_or(0))),
            )
            .sum();
        let mut facts: Vec<(String, String, Network)> = Vec::new();
        if cost < one.len() {
            let (read, rest, list_failed) = self.read_listed(one, subnets, parallelism).await;
            facts.extend(read);
            several.extend(rest);
            failed.extend(list_failed);
        } else {
            several.extend(one.into_iter().map(|l| {
                let vnic = l.attachment.vnic_id.expect("kept above");
                (l.target, vec![vnic])
            }));
        }

        // GetVnic for the rest (more than one only if OCI says the first is not the primary).
        let reads: Vec<(Target, Result<Option<Vnic>, NodeError>)> = stream::iter(several)
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
            .buffered(parallelism)
            .collect()
            .await;
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
        // Recorded in commits of [`NETWORK_COMMIT`] instances: one commit of every record of a
        // 10,000-launch apply was a 60 MB journal line, the apply's peak of memory
        // (BENCHMARKS.md section 6). Each commit is whole on its own.
        let mut changed = changed.into_iter().peekable();
        while changed.peek().is_some() {
            let chunk: Vec<(String, String, Network)> =
                changed.by_ref().take(NETWORK_COMMIT).collect();
            let touched: Vec<String> = chunk.iter().map(|(a, _, _)| a.clone()).collect();
            let saved = self
                .record_at("network facts", &touched, |st| {
                    for (a, id, n) in chunk {
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

    /// The facts of instances with one VNIC from ListPrivateIps per subnet and ListPublicIps per
    /// (compartment, AD) of their primary private IPs: (facts read, instances left to GetVnic,
    /// failures).
    async fn read_listed(
        &self,
        listed: Vec<Listed>,
        subnets: BTreeSet<(Region, String)>,
        parallelism: usize,
    ) -> (
        Vec<(String, String, Network)>,
        Vec<(Target, Vec<String>)>,
        Vec<(String, String)>,
    ) {
        let (mut facts, mut rest, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        let private: HashMap<(Region, String), Result<Vec<PrivateIp>, OciError>> =
            stream::iter(subnets)
                .map(|(region, subnet)| async move {
                    let r = match self.clients.for_region(region) {
                        Ok(client) => client.list_private_ips_in_subnet(&subnet).await,
                        Err(e) => Err(e),
                    };
                    ((region, subnet), r)
                })
                .buffered(parallelism)
                .collect()
                .await;
        // The primary private IP of each VNIC listed.
        let mut primary: HashMap<&str, &PrivateIp> = HashMap::new();
        for ips in private.values().flatten() {
            for p in ips.iter().filter(|p| p.is_primary == Some(true)) {
                if let Some(v) = &p.vnic_id {
                    primary.insert(v, p);
                }
            }
        }
        let mut found: Vec<(Listed, &PrivateIp, (Region, String, String))> = Vec::new();
        for l in listed {
            let vnic = l.attachment.vnic_id.clone().expect("kept by read_networks");
            let key = (l.region, l.attachment.subnet_id.clone());
            if let Some(Err(e)) = private.get(&key) {
                failed.push(self.failure(&l.target.0, e.clone()));
                continue;
            }
            match primary.get(vnic.as_str()) {
                Some(p) => {
                    // An ephemeral public IP is in its private IP's compartment and AD.
                    let ad = (
                        l.region,
                        p.compartment_id
                            .clone()
                            .unwrap_or_else(|| l.target.2.clone()),
                        p.availability_domain
                            .clone()
                            .or_else(|| l.attachment.availability_domain.clone())
                            .unwrap_or_default(),
                    );
                    found.push((l, p, ad));
                }
                None => rest.push((l.target, vec![vnic])),
            }
        }
        let ads: BTreeSet<(Region, String, String)> =
            found.iter().map(|(_, _, ad)| ad.clone()).collect();
        let public: HashMap<(Region, String, String), Result<Vec<PublicIp>, OciError>> =
            stream::iter(ads)
                .map(|(region, c, ad)| async move {
                    let r = match self.clients.for_region(region) {
                        Ok(client) => client.list_ephemeral_public_ips(&c, &ad).await,
                        Err(e) => Err(e),
                    };
                    ((region, c, ad), r)
                })
                .buffered(parallelism)
                .collect()
                .await;
        // The public IP assigned to each private IP.
        let mut assigned: HashMap<&str, &str> = HashMap::new();
        for p in public.values().flatten().flatten() {
            let to_private = p
                .assigned_entity_type
                .as_deref()
                .is_none_or(|t| t == "PRIVATE_IP");
            let on = p
                .private_ip_id
                .as_deref()
                .or(p.assigned_entity_id.as_deref());
            if let (true, Some("ASSIGNED"), Some(on), Some(ip)) = (
                to_private,
                p.lifecycle_state.as_deref(),
                on,
                p.ip_address.as_deref(),
            ) {
                assigned.insert(on, ip);
            }
        }
        for (l, p, ad) in found {
            if let Some(Err(e)) = public.get(&ad) {
                failed.push(self.failure(&l.target.0, e.clone()));
                continue;
            }
            let (address, id, _) = l.target;
            facts.push((
                address,
                id,
                Network {
                    vnic_id: l.attachment.vnic_id.expect("kept by read_networks"),
                    subnet_id: Some(l.attachment.subnet_id),
                    private_ip: p.ip_address.clone(),
                    public_ip: assigned.get(p.id.as_str()).map(|ip| ip.to_string()),
                    hostname_label: p.hostname_label.clone(),
                    read_at: Utc::now(),
                },
            ));
        }
        (facts, rest, failed)
    }

    /// The read of `address` failed with `e`: (label, report).
    fn failure(&self, address: &str, e: OciError) -> (String, String) {
        let e = self.oci(address, e);
        (label(address), format!("{:?}", miette::Report::new(e)))
    }
}

fn label(address: &str) -> String {
    format!("read the network of {address}")
}

fn created(a: &VnicAttachment) -> String {
    a.time_created.clone().unwrap_or_default()
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

impl Ctx {
    /// UpdateVnic of the instance `id`'s primary VNIC with the UpdateVnicDetails an update
    /// planned ([`crate::plan::diff::VNIC_UPDATE`]), then the new values recorded as the
    /// instance's inputs (GetInstance does not return them; plans compare with these).
    ///
    /// The VNIC is found with ListVnicAttachments of the instance and GetVnic (the primary one),
    /// and updated with the If-Match of the version that GetVnic read. A VNIC that already has
    /// the values (a lost answer, a retried apply) is not sent anything; a 412 (changed since the
    /// read) is re-read once: done if it has the values, else the error.
    pub(super) async fn update_primary_vnic(
        &self,
        c: &crate::plan::Change,
        id: &str,
        details: Value,
    ) -> Result<(), NodeError> {
        let compartment = {
            let st = self.state.lock().await;
            st.resources
                .get(&c.address)
                .and_then(|r| r.compartment.clone())
        }
        .ok_or_else(|| self.invalid(c, "the instance's compartment is not recorded"))?;
        let client = self.at(id);
        let mut attachments: Vec<VnicAttachment> = client
            .list_vnic_attachments(&compartment, Some(id))
            .await
            .map_err(|e| self.oci(&c.address, e))?
            .into_iter()
            .filter(|a| a.lifecycle_state == "ATTACHED")
            .collect();
        attachments.sort_by_key(|a| a.nic_index.unwrap_or(u32::MAX));
        let mut primary = None;
        for a in &attachments {
            let Some(v) = &a.vnic_id else { continue };
            let r = client
                .get_vnic(v)
                .await
                .map_err(|e| self.oci(&c.address, e))?;
            if r.body.is_primary != Some(false) {
                primary = Some(r);
                break;
            }
        }
        let read =
            primary.ok_or_else(|| self.invalid(c, "the instance has no attached primary VNIC"))?;
        let has = |vnic: &Vnic| {
            let live = serde_json::to_value(vnic).unwrap_or(Value::Null);
            details
                .as_object()
                .is_some_and(|m| m.iter().all(|(k, v)| live.get(k) == Some(v)))
        };
        if !has(&read.body) {
            self.progress
                .step(&super::ctx::label(c), "updating the primary VNIC");
            let opts = crate::oci::client::MutationOptions::if_match(read.etag.as_deref());
            if let Err(e) = client.update_vnic(&read.body.id, &details, &opts).await {
                let now = client
                    .get_vnic(&read.body.id)
                    .await
                    .map_err(|e| self.oci(&c.address, e))?;
                if !(e.is_precondition_failed() && has(&now.body)) {
                    return Err(self.oci(&c.address, e));
                }
            }
        }
        let recorded: Vec<(String, Value)> = details
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(oci, v)| {
                crate::plan::from_manifest::VNIC_UPDATABLE
                    .iter()
                    .find(|(_, o)| o == oci)
                    .map(|(k, _)| (k.to_string(), v.clone()))
            })
            .collect();
        self.record(&c.address, |st| {
            if let Some(r) = st.resources.get_mut(&c.address) {
                let inputs = std::sync::Arc::make_mut(&mut r.inputs);
                inputs.extend(recorded);
                r.updated_at = Utc::now();
            }
        })
        .await?;
        self.mark_network_stale(&c.address);
        Ok(())
    }
}
