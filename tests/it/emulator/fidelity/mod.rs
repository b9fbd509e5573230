//! The emulator against what OCI does, one divergence per test (issue 14): nothing a client sends
//! is silently dropped, boot volumes, shapes and architectures, identity fixtures, VNIC IPs,
//! moves and reboots as lifecycles, work request logs, keyset pagination, failed imports, the
//! calls Terraform's OCI provider makes, and the emulator's own stats and request log.
//!
//! Requests are sent raw (signed by kiln's signer) so that the JSON on the wire is what is
//! checked. Lifecycles run at time scale 1.0 and are jumped over with [`fast_forward`] (the
//! emulator's own state), never waited for with sleeps.

//!
//! Here: the field tables every answer is checked against; [`launch`] (what a launch keeps,
//! boot volumes, shapes), [`identity`] (identity fixtures, VNIC IPs, subnets), [`lifecycles`]
//! (moves, reboots, pages, failed imports), [`terraform`] (the provider's calls, stats, the
//! request log, kiln's image lookup).

mod identity;
mod launch;
mod lifecycles;
mod terraform;

use serde_json::Value;

/// Every field of the SDK's `Instance` model (oci 2.189 `attribute_map`).
pub(super) const INSTANCE_FIELDS: &[&str] = &[
    "availabilityDomain",
    "capacityReservationId",
    "compartmentId",
    "placementConstraintDetails",
    "isAIEnterpriseEnabled",
    "clusterPlacementGroupId",
    "dedicatedVmHostId",
    "definedTags",
    "securityAttributes",
    "securityAttributesState",
    "displayName",
    "extendedMetadata",
    "faultDomain",
    "freeformTags",
    "id",
    "imageId",
    "ipxeScript",
    "launchMode",
    "launchOptions",
    "instanceOptions",
    "availabilityConfig",
    "preemptibleInstanceConfig",
    "lifecycleState",
    "metadata",
    "region",
    "shape",
    "shapeConfig",
    "isCrossNumaNode",
    "sourceDetails",
    "systemTags",
    "timeCreated",
    "agentConfig",
    "timeMaintenanceRebootDue",
    "platformConfig",
    "instanceConfigurationId",
    "licensingConfigs",
];

/// Every field of the SDK's `Image` model.
pub(super) const IMAGE_FIELDS: &[&str] = &[
    "baseImageId",
    "compartmentId",
    "createImageAllowed",
    "definedTags",
    "displayName",
    "freeformTags",
    "id",
    "launchMode",
    "launchOptions",
    "lifecycleState",
    "operatingSystem",
    "operatingSystemVersion",
    "agentFeatures",
    "listingType",
    "sizeInMBs",
    "billableSizeInGBs",
    "timeCreated",
];

/// Every field of the SDK's `BootVolume`, `BootVolumeAttachment`, `Vnic` and `Shape` models.
pub(super) const BOOT_VOLUME_FIELDS: &[&str] = &[
    "availabilityDomain",
    "compartmentId",
    "definedTags",
    "systemTags",
    "displayName",
    "freeformTags",
    "id",
    "imageId",
    "isHydrated",
    "clusterPlacementGroupId",
    "vpusPerGB",
    "lifecycleState",
    "sizeInGBs",
    "sizeInMBs",
    "sourceDetails",
    "timeCreated",
    "volumeGroupId",
    "kmsKeyId",
    "isAutoTuneEnabled",
    "autoTunedVpusPerGB",
    "bootVolumeReplicas",
    "autotunePolicies",
];
pub(super) const ATTACHMENT_FIELDS: &[&str] = &[
    "availabilityDomain",
    "bootVolumeId",
    "compartmentId",
    "displayName",
    "id",
    "instanceId",
    "lifecycleState",
    "timeCreated",
    "timeUpdated",
    "isPvEncryptionInTransitEnabled",
    "isEncryptionInTransitEnabled",
    "encryptionInTransitType",
];
pub(super) const VNIC_FIELDS: &[&str] = &[
    "availabilityDomain",
    "compartmentId",
    "definedTags",
    "displayName",
    "securityAttributes",
    "freeformTags",
    "hostnameLabel",
    "id",
    "isPrimary",
    "lifecycleState",
    "macAddress",
    "nsgIds",
    "vlanId",
    "privateIp",
    "publicIp",
    "skipSourceDestCheck",
    "subnetId",
    "systemTags",
    "timeCreated",
    "ipv6Addresses",
    "routeTableId",
];
/// Every field of the SDK's `PrivateIp` and `PublicIp` models.
pub(super) const PRIVATE_IP_FIELDS: &[&str] = &[
    "availabilityDomain",
    "compartmentId",
    "definedTags",
    "displayName",
    "freeformTags",
    "hostnameLabel",
    "id",
    "ipAddress",
    "cidrPrefixLength",
    "isPrimary",
    "vlanId",
    "subnetId",
    "timeCreated",
    "vnicId",
    "ipState",
    "lifetime",
    "routeTableId",
    "ipv4SubnetCidrAtCreation",
];
pub(super) const PUBLIC_IP_FIELDS: &[&str] = &[
    "assignedEntityId",
    "assignedEntityType",
    "availabilityDomain",
    "compartmentId",
    "definedTags",
    "displayName",
    "freeformTags",
    "id",
    "ipAddress",
    "lifecycleState",
    "lifetime",
    "privateIpId",
    "scope",
    "timeCreated",
    "publicIpPoolId",
];
pub(super) const SHAPE_FIELDS: &[&str] = &[
    "baselineOcpuUtilizations",
    "minTotalBaselineOcpusRequired",
    "shape",
    "processorDescription",
    "ocpus",
    "memoryInGBs",
    "networkPorts",
    "networkingBandwidthInGbps",
    "maxVnicAttachments",
    "gpus",
    "gpuDescription",
    "localDisks",
    "localDisksTotalSizeInGBs",
    "localDiskDescription",
    "rdmaPorts",
    "rdmaBandwidthInGbps",
    "isLiveMigrationSupported",
    "ocpuOptions",
    "memoryOptions",
    "networkingBandwidthOptions",
    "maxVnicAttachmentOptions",
    "platformConfigOptions",
    "bsNvmeAttachmentsConfig",
    "isBilledForStoppedInstance",
    "billingType",
    "quotaNames",
    "isSubcore",
    "isFlexible",
    "supportedResourceManagement",
    "resizeCompatibleShapes",
    "recommendedAlternatives",
    "platformNames",
];

pub(super) fn missing(v: &Value, fields: &[&str]) -> Vec<String> {
    fields
        .iter()
        .filter(|f| v.get(**f).is_none())
        .map(|f| f.to_string())
        .collect()
}
