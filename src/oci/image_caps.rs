//! Typed calls for an image's shape compatibility entries and capability schemas (issue 24):
//! Add/Get/List/RemoveImageShapeCompatibilityEntry, ListComputeGlobalImageCapabilitySchemas,
//! GetComputeGlobalImageCapabilitySchemaVersion, and Create/List/Update/
//! DeleteComputeImageCapabilitySchema (Update and Delete If-Match'ed: the only two that take one).
//!
//! Paths, parameters and fields as oci-go-sdk v65 has them (vendored in
//! oracle/terraform-provider-oci): `core/core_compute_client.go`,
//! `core/add_image_shape_compatibility_entry_{details,request_response}.go`,
//! `core/image_shape_compatibility_{entry,summary}.go`, `core/image_{ocpu,memory}_constraints.go`,
//! `core/compute_global_image_capability_schema_summary.go`,
//! `core/compute_global_image_capability_schema_version.go`,
//! `core/compute_image_capability_schema{,_summary}.go`,
//! `core/{create,update}_compute_image_capability_schema_details.go`.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::client::{Call, Client, MutationOptions, Response};
use super::compute::{all_pages, enc};
use super::error::OciError;

/// `{min, max}` OCPUs (ImageOcpuConstraints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OcpuConstraints {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

/// `{minInGBs, maxInGBs}` (ImageMemoryConstraints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryConstraints {
    #[serde(rename = "minInGBs", skip_serializing_if = "Option::is_none")]
    pub min_in_gbs: Option<u64>,
    #[serde(rename = "maxInGBs", skip_serializing_if = "Option::is_none")]
    pub max_in_gbs: Option<u64>,
}

/// ImageShapeCompatibilityEntry / ImageShapeCompatibilitySummary.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShapeEntry {
    pub image_id: String,
    pub shape: String,
    #[serde(default)]
    pub ocpu_constraints: Option<OcpuConstraints>,
    #[serde(default)]
    pub memory_constraints: Option<MemoryConstraints>,
}

/// AddImageShapeCompatibilityEntryDetails.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddShapeEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocpu_constraints: Option<OcpuConstraints>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_constraints: Option<MemoryConstraints>,
}

/// ComputeGlobalImageCapabilitySchemaSummary (the fields kiln reads).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalSchema {
    pub id: String,
    #[serde(default)]
    pub current_version_name: Option<String>,
}

/// ComputeGlobalImageCapabilitySchemaVersion: descriptors by capability name.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalSchemaVersion {
    pub name: String,
    pub schema_data: Map<String, Value>,
}

/// ComputeImageCapabilitySchema (or its summary; the fields kiln reads).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSchema {
    pub id: String,
    pub image_id: String,
    #[serde(default)]
    pub schema_data: Map<String, Value>,
}

/// CreateComputeImageCapabilitySchemaDetails.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateImageSchema {
    pub compartment_id: String,
    pub compute_global_image_capability_schema_version_name: String,
    pub image_id: String,
    pub display_name: String,
    pub schema_data: Map<String, Value>,
}

impl Client {
    pub async fn add_image_shape(
        &self,
        image_id: &str,
        shape: &str,
        details: &AddShapeEntry,
    ) -> Result<Response<ShapeEntry>, OciError> {
        let call = Call::new(
            "AddImageShapeCompatibilityEntry",
            Method::PUT,
            format!("/images/{}/shapes/{}", enc(image_id), enc(shape)),
        )
        .resource(image_id)
        .json(details)
        .mutation(&MutationOptions::default(), false);
        self.send_json(call).await
    }

    pub async fn remove_image_shape(
        &self,
        image_id: &str,
        shape: &str,
    ) -> Result<Response<()>, OciError> {
        let call = Call::new(
            "RemoveImageShapeCompatibilityEntry",
            Method::DELETE,
            format!("/images/{}/shapes/{}", enc(image_id), enc(shape)),
        )
        .resource(image_id)
        .mutation(&MutationOptions::default(), false);
        Ok(self.send(call).await?.map(|_| ()))
    }

