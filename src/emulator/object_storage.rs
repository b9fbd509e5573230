//! The Object Storage subset (for kiln's remote state), served by the same emulator: GetNamespace,
//! GetBucket, ListObjects, GetObject, HeadObject, PutObject, DeleteObject under
//! `/n/{namespace}/b/{bucket}/o/{object}` (no version prefix, as on OCI). The routes are in
//! [`super::routes`]; this module holds their handlers and the buckets' records (CreateBucket,
//! CopyObject and Object Storage work requests are in [`super::object_copy`]).
//! An object written by a work request (an image export, a copy) exists once it finishes.
//!
//! Choices where OCI's documentation is silent:
//! - One namespace (`Fixtures::namespace`) and two seeded buckets (`Fixtures::bucket` for state,
//!   `Fixtures::image_bucket` for image files to import); more with CreateBucket. Another namespace or bucket is 404 `BucketNotFound`; a missing object is 404
//!   `ObjectNotFound` (HEAD: 404 without a body).
//! - Object etags are strong: a new UUID on every write. `If-Match` on Get/Head/Put/Delete must
//!   equal the current etag (a missing object fails it too): 412 `IfMatchFailed`. `If-None-Match: *`
//!   on Put fails when the object exists: 412 `IfNoneMatchFailed`. A `Content-MD5` that does not
//!   match the body is 400 `InvalidContentMD5`.
//! - Object names are the rest of the path after `/o/`, percent-decoded (Oracle's SDK keeps `/`).
//! - ListObjects returns `name` always, and `size`, `etag`, `md5`, `timeCreated`, `timeModified`
//!   when named in `fields`; `prefix`, `start`, `end`, `limit` (1..1000, default 1000) and
//!   `nextStartWith` work as documented.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::api::{error, page_limit, q, Reply};
use super::store::{rfc3339, World};
use super::Fixtures;

/// A bucket and its objects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketRec {
    pub compartment_id: String,
    pub created: DateTime<Utc>,
    pub etag: String,
    pub objects: BTreeMap<String, ObjectRec>,
    /// CreateBucket's `metadata`, `freeformTags`, `definedTags` and `objectEventsEnabled`, as
    /// given (a seeded bucket has none).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub given: Map<String, Value>,
}

/// One object: content (base64 in the data file), etag, MD5 and times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectRec {
    pub data_base64: String,
    pub content_type: String,
    pub etag: String,
    pub md5_base64: String,
    pub size: u64,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    /// Written by a work request (an image export, a copy from another region): not there
    /// before its work request finishes ([`ObjectRec::visible`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_from: Option<DateTime<Utc>>,
    /// What ExportImage wrote this object from ([`super::image_export`]); kept by copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported: Option<super::image_export::ExportedImage>,
}

impl ObjectRec {
    /// Whether the object exists at `now` (its writing work request has finished).
    pub fn visible(&self, now: DateTime<Utc>) -> bool {
        self.visible_from.is_none_or(|t| t <= now)
    }
}

/// Make sure the seeded buckets exist (a fresh world, or data from an older emulator): the one
/// for remote state, and `images`, where image files to import are put.
pub fn seed(world: &mut World, fixtures: &Fixtures) {
    for name in [&fixtures.bucket, &fixtures.image_bucket] {
        world
            .buckets
            .entry(name.clone())
            .or_insert_with(|| BucketRec {
                compartment_id: fixtures.compartment_id.clone(),
                created: "2026-01-01T00:00:00Z".parse().expect("valid time"),
                etag: uuid::Uuid::new_v4().to_string(),
                objects: BTreeMap::new(),
                given: Map::new(),
            });
    }
}

/// The object `namespace`/`bucket`/`object`, if it exists at `now` (an image file to import).
pub fn find_object<'w>(
    world: &'w World,
    fixtures: &Fixtures,
    namespace: &str,
    bucket: &str,
    object: &str,
    now: DateTime<Utc>,
) -> Option<&'w ObjectRec> {
    if namespace != fixtures.namespace {
        return None;
    }
    world
        .buckets
        .get(bucket)?
        .objects
        .get(object)
        .filter(|o| o.visible(now))
}

