//! The Identity subset Compute users touch, at the Identity API's paths (same `/20160918` base):
//! ListAvailabilityDomains, ListFaultDomains, compartments (Get/List) and tag namespaces and
//! their tags (Get/List), all from the fixtures; and the defined-tag check every create and
//! update makes (a namespace or key that does not exist is 400).

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::api::{error, not_found, q, required_query, Ctx, Reply, Result};
use super::fixtures::{Compartment, Fixtures, TagNamespace};
use super::list::{self, Key};

const CREATED: &str = "2026-01-01T00:00:00.000Z";

fn hashed_id(kind: &str, name: &str) -> String {
    let h = Sha256::digest(format!("kiln-emulator/{kind}/{name}").as_bytes());
    let tail: String = h.iter().map(|b| format!("{b:02x}")).collect::<String>()[..52].to_string();
    format!("ocid1.{kind}.oc1..aaaaaaaa{tail}")
}

/// The tenancy root of a known compartment (after [`Ctx::check_compartment`]).
fn root(ctx: &Ctx<'_>, compartment: &str) -> String {
    ctx.fixtures
        .root_of(compartment)
        .unwrap_or(compartment)
        .to_string()
}

pub fn list_availability_domains(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    ctx.check_compartment(compartment, "compartmentId")?;
    let root = root(ctx, compartment);
    let items: Vec<Value> = ctx
        .fixtures
        .availability_domains
        .iter()
        .map(|ad| json!({ "name": ad, "id": hashed_id("availabilitydomain", &format!("{}/{ad}", ctx.fixtures.region)), "compartmentId": root }))
        .collect();
    Ok(Reply::json(200, &Value::Array(items)))
}

pub fn list_fault_domains(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    ctx.check_compartment(compartment, "compartmentId")?;
    let ad = required_query(query, "availabilityDomain")?;
    ctx.check_ad(ad)?;
    let root = root(ctx, compartment);
    let items: Vec<Value> = ctx
        .fixtures
        .fault_domains
        .iter()
        .map(|fd| json!({ "name": fd, "id": hashed_id("faultdomain", &format!("{ad}/{fd}")), "compartmentId": root, "availabilityDomain": ad }))
        .collect();
    Ok(Reply::json(200, &Value::Array(items)))
}

fn compartment_json(c: &Compartment) -> Value {
    json!({ "id": c.id, "compartmentId": c.parent, "name": c.name, "description": format!("kiln emulator compartment `{}`", c.name), "timeCreated": CREATED, "lifecycleState": "ACTIVE", "inactiveStatus": null, "isAccessible": true, "freeformTags": {}, "definedTags": {} })
}

pub fn get_compartment(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    let c = ctx
        .fixtures
        .compartment(id)
        .ok_or_else(|| not_found("compartment", id))?;
    Ok(Reply::json(200, &compartment_json(c)).header("etag", "compartment-1"))
}

/// ListCompartments: the children of `compartmentId` (the whole subtree with
/// `compartmentIdInSubtree=true`), filtered by `name` and `lifecycleState`, sorted by name.
pub fn list_compartments(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let parent = required_query(query, "compartmentId")?;
    ctx.check_compartment(parent, "compartmentId")?;
    let subtree = match q(query, "compartmentIdInSubtree") {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`compartmentIdInSubtree` `{v}` must be true or false"),
            ))
        }
    };
    let fx = ctx.fixtures;
    let below = |c: &Compartment| {
        if subtree {
            c.parent.is_some() && fx.root_of(&c.id) == Some(parent) && c.id != parent
        } else {
            c.parent.as_deref() == Some(parent)
        }
    };
    let items: Vec<(Key, Value)> = fx
        .compartments
        .iter()
        .filter(|c| below(c))
        .filter(|c| q(query, "name").is_none_or(|n| c.name == n))
        .map(compartment_json)
        .filter(|v| list::state_filter(query, v))
        .map(|v| (Key::of(0, &v, "name"), v))
        .collect();
    list::page(items, false, query)
}

fn namespace_json(root: &str, ns: &TagNamespace) -> Value {
    json!({ "id": ns.id, "compartmentId": root, "name": ns.name, "description": format!("kiln emulator tag namespace `{}`", ns.name), "freeformTags": {}, "definedTags": {}, "isRetired": false, "lifecycleState": "ACTIVE", "timeCreated": CREATED, "locks": [] })
}

fn tag_id(ns: &TagNamespace, tag: &str) -> String {
    hashed_id("tagdefinition", &format!("{}/{tag}", ns.name))
}

