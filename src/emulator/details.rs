//! The request-details types the emulator accepts, field by field (after Oracle's SDK models):
//! each field is modelled (type-checked, kept and returned) or known but not modelled (refused
//! with 400 naming it). A field of neither kind is not part of the type: 400 too. Nothing is
//! silently dropped.

use serde_json::{Map, Value};

use super::api::{error, Result};

/// What a field holds.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Str,
    Bool,
    Int,
    Enum(&'static [&'static str]),
    /// `dict(str, str)`.
    StrMap,
    /// `dict(str, dict(str, object))` (defined tags, security attributes).
    Tags,
    StrList,
    /// Any JSON object (extendedMetadata), or a value checked by its handler.
    Any,
    Obj(&'static [F]),
    List(&'static [F]),
    /// A field of the type that the emulator does not model.
    Unmodelled,
}

/// One field: its JSON name and kind.
#[derive(Clone, Copy, Debug)]
pub struct F(pub &'static str, pub Kind);

use Kind::*;

pub const LAUNCH_INSTANCE: &[F] = &[
    F("availabilityDomain", Str),
    F("compartmentId", Str),
    F("createVnicDetails", Obj(CREATE_VNIC)),
    F("definedTags", Tags),
    F("securityAttributes", Tags),
    F("displayName", Str),
    F("extendedMetadata", Any),
    F("faultDomain", Str),
    F("freeformTags", StrMap),
    F("hostnameLabel", Str),
    F("imageId", Str),
    F("ipxeScript", Str),
    F("launchOptions", Obj(LAUNCH_OPTIONS)),
    F("instanceOptions", Obj(INSTANCE_OPTIONS)),
    F("availabilityConfig", Obj(AVAILABILITY_CONFIG)),
    F("preemptibleInstanceConfig", Obj(PREEMPTIBLE)),
    F("metadata", StrMap),
    F("agentConfig", Obj(AGENT_CONFIG)),
    F("shape", Str),
    F("shapeConfig", Any),
    F("sourceDetails", Any),
    F("subnetId", Str),
    F("isPvEncryptionInTransitEnabled", Bool),
    F("platformConfig", Any),
    F("isAIEnterpriseEnabled", Bool),
    F("capacityReservationId", Str),
    F("dedicatedVmHostId", Unmodelled),
    F("clusterPlacementGroupId", Unmodelled),
    F("computeClusterId", Unmodelled),
    F("launchVolumeAttachments", Unmodelled),
    F("placementConstraintDetails", Unmodelled),
    F("instanceConfigurationId", Unmodelled),
    F("licensingConfigs", Unmodelled),
];

pub const CREATE_VNIC: &[F] = &[
    F("assignIpv6Ip", Bool),
    F("assignPublicIp", Bool),
    F("assignPrivateDnsRecord", Bool),
    F("definedTags", Tags),
    F("displayName", Str),
    F("freeformTags", StrMap),
    F("securityAttributes", Tags),
    F("hostnameLabel", Str),
    F("nsgIds", StrList),
    F("privateIp", Str),
    F("skipSourceDestCheck", Bool),
    F("subnetId", Str),
    F("ipv6AddressIpv6SubnetCidrPairDetails", Unmodelled),
    F("subnetCidr", Unmodelled),
    F("privateIpId", Unmodelled),
    F("vlanId", Unmodelled),
];

const VOLUME_TYPES: &[&str] = &["ISCSI", "SCSI", "IDE", "VFIO", "PARAVIRTUALIZED", "NVME"];

pub const LAUNCH_OPTIONS: &[F] = &[
    F("bootVolumeType", Enum(VOLUME_TYPES)),
    F("firmware", Enum(&["BIOS", "UEFI_64"])),
    F(
        "networkType",
        Enum(&["E1000", "VFIO", "PARAVIRTUALIZED", "ACCELERATEDPV"]),
    ),
    F("remoteDataVolumeType", Enum(VOLUME_TYPES)),
    F("isPvEncryptionInTransitEnabled", Bool),
    F("isEncryptionInTransitEnabled", Bool),
    F("isConsistentVolumeNamingEnabled", Bool),
];

pub const UPDATE_LAUNCH_OPTIONS: &[F] = &[
    F("bootVolumeType", Enum(VOLUME_TYPES)),
    F(
        "networkType",
        Enum(&["E1000", "VFIO", "PARAVIRTUALIZED", "ACCELERATEDPV"]),
    ),
    F("isPvEncryptionInTransitEnabled", Bool),
];

pub const INSTANCE_OPTIONS: &[F] = &[F("areLegacyImdsEndpointsDisabled", Bool)];

pub const AVAILABILITY_CONFIG: &[F] = &[
    F("isLiveMigrationPreferred", Bool),
    F(
        "recoveryAction",
        Enum(&["RESTORE_INSTANCE", "STOP_INSTANCE"]),
    ),
];

pub const PREEMPTIBLE: &[F] = &[F("preemptionAction", Obj(PREEMPTION_ACTION))];

const PREEMPTION_ACTION: &[F] = &[
    F("type", Enum(&["TERMINATE"])),
    F("preserveBootVolume", Bool),
];

pub const AGENT_CONFIG: &[F] = &[
    F("isMonitoringDisabled", Bool),
    F("isManagementDisabled", Bool),
    F("areAllPluginsDisabled", Bool),
    F("pluginsConfig", List(PLUGIN_CONFIG)),
];

const PLUGIN_CONFIG: &[F] = &[
    F("name", Str),
    F("desiredState", Enum(&["ENABLED", "DISABLED"])),
];

/// PlatformConfig of the VM types (AMD_VM, INTEL_VM).
pub const VM_PLATFORM_CONFIG: &[F] = &[
    F("type", Enum(&["AMD_VM", "INTEL_VM"])),
    F("isSecureBootEnabled", Bool),
    F("isTrustedPlatformModuleEnabled", Bool),
    F("isMeasuredBootEnabled", Bool),
    F("isMemoryEncryptionEnabled", Bool),
    F("isSymmetricMultiThreadingEnabled", Bool),
];

pub const IMAGE_SOURCE: &[F] = &[
    F("sourceType", Str),
    F("imageId", Str),
    F("bootVolumeSizeInGBs", Int),
    F("bootVolumeVpusPerGB", Int),
    F("kmsKeyId", Str),
    F("instanceSourceImageFilterDetails", Unmodelled),
];

pub const BOOT_VOLUME_SOURCE: &[F] = &[F("sourceType", Str), F("bootVolumeId", Str)];

pub const UPDATE_INSTANCE: &[F] = &[
    F("displayName", Str),
    F("freeformTags", StrMap),
    F("definedTags", Tags),
    F("securityAttributes", Tags),
    F("agentConfig", Obj(AGENT_CONFIG)),
    F("metadata", StrMap),
    F("extendedMetadata", Any),
    F("shape", Str),
    F("shapeConfig", Any),
    F(
        "updateOperationConstraint",
        Enum(&["ALLOW_DOWNTIME", "AVOID_DOWNTIME"]),
    ),
    F("instanceOptions", Obj(INSTANCE_OPTIONS)),
    F("faultDomain", Str),
    F("launchOptions", Obj(UPDATE_LAUNCH_OPTIONS)),
    F("availabilityConfig", Obj(AVAILABILITY_CONFIG)),
    F("isAIEnterpriseEnabled", Bool),
    // Checked by `boot_replace` (its two source types).
    F("sourceDetails", Any),
    F("timeMaintenanceRebootDue", Unmodelled),
    F("dedicatedVmHostId", Unmodelled),
    F("platformConfig", Unmodelled),
    F("licensingConfigs", Unmodelled),
    // "" takes the instance out of its reservation.
    F("capacityReservationId", Str),
];

fn bad(path: &str, what: &str) -> Reply {
    error(400, "InvalidParameter", format!("`{path}` must be {what}"))
}

use super::api::Reply;

/// Check `m` against `spec` (`of` names the type; `prefix` is the path to `m`, e.g.
/// `createVnicDetails.`). Nulls count as absent.
pub fn check(m: &Map<String, Value>, spec: &[F], prefix: &str, of: &str) -> Result<()> {
    for (k, v) in m {
        let path = format!("{prefix}{k}");
        let Some(F(_, kind)) = spec.iter().find(|F(n, _)| n == k) else {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`{path}` is not a field of {of}"),
            ));
        };
        if v.is_null() {
            continue;
        }
        check_value(v, *kind, &path, of)?;
    }
    Ok(())
}

