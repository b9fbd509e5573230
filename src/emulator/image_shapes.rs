//! Image shape compatibility: the shapes an image may be launched on (AddImageShapeCompatibilityEntry,
//! GetImageShapeCompatibilityEntry, ListImageShapeCompatibilityEntries,
//! RemoveImageShapeCompatibilityEntry), and the check LaunchInstance and a boot volume replacement
//! make against them.
//!
//! Fields as oci-go-sdk v65's `core` models have them (vendored in oracle/terraform-provider-oci,
//! read with the `fetch` tool): `add_image_shape_compatibility_entry_details.go`
//! (`ocpuConstraints`, `memoryConstraints`), `image_shape_compatibility_entry.go` and
//! `image_shape_compatibility_summary.go` (`imageId`, `shape`, the two constraints),
//! `image_ocpu_constraints.go` (`min`, `max`), `image_memory_constraints.go` (`minInGBs`,
//! `maxInGBs`), the paths in `core_compute_client.go` (`PUT|GET|DELETE
//! /images/{imageId}/shapes/{shapeName}`, `GET /images/{imageId}/shapes`, paged with `limit` and
//! `page`; none takes an If-Match).
//!
//! An image no entry was ever added to or removed from is compatible with every shape of its
//! architecture (a platform image, and a custom image as its source instance's shape family gives
//! it: the emulator's catalogue has one family per architecture); the first Add or Remove writes
//! that set out and edits it (kept in the image record's `meta.shapes`). Platform images cannot be
//! edited (404, as UpdateImage). A launch on a shape outside the set, or outside an entry's OCPU
//! or memory range, is 400 `InvalidParameter` "Shape S is not valid for image I." — the answer
//! OCI gives (reported in oracle/terraform-provider-oci#2103 and hitrov/oci-arm-host-capacity#59).

use serde_json::{json, Map, Value};

use super::api::{error, not_found, parse_body, Ctx, Reply, Result};
use super::details::{self, F};
use super::list::{self, Key};
use super::shapes;
use super::store::Record;

const ADD_DETAILS: &[F] = &[
    F(
        "memoryConstraints",
        details::Kind::Obj(&[
            F("minInGBs", details::Kind::Int),
            F("maxInGBs", details::Kind::Int),
        ]),
    ),
    F(
        "ocpuConstraints",
        details::Kind::Obj(&[F("min", details::Kind::Int), F("max", details::Kind::Int)]),
    ),
];

/// The entries of an image: shape name → `{ocpuConstraints, memoryConstraints}` (each may be
/// null).
pub fn entries(rec: &Record) -> Map<String, Value> {
    if let Some(Value::Object(m)) = rec.meta.get("shapes") {
        return m.clone();
    }
    let arch = rec.meta_str("arch").unwrap_or("x86_64");
    shapes::CATALOGUE
        .iter()
        .filter(|s| s.arch.image_arch() == arch)
        .map(|s| {
            (
                s.name.to_string(),
                json!({ "ocpuConstraints": null, "memoryConstraints": null }),
            )
        })
        .collect()
}

fn entry_json(image_id: &str, shape: &str, e: &Value) -> Value {
    json!({
        "imageId": image_id,
        "shape": shape,
        "ocpuConstraints": e.get("ocpuConstraints").cloned().unwrap_or(Value::Null),
        "memoryConstraints": e.get("memoryConstraints").cloned().unwrap_or(Value::Null),
    })
}

/// A readable image (custom, not DELETED, or a platform image).
fn image<'c>(ctx: &'c Ctx<'_>, id: &str) -> Result<&'c Record> {
    ctx.image_any(id)
        .filter(|r| r.state() != "DELETED")
        .ok_or_else(|| not_found("image", id))
}

/// A custom image that can be edited.
fn image_mut<'c>(ctx: &'c mut Ctx<'_>, id: &str) -> Result<&'c mut Record> {
    if ctx.platform.iter().any(|r| r.id() == id) {
        return Err(error(404, "NotAuthorizedOrNotFound", format!("Authorization failed or requested resource not found: image `{id}` (platform images cannot be changed)")));
    }
    ctx.world
        .images
        .get_mut(id)
        .filter(|r| r.state() != "DELETED")
        .ok_or_else(|| not_found("image", id))
}

/// A `{min, max}` range given for `field`, checked against what the shape allows.
fn range(
    b: &Map<String, Value>,
    field: &str,
    (lo_k, hi_k): (&str, &str),
    allowed: (f64, f64),
    shape: &str,
) -> Result<Value> {
    let Some(c) = b.get(field).filter(|v| !v.is_null()) else {
        return Ok(Value::Null);
    };
    let lo = c.get(lo_k).and_then(Value::as_i64);
    let hi = c.get(hi_k).and_then(Value::as_i64);
    let bad = |m: String| error(400, "InvalidParameter", m);
    for (k, v) in [(lo_k, lo), (hi_k, hi)] {
        if let Some(v) = v {
            if (v as f64) < allowed.0 || (v as f64) > allowed.1 {
                return Err(bad(format!(
                    "`{field}.{k}` {v} is outside what shape `{shape}` allows ({} to {})",
                    allowed.0, allowed.1
                )));
            }
        }
    }
    if let (Some(l), Some(h)) = (lo, hi) {
        if l > h {
            return Err(bad(format!(
                "`{field}.{lo_k}` {l} is greater than `{field}.{hi_k}` {h}"
            )));
        }
    }
    Ok(json!({ lo_k: lo, hi_k: hi }))
}

