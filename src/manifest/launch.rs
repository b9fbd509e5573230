//! The instance launch settings that are objects of their own in OCI's LaunchInstanceDetails —
//! `instance_options`, `launch_options`, `availability_config`, `platform_config` — as one
//! table: each key's manifest name (snake_case, as in Terraform's OCI provider), its OCI name,
//! its type, and whether UpdateInstanceDetails can change it in place (else the instance is
//! replaced). The loader reads them with it, the planner diffs and sends them with it, `kiln
//! import` writes them back with it, and the JSON Schema lists them from it.
//!
//! In place, per OCI's API reference for UpdateInstanceDetails: `instanceOptions`,
//! `availabilityConfig`, and of `launchOptions` only `bootVolumeType`, `networkType` and
//! `isPvEncryptionInTransitEnabled` (UpdateLaunchOptions); `platformConfig` cannot change.

use super::schema::{Field, Ty};

/// One setting: a manifest table that is an OCI object.
pub struct Setting {
    pub name: &'static str,
    /// Its name in OCI's JSON.
    pub oci: &'static str,
    /// Its keys (for the key check and the JSON Schema).
    pub fields: &'static [Field],
    /// Per key, in the same order: its OCI name, and whether UpdateInstanceDetails can change it
    /// (otherwise a change replaces the instance).
    pub wire: &'static [(&'static str, bool)],
    pub doc: &'static str,
    /// Why a key that cannot change in place forces a replacement.
    pub why: &'static str,
}

impl Setting {
    /// Each key: its field, OCI name and whether it changes in place.
    pub fn keys(&self) -> impl Iterator<Item = (&'static Field, &'static str, bool)> {
        self.fields
            .iter()
            .zip(self.wire.iter())
            .map(|(f, (oci, in_place))| (f, *oci, *in_place))
    }
}

const VOLUME_TYPES: &[&str] = &["ISCSI", "SCSI", "IDE", "VFIO", "PARAVIRTUALIZED", "NVME"];
const NETWORK_TYPES: &[&str] = &["E1000", "VFIO", "PARAVIRTUALIZED", "ACCELERATEDPV"];
const PLATFORM_TYPES: &[&str] = &[
    "AMD_MILAN_BM",
    "AMD_MILAN_BM_GPU",
    "AMD_ROME_BM",
    "AMD_ROME_BM_GPU",
    "AMD_VM",
    "GENERIC_BM",
    "INTEL_ICELAKE_BM",
    "INTEL_SKYLAKE_BM",
    "INTEL_VM",
];

const fn f(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field { name, ty, doc }
}

pub const INSTANCE_OPTIONS: Setting = Setting {
    name: "instance_options",
    oci: "instanceOptions",
    doc: "Instance options: `{ are_legacy_imds_endpoints_disabled = true }` serves instance metadata on IMDS v2 only",
    why: "",
    fields: &[f(
        "are_legacy_imds_endpoints_disabled",
        Ty::Bool,
        "Turn off the legacy IMDS v1 endpoints (Checkov CKV_OCI_5)",
    )],
    wire: &[("areLegacyImdsEndpointsDisabled", true)],
};

pub const LAUNCH_OPTIONS: Setting = Setting {
    name: "launch_options",
    oci: "launchOptions",
    doc: "Launch options: volume and network attachment types, firmware, in-transit encryption of the boot volume",
    why: "OCI changes only `boot_volume_type`, `network_type` and `is_pv_encryption_in_transit_enabled` of an instance",
    fields: &[
        f("boot_volume_type", Ty::Enum(VOLUME_TYPES), "How the boot volume is attached"),
        f("firmware", Ty::Enum(&["BIOS", "UEFI_64"]), "Firmware to boot with"),
        f("network_type", Ty::Enum(NETWORK_TYPES), "Emulation type of the physical NIC"),
        f(
            "remote_data_volume_type",
            Ty::Enum(VOLUME_TYPES),
            "How remote data volumes are attached",
        ),
        f(
            "is_pv_encryption_in_transit_enabled",
            Ty::Bool,
            "Encrypt the paravirtualized boot volume's traffic in transit (Checkov CKV_OCI_4)",
        ),
        f(
            "is_consistent_volume_naming_enabled",
            Ty::Bool,
            "Consistent device paths for attached volumes",
        ),
    ],
    wire: &[
        ("bootVolumeType", true),
        ("firmware", false),
        ("networkType", true),
        ("remoteDataVolumeType", false),
        ("isPvEncryptionInTransitEnabled", true),
        ("isConsistentVolumeNamingEnabled", false),
    ],
};

pub const AVAILABILITY_CONFIG: Setting = Setting {
    name: "availability_config",
    oci: "availabilityConfig",
    doc: "What OCI does on infrastructure maintenance and failures",
    why: "",
    fields: &[
        f(
            "recovery_action",
            Ty::Enum(&["RESTORE_INSTANCE", "STOP_INSTANCE"]),
            "After a hardware failure: restore the instance, or leave it stopped",
        ),
        f(
            "is_live_migration_preferred",
            Ty::Bool,
            "Prefer live migration on maintenance",
        ),
    ],
    wire: &[("recoveryAction", true), ("isLiveMigrationPreferred", true)],
};

pub const PLATFORM_CONFIG: Setting = Setting {
    name: "platform_config",
    oci: "platformConfig",
    doc: "Shielded instance settings: Secure Boot, Measured Boot, a TPM (set at launch only)",
    why: "OCI sets the platform configuration at launch only",
    fields: &[
        f(
            "type",
            Ty::Enum(PLATFORM_TYPES),
            "The platform type (required with any other key)",
        ),
        f("is_secure_boot_enabled", Ty::Bool, "Secure Boot"),
        f("is_measured_boot_enabled", Ty::Bool, "Measured Boot"),
        f(
            "is_trusted_platform_module_enabled",
            Ty::Bool,
            "A Trusted Platform Module",
        ),
        f(
            "is_memory_encryption_enabled",
            Ty::Bool,
            "Memory encryption",
        ),
    ],
    wire: &[
        ("type", false),
        ("isSecureBootEnabled", false),
        ("isMeasuredBootEnabled", false),
        ("isTrustedPlatformModuleEnabled", false),
        ("isMemoryEncryptionEnabled", false),
    ],
};

/// Every setting, in the order the manifest reference lists them.
pub const SETTINGS: &[&Setting] = &[
    &INSTANCE_OPTIONS,
    &LAUNCH_OPTIONS,
    &AVAILABILITY_CONFIG,
    &PLATFORM_CONFIG,
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_key_has_its_wire_name() {
        for s in super::SETTINGS {
            assert_eq!(s.fields.len(), s.wire.len(), "{}", s.name);
        }
    }
}
