//! Network security groups of the fixture VCN: ListNetworkSecurityGroups and
//! GetNetworkSecurityGroup, as oci-go-sdk v65 has them
//! (`core/list_network_security_groups_request_response.go`: `compartmentId`, `vlanId`, `vcnId`,
//! `displayName`, `lifecycleState`, `sortBy` TIMECREATED/DISPLAYNAME, `sortOrder`, `limit`,
//! `page`; `core/network_security_group.go`: the fields of [`super::Fixtures::nsgs_json`]).
//!
//! The request names at least one of `compartmentId`, `vlanId` and `vcnId` (the SDK marks all
//! three optional; OCI refuses a request with none). The fixture NSGs live in the default
//! compartment, in the fixture VCN; there are no VLANs, so a `vlanId` lists none.

use super::api::{error, not_found, q, Ctx, Reply, Result};
use super::list;

/// ListNetworkSecurityGroups: filtered by `compartmentId`, `vcnId`, `vlanId`, `displayName` and
/// `lifecycleState`, sorted and paged as OCI does.
pub fn list(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = q(query, "compartmentId");
    let vcn = q(query, "vcnId");
    let vlan = q(query, "vlanId");
    if compartment.is_none() && vcn.is_none() && vlan.is_none() {
        return Err(error(
            400,
            "MissingParameter",
            "one of `compartmentId`, `vcnId` or `vlanId` is required",
        ));
    }
    if let Some(c) = compartment {
        ctx.check_compartment(c, "compartmentId")?;
    }
    let items = ctx
        .fixtures
        .nsgs_json()
        .into_iter()
        .filter(|_| vlan.is_none())
        .filter(|v| compartment.is_none_or(|c| v["compartmentId"] == c))
        .filter(|v| vcn.is_none_or(|id| v["vcnId"] == id))
        .filter(|v| q(query, "displayName").is_none_or(|d| v["displayName"] == d))
        .filter(|v| list::state_filter(query, v))
        .collect();
    list::sorted_page(items, query, "TIMECREATED")
}

/// GetNetworkSecurityGroup (with an etag, as OCI answers it).
pub fn get(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    ctx.fixtures
        .nsgs_json()
        .into_iter()
        .find(|n| n["id"] == id)
        .map(|n| Reply::json(200, &n).header("etag", "nsg-1"))
        .ok_or_else(|| not_found("networkSecurityGroup", id))
}
