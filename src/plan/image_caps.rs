//! An image's `shapes` and `capabilities` (issue 24) as the planner sees them: desired attributes
//! diffed key by key against what refresh reads live — the image's shape compatibility entries
//! (ListImageShapeCompatibilityEntries) and its capability schema
//! (ListComputeImageCapabilitySchemas, GetComputeImageCapabilitySchema), read only for images
//! that declare them, and kept in the live JSON under synthetic `$`-keys that OCI's Image model
//! never has ([`SHAPES`], [`SHAPE_NAMES`], [`CAPABILITIES`], [`CAPABILITY_NAMES`]).
//!
//! Each declared shape is one attribute (`shapes["VM.Standard.E5.Flex"]`, its OCPU and memory
//! ranges), each capability one (`capabilities["Compute.Firmware"]`), and the two name lists one
//! each (so an entry OCI has and the manifest dropped shows as a removal). A change is applied in
//! place by the executor (`apply::image_caps`), after the image is AVAILABLE: the update body
//! carries the whole desired set under [`SHAPES_UPDATE`] / [`CAPABILITIES_UPDATE`], as a create
//! body does, and the executor adds and removes only the entries that differ.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use crate::manifest::image_caps::{Capability, ImageShape};
use crate::manifest::ImageSpec;
use crate::oci::image_caps::ShapeEntry;
use crate::oci::{Clients, OciError};

use super::build::{LiveRead, Prior};
use super::desired::{DesiredAttr, DesiredResource, DesiredValue, Lookup};
use super::AttrClass;

/// Live key: shape name → `{ocpus, memory_in_gbs}`.
pub const SHAPES: &str = "$shapes";
/// Live key: the shape names, sorted.
pub const SHAPE_NAMES: &str = "$shapeNames";
/// Live key: capability name → value.
pub const CAPABILITIES: &str = "$capabilities";
/// Live key: the capability names, sorted.
pub const CAPABILITY_NAMES: &str = "$capabilityNames";
/// Update / create body key: the desired shapes, whole.
pub const SHAPES_UPDATE: &str = "$imageShapes";
/// Update / create body key: the desired capabilities, whole.
pub const CAPABILITIES_UPDATE: &str = "$imageCapabilities";

fn range(r: Option<(Option<u64>, Option<u64>)>) -> Value {
    match r {
        None => Value::Null,
        Some((min, max)) => json!({ "min": min, "max": max }),
    }
}

/// The desired entry of one shape.
fn shape_value(s: &ImageShape) -> Value {
    json!({ "ocpus": range(s.ocpus), "memory_in_gbs": range(s.memory_in_gbs) })
}

/// The live entry of one compatibility entry, in the same form.
fn entry_value(e: &ShapeEntry) -> Value {
    let ocpus = e
        .ocpu_constraints
        .as_ref()
        .map(|c| json!({ "min": c.min, "max": c.max }))
        .unwrap_or(Value::Null);
    let memory = e
        .memory_constraints
        .as_ref()
        .map(|c| json!({ "min": c.min_in_gbs, "max": c.max_in_gbs }))
        .unwrap_or(Value::Null);
    json!({ "ocpus": ocpus, "memory_in_gbs": memory })
}

/// A capability's value as a descriptor of an image schema: the one value it pins (source
/// `IMAGE`, the only value, and the default).
pub fn descriptor(v: &Value) -> Value {
    match v {
        Value::Bool(b) => {
            json!({ "descriptorType": "boolean", "source": "IMAGE", "defaultValue": b })
        }
        Value::Number(_) => {
            json!({ "descriptorType": "enuminteger", "source": "IMAGE", "values": [v], "defaultValue": v })
        }
        _ => {
            json!({ "descriptorType": "enumstring", "source": "IMAGE", "values": [v], "defaultValue": v })
        }
    }
}

/// A live descriptor as the manifest would write it: the pinned value, or the descriptor itself
/// when it allows more than one (so it differs from any value).
fn descriptor_value(d: &Value) -> Value {
    match d["descriptorType"].as_str() {
        Some("boolean") => d["defaultValue"].clone(),
        _ => match d["values"].as_array() {
            Some(v)
                if v.len() == 1 && (d["defaultValue"].is_null() || d["defaultValue"] == v[0]) =>
            {
                v[0].clone()
            }
            _ => d.clone(),
        },
    }
}

fn live_attr(path: String, keys: &[&str], value: Value) -> DesiredAttr {
    DesiredAttr {
        path,
        lookup: Lookup::Live(keys.iter().map(|k| k.to_string()).collect()),
        value: DesiredValue::Known(value),
        class: AttrClass::Update,
        why: None,
    }
}

