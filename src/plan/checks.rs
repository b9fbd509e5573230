//! Plan-time checks of what OCI would refuse at launch: each instance the plan creates or
//! changes has its `availability_domain` checked against ListAvailabilityDomains, its
//! `fault_domain` against ListFaultDomains and its `shape` against ListShapes (of its
//! compartment and availability domain), its image OCID with GetImage and its subnet OCID with
//! GetSubnet. A miss is a problem at the value's span with a did-you-mean, never a 400 at apply.
//!
//! Every read goes through the plan's [`Catalog`] (each list once per region, compartment and
//! domain; each OCID once), and only resources with a planned create, replace, update or move
//! are checked: a plan with no change makes none of these calls.
//!
//! Paths and parameters as oci-go-sdk v65 has them (`identity/list_availability_domains_request_response.go`,
//! `identity/list_fault_domains_request_response.go`, `core/list_shapes_request_response.go`,
//! `core/get_image_request_response.go`, `core/get_subnet_request_response.go`).

use std::collections::HashMap;

use crate::manifest::diagnostic::{At, Problem};
use crate::manifest::{InstanceSource, InstanceSpec, Manifest, Ref};
use crate::oci::catalog::NetworkKind;
use crate::oci::compute::ListImages;
use crate::oci::OciError;
use crate::suggest::{did_you_mean, did_you_mean_id};

use super::lookup::Catalog;
use super::{Action, Change, Kind};

