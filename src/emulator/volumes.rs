//! Boot volumes and boot volume attachments (Block Volume and Compute APIs). A launch from an
//! image makes a volume and attaches it; a launch from a volume attaches that one. Terminating
//! detaches, and deletes the volume unless `preserveBootVolume=true`: a preserved volume stays
//! AVAILABLE and can boot a new instance in its availability domain.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::api::{error, etag_matches, new_ocid, not_found, q, required_query, Ctx, Reply, Result};
use super::list::{self, Key};
use super::store::{rfc3339, Coll, Record, Step};

/// A boot volume's size when the launch gives none (OCI's default, 46.6 GB, rounds to 47).
pub const DEFAULT_SIZE_GB: u64 = 47;

/// What a launch from an existing boot volume needs to know of it.
pub struct Bootable {
    pub image_id: Option<String>,
    pub arch: String,
    pub size_gb: u64,
}

fn attached(ctx: &Ctx<'_>, volume: &str) -> bool {
    ctx.world.boot_volume_attachments.values().any(|a| {
        a.str("bootVolumeId") == volume
            && matches!(a.state(), "ATTACHING" | "ATTACHED" | "DETACHING")
    })
}

/// Check that `id` can boot a new instance in `ad`: it exists (else 400, as for any related
/// resource), is AVAILABLE and detached (else 409) and lives in `ad` (else 400).
pub fn check_bootable(ctx: &Ctx<'_>, id: &str, ad: &str) -> Result<Bootable> {
    let v = ctx.world.boot_volumes.get(id).ok_or_else(|| {
        error(
            400,
            "RelatedResourceNotAuthorizedOrNotFound",
            format!("boot volume `{id}` not found or not authorized"),
        )
    })?;
    if v.state() != "AVAILABLE" {
        return Err(error(
            409,
            "IncorrectState",
            format!("boot volume `{id}` is {}, not AVAILABLE", v.state()),
        ));
    }
    if attached(ctx, id) {
        return Err(error(
            409,
            "Conflict",
            format!("boot volume `{id}` is attached to an instance: detach it (terminate that instance with preserveBootVolume=true) first"),
        ));
    }
    if v.str("availabilityDomain") != ad {
        return Err(error(
            400,
            "InvalidParameter",
            format!(
                "boot volume `{id}` is in `{}`: an instance booting from it must be launched in that availability domain, not `{ad}`",
                v.str("availabilityDomain")
            ),
        ));
    }
    Ok(Bootable {
        image_id: v
            .body
            .get("imageId")
            .and_then(Value::as_str)
            .map(str::to_string),
        arch: v.meta_str("arch").unwrap_or("x86_64").to_string(),
        size_gb: v.body["sizeInGBs"].as_u64().unwrap_or(DEFAULT_SIZE_GB),
    })
}

/// A new boot volume for an instance launched from `image_id`, AVAILABLE at `ready`.
// A boot volume has this many independent properties at creation (as OCI's model has).
#[allow(clippy::too_many_arguments)]
pub fn create(
    ctx: &mut Ctx<'_>,
    compartment: &str,
    ad: &str,
    image_id: &str,
    arch: &str,
    size_gb: u64,
    vpus: u64,
    instance_name: &str,
    ready: DateTime<Utc>,
) -> String {
    let id = new_ocid("bootvolume", ctx.region_code);
    let body = json!({
        "id": id, "compartmentId": compartment, "availabilityDomain": ad,
        "displayName": format!("{instance_name} (Boot Volume)"), "imageId": image_id,
        "lifecycleState": "PROVISIONING", "sizeInGBs": size_gb, "sizeInMBs": size_gb * 1024,
        "vpusPerGB": vpus, "isHydrated": true, "isAutoTuneEnabled": false, "autoTunedVpusPerGB": null,
        "autotunePolicies": [], "bootVolumeReplicas": [], "clusterPlacementGroupId": null,
        "kmsKeyId": null, "sourceDetails": null, "volumeGroupId": null,
        "freeformTags": {}, "definedTags": {}, "systemTags": {}, "timeCreated": rfc3339(ctx.now),
    });
    let mut rec = Record::new(body.as_object().expect("object").clone());
    rec.meta.insert("arch".into(), json!(arch));
    rec.steps = vec![Step {
        at: ready,
        state: "AVAILABLE".into(),
    }];
    ctx.world.boot_volumes.insert(id.clone(), rec);
    ctx.world.schedule(Coll::BootVolume, &id);
    id
}

