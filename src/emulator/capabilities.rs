//! Image capabilities: the global image capability schema and its versions (what OCI publishes:
//! ListComputeGlobalImageCapabilitySchemas, GetComputeGlobalImageCapabilitySchema,
//! ListComputeGlobalImageCapabilitySchemaVersions, GetComputeGlobalImageCapabilitySchemaVersion)
//! and the capability schema of a custom image (Create, Get, List, Update, Delete
//! ComputeImageCapabilitySchema; Update and Delete take an If-Match).
//!
//! Fields as oci-go-sdk v65's `core` models have them (vendored in oracle/terraform-provider-oci):
//! `compute_global_image_capability_schema{,_summary}.go`,
//! `compute_global_image_capability_schema_version{,_summary}.go`,
//! `compute_image_capability_schema{,_summary}.go` (lifecycle CREATING / ACTIVE / DELETED),
//! `create_compute_image_capability_schema_details.go`,
//! `update_compute_image_capability_schema_details.go`, and the descriptors
//! `image_capability_schema_descriptor.go` (`descriptorType` `enumstring` | `enuminteger` |
//! `boolean`, `source` `GLOBAL` | `IMAGE`), `enum_string_image_capability_schema_descriptor.go`,
//! `enum_integer_image_capability_descriptor.go`, `boolean_image_capability_schema_descriptor.go`;
//! paths and query parameters from `core_compute_client.go` and the `*_request_response.go` files
//! (GetComputeImageCapabilitySchema takes the schema's id or the image's, and `isMergeEnabled`).
//!
//! The descriptor set of the current global version is the one Oracle's "Editing Image
//! Capabilities for Custom Images" page documents (docs.oracle.com/iaas/Content/Compute/Tasks/
//! configuringimagecapabilities.htm: "the full set of image capabilities … defined in the global
//! image capability schema"), as a public script that creates image schemas from it spells its
//! names, values and defaults (Compute.Firmware BIOS | UEFI_64, Compute.LaunchMode,
//! Compute.SecureBoot, Network.AttachmentType, Storage.BootVolumeType, …). The version names and
//! the older version's smaller set are the emulator's own.

use serde_json::{json, Map, Value};

use super::api::{
    error, etag_matches, new_ocid, not_found, oracle_tags, parse_body, q, required, str_field,
    string_map, Ctx, Reply, Result,
};
use super::details::{self, F};
use super::list::{self, Key};
use super::store::{rfc3339, Record};

/// The one global schema's OCID (OCI's is tenancy-independent, in no region).
pub const GLOBAL_ID: &str =
    "ocid1.computeglobalimgcapschema.oc1..aaaaaaaakilnglobalcapabilityschema000000000000000000";
/// Its versions, oldest first; the last is current.
const VERSIONS: &[(&str, &str)] = &[
    ("2020-10-01", "2020-10-01T00:00:00.000Z"),
    ("2024-06-01", "2024-06-01T00:00:00.000Z"),
];

const VOLUME_TYPES: &[&str] = &["ISCSI", "PARAVIRTUALIZED", "SCSI", "IDE", "NVME"];

fn enumstring(values: &[&str], default: &str) -> Value {
    json!({ "descriptorType": "enumstring", "source": "GLOBAL", "values": values, "defaultValue": default })
}

fn boolean(default: bool) -> Value {
    json!({ "descriptorType": "boolean", "source": "GLOBAL", "defaultValue": default })
}

