//! The manifest's resources → [`DesiredResource`]s: which OCI field each manifest key maps to,
//! and how it can change (following the OCI API reference for UpdateInstanceDetails and
//! UpdateImageDetails; anything not updatable there forces replacement, with the reason).

use serde_json::{json, Map, Value};

use crate::manifest::{
    launch, ImageSource, ImageSpec, InstanceSource, InstanceSpec, Manifest, PowerState, Ref,
};

use super::desired::{id_ref, DesiredAttr, DesiredResource, DesiredValue, Lookup, Power};
use super::{AttrClass, Kind};

/// Placeholder in a launch body for an image found by `image_lookup` (resolved at plan time).
pub const IMAGE_LOOKUP: &str = "$image_lookup";

/// Key of a launch body under `placement`: the places to try in turn when the one before has no
/// capacity (`[{"availabilityDomain", "faultDomain"}]`, the planned place first). The executor
/// takes it out before sending ([`crate::apply`]'s capacity fallback).
pub const PLACEMENT: &str = "$placement";

fn known(
    path: &str,
    live: &str,
    v: Value,
    class: AttrClass,
    why: Option<&'static str>,
) -> DesiredAttr {
    DesiredAttr {
        path: path.into(),
        lookup: Lookup::live(live),
        value: DesiredValue::Known(v),
        class,
        why,
    }
}

fn input(path: &str, key: &str, v: DesiredValue, why: &'static str) -> DesiredAttr {
    DesiredAttr {
        path: path.into(),
        lookup: Lookup::Input(key.into()),
        value: v,
        class: AttrClass::Replace,
        why: Some(why),
    }
}

fn ref_value(r: &Ref) -> (DesiredValue, Value) {
    match r {
        Ref::Ocid(id) => (DesiredValue::Known(json!(id)), json!(id)),
        Ref::Resource(addr) => (
            DesiredValue::IdOf(addr.to_string()),
            id_ref(&addr.to_string()),
        ),
    }
}

/// The freeform tag kiln puts on everything it creates: the resource's address. It lets kiln
/// find a resource whose create answer it never saw (see `apply::execute`), and it is not
/// compared by plans (kiln manages it, the manifest does not).
pub const ADDRESS_TAG: &str = "kiln-address";

fn tags(
    address: &str,
    attrs: &mut Vec<DesiredAttr>,
    body: &mut Map<String, Value>,
    spec_free: &std::collections::BTreeMap<String, String>,
    spec_defined: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, Value>>,
) {
    for (k, v) in spec_free {
        attrs.push(known(
            &format!("freeform_tags.{k}"),
            &format!("freeformTags.{k}"),
            json!(v),
            AttrClass::Update,
            None,
        ));
    }
    for (ns, m) in spec_defined {
        for (k, v) in m {
            attrs.push(DesiredAttr {
                path: format!("defined_tags.{ns}.{k}"),
                lookup: Lookup::Live(vec!["definedTags".into(), ns.clone(), k.clone()]),
                value: DesiredValue::Known(v.clone()),
                class: AttrClass::Update,
                why: None,
            });
        }
    }
    let mut free = json!(spec_free);
    free[ADDRESS_TAG] = json!(address);
    body.insert("freeformTags".into(), free);
    if !spec_defined.is_empty() {
        body.insert("definedTags".into(), json!(spec_defined));
    }
}

/// The primary VNIC's settings that UpdateVnic changes in place: (manifest name = recorded
/// input, OCI name). GetInstance does not return them, so they are compared with what kiln
/// recorded when it launched or last updated the VNIC ([`Lookup::Input`]); the update goes to
/// the VNIC ([`crate::apply`]'s UpdateVnic), not to UpdateInstance.
pub const VNIC_UPDATABLE: &[(&str, &str)] = &[
    ("nsg_ids", "nsgIds"),
    ("hostname_label", "hostnameLabel"),
    ("skip_source_dest_check", "skipSourceDestCheck"),
];

