//! OCI's JSON (camelCase, as GetInstance/GetImage return it and as LaunchInstanceDetails /
//! CreateImageDetails send it) → the attributes of the Terraform OCI provider's
//! `oci_core_instance` and `oci_core_image` resources: their names, their nesting (a nested object
//! is a block, a list of one object), their types (`boot_volume_size_in_gbs` and
//! `assign_public_ip` are strings there), as the provider's schema and its `SetData` /
//! `…ToMap` functions write them (oracle/terraform-provider-oci
//! `internal/service/core/core_instance_resource.go`: `Schema`, `SetData`,
//! `InstanceSourceDetailsToMap`, `CreateVnicDetailsToMap`, `PlatformConfigToMap`,
//! `PreemptibleInstanceConfigDetailsToMap`; `core_image_resource.go`; `helpers_core.go`:
//! `LaunchOptionsToMap`; `tfresource.DefinedTagsToMap` flattens defined tags to
//! `"namespace.key"`). A field the tables below do not name is not shown.
//!
//! A value kiln knows only after apply (the id of a resource the same apply creates, an
//! `image_lookup` resolved at apply) converts to [`UNKNOWN`]; [`split_unknown`] turns a converted
//! object into Terraform's `after` (known values only) and `after_unknown` (`true` where unknown).

use serde_json::{Map, Value};

/// Stands for a value known only after apply while a resource is converted.
pub const UNKNOWN: &str = "\u{0}(known after apply)";

