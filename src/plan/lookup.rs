//! Names resolved to OCIDs before a plan diffs: `compartment = { path }`, `subnet` and `nsg_ids`
//! `{ lookup }` ([`crate::manifest::lookup`]), with list calls through a [`Catalog`] that lists
//! each (region, compartment, kind) once per plan, every page — O(pages), whatever the number of
//! resources that name the same thing. The resolved OCID is what the plan diffs and sends and
//! what the state records; each resolution is listed in the plan ([`Resolved`]).
//!
//! A path is walked from the tenancy root down (ListCompartments of each parent, ACTIVE ones);
//! a VCN is looked up by display name in the lookup's `compartment`, else the resource's; its
//! subnet or network security group by display name in that VCN (ListSubnets,
//! ListNetworkSecurityGroups with `vcnId`: oci-go-sdk v65 `core/list_subnets_request_response.go`,
//! `core/list_network_security_groups_request_response.go`). Only AVAILABLE VCNs, subnets and
//! NSGs count. None found, or several (OCI does not make display names unique), is a problem at
//! the lookup's span naming what was found; every problem is reported at once.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::manifest::diagnostic::{At, Problem};
use crate::manifest::lookup::{CompartmentPath, NetworkLookup, Scope};
use crate::manifest::Manifest;
use crate::oci::catalog::{Compartment, Domain, Named, NetworkKind, Shape};
use crate::oci::{Client, Clients, OciError};
use crate::suggest::did_you_mean;

/// One lookup the plan resolved, and the resources that name it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// `compartment`, `subnet` or `nsg_ids`.
    pub field: String,
    /// As written: `path "prod/app"`, `lookup vcn "prod" / "app"`.
    pub lookup: String,
    /// The OCID it resolved to.
    pub id: String,
    pub addresses: Vec<String>,
}

/// OCI's lists, read once per plan (per region and compartment, every page).
pub struct Catalog<'a> {
    clients: &'a Clients,
    children: HashMap<(String, String), Vec<Compartment>>,
    network: HashMap<(String, NetworkKind, String, Option<String>), Vec<Named>>,
    pub(super) ads: HashMap<(String, String), Vec<Domain>>,
    pub(super) fds: HashMap<(String, String, String), Vec<Domain>>,
    pub(super) shapes: HashMap<(String, String, String), Vec<Shape>>,
}