/// The boot volume's settings that Block Storage changes in place: (manifest name = recorded
/// input, the field UpdateBootVolume / UpdateBootVolumeKmsKey sends, where the launch body and
/// GetInstance carry it, why in place). GetInstance's `sourceDetails` keeps what the instance was
/// launched with (see [`crate::emulator::volume_changes`]), so they are compared with what kiln
/// recorded when it launched the instance or last changed its volume ([`Lookup::Input`]; a
/// record without them, as an import's, falls back on `sourceDetails`: the launch-time value,
/// the volume's until kiln changes it); the change goes to the boot volume
/// ([`crate::apply`]'s UpdateBootVolume / UpdateBootVolumeKmsKey), not to UpdateInstance.
pub const BOOT_VOLUME_UPDATABLE: &[(&str, &str, &str, &str)] = &[
    (
        "boot_volume_vpus_per_gb",
        "vpusPerGB",
        "sourceDetails.bootVolumeVpusPerGB",
        launch::VPUS_WHY,
    ),
    (
        "kms_key_id",
        "kmsKeyId",
        "sourceDetails.kmsKeyId",
        launch::KMS_WHY,
    ),
];

/// `nsg_ids`, `hostname_label`, `skip_source_dest_check` (in place) and `private_ip` (replace)
/// into the attributes and CreateVnicDetails.
fn primary_vnic(
    v: &crate::manifest::vnic::PrimaryVnic,
    attrs: &mut Vec<DesiredAttr>,
    vnic: &mut Map<String, Value>,
) {
    for (key, value) in [
        ("nsg_ids", v.nsg_ids.as_ref().map(|n| json!(n))),
        (
            "hostname_label",
            v.hostname_label.as_ref().map(|h| json!(h)),
        ),
        (
            "skip_source_dest_check",
            v.skip_source_dest_check.map(|b| json!(b)),
        ),
    ] {
        let Some(value) = value else { continue };
        let oci = VNIC_UPDATABLE
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, o)| *o)
            .expect("listed above");
        attrs.push(DesiredAttr {
            path: key.into(),
            lookup: Lookup::Input(key.into()),
            value: DesiredValue::Known(value.clone()),
            class: AttrClass::Update,
            why: None,
        });
        vnic.insert(oci.into(), value);
    }
    if let Some(ip) = &v.private_ip {
        attrs.push(input(
            "private_ip",
            "private_ip",
            DesiredValue::Known(json!(ip)),
            "OCI cannot change the primary private IP of a VNIC (UpdateVnicDetails has no `privateIp`)",
        ));
        vnic.insert("privateIp".into(), json!(ip));
    }
}

/// `agent_config.plugins` (name → state): one attribute per plugin named, read from the live
/// `pluginsConfig` list by name ([`super::diff::at`]), changed in place; OCI's list form for the
/// launch body.
fn plugins(v: &Value, attrs: &mut Vec<DesiredAttr>) -> Value {
    let mut list = Vec::new();
    for (name, state) in v.as_object().into_iter().flatten() {
        attrs.push(DesiredAttr {
            path: format!("agent_config.plugins.{name}"),
            lookup: Lookup::Live(vec![
                "agentConfig".into(),
                launch::PLUGINS.into(),
                name.clone(),
                "desiredState".into(),
            ]),
            value: DesiredValue::Known(state.clone()),
            class: AttrClass::Update,
            why: None,
        });
        list.push(json!({ "name": name, "desiredState": state }));
    }
    Value::Array(list)
}

/// `preemptible` (set at launch: replaced), `boot_volume_vpus_per_gb` and `kms_key_id` (the boot
/// volume's, [`BOOT_VOLUME_UPDATABLE`]) and `capacity_reservation_id` (UpdateInstance) into the
/// attributes and the launch body.
fn extras(x: &launch::Extras, attrs: &mut Vec<DesiredAttr>, body: &mut Map<String, Value>) {
    if let Some(keep) = x.preemptible {
        attrs.push(known(
            "preemptible.preserve_boot_volume",
            "preemptibleInstanceConfig.preemptionAction.preserveBootVolume",
            json!(keep),
            AttrClass::Replace,
            Some(launch::PREEMPTIBLE_WHY),
        ));
        body.insert(
            "preemptibleInstanceConfig".into(),
            json!({ "preemptionAction": { "type": "TERMINATE", "preserveBootVolume": keep } }),
        );
    }
    let source = body
        .get_mut("sourceDetails")
        .and_then(Value::as_object_mut)
        .expect("the source is in the body before the launch settings");
    for (key, value) in [
        (
            "boot_volume_vpus_per_gb",
            x.boot_volume_vpus_per_gb.map(|v| json!(v)),
        ),
        ("kms_key_id", x.kms_key_id.as_ref().map(|k| json!(k))),
    ] {
        let Some(value) = value else { continue };
        let (_, _, launch, why) = BOOT_VOLUME_UPDATABLE
            .iter()
            .find(|(k, ..)| *k == key)
            .expect("listed");
        attrs.push(DesiredAttr {
            path: key.into(),
            lookup: Lookup::Input(key.into()),
            value: DesiredValue::Known(value.clone()),
            class: AttrClass::Update,
            why: Some(why),
        });
        let field = launch
            .strip_prefix("sourceDetails.")
            .expect("a source field");
        source.insert(field.into(), value);
    }
    if let Some(r) = &x.capacity_reservation_id {
        attrs.push(known(
            "capacity_reservation_id",
            "capacityReservationId",
            json!(r),
            AttrClass::Update,
            None,
        ));
        body.insert("capacityReservationId".into(), json!(r));
    }
}