/// How one provider attribute is read from OCI's JSON.
enum Ty {
    /// A string, a number or a bool, as it is.
    Plain,
    /// An integer OCI sends as a number that the provider's schema types as a string.
    IntString,
    /// A bool the provider's schema types as a string (`assign_public_ip`).
    BoolString,
    /// A map of strings.
    Map,
    /// Defined tags `{namespace: {key: value}}` → `{"namespace.key": "value"}`.
    Tags,
    /// A list of strings (`nsg_ids`).
    Strings,
    /// A nested object → a block (a list of one object).
    Block(&'static [Field]),
    /// A list of objects → a list of blocks.
    Blocks(&'static [Field]),
}

/// A provider attribute, the OCI keys it is read from (the first present), and its type.
struct Field(&'static str, &'static [&'static str], Ty);

const AGENT_PLUGIN: &[Field] = &[
    Field("desired_state", &["desiredState"], Ty::Plain),
    Field("name", &["name"], Ty::Plain),
];

const AGENT_CONFIG: &[Field] = &[
    Field(
        "are_all_plugins_disabled",
        &["areAllPluginsDisabled"],
        Ty::Plain,
    ),
    Field(
        "is_management_disabled",
        &["isManagementDisabled"],
        Ty::Plain,
    ),
    Field(
        "is_monitoring_disabled",
        &["isMonitoringDisabled"],
        Ty::Plain,
    ),
    Field(
        "plugins_config",
        &["pluginsConfig"],
        Ty::Blocks(AGENT_PLUGIN),
    ),
];

const AVAILABILITY_CONFIG: &[Field] = &[
    Field(
        "is_live_migration_preferred",
        &["isLiveMigrationPreferred"],
        Ty::Plain,
    ),
    Field("recovery_action", &["recoveryAction"], Ty::Plain),
];

const INSTANCE_OPTIONS: &[Field] = &[Field(
    "are_legacy_imds_endpoints_disabled",
    &["areLegacyImdsEndpointsDisabled"],
    Ty::Plain,
)];

const LAUNCH_OPTIONS: &[Field] = &[
    Field("boot_volume_type", &["bootVolumeType"], Ty::Plain),
    Field("firmware", &["firmware"], Ty::Plain),
    Field(
        "is_consistent_volume_naming_enabled",
        &["isConsistentVolumeNamingEnabled"],
        Ty::Plain,
    ),
    Field(
        "is_pv_encryption_in_transit_enabled",
        &["isPvEncryptionInTransitEnabled"],
        Ty::Plain,
    ),
    Field("network_type", &["networkType"], Ty::Plain),
    Field(
        "remote_data_volume_type",
        &["remoteDataVolumeType"],
        Ty::Plain,
    ),
];

const PLATFORM_CONFIG: &[Field] = &[
    Field("type", &["type"], Ty::Plain),
    Field(
        "are_virtual_instructions_enabled",
        &["areVirtualInstructionsEnabled"],
        Ty::Plain,
    ),
    Field("config_map", &["configMap"], Ty::Map),
    Field(
        "is_access_control_service_enabled",
        &["isAccessControlServiceEnabled"],
        Ty::Plain,
    ),
    Field(
        "is_input_output_memory_management_unit_enabled",
        &["isInputOutputMemoryManagementUnitEnabled"],
        Ty::Plain,
    ),
    Field(
        "is_measured_boot_enabled",
        &["isMeasuredBootEnabled"],
        Ty::Plain,
    ),
    Field(
        "is_memory_encryption_enabled",
        &["isMemoryEncryptionEnabled"],
        Ty::Plain,
    ),
    Field(
        "is_secure_boot_enabled",
        &["isSecureBootEnabled"],
        Ty::Plain,
    ),
    Field(
        "is_symmetric_multi_threading_enabled",
        &["isSymmetricMultiThreadingEnabled"],
        Ty::Plain,
    ),
    Field(
        "is_trusted_platform_module_enabled",
        &["isTrustedPlatformModuleEnabled"],
        Ty::Plain,
    ),
    Field("numa_nodes_per_socket", &["numaNodesPerSocket"], Ty::Plain),
    Field(
        "percentage_of_cores_enabled",
        &["percentageOfCoresEnabled"],
        Ty::Plain,
    ),
];

const PREEMPTION_ACTION: &[Field] = &[
    Field("type", &["type"], Ty::Plain),
    Field("preserve_boot_volume", &["preserveBootVolume"], Ty::Plain),
];

const PREEMPTIBLE: &[Field] = &[Field(
    "preemption_action",
    &["preemptionAction"],
    Ty::Block(PREEMPTION_ACTION),
)];

const SHAPE_CONFIG: &[Field] = &[
    Field(
        "baseline_ocpu_utilization",
        &["baselineOcpuUtilization"],
        Ty::Plain,
    ),
    Field("gpu_description", &["gpuDescription"], Ty::Plain),
    Field("gpus", &["gpus"], Ty::Plain),
    Field(
        "local_disk_description",
        &["localDiskDescription"],
        Ty::Plain,
    ),
    Field("local_disks", &["localDisks"], Ty::Plain),
    Field(
        "local_disks_total_size_in_gbs",
        &["localDisksTotalSizeInGBs"],
        Ty::Plain,
    ),
    Field("max_vnic_attachments", &["maxVnicAttachments"], Ty::Plain),
    Field("memory_in_gbs", &["memoryInGBs"], Ty::Plain),
    Field(
        "networking_bandwidth_in_gbps",
        &["networkingBandwidthInGbps"],
        Ty::Plain,
    ),
    Field("nvmes", &["nvmes"], Ty::Plain),
    Field("ocpus", &["ocpus"], Ty::Plain),
    Field(
        "processor_description",
        &["processorDescription"],
        Ty::Plain,
    ),
    Field("vcpus", &["vcpus"], Ty::Plain),
];

const SOURCE_DETAILS: &[Field] = &[
    Field("source_type", &["sourceType"], Ty::Plain),
    // `InstanceSourceDetailsToMap`: the image's or the boot volume's id.
    Field("source_id", &["imageId", "bootVolumeId"], Ty::Plain),
    Field(
        "boot_volume_size_in_gbs",
        &["bootVolumeSizeInGBs"],
        Ty::IntString,
    ),
    Field(
        "boot_volume_vpus_per_gb",
        &["bootVolumeVpusPerGB"],
        Ty::IntString,
    ),
    Field("kms_key_id", &["kmsKeyId"], Ty::Plain),
];

const CREATE_VNIC_DETAILS: &[Field] = &[
    Field(
        "assign_private_dns_record",
        &["assignPrivateDnsRecord"],
        Ty::Plain,
    ),
    Field("assign_public_ip", &["assignPublicIp"], Ty::BoolString),
    Field("defined_tags", &["definedTags"], Ty::Tags),
    Field("display_name", &["displayName"], Ty::Plain),
    Field("freeform_tags", &["freeformTags"], Ty::Map),
    Field("hostname_label", &["hostnameLabel"], Ty::Plain),
    Field("nsg_ids", &["nsgIds"], Ty::Strings),
    Field("private_ip", &["privateIp"], Ty::Plain),
    Field(
        "skip_source_dest_check",
        &["skipSourceDestCheck"],
        Ty::Plain,
    ),
    Field("subnet_id", &["subnetId"], Ty::Plain),
];

const INSTANCE: &[Field] = &[
    Field("agent_config", &["agentConfig"], Ty::Block(AGENT_CONFIG)),
    Field(
        "availability_config",
        &["availabilityConfig"],
        Ty::Block(AVAILABILITY_CONFIG),
    ),
    Field("availability_domain", &["availabilityDomain"], Ty::Plain),
    Field(
        "capacity_reservation_id",
        &["capacityReservationId"],
        Ty::Plain,
    ),
    Field("compartment_id", &["compartmentId"], Ty::Plain),
    Field(
        "create_vnic_details",
        &["createVnicDetails"],
        Ty::Block(CREATE_VNIC_DETAILS),
    ),
    Field("dedicated_vm_host_id", &["dedicatedVmHostId"], Ty::Plain),
    Field("defined_tags", &["definedTags"], Ty::Tags),
    Field("display_name", &["displayName"], Ty::Plain),
    Field("extended_metadata", &["extendedMetadata"], Ty::Map),
    Field("fault_domain", &["faultDomain"], Ty::Plain),
    Field("freeform_tags", &["freeformTags"], Ty::Map),
    Field("id", &["id"], Ty::Plain),
    Field("image", &["imageId"], Ty::Plain),
    Field(
        "instance_options",
        &["instanceOptions"],
        Ty::Block(INSTANCE_OPTIONS),
    ),
    Field("ipxe_script", &["ipxeScript"], Ty::Plain),
    Field(
        "is_pv_encryption_in_transit_enabled",
        &["isPvEncryptionInTransitEnabled"],
        Ty::Plain,
    ),
    Field("launch_mode", &["launchMode"], Ty::Plain),
    Field(
        "launch_options",
        &["launchOptions"],
        Ty::Block(LAUNCH_OPTIONS),
    ),
    Field("metadata", &["metadata"], Ty::Map),
    Field(
        "platform_config",
        &["platformConfig"],
        Ty::Block(PLATFORM_CONFIG),
    ),
    Field(
        "preemptible_instance_config",
        &["preemptibleInstanceConfig"],
        Ty::Block(PREEMPTIBLE),
    ),
    Field("region", &["region"], Ty::Plain),
    Field("shape", &["shape"], Ty::Plain),
    Field("shape_config", &["shapeConfig"], Ty::Block(SHAPE_CONFIG)),
    Field(
        "source_details",
        &["sourceDetails"],
        Ty::Block(SOURCE_DETAILS),
    ),
    Field("state", &["lifecycleState"], Ty::Plain),
    Field("system_tags", &["systemTags"], Ty::Tags),
    Field("time_created", &["timeCreated"], Ty::Plain),
];

const IMAGE_SOURCE_DETAILS: &[Field] = &[
    Field("source_type", &["sourceType"], Ty::Plain),
    Field("bucket_name", &["bucketName"], Ty::Plain),
    Field("namespace_name", &["namespaceName"], Ty::Plain),
    Field("object_name", &["objectName"], Ty::Plain),
    Field("operating_system", &["operatingSystem"], Ty::Plain),
    Field(
        "operating_system_version",
        &["operatingSystemVersion"],
        Ty::Plain,
    ),
    Field("source_image_type", &["sourceImageType"], Ty::Plain),
    Field("source_uri", &["sourceUri"], Ty::Plain),
];

const AGENT_FEATURES: &[Field] = &[
    Field(
        "is_management_supported",
        &["isManagementSupported"],
        Ty::Plain,
    ),
    Field(
        "is_monitoring_supported",
        &["isMonitoringSupported"],
        Ty::Plain,
    ),
];

const IMAGE: &[Field] = &[
    Field(
        "agent_features",
        &["agentFeatures"],
        Ty::Block(AGENT_FEATURES),
    ),
    Field("base_image_id", &["baseImageId"], Ty::Plain),
    Field(
        "billable_size_in_gbs",
        &["billableSizeInGBs"],
        Ty::IntString,
    ),
    Field("compartment_id", &["compartmentId"], Ty::Plain),
    Field("create_image_allowed", &["createImageAllowed"], Ty::Plain),
    Field("defined_tags", &["definedTags"], Ty::Tags),
    Field("display_name", &["displayName"], Ty::Plain),
    Field("freeform_tags", &["freeformTags"], Ty::Map),
    Field("id", &["id"], Ty::Plain),
    Field(
        "image_source_details",
        &["imageSourceDetails"],
        Ty::Block(IMAGE_SOURCE_DETAILS),
    ),
    Field("instance_id", &["instanceId"], Ty::Plain),
    Field("launch_mode", &["launchMode"], Ty::Plain),
    Field(
        "launch_options",
        &["launchOptions"],
        Ty::Block(LAUNCH_OPTIONS),
    ),
    Field("listing_type", &["listingType"], Ty::Plain),
    Field("operating_system", &["operatingSystem"], Ty::Plain),
    Field(
        "operating_system_version",
        &["operatingSystemVersion"],
        Ty::Plain,
    ),
    Field("size_in_mbs", &["sizeInMBs"], Ty::IntString),
    Field("state", &["lifecycleState"], Ty::Plain),
    Field("time_created", &["timeCreated"], Ty::Plain),
];

/// Whether `v` is a placeholder for a value known after apply (`{"$ref": …}`, an
/// `image_lookup` resolved at apply).
fn placeholder(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| m.len() == 1 && m.keys().all(|k| k.starts_with('$')))
}

fn convert(v: &Value, ty: &Ty) -> Option<Value> {
    if placeholder(v) {
        return Some(Value::String(UNKNOWN.into()));
    }
    Some(match (ty, v) {
        (_, Value::Null) => return None,
        (Ty::Plain, v) => v.clone(),
        (Ty::IntString, Value::Number(n)) => Value::String(match n.as_f64() {
            Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
            _ => n.to_string(),
        }),
        (Ty::BoolString, Value::Bool(b)) => Value::String(b.to_string()),
        (Ty::IntString | Ty::BoolString, v) => v.clone(),
        (Ty::Map, Value::Object(m)) => Value::Object(m.clone()),
        (Ty::Tags, Value::Object(namespaces)) => Value::Object(
            namespaces
                .iter()
                .flat_map(|(ns, keys)| {
                    keys.as_object()
                        .into_iter()
                        .flatten()
                        .map(move |(k, v)| (format!("{ns}.{k}"), v.clone()))
                })
                .collect(),
        ),
        (Ty::Strings, Value::Array(a)) => Value::Array(
            a.iter()
                .map(|x| match placeholder(x) {
                    true => Value::String(UNKNOWN.into()),
                    false => x.clone(),
                })
                .collect(),
        ),
        (Ty::Block(fields), Value::Object(_)) => Value::Array(vec![object(v, fields)]),
        (Ty::Blocks(fields), Value::Array(items)) => {
            Value::Array(items.iter().map(|i| object(i, fields)).collect())
        }
        _ => return None,
    })
}

fn object(body: &Value, fields: &[Field]) -> Value {
    let mut out = Map::new();
    for Field(name, keys, ty) in fields {
        let found = keys.iter().find_map(|k| body.get(*k));
        if let Some(v) = found.and_then(|v| convert(v, ty)) {
            out.insert((*name).to_string(), v);
        }
    }
    Value::Object(out)
}

/// An instance's attributes: `body` is a GetInstance or a LaunchInstanceDetails; `vnic` the
/// primary VNIC in CreateVnicDetails' form when `body` has none (a live instance: what kiln
/// recorded of its VNIC). The provider's top-level `subnet_id`, `private_ip`, `public_ip` and
/// `hostname_label` are the primary VNIC's (`SetData`).
pub fn instance(body: &Value, vnic: Option<&Value>, public_ip: Option<&str>) -> Value {
    let mut v = object(body, INSTANCE);
    let Value::Object(m) = &mut v else {
        unreachable!("an object")
    };
    let vnic = vnic.or_else(|| body.get("createVnicDetails"));
    if let Some(vnic) = vnic {
        m.insert(
            "create_vnic_details".into(),
            Value::Array(vec![object(vnic, CREATE_VNIC_DETAILS)]),
        );
        for (name, key) in [
            ("subnet_id", "subnetId"),
            ("private_ip", "privateIp"),
            ("hostname_label", "hostnameLabel"),
        ] {
            if let Some(x) = vnic.get(key).and_then(|x| convert(x, &Ty::Plain)) {
                m.insert(name.into(), x);
            }
        }
    }
    if let Some(ip) = public_ip {
        m.insert("public_ip".into(), Value::String(ip.into()));
    }
    v
}

/// An image's attributes from a GetImage or a CreateImageDetails.
pub fn image(body: &Value) -> Value {
    object(body, IMAGE)
}

/// Terraform's `after` and `after_unknown` of converted attributes: unknown values are left out
/// of the first and `true` in the second (which keeps the shape of blocks and lists).
pub fn split_unknown(v: &Value) -> (Value, Value) {
    fn walk(v: &Value) -> (Option<Value>, Value) {
        match v {
            Value::String(s) if s == UNKNOWN => (None, Value::Bool(true)),
            Value::Object(m) => {
                let (mut known, mut unknown) = (Map::new(), Map::new());
                for (k, x) in m {
                    let (kn, un) = walk(x);
                    if let Some(kn) = kn {
                        known.insert(k.clone(), kn);
                    }
                    if un != Value::Bool(false) && un != Value::Object(Map::new()) {
                        unknown.insert(k.clone(), un);
                    }
                }
                (Some(Value::Object(known)), Value::Object(unknown))
            }
            Value::Array(a) => {
                let parts: Vec<_> = a.iter().map(walk).collect();
                let any = parts.iter().any(|(_, u)| has_true(u));
                let known = parts
                    .iter()
                    .map(|(k, _)| k.clone().unwrap_or(Value::Null))
                    .collect();
                let unknown = match any {
                    true => Value::Array(parts.into_iter().map(|(_, u)| u).collect()),
                    false => Value::Bool(false),
                };
                (Some(Value::Array(known)), unknown)
            }
            other => (Some(other.clone()), Value::Bool(false)),
        }
    }
    fn has_true(v: &Value) -> bool {
        match v {
            Value::Bool(b) => *b,
            Value::Object(m) => m.values().any(has_true),
            Value::Array(a) => a.iter().any(has_true),
            _ => false,
        }
    }
    let (known, unknown) = walk(v);
    (known.unwrap_or(Value::Null), unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn launch_details_convert_to_the_providers_blocks_and_types() {
        let launch = json!({
            "availabilityDomain": "kIdk:US-ASHBURN-AD-1",
            "compartmentId": "ocid1.compartment.oc1..a",
            "shape": "VM.Standard.E4.Flex",
            "shapeConfig": {"ocpus": 1.0, "memoryInGBs": 16.0},
            "sourceDetails": {"sourceType": "image", "imageId": {"$ref": "image.golden"}, "bootVolumeSizeInGBs": 50},
            "createVnicDetails": {"subnetId": "ocid1.subnet.oc1.iad.s", "assignPublicIp": false},
            "instanceOptions": {"areLegacyImdsEndpointsDisabled": true},
            "definedTags": {"ops": {"team": "a"}},
        });
        let v = instance(&launch, None, None);
        assert_eq!(
            v["shape_config"],
            json!([{"memory_in_gbs": 16.0, "ocpus": 1.0}])
        );
        assert_eq!(
            v["create_vnic_details"][0]["assign_public_ip"],
            json!("false")
        );
        assert_eq!(v["subnet_id"], json!("ocid1.subnet.oc1.iad.s"));
        assert_eq!(
            v["source_details"][0]["boot_volume_size_in_gbs"],
            json!("50")
        );
        assert_eq!(v["defined_tags"], json!({"ops.team": "a"}));
        assert_eq!(
            v["instance_options"],
            json!([{"are_legacy_imds_endpoints_disabled": true}])
        );
        let (after, unknown) = split_unknown(&v);
        assert_eq!(after["source_details"][0].get("source_id"), None);
        assert_eq!(unknown["source_details"], json!([{"source_id": true}]));
        assert_eq!(unknown.get("shape_config"), None);
    }
}