    /// Every compatibility entry of an image (all pages).
    pub async fn list_image_shapes(&self, image_id: &str) -> Result<Vec<ShapeEntry>, OciError> {
        all_pages(|page| async move {
            let call = Call::new(
                "ListImageShapeCompatibilityEntries",
                Method::GET,
                format!("/images/{}/shapes", enc(image_id)),
            )
            .resource(image_id)
            .query("limit", Some(1000))
            .query("page", page);
            self.send_json(call).await
        })
        .await
    }

    /// The global image capability schema (there is one).
    pub async fn global_capability_schema(&self) -> Result<Option<GlobalSchema>, OciError> {
        let call = Call::new(
            "ListComputeGlobalImageCapabilitySchemas",
            Method::GET,
            "/computeGlobalImageCapabilitySchemas",
        );
        let r: Response<Vec<GlobalSchema>> = self.send_json(call).await?;
        Ok(r.body.into_iter().next())
    }

    pub async fn global_capability_schema_version(
        &self,
        schema_id: &str,
        version: &str,
    ) -> Result<GlobalSchemaVersion, OciError> {
        let call = Call::new(
            "GetComputeGlobalImageCapabilitySchemaVersion",
            Method::GET,
            format!(
                "/computeGlobalImageCapabilitySchemas/{}/versions/{}",
                enc(schema_id),
                enc(version)
            ),
        )
        .resource(schema_id);
        Ok(self.send_json(call).await?.body)
    }

    /// The capability schema of an image, with its etag (`None`: it has none).
    pub async fn image_capability_schema(
        &self,
        compartment_id: &str,
        image_id: &str,
    ) -> Result<Option<(ImageSchema, Option<String>)>, OciError> {
        let call = Call::new(
            "ListComputeImageCapabilitySchemas",
            Method::GET,
            "/computeImageCapabilitySchemas",
        )
        .query("compartmentId", Some(compartment_id))
        .query("imageId", Some(image_id));
        let r: Response<Vec<ImageSchema>> = self.send_json(call).await?;
        let Some(s) = r.body.into_iter().next() else {
            return Ok(None);
        };
        // The summary has no etag: read the schema itself for one.
        let call = Call::new(
            "GetComputeImageCapabilitySchema",
            Method::GET,
            format!("/computeImageCapabilitySchemas/{}", enc(&s.id)),
        )
        .resource(&s.id);
        let full: Response<ImageSchema> = self.send_json(call).await?;
        Ok(Some((full.body, full.etag)))
    }

    pub async fn create_image_capability_schema(
        &self,
        details: &CreateImageSchema,
    ) -> Result<Response<ImageSchema>, OciError> {
        let call = Call::new(
            "CreateComputeImageCapabilitySchema",
            Method::POST,
            "/computeImageCapabilitySchemas",
        )
        .resource(&details.image_id)
        .json(details)
        .mutation(&MutationOptions::default(), true);
        self.send_json(call).await
    }

    pub async fn update_image_capability_schema(
        &self,
        id: &str,
        schema_data: &Map<String, Value>,
        opts: &MutationOptions,
    ) -> Result<Response<ImageSchema>, OciError> {
        let call = Call::new(
            "UpdateComputeImageCapabilitySchema",
            Method::PUT,
            format!("/computeImageCapabilitySchemas/{}", enc(id)),
        )
        .resource(id)
        .json(&serde_json::json!({ "schemaData": schema_data }))
        .mutation(opts, false);
        self.send_json(call).await
    }

    pub async fn delete_image_capability_schema(
        &self,
        id: &str,
        opts: &MutationOptions,
    ) -> Result<Response<()>, OciError> {
        let call = Call::new(
            "DeleteComputeImageCapabilitySchema",
            Method::DELETE,
            format!("/computeImageCapabilitySchemas/{}", enc(id)),
        )
        .resource(id)
        .mutation(opts, false);
        Ok(self.send(call).await?.map(|_| ()))
    }
}