/// One instance.
pub fn instance(spec: &InstanceSpec) -> DesiredResource {
    let mut attrs = vec![
        known(
            "display_name",
            "displayName",
            json!(spec.display_name),
            AttrClass::Update,
            None,
        ),
        known(
            "compartment",
            "compartmentId",
            json!(spec.compartment),
            AttrClass::Move,
            None,
        ),
        known(
            "availability_domain",
            "availabilityDomain",
            json!(spec.availability_domain),
            AttrClass::Replace,
            Some("an instance cannot move to another availability domain"),
        ),
        known("shape", "shape", json!(spec.shape), AttrClass::Update, None),
    ];
    let mut body = Map::new();
    body.insert("availabilityDomain".into(), json!(spec.availability_domain));
    body.insert("compartmentId".into(), json!(spec.compartment));
    body.insert("displayName".into(), json!(spec.display_name));
    body.insert("shape".into(), json!(spec.shape));
    if let Some(fd) = &spec.fault_domain {
        attrs.push(known(
            "fault_domain",
            "faultDomain",
            json!(fd),
            AttrClass::Update,
            None,
        ));
        body.insert("faultDomain".into(), json!(fd));
    }
    if let Some(sc) = &spec.shape_config {
        let mut cfg = Map::new();
        for (path, live, v) in [
            ("ocpus", "ocpus", sc.ocpus.map(|x| json!(x))),
            (
                "memory_in_gbs",
                "memoryInGBs",
                sc.memory_in_gbs.map(|x| json!(x)),
            ),
            ("vcpus", "vcpus", sc.vcpus.map(|x| json!(x))),
            (
                "baseline_ocpu_utilization",
                "baselineOcpuUtilization",
                sc.baseline_ocpu_utilization.as_ref().map(|x| json!(x)),
            ),
        ] {
            if let Some(v) = v {
                attrs.push(known(
                    &format!("shape_config.{path}"),
                    &format!("shapeConfig.{live}"),
                    v.clone(),
                    AttrClass::Update,
                    None,
                ));
                cfg.insert(live.into(), v);
            }
        }
        body.insert("shapeConfig".into(), Value::Object(cfg));
    }

    attrs.push(input(
        "subnet",
        "subnet_id",
        DesiredValue::Known(json!(spec.subnet)),
        "the primary VNIC's subnet is fixed at launch",
    ));
    let mut vnic = Map::new();
    vnic.insert("subnetId".into(), json!(spec.subnet));
    if let Some(p) = spec.assign_public_ip {
        attrs.push(input(
            "assign_public_ip",
            "assign_public_ip",
            DesiredValue::Known(json!(p)),
            "the primary VNIC's public IP choice is fixed at launch",
        ));
        vnic.insert("assignPublicIp".into(), json!(p));
    }
    primary_vnic(&spec.vnic, &mut attrs, &mut vnic);
    body.insert("createVnicDetails".into(), Value::Object(vnic));

    let mut depends_on = Vec::new();
    let source = match &spec.source {
        InstanceSource::Image(r) => {
            let (value, wire) = ref_value(r);
            if let Ref::Resource(a) = r {
                depends_on.push(a.to_string());
            }
            attrs.push(DesiredAttr {
                path: "source.image".into(),
                lookup: Lookup::live("sourceDetails.imageId"),
                value,
                class: AttrClass::Replace,
                why: Some("the boot volume is made from the image at launch"),
            });
            json!({ "sourceType": "image", "imageId": wire })
        }
        InstanceSource::BootVolume(id) => {
            attrs.push(known(
                "source.boot_volume",
                "sourceDetails.bootVolumeId",
                json!(id),
                AttrClass::Replace,
                Some("an instance boots from the volume it was launched with"),
            ));
            json!({ "sourceType": "bootVolume", "bootVolumeId": id })
        }
        InstanceSource::ImageLookup { os, version, shape } => {
            let criteria = json!({ "os": os, "version": version, "shape": shape.as_deref().unwrap_or(&spec.shape) });
            attrs.push(input(
                "source.image_lookup",
                "image_lookup",
                DesiredValue::Known(criteria.clone()),
                "the boot volume is made from the image at launch",
            ));
            json!({ "sourceType": "image", "imageId": { IMAGE_LOOKUP: criteria } })
        }
    };
    let mut source = source;
    if let Some(size) = spec.boot_volume_size_in_gbs {
        attrs.push(input(
            "boot_volume_size_in_gbs",
            "boot_volume_size_in_gbs",
            DesiredValue::Known(json!(size)),
            "the boot volume's size is set at launch",
        ));
        source["bootVolumeSizeInGBs"] = json!(size);
    }
    body.insert("sourceDetails".into(), source);

    for (k, v) in &spec.metadata {
        let immutable = matches!(k.as_str(), "ssh_authorized_keys" | "user_data");
        attrs.push(DesiredAttr {
            path: format!("metadata.{k}"),
            lookup: Lookup::Live(vec!["metadata".into(), k.clone()]),
            value: DesiredValue::Known(json!(v)),
            class: if immutable {
                AttrClass::Replace
            } else {
                AttrClass::Update
            },
            why: immutable
                .then_some("OCI cannot change `ssh_authorized_keys` or `user_data` after launch"),
        });
    }
    if !spec.metadata.is_empty() {
        body.insert("metadata".into(), json!(spec.metadata));
    }
    let mut ignore_changes = spec.ignore_changes.clone();
    if let Some(p) = &spec.placement {
        // Decided at create: where a member landed (maybe elsewhere, for capacity) is kept.
        ignore_changes.extend(["availability_domain".into(), "fault_domain".into()]);
        let places: Vec<Value> = p
            .fallback()
            .into_iter()
            .map(|(ad, fd)| json!({ "availabilityDomain": ad, "faultDomain": fd }))
            .collect();
        body.insert(PLACEMENT.into(), Value::Array(places));
    }
    tags(
        &spec.address.to_string(),
        &mut attrs,
        &mut body,
        &spec.freeform_tags,
        &spec.defined_tags,
    );
    // The launch settings that are OCI objects: only the keys the manifest sets are sent and
    // compared (OCI's defaults for the others never make a diff).
    for s in launch::SETTINGS {
        let Some(keys) = spec.launch.get(s.name) else {
            continue;
        };
        let mut obj = Map::new();
        for (field, oci, in_place) in s.keys() {
            let Some(v) = keys.get(field.name) else {
                continue;
            };
            if oci == launch::PLUGINS {
                obj.insert(oci.into(), plugins(v, &mut attrs));
                continue;
            }
            attrs.push(known(
                &format!("{}.{}", s.name, field.name),
                &format!("{}.{oci}", s.oci),
                v.clone(),
                if in_place {
                    AttrClass::Update
                } else {
                    AttrClass::Replace
                },
                (!in_place).then_some(s.why),
            ));
            obj.insert(oci.to_string(), v.clone());
        }
        body.insert(s.oci.into(), Value::Object(obj));
    }
    extras(&spec.extras, &mut attrs, &mut body);

    let power = match spec.state {
        PowerState::Running => Power::Running,
        PowerState::Stopped => Power::Stopped,
    };
    // Sized to fit: 10,000 resources hold their attributes for the whole plan.
    attrs.shrink_to_fit();
    DesiredResource {
        address: spec.address.to_string(),
        kind: Kind::Instance,
        region: spec.region.clone(),
        display_name: spec.display_name.clone(),
        compartment: spec.compartment.clone(),
        attrs,
        power: Some(power),
        depends_on,
        captured_from: None,
        restart_source: true,
        ignore_changes,
        prevent_destroy: spec.prevent_destroy,
        create_before_destroy: spec.create_before_destroy,
        preserve_boot_volume: spec.preserve_boot_volume,
        create_body: crate::raw_json::RawJson::from_value(&Value::Object(body)),
    }
}