/// The Vault key (`kmsKeyId`, checked) a new boot volume is encrypted with; `None` or null: Oracle's.
pub fn set_kms_key(ctx: &mut Ctx<'_>, volume: &str, key: Option<&Value>) {
    if let (Some(rec), Some(k)) = (
        ctx.world.boot_volumes.get_mut(volume),
        key.filter(|k| !k.is_null()),
    ) {
        rec.body.insert("kmsKeyId".into(), k.clone());
    }
}

/// Attach `volume` to `instance` (ATTACHED at `ready`).
pub fn attach(
    ctx: &mut Ctx<'_>,
    volume: &str,
    instance: &str,
    compartment: &str,
    ad: &str,
    ready: DateTime<Utc>,
) {
    let id = new_ocid("bootvolumeattachment", ctx.region_code);
    let now = rfc3339(ctx.now);
    let body = json!({
        "id": id, "compartmentId": compartment, "availabilityDomain": ad, "bootVolumeId": volume,
        "instanceId": instance, "displayName": "Remote boot attachment for instance",
        "lifecycleState": "ATTACHING", "isPvEncryptionInTransitEnabled": false,
        "isEncryptionInTransitEnabled": false, "encryptionInTransitType": "NONE",
        "timeCreated": now, "timeUpdated": now,
    });
    let mut rec = Record::new(body.as_object().expect("object").clone());
    rec.steps = vec![Step {
        at: ready,
        state: "ATTACHED".into(),
    }];
    ctx.world.boot_volume_attachments.insert(id.clone(), rec);
    ctx.world.schedule(Coll::BootVolumeAttachment, &id);
}

/// The instance is terminating (done at `done`): detach its boot volume and, unless preserved,
/// delete it.
pub fn on_terminate(ctx: &mut Ctx<'_>, instance: &str, preserve: bool, done: DateTime<Utc>) {
    let now = ctx.now;
    let mut volumes = Vec::new();
    let mut detaching = Vec::new();
    for (id, a) in ctx.world.boot_volume_attachments.iter_mut() {
        if a.str("instanceId") == instance && a.state() != "DETACHED" {
            volumes.push(a.str("bootVolumeId").to_string());
            detaching.push(id.clone());
            a.transition(
                "DETACHING",
                vec![Step {
                    at: done,
                    state: "DETACHED".into(),
                }],
            );
            a.body.insert("timeUpdated".into(), json!(rfc3339(done)));
        }
    }
    for id in detaching {
        ctx.world.schedule(Coll::BootVolumeAttachment, &id);
    }
    if preserve {
        // A volume still being made is ready by the time its instance is gone.
        for v in volumes {
            if let Some(rec) = ctx.world.boot_volumes.get_mut(&v) {
                for step in rec.steps.iter_mut() {
                    step.at = step.at.min(done);
                }
            }
            ctx.world.schedule(Coll::BootVolume, &v);
        }
        return;
    }
    for v in volumes {
        if let Some(rec) = ctx.world.boot_volumes.get_mut(&v) {
            if rec.state() != "TERMINATED" {
                rec.transition(
                    "TERMINATING",
                    vec![Step {
                        at: done.max(now),
                        state: "TERMINATED".into(),
                    }],
                );
            }
        }
        ctx.world.schedule(Coll::BootVolume, &v);
    }
}