/// The descriptors of a global version (`None`: no such version).
pub fn version_data(name: &str) -> Option<Map<String, Value>> {
    let newest = name == VERSIONS[1].0;
    if !newest && name != VERSIONS[0].0 {
        return None;
    }
    let mut d = Map::new();
    d.insert(
        "Compute.Firmware".into(),
        enumstring(&["BIOS", "UEFI_64"], "UEFI_64"),
    );
    d.insert(
        "Compute.LaunchMode".into(),
        enumstring(
            &["NATIVE", "EMULATED", "PARAVIRTUALIZED", "CUSTOM"],
            "PARAVIRTUALIZED",
        ),
    );
    d.insert("Compute.SecureBoot".into(), boolean(false));
    d.insert(
        "Network.AttachmentType".into(),
        enumstring(&["VFIO", "PARAVIRTUALIZED", "E1000"], "PARAVIRTUALIZED"),
    );
    for k in [
        "Storage.BootVolumeType",
        "Storage.LocalDataVolumeType",
        "Storage.RemoteDataVolumeType",
    ] {
        d.insert(k.into(), enumstring(VOLUME_TYPES, "PARAVIRTUALIZED"));
    }
    d.insert("Storage.ConsistentVolumeNaming".into(), boolean(true));
    d.insert(
        "Storage.Iscsi.MultipathDeviceSupported".into(),
        boolean(false),
    );
    d.insert(
        "Storage.ParaVirtualization.AttachmentVersion".into(),
        json!({ "descriptorType": "enuminteger", "source": "GLOBAL", "values": [1, 2], "defaultValue": 2 }),
    );
    d.insert(
        "Storage.ParaVirtualization.EncryptionInTransit".into(),
        boolean(true),
    );
    if newest {
        // Added since: VDPA, IPv6-only networking, AMD SEV.
        d.insert(
            "Compute.LaunchMode".into(),
            enumstring(
                &["NATIVE", "EMULATED", "VDPA", "PARAVIRTUALIZED", "CUSTOM"],
                "PARAVIRTUALIZED",
            ),
        );
        d.insert(
            "Network.AttachmentType".into(),
            enumstring(
                &["VFIO", "PARAVIRTUALIZED", "E1000", "VDPA"],
                "PARAVIRTUALIZED",
            ),
        );
        d.insert("Network.IPv6Only".into(), boolean(false));
        d.insert(
            "Compute.AMD_SecureEncryptedVirtualization".into(),
            boolean(false),
        );
    }
    Some(d)
}

fn global_json() -> Value {
    json!({
        "id": GLOBAL_ID,
        "compartmentId": null,
        "displayName": "OCI.ComputeGlobalImageCapabilitySchema",
        "currentVersionName": VERSIONS[VERSIONS.len() - 1].0,
        "timeCreated": VERSIONS[0].1,
        "freeformTags": {},
        "definedTags": {},
    })
}

fn version_json(name: &str, created: &str, full: bool) -> Value {
    let mut v = json!({
        "name": name,
        "computeGlobalImageCapabilitySchemaId": GLOBAL_ID,
        "displayName": format!("OCI.ComputeGlobalImageCapabilitySchema {name}"),
        "timeCreated": created,
    });
    if full {
        v["schemaData"] = Value::Object(version_data(name).unwrap_or_default());
    }
    v
}

