//! Object Storage beyond what remote state needs: CreateBucket (`POST /n/{namespaceName}/b`),
//! CopyObject (`POST /n/{namespaceName}/b/{bucketName}/actions/copyObject`, to any region the
//! emulator serves, [`super::peers`]) and its work request (GetWorkRequest, `GET
//! /workRequests/{workRequestId}` at the root of the Object Storage endpoint, with
//! ListWorkRequestErrors beside it).
//!
//! Fields as Oracle's Go SDK models them (oracle/terraform-provider-oci, vendored
//! `oci-go-sdk/v65/objectstorage/create_bucket_details.go`, `bucket.go`,
//! `copy_object_details.go`, `copy_object_request_response.go`, `work_request.go`,
//! `work_request_resource.go`, `work_request_resource_metadata_key.go`, and the paths in
//! `objectstorage_client.go`).
//!
//! Choices where OCI's documentation is silent:
//! - CreateBucket takes every CreateBucketDetails field; what the emulator does not model
//!   (`kmsKeyId`, versioning other than `Disabled`, auto-tiering other than `Disabled`, a public
//!   bucket) is 400 `InvalidParameter` rather than dropped. A bucket of the same name is 409
//!   `BucketAlreadyExists`. Buckets are per region (each region is its own world).
//! - CopyObject answers 202 with `opc-work-request-id` and no body. The source object must exist
//!   (404 `ObjectNotFound`) and match `sourceObjectIfMatchETag` (412 `IfMatchFailed`);
//!   `destinationRegion` must be a region the emulator serves (a region id OCI does not have, or
//!   one not served here, is 400 `InvalidParameter`). The object appears in the destination bucket
//!   when the work request finishes (`Timings::copy`); a destination namespace or bucket that does
//!   not exist, or a destination condition (`destinationObjectIfNoneMatchETag: *`,
//!   `destinationObjectIfMatchETag`) that fails, fails the work request (status `FAILED`, the
//!   reason in ListWorkRequestErrors) and writes nothing. The copy keeps the source's content,
//!   content type and (for an exported image) what marks it as one.
//! - Work request statuses are ACCEPTED at the instant, IN_PROGRESS, then COMPLETED or FAILED
//!   (Object Storage spells success COMPLETED, not SUCCEEDED); never CANCELING or CANCELED.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::api::{error, new_ocid, parse_body, Reply};
use super::details::{self, F};
use super::object_storage::{BucketRec, Request};
use super::peers::Delivery;
use super::store::{rfc3339, World};
use super::Fixtures;

type Result<T> = std::result::Result<T, Reply>;

/// A CopyObject's work request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectWorkRequest {
    pub id: String,
    pub compartment_id: String,
    pub accepted: DateTime<Utc>,
    pub finishes: DateTime<Utc>,
    pub resources: Vec<Value>,
    #[serde(default)]
    pub failed: Option<String>,
}

impl ObjectWorkRequest {
    fn to_json(&self, now: DateTime<Utc>) -> Value {
        let total = (self.finishes - self.accepted).num_milliseconds().max(1) as f64;
        let done = (now - self.accepted).num_milliseconds() as f64;
        let (status, pct) = if now >= self.finishes {
            (
                if self.failed.is_some() {
                    "FAILED"
                } else {
                    "COMPLETED"
                },
                100.0,
            )
        } else if done <= 0.0 {
            ("ACCEPTED", 0.0)
        } else {
            (
                "IN_PROGRESS",
                ((done / total) * 100.0).clamp(0.0, 99.0).floor(),
            )
        };
        let mut v = json!({
            "operationType": "COPY_OBJECT",
            "status": status,
            "id": self.id,
            "compartmentId": self.compartment_id,
            "resources": self.resources,
            "percentComplete": pct,
            "timeAccepted": rfc3339(self.accepted),
        });
        if status != "ACCEPTED" {
            v["timeStarted"] = json!(rfc3339(self.accepted));
        }
        if now >= self.finishes {
            v["timeFinished"] = json!(rfc3339(self.finishes));
        }
        v
    }
}

const CREATE_BUCKET: &[F] = &[
    F("name", details::Kind::Str),
    F("compartmentId", details::Kind::Str),
    F("metadata", details::Kind::StrMap),
    F("publicAccessType", details::Kind::Str),
    F("storageTier", details::Kind::Str),
    F("objectEventsEnabled", details::Kind::Bool),
    F("freeformTags", details::Kind::StrMap),
    F("definedTags", details::Kind::Tags),
    F("kmsKeyId", details::Kind::Str),
    F("isBucketKeyEnabled", details::Kind::Bool),
    F("versioning", details::Kind::Str),
    F("autoTiering", details::Kind::Str),
    F("bucketScope", details::Kind::Str),
];

fn body_str<'b>(b: &'b Map<String, Value>, k: &str) -> Option<&'b str> {
    b.get(k).and_then(Value::as_str)
}

fn required<'b>(b: &'b Map<String, Value>, k: &str) -> Result<&'b str> {
    body_str(b, k)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| error(400, "MissingParameter", format!("`{k}` is required")))
}

