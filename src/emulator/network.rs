//! Networking: the seeded VCN and subnets (Get/List), the primary VNIC every launch makes (its
//! attachment, the VNIC with the CreateVnicDetails it was given, and its primary private IP),
//! ListPrivateIps, ListIpv6s, and the ephemeral public IPs (ListPublicIps, GetPublicIp,
//! GetPublicIpByPrivateIpId).
//!
//! A public IP is not a record of its own: each VNIC with a `publicIp` has one ephemeral public
//! IP object, derived from the VNIC and its primary private IP when asked for, with an OCID that
//! is the VNIC's with `publicip` for `vnic` (stable, and a GetPublicIp finds its VNIC from it).
//! Lists go through the world's indexes ([`super::store::World::attachments_of`],
//! [`super::store::World::vnics_in_subnet`], [`super::store::World::vnics_in_compartment`]): a
//! request costs what the compartment or subnet holds, not what the world holds.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{json, Map, Value};

use super::api::{
    error, new_ocid, not_found, parse_body, q, required, required_query, Ctx, Reply, Result,
};
use super::details;
use super::list::{self, Key};
use super::store::rfc3339;

pub fn list_vcns(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    ctx.check_compartment(compartment, "compartmentId")?;
    let items = vec![ctx.fixtures.vcn_json()]
        .into_iter()
        .filter(|v| q(query, "displayName").is_none_or(|d| v["displayName"] == d))
        .filter(|v| list::state_filter(query, v))
        .collect();
    list::sorted_page(items, query, "TIMECREATED")
}

pub fn get_vcn(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    (id == ctx.fixtures.vcn_id)
        .then(|| Reply::json(200, &ctx.fixtures.vcn_json()).header("etag", "vcn-1"))
        .ok_or_else(|| not_found("vcn", id))
}

/// ListSubnets: the seeded subnets (visible from every compartment), filtered by `vcnId`,
/// `displayName` and `lifecycleState`.
pub fn list_subnets(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    ctx.check_compartment(compartment, "compartmentId")?;
    let items = ctx
        .fixtures
        .subnets_json()
        .into_iter()
        .filter(|v| q(query, "vcnId").is_none_or(|id| v["vcnId"] == id))
        .filter(|v| q(query, "displayName").is_none_or(|d| v["displayName"] == d))
        .filter(|v| list::state_filter(query, v))
        .collect();
    list::sorted_page(items, query, "TIMECREATED")
}

pub fn get_subnet(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    ctx.fixtures
        .subnet_json(id)
        .map(|s| Reply::json(200, &s).header("etag", "subnet-1"))
        .ok_or_else(|| not_found("subnet", id))
}

/// A subnet's usable addresses: network + 2 (after the virtual router) to broadcast - 1.
fn hosts(cidr: &str) -> Option<(u32, u32)> {
    let (ip, bits) = cidr.split_once('/')?;
    let base = u32::from(ip.parse::<Ipv4Addr>().ok()?);
    let bits: u32 = bits.parse().ok()?;
    let size = 1u32.checked_shl(32 - bits)?;
    Some((base + 2, base + size - 2))
}

/// The primary VNIC a launch makes, validated before anything changes.
pub struct VnicPlan {
    pub subnet: String,
    pub private_subnet: bool,
    pub private_ip: String,
    pub public: bool,
    pub details: Map<String, Value>,
    pub hostname: Option<String>,
}