pub fn get(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    ctx.world
        .boot_volumes
        .get(id)
        .map(|r| Ctx::reply_record(r, 200))
        .ok_or_else(|| not_found("boot volume", id))
}

/// ListBootVolumes: compartmentId required; availabilityDomain filters. Oldest first.
pub fn list(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    ctx.check_compartment(compartment, "compartmentId")?;
    if let Some(ad) = q(query, "availabilityDomain") {
        ctx.check_ad(ad)?;
    }
    if q(query, "volumeGroupId").is_some() {
        return Ok(Reply::json(200, &json!([])));
    }
    let items: Vec<(Key, Value)> = ctx
        .world
        .boot_volumes
        .values()
        .map(|r| Value::Object(r.body.clone()))
        .filter(|v| v["compartmentId"] == compartment)
        .filter(|v| q(query, "availabilityDomain").is_none_or(|a| v["availabilityDomain"] == a))
        .map(|v| (Key::of(0, &v, "timeCreated"), v))
        .collect();
    list::page(items, false, query)
}

/// DeleteBootVolume: a detached volume goes TERMINATING → TERMINATED; an attached one is 409.
pub fn delete(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    let is_attached = attached(ctx, id);
    let done = ctx.after(ctx.timings.terminate / 3);
    let if_match = ctx.if_match.clone();
    let rec = ctx
        .world
        .boot_volumes
        .get_mut(id)
        .ok_or_else(|| not_found("boot volume", id))?;
    etag_matches(&if_match, rec)?;
    if rec.state() == "TERMINATED" {
        return Err(not_found("boot volume", id));
    }
    if is_attached || rec.state() != "AVAILABLE" {
        return Err(error(
            409,
            "IncorrectState",
            format!(
                "boot volume `{id}` is {}{}",
                rec.state(),
                if is_attached { " and attached" } else { "" }
            ),
        ));
    }
    rec.transition(
        "TERMINATING",
        vec![Step {
            at: done,
            state: "TERMINATED".into(),
        }],
    );
    ctx.world.schedule(Coll::BootVolume, id);
    ctx.mutated = true;
    Ok(Reply::empty(204))
}

/// ListBootVolumeAttachments: availabilityDomain and compartmentId required (as Oracle's SDKs
/// send them); instanceId and bootVolumeId filter. Oldest first.
pub fn list_attachments(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let ad = required_query(query, "availabilityDomain")?;
    ctx.check_ad(ad)?;
    let compartment = required_query(query, "compartmentId")?;
    ctx.check_compartment(compartment, "compartmentId")?;
    let items: Vec<(Key, Value)> = ctx
        .world
        .boot_volume_attachments
        .values()
        .map(|r| Value::Object(r.body.clone()))
        .filter(|v| v["compartmentId"] == compartment && v["availabilityDomain"] == ad)
        .filter(|v| q(query, "instanceId").is_none_or(|i| v["instanceId"] == i))
        .filter(|v| q(query, "bootVolumeId").is_none_or(|b| v["bootVolumeId"] == b))
        .map(|v| (Key::of(0, &v, "timeCreated"), v))
        .collect();
    list::page(items, false, query)
}

pub fn get_attachment(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    ctx.world
        .boot_volume_attachments
        .get(id)
        .map(|r| Ctx::reply_record(r, 200))
        .ok_or_else(|| not_found("boot volume attachment", id))
}

/// Moving an instance moves its boot volume attachment (the attachment lives in the instance's
/// compartment; the volume stays where it is, as on OCI).
pub fn move_attachments(ctx: &mut Ctx<'_>, instance: &str, compartment: &str) {
    for a in ctx.world.boot_volume_attachments.values_mut() {
        if a.str("instanceId") == instance {
            a.body.insert("compartmentId".into(), json!(compartment));
            a.touch();
        }
    }
    for a in ctx.world.vnic_attachments.values_mut() {
        if a["instanceId"] == instance {
            a["compartmentId"] = json!(compartment);
        }
    }
}