impl<'a> Catalog<'a> {
    pub fn new(clients: &'a Clients) -> Catalog<'a> {
        Catalog {
            clients,
            children: HashMap::new(),
            network: HashMap::new(),
            ads: HashMap::new(),
            fds: HashMap::new(),
            shapes: HashMap::new(),
        }
    }

    /// The client of `region` (`None`: the provider's) and that region's id, the caches' key.
    pub(super) fn client(&self, region: Option<&str>) -> Result<(&'a Client, String), OciError> {
        let c = self.clients.for_region(region)?;
        let r = region.unwrap_or(self.clients.default_region()).to_string();
        Ok((c, r))
    }

    async fn children(
        &mut self,
        region: Option<&str>,
        parent: &str,
    ) -> Result<&[Compartment], OciError> {
        let (c, r) = self.client(region)?;
        let key = (r, parent.to_string());
        if !self.children.contains_key(&key) {
            let list = c.list_child_compartments(parent).await?;
            self.children.insert(key.clone(), list);
        }
        Ok(&self.children[&key])
    }

    pub(super) async fn network(
        &mut self,
        region: Option<&str>,
        kind: NetworkKind,
        compartment: &str,
        vcn: Option<&str>,
    ) -> Result<&[Named], OciError> {
        let (c, r) = self.client(region)?;
        let key = (r, kind, compartment.to_string(), vcn.map(str::to_string));
        if !self.network.contains_key(&key) {
            let list = c
                .list_network(kind, compartment, vcn)
                .await?
                .into_iter()
                .filter(|n| n.lifecycle_state.is_empty() || n.lifecycle_state == "AVAILABLE")
                .collect();
            self.network.insert(key.clone(), list);
        }
        Ok(&self.network[&key])
    }

    /// The OCID of compartment `path`, walked from the tenancy root.
    async fn compartment(
        &mut self,
        region: Option<&str>,
        path: &CompartmentPath,
    ) -> Result<Result<String, Problem>, OciError> {
        let (c, _) = self.client(region)?;
        let Some(tenancy) = c.credentials().tenancy() else {
            return Ok(Err(Problem::error(
                "compartment_path",
                format!("compartment path `{}` cannot be walked: these credentials do not name their tenancy", path.path()),
            )
            .at(&path.at, "needs the tenancy")
            .help("authenticate with an API key or an instance principal, or give the compartment's OCID")));
        };
        let mut parent = tenancy;
        let mut walked: Vec<&str> = Vec::new();
        for seg in &path.segments {
            let children = self.children(region, &parent).await?;
            let found: Vec<&Compartment> = children.iter().filter(|k| &k.name == seg).collect();
            let under = match walked.is_empty() {
                true => "the tenancy root".to_string(),
                false => format!("`{}`", walked.join("/")),
            };
            match found.as_slice() {
                [one] => parent = one.id.clone(),
                [] => {
                    let names: Vec<&str> = children.iter().map(|k| k.name.as_str()).collect();
                    return Ok(Err(none_found(
                        Problem::error(
                            "lookup_not_found",
                            format!(
                                "compartment path `{}`: {under} has no compartment `{seg}`",
                                path.path()
                            ),
                        )
                        .at(&path.at, "none found"),
                        seg,
                        &names,
                        &format!("compartments in {under}"),
                    )));
                }
                several => {
                    return Ok(Err(several_found(
                        Problem::error(
                            "lookup_ambiguous",
                            format!(
                                "compartment path `{}`: {under} has {} compartments named `{seg}`",
                                path.path(),
                                several.len()
                            ),
                        )
                        .at(&path.at, "several found"),
                        several.iter().map(|k| k.id.as_str()),
                    )));
                }
            }
            walked.push(seg);
        }
        Ok(Ok(parent))
    }

    /// The OCID of the subnet or network security group `l` names.
    async fn network_lookup(
        &mut self,
        region: Option<&str>,
        kind: NetworkKind,
        l: &NetworkLookup,
        own_compartment: &str,
    ) -> Result<Result<String, Problem>, OciError> {
        let compartment = match &l.compartment {
            None => own_compartment.to_string(),
            Some(Scope::Ocid(c)) => c.clone(),
            Some(Scope::Path(p)) => match self.compartment(region, p).await? {
                Ok(c) => c,
                Err(p) => return Ok(Err(p)),
            },
        };
        let vcns = self
            .network(region, NetworkKind::Vcn, &compartment, None)
            .await?;
        let vcn = match one_named(vcns, &l.vcn) {
            Ok(v) => v.id.clone(),
            Err(found) => {
                let names: Vec<&str> = vcns
                    .iter()
                    .filter_map(|v| v.display_name.as_deref())
                    .collect();
                return Ok(Err(match found.is_empty() {
                    true => none_found(
                        Problem::error(
                            "lookup_not_found",
                            format!("no VCN named `{}` in compartment `{compartment}`", l.vcn),
                        )
                        .at(&l.at, "no such VCN"),
                        &l.vcn,
                        &names,
                        "VCNs there",
                    ),
                    false => several_found(
                        Problem::error(
                            "lookup_ambiguous",
                            format!(
                                "{} VCNs named `{}` in compartment `{compartment}`",
                                found.len(),
                                l.vcn
                            ),
                        )
                        .at(&l.at, "several VCNs found"),
                        found.iter().map(|v| v.id.as_str()),
                    ),
                }));
            }
        };
        let (what, whats) = match kind {
            NetworkKind::Subnet => ("subnet", "subnets"),
            _ => ("network security group", "network security groups"),
        };
        let items = self.network(region, kind, &compartment, Some(&vcn)).await?;
        Ok(match one_named(items, &l.display_name) {
            Ok(n) => Ok(n.id.clone()),
            Err(found) if found.is_empty() => {
                let names: Vec<&str> = items
                    .iter()
                    .filter_map(|v| v.display_name.as_deref())
                    .collect();
                Err(none_found(
                    Problem::error(
                        "lookup_not_found",
                        format!("no {what} named `{}` in VCN `{}`", l.display_name, l.vcn),
                    )
                    .at(&l.at, "none found"),
                    &l.display_name,
                    &names,
                    &format!("{whats} of VCN `{}`", l.vcn),
                ))
            }
            Err(found) => Err(several_found(
                Problem::error(
                    "lookup_ambiguous",
                    format!(
                        "{} {whats} named `{}` in VCN `{}`",
                        found.len(),
                        l.display_name,
                        l.vcn
                    ),
                )
                .at(&l.at, "several found"),
                found.iter().map(|v| v.id.as_str()),
            )),
        })
    }
}

/// The one item named `name`, or every one so named (none, or several).
fn one_named<'n>(items: &'n [Named], name: &str) -> Result<&'n Named, Vec<&'n Named>> {
    let found: Vec<&Named> = items
        .iter()
        .filter(|n| n.display_name.as_deref() == Some(name))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        _ => Err(found),
    }
}

