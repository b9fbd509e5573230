//! ExportImage (`POST /20160918/images/{imageId}/actions/export`), and what makes an Object
//! Storage object an exported image that CreateImage can import elsewhere.
//!
//! Fields as Oracle's Go SDK models them (oracle/terraform-provider-oci, vendored
//! `oci-go-sdk/v65/core/export_image_details.go`, `export_image_via_object_storage_tuple_details.go`,
//! `export_image_via_object_storage_uri_details.go`, `export_image_request_response.go`,
//! `image_source_details.go`): `destinationType` is `objectStorageTuple` (`namespaceName`,
//! `bucketName`, `objectName`) or `objectStorageUri` (`destinationUri`); `exportFormat` is one of
//! `OCI` (the default), `QCOW2`, `VMDK`, `VHD`, `VDI`; the reply is the Image with its `etag` and
//! `opc-work-request-id`; `If-Match` and `opc-retry-token` are taken.
//!
//! Behaviour, and the choices made where OCI's documentation is silent:
//! - Only a custom image that is AVAILABLE exports (409 `IncorrectState` otherwise: one export
//!   at a time); a platform image is 404. The image is EXPORTING until the export's work request
//!   (`ExportImage`) finishes (`Timings::export`), then AVAILABLE again.
//! - The object is written into this region's bucket when the work request finishes (not before:
//!   [`super::object_storage::ObjectRec::visible`]). A namespace or bucket that does not exist
//!   fails the work request (the image goes back to AVAILABLE, nothing is written), as an import
//!   of a missing object does.
//! - The object's listed size is the image's billable size (GiB); its content is only a header
//!   (the `.oci` file's metadata, as JSON), which is what GetObject returns — the emulator does not
//!   keep gigabytes of disk (HeadObject says the header's length too). Get/HeadObject show the
//!   export as `opc-meta-*` metadata
//!   (`oci-exported-image-id`, `oci-export-format`, `oci-source-region`).
//! - CreateImage from an object ([`import_check`]): an `OCI`-format export imports without
//!   `sourceImageType` ("This attribute is not used for exported Oracle images with the OCI image
//!   format", `image_source_details.go`) and brings its operating system, version, launch mode and
//!   architecture; an `OCI` export named with a `sourceImageType` is not a QCOW2/VMDK file and
//!   fails the import, as does a `VHD`/`VDI` export (OCI imports only QCOW2, VMDK and OCI files) or
//!   an export of another format imported as the wrong type. An object that is not an export is
//!   imported as today (a QCOW2/VMDK file someone uploaded).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::api::{error, etag_matches, not_found, parse_body, Ctx, Reply, Result};
use super::details::{self, F};
use super::object_storage::{find_object, ObjectRec};
use super::store::{Coll, Step};

/// What an exported image's object carries (its `.oci` metadata, in the emulator's terms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedImage {
    pub image_id: String,
    pub format: String,
    pub region: String,
    pub display_name: String,
    pub operating_system: Value,
    pub operating_system_version: Value,
    pub launch_mode: Value,
    pub arch: String,
}

impl ExportedImage {
    /// The object's user metadata (`opc-meta-` + key).
    pub fn metadata(&self) -> Vec<(String, String)> {
        vec![
            ("oci-exported-image-id".into(), self.image_id.clone()),
            ("oci-export-format".into(), self.format.clone()),
            ("oci-source-region".into(), self.region.clone()),
        ]
    }
}

const TUPLE: &[F] = &[
    F("destinationType", details::Kind::Str),
    F("exportFormat", details::Kind::Str),
    F("namespaceName", details::Kind::Str),
    F("bucketName", details::Kind::Str),
    F("objectName", details::Kind::Str),
];

const URI: &[F] = &[
    F("destinationType", details::Kind::Str),
    F("exportFormat", details::Kind::Str),
    F("destinationUri", details::Kind::Str),
];

const FORMATS: &[&str] = &["OCI", "QCOW2", "VMDK", "VHD", "VDI"];

/// `https://objectstorage.<region>.oraclecloud.com/n/<ns>/b/<bucket>/o/<object>` → its parts.
pub fn parse_object_uri(uri: &str) -> Option<(String, String, String)> {
    let path = uri.split_once("://")?.1.split_once('/')?.1;
    let rest = path.strip_prefix("n/")?;
    let (ns, rest) = rest.split_once("/b/")?;
    let (bucket, object) = rest.split_once("/o/")?;
    let object = percent_encoding::percent_decode_str(object)
        .decode_utf8()
        .ok()?
        .into_owned();
    (!ns.is_empty() && !bucket.is_empty() && !object.is_empty())
        .then(|| (ns.to_string(), bucket.to_string(), object))
}

fn text(b: &Map<String, Value>, k: &str) -> Result<String> {
    match b.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(error(400, "MissingParameter", format!("`{k}` is required")))
        }
        Some(_) => Err(error(
            400,
            "InvalidParameter",
            format!("`{k}` must be a string"),
        )),
    }
}

