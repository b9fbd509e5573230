//! A VNIC after launch: GetVnic and UpdateVnic, with an etag that is a digest of the VNIC (so
//! it changes with every update and If-Match guards UpdateVnic as it does in OCI).
//!
//! UpdateVnicDetails, after oci-go-sdk v65 `core.UpdateVnicDetails`: `definedTags`,
//! `displayName`, `freeformTags`, `securityAttributes`, `hostnameLabel`, `nsgIds`,
//! `skipSourceDestCheck`. The new hostname label must be a label (RFC 952/1123) not held by
//! another VNIC of the subnet (it is the primary private IP's too); every NSG must exist in the
//! VNIC's VCN (the fixtures' one VCN), at most 5.

use std::hash::{Hash, Hasher};

use serde_json::Value;

use super::api::{error, not_found, parse_body, Ctx, Reply, Result};
use super::details::{self, Kind, F};

const UPDATE_VNIC: &[F] = &[
    F("definedTags", Kind::Tags),
    F("displayName", Kind::Str),
    F("freeformTags", Kind::StrMap),
    F("securityAttributes", Kind::Tags),
    F("hostnameLabel", Kind::Str),
    F("nsgIds", Kind::StrList),
    F("skipSourceDestCheck", Kind::Bool),
];

/// The VNIC's etag: a digest of what GetVnic returns.
fn etag(v: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("vnic-{:016x}", h.finish())
}

pub fn get_vnic(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    ctx.world
        .vnics
        .get(id)
        .map(|v| Reply::json(200, v).header("etag", etag(v)))
        .ok_or_else(|| not_found("vnic", id))
}

/// UpdateVnic (`PUT /vnics/{vnicId}`).
pub fn update_vnic(ctx: &mut Ctx<'_>, id: &str, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    details::check(&b, UPDATE_VNIC, "", "UpdateVnicDetails")?;
    let old = ctx
        .world
        .vnics
        .get(id)
        .filter(|_| ctx.world.live_instance_of(id).is_some())
        .ok_or_else(|| not_found("vnic", id))?
        .clone();
    if let Some(m) = ctx.if_match.as_deref() {
        if m != "*" && m != etag(&old) {
            return Err(error(
                412,
                "NoEtagMatch",
                format!("The resource's etag does not match the If-Match value `{m}`"),
            ));
        }
    }
    let subnet = old["subnetId"].as_str().unwrap_or("").to_string();
    if let Some(h) = b.get("hostnameLabel").and_then(Value::as_str) {
        if !super::network::hostname_ok(h) {
            return Err(error(
                400,
                "InvalidParameter",
                format!("hostname label `{h}` must be 1 to 63 letters, digits and hyphens, starting with a letter"),
            ));
        }
        let own = old["hostnameLabel"]
            .as_str()
            .is_some_and(|o| o.eq_ignore_ascii_case(h));
        if !own && ctx.world.label_taken(&subnet, h) {
            return Err(error(
                409,
                "Conflict",
                format!("hostname label `{h}` is already in use in subnet `{subnet}`"),
            ));
        }
    }
    if let Some(nsgs) = b.get("nsgIds").and_then(Value::as_array) {
        if nsgs.len() > 5 {
            return Err(error(
                400,
                "InvalidParameter",
                "`nsgIds` takes at most 5 network security groups",
            ));
        }
        if let Some(bad) = nsgs
            .iter()
            .find(|n| !n.as_str().is_some_and(|n| ctx.fixtures.is_nsg(n)))
        {
            return Err(error(
                400,
                "RelatedResourceNotAuthorizedOrNotFound",
                format!(
                    "network security group {bad} not found in the VNIC's VCN or not authorized"
                ),
            ));
        }
    }
    let defined = ctx.defined_tags(&b)?;
    let mut new = old.clone();
    for k in [
        "displayName",
        "freeformTags",
        "securityAttributes",
        "hostnameLabel",
        "nsgIds",
        "skipSourceDestCheck",
    ] {
        if let Some(v) = b.get(k).filter(|v| !v.is_null()) {
            new[k] = v.clone();
        }
    }
    if let Some(t) = defined {
        new["definedTags"] = Value::Object(t);
    }
    // The primary private IP carries the VNIC's hostname label.
    if new["hostnameLabel"] != old["hostnameLabel"] {
        let ips: Vec<String> = ctx
            .world
            .private_ips_of(id)
            .filter(|p| p["isPrimary"] == true)
            .filter_map(|p| p["id"].as_str().map(str::to_string))
            .collect();
        for ip in ips {
            if let Some(p) = ctx.world.private_ips.get_mut(&ip) {
                p["hostnameLabel"] = new["hostnameLabel"].clone();
            }
        }
    }
    ctx.world.set_vnic(id, new.clone());
    Ok(Reply::json(200, &new).header("etag", etag(&new)))
}
