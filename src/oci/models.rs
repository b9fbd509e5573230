//! Compute wire models (camelCase JSON, as in Oracle's SDK models). Fields kiln reads are typed;
//! every other field is kept in `extra`, never dropped, so a resource read and written back (or
//! stored in state) loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub type FreeformTags = BTreeMap<String, String>;
pub type DefinedTags = BTreeMap<String, BTreeMap<String, Value>>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub id: String,
    pub compartment_id: String,
    pub availability_domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub lifecycle_state: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub shape: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub freeform_tags: FreeformTags,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defined_tags: DefinedTags,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub id: String,
    pub compartment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub lifecycle_state: String,
    #[serde(default)]
    pub operating_system: String,
    #[serde(default)]
    pub operating_system_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub freeform_tags: FreeformTags,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defined_tags: DefinedTags,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequestResource {
    pub action_type: String,
    pub entity_type: String,
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_uri: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequest {
    pub id: String,
    pub operation_type: String,
    pub status: String,
    #[serde(default)]
    pub compartment_id: String,
    #[serde(default)]
    pub resources: Vec<WorkRequestResource>,
    #[serde(default)]
    pub percent_complete: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_accepted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_finished: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequestError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub timestamp: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    pub id: String,
    pub compartment_id: String,
    pub vcn_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub cidr_block: Option<String>,
    #[serde(default)]
    pub lifecycle_state: String,
    #[serde(default)]
    pub prohibit_public_ip_on_vnic: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vcn {
    pub id: String,
    pub compartment_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub lifecycle_state: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VnicAttachment {
    pub id: String,
    pub instance_id: String,
    #[serde(default)]
    pub vnic_id: Option<String>,
    pub subnet_id: String,
    pub lifecycle_state: String,
    #[serde(default)]
    pub nic_index: Option<u32>,
    #[serde(default)]
    pub availability_domain: Option<String>,
    #[serde(default)]
    pub time_created: Option<String>,
    // No `extra`: an attachment is only read, never written back, and a compartment's listing
    // is read whole (10,000 attachments kept every field as JSON: BENCHMARKS.md section 6).
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vnic {
    pub id: String,
    pub subnet_id: String,
    #[serde(default)]
    pub is_primary: Option<bool>,
    #[serde(default)]
    pub private_ip: Option<String>,
    #[serde(default)]
    pub public_ip: Option<String>,
    /// The DNS hostname of the primary private IP (with the subnet's domain, the FQDN).
    #[serde(default)]
    pub hostname_label: Option<String>,
    #[serde(default)]
    pub lifecycle_state: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A private IP (ListPrivateIps): `is_primary` marks a VNIC's primary private IP, whose
/// hostname label is the VNIC's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateIp {
    pub id: String,
    #[serde(default)]
    pub vnic_id: Option<String>,
    #[serde(default)]
    pub subnet_id: Option<String>,
    #[serde(default)]
    pub ip_address: Option<String>,
    #[serde(default)]
    pub is_primary: Option<bool>,
    #[serde(default)]
    pub hostname_label: Option<String>,
    #[serde(default)]
    pub compartment_id: Option<String>,
    #[serde(default)]
    pub availability_domain: Option<String>,
    // No `extra` (as `VnicAttachment`): only read, and a subnet's listing is read whole.
}

/// A public IP (ListPublicIps): an ephemeral one assigned to a private IP names it in
/// `private_ip_id`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicIp {
    pub id: String,
    #[serde(default)]
    pub ip_address: Option<String>,
    #[serde(default)]
    pub private_ip_id: Option<String>,
    #[serde(default)]
    pub assigned_entity_id: Option<String>,
    #[serde(default)]
    pub assigned_entity_type: Option<String>,
    #[serde(default)]
    pub lifecycle_state: Option<String>,
    #[serde(default)]
    pub lifetime: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    // No `extra`: only read, and a compartment's listing per AD is read whole.
}

/// Where a launched instance boots from (`sourceType`: `image` or `bootVolume`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sourceType", rename_all = "camelCase")]
pub enum InstanceSourceDetails {
    #[serde(rename = "image", rename_all = "camelCase")]
    Image {
        image_id: String,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            rename = "bootVolumeSizeInGBs"
        )]
        boot_volume_size_in_gbs: Option<u64>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            rename = "bootVolumeVpusPerGB"
        )]
        boot_volume_vpus_per_gb: Option<u64>,
        /// The Vault key of the boot volume.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kms_key_id: Option<String>,
    },
    #[serde(rename = "bootVolume", rename_all = "camelCase")]
    BootVolume { boot_volume_id: String },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShapeConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocpus: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "memoryInGBs"
    )]
    pub memory_in_gbs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_ocpu_utilization: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateVnicDetails {
    pub subnet_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assign_public_ip: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchInstanceDetails {
    pub availability_domain: String,
    pub compartment_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape_config: Option<ShapeConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_vnic_details: Option<CreateVnicDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_details: Option<InstanceSourceDetails>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub freeform_tags: FreeformTags,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defined_tags: DefinedTags,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// UpdateInstanceDetails: fields left out are not changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateInstanceDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape_config: Option<ShapeConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeform_tags: Option<FreeformTags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defined_tags: Option<DefinedTags>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The eight instance actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceAction {
    Stop,
    Start,
    SoftReset,
    Reset,
    SoftStop,
    SendDiagnosticInterrupt,
    DiagnosticReboot,
    RebootMigrate,
}

impl InstanceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceAction::Stop => "STOP",
            InstanceAction::Start => "START",
            InstanceAction::SoftReset => "SOFTRESET",
            InstanceAction::Reset => "RESET",
            InstanceAction::SoftStop => "SOFTSTOP",
            InstanceAction::SendDiagnosticInterrupt => "SENDDIAGNOSTICINTERRUPT",
            InstanceAction::DiagnosticReboot => "DIAGNOSTICREBOOT",
            InstanceAction::RebootMigrate => "REBOOTMIGRATE",
        }
    }
}

