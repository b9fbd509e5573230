//! The Object Storage subset kiln needs for remote state: namespace, bucket, and objects with
//! conditional writes (`If-Match` / `If-None-Match: *`), on `https://objectstorage.{region}.{domain}`.
//!
//! Paths have no version prefix (`/n/{namespace}/b/{bucket}/o/{object}`); object names are
//! percent-encoded with `/` kept, as Oracle's SDK does. PutObject is signed without the body
//! headers (only `date (request-target) host`), as the SDK signs it.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Method;
use serde::Deserialize;

use super::client::{Call, Client};
use super::error::OciError;

/// Bytes kept as they are in a path segment (Python's `urllib.parse.quote`, `safe='/'`).
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, PATH).to_string()
}

/// A write precondition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Overwrite only this version (`If-Match`).
    IfMatch(String),
    /// Create only (`If-None-Match: *`).
    IfAbsent,
    /// Unconditional.
    None,
}

/// An object's content and version.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub body: Vec<u8>,
    pub etag: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub compartment_id: Option<String>,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub versioning: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSummary {
    pub name: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub time_modified: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListObjects {
    objects: Vec<ObjectSummary>,
    #[serde(default)]
    next_start_with: Option<String>,
}

/// Object Storage calls on one endpoint.
#[derive(Clone, Debug)]
pub struct ObjectStorage {
    client: Client,
}

impl ObjectStorage {
    pub fn new(client: Client) -> ObjectStorage {
        ObjectStorage { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn object_path(namespace: &str, bucket: &str, name: &str) -> String {
        format!("/n/{}/b/{}/o/{}", enc(namespace), enc(bucket), enc(name))
    }

    fn object_call(
        operation: &'static str,
        method: Method,
        namespace: &str,
        bucket: &str,
        name: &str,
    ) -> Call {
        Call::new(
            operation,
            method,
            Self::object_path(namespace, bucket, name),
        )
        .unversioned()
        .resource(&format!("{namespace}/{bucket}/{name}"))
    }

    /// GetNamespace: the tenancy's namespace.
    pub async fn get_namespace(&self) -> Result<String, OciError> {
        let call = Call::new("GetNamespace", Method::GET, "/n/").unversioned();
        Ok(self.client.send_json::<String>(call).await?.body)
    }

    pub async fn get_bucket(&self, namespace: &str, bucket: &str) -> Result<Bucket, OciError> {
        let call = Call::new(
            "GetBucket",
            Method::GET,
            format!("/n/{}/b/{}", enc(namespace), enc(bucket)),
        )
        .unversioned()
        .resource(&format!("{namespace}/{bucket}"));
        Ok(self.client.send_json(call).await?.body)
    }

    /// GetObject; `None` when the object does not exist (the bucket must).
    pub async fn get_object(
        &self,
        namespace: &str,
        bucket: &str,
        name: &str,
    ) -> Result<Option<Object>, OciError> {
        let call = Self::object_call("GetObject", Method::GET, namespace, bucket, name);
        match self.client.send(call).await {
            Ok(r) => Ok(Some(Object {
                etag: r.etag.unwrap_or_default(),
                body: r.body,
            })),
            Err(e) if is_missing_object(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// HeadObject: the etag, or `None` when the object does not exist.
    pub async fn head_object(
        &self,
        namespace: &str,
        bucket: &str,
        name: &str,
    ) -> Result<Option<String>, OciError> {
        let call = Self::object_call("HeadObject", Method::HEAD, namespace, bucket, name);
        match self.client.send(call).await {
            Ok(r) => Ok(Some(r.etag.unwrap_or_default())),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// PutObject under `precondition`; the new etag. A failed precondition is a 412
    /// ([`OciError::is_precondition_failed`]).
    pub async fn put_object(
        &self,
        namespace: &str,
        bucket: &str,
        name: &str,
        body: Vec<u8>,
        content_type: &str,
        precondition: &Precondition,
    ) -> Result<String, OciError> {
        let mut call = Self::object_call("PutObject", Method::PUT, namespace, bucket, name)
            .raw_body(body, content_type, true);
        match precondition {
            Precondition::IfMatch(etag) => call.options.if_match = Some(etag.clone()),
            Precondition::IfAbsent => call = call.header("if-none-match", "*"),
            Precondition::None => {}
        }
        let r = self.client.send(call).await?;
        Ok(r.etag.unwrap_or_default())
    }

    /// DeleteObject, with `If-Match` when `etag` is given. `Ok(false)` when it was already gone.
    pub async fn delete_object(
        &self,
        namespace: &str,
        bucket: &str,
        name: &str,
        etag: Option<&str>,
    ) -> Result<bool, OciError> {
        let mut call = Self::object_call("DeleteObject", Method::DELETE, namespace, bucket, name);
        call.options.if_match = etag.map(str::to_string);
        match self.client.send(call).await {
            Ok(_) => Ok(true),
            Err(e) if is_missing_object(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// ListObjects with `prefix`, every page.
    pub async fn list_objects(
        &self,
        namespace: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectSummary>, OciError> {
        let mut out = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let call = Call::new(
                "ListObjects",
                Method::GET,
                format!("/n/{}/b/{}/o", enc(namespace), enc(bucket)),
            )
            .unversioned()
            .resource(&format!("{namespace}/{bucket}"))
            .query("prefix", Some(prefix).filter(|p| !p.is_empty()))
            .query("fields", Some("name,size,etag,timeModified"))
            .query("limit", Some(1000))
            .query("start", start.take());
            let page: ListObjects = self.client.send_json(call).await?.body;
            out.extend(page.objects);
            match page.next_start_with {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(out),
            }
        }
    }
}

/// A 404 for the object itself (a missing bucket or namespace is an error worth showing).
fn is_missing_object(e: &OciError) -> bool {
    e.status == Some(404) && e.code == "ObjectNotFound"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_keep_slashes_and_encode_the_rest() {
        assert_eq!(
            ObjectStorage::object_path("ns", "my bucket", "kiln/prod env.json"),
            "/n/ns/b/my%20bucket/o/kiln/prod%20env.json"
        );
    }
}