/// The attributes of an image's `shapes` and `capabilities`, and what its create body carries
/// for the executor to apply once the image is AVAILABLE.
pub fn desired(spec: &ImageSpec, attrs: &mut Vec<DesiredAttr>, body: &mut Map<String, Value>) {
    if let Some(shapes) = &spec.shapes {
        let mut names: Vec<&str> = shapes.iter().map(|s| s.shape.as_str()).collect();
        names.sort_unstable();
        attrs.push(live_attr("shapes".into(), &[SHAPE_NAMES], json!(names)));
        let mut whole = Map::new();
        for s in shapes {
            attrs.push(live_attr(
                format!("shapes[\"{}\"]", s.shape),
                &[SHAPES, &s.shape],
                shape_value(s),
            ));
            whole.insert(s.shape.clone(), shape_value(s));
        }
        body.insert(SHAPES_UPDATE.into(), Value::Object(whole));
    }
    if let Some(caps) = &spec.capabilities {
        let mut names: Vec<&str> = caps.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        attrs.push(live_attr(
            "capabilities".into(),
            &[CAPABILITY_NAMES],
            json!(names),
        ));
        let mut whole = Map::new();
        for Capability { name, value, .. } in caps {
            attrs.push(live_attr(
                format!("capabilities[\"{name}\"]"),
                &[CAPABILITIES, name],
                value.clone(),
            ));
            whole.insert(name.clone(), value.clone());
        }
        body.insert(CAPABILITIES_UPDATE.into(), Value::Object(whole));
    }
}

/// The update body's part for a changed attribute under the synthetic live key `top`: the whole
/// desired set, under its update key (`None`: `top` is not one of this module's).
pub fn update_part(desired: &DesiredResource, top: &str) -> Option<(&'static str, Value)> {
    let (key, names, values) = match top {
        SHAPES | SHAPE_NAMES => (SHAPES_UPDATE, SHAPE_NAMES, SHAPES),
        CAPABILITIES | CAPABILITY_NAMES => (CAPABILITIES_UPDATE, CAPABILITY_NAMES, CAPABILITIES),
        _ => return None,
    };
    let mut whole = Map::new();
    let declared = desired
        .attrs
        .iter()
        .any(|a| matches!(&a.lookup, Lookup::Live(p) if p[0] == names));
    for a in &desired.attrs {
        if let (Lookup::Live(p), DesiredValue::Known(v)) = (&a.lookup, &a.value) {
            if p.len() == 2 && p[0] == values {
                whole.insert(p[1].clone(), v.clone());
            }
        }
    }
    declared.then(|| (key, Value::Object(whole)))
}

/// Whether a desired image declares `shapes` / `capabilities`.
fn declares(d: &DesiredResource) -> (bool, bool) {
    let has = |k: &str| {
        d.attrs
            .iter()
            .any(|a| matches!(&a.lookup, Lookup::Live(p) if p[0] == k))
    };
    (has(SHAPE_NAMES), has(CAPABILITY_NAMES))
}

/// Add to the live JSON of each AVAILABLE image that declares them its compatibility entries and
/// capability values (an image that does not declare them makes no call).
pub(super) async fn read(
    clients: &Clients,
    prior: &BTreeMap<String, Prior>,
    desired: &[DesiredResource],
    live: &mut HashMap<String, LiveRead>,
) -> Result<(), OciError> {
    for d in desired {
        let (shapes, caps) = declares(d);
        if !shapes && !caps {
            continue;
        }
        let Some(id) = prior.get(&d.address).and_then(|p| p.id.clone()) else {
            continue;
        };
        let Some(read) = live.get(&id) else { continue };
        if read.body.top_str("lifecycleState").as_deref() != Some("AVAILABLE") {
            continue;
        }
        let mut body = read.body.parse();
        let client = clients.for_id(&id)?;
        if shapes {
            let entries = client.list_image_shapes(&id).await?;
            let mut names: Vec<&str> = entries.iter().map(|e| e.shape.as_str()).collect();
            names.sort_unstable();
            body[SHAPE_NAMES] = json!(names);
            body[SHAPES] = Value::Object(
                entries
                    .iter()
                    .map(|e| (e.shape.clone(), entry_value(e)))
                    .collect(),
            );
        }
        if caps {
            let compartment = body["compartmentId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let schema = client.image_capability_schema(&compartment, &id).await?;
            let data = schema.map(|(s, _)| s.schema_data).unwrap_or_default();
            let mut names: Vec<&str> = data.keys().map(String::as_str).collect();
            names.sort_unstable();
            body[CAPABILITY_NAMES] = json!(names);
            body[CAPABILITIES] = Value::Object(
                data.iter()
                    .map(|(k, v)| (k.clone(), descriptor_value(v)))
                    .collect(),
            );
        }
        let etag = read.etag.clone();
        live.insert(id, LiveRead::from_value(&body, etag));
    }
    Ok(())
}