/// The recorded `source` input of an image adopted by `kiln import --compartment`
/// (`source = { adopted = OCID }`); [`DesiredResource::adopted`] reads it back.
pub fn adopted_source(id: &str) -> Value {
    json!({ "adopted": id })
}

/// One image.
pub fn image(spec: &ImageSpec) -> DesiredResource {
    let mut attrs = vec![
        known(
            "display_name",
            "displayName",
            json!(spec.display_name),
            AttrClass::Update,
            None,
        ),
        known(
            "compartment",
            "compartmentId",
            json!(spec.compartment),
            AttrClass::Move,
            None,
        ),
    ];
    let mut body = Map::new();
    body.insert("compartmentId".into(), json!(spec.compartment));
    body.insert("displayName".into(), json!(spec.display_name));
    let mut depends_on = Vec::new();
    let mut captured_from = None;
    match &spec.source {
        ImageSource::FromInstance(addr) => {
            let a = addr.to_string();
            attrs.push(input(
                "from_instance",
                "source_instance",
                DesiredValue::IdOf(a.clone()),
                "an image is captured once, from its source instance",
            ));
            body.insert("instanceId".into(), id_ref(&a));
            depends_on.push(a.clone());
            captured_from = Some(a);
        }
        ImageSource::ObjectStorage {
            namespace,
            bucket,
            object,
        } => {
            let src = json!({ "sourceType": "objectStorageTuple", "namespaceName": namespace, "bucketName": bucket, "objectName": object });
            attrs.push(input(
                "source",
                "source",
                DesiredValue::Known(src.clone()),
                "an image is imported once, from its source object",
            ));
            body.insert("imageSourceDetails".into(), src);
        }
        ImageSource::Uri(uri) => {
            let src = json!({ "sourceType": "objectStorageUri", "sourceUri": uri });
            attrs.push(input(
                "source",
                "source",
                DesiredValue::Known(src.clone()),
                "an image is imported once, from its source object",
            ));
            body.insert("imageSourceDetails".into(), src);
        }
        ImageSource::Adopted(id) => {
            // Made outside kiln: there is nothing to make it from. The create body stays without
            // a source; the planner refuses to create or replace it ([`DesiredResource::adopted`]).
            attrs.push(input(
                "source",
                "source",
                DesiredValue::Known(adopted_source(id)),
                "an adopted image was made outside kiln",
            ));
        }
    }
    if let Some(m) = &spec.launch_mode {
        attrs.push(known(
            "launch_mode",
            "launchMode",
            json!(m),
            AttrClass::Replace,
            Some("the launch mode is fixed when the image is made"),
        ));
        body.insert("launchMode".into(), json!(m));
    }
    for (path, live, v) in [
        (
            "operating_system",
            "operatingSystem",
            &spec.operating_system,
        ),
        (
            "operating_system_version",
            "operatingSystemVersion",
            &spec.operating_system_version,
        ),
    ] {
        if let Some(v) = v {
            attrs.push(known(path, live, json!(v), AttrClass::Update, None));
            if let Some(Value::Object(src)) = body.get_mut("imageSourceDetails") {
                src.insert(live.into(), json!(v));
            }
        }
    }
    tags(
        &spec.address.to_string(),
        &mut attrs,
        &mut body,
        &spec.freeform_tags,
        &spec.defined_tags,
    );
    super::image_caps::desired(spec, &mut attrs, &mut body);
    // Sized to fit: 10,000 resources hold their attributes for the whole plan.
    attrs.shrink_to_fit();
    DesiredResource {
        address: spec.address.to_string(),
        kind: Kind::Image,
        region: spec.region.clone(),
        display_name: spec.display_name.clone(),
        compartment: spec.compartment.clone(),
        attrs,
        power: None,
        depends_on,
        captured_from,
        restart_source: spec.restart_source,
        ignore_changes: Vec::new(),
        prevent_destroy: spec.prevent_destroy,
        create_before_destroy: true,
        preserve_boot_volume: false,
        create_body: crate::raw_json::RawJson::from_value(&Value::Object(body)),
    }
}

/// Every resource of the manifest, in address order.
pub fn desired(manifest: &Manifest) -> Vec<DesiredResource> {
    let mut out: Vec<DesiredResource> = manifest.instances.values().map(instance).collect();
    out.extend(manifest.images.values().map(image));
    out.extend(
        manifest
            .images
            .values()
            .flat_map(super::image_copies::copies),
    );
    super::image_copies::retarget(manifest, &mut out);
    out.sort_by(|a, b| a.address.cmp(&b.address));
    out
}
