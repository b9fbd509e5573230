//! Instances: LaunchInstance (every field of LaunchInstanceDetails kept and returned, or refused),
//! ListInstances, UpdateInstance (a shape change on a running instance reboots it; `sourceDetails`
//! replaces the boot volume, in [`super::boot_replace`]),
//! TerminateInstance, InstanceAction, and ChangeInstanceCompartment / ChangeImageCompartment
//! (MOVING until the work request succeeds).

use serde_json::{json, Map, Value};

use super::api::{
    error, etag_matches, new_ocid, not_found, oracle_tags, parse_body, q, required, required_query,
    str_field, string_map, Ctx, Reply, Result,
};
use super::boot_replace;
use super::details::{self, overlay};
use super::identity;
use super::list;
use super::network;
use super::shapes::{self, Shape};
use super::store::{rfc3339, Coll, Record, Step};
use super::volumes;

const FAULT_DOMAINS: &[&str] = &["FAULT-DOMAIN-1", "FAULT-DOMAIN-2", "FAULT-DOMAIN-3"];

fn check_fault_domain(fd: &str) -> Result<()> {
    if FAULT_DOMAINS.contains(&fd) {
        return Ok(());
    }
    Err(error(
        400,
        "InvalidParameter",
        format!("`faultDomain` `{fd}` is not FAULT-DOMAIN-1, -2 or -3"),
    ))
}

/// The `region` field: OCI answers `iad` and `phx` for the two oldest regions, the region's name
/// for every other.
fn region_field(ctx: &Ctx<'_>) -> String {
    match ctx.region_code {
        "iad" | "phx" => ctx.region_code.to_string(),
        _ => ctx.fixtures.region.clone(),
    }
}

fn agent_defaults() -> Value {
    json!({ "isMonitoringDisabled": false, "isManagementDisabled": false, "areAllPluginsDisabled": false, "pluginsConfig": null })
}

fn availability_defaults() -> Value {
    json!({ "recoveryAction": "RESTORE_INSTANCE", "isLiveMigrationPreferred": null })
}

fn instance_options_defaults() -> Value {
    json!({ "areLegacyImdsEndpointsDisabled": false })
}

/// The shape config a request gives: an object of input fields only.
fn given_shape_config<'b>(
    b: &'b Map<String, Value>,
    of: &str,
) -> Result<Option<&'b Map<String, Value>>> {
    match b.get("shapeConfig") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => {
            shapes::check_input_keys(o, of)?;
            Ok(Some(o))
        }
        Some(_) => Err(error(
            400,
            "InvalidParameter",
            "`shapeConfig` must be an object",
        )),
    }
}

/// PlatformConfig: its `type` must be the shape's, and only the VM types are modelled.
fn platform_config(shape: &Shape, given: Option<&Value>) -> Result<Value> {
    let Some(v) = given.filter(|v| !v.is_null()) else {
        return Ok(Value::Null);
    };
    let o = v.as_object().ok_or_else(|| {
        error(
            400,
            "InvalidParameter",
            "`platformConfig` must be an object",
        )
    })?;
    let t = o
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| error(400, "MissingParameter", "`platformConfig.type` is required"))?;
    if shape.platform != Some(t) {
        return Err(error(
            400,
            "InvalidParameter",
            format!(
                "`platformConfig.type` `{t}` does not fit shape `{}` ({})",
                shape.name,
                shape
                    .platform
                    .map(|p| format!("it takes {p}"))
                    .unwrap_or_else(|| "it takes no platform config".into())
            ),
        ));
    }
    if !matches!(t, "AMD_VM" | "INTEL_VM") {
        return Err(error(
            400,
            "InvalidParameter",
            format!("`platformConfig` of type `{t}` is not supported by the emulator"),
        ));
    }
    details::check(
        o,
        details::VM_PLATFORM_CONFIG,
        "platformConfig.",
        "LaunchInstancePlatformConfig",
    )?;
    Ok(overlay(
        json!({ "type": t, "isSecureBootEnabled": false, "isTrustedPlatformModuleEnabled": false, "isMeasuredBootEnabled": false, "isMemoryEncryptionEnabled": false, "isSymmetricMultiThreadingEnabled": true }),
        Some(v),
    ))
}

/// The instance's source: its sourceDetails, image, architecture and boot volume size.
struct Source {
    details: Value,
    image_id: Option<String>,
    arch: String,
    size_gb: u64,
    vpus: u64,
    boot_volume: Option<String>,
}

