//! The calls that copy an image to another region — OCI has no CopyImage: ExportImage to Object
//! Storage (Compute), CreateBucket and CopyObject to the other region with its Object Storage
//! work request (which spells success `COMPLETED`), then CreateImage from the object there
//! ([`Client::create_image`] with an `objectStorageTuple` source).
//!
//! Wire shapes as Oracle's Go SDK models them (oracle/terraform-provider-oci, vendored
//! `oci-go-sdk/v65/core/export_image_via_object_storage_tuple_details.go`,
//! `oci-go-sdk/v65/objectstorage/copy_object_details.go`, `create_bucket_details.go`,
//! `work_request.go`, `work_request_error.go`; paths from `objectstorage_client.go`).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::call::{Call, MutationOptions, Response};
use super::client::Client;
use super::error::OciError;
use super::models::Image;
use super::object_storage::ObjectStorage;
use super::wait::{poll, WaitOptions};

/// ExportImageDetails with an `objectStorageTuple` destination.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExportImageToObject {
    /// Always `objectStorageTuple`.
    pub destination_type: &'static str,
    pub namespace_name: String,
    pub bucket_name: String,
    pub object_name: String,
    /// `OCI` (the default: QCOW2 with OCI's metadata, importable in another region).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_format: Option<String>,
}

impl ExportImageToObject {
    pub fn new(namespace: &str, bucket: &str, object: &str) -> Self {
        ExportImageToObject {
            destination_type: "objectStorageTuple",
            namespace_name: namespace.to_string(),
            bucket_name: bucket.to_string(),
            object_name: object.to_string(),
            export_format: Some("OCI".into()),
        }
    }
}

/// CopyObjectDetails (the fields kiln sends).
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CopyObjectDetails {
    pub source_object_name: String,
    pub destination_region: String,
    pub destination_namespace: String,
    pub destination_bucket: String,
    pub destination_object_name: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        rename = "sourceObjectIfMatchETag"
    )]
    pub source_object_if_match_etag: Option<String>,
}

/// Object Storage's WorkRequest.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectWorkRequest {
    pub id: String,
    #[serde(default)]
    pub operation_type: Option<String>,
    pub status: String,
    #[serde(default)]
    pub percent_complete: Option<f64>,
}

/// Object Storage's WorkRequestError.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ObjectWorkRequestError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateBucketDetails<'a> {
    name: &'a str,
    compartment_id: &'a str,
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Client {
    /// ExportImage; the image (EXPORTING) and the export's work request.
    pub async fn export_image(
        &self,
        id: &str,
        details: &ExportImageToObject,
        opts: &MutationOptions,
    ) -> Result<Response<Image>, OciError> {
        self.send_json(
            Call::new(
                "ExportImage",
                Method::POST,
                format!("/images/{}/actions/export", enc(id)),
            )
            .resource(id)
            .json(details)
            .mutation(opts, true),
        )
        .await
    }
}

impl ObjectStorage {
    /// CreateBucket (a private, standard-tier bucket).
    pub async fn create_bucket(
        &self,
        namespace: &str,
        name: &str,
        compartment_id: &str,
    ) -> Result<(), OciError> {
        let call = Call::new(
            "CreateBucket",
            Method::POST,
            format!("/n/{}/b", enc(namespace)),
        )
        .unversioned()
        .resource(&format!("{namespace}/{name}"))
        .json(&CreateBucketDetails {
            name,
            compartment_id,
        });
        self.client().send(call).await.map(|_| ())
    }

    /// CopyObject; the copy's work request id.
    pub async fn copy_object(
        &self,
        namespace: &str,
        bucket: &str,
        details: &CopyObjectDetails,
    ) -> Result<String, OciError> {
        let call = Call::new(
            "CopyObject",
            Method::POST,
            format!("/n/{}/b/{}/actions/copyObject", enc(namespace), enc(bucket)),
        )
        .unversioned()
        .resource(&format!(
            "{namespace}/{bucket}/{}",
            details.source_object_name
        ))
        .json(details);
        let r = self.client().send(call).await?;
        Ok(r.opc_work_request_id.unwrap_or_default())
    }

    /// GetWorkRequest (Object Storage).
    pub async fn get_work_request(
        &self,
        id: &str,
    ) -> Result<Response<ObjectWorkRequest>, OciError> {
        let call = Call::new(
            "GetObjectStorageWorkRequest",
            Method::GET,
            format!("/workRequests/{}", enc(id)),
        )
        .unversioned()
        .resource(id);
        self.client().send_json(call).await
    }

    /// ListWorkRequestErrors (Object Storage).
    pub async fn list_work_request_errors(
        &self,
        id: &str,
    ) -> Result<Vec<ObjectWorkRequestError>, OciError> {
        let call = Call::new(
            "ListObjectStorageWorkRequestErrors",
            Method::GET,
            format!("/workRequests/{}/errors", enc(id)),
        )
        .unversioned()
        .resource(id);
        Ok(self.client().send_json(call).await?.body)
    }

    /// Wait until a copy's work request is COMPLETED; FAILED or CANCELED is an error with its
    /// errors.
    pub async fn wait_for_copy(&self, id: &str, opts: &WaitOptions) -> Result<(), OciError> {
        let r = poll(
            opts,
            "GetObjectStorageWorkRequest",
            id,
            "COMPLETED",
            || Box::pin(self.get_work_request(id)),
            |w: &ObjectWorkRequest| w.status.clone(),
            |s| matches!(s, "COMPLETED" | "FAILED" | "CANCELED"),
            |_| false,
        )
        .await?;
        if r.body.status == "COMPLETED" {
            return Ok(());
        }
        let errors = self.list_work_request_errors(id).await.unwrap_or_default();
        let why: Vec<String> = errors.iter().filter_map(|e| e.message.clone()).collect();
        Err(OciError {
            kind: super::error::ErrorKind::Conflict,
            operation: "CopyObject",
            resource: Some(id.to_string()),
            status: None,
            code: "CopyFailed".into(),
            message: format!(
                "the copy's work request is {}: {}",
                r.body.status,
                why.join("; ")
            ),
            opc_request_id: r.opc_request_id,
            attempts: 1,
            help: None,
        })
    }
}
