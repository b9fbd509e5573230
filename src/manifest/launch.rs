//! The instance launch settings that are objects of their own in OCI's LaunchInstanceDetails —
//! `instance_options`, `launch_options`, `availability_config`, `platform_config` — as one
//! table: each key's manifest name (snake_case, as in Terraform's OCI provider), its OCI name,
//! its type, and whether UpdateInstanceDetails can change it in place (else the instance is
//! replaced). The loader reads them with it, the planner diffs and sends them with it, `kiln
//! import` writes them back with it, and the JSON Schema lists them from it.
//!
//! In place, per OCI's API reference for UpdateInstanceDetails: `instanceOptions`,
//! `availabilityConfig`, `agentConfig` (UpdateInstanceAgentConfigDetails), and of `launchOptions`
//! only `bootVolumeType`, `networkType` and `isPvEncryptionInTransitEnabled`
//! (UpdateLaunchOptions); `platformConfig` cannot change.
//!
//! `agent_config.plugins` is a table of plugin name → `ENABLED`/`DISABLED`; OCI's is a list,
//! `pluginsConfig = [{name, desiredState}]` (oci-go-sdk v65 `core/launch_instance_agent_config_details.go`,
//! `instance_agent_plugin_config_details.go`, `update_instance_agent_config_details.go`): the
//! plan compares the plugins the manifest names, by name, and leaves the others as they are.
//!
//! The other launch settings ([`Extras`]), checked here, are not objects of one level:
//! - `preemptible = { preserve_boot_volume = false }` → `preemptibleInstanceConfig =
//!   { preemptionAction = { type = "TERMINATE", preserveBootVolume } }`
//!   (`core/preemptible_instance_config_details.go`, `terminate_preemption_action.go`); set at
//!   launch only (UpdateInstanceDetails has no such field; the Terraform provider's
//!   `preemptible_instance_config` is ForceNew). Per Oracle's "Preemptible Instances" page
//!   (docs.oracle.com/iaas/Content/Compute/Concepts/preemptible.htm): not with a capacity
//!   reservation, not on bare metal or burstable shapes, and never stopped or started.
//! - `boot_volume_vpus_per_gb` → `sourceDetails.bootVolumeVpusPerGB`
//!   (`core/instance_source_via_image_details.go`: 10, 20, 30–120). The boot volume could change
//!   with Block Storage's UpdateBootVolume (`vpusPerGB`), a verb kiln does not send; like the
//!   Terraform provider (`source_details.boot_volume_vpus_per_gb` is ForceNew in
//!   `internal/service/core/core_instance_resource.go`) kiln replaces the instance.
//! - `kms_key_id` → `sourceDetails.kmsKeyId`: the Terraform provider re-keys a boot volume in
//!   place with Block Storage's UpdateBootVolumeKmsKey; kiln does not send that verb, so a new key
//!   replaces the instance (with that reason).
//! - `capacity_reservation_id` → `capacityReservationId`, changed in place: UpdateInstanceDetails
//!   has `capacityReservationId` (`core/update_instance_details.go`).

use indexmap::IndexMap;

use super::diagnostic::{At, Problem};
use super::schema::{Field, Ty};
use super::tree::{bool_of, entries, get, Entry, Node, Value};
use super::Loader;

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

/// `agent_config.plugins`' OCI name: a list of `{name, desiredState}`, not an object.
pub const PLUGINS: &str = "pluginsConfig";

pub const AGENT_CONFIG: Setting = Setting {
    name: "agent_config",
    oci: "agentConfig",
    doc: "Oracle Cloud Agent: its monitoring and management plugins, all plugins, and the state of each plugin named, e.g. `{ plugins = { \"Vulnerability Scanning\" = \"ENABLED\" } }` (changed in place)",
    why: "",
    fields: &[
        f(
            "is_monitoring_disabled",
            Ty::Bool,
            "Turn off the monitoring plugins (default false)",
        ),
        f(
            "is_management_disabled",
            Ty::Bool,
            "Turn off the management plugins (default false)",
        ),
        f(
            "are_all_plugins_disabled",
            Ty::Bool,
            "Turn off every plugin (default false)",
        ),
        f(
            "plugins",
            Ty::EnumMap(&["ENABLED", "DISABLED"]),
            "Plugin name → `ENABLED` or `DISABLED`; plugins not named are left as they are",
        ),
    ],
    wire: &[
        ("isMonitoringDisabled", true),
        ("isManagementDisabled", true),
        ("areAllPluginsDisabled", true),
        (PLUGINS, true),
    ],
};

/// Every setting, in the order the manifest reference lists them.
pub const SETTINGS: &[&Setting] = &[
    &INSTANCE_OPTIONS,
    &LAUNCH_OPTIONS,
    &AVAILABILITY_CONFIG,
    &PLATFORM_CONFIG,
    &AGENT_CONFIG,
];