/// A fixed etag for the published (immutable) global objects.
fn global_etag(what: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(what.as_bytes());
    h[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// ListComputeGlobalImageCapabilitySchemas.
pub fn list_global(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    if let Some(c) = q(query, "compartmentId") {
        ctx.check_compartment(c, "compartmentId")?;
    }
    let g = global_json();
    let items = if q(query, "displayName").is_none_or(|d| g["displayName"] == d) {
        vec![g]
    } else {
        Vec::new()
    };
    list::sorted_page(items, query, "TIMECREATED")
}

/// GetComputeGlobalImageCapabilitySchema.
pub fn get_global(id: &str) -> Result<Reply> {
    if id != GLOBAL_ID {
        return Err(not_found("compute global image capability schema", id));
    }
    Ok(Reply::json(200, &global_json()).header("etag", global_etag(GLOBAL_ID)))
}

/// ListComputeGlobalImageCapabilitySchemaVersions (summaries: no `schemaData`).
pub fn list_versions(id: &str, query: &[(String, String)]) -> Result<Reply> {
    if id != GLOBAL_ID {
        return Err(not_found("compute global image capability schema", id));
    }
    let items = VERSIONS
        .iter()
        .map(|(n, t)| version_json(n, t, false))
        .filter(|v| q(query, "displayName").is_none_or(|d| v["displayName"] == d))
        .collect();
    list::sorted_page(items, query, "TIMECREATED")
}

/// GetComputeGlobalImageCapabilitySchemaVersion.
pub fn get_version(id: &str, name: &str) -> Result<Reply> {
    let found = VERSIONS.iter().find(|(n, _)| *n == name);
    match found {
        Some((n, t)) if id == GLOBAL_ID => Ok(Reply::json(200, &version_json(n, t, true))
            .header("etag", global_etag(&format!("{GLOBAL_ID}/{n}")))),
        _ => Err(not_found(
            "compute global image capability schema version",
            &format!("{id}/versions/{name}"),
        )),
    }
}

/// Check an image schema's `schemaData` against the global version's descriptors: every name
/// must be one of them, of the same descriptor type, its values a non-empty subset of the
/// global values, its default one of its values.
fn check_schema_data(data: &Map<String, Value>, version: &str) -> Result<()> {
    let global = version_data(version).unwrap_or_default();
    let bad = |m: String| error(400, "InvalidParameter", m);
    for (name, d) in data {
        let path = format!("schemaData.{name}");
        let Some(g) = global.get(name) else {
            return Err(bad(format!(
                "`{path}`: `{name}` is not a capability of global schema version `{version}`"
            )));
        };
        let Some(o) = d.as_object() else {
            return Err(bad(format!("`{path}` must be an object")));
        };
        let ty = o
            .get("descriptorType")
            .and_then(Value::as_str)
            .unwrap_or("");
        let spec: &[F] = match ty {
            "enumstring" => &[
                F("descriptorType", details::Kind::Str),
                F("source", details::Kind::Enum(&["GLOBAL", "IMAGE"])),
                F("values", details::Kind::StrList),
                F("defaultValue", details::Kind::Str),
            ],
            "enuminteger" => &[
                F("descriptorType", details::Kind::Str),
                F("source", details::Kind::Enum(&["GLOBAL", "IMAGE"])),
                F("values", details::Kind::Any),
                F("defaultValue", details::Kind::Int),
            ],
            "boolean" => &[
                F("descriptorType", details::Kind::Str),
                F("source", details::Kind::Enum(&["GLOBAL", "IMAGE"])),
                F("defaultValue", details::Kind::Bool),
            ],
            other => {
                return Err(bad(format!(
                    "`{path}.descriptorType` `{other}` is not enumstring, enuminteger or boolean"
                )))
            }
        };
        if ty == "enuminteger" {
            // `values` is a list of integers (Any admits objects only; check it here).
            let ok = o
                .get("values")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().all(|v| v.is_i64() || v.is_u64()));
            if !ok {
                return Err(bad(format!("`{path}.values` must be a list of integers")));
            }
            let mut rest = o.clone();
            rest.remove("values");
            details::check(
                &rest,
                spec,
                &format!("{path}."),
                "ImageCapabilitySchemaDescriptor",
            )?;
        } else {
            details::check(
                o,
                spec,
                &format!("{path}."),
                "ImageCapabilitySchemaDescriptor",
            )?;
        }
        if o.get("source").is_none_or(Value::is_null) {
            return Err(bad(format!("`{path}.source` is required")));
        }
        if g["descriptorType"] != ty {
            return Err(bad(format!(
                "`{path}.descriptorType` is `{ty}`; the global schema's `{name}` is `{}`",
                g["descriptorType"].as_str().unwrap_or("")
            )));
        }
        if ty == "boolean" {
            continue;
        }
        let allowed = g["values"].as_array().cloned().unwrap_or_default();
        let values = match o.get("values").and_then(Value::as_array) {
            Some(v) if !v.is_empty() => v.clone(),
            _ => return Err(bad(format!("`{path}.values` must list at least one value"))),
        };
        if let Some(v) = values.iter().find(|v| !allowed.contains(v)) {
            return Err(bad(format!(
                "`{path}.values`: {v} is not a value of the global schema's `{name}` ({})",
                allowed
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(d) = o.get("defaultValue").filter(|d| !d.is_null()) {
            if !values.contains(d) {
                return Err(bad(format!(
                    "`{path}.defaultValue` {d} is not one of `{path}.values`"
                )));
            }
        }
    }
    Ok(())
}

const CREATE: &[F] = &[
    F("compartmentId", details::Kind::Str),
    F(
        "computeGlobalImageCapabilitySchemaVersionName",
        details::Kind::Str,
    ),
    F("imageId", details::Kind::Str),
    F("schemaData", details::Kind::Any),
    F("freeformTags", details::Kind::StrMap),
    F("displayName", details::Kind::Str),
    F("definedTags", details::Kind::Tags),
];

const UPDATE: &[F] = &[
    F("displayName", details::Kind::Str),
    F("freeformTags", details::Kind::StrMap),
    F("schemaData", details::Kind::Any),
    F("definedTags", details::Kind::Tags),
];

/// CreateComputeImageCapabilitySchema: one schema per custom image (a second is 409).
pub fn create(ctx: &mut Ctx<'_>, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    details::check(&b, CREATE, "", "CreateComputeImageCapabilitySchemaDetails")?;
    let compartment = required(&b, "compartmentId")?.to_string();
    ctx.check_compartment(&compartment, "compartmentId")?;
    let version = required(&b, "computeGlobalImageCapabilitySchemaVersionName")?.to_string();
    if version_data(&version).is_none() {
        return Err(error(
            400,
            "InvalidParameter",
            format!("`computeGlobalImageCapabilitySchemaVersionName` `{version}` is not a version of the global image capability schema"),
        ));
    }
    let image_id = required(&b, "imageId")?.to_string();
    let data = b
        .get("schemaData")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| error(400, "MissingParameter", "`schemaData` is required"))?;
    check_schema_data(&data, &version)?;
    let defined = ctx.defined_tags(&b)?;
    if ctx.platform.iter().any(|r| r.id() == image_id)
        || ctx
            .world
            .images
            .get(&image_id)
            .is_none_or(|r| r.state() == "DELETED")
    {
        return Err(error(
            404,
            "NotAuthorizedOrNotFound",
            format!("Authorization failed or requested resource not found: image `{image_id}` (a capability schema is for a custom image)"),
        ));
    }
    if let Some(other) = ctx
        .world
        .capability_schemas
        .values()
        .find(|r| r.str("imageId") == image_id)
    {
        return Err(error(
            409,
            "Conflict",
            format!(
                "image `{image_id}` already has capability schema `{}`",
                other.id()
            ),
        ));
    }
    let id = new_ocid("computeimgcapschema", ctx.region_code);
    let body = json!({
        "id": id,
        "compartmentId": compartment,
        "computeGlobalImageCapabilitySchemaId": GLOBAL_ID,
        "computeGlobalImageCapabilitySchemaVersionName": version,
        "imageId": image_id,
        "displayName": str_field(&b, "displayName")?.map(str::to_string).unwrap_or_else(|| format!("computeimagecapabilityschema{}", ctx.now.format("%Y%m%d%H%M%S"))),
        "schemaData": data,
        "lifecycleState": "ACTIVE",
        "freeformTags": string_map(&b, "freeformTags")?.unwrap_or_default(),
        "definedTags": oracle_tags(ctx.key_id, ctx.now, defined),
        "timeCreated": rfc3339(ctx.now),
    });
    let rec = Record::new(body.as_object().expect("object").clone());
    let reply = Ctx::reply_record(&rec, 200);
    ctx.world.capability_schemas.insert(id, rec);
    ctx.mutated = true;
    Ok(reply)
}

/// The schema an id names: its own, or (GetComputeImageCapabilitySchema accepts either) its image's.
fn find_id(ctx: &Ctx<'_>, id: &str) -> Result<String> {
    if ctx.world.capability_schemas.contains_key(id) {
        return Ok(id.to_string());
    }
    ctx.world
        .capability_schemas
        .values()
        .find(|r| r.str("imageId") == id)
        .map(|r| r.id().to_string())
        .ok_or_else(|| not_found("compute image capability schema", id))
}

/// GetComputeImageCapabilitySchema; `isMergeEnabled=true` fills in the global version's
/// descriptors the image's schema does not name.
pub fn get(ctx: &mut Ctx<'_>, id: &str, query: &[(String, String)]) -> Result<Reply> {
    let key = find_id(ctx, id)?;
    let rec = &ctx.world.capability_schemas[&key];
    let mut reply = Ctx::reply_record(rec, 200);
    if q(query, "isMergeEnabled") == Some("true") {
        let mut body = rec.body.clone();
        let version = rec.str("computeGlobalImageCapabilitySchemaVersionName");
        let mut merged = version_data(version).unwrap_or_default();
        if let Some(Value::Object(own)) = body.get("schemaData") {
            for (k, v) in own {
                merged.insert(k.clone(), v.clone());
            }
        }
        body.insert("schemaData".into(), Value::Object(merged));
        reply = Reply::json(200, &Value::Object(body)).header("etag", rec.etag());
    }
    Ok(reply)
}

/// ListComputeImageCapabilitySchemas (by compartment, image, display name).
pub fn list(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    if let Some(c) = q(query, "compartmentId") {
        ctx.check_compartment(c, "compartmentId")?;
    }
    let (field, desc) = list::sort_spec(query, "TIMECREATED")?;
    let items: Vec<(Key, &Record)> = ctx
        .world
        .capability_schemas
        .values()
        .filter(|r| q(query, "compartmentId").is_none_or(|c| r.str("compartmentId") == c))
        .filter(|r| q(query, "imageId").is_none_or(|i| r.str("imageId") == i))
        .filter(|r| q(query, "displayName").is_none_or(|d| r.str("displayName") == d))
        .map(|r| (Key::of_map(0, &r.body, field), r))
        .collect();
    list::page_with(items, desc, query, |r| {
        let mut s = r.body.clone();
        s.remove("computeGlobalImageCapabilitySchemaId");
        s.remove("lifecycleState");
        Value::Object(s)
    })
}

/// UpdateComputeImageCapabilitySchema (If-Match).
pub fn update(ctx: &mut Ctx<'_>, id: &str, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    details::check(&b, UPDATE, "", "UpdateComputeImageCapabilitySchemaDetails")?;
    let defined = ctx.defined_tags(&b)?;
    let if_match = ctx.if_match.clone();
    let rec = ctx
        .world
        .capability_schemas
        .get_mut(id)
        .ok_or_else(|| not_found("compute image capability schema", id))?;
    etag_matches(&if_match, rec)?;
    if let Some(Value::Object(data)) = b.get("schemaData") {
        check_schema_data(
            data,
            rec.str("computeGlobalImageCapabilitySchemaVersionName"),
        )?;
        rec.body
            .insert("schemaData".into(), Value::Object(data.clone()));
    }
    if let Some(d) = str_field(&b, "displayName")? {
        rec.body.insert("displayName".into(), json!(d));
    }
    if let Some(t) = string_map(&b, "freeformTags")? {
        rec.body.insert("freeformTags".into(), Value::Object(t));
    }
    if let Some(t) = defined {
        rec.body.insert("definedTags".into(), Value::Object(t));
    }
    rec.touch();
    let reply = Ctx::reply_record(rec, 200);
    ctx.mutated = true;
    Ok(reply)
}

/// DeleteComputeImageCapabilitySchema (If-Match): 204.
pub fn delete(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    let if_match = ctx.if_match.clone();
    let rec = ctx
        .world
        .capability_schemas
        .get(id)
        .ok_or_else(|| not_found("compute image capability schema", id))?;
    etag_matches(&if_match, rec)?;
    ctx.world.capability_schemas.remove(id);
    ctx.mutated = true;
    Ok(Reply::empty(204))
}
