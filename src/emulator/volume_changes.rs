//! A boot volume's changes (Block Volume API): UpdateBootVolume (names, tags, size, performance)
//! and UpdateBootVolumeKmsKey (the Vault key), each guarded by If-Match on the volume's etag.
//!
//! What was read (oci-go-sdk v65, vendored in oracle/terraform-provider-oci):
//! `core/core_blockstorage_client.go` (`PUT /bootVolumes/{bootVolumeId}` and
//! `PUT /bootVolumes/{bootVolumeId}/kmsKey`), `core/update_boot_volume_details.go` (the fields
//! below; `sizeInGBs` "has to be larger than the current size"; `vpusPerGB` 10, 20 or 30–120),
//! `core/update_boot_volume_kms_key_details.go` (`kmsKeyId`: "If you specify the same OCID as
//! the previous key's OCID, the Block Volume service will use it to regenerate a volume
//! encryption key"), `core/update_boot_volume_kms_key_request_response.go` (the answer is a
//! BootVolumeKmsKey `{kmsKeyId}` with the volume's `etag`), and the Terraform provider's
//! `internal/service/core/core_instance_resource.go` (`waitForBootVolumeIfItIsUpdating`: after
//! either call it polls GetBootVolume while the volume is PROVISIONING).
//!
//! So here: the volume must be AVAILABLE (else 409 `IncorrectState`); a size or performance
//! change and a key change put it in PROVISIONING, AVAILABLE again after a short while (as long
//! as a compartment move), with the new values readable at once. A key the fixtures do not hold
//! is 400 `RelatedResourceNotAuthorizedOrNotFound`, as at launch ([`super::related`]); no key is
//! 400 (removing one is DeleteBootVolumeKmsKey, not modelled). `isAutoTuneEnabled`,
//! `bootVolumeReplicas` and `autotunePolicies` are refused as unmodelled.
//!
//! GetInstance's `sourceDetails` is not changed: it is what the instance was launched with (the
//! provider reads `sourceDetails.bootVolumeVpusPerGB` first and falls back on the volume's
//! `vpusPerGB`; after a key changed outside Terraform, its read still saw the launch-time
//! `kmsKeyId` — terraform-provider-oci issue #1386). The volume is where the current values are.

use serde_json::{json, Value};

use super::api::{
    error, etag_matches, not_found, parse_body, str_field, string_map, Ctx, Reply, Result,
};
use super::details::{self, Kind, F};
use super::store::{Coll, Step};

const UPDATE_BOOT_VOLUME: &[F] = &[
    F("displayName", Kind::Str),
    F("freeformTags", Kind::StrMap),
    F("definedTags", Kind::Tags),
    F("sizeInGBs", Kind::Int),
    F("vpusPerGB", Kind::Int),
    F("isAutoTuneEnabled", Kind::Unmodelled),
    F("bootVolumeReplicas", Kind::Unmodelled),
    F("autotunePolicies", Kind::Unmodelled),
];

const UPDATE_KMS_KEY: &[F] = &[F("kmsKeyId", Kind::Str)];

/// 10 balanced, 20 higher, 30–120 ultra high performance, in steps of 10 (as the launch checks).
pub fn vpus_ok(v: &Value) -> Option<u64> {
    v.as_u64().filter(|v| (10..=120).contains(v) && v % 10 == 0)
}

/// The volume `id`, AVAILABLE, at the version If-Match names.
fn changeable<'c>(ctx: &'c mut Ctx<'_>, id: &str) -> Result<&'c mut super::store::Record> {
    let if_match = ctx.if_match.clone();
    let rec = ctx
        .world
        .boot_volumes
        .get_mut(id)
        .ok_or_else(|| not_found("boot volume", id))?;
    etag_matches(&if_match, rec)?;
    if rec.state() != "AVAILABLE" {
        return Err(error(
            409,
            "IncorrectState",
            format!("boot volume `{id}` is {}, not AVAILABLE", rec.state()),
        ));
    }
    Ok(rec)
}