/// What a handler needs from the request.
pub struct Request<'a> {
    pub segs: &'a [&'a str],
    pub query: &'a [(String, String)],
    pub header: &'a dyn Fn(&str) -> Option<String>,
    pub body: &'a [u8],
    pub now: DateTime<Utc>,
    /// The regions served with this one (CopyObject's destinations).
    pub peers: &'a super::peers::Peers,
    /// How long a copy to another region takes (`Timings::copy`).
    pub copy_time: std::time::Duration,
}

type Result<T> = std::result::Result<T, Reply>;

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// GetBucket.
pub(super) fn get_bucket(world: &World, fixtures: &Fixtures, req: &Request<'_>) -> Result<Reply> {
    bucket(world, fixtures, req.segs).map(|(name, b)| {
        let mut body = json!({
            "namespace": fixtures.namespace, "name": name, "compartmentId": b.compartment_id,
            "metadata": {}, "createdBy": "ocid1.user.oc1..aaaaaaaakilnemulator",
            "timeCreated": rfc3339(b.created), "etag": b.etag, "publicAccessType": "NoPublicAccess",
            "storageTier": "Standard", "objectEventsEnabled": false, "freeformTags": {}, "definedTags": {},
            "versioning": "Disabled", "replicationEnabled": false, "isReadOnly": false,
            "approximateCount": b.objects.values().filter(|o| o.visible(req.now)).count(),
            "approximateSize": b.objects.values().filter(|o| o.visible(req.now)).map(|o| o.size).sum::<u64>(),
        });
        for (k, v) in &b.given {
            body[k] = v.clone();
        }
        Reply::json(200, &body).header("etag", b.etag.clone())
    })
}

fn bucket<'w>(
    world: &'w World,
    fixtures: &Fixtures,
    segs: &[&str],
) -> Result<(String, &'w BucketRec)> {
    let (ns, name) = (segs[0], segs[2]);
    match world.buckets.get(name) {
        Some(b) if ns == fixtures.namespace => Ok((name.to_string(), b)),
        _ => Err(bucket_not_found(ns, name)),
    }
}

fn bucket_mut<'w>(
    world: &'w mut World,
    fixtures: &Fixtures,
    segs: &[&str],
) -> Result<&'w mut BucketRec> {
    let (ns, name) = (segs[0], segs[2]);
    match world.buckets.get_mut(name) {
        Some(b) if ns == fixtures.namespace => Ok(b),
        _ => Err(bucket_not_found(ns, name)),
    }
}

fn bucket_not_found(ns: &str, name: &str) -> Reply {
    error(
        404,
        "BucketNotFound",
        format!("Either the bucket named '{name}' does not exist in the namespace '{ns}' or you are not authorized to access it"),
    )
}

fn object_name(segs: &[&str]) -> String {
    segs[4..].join("/")
}

fn object_not_found(name: &str, bucket: &str) -> Reply {
    error(
        404,
        "ObjectNotFound",
        format!("The object '{name}' was not found in the bucket '{bucket}'"),
    )
}

/// `If-Match` against an object that may not exist.
fn check_if_match(req: &Request<'_>, current: Option<&ObjectRec>) -> Result<()> {
    if let Some(m) = (req.header)("if-match") {
        let ok = match current {
            Some(o) => m == "*" || m == o.etag,
            None => false,
        };
        if !ok {
            return Err(error(
                412,
                "IfMatchFailed",
                format!("The If-Match header `{m}` does not match the object's current entity tag"),
            ));
        }
    }
    Ok(())
}

fn object_headers(reply: Reply, o: &ObjectRec) -> Reply {
    reply
        .header("etag", o.etag.clone())
        .header("content-md5", o.md5_base64.clone())
        .header("last-modified", http_date(o.modified))
}

pub(super) fn read(
    world: &World,
    fixtures: &Fixtures,
    req: &Request<'_>,
    head: bool,
) -> Result<Reply> {
    let (bname, b) = bucket(world, fixtures, req.segs)?;
    let name = object_name(req.segs);
    let Some(o) = b.objects.get(&name).filter(|o| o.visible(req.now)) else {
        return Err(if head {
            Reply::empty(404)
        } else {
            object_not_found(&name, &bname)
        });
    };
    if let Err(e) = check_if_match(req, Some(o)) {
        return Err(if head { Reply::empty(412) } else { e });
    }
    let data = B64.decode(&o.data_base64).unwrap_or_default();
    // An exported image keeps only its header: its stored size is what is listed, the header
    // what is read (see the module doc of `image_export`).
    let length = if o.exported.is_some() {
        data.len() as u64
    } else {
        o.size
    };
    let mut reply = Reply {
        status: 200,
        headers: vec![
            ("content-type".into(), o.content_type.clone()),
            ("content-length".into(), length.to_string()),
        ],
        body: if head { Vec::new() } else { data },
    };
    if let Some(e) = &o.exported {
        for (k, v) in e.metadata() {
            reply = reply.header(&format!("opc-meta-{k}"), v);
        }
    }
    Ok(object_headers(reply, o))
}

