//! Boot volume replacement: UpdateInstance with `sourceDetails` (an `UpdateInstanceSourceDetails`,
//! discriminated by `sourceType`), as OCI does it.
//!
//! What was read:
//! - oci-go-sdk v65 (vendored in oracle/terraform-provider-oci), `core/update_instance_details.go`:
//!   `SourceDetails UpdateInstanceSourceDetails json:"sourceDetails"`, polymorphic on
//!   `sourceType`; `core/update_instance_source_via_image_details.go`: `imageId` (mandatory),
//!   `isPreserveBootVolumeEnabled`, `bootVolumeSizeInGBs` ("Minimum value is 50 GB and maximum
//!   value is 32,768 GB"), `kmsKeyId` (a fixture Vault key, [`super::related`], kept on the new
//!   volume); `core/update_instance_source_via_boot_volume_details.go`:
//!   `bootVolumeId` (mandatory), `isPreserveBootVolumeEnabled`.
//! - terraform-provider-oci `internal/service/core/core_instance_resource.go`
//!   (`updateOptionsViaWorkRequest`): sends the UpdateInstance and waits for the response's
//!   `opc-work-request-id` with action type UPDATED.
//! - Oracle's docs, Compute › Replacing a Boot Volume
//!   (<https://docs.oracle.com/en-us/iaas/Content/Compute/Tasks/replacingbootvolume.htm>): "The
//!   instance stops, replaces the boot volume, and returns the instance to the state prior to the
//!   volume replacement process"; "only supported for virtual machine instances"; "Only Linux
//!   operating systems and images are supported. Windows and marketplace images are not
//!   supported"; "Boot volumes can only be replaced with block volumes and images that use the
//!   same Linux distribution".
//!
//! So here: a RUNNING instance goes STOPPING → STOPPED → STARTING → RUNNING (a STOPPED one stays
//! STOPPED); the old boot volume attachment detaches and the old volume is deleted unless
//! `isPreserveBootVolumeEnabled`; a new boot volume (new OCID) made from the image is attached;
//! `imageId` and `sourceDetails` name the new source at once; the VNIC, its IPs and hostname, the
//! OCID and everything else stay. The work request (UpdateInstance, UPDATED) succeeds when the
//! instance is back. Refused: a bare metal shape, a state other than RUNNING or STOPPED, an image
//! of another architecture or distribution, a Windows image, a size below the current one.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::api::{error, Ctx, Result};
use super::details::{self, F};
use super::store::{Record, Step};
use super::volumes;

/// UpdateInstanceSourceViaImageDetails.
const VIA_IMAGE: &[F] = &[
    F("sourceType", details::Kind::Str),
    F("imageId", details::Kind::Str),
    F("isPreserveBootVolumeEnabled", details::Kind::Bool),
    F("bootVolumeSizeInGBs", details::Kind::Int),
    F("kmsKeyId", details::Kind::Str),
];

/// UpdateInstanceSourceViaBootVolumeDetails.
const VIA_BOOT_VOLUME: &[F] = &[
    F("sourceType", details::Kind::Str),
    F("bootVolumeId", details::Kind::Str),
    F("isPreserveBootVolumeEnabled", details::Kind::Bool),
];

/// A checked replacement, not yet applied.
pub struct Replacement {
    image_id: Option<String>,
    /// An existing volume to attach; `None`: make one from the image.
    volume: Option<String>,
    size_gb: u64,
    vpus: u64,
    /// The new volume's Vault key (`kmsKeyId`, checked).
    kms: Option<String>,
    arch: String,
    preserve: bool,
}

fn bad(msg: impl Into<String>) -> super::api::Reply {
    error(400, "InvalidParameter", msg.into())
}

/// The current boot volume of `instance` (attached, or attaching).
fn current_volume(ctx: &Ctx<'_>, instance: &str) -> Option<String> {
    ctx.world
        .boot_volume_attachments
        .values()
        .find(|a| a.str("instanceId") == instance && matches!(a.state(), "ATTACHING" | "ATTACHED"))
        .map(|a| a.str("bootVolumeId").to_string())
}