fn check_value(v: &Value, kind: Kind, path: &str, of: &str) -> Result<()> {
    match kind {
        Str if !v.is_string() => Err(bad(path, "a string")),
        Bool if !v.is_boolean() => Err(bad(path, "true or false")),
        Int if !(v.is_u64() || v.is_i64()) => Err(bad(path, "an integer")),
        Enum(values) => match v.as_str() {
            Some(s) if values.contains(&s) => Ok(()),
            _ => Err(bad(path, &format!("one of {}", values.join(", ")))),
        },
        StrMap if !v.as_object().is_some_and(|o| o.values().all(Value::is_string)) => {
            Err(bad(path, "an object of strings"))
        }
        Tags if !v.as_object().is_some_and(|o| o.values().all(Value::is_object)) => {
            Err(bad(path, "an object of objects"))
        }
        StrList if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) => {
            Err(bad(path, "a list of strings"))
        }
        Any if !v.is_object() => Err(bad(path, "an object")),
        Obj(spec) => match v.as_object() {
            Some(o) => check(o, spec, &format!("{path}."), of),
            None => Err(bad(path, "an object")),
        },
        List(spec) => match v.as_array() {
            Some(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                let p = format!("{path}[{i}]");
                match item.as_object() {
                    Some(o) => check(o, spec, &format!("{p}."), of),
                    None => Err(bad(&p, "an object")),
                }
            }),
            None => Err(bad(path, "a list")),
        },
        Unmodelled => Err(error(
            400,
            "InvalidParameter",
            format!("`{path}` is not supported by the emulator: it does not model this part of {of}, and refuses it rather than ignore it"),
        )),
        _ => Ok(()),
    }
}

/// `given` over `defaults` (one level: nested objects are replaced).
pub fn overlay(defaults: Value, given: Option<&Value>) -> Value {
    let mut out = defaults;
    if let (Some(o), Some(Value::Object(g))) = (out.as_object_mut(), given) {
        for (k, v) in g {
            if !v.is_null() {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    out
}
