//! `kiln import`: an existing OCI instance as a manifest table and a state record, such that the
//! next plan shows no changes. The mapping is the inverse of [`super::from_manifest`].

use serde_json::{Map, Value};
use toml_edit::{value, InlineTable, Table};

use crate::oci::models::{Instance, Vnic};

fn inline_strings(m: &std::collections::BTreeMap<String, String>) -> InlineTable {
    let mut t = InlineTable::new();
    for (k, v) in m {
        t.insert(k, v.as_str().into());
    }
    t
}

/// The `[instance.NAME]` table for a live instance and its primary VNIC.
pub fn instance_table(live: &Instance, vnic: &Vnic) -> Table {
    let mut t = Table::new();
    if let Some(n) = &live.display_name {
        t.insert("display_name", value(n.as_str()));
    }
    t.insert("compartment", value(live.compartment_id.as_str()));
    t.insert(
        "availability_domain",
        value(live.availability_domain.as_str()),
    );
    if let Some(fd) = &live.fault_domain {
        t.insert("fault_domain", value(fd.as_str()));
    }
    t.insert("shape", value(live.shape.as_str()));
    if live.shape.contains(".Flex") {
        if let Some(cfg) = live.extra.get("shapeConfig") {
            let mut sc = InlineTable::new();
            if let Some(o) = cfg.get("ocpus").and_then(Value::as_f64) {
                sc.insert("ocpus", o.into());
            }
            if let Some(m) = cfg.get("memoryInGBs").and_then(Value::as_f64) {
                sc.insert("memory_in_gbs", m.into());
            }
            t.insert("shape_config", value(sc));
        }
    }
    t.insert("subnet", value(vnic.subnet_id.as_str()));
    primary_vnic(&mut t, vnic);
    let source = live.extra.get("sourceDetails");
    let mut src = InlineTable::new();
    match source
        .and_then(|s| s.get("sourceType"))
        .and_then(Value::as_str)
    {
        Some("bootVolume") => {
            src.insert(
                "boot_volume",
                source
                    .and_then(|s| s.get("bootVolumeId"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into(),
            );
        }
        _ => {
            let image = source
                .and_then(|s| s.get("imageId"))
                .and_then(Value::as_str)
                .or(live.image_id.as_deref())
                .unwrap_or_default();
            src.insert("image", image.into());
        }
    }
    t.insert("source", value(src));
    if !live.metadata.is_empty() {
        t.insert("metadata", value(inline_strings(&live.metadata)));
    }
    if !live.freeform_tags.is_empty() {
        t.insert("freeform_tags", value(inline_strings(&live.freeform_tags)));
    }
    if let Some(d) = super::import_image::defined_tags(&live.defined_tags) {
        t.insert("defined_tags", value(d));
    }
    if live.lifecycle_state == "STOPPED" {
        t.insert("state", value("STOPPED"));
    }
    launch_settings(&mut t, live);
    launch_extras(&mut t, live);
    t
}

/// The agent's plugins as OCI lists them, the preemptible capacity, the boot volume's
/// performance (when not OCI's balanced 10) and Vault key, the capacity reservation
/// ([`crate::manifest::launch::Extras`]).
fn launch_extras(t: &mut Table, live: &Instance) {
    let x = &live.extra;
    let plugins = x
        .get("agentConfig")
        .and_then(|a| a.get(crate::manifest::launch::PLUGINS))
        .and_then(Value::as_array);
    let mut named = InlineTable::new();
    for p in plugins.into_iter().flatten() {
        if let (Some(n), Some(s)) = (p["name"].as_str(), p["desiredState"].as_str()) {
            named.insert(n, s.into());
        }
    }
    if !named.is_empty() {
        let mut agent = match t.remove("agent_config") {
            Some(toml_edit::Item::Value(toml_edit::Value::InlineTable(a))) => a,
            _ => InlineTable::new(),
        };
        agent.insert("plugins", toml_edit::Value::InlineTable(named));
        t.insert("agent_config", value(agent));
    }
    if let Some(keep) = x
        .get("preemptibleInstanceConfig")
        .and_then(|p| p.get("preemptionAction"))
        .map(|a| a["preserveBootVolume"].as_bool().unwrap_or(false))
    {
        let mut p = InlineTable::new();
        p.insert("preserve_boot_volume", keep.into());
        t.insert("preemptible", value(p));
    }
    let source = x
        .get("sourceDetails")
        .filter(|s| s["sourceType"] == "image");
    if let Some(v) = source
        .and_then(|s| s["bootVolumeVpusPerGB"].as_i64())
        .filter(|v| *v != 10)
    {
        t.insert("boot_volume_vpus_per_gb", value(v));
    }
    for (key, v) in [
        ("kms_key_id", source.and_then(|s| s["kmsKeyId"].as_str())),
        (
            "capacity_reservation_id",
            x.get("capacityReservationId").and_then(Value::as_str),
        ),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            t.insert(key, value(v));
        }
    }
}

/// The launch settings of the instance that differ from OCI's defaults
/// ([`crate::manifest::launch::SETTINGS`]): the opt-ins that are on (`are_legacy_imds_endpoints_disabled`,
/// `is_pv_encryption_in_transit_enabled`, Secure Boot, …, with the `platform_config.type` they need)
/// and a `recovery_action` other than `RESTORE_INSTANCE`. The plan compares only what the table
/// sets, so the rest (the image's launch options, OCI's defaults) never makes a diff.
fn launch_settings(t: &mut Table, live: &Instance) {
    for s in crate::manifest::launch::SETTINGS {
        let Some(obj) = live.extra.get(s.oci).and_then(Value::as_object) else {
            continue;
        };
        let mut table = InlineTable::new();
        for (field, oci, in_place) in s.keys() {
            // The image's launch-time options are the image's business.
            if s.name == "launch_options" && !in_place {
                continue;
            }
            match obj.get(oci) {
                Some(Value::Bool(true)) => {
                    table.insert(field.name, true.into());
                }
                Some(Value::String(x))
                    if field.name == "recovery_action" && x != "RESTORE_INSTANCE" =>
                {
                    table.insert(field.name, x.as_str().into());
                }
                _ => {}
            }
        }
        if s.name == "platform_config" && !table.is_empty() {
            if let Some(ty) = obj.get("type").and_then(Value::as_str) {
                let mut typed = InlineTable::new();
                typed.insert("type", ty.into());
                typed.extend(table);
                table = typed;
            }
        }
        if !table.is_empty() {
            t.insert(s.name, value(table));
        }
    }
}

/// The primary VNIC's settings that are not OCI's defaults: its NSGs (when any), hostname
/// label, private IP (fixed for the VNIC's life), a skipped source/destination check.
fn primary_vnic(t: &mut Table, vnic: &Vnic) {
    let nsgs: Vec<&str> = vnic
        .extra
        .get("nsgIds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !nsgs.is_empty() {
        t.insert("nsg_ids", value(toml_edit::Array::from_iter(nsgs)));
    }
    if let Some(h) = &vnic.hostname_label {
        t.insert("hostname_label", value(h.as_str()));
    }
    if let Some(ip) = &vnic.private_ip {
        t.insert("private_ip", value(ip.as_str()));
    }
    if vnic.extra.get("skipSourceDestCheck") == Some(&Value::Bool(true)) {
        t.insert("skip_source_dest_check", value(true));
    }
}

/// The create-time inputs recorded for an imported instance (what a launch by kiln records),
/// with its primary VNIC's settings as they are.
pub fn instance_inputs(vnic: &Vnic) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("subnet_id".into(), Value::String(vnic.subnet_id.clone()));
    for (input, oci) in crate::plan::from_manifest::VNIC_UPDATABLE {
        let v = match *oci {
            "hostnameLabel" => vnic.hostname_label.clone().map(Value::String),
            _ => vnic.extra.get(*oci).cloned(),
        };
        if let Some(v) = v.filter(|v| !v.is_null()) {
            m.insert(input.to_string(), v);
        }
    }
    if let Some(ip) = &vnic.private_ip {
        m.insert("private_ip".into(), Value::String(ip.clone()));
    }
    m.insert("prevent_destroy".into(), Value::Bool(false));
    m.insert("preserve_boot_volume".into(), Value::Bool(false));
    m.insert("create_before_destroy".into(), Value::Bool(false));
    m
}