pub(super) fn put(world: &mut World, fixtures: &Fixtures, req: &Request<'_>) -> Result<Reply> {
    let name = object_name(req.segs);
    let now = req.now;
    let b = bucket_mut(world, fixtures, req.segs)?;
    let current = b.objects.get(&name).filter(|o| o.visible(now));
    check_if_match(req, current)?;
    if let Some(m) = (req.header)("if-none-match") {
        if m.trim() != "*" {
            return Err(error(
                400,
                "InvalidParameter",
                "PutObject accepts only `If-None-Match: *`",
            ));
        }
        if current.is_some() {
            return Err(error(
                412,
                "IfNoneMatchFailed",
                format!("The object '{name}' already exists (If-None-Match: *)"),
            ));
        }
    }
    let md5 = B64.encode(Md5::digest(req.body));
    if let Some(given) = (req.header)("content-md5") {
        if given.trim() != md5 {
            return Err(error(
                400,
                "InvalidContentMD5",
                "The Content-MD5 header does not match the body",
            ));
        }
    }
    let obj = ObjectRec {
        data_base64: B64.encode(req.body),
        content_type: (req.header)("content-type")
            .unwrap_or_else(|| "application/octet-stream".into()),
        etag: uuid::Uuid::new_v4().to_string(),
        md5_base64: md5,
        size: req.body.len() as u64,
        created: current.map(|c| c.created).unwrap_or(now),
        modified: now,
        visible_from: None,
        exported: None,
    };
    let reply =
        object_headers(Reply::empty(200), &obj).header("opc-content-md5", obj.md5_base64.clone());
    b.objects.insert(name, obj);
    Ok(reply)
}

pub(super) fn delete(world: &mut World, fixtures: &Fixtures, req: &Request<'_>) -> Result<Reply> {
    let name = object_name(req.segs);
    let bname = req.segs[2].to_string();
    let b = bucket_mut(world, fixtures, req.segs)?;
    let Some(current) = b.objects.get(&name).filter(|o| o.visible(req.now)) else {
        return Err(object_not_found(&name, &bname));
    };
    check_if_match(req, Some(current))?;
    b.objects.remove(&name);
    Ok(Reply::empty(204).header("last-modified", http_date(req.now)))
}

pub(super) fn list(world: &World, fixtures: &Fixtures, req: &Request<'_>) -> Result<Reply> {
    let (_, b) = bucket(world, fixtures, req.segs)?;
    let prefix = q(req.query, "prefix").unwrap_or("");
    let start = q(req.query, "start");
    let end = q(req.query, "end");
    let limit = page_limit(req.query, 1000)?;
    let fields: Vec<&str> = q(req.query, "fields")
        .map(|f| f.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let mut matching = b
        .objects
        .iter()
        .filter(|(n, o)| n.starts_with(prefix) && o.visible(req.now))
        .filter(|(n, _)| start.is_none_or(|s| n.as_str() >= s))
        .filter(|(n, _)| end.is_none_or(|e| n.as_str() < e));
    let mut objects = Vec::new();
    for (n, o) in matching.by_ref().take(limit) {
        let mut m = Map::new();
        m.insert("name".into(), json!(n));
        for f in &fields {
            let v = match *f {
                "size" => json!(o.size),
                "etag" => json!(o.etag),
                "md5" => json!(o.md5_base64),
                "timeCreated" => json!(rfc3339(o.created)),
                "timeModified" => json!(rfc3339(o.modified)),
                "storageTier" => json!("Standard"),
                _ => continue,
            };
            m.insert((*f).to_string(), v);
        }
        objects.push(Value::Object(m));
    }
    let mut body = json!({ "objects": objects, "prefixes": [] });
    if let Some((next, _)) = matching.next() {
        body["nextStartWith"] = json!(next);
    }
    Ok(Reply::json(200, &body))
}