fn source(ctx: &Ctx<'_>, b: &Map<String, Value>, ad: &str) -> Result<Source> {
    let top_image = str_field(b, "imageId")?;
    let src = match b.get("sourceDetails") {
        None | Some(Value::Null) => match top_image {
            Some(img) => json!({ "sourceType": "image", "imageId": img })
                .as_object()
                .cloned()
                .expect("object"),
            None => {
                return Err(error(
                    400,
                    "MissingParameter",
                    "`sourceDetails` is required",
                ))
            }
        },
        Some(Value::Object(s)) => s.clone(),
        Some(_) => {
            return Err(error(
                400,
                "InvalidParameter",
                "`sourceDetails` must be an object",
            ))
        }
    };
    match src.get("sourceType").and_then(Value::as_str) {
        Some("image") => {
            details::check(
                &src,
                details::IMAGE_SOURCE,
                "sourceDetails.",
                "InstanceSourceViaImageDetails",
            )?;
            let img = src.get("imageId").and_then(Value::as_str).ok_or_else(|| {
                error(
                    400,
                    "MissingParameter",
                    "`sourceDetails.imageId` is required",
                )
            })?;
            if top_image.is_some_and(|t| t != img) {
                return Err(error(
                    400,
                    "InvalidParameter",
                    "`imageId` and `sourceDetails.imageId` name different images",
                ));
            }
            let rec = match ctx.image_any(img) {
                None => {
                    return Err(error(
                        400,
                        "RelatedResourceNotAuthorizedOrNotFound",
                        format!("image `{img}` not found or not authorized"),
                    ))
                }
                Some(r) if r.state() != "AVAILABLE" => {
                    return Err(error(
                        409,
                        "IncorrectState",
                        format!("image `{img}` is {}, not AVAILABLE", r.state()),
                    ))
                }
                Some(r) => r,
            };
            let size_gb = match src.get("bootVolumeSizeInGBs").filter(|v| !v.is_null()) {
                None => volumes::DEFAULT_SIZE_GB,
                Some(size) => size
                    .as_u64()
                    .filter(|s| (50..=32768).contains(s))
                    .ok_or_else(|| {
                        error(
                            400,
                            "InvalidParameter",
                            "`sourceDetails.bootVolumeSizeInGBs` must be between 50 and 32768",
                        )
                    })?,
            };
            // 10 balanced, 20 higher, 30-120 ultra high performance ([`super::related`]).
            let vpus = match src.get("bootVolumeVpusPerGB").filter(|v| !v.is_null()) {
                None => 10,
                Some(v) => v
                    .as_u64()
                    .filter(|v| (10..=120).contains(v) && v % 10 == 0)
                    .ok_or_else(|| {
                        error(
                            400,
                            "InvalidParameter",
                            "`sourceDetails.bootVolumeVpusPerGB` must be 10 to 120 in steps of 10",
                        )
                    })?,
            };
            let kms = src.get("kmsKeyId").and_then(Value::as_str);
            if let Some(k) = kms {
                super::related::kms_key(ctx, k, "sourceDetails.kmsKeyId")?;
            }
            Ok(Source {
                details: json!({ "sourceType": "image", "imageId": img, "bootVolumeSizeInGBs": size_gb, "bootVolumeVpusPerGB": vpus, "kmsKeyId": kms, "instanceSourceImageFilterDetails": null }),
                image_id: Some(img.to_string()),
                arch: rec.meta_str("arch").unwrap_or("x86_64").to_string(),
                size_gb,
                vpus,
                boot_volume: None,
            })
        }
        Some("bootVolume") => {
            details::check(
                &src,
                details::BOOT_VOLUME_SOURCE,
                "sourceDetails.",
                "InstanceSourceViaBootVolumeDetails",
            )?;
            let bv = src
                .get("bootVolumeId")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    error(
                        400,
                        "MissingParameter",
                        "`sourceDetails.bootVolumeId` is required",
                    )
                })?;
            let v = volumes::check_bootable(ctx, bv, ad)?;
            Ok(Source {
                details: json!({ "sourceType": "bootVolume", "bootVolumeId": bv }),
                image_id: v.image_id,
                arch: v.arch,
                size_gb: v.size_gb,
                vpus: 10,
                boot_volume: Some(bv.to_string()),
            })
        }
        other => Err(error(
            400,
            "InvalidParameter",
            format!("`sourceDetails.sourceType` {other:?} is not `image` or `bootVolume`"),
        )),
    }
}

