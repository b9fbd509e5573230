//! Images: CreateImage (capture from an instance, or import of an Object Storage object that
//! must exist: an exported image, see [`super::image_export`], or an uploaded file), ListImages (platform images first, then the compartment's; `shape` keeps the
//! images that shape can boot), UpdateImage, DeleteImage.

use chrono::Duration as ChronoDuration;
use serde_json::{json, Value};

use super::api::{
    error, etag_matches, new_ocid, not_found, oracle_tags, parse_body, q, required, required_query,
    str_field, string_map, Ctx, Reply, Result,
};
use super::details::{self, F};
use super::image_export;
use super::list::{self, Key};
use super::shapes;
use super::store::{rfc3339, Coll, Record, Step};

/// The LaunchOptions of the emulator's images (and of instances launched from them by default).
pub fn launch_options() -> Value {
    json!({ "bootVolumeType": "PARAVIRTUALIZED", "firmware": "UEFI_64", "networkType": "PARAVIRTUALIZED", "remoteDataVolumeType": "PARAVIRTUALIZED", "isPvEncryptionInTransitEnabled": false, "isEncryptionInTransitEnabled": false, "isConsistentVolumeNamingEnabled": true })
}

const CREATE_IMAGE: &[F] = &[
    F("compartmentId", details::Kind::Str),
    F("definedTags", details::Kind::Tags),
    F("displayName", details::Kind::Str),
    F("freeformTags", details::Kind::StrMap),
    F("imageSourceDetails", details::Kind::Any),
    F("instanceId", details::Kind::Str),
    F("launchMode", details::Kind::Str),
];

/// The object an ImageSourceDetails names: (namespace, bucket, object), if it names one of ours.
fn source_object(s: &serde_json::Map<String, Value>) -> Option<(String, String, String)> {
    match s.get("sourceType").and_then(Value::as_str)? {
        "objectStorageTuple" => Some((
            s.get("namespaceName")?.as_str()?.to_string(),
            s.get("bucketName")?.as_str()?.to_string(),
            s.get("objectName")?.as_str()?.to_string(),
        )),
        _ => image_export::parse_object_uri(s.get("sourceUri")?.as_str()?),
    }
}