fn tag_json(root: &str, ns: &TagNamespace, tag: &str, full: bool) -> Value {
    let mut v = json!({ "compartmentId": root, "id": tag_id(ns, tag), "name": tag, "description": format!("`{}.{tag}`", ns.name), "freeformTags": {}, "definedTags": {}, "isRetired": false, "lifecycleState": "ACTIVE", "timeCreated": CREATED, "isCostTracking": false });
    if full {
        v["tagNamespaceId"] = json!(ns.id);
        v["tagNamespaceName"] = json!(ns.name);
        v["validator"] = Value::Null;
    }
    v
}

/// The tenancy's tag namespaces (they live in the root compartment).
pub fn list_tag_namespaces(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    ctx.check_compartment(compartment, "compartmentId")?;
    let root = root(ctx, compartment);
    let here = root == compartment || q(query, "includeSubcompartments") == Some("true");
    let items: Vec<(Key, Value)> = ctx
        .fixtures
        .tag_namespaces
        .iter()
        .filter(|_| here)
        .map(|ns| namespace_json(&root, ns))
        .filter(|v| list::state_filter(query, v))
        .map(|v| (Key::of(0, &v, "name"), v))
        .collect();
    list::page(items, false, query)
}

fn namespace<'f>(fx: &'f Fixtures, id: &str) -> Result<&'f TagNamespace> {
    fx.tag_namespaces
        .iter()
        .find(|n| n.id == id)
        .ok_or_else(|| not_found("tag namespace", id))
}

fn default_root(ctx: &Ctx<'_>) -> String {
    ctx.fixtures
        .root_of(&ctx.fixtures.compartment_id)
        .unwrap_or_default()
        .to_string()
}

pub fn get_tag_namespace(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    let ns = namespace(ctx.fixtures, id)?;
    Ok(Reply::json(200, &namespace_json(&default_root(ctx), ns)))
}

pub fn list_tags(ctx: &mut Ctx<'_>, id: &str, query: &[(String, String)]) -> Result<Reply> {
    let ns = namespace(ctx.fixtures, id)?;
    let root = default_root(ctx);
    let items: Vec<(Key, Value)> = ns
        .tags
        .iter()
        .map(|t| tag_json(&root, ns, t, false))
        .filter(|v| list::state_filter(query, v))
        .map(|v| (Key::of(0, &v, "name"), v))
        .collect();
    list::page(items, false, query)
}

pub fn get_tag(ctx: &mut Ctx<'_>, id: &str, name: &str) -> Result<Reply> {
    let ns = namespace(ctx.fixtures, id)?;
    let tag = ns
        .tags
        .iter()
        .find(|t| t.eq_ignore_ascii_case(name))
        .ok_or_else(|| not_found("tag", name))?;
    Ok(Reply::json(
        200,
        &tag_json(&default_root(ctx), ns, tag, true),
    ))
}

/// Defined tags (`field` names them in errors): an object of objects of strings, each namespace
/// and key one the tenancy defines (names match case-insensitively, as OCI's do).
pub fn defined_tags(
    fx: &Fixtures,
    given: Option<&Value>,
    field: &str,
) -> Result<Option<Map<String, Value>>> {
    let o = match given {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) if o.values().all(Value::is_object) => o,
        Some(_) => {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`{field}` must be an object of objects"),
            ))
        }
    };
    for (ns_name, tags) in o {
        let ns = fx
            .tag_namespaces
            .iter()
            .find(|n| n.name.eq_ignore_ascii_case(ns_name))
            .ok_or_else(|| {
                error(
                    400,
                    "InvalidParameter",
                    format!("`{field}`: the tag namespace `{ns_name}` does not exist (GET /tagNamespaces lists them)"),
                )
            })?;
        for (key, value) in tags.as_object().expect("checked above") {
            if !ns.tags.iter().any(|t| t.eq_ignore_ascii_case(key)) {
                return Err(error(
                    400,
                    "InvalidParameter",
                    format!("`{field}`: the tag `{key}` does not exist in the tag namespace `{}` (it has {})", ns.name, ns.tags.join(", ")),
                ));
            }
            if value.as_str().is_none_or(|s| s.chars().count() > 256) {
                return Err(error(
                    400,
                    "InvalidParameter",
                    format!("`{field}.{ns_name}.{key}` must be a string of at most 256 characters"),
                ));
            }
        }
    }
    Ok(Some(o.clone()))
}