/// AddImageShapeCompatibilityEntry: `PUT /images/{imageId}/shapes/{shapeName}` (adds or
/// replaces the entry).
pub fn add(ctx: &mut Ctx<'_>, id: &str, shape_name: &str, body: &[u8]) -> Result<Reply> {
    let b = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        parse_body(body)?
    };
    details::check(
        &b,
        ADD_DETAILS,
        "",
        "AddImageShapeCompatibilityEntryDetails",
    )?;
    let shape = shapes::known(shape_name)?;
    let rec = image_mut(ctx, id)?;
    let arch = rec.meta_str("arch").unwrap_or("x86_64");
    if shape.arch.image_arch() != arch {
        return Err(error(
            400,
            "InvalidParameter",
            format!(
                "shape `{}` ({}) cannot boot the {arch} image `{id}`",
                shape.name,
                shape.arch.image_arch()
            ),
        ));
    }
    let constrained = ["ocpuConstraints", "memoryConstraints"]
        .iter()
        .any(|k| b.get(*k).is_some_and(|v| !v.is_null()));
    let (ocpu, memory) = match shape.flex {
        None if constrained => {
            return Err(error(
                400,
                "InvalidParameter",
                format!("shape `{}` is not flexible: `ocpuConstraints` and `memoryConstraints` apply only to a flexible shape", shape.name),
            ))
        }
        None => (Value::Null, Value::Null),
        Some(f) => (
            range(&b, "ocpuConstraints", ("min", "max"), f.ocpus, shape.name)?,
            range(
                &b,
                "memoryConstraints",
                ("minInGBs", "maxInGBs"),
                f.memory,
                shape.name,
            )?,
        ),
    };
    let mut all = entries(rec);
    let e = json!({ "ocpuConstraints": ocpu, "memoryConstraints": memory });
    all.insert(shape.name.to_string(), e.clone());
    rec.meta.insert("shapes".into(), Value::Object(all));
    ctx.mutated = true;
    Ok(Reply::json(200, &entry_json(id, shape.name, &e)))
}

/// GetImageShapeCompatibilityEntry.
pub fn get(ctx: &mut Ctx<'_>, id: &str, shape: &str) -> Result<Reply> {
    let rec = image(ctx, id)?;
    let all = entries(rec);
    let e = all.get(shape).ok_or_else(|| {
        not_found(
            "image shape compatibility entry",
            &format!("{id}/shapes/{shape}"),
        )
    })?;
    Ok(Reply::json(200, &entry_json(id, shape, e)))
}

/// ListImageShapeCompatibilityEntries: by shape name, paged.
pub fn list(ctx: &mut Ctx<'_>, id: &str, query: &[(String, String)]) -> Result<Reply> {
    let rec = image(ctx, id)?;
    let items: Vec<(Key, Value)> = entries(rec)
        .iter()
        .map(|(s, e)| (Key::new(0, s.as_str(), s.as_str()), entry_json(id, s, e)))
        .collect();
    list::page(items, false, query)
}

/// RemoveImageShapeCompatibilityEntry: 204; an entry the image does not have is 404.
pub fn remove(ctx: &mut Ctx<'_>, id: &str, shape: &str) -> Result<Reply> {
    let rec = image_mut(ctx, id)?;
    let mut all = entries(rec);
    if all.remove(shape).is_none() {
        return Err(not_found(
            "image shape compatibility entry",
            &format!("{id}/shapes/{shape}"),
        ));
    }
    rec.meta.insert("shapes".into(), Value::Object(all));
    ctx.mutated = true;
    Ok(Reply::empty(204))
}

/// Whether `image` may be launched on `shape` with `config` (the instance's ShapeConfig:
/// `ocpus`, `memoryInGBs`): 400 `InvalidParameter` as OCI answers when not.
pub fn check_launch(image: &Record, shape: &str, config: &Value) -> Result<()> {
    let refuse = || {
        error(
            400,
            "InvalidParameter",
            format!("Shape {shape} is not valid for image {}.", image.id()),
        )
    };
    let all = entries(image);
    let e = all.get(shape).ok_or_else(refuse)?;
    let within = |c: &Value, (lo, hi): (&str, &str), v: Option<f64>| {
        let Some(v) = v else { return true };
        c.get(lo).and_then(Value::as_f64).is_none_or(|l| v >= l)
            && c.get(hi).and_then(Value::as_f64).is_none_or(|h| v <= h)
    };
    let ocpus = config.get("ocpus").and_then(Value::as_f64);
    let memory = config.get("memoryInGBs").and_then(Value::as_f64);
    if !within(&e["ocpuConstraints"], ("min", "max"), ocpus)
        || !within(&e["memoryConstraints"], ("minInGBs", "maxInGBs"), memory)
    {
        return Err(refuse());
    }
    Ok(())
}