pub fn create(ctx: &mut Ctx<'_>, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    details::check(&b, CREATE_IMAGE, "", "CreateImageDetails")?;
    let compartment = required(&b, "compartmentId")?.to_string();
    ctx.check_compartment(&compartment, "compartmentId")?;
    let defined = ctx.defined_tags(&b)?;
    let instance_id = str_field(&b, "instanceId")?.map(str::to_string);
    let source = b
        .get("imageSourceDetails")
        .and_then(Value::as_object)
        .cloned();
    if let Some(m) = str_field(&b, "launchMode")? {
        if !["NATIVE", "EMULATED", "PARAVIRTUALIZED", "CUSTOM"].contains(&m) {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`launchMode` `{m}` is not NATIVE, EMULATED, PARAVIRTUALIZED or CUSTOM"),
            ));
        }
    }
    let id = new_ocid("image", ctx.region_code);
    let mut failure = None;
    let mut imported_launch_mode: Option<Value> = None;
    let (os, version, base, ready, state, arch) = match (&instance_id, &source) {
        (Some(_), Some(_)) => {
            return Err(error(
                400,
                "InvalidParameter",
                "give either `instanceId` or `imageSourceDetails`, not both",
            ))
        }
        (None, None) => {
            return Err(error(
                400,
                "MissingParameter",
                "`instanceId` or `imageSourceDetails` is required",
            ))
        }
        (Some(iid), None) => {
            let (capture, cooldown) = (ctx.timings.capture, ctx.timings.cooldown);
            let now = ctx.now;
            let ready = ctx.after(capture);
            let last = ctx.world.last_capture.get(iid).copied();
            let inst = ctx.instance(iid).map_err(|_| {
                error(
                    400,
                    "RelatedResourceNotAuthorizedOrNotFound",
                    format!("instance `{iid}` not found or not authorized"),
                )
            })?;
            let back = match inst.state() {
                "RUNNING" => "RUNNING",
                "STOPPED" => "STOPPED",
                "CREATING_IMAGE" => return Err(error(409, "IncorrectState", format!("instance `{iid}` is already being captured: one image at a time"))),
                s => return Err(error(409, "IncorrectState", format!("instance `{iid}` is {s}: it must be RUNNING or STOPPED to capture an image"))),
            };
            if let Some(last) = last {
                let until = last + ChronoDuration::from_std(cooldown).unwrap_or_default();
                if now < until {
                    return Err(error(409, "IncorrectState", format!("instance `{iid}` was captured recently: the next image can be made after {}", rfc3339(until))));
                }
            }
            // A running source is shut down for the capture and restarts afterwards (as OCI documents).
            inst.transition(
                "CREATING_IMAGE",
                vec![Step {
                    at: ready,
                    state: back.into(),
                }],
            );
            let image_id = inst
                .body
                .get("imageId")
                .and_then(Value::as_str)
                .map(str::to_string);
            let arch = inst.meta_str("arch").unwrap_or("x86_64").to_string();
            ctx.world.schedule(Coll::Instance, iid);
            ctx.world.last_capture.insert(iid.clone(), ready);
            let (os, version) = image_id
                .as_deref()
                .and_then(|i| ctx.image_any(i))
                .map(|r| {
                    (
                        r.body["operatingSystem"].clone(),
                        r.body["operatingSystemVersion"].clone(),
                    )
                })
                .unwrap_or((json!("Custom"), json!("1")));
            (
                os,
                version,
                image_id.map(Value::String).unwrap_or(Value::Null),
                ready,
                "PROVISIONING",
                arch,
            )
        }
        (None, Some(s)) => {
            match s.get("sourceType").and_then(Value::as_str) {
                Some("objectStorageTuple") => {
                    for k in ["namespaceName", "bucketName", "objectName"] {
                        if s.get(k).and_then(Value::as_str).is_none() {
                            return Err(error(400, "MissingParameter", format!("`imageSourceDetails.{k}` is required")));
                        }
                    }
                }
                Some("objectStorageUri") => {
                    if s.get("sourceUri").and_then(Value::as_str).is_none() {
                        return Err(error(400, "MissingParameter", "`imageSourceDetails.sourceUri` is required"));
                    }
                }
                other => return Err(error(400, "InvalidParameter", format!("`imageSourceDetails.sourceType` {other:?} is not objectStorageTuple or objectStorageUri"))),
            }
            if let Some(t) = s.get("sourceImageType").filter(|t| !t.is_null()) {
                if !matches!(t.as_str(), Some("QCOW2" | "VMDK")) {
                    return Err(error(
                        400,
                        "InvalidParameter",
                        "`imageSourceDetails.sourceImageType` must be QCOW2 or VMDK",
                    ));
                }
            }
            let shown = s
                .get("sourceUri")
                .and_then(Value::as_str)
                .map(|u| format!("`{u}`"))
                .unwrap_or_else(|| {
                    source_object(s)
                        .map(|(n, b, o)| format!("`/n/{n}/b/{b}/o/{o}`"))
                        .unwrap_or_default()
                });
            let source_type = s.get("sourceImageType").and_then(Value::as_str);
            let ready = ctx.after(ctx.timings.import);
            // OCI accepts the request and fails the import: the work request ends FAILED
            // and the image is gone (DELETED) instead of AVAILABLE.
            let export = match image_export::import_check(ctx, source_object(s), source_type, shown)
            {
                Ok(e) => e,
                Err(why) => {
                    failure = Some(why);
                    None
                }
            };
            if let Some(e) = export {
                let pick = |k: &str, v: &Value| {
                    s.get(k)
                        .filter(|x| !x.is_null())
                        .cloned()
                        .unwrap_or_else(|| v.clone())
                };
                imported_launch_mode = Some(e.launch_mode.clone());
                (
                    pick("operatingSystem", &e.operating_system),
                    pick("operatingSystemVersion", &e.operating_system_version),
                    Value::Null,
                    ready,
                    "IMPORTING",
                    e.arch.clone(),
                )
            } else {
                (
                    s.get("operatingSystem").cloned().unwrap_or(json!("Custom")),
                    s.get("operatingSystemVersion")
                        .cloned()
                        .unwrap_or(json!("1")),
                    Value::Null,
                    ready,
                    "IMPORTING",
                    "x86_64".to_string(),
                )
            }
        }
    };
    let body = json!({
        "id": id,
        "compartmentId": compartment,
        "displayName": str_field(&b, "displayName")?.map(str::to_string).unwrap_or_else(|| format!("image{}", ctx.now.format("%Y%m%d%H%M%S"))),
        "lifecycleState": state,
        "operatingSystem": os,
        "operatingSystemVersion": version,
        "baseImageId": base,
        "launchMode": match str_field(&b, "launchMode")? {
            Some(m) => json!(m),
            None => imported_launch_mode.unwrap_or(json!("PARAVIRTUALIZED")),
        },
        "launchOptions": launch_options(),
        "createImageAllowed": true,
        "sizeInMBs": 47694,
        "billableSizeInGBs": 3,
        "listingType": "NONE",
        "agentFeatures": null,
        "freeformTags": string_map(&b, "freeformTags")?.unwrap_or_default(),
        "definedTags": oracle_tags(ctx.key_id, ctx.now, defined),
        "timeCreated": rfc3339(ctx.now),
    });
    let mut rec = Record::new(body.as_object().expect("object").clone());
    rec.meta.insert("arch".into(), json!(arch));
    rec.steps = vec![Step {
        at: ready,
        state: if failure.is_some() {
            "DELETED"
        } else {
            "AVAILABLE"
        }
        .into(),
    }];
    let mut wr_resources = vec![
        json!({ "actionType": "CREATED", "entityType": "image", "identifier": id, "entityUri": format!("/20160918/images/{id}") }),
    ];
    if let Some(iid) = &instance_id {
        wr_resources.push(json!({ "actionType": "RELATED", "entityType": "instance", "identifier": iid, "entityUri": format!("/20160918/instances/{iid}") }));
    }
    let wr = ctx.work_request("CreateImage", &compartment, "image", &id, "CREATED", ready);
    if let Some(w) = ctx.world.work_requests.get_mut(&wr) {
        w.resources = wr_resources;
        w.failed = failure;
    }
    let reply = Ctx::reply_record(&rec, 200).header("opc-work-request-id", wr);
    ctx.world.images.insert(id.clone(), rec);
    ctx.world.schedule(Coll::Image, &id);
    ctx.mutated = true;
    Ok(reply)
}

