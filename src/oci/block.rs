//! The Block Volume calls kiln makes on an instance's boot volume: find it (ListBootVolumeAttachments
//! of the instance), read it (GetBootVolume, for its etag and values), change its performance
//! (UpdateBootVolume `vpusPerGB`) and its Vault key (UpdateBootVolumeKmsKey), each guarded by
//! If-Match, and wait for it to be AVAILABLE again.
//!
//! What was read (oci-go-sdk v65, vendored in oracle/terraform-provider-oci):
//! `core/core_blockstorage_client.go` (`PUT /bootVolumes/{bootVolumeId}`,
//! `PUT /bootVolumes/{bootVolumeId}/kmsKey`), `core/update_boot_volume_request_response.go` and
//! `core/update_boot_volume_kms_key_request_response.go` (`if-match` header; the answers are a
//! BootVolume and a BootVolumeKmsKey `{kmsKeyId}`, each with an `etag`),
//! `core/update_boot_volume_details.go` (`vpusPerGB`: 10 balanced, 20 higher, 30–120 ultra high),
//! `core/update_boot_volume_kms_key_details.go` (`kmsKeyId`), `core/boot_volume.go`
//! (`lifecycleState` PROVISIONING, RESTORING, AVAILABLE, TERMINATING, TERMINATED, FAULTY), and the
//! provider's `internal/service/core/core_instance_resource.go` (`updateBootVolumeKmsKey`,
//! `updateBootVolumeSizeInGbs`: after either call it waits while the volume is PROVISIONING).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::client::{Call, Client, MutationOptions, Response};
use super::compute::{all_pages, enc};
use super::error::OciError;
use super::wait::WaitOptions;

/// A boot volume (the fields kiln reads; the rest kept in `extra`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootVolume {
    pub id: String,
    pub lifecycle_state: String,
    #[serde(default, rename = "vpusPerGB")]
    pub vpus_per_gb: Option<u64>,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A boot volume attachment (the fields kiln reads).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootVolumeAttachment {
    pub id: String,
    pub boot_volume_id: String,
    pub instance_id: String,
    pub lifecycle_state: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Client {
    /// The boot volume attachments of one instance (ListBootVolumeAttachments: availability
    /// domain and compartment, as OCI requires, and `instanceId`), every page.
    pub async fn list_boot_volume_attachments(
        &self,
        availability_domain: &str,
        compartment_id: &str,
        instance_id: &str,
    ) -> Result<Vec<BootVolumeAttachment>, OciError> {
        all_pages(|page| async move {
            let call = Call::new(
                "ListBootVolumeAttachments",
                Method::GET,
                "/bootVolumeAttachments",
            )
            .query("availabilityDomain", Some(availability_domain))
            .query("compartmentId", Some(compartment_id))
            .query("instanceId", Some(instance_id))
            .query("limit", Some(1000))
            .query("page", page.as_deref())
            .resource(instance_id);
            self.send_json(call).await
        })
        .await
    }

    pub async fn get_boot_volume(&self, id: &str) -> Result<Response<BootVolume>, OciError> {
        self.send_json(
            Call::new(
                "GetBootVolume",
                Method::GET,
                format!("/bootVolumes/{}", enc(id)),
            )
            .resource(id),
        )
        .await
    }

    /// UpdateBootVolume with `vpusPerGB` only (the volume's performance), guarded by
    /// `opts.if_match`.
    pub async fn update_boot_volume_vpus(
        &self,
        id: &str,
        vpus_per_gb: u64,
        opts: &MutationOptions,
    ) -> Result<Response<BootVolume>, OciError> {
        let call = Call::new(
            "UpdateBootVolume",
            Method::PUT,
            format!("/bootVolumes/{}", enc(id)),
        )
        .resource(id)
        .json(&json!({ "vpusPerGB": vpus_per_gb }))
        .mutation(opts, false);
        self.send_json(call).await
    }

    /// UpdateBootVolumeKmsKey (`kmsKeyId`), guarded by `opts.if_match`; the answer is the key.
    pub async fn update_boot_volume_kms_key(
        &self,
        id: &str,
        kms_key_id: &str,
        opts: &MutationOptions,
    ) -> Result<Response<Value>, OciError> {
        let call = Call::new(
            "UpdateBootVolumeKmsKey",
            Method::PUT,
            format!("/bootVolumes/{}/kmsKey", enc(id)),
        )
        .resource(id)
        .json(&json!({ "kmsKeyId": kms_key_id }))
        .mutation(opts, false);
        self.send_json(call).await
    }

    /// GetBootVolume until it is AVAILABLE (an update leaves it PROVISIONING a while).
    pub async fn wait_for_boot_volume(
        &self,
        id: &str,
        opts: &WaitOptions,
    ) -> Result<Response<BootVolume>, OciError> {
        super::wait::poll(
            opts,
            "GetBootVolume",
            id,
            "AVAILABLE",
            || Box::pin(self.get_boot_volume(id)),
            |v: &BootVolume| v.lifecycle_state.clone(),
            |s| s == "AVAILABLE",
            |s| matches!(s, "TERMINATING" | "TERMINATED" | "FAULTY"),
        )
        .await
    }
}