fn image_os(ctx: &Ctx<'_>, image: Option<&str>) -> Option<String> {
    image
        .and_then(|i| ctx.image_any(i))
        .and_then(|r| r.body.get("operatingSystem"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Check `sourceDetails` of an UpdateInstance against the instance `rec`, as OCI would.
pub fn check(ctx: &Ctx<'_>, rec: &Record, src: &Value) -> Result<Replacement> {
    let id = rec.id().to_string();
    let src = src
        .as_object()
        .ok_or_else(|| bad("`sourceDetails` must be an object"))?;
    if rec.str("shape").starts_with("BM.") {
        return Err(bad(format!(
            "instance `{id}` is a bare metal instance: boot volume replacement is only supported for virtual machine instances"
        )));
    }
    if !matches!(rec.state(), "RUNNING" | "STOPPED") {
        return Err(error(
            409,
            "IncorrectState",
            format!(
                "instance `{id}` is {}: its boot volume can be replaced when it is RUNNING or STOPPED",
                rec.state()
            ),
        ));
    }
    let preserve = src
        .get("isPreserveBootVolumeEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let old_volume = current_volume(ctx, &id);
    let old_size = old_volume
        .as_deref()
        .and_then(|v| ctx.world.boot_volumes.get(v))
        .and_then(|v| v.body["sizeInGBs"].as_u64())
        .unwrap_or(volumes::DEFAULT_SIZE_GB);
    let old_vpus = old_volume
        .as_deref()
        .and_then(|v| ctx.world.boot_volumes.get(v))
        .and_then(|v| v.body["vpusPerGB"].as_u64())
        .unwrap_or(10);
    let (image_id, volume, size_gb, arch) = match src.get("sourceType").and_then(Value::as_str) {
        Some("image") => {
            details::check(
                src,
                VIA_IMAGE,
                "sourceDetails.",
                "UpdateInstanceSourceViaImageDetails",
            )?;
            let img = src.get("imageId").and_then(Value::as_str).ok_or_else(|| {
                error(
                    400,
                    "MissingParameter",
                    "`sourceDetails.imageId` is required",
                )
            })?;
            let image = match ctx.image_any(img) {
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
            let size =
                match src.get("bootVolumeSizeInGBs").filter(|v| !v.is_null()) {
                    None => old_size,
                    Some(v) => v.as_u64().filter(|s| (50..=32768).contains(s)).ok_or_else(
                        || bad("`sourceDetails.bootVolumeSizeInGBs` must be between 50 and 32768"),
                    )?,
                };
            let arch = image.meta_str("arch").unwrap_or("x86_64").to_string();
            if let Some(k) = src.get("kmsKeyId").and_then(Value::as_str) {
                super::related::kms_key(ctx, k, "sourceDetails.kmsKeyId")?;
            }
            (Some(img.to_string()), None, size, arch)
        }
        Some("bootVolume") => {
            details::check(
                src,
                VIA_BOOT_VOLUME,
                "sourceDetails.",
                "UpdateInstanceSourceViaBootVolumeDetails",
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
            let v = volumes::check_bootable(ctx, bv, rec.str("availabilityDomain"))?;
            (v.image_id, Some(bv.to_string()), v.size_gb, v.arch)
        }
        other => {
            return Err(bad(format!(
                "`sourceDetails.sourceType` {other:?} is not `image` or `bootVolume`"
            )))
        }
    };
    if size_gb < old_size {
        return Err(bad(format!(
            "`sourceDetails.bootVolumeSizeInGBs` {size_gb} is smaller than the current boot volume ({old_size} GB): a boot volume cannot shrink"
        )));
    }
    let own_arch = rec.meta_str("arch").unwrap_or("x86_64");
    if arch != own_arch {
        return Err(bad(format!(
            "the new source is a {arch} image; instance `{id}` runs {own_arch}: the architecture cannot change"
        )));
    }
    if src.get("sourceType").and_then(Value::as_str) == Some("image") {
        // The new image must list the instance's shape (and its OCPUs and memory) among its
        // compatible shapes, as at launch ([`super::image_shapes`]).
        if let Some(img) = image_id.as_deref().and_then(|i| ctx.image_any(i)) {
            let config = rec.body.get("shapeConfig").cloned().unwrap_or(Value::Null);
            super::image_shapes::check_launch(img, rec.str("shape"), &config)?;
        }
    }
    let new_os = image_os(ctx, image_id.as_deref());
    if new_os.as_deref().is_some_and(|o| o.contains("Windows")) {
        return Err(bad(
            "boot volume replacement supports Linux images only, not Windows",
        ));
    }
    let old_os = image_os(ctx, rec.body.get("imageId").and_then(Value::as_str));
    if let (Some(old), Some(new)) = (&old_os, &new_os) {
        if old != new {
            return Err(bad(format!(
                "instance `{id}` runs {old}; the new source is {new}: a boot volume can be replaced only with the same Linux distribution"
            )));
        }
    }
    Ok(Replacement {
        image_id,
        volume,
        size_gb,
        vpus: old_vpus,
        kms: src
            .get("kmsKeyId")
            .and_then(Value::as_str)
            .map(str::to_string),
        arch,
        preserve,
    })
}

/// Start the checked replacement `r` on `rec` (not yet put back in the world): the lifecycle,
/// the volumes and the record's source. Returns when the instance is back (the work request's
/// end).
pub fn start(ctx: &mut Ctx<'_>, rec: &mut Record, r: Replacement) -> DateTime<Utc> {
    let id = rec.id().to_string();
    let t = ctx.timings.clone();
    let was_running = rec.state() == "RUNNING";
    let stopped = if was_running {
        ctx.after(t.stop)
    } else {
        ctx.now
    };
    let swapped = stopped + chrono::Duration::from_std(t.launch / 2).unwrap_or_default();
    let done = if was_running {
        swapped + chrono::Duration::from_std(t.start).unwrap_or_default()
    } else {
        swapped
    };
    // The old volume detaches once the instance is stopped (deleted unless preserved).
    volumes::on_terminate(ctx, &id, r.preserve, stopped);
    let compartment = rec.str("compartmentId").to_string();
    let ad = rec.str("availabilityDomain").to_string();
    let name = rec.str("displayName").to_string();
    let volume = match &r.volume {
        Some(v) => v.clone(),
        None => volumes::create(
            ctx,
            &compartment,
            &ad,
            r.image_id.as_deref().unwrap_or(""),
            &r.arch,
            r.size_gb,
            r.vpus,
            &name,
            swapped,
        ),
    };
    if r.volume.is_none() {
        volumes::set_kms_key(ctx, &volume, Some(&json!(r.kms)));
    }
    volumes::attach(ctx, &volume, &id, &compartment, &ad, swapped);
    rec.meta.insert("bootVolumeId".into(), json!(volume));
    let details = match &r.volume {
        Some(v) => json!({ "sourceType": "bootVolume", "bootVolumeId": v }),
        None => json!({
            "sourceType": "image", "imageId": r.image_id, "bootVolumeSizeInGBs": r.size_gb,
            "bootVolumeVpusPerGB": r.vpus, "kmsKeyId": r.kms, "instanceSourceImageFilterDetails": null,
        }),
    };
    rec.body.insert("sourceDetails".into(), details);
    rec.body.insert("imageId".into(), json!(r.image_id));
    if was_running {
        rec.transition(
            "STOPPING",
            vec![
                Step {
                    at: stopped,
                    state: "STOPPED".into(),
                },
                Step {
                    at: swapped,
                    state: "STARTING".into(),
                },
                Step {
                    at: done,
                    state: "RUNNING".into(),
                },
            ],
        );
    } else {
        rec.touch();
    }
    done
}

/// 409 while a boot volume replacement of `rec` is under way: OCI accepts no other update or
/// power action on the instance until its work request finished.
pub fn not_busy(ctx: &Ctx<'_>, rec: &Record) -> Result<()> {
    let until = rec
        .meta
        .get("replacingWorkRequest")
        .and_then(Value::as_str)
        .and_then(|wr| ctx.world.work_requests.get(wr))
        .map(|wr| wr.finishes);
    match until {
        Some(t) if ctx.now < t => Err(error(
            409,
            "IncorrectState",
            format!(
                "instance `{}` is having its boot volume replaced: try again when its work request has finished",
                rec.id()
            ),
        )),
        _ => Ok(()),
    }
}

/// `sourceDetails` given (not null) in an UpdateInstance body.
pub fn given(b: &Map<String, Value>) -> Option<&Value> {
    b.get("sourceDetails").filter(|v| !v.is_null())
}
