//! What a plan reads from OCI: every managed resource in bulk (ListInstances per region and
//! compartment, every page; GetImage per image), the etags of what will change (a GetInstance or
//! GetImage each, for the executor's If-Match), and the newest image each `image_lookup` names.
//! [`super::refresh::make_plan`] decides when each runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;

use crate::oci::compute::{ListImages, ListInstances};
use crate::oci::{Clients, OciError};
use crate::state::RawJson;

use super::build::{LiveRead, Prior};
use super::desired::DesiredResource;
use super::from_manifest::IMAGE_LOOKUP;
use super::refresh::PlanError;
use super::{Action, Kind};

/// Read every managed resource: ListInstances per (region, compartment) — all pairs at once,
/// bounded by `parallelism` — and GetImage per image.
pub(super) async fn read_live(
    clients: &Clients,
    prior: &BTreeMap<String, Prior>,
    desired: &[DesiredResource],
    parallelism: usize,
) -> Result<HashMap<String, LiveRead>, OciError> {
    let by_addr: HashMap<&str, &DesiredResource> =
        desired.iter().map(|d| (d.address.as_str(), d)).collect();
    let mut image_ids = Vec::new();
    // Deposed objects: few, read one by one.
    let mut deposed_instances = Vec::new();
    for p in prior.values() {
        match p.kind {
            Some(Kind::Image) => image_ids.extend(p.deposed.iter().chain(&p.retained).cloned()),
            _ => deposed_instances.extend(p.deposed.iter().cloned()),
        }
    }
    // The state's instances, by id, with the text it recorded (a listed instance that reads the
    // same shares that text), and the (region, compartment) pairs they are in. (No other map of
    // the ids: at 10,000 instances every copy of them is MiBs at the plan's peak.)
    let mut pairs: BTreeSet<(Option<&str>, String)> = BTreeSet::new();
    let mut wanted: HashMap<String, RawJson> = HashMap::new();
    for (addr, p) in prior {
        let Some(id) = &p.id else { continue };
        if p.kind == Some(Kind::Image) {
            image_ids.push(id.clone());
            continue;
        }
        let compartment = p
            .attributes
            .top_str("compartmentId")
            .or_else(|| by_addr.get(addr.as_str()).map(|d| d.compartment.clone()))
            .unwrap_or_default();
        if !compartment.is_empty() {
            pairs.insert((crate::region::from_ocid(id), compartment));
        }
        wanted.insert(id.clone(), p.attributes.clone());
    }
    // Each page is kept as compact text as it arrives (only the state's instances), so no more
    // than the pages in flight are ever held parsed; pages are read on the blocking pool, so
    // those of several (region, compartment) pairs are parsed on all cores at once.
    let wanted = Arc::new(wanted);
    let lists: Vec<Vec<(String, LiveRead)>> = stream::iter(pairs)
        .map(|(region, c)| {
            let wanted = wanted.clone();
            async move {
                let client = clients.for_region(region)?;
                let req = ListInstances {
                    compartment_id: c,
                    limit: Some(1000),
                    ..Default::default()
                };
                let mut kept = Vec::new();
                let mut page: Option<String> = None;
                loop {
                    let r = client
                        .list_instances_page_raw(&req, page.as_deref())
                        .await?;
                    let (body, wanted) = (r.body, wanted.clone());
                    let page_kept =
                        tokio::task::spawn_blocking(move || instances_of_page(&body, &wanted))
                            .await
                            .expect("reading a page does not panic")?;
                    kept.extend(page_kept);
                    match r.opc_next_page {
                        Some(p) => page = Some(p),
                        None => break,
                    }
                }
                Ok::<_, OciError>(kept)
            }
        })
        .buffer_unordered(parallelism.max(1))
        .try_collect()
        .await?;
    let mut live: HashMap<String, LiveRead> = lists.into_iter().flatten().collect();
    // Instances not listed where state said (moved out of band): one Get each; 404 = gone.
    let mut unlisted: Vec<String> = wanted
        .keys()
        .filter(|id| !live.contains_key(*id))
        .cloned()
        .collect();
    unlisted.sort_unstable();
    let missing: Vec<String> = unlisted.into_iter().chain(deposed_instances).collect();
    let gets = stream::iter(
        missing
            .into_iter()
            .map(|id| (id, true))
            .chain(image_ids.into_iter().map(|id| (id, false))),
    )
    .map(|(id, is_instance)| async move {
        let kind = if is_instance {
            Kind::Instance
        } else {
            Kind::Image
        };
        Ok::<_, OciError>(get_live(clients, &id, kind).await?.map(|read| (id, read)))
    })
    .buffer_unordered(parallelism.max(1))
    .try_collect::<Vec<_>>()
    .await?;
    live.extend(gets.into_iter().flatten());
    // Images that declare `shapes` / `capabilities`: their entries and schema.
    super::image_caps::read(clients, prior, desired, &mut live).await?;
    Ok(live)
}