/// A miss: `field` `value` is not among `names`.
fn miss(
    code: &'static str,
    message: String,
    at: Option<&At>,
    label: &str,
    value: &str,
    names: &[&str],
    of: &str,
) -> Problem {
    let mut p = Problem::error(code, message);
    if let Some(at) = at {
        p = p.at(at, label);
    }
    match did_you_mean(value, names.iter().copied()) {
        Some(s) => p.help(format!("did you mean `{s}`?")),
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

/// What the checks read besides the catalog's lists: whether an OCID exists, by OCID.
#[derive(Default)]
struct Seen {
    images: HashMap<String, bool>,
    subnets: HashMap<String, bool>,
    image_ids: HashMap<(String, String), Vec<String>>,
}

/// The problems of the instances `changes` create or change, all at once.
pub async fn check(
    manifest: &Manifest,
    changes: &[Change],
    catalog: &mut Catalog<'_>,
) -> Result<Vec<Problem>, OciError> {
    let mut problems: Vec<Problem> = Vec::new();
    let mut seen = Seen::default();
    let push = |p: Problem, problems: &mut Vec<Problem>| {
        if !problems
            .iter()
            .any(|q| q.message == p.message && q.at == p.at)
        {
            problems.push(p);
        }
    };
    for c in changes {
        let checked = matches!(
            c.action,
            Action::Create | Action::Replace | Action::Update | Action::Move
        );
        if c.kind != Kind::Instance || !checked || c.deposed {
            continue;
        }
        let Some(spec) = c
            .address
            .strip_prefix("instance.")
            .and_then(|n| manifest.instances.get(n))
        else {
            continue;
        };
        for p in check_one(spec, catalog, &mut seen).await? {
            push(p, &mut problems);
        }
    }
    Ok(problems)
}

async fn check_one(
    spec: &InstanceSpec,
    catalog: &mut Catalog<'_>,
    seen: &mut Seen,
) -> Result<Vec<Problem>, OciError> {
    let mut out = Vec::new();
    let region = spec.region.as_deref();
    let (client, r) = catalog.client(region)?;
    let comp = spec.compartment.clone();
    let s = &spec.spans;
    let key = (r.clone(), comp.clone());
    if !catalog.ads.contains_key(&key) {
        let ads = client.list_availability_domains(&comp).await?;
        catalog.ads.insert(key.clone(), ads);
    }
    let ads: Vec<&str> = catalog.ads[&key].iter().map(|d| d.name.as_str()).collect();
    let ad = spec.availability_domain.as_str();
    if !ads.contains(&ad) {
        out.push(miss(
            "unknown_availability_domain",
            format!("`availability_domain` `{ad}` is not an availability domain of {r}"),
            s.availability_domain.as_ref(),
            "not in ListAvailabilityDomains",
            ad,
            &ads,
            "availability domains there",
        ));
    } else {
        let key = (r.clone(), comp.clone(), ad.to_string());
        if spec.fault_domain.is_some() && !catalog.fds.contains_key(&key) {
            let fds = client.list_fault_domains(&comp, ad).await?;
            catalog.fds.insert(key.clone(), fds);
        }
        if let Some(fd) = &spec.fault_domain {
            let fds: Vec<&str> = catalog.fds[&key].iter().map(|d| d.name.as_str()).collect();
            if !fds.contains(&fd.as_str()) {
                out.push(miss(
                    "unknown_fault_domain",
                    format!("`fault_domain` `{fd}` is not a fault domain of `{ad}`"),
                    s.fault_domain.as_ref(),
                    "not in ListFaultDomains",
                    fd,
                    &fds,
                    "fault domains there",
                ));
            }
        }
        if !catalog.shapes.contains_key(&key) {
            let shapes = client.list_shapes(&comp, ad).await?;
            catalog.shapes.insert(key.clone(), shapes);
        }
        let shapes: Vec<&str> = catalog.shapes[&key]
            .iter()
            .map(|s| s.shape.as_str())
            .collect();
        if !shapes.contains(&spec.shape.as_str()) {
            out.push(miss(
                "unknown_shape",
                format!("`shape` `{}` is not a shape of `{ad}`", spec.shape),
                s.shape.as_ref(),
                "not in ListShapes",
                &spec.shape,
                &shapes,
                "shapes there",
            ));
        }
    }
    if let InstanceSource::Image(Ref::Ocid(id)) = &spec.source {
        if !seen.images.contains_key(id) {
            let found = match catalog.clients_for_id(id)?.get_image(id).await {
                Ok(_) => true,
                Err(e) if e.is_not_found() => false,
                Err(e) => return Err(e),
            };
            seen.images.insert(id.clone(), found);
        }
        if !seen.images[id] {
            let key = (r.clone(), comp.clone());
            if !seen.image_ids.contains_key(&key) {
                let ids = client
                    .list_images(&ListImages {
                        compartment_id: comp.clone(),
                        limit: Some(1000),
                        ..ListImages::default()
                    })
                    .await?
                    .into_iter()
                    .map(|i| i.id)
                    .collect();
                seen.image_ids.insert(key.clone(), ids);
            }
            let ids = &seen.image_ids[&key];
            let mut p = Problem::error(
                "unknown_image",
                format!("`source.image` `{id}` is not an image kiln can read (GetImage: 404)"),
            );
            if let Some(at) = &s.image {
                p = p.at(at, "no such image");
            }
            out.push(match did_you_mean_id(id, ids.iter().map(String::as_str)) {
                Some(m) => p.help(format!("did you mean `{m}`?")),
                None => p.help("copy the OCID from the console or `oci compute image list`, or use `image_lookup`"),
            });
        }
    }
    if spec.lookups.subnet.is_none() {
        let id = &spec.subnet;
        if !seen.subnets.contains_key(id) {
            let found = match catalog.clients_for_id(id)?.get_subnet(id).await {
                Ok(_) => true,
                Err(e) if e.is_not_found() => false,
                Err(e) => return Err(e),
            };
            seen.subnets.insert(id.clone(), found);
        }
        if !seen.subnets[id] {
            let subnets = catalog
                .network(region, NetworkKind::Subnet, &comp, None)
                .await?;
            let ids: Vec<&str> = subnets.iter().map(|n| n.id.as_str()).collect();
            let mut p = Problem::error(
                "unknown_subnet",
                format!("`subnet` `{id}` is not a subnet kiln can read (GetSubnet: 404)"),
            );
            if let Some(at) = &s.subnet {
                p = p.at(at, "no such subnet");
            }
            out.push(match did_you_mean_id(id, ids) {
                Some(m) => p.help(format!("did you mean `{m}`?")),
                None => p.help("copy the OCID from the console or `oci network subnet list`, or look it up by name: `subnet = { lookup = { vcn = \"...\", display_name = \"...\" } }`"),
            });
        }
    }
    Ok(out)
}