/// CreateBucket.
pub(super) fn create_bucket(
    world: &mut World,
    fixtures: &Fixtures,
    req: &Request<'_>,
) -> Result<(Reply, bool)> {
    let ns = req.segs[0];
    if ns != fixtures.namespace {
        return Err(error(
            404,
            "NamespaceNotFound",
            format!("The namespace `{ns}` does not exist or you are not authorized to access it"),
        ));
    }
    let b = parse_body(req.body)?;
    details::check(&b, CREATE_BUCKET, "", "CreateBucketDetails")?;
    let name = required(&b, "name")?.to_string();
    let compartment = required(&b, "compartmentId")?.to_string();
    if !fixtures.compartments.iter().any(|c| c.id == compartment)
        && compartment != fixtures.compartment_id
    {
        return Err(error(
            404,
            "NotAuthorizedOrNotFound",
            format!("compartment `{compartment}` not found or not authorized"),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.len() > 256
    {
        return Err(error(400, "InvalidBucketName", format!("the bucket name `{name}` may hold only letters, digits, `-`, `_` and `.` (at most 256)")));
    }
    for (k, allowed) in [
        ("publicAccessType", "NoPublicAccess"),
        ("versioning", "Disabled"),
        ("autoTiering", "Disabled"),
    ] {
        if let Some(v) = body_str(&b, k).filter(|v| *v != allowed) {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`{k}` `{v}` is not modelled by the emulator (only `{allowed}`)"),
            ));
        }
    }
    if let Some(t) = body_str(&b, "storageTier").filter(|t| *t != "Standard") {
        return Err(error(
            400,
            "InvalidParameter",
            format!("`storageTier` `{t}` is not modelled by the emulator (only `Standard`)"),
        ));
    }
    if b.get("kmsKeyId").is_some_and(|v| !v.is_null()) {
        return Err(error(
            400,
            "InvalidParameter",
            "`kmsKeyId` is not modelled by the emulator",
        ));
    }
    if world.buckets.contains_key(&name) {
        return Err(error(409, "BucketAlreadyExists", format!("Either the bucket '{name}' in namespace '{ns}' already exists or you are not authorized to create it")));
    }
    world.buckets.insert(
        name.clone(),
        BucketRec {
            compartment_id: compartment,
            created: req.now,
            etag: uuid::Uuid::new_v4().to_string(),
            objects: Default::default(),
            given: [
                "metadata",
                "freeformTags",
                "definedTags",
                "objectEventsEnabled",
                "isBucketKeyEnabled",
                "bucketScope",
            ]
            .into_iter()
            .filter_map(|k| {
                b.get(k)
                    .filter(|v| !v.is_null())
                    .map(|v| (k.to_string(), v.clone()))
            })
            .collect(),
        },
    );
    let get = Request {
        segs: &[ns, "b", &name],
        ..*req
    };
    let reply = super::object_storage::get_bucket(world, fixtures, &get)?;
    let location = format!("/n/{ns}/b/{name}");
    Ok((
        Reply {
            status: 200,
            ..reply
        }
        .header("location", location),
        true,
    ))
}

const COPY_OBJECT: &[F] = &[
    F("sourceObjectName", details::Kind::Str),
    F("destinationRegion", details::Kind::Str),
    F("destinationNamespace", details::Kind::Str),
    F("destinationBucket", details::Kind::Str),
    F("destinationObjectName", details::Kind::Str),
    F("sourceObjectIfMatchETag", details::Kind::Str),
    F("sourceVersionId", details::Kind::Str),
    F("destinationObjectIfMatchETag", details::Kind::Str),
    F("destinationObjectIfNoneMatchETag", details::Kind::Str),
    F("destinationObjectMetadata", details::Kind::StrMap),
    F("destinationObjectStorageTier", details::Kind::Str),
];

/// CopyObject: the work request now, the object delivered by the pipeline ([`super::peers`]).
pub(super) fn copy_object(
    world: &mut World,
    fixtures: &Fixtures,
    req: &Request<'_>,
) -> Result<(Reply, bool)> {
    let (ns, bname) = (req.segs[0], req.segs[2]);
    let b = parse_body(req.body)?;
    details::check(&b, COPY_OBJECT, "", "CopyObjectDetails")?;
    let source = required(&b, "sourceObjectName")?.to_string();
    let region = required(&b, "destinationRegion")?.to_string();
    let dest_ns = required(&b, "destinationNamespace")?.to_string();
    let dest_bucket = required(&b, "destinationBucket")?.to_string();
    let dest_object = required(&b, "destinationObjectName")?.to_string();
    if b.get("sourceVersionId").is_some_and(|v| !v.is_null()) {
        return Err(error(
            400,
            "InvalidParameter",
            "`sourceVersionId`: the emulator's buckets are not versioned",
        ));
    }
    if let Some(t) = body_str(&b, "destinationObjectStorageTier").filter(|t| *t != "Standard") {
        return Err(error(400, "InvalidParameter", format!("`destinationObjectStorageTier` `{t}` is not modelled by the emulator (only `Standard`)")));
    }
    let if_none_match = match body_str(&b, "destinationObjectIfNoneMatchETag") {
        None => false,
        Some("*") => true,
        Some(_) => {
            return Err(error(
                400,
                "InvalidParameter",
                "`destinationObjectIfNoneMatchETag` accepts only `*`",
            ))
        }
    };
    if crate::region::resolve(&region).ok() != Some(region.as_str()) {
        return Err(error(400, "InvalidParameter", format!("`destinationRegion` `{region}` is not a region identifier (such as `us-ashburn-1`)")));
    }
    if !req.peers.serves(&region) {
        return Err(error(400, "InvalidParameter", format!("`destinationRegion` `{region}` is not a region this tenancy can reach (the emulator serves {})", req.peers.regions().join(", "))));
    }
    if ns != fixtures.namespace {
        return Err(error(404, "BucketNotFound", format!("Either the bucket named '{bname}' does not exist in the namespace '{ns}' or you are not authorized to access it")));
    }
    let Some(bucket) = world.buckets.get(bname) else {
        return Err(error(404, "BucketNotFound", format!("Either the bucket named '{bname}' does not exist in the namespace '{ns}' or you are not authorized to access it")));
    };
    let Some(obj) = bucket.objects.get(&source).filter(|o| o.visible(req.now)) else {
        return Err(error(
            404,
            "ObjectNotFound",
            format!("The object '{source}' was not found in the bucket '{bname}'"),
        ));
    };
    if let Some(m) = body_str(&b, "sourceObjectIfMatchETag") {
        if m != obj.etag {
            return Err(error(412, "IfMatchFailed", format!("The sourceObjectIfMatchETag `{m}` does not match the source object's entity tag")));
        }
    }
    let finishes = req.now + chrono::Duration::from_std(req.copy_time).unwrap_or_default();
    let mut record = obj.clone();
    record.etag = uuid::Uuid::new_v4().to_string();
    record.created = finishes;
    record.modified = finishes;
    record.visible_from = Some(finishes);
    let compartment = bucket.compartment_id.clone();
    let id = new_ocid("objectstorageworkrequest", &fixtures.region_code);
    let meta = |r: &str, n: &str, bk: &str, o: &str| json!({ "REGION": r, "NAMESPACE": n, "BUCKET": bk, "OBJECT": o });
    world.object_work_requests.insert(
        id.clone(),
        ObjectWorkRequest {
            id: id.clone(),
            compartment_id: compartment,
            accepted: req.now,
            finishes,
            resources: vec![
                json!({ "actionType": "READ", "entityType": "object", "identifier": source, "entityUri": format!("/n/{ns}/b/{bname}/o/{source}"), "metadata": meta(&fixtures.region, ns, bname, &source) }),
                json!({ "actionType": "WRITTEN", "entityType": "object", "identifier": dest_object, "entityUri": format!("/n/{dest_ns}/b/{dest_bucket}/o/{dest_object}"), "metadata": meta(&region, &dest_ns, &dest_bucket, &dest_object) }),
            ],
            failed: None,
        },
    );
    world.outbox.push(Delivery {
        work_request: id.clone(),
        region,
        namespace: dest_ns,
        bucket: dest_bucket,
        object: dest_object,
        record,
        if_none_match,
        if_match: body_str(&b, "destinationObjectIfMatchETag").map(str::to_string),
        now: req.now,
    });
    Ok((Reply::empty(202).header("opc-work-request-id", id), true))
}

/// A delivery the destination refused: the work request fails with `why`.
pub(super) fn fail(world: &mut World, work_request: &str, why: String) {
    if let Some(w) = world.object_work_requests.get_mut(work_request) {
        w.failed = Some(why);
    }
}

fn work_request_not_found(id: &str) -> Reply {
    error(
        404,
        "NotFound",
        format!("The work request `{id}` does not exist"),
    )
}

/// GetWorkRequest (Object Storage).
pub(super) fn get_work_request(
    world: &mut World,
    _: &Fixtures,
    req: &Request<'_>,
) -> Result<(Reply, bool)> {
    let id = req.segs[0];
    let w = world
        .object_work_requests
        .get(id)
        .ok_or_else(|| work_request_not_found(id))?;
    Ok((Reply::json(200, &w.to_json(req.now)), false))
}

/// ListWorkRequestErrors (Object Storage): the reason of a FAILED copy.
pub(super) fn work_request_errors(
    world: &mut World,
    _: &Fixtures,
    req: &Request<'_>,
) -> Result<(Reply, bool)> {
    let id = req.segs[0];
    let w = world
        .object_work_requests
        .get(id)
        .ok_or_else(|| work_request_not_found(id))?;
    let items: Vec<Value> = match &w.failed {
        Some(why) if req.now >= w.finishes => {
            vec![json!({ "code": "CopyFailed", "message": why, "timestamp": rfc3339(w.finishes) })]
        }
        _ => Vec::new(),
    };
    Ok((Reply::json(200, &Value::Array(items)), false))
}