pub fn launch(ctx: &mut Ctx<'_>, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    details::check(&b, details::LAUNCH_INSTANCE, "", "LaunchInstanceDetails")?;
    let ad = required(&b, "availabilityDomain")?.to_string();
    ctx.check_ad(&ad)?;
    let compartment = required(&b, "compartmentId")?.to_string();
    ctx.check_compartment(&compartment, "compartmentId")?;
    let shape = shapes::known(required(&b, "shape")?)?;
    let shape_cfg = shapes::instance_config(
        shape,
        given_shape_config(&b, "LaunchInstanceShapeConfigDetails")?,
    )?;
    let defined = ctx.defined_tags(&b)?;
    let vnic_details = b
        .get("createVnicDetails")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let vnic_defined = identity::defined_tags(
        ctx.fixtures,
        vnic_details.get("definedTags"),
        "createVnicDetails.definedTags",
    )?;
    let asked_fd = str_field(&b, "faultDomain")?;
    if let Some(fd) = asked_fd {
        check_fault_domain(fd)?;
    }
    let platform = platform_config(shape, b.get("platformConfig"))?;
    let reservation = str_field(&b, "capacityReservationId")?;
    if let Some(r) = reservation {
        super::related::capacity_reservation(ctx, r, &ad)?;
    }
    super::related::preemptible(
        &b,
        shape.name,
        shape_cfg["baselineOcpuUtilization"].as_str(),
    )?;
    let src = source(ctx, &b, &ad)?;
    if src.arch != shape.arch.image_arch() {
        return Err(error(
            400,
            "InvalidParameter",
            format!(
                "the {} image {} cannot boot on shape `{}` ({}): pick an image of that architecture (ListImages with `shape`)",
                src.arch,
                src.image_id.as_deref().map(|i| format!("`{i}`")).unwrap_or_default(),
                shape.name,
                shape.arch.image_arch()
            ),
        ));
    }
    let display_name = str_field(&b, "displayName")?
        .map(str::to_string)
        .unwrap_or_else(|| format!("instance{}", ctx.now.format("%Y%m%d%H%M%S")));
    let vnic = network::plan_vnic(
        ctx,
        vnic_details,
        str_field(&b, "subnetId")?,
        str_field(&b, "hostnameLabel")?,
        &display_name,
    )?;
    let mut launch_options = overlay(super::images::launch_options(), b.get("launchOptions"));
    if let Some(v) = b
        .get("isPvEncryptionInTransitEnabled")
        .filter(|v| !v.is_null())
    {
        launch_options["isPvEncryptionInTransitEnabled"] = v.clone();
    }
    let metadata = string_map(&b, "metadata")?.unwrap_or_default();
    // Last of the checks: a launch that is refused for capacity creates nothing.
    let fault_domain = &super::limits::place(
        ctx.capacity,
        ctx.world,
        shape.name,
        &ad,
        asked_fd,
        FAULT_DOMAINS,
    )?;
    let id = new_ocid("instance", ctx.region_code);
    ctx.world.serial += 1;
    let get = |k: &str, default: Value| {
        b.get(k)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default)
    };
    let body = json!({
        "id": id,
        "compartmentId": compartment,
        "availabilityDomain": ad,
        "faultDomain": fault_domain,
        "displayName": display_name,
        "lifecycleState": "PROVISIONING",
        "region": region_field(ctx),
        "shape": shape.name,
        "shapeConfig": shape_cfg,
        "sourceDetails": src.details,
        "imageId": src.image_id,
        "metadata": metadata,
        "extendedMetadata": get("extendedMetadata", json!({})),
        "freeformTags": string_map(&b, "freeformTags")?.unwrap_or_default(),
        "definedTags": oracle_tags(ctx.key_id, ctx.now, defined),
        "securityAttributes": get("securityAttributes", json!({})),
        "securityAttributesState": "STABLE",
        "systemTags": {},
        "timeCreated": rfc3339(ctx.now),
        "launchMode": "PARAVIRTUALIZED",
        "launchOptions": launch_options,
        "agentConfig": overlay(agent_defaults(), b.get("agentConfig")),
        "availabilityConfig": overlay(availability_defaults(), b.get("availabilityConfig")),
        "instanceOptions": overlay(instance_options_defaults(), b.get("instanceOptions")),
        "preemptibleInstanceConfig": get("preemptibleInstanceConfig", Value::Null),
        "platformConfig": platform,
        "ipxeScript": get("ipxeScript", Value::Null),
        "isCrossNumaNode": false,
        "isAIEnterpriseEnabled": get("isAIEnterpriseEnabled", json!(false)),
        "capacityReservationId": reservation,
        "clusterPlacementGroupId": null,
        "dedicatedVmHostId": null,
        "placementConstraintDetails": null,
        "instanceConfigurationId": null,
        "timeMaintenanceRebootDue": null,
        "licensingConfigs": [],
    });
    let mut rec = Record::new(body.as_object().expect("object").clone());
    rec.meta.insert("arch".into(), json!(src.arch));
    let ready = ctx.after(ctx.timings.launch);
    rec.steps = vec![Step {
        at: ready,
        state: "RUNNING".into(),
    }];
    let volume = match &src.boot_volume {
        Some(v) => v.clone(),
        // The boot volume is made from the image first: AVAILABLE halfway through the launch.
        None => volumes::create(
            ctx,
            &compartment,
            &ad,
            src.image_id.as_deref().unwrap_or(""),
            &src.arch,
            src.size_gb,
            src.vpus,
            &display_name,
            ctx.after(ctx.timings.launch / 2),
        ),
    };
    if src.boot_volume.is_none() {
        volumes::set_kms_key(ctx, &volume, src.details.get("kmsKeyId"));
    }
    volumes::attach(ctx, &volume, &id, &compartment, &ad, ready);
    rec.meta.insert("bootVolumeId".into(), json!(volume));
    let vnic_tags = Value::Object(vnic_defined.unwrap_or_default());
    network::make_vnic(ctx, vnic, &id, &compartment, &ad, &display_name, vnic_tags);
    let wr = ctx.work_request(
        "LaunchInstance",
        &compartment,
        "instance",
        &id,
        "CREATED",
        ready,
    );
    let reply = Ctx::reply_record(&rec, 200).header("opc-work-request-id", wr);
    ctx.world.instances.insert(id.clone(), rec);
    ctx.world.schedule(Coll::Instance, &id);
    ctx.world.file_instance(&id);
    ctx.mutated = true;
    Ok(reply)
}