/// ListImages: platform images first (for any compartment), then the compartment's custom
/// images, each part sorted on its own; `shape` keeps only images that shape can boot.
pub fn list(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    ctx.check_compartment(compartment, "compartmentId")?;
    let arch = match q(query, "shape") {
        None => None,
        Some(s) => Some(shapes::known(s)?.arch.image_arch()),
    };
    let (field, desc) = list::sort_spec(query, "TIMECREATED")?;
    let filter = |r: &Record| {
        let v = &r.body;
        q(query, "operatingSystem").is_none_or(|o| v["operatingSystem"] == o)
            && q(query, "operatingSystemVersion").is_none_or(|o| v["operatingSystemVersion"] == o)
            && q(query, "displayName").is_none_or(|d| v["displayName"] == d)
            && arch.is_none_or(|a| r.meta_str("arch").unwrap_or("x86_64") == a)
    };
    // Only the page is copied out of the records.
    let mut items: Vec<(Key, &Record)> = ctx
        .platform
        .iter()
        .filter(|r| filter(r))
        .map(|r| (Key::of_map(0, &r.body, field), r))
        .collect();
    items.extend(
        ctx.world
            .images
            .values()
            .filter(|r| r.str("compartmentId") == compartment && r.state() != "DELETED")
            .filter(|r| filter(r))
            .map(|r| (Key::of_map(1, &r.body, field), r)),
    );
    items.retain(|(_, r)| list::state_matches(query, &r.body));
    list::page_with(items, desc, query, |r| Value::Object(r.body.clone()))
}

pub fn update(ctx: &mut Ctx<'_>, id: &str, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    const FIELDS: &[F] = &[
        F("displayName", details::Kind::Str),
        F("freeformTags", details::Kind::StrMap),
        F("definedTags", details::Kind::Tags),
        F("operatingSystem", details::Kind::Str),
        F("operatingSystemVersion", details::Kind::Str),
    ];
    details::check(&b, FIELDS, "", "UpdateImageDetails")?;
    if ctx.platform.iter().any(|r| r.id() == id) {
        return Err(error(404, "NotAuthorizedOrNotFound", format!("Authorization failed or requested resource not found: image `{id}` (platform images cannot be changed)")));
    }
    let defined = ctx.defined_tags(&b)?;
    let if_match = ctx.if_match.clone();
    let rec = ctx
        .world
        .images
        .get_mut(id)
        .ok_or_else(|| not_found("image", id))?;
    etag_matches(&if_match, rec)?;
    if rec.state() == "DELETED" {
        return Err(error(
            409,
            "IncorrectState",
            format!("image `{id}` is DELETED"),
        ));
    }
    for k in ["displayName", "operatingSystem", "operatingSystemVersion"] {
        if let Some(v) = str_field(&b, k)? {
            rec.body.insert(k.into(), json!(v));
        }
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

pub fn delete(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    let if_match = ctx.if_match.clone();
    let rec = ctx
        .world
        .images
        .get_mut(id)
        .ok_or_else(|| not_found("image", id))?;
    etag_matches(&if_match, rec)?;
    match rec.state() {
        "DELETED" => return Err(not_found("image", id)),
        "PROVISIONING" | "IMPORTING" | "EXPORTING" => {
            return Err(error(
                409,
                "IncorrectState",
                format!(
                    "image `{id}` is {}: wait until it is AVAILABLE",
                    rec.state()
                ),
            ))
        }
        _ => {}
    }
    rec.transition("DELETED", Vec::new());
    ctx.mutated = true;
    Ok(Reply::empty(204))
}