/// ExportImage.
pub fn export(ctx: &mut Ctx<'_>, id: &str, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    let (ns, bucket, object) = match b.get("destinationType").and_then(Value::as_str) {
        Some("objectStorageTuple") => {
            details::check(&b, TUPLE, "", "ExportImageViaObjectStorageTupleDetails")?;
            (
                text(&b, "namespaceName")?,
                text(&b, "bucketName")?,
                text(&b, "objectName")?,
            )
        }
        Some("objectStorageUri") => {
            details::check(&b, URI, "", "ExportImageViaObjectStorageUriDetails")?;
            let uri = text(&b, "destinationUri")?;
            parse_object_uri(&uri).ok_or_else(|| {
                error(
                    400,
                    "InvalidParameter",
                    format!("`destinationUri` `{uri}` is not an Object Storage URL (https://objectstorage.<region>.oraclecloud.com/n/<namespace>/b/<bucket>/o/<object>)"),
                )
            })?
        }
        None => {
            return Err(error(
                400,
                "MissingParameter",
                "`destinationType` is required",
            ))
        }
        Some(t) => {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`destinationType` `{t}` is not objectStorageTuple or objectStorageUri"),
            ))
        }
    };
    let format = match b.get("exportFormat") {
        None | Some(Value::Null) => "OCI".to_string(),
        Some(Value::String(f)) if FORMATS.contains(&f.as_str()) => f.clone(),
        Some(f) => {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`exportFormat` {f} is not one of OCI, QCOW2, VMDK, VHD, VDI"),
            ))
        }
    };
    if ctx.platform.iter().any(|r| r.id() == id) {
        return Err(error(404, "NotAuthorizedOrNotFound", format!("Authorization failed or requested resource not found: image `{id}` (platform images cannot be exported)")));
    }
    let ready = ctx.after(ctx.timings.export);
    let region = ctx.fixtures.region.clone();
    let if_match = ctx.if_match.clone();
    let rec = ctx
        .world
        .images
        .get_mut(id)
        .ok_or_else(|| not_found("image", id))?;
    etag_matches(&if_match, rec)?;
    match rec.state() {
        "DELETED" => return Err(not_found("image", id)),
        "AVAILABLE" => {}
        s => {
            return Err(error(
                409,
                "IncorrectState",
                format!("image `{id}` is {s}: only an AVAILABLE image can be exported"),
            ))
        }
    }
    let exported = ExportedImage {
        image_id: id.to_string(),
        format: format.clone(),
        region,
        display_name: rec.str("displayName").to_string(),
        operating_system: rec.body["operatingSystem"].clone(),
        operating_system_version: rec.body["operatingSystemVersion"].clone(),
        launch_mode: rec.body["launchMode"].clone(),
        arch: rec.meta_str("arch").unwrap_or("x86_64").to_string(),
    };
    let billable = rec.body["billableSizeInGBs"].as_u64().unwrap_or(3);
    let compartment = rec.str("compartmentId").to_string();
    rec.transition(
        "EXPORTING",
        vec![Step {
            at: ready,
            state: "AVAILABLE".into(),
        }],
    );
    let reply = Ctx::reply_record(rec, 200);
    ctx.world.schedule(Coll::Image, id);
    let failure = if ns != ctx.fixtures.namespace {
        Some(format!(
            "the namespace `{ns}` does not exist or is not authorized"
        ))
    } else if !ctx.world.buckets.contains_key(&bucket) {
        Some(format!(
            "the bucket `{bucket}` does not exist in the namespace `{ns}`"
        ))
    } else {
        None
    };
    if failure.is_none() {
        let header = json!({ "format": format, "image": exported });
        let data = serde_json::to_vec(&header).expect("serialises");
        use base64::Engine;
        use md5::Digest;
        let rec = ObjectRec {
            data_base64: base64::engine::general_purpose::STANDARD.encode(&data),
            content_type: "application/octet-stream".into(),
            etag: uuid::Uuid::new_v4().to_string(),
            md5_base64: base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&data)),
            size: billable * 1024 * 1024 * 1024,
            created: ready,
            modified: ready,
            visible_from: Some(ready),
            exported: Some(exported),
        };
        if let Some(b) = ctx.world.buckets.get_mut(&bucket) {
            b.objects.insert(object.clone(), rec);
        }
    }
    let wr = ctx.work_request("ExportImage", &compartment, "image", id, "RELATED", ready);
    if let Some(w) = ctx.world.work_requests.get_mut(&wr) {
        w.failed = failure;
    }
    ctx.mutated = true;
    Ok(reply.header("opc-work-request-id", wr))
}

/// What an import of `namespace`/`bucket`/`object` finds: `Ok(Some(export))` for an exported
/// image, `Ok(None)` for another object (an uploaded image file), `Err(why)` when the import
/// fails (its work request FAILED).
pub fn import_check(
    ctx: &Ctx<'_>,
    source: Option<(String, String, String)>,
    source_image_type: Option<&str>,
    shown: String,
) -> std::result::Result<Option<ExportedImage>, String> {
    let Some(o) = source.and_then(|(ns, bucket, object)| {
        find_object(ctx.world, ctx.fixtures, &ns, &bucket, &object, ctx.now)
    }) else {
        return Err(format!(
            "the image file {shown} does not exist or is not readable"
        ));
    };
    let Some(e) = &o.exported else {
        return Ok(None);
    };
    match (e.format.as_str(), source_image_type) {
        ("OCI", None) => Ok(Some(e.clone())),
        ("OCI", Some(t)) => Err(format!("{shown} is an exported image in the OCI format, not a {t} file: import it without `sourceImageType`")),
        ("QCOW2" | "VMDK", Some(t)) if t == e.format => Ok(Some(e.clone())),
        ("QCOW2", None) => Ok(Some(e.clone())),
        (f, _) => Err(format!(
            "{shown} is a {f} file: OCI imports QCOW2, VMDK and OCI files, each as its own `sourceImageType`"
        )),
    }
}