/// The volume is PROVISIONING until `ready`.
fn provisioning(ctx: &mut Ctx<'_>, id: &str) {
    let ready = ctx.after(ctx.timings.move_);
    if let Some(rec) = ctx.world.boot_volumes.get_mut(id) {
        rec.transition(
            "PROVISIONING",
            vec![Step {
                at: ready,
                state: "AVAILABLE".into(),
            }],
        );
    }
    ctx.world.schedule(Coll::BootVolume, id);
}

/// UpdateBootVolume.
pub fn update(ctx: &mut Ctx<'_>, id: &str, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    details::check(&b, UPDATE_BOOT_VOLUME, "", "UpdateBootVolumeDetails")?;
    let vpus = match b.get("vpusPerGB").filter(|v| !v.is_null()) {
        None => None,
        Some(v) => Some(vpus_ok(v).ok_or_else(|| {
            error(
                400,
                "InvalidParameter",
                "`vpusPerGB` must be 10 to 120 in steps of 10",
            )
        })?),
    };
    let defined = ctx.defined_tags(&b)?;
    let rec = changeable(ctx, id)?;
    let size = match b.get("sizeInGBs").and_then(Value::as_u64) {
        None => None,
        Some(s) => {
            let now = rec.body["sizeInGBs"].as_u64().unwrap_or(0);
            if s <= now || s > 32_768 {
                return Err(error(
                    400,
                    "InvalidParameter",
                    format!("`sizeInGBs` must be larger than the current size ({now} GB) and at most 32768"),
                ));
            }
            Some(s)
        }
    };
    if let Some(n) = str_field(&b, "displayName")? {
        rec.body.insert("displayName".into(), json!(n));
    }
    if let Some(t) = string_map(&b, "freeformTags")? {
        rec.body.insert("freeformTags".into(), Value::Object(t));
    }
    if let Some(t) = defined {
        rec.body.insert("definedTags".into(), Value::Object(t));
    }
    let mut slow = false;
    if let Some(v) = vpus {
        slow |= rec.body["vpusPerGB"].as_u64() != Some(v);
        rec.body.insert("vpusPerGB".into(), json!(v));
    }
    if let Some(s) = size {
        slow = true;
        rec.body.insert("sizeInGBs".into(), json!(s));
        rec.body.insert("sizeInMBs".into(), json!(s * 1024));
    }
    rec.touch();
    if slow {
        provisioning(ctx, id);
    }
    ctx.mutated = true;
    let rec = &ctx.world.boot_volumes[id];
    Ok(Ctx::reply_record(rec, 200))
}

/// UpdateBootVolumeKmsKey: the volume is encrypted with another Vault key (the same key again
/// regenerates the volume's encryption key: a change all the same).
pub fn update_kms_key(ctx: &mut Ctx<'_>, id: &str, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    details::check(&b, UPDATE_KMS_KEY, "", "UpdateBootVolumeKmsKeyDetails")?;
    // Going back to Oracle-managed keys is DeleteBootVolumeKmsKey, which is not modelled.
    let key = str_field(&b, "kmsKeyId")?
        .map(str::to_string)
        .ok_or_else(|| {
            error(
                400,
                "InvalidParameter",
                "`kmsKeyId` is required (DeleteBootVolumeKmsKey, not modelled here, removes a key)",
            )
        })?;
    super::related::kms_key(ctx, &key, "kmsKeyId")?;
    let rec = changeable(ctx, id)?;
    rec.body.insert("kmsKeyId".into(), json!(key));
    rec.touch();
    provisioning(ctx, id);
    ctx.mutated = true;
    let rec = &ctx.world.boot_volumes[id];
    Ok(Reply::json(200, &json!({ "kmsKeyId": rec.body["kmsKeyId"] })).header("etag", rec.etag()))
}
