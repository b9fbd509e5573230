//! The related resources a launch names that the emulator knows only as fixtures — Vault keys
//! (`sourceDetails.kmsKeyId`) and compute capacity reservations (`capacityReservationId`) — and
//! the rules of preemptible capacity, checked as OCI answers them.
//!
//! What was read:
//! - oci-go-sdk v65 (vendored in oracle/terraform-provider-oci): `core/launch_instance_details.go`
//!   (`capacityReservationId`, `preemptibleInstanceConfig`), `core/update_instance_details.go`
//!   ("You can remove the instance from a reservation by specifying an empty string as input for
//!   this field"), `core/instance_source_via_image_details.go` (`kmsKeyId`,
//!   `bootVolumeVpusPerGB`: "`10`: Represents Balanced option. `20`: Represents Higher
//!   Performance option. `30`-`120`: Represents the Ultra High Performance option"),
//!   `core/preemptible_instance_config_details.go` (`preemptionAction`, mandatory),
//!   `core/terminate_preemption_action.go` (`type` `TERMINATE`, `preserveBootVolume`).
//! - Oracle's docs, Compute › Preemptible Instances
//!   (<https://docs.oracle.com/iaas/Content/Compute/Concepts/preemptible.htm>): "Preemptible
//!   capacity cannot be used with capacity reservations or with the dedicated virtual machine
//!   hosts feature"; no bare metal or burstable instances.
//!
//! So here: a key or a reservation the fixtures do not hold is 400
//! `RelatedResourceNotAuthorizedOrNotFound` (as an unknown image or subnet at launch); a
//! reservation serves the one availability domain it is in (another is 400 `InvalidParameter`),
//! for any shape, without counting what it holds (its counts are not modelled); preemptible
//! capacity needs `preemptionAction.type` and refuses a reservation, bare metal and a burstable
//! baseline (400 `InvalidParameter`).

use serde_json::{Map, Value};

use super::api::{error, Ctx, Result};

/// `id` is a Vault key of the fixtures.
pub fn kms_key(ctx: &Ctx<'_>, id: &str, field: &str) -> Result<()> {
    if ctx.fixtures.kms_key_ids.iter().any(|k| k == id) {
        return Ok(());
    }
    Err(error(
        400,
        "RelatedResourceNotAuthorizedOrNotFound",
        format!("`{field}`: key `{id}` not found or not authorized"),
    ))
}

/// `id` is the fixtures' capacity reservation and serves `ad`.
pub fn capacity_reservation(ctx: &Ctx<'_>, id: &str, ad: &str) -> Result<()> {
    let f = ctx.fixtures;
    if id != f.capacity_reservation_id {
        return Err(error(
            400,
            "RelatedResourceNotAuthorizedOrNotFound",
            format!("capacity reservation `{id}` not found or not authorized"),
        ));
    }
    if f.availability_domains.first().map(String::as_str) != Some(ad) {
        return Err(error(
            400,
            "InvalidParameter",
            format!(
                "capacity reservation `{id}` is in availability domain `{}`, not `{ad}`",
                f.availability_domains[0]
            ),
        ));
    }
    Ok(())
}

/// `preemptibleInstanceConfig` of a launch (type-checked already) against the rest of it.
pub fn preemptible(b: &Map<String, Value>, shape: &str, baseline: Option<&str>) -> Result<()> {
    let Some(p) = b.get("preemptibleInstanceConfig").filter(|p| !p.is_null()) else {
        return Ok(());
    };
    let bad = |m: String| Err(error(400, "InvalidParameter", m));
    match p.get("preemptionAction").filter(|a| !a.is_null()) {
        None => {
            return Err(error(
                400,
                "MissingParameter",
                "`preemptibleInstanceConfig.preemptionAction` is required",
            ))
        }
        Some(a) if a.get("type").is_none_or(Value::is_null) => {
            return Err(error(
                400,
                "MissingParameter",
                "`preemptibleInstanceConfig.preemptionAction.type` is required",
            ))
        }
        Some(_) => {}
    }
    if b.get("capacityReservationId").is_some_and(|r| !r.is_null()) {
        return bad("preemptible capacity cannot be used with a capacity reservation".into());
    }
    if shape.starts_with("BM.") {
        return bad(format!(
            "preemptible capacity does not support bare metal shapes (`{shape}`)"
        ));
    }
    if baseline.is_some_and(|b| b != "BASELINE_1_1") {
        return bad("preemptible capacity does not support burstable instances".into());
    }
    Ok(())
}
