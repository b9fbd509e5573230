//! Plan-time checks of an image's `shapes` and `capabilities` (issue 24), for what the plan
//! creates or changes: an instance whose `shape` (or its OCPUs and memory) the image it launches
//! from is not compatible with — the image's declared `shapes`, or, for an image named by OCID,
//! its own entries read with ListImageShapeCompatibilityEntries — is a problem at the instance's
//! `shape` span, not OCI's 400 "Shape S is not valid for image I." at apply; a capability name
//! or value OCI's global image capability schema does not have (its current version, read with
//! ListComputeGlobalImageCapabilitySchemas and GetComputeGlobalImageCapabilitySchemaVersion) is a
//! problem at its span. Reads are made once per image (per region for the global schema), and
//! only for changes: a plan with no change makes none.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::manifest::diagnostic::Problem;
use crate::manifest::{InstanceSource, InstanceSpec, Manifest, Ref, ResourceKind};
use crate::oci::OciError;
use crate::suggest::did_you_mean;

use super::lookup::Catalog;
use super::{Action, Change, Kind};

/// A compatible shape: its name and OCPU / memory ranges.
struct Allowed {
    shape: String,
    ocpus: Option<(Option<f64>, Option<f64>)>,
    memory: Option<(Option<f64>, Option<f64>)>,
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The problems of `changes`, all at once.
pub async fn check(
    manifest: &Manifest,
    changes: &[Change],
    catalog: &mut Catalog<'_>,
) -> Result<Vec<Problem>, OciError> {
    let mut out = Vec::new();
    let mut entries: HashMap<String, Option<Vec<Allowed>>> = HashMap::new();
    let mut globals: HashMap<String, Map<String, Value>> = HashMap::new();
    for c in changes {
        let checked = matches!(
            c.action,
            Action::Create | Action::Replace | Action::Update | Action::Move
        );
        if !checked || c.deposed {
            continue;
        }
        match c.kind {
            Kind::Instance => {
                let Some(spec) = c
                    .address
                    .strip_prefix("instance.")
                    .and_then(|n| manifest.instances.get(n))
                else {
                    continue;
                };
                if let Some(p) = instance(manifest, spec, catalog, &mut entries).await? {
                    out.push(p);
                }
            }
            Kind::Image => {
                let Some(spec) = c
                    .address
                    .strip_prefix("image.")
                    .and_then(|n| manifest.images.get(n))
                else {
                    continue;
                };
                let Some(caps) = spec.capabilities.as_ref().filter(|c| !c.is_empty()) else {
                    continue;
                };
                let (client, region) = catalog.client(spec.region.as_deref())?;
                if !globals.contains_key(&region) {
                    let data = match client.global_capability_schema().await? {
                        Some(g) => match &g.current_version_name {
                            Some(v) => {
                                client
                                    .global_capability_schema_version(&g.id, v)
                                    .await?
                                    .schema_data
                            }
                            None => Map::new(),
                        },
                        None => Map::new(),
                    };
                    globals.insert(region.clone(), data);
                }
                let global = &globals[&region];
                for cap in caps {
                    let Some(d) = global.get(&cap.name) else {
                        let names: Vec<&str> = global.keys().map(String::as_str).collect();
                        let p = Problem::error(
                            "unknown_capability",
                            format!(
                                "`{}` has capability `{}`, which OCI's global image capability schema does not have",
                                spec.address, cap.name
                            ),
                        )
                        .at(&cap.key_at, "not in the global schema");
                        out.push(match did_you_mean(&cap.name, names.iter().copied()) {
                            Some(s) => p.help(format!("did you mean `{s}`?")),
                            None => p.help(format!("capabilities: {}", list(&names))),
                        });
                        continue;
                    };
                    let ok = match d["descriptorType"].as_str() {
                        Some("boolean") => cap.value.is_boolean(),
                        _ => d["values"]
                            .as_array()
                            .is_some_and(|v| v.contains(&cap.value)),
                    };
                    if !ok {
                        let allowed = match d["descriptorType"].as_str() {
                            Some("boolean") => "`true` or `false`".to_string(),
                            _ => d["values"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|v| match v {
                                    Value::String(s) => format!("`{s}`"),
                                    v => format!("`{v}`"),
                                })
                                .collect::<Vec<_>>()
                                .join(", "),
                        };
                        let shown = match &cap.value {
                            Value::String(s) => s.clone(),
                            v => v.to_string(),
                        };
                        out.push(
                            Problem::error(
                                "invalid_capability",
                                format!(
                                    "capability `{}` of `{}` cannot be `{shown}`",
                                    cap.name, spec.address
                                ),
                            )
                            .at(&cap.at, "not a value of the global schema")
                            .help(match d["descriptorType"].as_str() {
                                Some("boolean") => format!("`{}` is {allowed}", cap.name),
                                _ => format!("`{}` is one of {allowed}", cap.name),
                            }),
                        );
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The compatibility problem of one instance, if any.
async fn instance(
    manifest: &Manifest,
    spec: &InstanceSpec,
    catalog: &mut Catalog<'_>,
    entries: &mut HashMap<String, Option<Vec<Allowed>>>,
) -> Result<Option<Problem>, OciError> {
    let (allowed, of) = match &spec.source {
        InstanceSource::Image(Ref::Resource(a)) if a.kind == ResourceKind::Image => {
            let Some(shapes) = manifest.images.get(&a.name).and_then(|i| i.shapes.as_ref()) else {
                return Ok(None);
            };
            let f = |r: Option<(Option<u64>, Option<u64>)>| {
                r.map(|(l, h)| (l.map(|x| x as f64), h.map(|x| x as f64)))
            };
            let allowed = shapes
                .iter()
                .map(|s| Allowed {
                    shape: s.shape.clone(),
                    ocpus: f(s.ocpus),
                    memory: f(s.memory_in_gbs),
                })
                .collect::<Vec<_>>();
            (allowed, format!("`{a}`"))
        }
        InstanceSource::Image(Ref::Ocid(id)) => {
            if !entries.contains_key(id) {
                let read = match catalog.clients_for_id(id)?.list_image_shapes(id).await {
                    Ok(e) => Some(
                        e.into_iter()
                            .map(|e| Allowed {
                                shape: e.shape,
                                ocpus: e
                                    .ocpu_constraints
                                    .map(|c| (c.min.map(|x| x as f64), c.max.map(|x| x as f64))),
                                memory: e.memory_constraints.map(|c| {
                                    (
                                        c.min_in_gbs.map(|x| x as f64),
                                        c.max_in_gbs.map(|x| x as f64),
                                    )
                                }),
                            })
                            .collect(),
                    ),
                    // An image kiln cannot read is the other check's problem (`unknown_image`).
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e),
                };
                entries.insert(id.clone(), read);
            }
            match &entries[id] {
                Some(a) => (
                    a.iter()
                        .map(|x| Allowed {
                            shape: x.shape.clone(),
                            ocpus: x.ocpus,
                            memory: x.memory,
                        })
                        .collect(),
                    format!("image `{id}`"),
                ),
                None => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    let names: Vec<&str> = allowed.iter().map(|a| a.shape.as_str()).collect();
    let Some(a) = allowed.iter().find(|a| a.shape == spec.shape) else {
        let mut p = Problem::error(
            "incompatible_shape",
            format!(
                "`{}` launches on `{}`, which {of} is not compatible with",
                spec.address, spec.shape
            ),
        );
        if let Some(at) = &spec.spans.shape {
            p = p.at(at, "not among the image's shapes");
        }
        let help = match (
            &spec.source,
            did_you_mean(&spec.shape, names.iter().copied()),
        ) {
            (_, Some(s)) => format!("did you mean `{s}`?"),
            (InstanceSource::Image(Ref::Resource(_)), None) => format!(
                "add `{}` to {of}'s `shapes`, or use one of {}",
                spec.shape,
                list(&names)
            ),
            (_, None) => format!("the image's shapes: {}", list(&names)),
        };
        return Ok(Some(p.help(help)));
    };
    let cfg = spec.shape_config.as_ref();
    for (what, value, range) in [
        ("ocpus", cfg.and_then(|c| c.ocpus), a.ocpus),
        ("memory_in_gbs", cfg.and_then(|c| c.memory_in_gbs), a.memory),
    ] {
        let (Some(v), Some((lo, hi))) = (value, range) else {
            continue;
        };
        if lo.is_some_and(|l| v < l) || hi.is_some_and(|h| v > h) {
            let show = |b: Option<f64>| b.map(|x| x.to_string()).unwrap_or_else(|| "any".into());
            let mut p = Problem::error(
                "incompatible_shape",
                format!(
                    "`{}` has `shape_config.{what}` {v}, outside what {of} allows on `{}` ({} to {})",
                    spec.address,
                    spec.shape,
                    show(lo),
                    show(hi)
                ),
            );
            if let Some(at) = &spec.spans.shape {
                p = p.at(at, "the image does not allow this size");
            }
            return Ok(Some(p.help(format!(
                "choose `{what}` within the range, or widen the range in {of}'s `shapes`"
            ))));
        }
    }
    Ok(None)
}