/// The instances of one ListInstances page that are `wanted`, each read as the model (what the
/// state records is in its form) one at a time and kept as compact text — the text `wanted` has
/// for it (the state's, shared) when they are the same.
fn instances_of_page(
    body: &[u8],
    wanted: &HashMap<String, RawJson>,
) -> Result<Vec<(String, LiveRead)>, OciError> {
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(body).map_err(|e| OciError::decode("ListInstances", e))?;
    let mut kept = Vec::new();
    for raw in items {
        let inst: crate::oci::models::Instance =
            serde_json::from_str(raw.get()).map_err(|e| OciError::decode("ListInstances", e))?;
        if let Some(recorded) = wanted.get(&inst.id) {
            let read = RawJson::of(&inst);
            let read = if read.text() == recorded.text() {
                recorded.clone()
            } else {
                read
            };
            kept.push((inst.id.clone(), LiveRead::new(read, None)));
        }
    }
    Ok(kept)
}

/// One resource read with a Get (`None`: gone). A 404 is read again before it is believed:
/// `NotAuthorizedOrNotFound` also answers a request OCI refused for another reason, and a
/// resource wrongly taken for gone would be created a second time.
async fn get_live(clients: &Clients, id: &str, kind: Kind) -> Result<Option<LiveRead>, OciError> {
    let client = clients.for_id(id)?;
    for _ in 0..2 {
        let r = match kind {
            Kind::Instance => client
                .get_instance(id)
                .await
                .map(|r| (RawJson::of(&r.body), r.etag)),
            Kind::Image => client
                .get_image(id)
                .await
                .map(|r| (RawJson::of(&r.body), r.etag)),
        };
        match r {
            Ok((body, etag)) => return Ok(Some(LiveRead::new(body, etag))),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Get (for its etag) every existing resource that a change will mutate.
pub(super) async fn read_etags(
    clients: &Clients,
    changes: &[super::Change],
    live: &mut HashMap<String, LiveRead>,
    parallelism: usize,
) -> Result<bool, OciError> {
    let wanted: BTreeSet<(String, Kind)> = changes
        .iter()
        .filter(|c| c.action != Action::Create)
        .filter_map(|c| c.id.clone().map(|id| (id, c.kind)))
        .filter(|(id, _)| live.get(id).is_some_and(|l| l.etag.is_none()))
        .collect();
    if wanted.is_empty() {
        return Ok(false);
    }
    let reads = stream::iter(wanted)
        .map(|(id, kind)| async move {
            let read = get_live(clients, &id, kind).await?;
            Ok::<_, OciError>((id, read))
        })
        .buffer_unordered(parallelism.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    for (id, read) in reads {
        match read {
            Some(r) => {
                live.insert(id, r);
            }
            None => {
                live.remove(&id);
            }
        }
    }
    Ok(true)
}

/// Replace `{"$image_lookup": …}` placeholders in create bodies with the newest matching image.
pub(super) async fn resolve_lookups(
    clients: &Clients,
    changes: &mut [super::Change],
    desired: &[DesiredResource],
) -> Result<(), PlanError> {
    let mut cache: HashMap<String, String> = HashMap::new();
    for c in changes
        .iter_mut()
        .filter(|c| matches!(c.action, Action::Create | Action::Replace))
    {
        // (Only a request that names a lookup is parsed.)
        let Some(mut req) = c
            .request
            .as_ref()
            .filter(|r| r.text().contains(IMAGE_LOOKUP))
            .map(|r| r.parse())
        else {
            continue;
        };
        let Some(criteria) = req
            .pointer("/sourceDetails/imageId")
            .and_then(|v| v.get(IMAGE_LOOKUP))
            .cloned()
        else {
            continue;
        };
        // Images are regional: one lookup per (region, criteria).
        let key = format!("{:?} {criteria}", c.region);
        let id = match cache.get(&key) {
            Some(id) => id.clone(),
            None => {
                let compartment = desired
                    .iter()
                    .find(|d| d.address == c.address)
                    .map(|d| d.compartment.clone())
                    .unwrap_or_default();
                let images = clients
                    .for_region(c.region.as_deref())?
                    .list_images_page(
                        &ListImages {
                            compartment_id: compartment,
                            operating_system: criteria["os"].as_str().map(str::to_string),
                            operating_system_version: criteria["version"]
                                .as_str()
                                .map(str::to_string),
                            shape: criteria["shape"].as_str().map(str::to_string),
                            lifecycle_state: Some("AVAILABLE".into()),
                            sort_by: Some("TIMECREATED".into()),
                            sort_order: Some("DESC".into()),
                            limit: Some(1),
                            ..Default::default()
                        },
                        None,
                    )
                    .await?;
                let id = images.body.first().map(|i| i.id.clone()).ok_or_else(|| {
                    PlanError::NoImage {
                        address: c.address.clone(),
                        criteria: criteria.to_string(),
                    }
                })?;
                cache.insert(key, id.clone());
                id
            }
        };
        req["sourceDetails"]["imageId"] = json!(id);
        c.request = Some(req.into());
        if let Some(attr) = c
            .attributes
            .iter_mut()
            .find(|a| a.path == "source.image_lookup")
        {
            attr.after = json!({ "lookup": criteria, "image": id });
        }
    }
    Ok(())
}