/// The instance as its boot volume is now: GetInstance's `sourceDetails` keeps the performance
/// and Vault key it was launched with, the volume (`vpusPerGB`, `kmsKeyId`) what they are since
/// an in-place change; laid over a copy of `live` for [`instance_table`], and the values to
/// record as the instance's inputs ([`crate::plan::from_manifest::BOOT_VOLUME_UPDATABLE`]).
pub fn with_boot_volume(
    live: &Instance,
    volume: Option<&crate::oci::block::BootVolume>,
) -> (Instance, Map<String, Value>) {
    let mut now = live.clone();
    let mut inputs = Map::new();
    let Some(v) = volume else {
        return (now, inputs);
    };
    if let Some(Value::Object(src)) = now.extra.get_mut("sourceDetails") {
        if src.get("sourceType").and_then(Value::as_str) == Some("image") {
            let vpus = v.vpus_per_gb.map(Value::from).unwrap_or(Value::Null);
            let kms = v
                .kms_key_id
                .clone()
                .map(Value::String)
                .unwrap_or(Value::Null);
            src.insert("bootVolumeVpusPerGB".into(), vpus.clone());
            src.insert("kmsKeyId".into(), kms.clone());
            inputs.insert("boot_volume_vpus_per_gb".into(), vpus);
            inputs.insert("kms_key_id".into(), kms);
        }
    }
    (now, inputs)
}