pub fn list(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    ctx.check_compartment(compartment, "compartmentId")?;
    let (field, desc) = list::sort_spec(query, "TIMECREATED")?;
    // Only the page is copied out of the records.
    let items: Vec<(list::Key, &Record)> = ctx
        .world
        .instances_in(compartment)
        .filter(|r| {
            q(query, "availabilityDomain").is_none_or(|a| r.body["availabilityDomain"] == a)
        })
        .filter(|r| q(query, "displayName").is_none_or(|d| r.body["displayName"] == d))
        .filter(|r| list::state_matches(query, &r.body))
        .map(|r| (list::Key::of_map(0, &r.body, field), r))
        .collect();
    list::page_with(items, desc, query, |r| Value::Object(r.body.clone()))
}

/// Merge the object `b[k]` (already type-checked) over the record's `k`.
fn merge_object(rec: &mut Record, b: &Map<String, Value>, k: &str) {
    if let Some(Value::Object(given)) = b.get(k) {
        let mut cur = rec
            .body
            .get(k)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (kk, v) in given {
            if !v.is_null() {
                cur.insert(kk.clone(), v.clone());
            }
        }
        rec.body.insert(k.into(), Value::Object(cur));
    }
}

pub fn update(ctx: &mut Ctx<'_>, id: &str, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    details::check(&b, details::UPDATE_INSTANCE, "", "UpdateInstanceDetails")?;
    let given_cfg = given_shape_config(&b, "UpdateInstanceShapeConfigDetails")?;
    let defined = ctx.defined_tags(&b)?;
    let rec = ctx.instance(id)?.clone();
    ctx.check_etag(&rec)?;
    boot_replace::not_busy(ctx, &rec)?;
    if matches!(rec.state(), "TERMINATING" | "TERMINATED") {
        return Err(error(
            409,
            "IncorrectState",
            format!("instance `{id}` is {}", rec.state()),
        ));
    }
    let replacement = match boot_replace::given(&b) {
        Some(src) => Some(boot_replace::check(ctx, &rec, src)?),
        None => None,
    };
    let mut rec = rec;
    if let Some(meta) = string_map(&b, "metadata")? {
        let old = rec
            .body
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for k in ["ssh_authorized_keys", "user_data"] {
            if old.get(k) != meta.get(k) {
                return Err(error(
                    400,
                    "InvalidParameter",
                    format!("metadata `{k}` cannot be changed after launch"),
                ));
            }
        }
        rec.body.insert("metadata".into(), Value::Object(meta));
    }
    if let Some(s) = str_field(&b, "displayName")? {
        rec.body.insert("displayName".into(), json!(s));
    }
    if let Some(t) = string_map(&b, "freeformTags")? {
        rec.body.insert("freeformTags".into(), Value::Object(t));
    }
    if let Some(t) = defined {
        rec.body.insert("definedTags".into(), Value::Object(t));
    }
    if let Some(fd) = str_field(&b, "faultDomain")? {
        check_fault_domain(fd)?;
        rec.body.insert("faultDomain".into(), json!(fd));
    }
    match str_field(&b, "capacityReservationId")? {
        Some("") => {
            rec.body.insert("capacityReservationId".into(), Value::Null);
        }
        Some(r) => {
            super::related::capacity_reservation(ctx, r, rec.str("availabilityDomain"))?;
            if rec
                .body
                .get("preemptibleInstanceConfig")
                .is_some_and(|p| !p.is_null())
            {
                return Err(error(
                    400,
                    "InvalidParameter",
                    "preemptible capacity cannot be used with a capacity reservation",
                ));
            }
            rec.body.insert("capacityReservationId".into(), json!(r));
        }
        None => {}
    }
    for k in [
        "securityAttributes",
        "extendedMetadata",
        "isAIEnterpriseEnabled",
    ] {
        if let Some(v) = b.get(k).filter(|v| !v.is_null()) {
            rec.body.insert(k.into(), v.clone());
        }
    }
    for k in [
        "agentConfig",
        "instanceOptions",
        "availabilityConfig",
        "launchOptions",
    ] {
        merge_object(&mut rec, &b, k);
    }
    let mut reboot = false;
    if b.contains_key("shape") || given_cfg.is_some() {
        let old_shape = shapes::known(rec.str("shape"))?;
        let shape = match str_field(&b, "shape")? {
            Some(s) => shapes::known(s)?,
            None => old_shape,
        };
        if shape.arch != old_shape.arch {
            return Err(error(
                400,
                "InvalidParameter",
                format!(
                    "shape `{}` cannot run this instance's {} image (it is {})",
                    shape.name,
                    old_shape.arch.image_arch(),
                    shape.arch.image_arch()
                ),
            ));
        }
        // What is left out keeps its current value (on a flexible shape).
        let cfg = match (shape.flex, given_cfg) {
            (None, _) => given_cfg.cloned(),
            (Some(_), given) => {
                let cur = rec.body.get("shapeConfig").and_then(Value::as_object);
                let mut m = Map::new();
                if old_shape.flex.is_some() {
                    for k in ["ocpus", "memoryInGBs", "baselineOcpuUtilization"] {
                        if let Some(v) = cur.and_then(|c| c.get(k)).filter(|v| !v.is_null()) {
                            m.insert(k.into(), v.clone());
                        }
                    }
                }
                if let Some(g) = given {
                    if g.contains_key("vcpus") && !g.contains_key("ocpus") {
                        m.remove("ocpus");
                    }
                    m.extend(g.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                Some(m)
            }
        };
        let new_cfg = shapes::instance_config(shape, cfg.as_ref())?;
        let old_cfg = rec.body.get("shapeConfig").cloned().unwrap_or(Value::Null);
        let resized = shape.name != old_shape.name
            || new_cfg["ocpus"] != old_cfg["ocpus"]
            || new_cfg["memoryInGBs"] != old_cfg["memoryInGBs"];
        if resized {
            match rec.state() {
                "RUNNING" => reboot = true,
                "STOPPED" => {}
                s => {
                    return Err(error(
                        409,
                        "IncorrectState",
                        format!("instance `{id}` is {s}: its shape can change when it is RUNNING or STOPPED"),
                    ))
                }
            }
        }
        if reboot && q_constraint(&b) == Some("AVOID_DOWNTIME") {
            return Err(error(
                400,
                "InvalidParameter",
                format!("changing the shape of running instance `{id}` needs a reboot, which `updateOperationConstraint` AVOID_DOWNTIME forbids"),
            ));
        }
        rec.body.insert("shape".into(), json!(shape.name));
        rec.body.insert("shapeConfig".into(), new_cfg);
    }
    let replacing = replacement.is_some();
    let done = if let Some(r) = replacement {
        // The replacement stops and starts the instance: a reboot for a new shape is part of it.
        boot_replace::start(ctx, &mut rec, r)
    } else if reboot {
        let t = ctx.timings.clone();
        let (starting, running) = (ctx.after(t.stop), ctx.after(t.stop + t.start));
        rec.transition(
            "STOPPING",
            vec![
                Step {
                    at: starting,
                    state: "STARTING".into(),
                },
                Step {
                    at: running,
                    state: "RUNNING".into(),
                },
            ],
        );
        running
    } else {
        rec.touch();
        ctx.now
    };
    let compartment = rec.str("compartmentId").to_string();
    let wr = ctx.work_request(
        "UpdateInstance",
        &compartment,
        "instance",
        id,
        "UPDATED",
        done,
    );
    if replacing {
        rec.meta.insert("replacingWorkRequest".into(), json!(wr));
    }
    let reply = Ctx::reply_record(&rec, 200).header("opc-work-request-id", wr);
    ctx.world.instances.insert(id.to_string(), rec);
    ctx.world.schedule(Coll::Instance, id);
    ctx.mutated = true;
    Ok(reply)
}

fn q_constraint(b: &Map<String, Value>) -> Option<&str> {
    b.get("updateOperationConstraint").and_then(Value::as_str)
}

pub fn terminate(ctx: &mut Ctx<'_>, id: &str, query: &[(String, String)]) -> Result<Reply> {
    let flag = |k: &str| -> Result<Option<bool>> {
        match q(query, k) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(error(
                400,
                "InvalidParameter",
                format!("`{k}` `{v}` must be true or false"),
            )),
        }
    };
    let preserve = flag("preserveBootVolume")?.unwrap_or(false);
    flag("preserveDataVolumesCreatedAtLaunch")?;
    if let Some(r) = q(query, "recycleLevel") {
        if r != "FULL_RECYCLE" {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`recycleLevel` `{r}` must be FULL_RECYCLE"),
            ));
        }
    }
    let rec = ctx.instance(id)?.clone();
    ctx.check_etag(&rec)?;
    match rec.state() {
        "TERMINATED" => return Err(not_found("instance", id)),
        "TERMINATING" => {
            return Err(error(
                409,
                "IncorrectState",
                format!("instance `{id}` is already TERMINATING"),
            ))
        }
        _ => {}
    }
    let done = ctx.after(ctx.timings.terminate);
    let compartment = rec.str("compartmentId").to_string();
    volumes::on_terminate(ctx, id, preserve, done);
    let rec = ctx.instance(id)?;
    rec.transition(
        "TERMINATING",
        vec![Step {
            at: done,
            state: "TERMINATED".into(),
        }],
    );
    ctx.world.schedule(Coll::Instance, id);
    let wr = ctx.work_request(
        "TerminateInstance",
        &compartment,
        "instance",
        id,
        "DELETED",
        done,
    );
    ctx.mutated = true;
    Ok(Reply::empty(204).header("opc-work-request-id", wr))
}

