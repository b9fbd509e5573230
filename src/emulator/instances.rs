//! Instances: LaunchInstance (every field of LaunchInstanceDetails kept and returned, or refused)
//! and ListInstances. What changes an instance after its launch — UpdateInstance,
//! TerminateInstance, InstanceAction, the compartment moves — is in [`super::instance_changes`].

use serde_json::{json, Map, Value};

use super::api::{
    error, new_ocid, oracle_tags, parse_body, q, required, required_query, str_field, string_map,
    Ctx, Reply, Result,
};
use super::details::{self, overlay};
use super::identity;
use super::list;
use super::network;
use super::shapes::{self, Shape};
use super::store::{rfc3339, Coll, Record, Step};
use super::volumes;

const FAULT_DOMAINS: &[&str] = &["FAULT-DOMAIN-1", "FAULT-DOMAIN-2", "FAULT-DOMAIN-3"];

pub(super) fn check_fault_domain(fd: &str) -> Result<()> {
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
pub(super) fn given_shape_config<'b>(
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
    let via_image = b
        .get("sourceDetails")
        .and_then(|s| s.get("sourceType"))
        .and_then(Value::as_str)
        == Some("image");
    if let Some(img) = src
        .image_id
        .as_deref()
        .filter(|_| via_image)
        .and_then(|i| ctx.image_any(i))
    {
        super::image_shapes::check_launch(img, shape.name, &shape_cfg)?;
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