pub const PREEMPTIBLE: &[Field] = &[f(
    "preserve_boot_volume",
    Ty::Bool,
    "Keep the boot volume when OCI reclaims the capacity (default false)",
)];
pub const PREEMPTIBLE_DOC: &str = "Launch on preemptible capacity, terminated when OCI reclaims it: `{}` or `{ preserve_boot_volume = true }` (set at launch: a change replaces the instance; not with `capacity_reservation_id`, `state = \"STOPPED\"`, bare metal or burstable shapes)";
pub const VPUS_DOC: &str = "Boot volume performance in VPUs per GB: 10 (balanced), 20 (higher performance), 30 to 120 in steps of 10 (ultra high); changed in place (UpdateBootVolume)";
pub const KMS_DOC: &str = "OCID of the Vault key that encrypts the boot volume (default: Oracle-managed keys); changed in place (UpdateBootVolumeKmsKey)";
pub const CAPACITY_RESERVATION_DOC: &str =
    "OCID of the compute capacity reservation to launch in (changed in place)";

/// Why each of [`Extras`] that is set at launch forces a replacement, or how it changes in place.
pub const PREEMPTIBLE_WHY: &str =
    "OCI sets preemptible capacity at launch only (UpdateInstanceDetails has no `preemptibleInstanceConfig`)";
pub const VPUS_WHY: &str = "boot volume performance changes in place: UpdateBootVolume";
pub const KMS_WHY: &str = "boot volume key changes in place: UpdateBootVolumeKmsKey";

/// The launch settings beyond the object tables, as the manifest sets them (its table, else
/// `[defaults]`'s); `None`: not set, OCI's value never compared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extras {
    /// `preemptible`: `Some(preserve_boot_volume)`.
    pub preemptible: Option<bool>,
    pub boot_volume_vpus_per_gb: Option<u64>,
    pub kms_key_id: Option<String>,
    pub capacity_reservation_id: Option<String>,
}

/// What [`Loader::launch_extras`] checks the settings against: the rest of the instance.
pub(super) struct Context<'a> {
    pub boots_from_volume: bool,
    pub shape: Option<&'a str>,
    pub burstable: bool,
    pub stopped: Option<&'a At>,
}

impl Loader {
    pub(super) fn launch_extras(
        &mut self,
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
        cx: Context<'_>,
    ) -> Extras {
        let mut x = Extras::default();
        let from_volume = |l: &mut Loader, key: &str, at: &At| {
            l.problem(
                Problem::error(
                    "invalid_value",
                    format!("`{key}` is a setting of a boot volume made from an image, but `source` is a `boot_volume`"),
                )
                .at(at, "not with `source = { boot_volume = … }`")
                .help("set it when the volume is made, or boot from an image"),
            );
        };
        if let Some(Node {
            value: Value::Int(n),
            at,
        }) = Self::field(t, defaults, "boot_volume_vpus_per_gb")
        {
            if !(10..=120).contains(n) || n % 10 != 0 {
                self.problem(
                    Problem::error(
                        "invalid_value",
                        format!("`boot_volume_vpus_per_gb` must be 10, 20, or 30 to 120 in steps of 10, not {n}"),
                    )
                    .at(at, "not a boot volume performance level")
                    .help("10 is balanced, 20 higher performance, 30 to 120 ultra high performance"),
                );
            } else if cx.boots_from_volume {
                from_volume(self, "boot_volume_vpus_per_gb", at);
            }
            x.boot_volume_vpus_per_gb = Some(*n as u64);
        }
        if let Some(Node {
            value: Value::Str(s),
            at,
        }) = Self::field(t, defaults, "kms_key_id")
        {
            if self.ocid(s, at, "kms_key_id", &["key"]).is_some() && cx.boots_from_volume {
                from_volume(self, "kms_key_id", at);
            }
            x.kms_key_id = Some(s.clone());
        }
        let reservation = match Self::field(t, defaults, "capacity_reservation_id") {
            Some(Node {
                value: Value::Str(s),
                at,
            }) => {
                self.ocid(s, at, "capacity_reservation_id", &["capacityreservation"]);
                x.capacity_reservation_id = Some(s.clone());
                Some(at)
            }
            _ => None,
        };
        if let Some(node) = Self::field(t, defaults, "preemptible") {
            let Some(p) = entries(node) else { return x };
            x.preemptible = Some(bool_of(get(p, "preserve_boot_volume")).unwrap_or(false));
            let mut conflict = |what: String, label: &str, help: &str| {
                self.problem(
                    Problem::error("invalid_value", format!("a preemptible instance {what}"))
                        .at(&node.at, label.to_string())
                        .help(help.to_string()),
                );
            };
            if reservation.is_some() {
                conflict(
                    "cannot launch in a capacity reservation".into(),
                    "preemptible",
                    "drop `capacity_reservation_id` or `preemptible`",
                );
            }
            if cx.stopped.is_some() {
                conflict(
                    "cannot be stopped".into(),
                    "preemptible",
                    "drop `state = \"STOPPED\"` or `preemptible`",
                );
            }
            if let Some(shape) = cx.shape.filter(|s| s.starts_with("BM.")) {
                conflict(
                    format!("cannot be bare metal (`{shape}`)"),
                    "preemptible",
                    "use a VM shape",
                );
            }
            if cx.burstable {
                conflict(
                    "cannot be burstable".into(),
                    "preemptible",
                    "drop `shape_config.baseline_ocpu_utilization`",
                );
            }
        }
        x
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_key_has_its_wire_name() {
        for s in super::SETTINGS {
            assert_eq!(s.fields.len(), s.wire.len(), "{}", s.name);
        }
    }
}