fn none_found(p: Problem, name: &str, names: &[&str], of: &str) -> Problem {
    match did_you_mean(name, names.iter().copied()) {
        Some(s) => p.help(format!("did you mean `{s}`?")),
        None if names.is_empty() => p.help(format!("there are no {of}")),
        None => p.help(format!(
            "{of}: {}",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn several_found<'i>(p: Problem, ids: impl Iterator<Item = &'i str>) -> Problem {
    let ids: Vec<String> = ids.map(|i| format!("`{i}`")).collect();
    p.help(format!(
        "found {}: rename all but one in OCI, or give the OCID you mean",
        ids.join(" and ")
    ))
}

/// Problems once each (a `[defaults]` lookup is every instance's).
fn push_once(problems: &mut Vec<Problem>, p: Problem) {
    let same = |q: &Problem| q.message == p.message && q.at == p.at;
    if !problems.iter().any(same) {
        problems.push(p);
    }
}

/// What one resolution found, kept per (region, lookup span, compartment) so it runs once.
type Memo = HashMap<(Option<String>, Option<At>, String), Result<String, ()>>;

/// `manifest` with every lookup resolved, and the resolutions; or the problems, all at once.
pub async fn resolve(
    manifest: &Manifest,
    catalog: &mut Catalog<'_>,
) -> Result<Result<(Manifest, Vec<Resolved>), Vec<Problem>>, OciError> {
    let mut m = manifest.copy();
    let mut problems = Vec::new();
    let mut shown: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    let mut memo: Memo = HashMap::new();
    let mut record = |field: &str, lookup: String, id: &str, address: String| {
        shown
            .entry((field.to_string(), lookup, id.to_string()))
            .or_default()
            .push(address);
    };
    for spec in m.instances.values_mut() {
        let region = spec.region.clone();
        let address = spec.address.to_string();
        if let Some(p) = spec.lookups.compartment.clone() {
            let key = (region.clone(), Some(p.at.clone()), String::new());
            match memo.get(&key) {
                Some(Ok(id)) => spec.compartment = id.clone(),
                Some(Err(())) => {}
                None => match catalog.compartment(region.as_deref(), &p).await? {
                    Ok(id) => {
                        memo.insert(key, Ok(id.clone()));
                        spec.compartment = id;
                    }
                    Err(e) => {
                        memo.insert(key, Err(()));
                        push_once(&mut problems, e);
                    }
                },
            }
            if !crate::manifest::lookup::is_placeholder(&spec.compartment) {
                record(
                    "compartment",
                    format!("path {:?}", p.path()),
                    &spec.compartment,
                    address.clone(),
                );
            }
        }
        if crate::manifest::lookup::is_placeholder(&spec.compartment) {
            continue;
        }
        let mut wanted: Vec<(NetworkKind, Option<usize>, NetworkLookup)> = Vec::new();
        if let Some(l) = &spec.lookups.subnet {
            wanted.push((NetworkKind::Subnet, None, l.clone()));
        }
        for (i, l) in &spec.lookups.nsgs {
            wanted.push((NetworkKind::Nsg, Some(*i), l.clone()));
        }
        for (kind, index, l) in wanted {
            let key = (region.clone(), Some(l.at.clone()), spec.compartment.clone());
            let got = match memo.get(&key) {
                Some(r) => r.clone(),
                None => {
                    let r = match catalog
                        .network_lookup(region.as_deref(), kind, &l, &spec.compartment)
                        .await?
                    {
                        Ok(id) => Ok(id),
                        Err(e) => {
                            push_once(&mut problems, e);
                            Err(())
                        }
                    };
                    memo.insert(key, r.clone());
                    r
                }
            };
            let Ok(id) = got else { continue };
            match index {
                None => {
                    spec.subnet = id.clone();
                    record("subnet", l.describe(), &id, address.clone());
                }
                Some(i) => {
                    if let Some(slot) = spec.vnic.nsg_ids.as_mut().and_then(|n| n.get_mut(i)) {
                        *slot = id.clone();
                    }
                    record("nsg_ids", l.describe(), &id, address.clone());
                }
            }
        }
    }
    for spec in m.images.values_mut() {
        let Some(p) = spec.compartment_lookup.clone() else {
            continue;
        };
        let key = (spec.region.clone(), Some(p.at.clone()), String::new());
        let got = match memo.get(&key) {
            Some(r) => r.clone(),
            None => {
                let r = match catalog.compartment(spec.region.as_deref(), &p).await? {
                    Ok(id) => Ok(id),
                    Err(e) => {
                        push_once(&mut problems, e);
                        Err(())
                    }
                };
                memo.insert(key, r.clone());
                r
            }
        };
        if let Ok(id) = got {
            spec.compartment = id.clone();
            record(
                "compartment",
                format!("path {:?}", p.path()),
                &id,
                spec.address.to_string(),
            );
        }
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    let resolved = shown
        .into_iter()
        .map(|((field, lookup, id), addresses)| Resolved {
            field,
            lookup,
            id,
            addresses,
        })
        .collect();
    Ok(Ok((m, resolved)))
}

impl<'a> Catalog<'a> {
    /// The client of the region an OCID names.
    pub(super) fn clients_for_id(&self, id: &str) -> Result<&'a Client, OciError> {
        self.clients.for_id(id)
    }
}