pub fn action(
    ctx: &mut Ctx<'_>,
    id: &str,
    query: &[(String, String)],
    body: &[u8],
) -> Result<Reply> {
    let act = q(query, "action").unwrap_or("");
    if !body.is_empty() {
        let b = parse_body(body)?;
        let t = b.get("actionType").and_then(Value::as_str).ok_or_else(|| {
            error(
                400,
                "InvalidParameter",
                "`actionType` is required in InstancePowerActionDetails",
            )
        })?;
        let ok = matches!(
            (t, act),
            ("reset", "RESET") | ("softreset", "SOFTRESET") | ("rebootMigrate", "REBOOTMIGRATE")
        );
        if !ok {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`actionType` `{t}` does not go with action `{act}`"),
            ));
        }
    }
    let t = ctx.timings.clone();
    let rec = ctx.instance(id)?.clone();
    ctx.check_etag(&rec)?;
    boot_replace::not_busy(ctx, &rec)?;
    let state = rec.state().to_string();
    let at = |d: std::time::Duration| ctx.after(d);
    let (now_state, steps): (&str, Vec<Step>) = match (act, state.as_str()) {
        ("STOP" | "SOFTSTOP", "STOPPED") | ("START", "RUNNING") => return Ok(Ctx::reply_record(&rec, 200)),
        ("STOP", "RUNNING") => ("STOPPING", vec![Step { at: at(t.stop), state: "STOPPED".into() }]),
        ("SOFTSTOP", "RUNNING") => ("STOPPING", vec![Step { at: at(t.stop * 3 / 2), state: "STOPPED".into() }]),
        ("START", "STOPPED") => ("STARTING", vec![Step { at: at(t.start), state: "RUNNING".into() }]),
        ("RESET" | "SOFTRESET" | "DIAGNOSTICREBOOT" | "REBOOTMIGRATE", "RUNNING") => ("STOPPING", vec![Step { at: at(t.stop), state: "STARTING".into() }, Step { at: at(t.stop + t.start), state: "RUNNING".into() }]),
        ("SENDDIAGNOSTICINTERRUPT", "RUNNING") => ("RUNNING", vec![]),
        ("STOP" | "START" | "SOFTSTOP" | "RESET" | "SOFTRESET" | "SENDDIAGNOSTICINTERRUPT" | "DIAGNOSTICREBOOT" | "REBOOTMIGRATE", s) => {
            return Err(error(409, "IncorrectState", format!("instance `{id}` is {s}: action {act} is not possible now")))
        }
        ("", _) => return Err(error(400, "MissingParameter", "query parameter `action` is required")),
        (other, _) => return Err(error(400, "InvalidParameter", format!("`action` `{other}` is not one of STOP, START, SOFTSTOP, RESET, SOFTRESET, SENDDIAGNOSTICINTERRUPT, DIAGNOSTICREBOOT, REBOOTMIGRATE"))),
    };
    let done = steps.last().map(|s| s.at).unwrap_or(ctx.now);
    let compartment = rec.str("compartmentId").to_string();
    let rec = ctx.instance(id)?;
    rec.transition(now_state, steps);
    let reply = Ctx::reply_record(rec, 200);
    ctx.world.schedule(Coll::Instance, id);
    let wr = ctx.work_request(
        "InstanceAction",
        &compartment,
        "instance",
        id,
        "UPDATED",
        done,
    );
    ctx.mutated = true;
    Ok(reply.header("opc-work-request-id", wr))
}