/// InstancePowerActionDetails (discriminator `actionType`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "actionType", rename_all = "camelCase")]
pub enum InstancePowerActionDetails {
    #[serde(rename = "reset", rename_all = "camelCase")]
    Reset {
        allow_dense_reboot_migration: Option<bool>,
    },
    #[serde(rename = "softreset", rename_all = "camelCase")]
    SoftReset {
        allow_dense_reboot_migration: Option<bool>,
    },
    #[serde(rename = "rebootMigrate", rename_all = "camelCase")]
    RebootMigrate {
        delete_local_storage: Option<bool>,
        time_scheduled: Option<String>,
    },
}

/// Where an image comes from when it is not captured from an instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sourceType", rename_all = "camelCase")]
pub enum ImageSourceDetails {
    #[serde(rename = "objectStorageTuple", rename_all = "camelCase")]
    ObjectStorageTuple {
        namespace_name: String,
        bucket_name: String,
        object_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operating_system: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operating_system_version: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_image_type: Option<String>,
    },
    #[serde(rename = "objectStorageUri", rename_all = "camelCase")]
    ObjectStorageUri {
        source_uri: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operating_system: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operating_system_version: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_image_type: Option<String>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateImageDetails {
    pub compartment_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_source_details: Option<ImageSourceDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_mode: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub freeform_tags: FreeformTags,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defined_tags: DefinedTags,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateImageDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_system_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeform_tags: Option<FreeformTags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defined_tags: Option<DefinedTags>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeCompartmentDetails {
    pub compartment_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let wire = json!({"id": "i", "compartmentId": "c", "availabilityDomain": "AD", "lifecycleState": "RUNNING",
            "region": "iad", "shape": "VM.Standard.E4.Flex", "shapeConfig": {"ocpus": 1.0, "memoryInGBs": 16.0},
            "launchOptions": {"firmware": "UEFI_64"}, "sourceDetails": {"sourceType": "image", "imageId": "img"}});
        let i: Instance = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(serde_json::to_value(&i).unwrap(), wire);
    }

    #[test]
    fn launch_details_serialise_with_sdk_names() {
        let d = LaunchInstanceDetails {
            availability_domain: "AD".into(),
            compartment_id: "c".into(),
            display_name: Some("web".into()),
            shape: Some("VM.Standard.E4.Flex".into()),
            shape_config: Some(ShapeConfig {
                ocpus: Some(1.0),
                memory_in_gbs: Some(16.0),
                ..Default::default()
            }),
            fault_domain: None,
            create_vnic_details: Some(CreateVnicDetails {
                subnet_id: "s".into(),
                assign_public_ip: Some(false),
                extra: Map::new(),
            }),
            source_details: Some(InstanceSourceDetails::Image {
                image_id: "img".into(),
                boot_volume_size_in_gbs: Some(50),
                boot_volume_vpus_per_gb: None,
                kms_key_id: None,
            }),
            metadata: BTreeMap::new(),
            freeform_tags: BTreeMap::new(),
            defined_tags: BTreeMap::new(),
            extra: Map::new(),
        };
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!({"availabilityDomain": "AD", "compartmentId": "c", "displayName": "web", "shape": "VM.Standard.E4.Flex",
                "shapeConfig": {"ocpus": 1.0, "memoryInGBs": 16.0}, "createVnicDetails": {"subnetId": "s", "assignPublicIp": false},
                "sourceDetails": {"sourceType": "image", "imageId": "img", "bootVolumeSizeInGBs": 50}})
        );
    }
}