pub(super) fn hostname_ok(h: &str) -> bool {
    (1..=63).contains(&h.len())
        && h.starts_with(|c: char| c.is_ascii_alphabetic())
        && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Check CreateVnicDetails (already type-checked) against the subnet and what is in use; pick the
/// private IP. `hostname_label` is the deprecated top-level field of LaunchInstanceDetails.
pub fn plan_vnic(
    ctx: &Ctx<'_>,
    details: Map<String, Value>,
    top_subnet: Option<&str>,
    hostname_label: Option<&str>,
    display_name: &str,
) -> Result<VnicPlan> {
    let subnet = details
        .get("subnetId")
        .and_then(Value::as_str)
        .or(top_subnet)
        .ok_or_else(|| {
            error(
                400,
                "MissingParameter",
                "`createVnicDetails.subnetId` is required",
            )
        })?
        .to_string();
    let s = ctx.fixtures.subnet_json(&subnet).ok_or_else(|| {
        error(
            400,
            "RelatedResourceNotAuthorizedOrNotFound",
            format!("subnet `{subnet}` not found or not authorized"),
        )
    })?;
    let private_subnet = s["prohibitPublicIpOnVnic"].as_bool().unwrap_or(false);
    let flag = |k: &str| details.get(k).and_then(Value::as_bool);
    if private_subnet && flag("assignPublicIp") == Some(true) {
        return Err(error(
            400,
            "InvalidParameter",
            format!("subnet `{subnet}` prohibits public IPs: `assignPublicIp` must be false"),
        ));
    }
    if flag("assignIpv6Ip") == Some(true) {
        return Err(error(
            400,
            "InvalidParameter",
            format!("subnet `{subnet}` has no IPv6 prefix: `assignIpv6Ip` cannot be true"),
        ));
    }
    if let Some(nsgs) = details.get("nsgIds").and_then(Value::as_array) {
        if nsgs.len() > 5 {
            return Err(error(
                400,
                "InvalidParameter",
                "`createVnicDetails.nsgIds` takes at most 5 network security groups",
            ));
        }
        if let Some(bad) = nsgs
            .iter()
            .find(|n| !n.as_str().is_some_and(|n| ctx.fixtures.is_nsg(n)))
        {
            return Err(error(
                400,
                "RelatedResourceNotAuthorizedOrNotFound",
                format!("network security group {bad} not found or not authorized"),
            ));
        }
    }
    let label = details
        .get("hostnameLabel")
        .and_then(Value::as_str)
        .or(hostname_label);
    if let (Some(a), Some(b)) = (
        details.get("hostnameLabel").and_then(Value::as_str),
        hostname_label,
    ) {
        if a != b {
            return Err(error(
                400,
                "InvalidParameter",
                "`hostnameLabel` and `createVnicDetails.hostnameLabel` differ",
            ));
        }
    }
    let dns = flag("assignPrivateDnsRecord") != Some(false);
    // Addresses and labels held by the VNICs of instances that are not terminated (indexed).
    let taken = |h: &str| ctx.world.label_taken(&subnet, h);
    let hostname = match label {
        Some(h) if !hostname_ok(h) => {
            return Err(error(
                400,
                "InvalidParameter",
                format!("hostname label `{h}` must be 1 to 63 letters, digits and hyphens, starting with a letter"),
            ))
        }
        Some(_) if !dns => {
            return Err(error(
                400,
                "InvalidParameter",
                "a hostname label needs `assignPrivateDnsRecord` true",
            ))
        }
        Some(h) if taken(h) => {
            return Err(error(
                409,
                "Conflict",
                format!("hostname label `{h}` is already in use in subnet `{subnet}`"),
            ))
        }
        Some(h) => Some(h.to_string()),
        // As the Console does: the display name in lower case, other characters as `-`, and a
        // number appended when the subnet has the label already.
        None if dns => {
            let base: String = display_name
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>()
                .trim_matches('-')
                .chars()
                .take(58)
                .collect();
            let mut label = base.clone();
            let mut n = 1;
            while taken(&label) {
                n += 1;
                label = format!("{base}-{n}");
            }
            hostname_ok(&label).then_some(label)
        }
        None => None,
    };
    let (first, last) = hosts(s["cidrBlock"].as_str().unwrap_or("")).expect("fixture CIDRs");
    let empty = BTreeSet::new();
    let used = ctx.world.used_ips(&subnet).unwrap_or(&empty);
    let private_ip = match details.get("privateIp").and_then(Value::as_str) {
        Some(ip) => {
            let n = ip.parse::<Ipv4Addr>().map(u32::from).map_err(|_| {
                error(
                    400,
                    "InvalidParameter",
                    format!("`createVnicDetails.privateIp` `{ip}` is not an IPv4 address"),
                )
            })?;
            if !(first..=last).contains(&n) {
                return Err(error(
                    400,
                    "InvalidParameter",
                    format!(
                        "`createVnicDetails.privateIp` `{ip}` is not an available address of subnet `{subnet}` ({})",
                        s["cidrBlock"].as_str().unwrap_or("")
                    ),
                ));
            }
            if used.contains(&n) {
                return Err(error(
                    409,
                    "Conflict",
                    format!("private IP `{ip}` is already in use in subnet `{subnet}`"),
                ));
            }
            ip.to_string()
        }
        None => {
            // The lowest address above every used one below it: one pass over the used ones.
            let mut free = first;
            for &u in used.range(first..) {
                if u != free {
                    break;
                }
                free += 1;
            }
            (free <= last)
                .then(|| Ipv4Addr::from(free).to_string())
                .ok_or_else(|| {
                    error(
                        400,
                        "InvalidParameter",
                        format!("subnet `{subnet}` has no free private IP address"),
                    )
                })?
        }
    };
    let public = flag("assignPublicIp").unwrap_or(!private_subnet);
    Ok(VnicPlan {
        subnet,
        private_subnet,
        private_ip,
        public,
        details,
        hostname,
    })
}

/// Make the planned VNIC, its attachment to `instance` and its primary private IP.
pub fn make_vnic(
    ctx: &mut Ctx<'_>,
    plan: VnicPlan,
    instance: &str,
    compartment: &str,
    ad: &str,
    display_name: &str,
    defined_tags: Value,
) {
    let (vnic_id, attachment_id, ip_id) = (
        new_ocid("vnic", ctx.region_code),
        new_ocid("vnicattachment", ctx.region_code),
        new_ocid("privateip", ctx.region_code),
    );
    let n = ctx.world.serial;
    let d = &plan.details;
    let get = |k: &str, default: Value| {
        d.get(k)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default)
    };
    let now = rfc3339(ctx.now);
    let public_ip = plan
        .public
        .then(|| format!("203.0.{}.{}", 113 + (n / 250) % 8, n % 250 + 2));
    let vnic_name = get("displayName", json!(display_name));
    ctx.world.vnics.insert(
        vnic_id.clone(),
        json!({ "id": vnic_id, "compartmentId": compartment, "availabilityDomain": ad, "subnetId": plan.subnet, "isPrimary": true, "lifecycleState": "AVAILABLE",
                "displayName": vnic_name, "hostnameLabel": plan.hostname, "privateIp": plan.private_ip, "publicIp": public_ip,
                "macAddress": format!("02:00:17:{:02X}:{:02X}:{:02X}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff),
                "nsgIds": get("nsgIds", json!([])), "skipSourceDestCheck": get("skipSourceDestCheck", json!(false)), "vlanId": null, "routeTableId": null,
                "ipv6Addresses": [], "freeformTags": get("freeformTags", json!({})), "definedTags": defined_tags, "securityAttributes": get("securityAttributes", json!({})),
                "systemTags": {}, "timeCreated": now }),
    );
    ctx.world.vnic_attachments.insert(
        attachment_id.clone(),
        json!({ "id": attachment_id, "compartmentId": compartment, "availabilityDomain": ad, "instanceId": instance, "vnicId": vnic_id, "subnetId": plan.subnet, "displayName": null, "lifecycleState": "ATTACHED", "nicIndex": 0, "vlanId": null, "vlanTag": 0, "timeCreated": now }),
    );
    ctx.world.private_ips.insert(
        ip_id.clone(),
        json!({ "id": ip_id, "compartmentId": compartment, "availabilityDomain": ad, "subnetId": plan.subnet, "vnicId": vnic_id, "ipAddress": plan.private_ip, "cidrPrefixLength": 18, "isPrimary": true,
                "hostnameLabel": plan.hostname, "displayName": vnic_name, "vlanId": null, "ipState": "ASSIGNED", "lifetime": "EPHEMERAL", "routeTableId": null, "ipv4SubnetCidrAtCreation": null,
                "freeformTags": {}, "definedTags": {}, "timeCreated": now }),
    );
    ctx.world
        .add_vnic(instance, &attachment_id, &vnic_id, &ip_id);
    let _ = plan.private_subnet;
}

/// Is the instance of the VNIC terminated (its attachment then reads DETACHED)?
fn vnic_instance_terminated(ctx: &Ctx<'_>, attachment: &Value) -> bool {
    ctx.world
        .instances
        .get(attachment["instanceId"].as_str().unwrap_or(""))
        .is_some_and(|r| r.state() == "TERMINATED")
}

fn attachment_view(ctx: &Ctx<'_>, a: &Value) -> Value {
    let mut a = a.clone();
    if vnic_instance_terminated(ctx, &a) {
        a["lifecycleState"] = json!("DETACHED");
    }
    a
}

/// ListVnicAttachments: the attachments of the compartment's instances (from its index), or of
/// one instance.
pub fn list_vnic_attachments(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    ctx.check_compartment(compartment, "compartmentId")?;
    let world = &*ctx.world;
    let attachments: Box<dyn Iterator<Item = &Value>> = match q(query, "instanceId") {
        Some(i) => Box::new(world.attachments_of(i)),
        None => Box::new(
            world
                .instances_in(compartment)
                .flat_map(|r| world.attachments_of(r.id())),
        ),
    };
    // Only the page is copied out of the records.
    let items: Vec<(Key, &Value)> = attachments
        .filter(|a| a["compartmentId"] == compartment)
        .filter(|a| q(query, "vnicId").is_none_or(|i| a["vnicId"] == i))
        .filter(|a| q(query, "availabilityDomain").is_none_or(|i| a["availabilityDomain"] == i))
        .map(|a| (Key::of(0, a, "timeCreated"), a))
        .collect();
    list::page_with(items, false, query, |a| attachment_view(ctx, a))
}

pub fn get_vnic_attachment(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    let a = ctx
        .world
        .vnic_attachments
        .get(id)
        .ok_or_else(|| not_found("vnic attachment", id))?;
    Ok(Reply::json(200, &attachment_view(ctx, a)))
}

/// ListPrivateIps: by `vnicId`, or by `subnetId` (optionally with `ipAddress`); one of them is
/// required. Only the private IPs of VNICs whose instance is not terminated (OCI releases them).
pub fn list_private_ips(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let (vnic, subnet) = (q(query, "vnicId"), q(query, "subnetId"));
    if vnic.is_none() && subnet.is_none() && q(query, "vlanId").is_none() {
        return Err(error(
            400,
            "MissingParameter",
            "query parameter `vnicId`, `subnetId` or `vlanId` is required",
        ));
    }
    if let Some(v) = vnic {
        ctx.world.vnics.get(v).ok_or_else(|| not_found("vnic", v))?;
    }
    if let Some(s) = subnet {
        ctx.fixtures
            .subnet_json(s)
            .ok_or_else(|| not_found("subnet", s))?;
    }
    let world = &*ctx.world;
    // No VLANs here: a `vlanId` matches nothing.
    let vnics: Vec<&str> = match (vnic, subnet, q(query, "vlanId")) {
        (_, _, Some(_)) => Vec::new(),
        (Some(v), _, None) => vec![v],
        (None, Some(s), None) => world.vnics_in_subnet(s).map(String::as_str).collect(),
        (None, None, None) => unreachable!("checked above"),
    };
    let items: Vec<(Key, &Value)> = vnics
        .into_iter()
        .filter(|v| world.live_instance_of(v).is_some())
        .flat_map(|v| world.private_ips_of(v))
        .filter(|p| subnet.is_none_or(|s| p["subnetId"] == s))
        .filter(|p| q(query, "ipAddress").is_none_or(|a| p["ipAddress"] == a))
        .filter(|p| q(query, "ipState").is_none_or(|a| p["ipState"] == a))
        .filter(|p| q(query, "lifetime").is_none_or(|a| p["lifetime"] == a))
        .map(|p| (Key::of(0, p, "timeCreated"), p))
        .collect();
    list::page_with(items, false, query, Value::clone)
}

pub fn get_private_ip(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    ctx.world
        .private_ips
        .get(id)
        .map(|p| Reply::json(200, p).header("etag", "privateip-1"))
        .ok_or_else(|| not_found("private IP", id))
}

/// ListIpv6s: the seeded subnets have no IPv6 prefix, so a known VNIC or subnet has none.
pub fn list_ipv6s(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let (vnic, subnet) = (q(query, "vnicId"), q(query, "subnetId"));
    match (vnic, subnet) {
        (None, None) => {
            return Err(error(
                400,
                "MissingParameter",
                "query parameter `vnicId` or `subnetId` is required",
            ))
        }
        (Some(v), _) if !ctx.world.vnics.contains_key(v) => return Err(not_found("vnic", v)),
        (_, Some(s)) if ctx.fixtures.subnet_json(s).is_none() => {
            return Err(not_found("subnet", s))
        }
        _ => {}
    }
    list::page(Vec::new(), false, query)
}

/// The OCID of the ephemeral public IP of the VNIC `vnic_id`, and back.
fn public_ip_id(vnic_id: &str) -> String {
    vnic_id.replacen("ocid1.vnic.", "ocid1.publicip.", 1)
}

fn vnic_of_public_ip(id: &str) -> Option<String> {
    id.strip_prefix("ocid1.publicip.")
        .map(|rest| format!("ocid1.vnic.{rest}"))
}

/// The ephemeral public IP of the VNIC `vnic_id` (its primary private IP's), if it has one and
/// its instance is not terminated; every field of the SDK's `PublicIp` model.
fn public_ip_json(ctx: &Ctx<'_>, vnic_id: &str) -> Option<Value> {
    let world = &*ctx.world;
    let v = world.vnics.get(vnic_id)?;
    let address = v["publicIp"].as_str()?;
    world.live_instance_of(vnic_id)?;
    let private = world
        .private_ips_of(vnic_id)
        .find(|p| p["isPrimary"] == true)?;
    let created = v["timeCreated"].as_str().unwrap_or("");
    let digits: String = created
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    Some(json!({
        "id": public_ip_id(vnic_id),
        "assignedEntityId": private["id"],
        "assignedEntityType": "PRIVATE_IP",
        "availabilityDomain": private["availabilityDomain"],
        "compartmentId": private["compartmentId"],
        "definedTags": {},
        "displayName": format!("publicip{digits}"),
        "freeformTags": {},
        "ipAddress": address,
        "lifecycleState": "ASSIGNED",
        "lifetime": "EPHEMERAL",
        "privateIpId": private["id"],
        "scope": "AVAILABILITY_DOMAIN",
        "timeCreated": created,
        "publicIpPoolId": null,
    }))
}

/// ListPublicIps: `scope` and `compartmentId` are required; `scope=AVAILABILITY_DOMAIN` needs
/// `availabilityDomain` and lists the ephemeral public IPs of the compartment's private IPs in
/// that AD; `scope=REGION` lists reserved IPs and those of regional entities (NAT gateways):
/// there are none here.
pub fn list_public_ips(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let scope = required_query(query, "scope")?;
    if !matches!(scope, "REGION" | "AVAILABILITY_DOMAIN") {
        return Err(error(
            400,
            "InvalidParameter",
            format!("`scope` `{scope}` must be REGION or AVAILABILITY_DOMAIN"),
        ));
    }
    let compartment = required_query(query, "compartmentId")?;
    ctx.check_compartment(compartment, "compartmentId")?;
    let lifetime = q(query, "lifetime");
    if let Some(l) = lifetime.filter(|l| !matches!(*l, "EPHEMERAL" | "RESERVED")) {
        return Err(error(
            400,
            "InvalidParameter",
            format!("`lifetime` `{l}` must be EPHEMERAL or RESERVED"),
        ));
    }
    let ad = q(query, "availabilityDomain");
    match (scope, ad) {
        ("AVAILABILITY_DOMAIN", None) => {
            return Err(error(
                400,
                "MissingParameter",
                "`availabilityDomain` is required with `scope` AVAILABILITY_DOMAIN",
            ))
        }
        ("AVAILABILITY_DOMAIN", Some(ad)) => ctx.check_ad(ad)?,
        (_, Some(_)) => {
            return Err(error(
                400,
                "InvalidParameter",
                "`availabilityDomain` must be left out with `scope` REGION",
            ))
        }
        (_, None) => {}
    }
    let world = &*ctx.world;
    // Ephemeral public IPs of private IPs are AD-scoped and in no pool.
    let listed = scope == "AVAILABILITY_DOMAIN"
        && lifetime != Some("RESERVED")
        && q(query, "publicIpPoolId").is_none();
    let items: Vec<(Key, &str)> = world
        .vnics_in_compartment(compartment)
        .filter(|_| listed)
        .filter_map(|id| Some((id.as_str(), world.vnics.get(id)?)))
        .filter(|(_, v)| {
            v["publicIp"].is_string() && ad.is_some_and(|ad| v["availabilityDomain"] == ad)
        })
        .filter(|(id, _)| world.live_instance_of(id).is_some())
        .map(|(id, v)| {
            (
                Key::new(0, v["timeCreated"].as_str().unwrap_or(""), public_ip_id(id)),
                id,
            )
        })
        .collect();
    list::page_with(items, false, query, |id| {
        public_ip_json(ctx, id).unwrap_or(Value::Null)
    })
}

pub fn get_public_ip(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    vnic_of_public_ip(id)
        .and_then(|v| public_ip_json(ctx, &v))
        .map(|p| Reply::json(200, &p).header("etag", "publicip-1"))
        .ok_or_else(|| not_found("public IP", id))
}

/// GetPublicIpByPrivateIpId (`POST /publicIps/actions/getByPrivateIpId`): the public IP of a
/// private IP; 404 when it has none.
pub fn get_public_ip_by_private_ip_id(ctx: &mut Ctx<'_>, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    details::check(
        &b,
        &[details::F("privateIpId", details::Kind::Str)],
        "",
        "GetPublicIpByPrivateIpIdDetails",
    )?;
    let id = required(&b, "privateIpId")?;
    let p = ctx
        .world
        .private_ips
        .get(id)
        .ok_or_else(|| not_found("private IP", id))?;
    let vnic = p["vnicId"].as_str().unwrap_or("").to_string();
    if p["isPrimary"] != true {
        return Err(not_found("public IP of private IP", id));
    }
    public_ip_json(ctx, &vnic)
        .map(|p| Reply::json(200, &p).header("etag", "publicip-1"))
        .ok_or_else(|| not_found("public IP of private IP", id))
}