/// ChangeInstanceCompartment / ChangeImageCompartment: 202 with a work request. The record is in
/// the target compartment at once; an instance is MOVING until the work request succeeds, then
/// back in the state it had (an image has no MOVING state: it stays AVAILABLE).
pub fn change_compartment(ctx: &mut Ctx<'_>, kind: &str, id: &str, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    details::check(
        &b,
        &[details::F("compartmentId", details::Kind::Str)],
        "",
        "ChangeCompartmentDetails",
    )?;
    let target = required(&b, "compartmentId")?.to_string();
    ctx.check_compartment(&target, "compartmentId")?;
    let done = ctx.after(ctx.timings.move_);
    let if_match = ctx.if_match.clone();
    let rec = match kind {
        "instance" => ctx.world.instances.get_mut(id),
        _ => ctx.world.images.get_mut(id),
    }
    .ok_or_else(|| not_found(kind, id))?;
    etag_matches(&if_match, rec)?;
    let state = rec.state().to_string();
    let movable = match kind {
        "instance" => matches!(state.as_str(), "RUNNING" | "STOPPED"),
        _ => state == "AVAILABLE",
    };
    if !movable {
        return Err(error(
            409,
            "IncorrectState",
            format!(
                "{kind} `{id}` is {state}: it can move when it is {}",
                if kind == "instance" {
                    "RUNNING or STOPPED"
                } else {
                    "AVAILABLE"
                }
            ),
        ));
    }
    rec.body.insert("compartmentId".into(), json!(target));
    if kind == "instance" {
        rec.transition("MOVING", vec![Step { at: done, state }]);
    } else {
        rec.touch();
    }
    let etag = rec.etag();
    let op = if kind == "instance" {
        ctx.world.schedule(Coll::Instance, id);
        ctx.world.file_instance(id);
        volumes::move_attachments(ctx, id, &target);
        "ChangeInstanceCompartment"
    } else {
        "ChangeImageCompartment"
    };
    let wr = ctx.work_request(op, &target, kind, id, "RELATED", done);
    ctx.mutated = true;
    Ok(Reply::empty(202)
        .header("etag", etag)
        .header("opc-work-request-id", wr))
}
