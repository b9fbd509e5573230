//! The plan in the shape of Terraform's JSON plan representation (`kiln plan --json=terraform`,
//! `kiln show --json=terraform FILE`): what conftest/OPA policies, Checkov's `terraform_plan`
//! framework and PR tools read from `terraform show -json`. Rendered from the one [`Plan`] (and
//! the resources it observed, [`Plan::observed`]), like the other views.
//!
//! The document follows Terraform's "JSON Output Format" (format version 1.2, Terraform's
//! `internal/command/jsonplan`): `resource_changes[]` (`address`, `previous_address` for a
//! `[[moved]]`, `mode`, `type`, `name`, `index`, `provider_name`, `change.actions` — a replacement
//! is `["delete", "create"]`, or `["create", "delete"]` when the new object is made first —
//! `before`, `after`, `after_unknown`, `replace_paths`, `action_reason`), `resource_drift[]`,
//! `planned_values`, `prior_state` and a minimal `configuration` (constant expressions). kiln's
//! `instance.NAME` is `oci_core_instance.NAME` and `image.NAME` is `oci_core_image.NAME`; a fleet
//! member `instance.web[0]` is `oci_core_instance.web[0]` with `index` 0 (`["key"]`: `"key"`).
//! Attribute names, nesting and types are the OCI provider's ([`schema`]).
//!
//! What Terraform would call an update, kiln may do as several actions (an update, a
//! compartment move, a stop or start): they are one `update` here, `after` showing their sum.

pub mod schema;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{Action, Change, Kind, Observed, Plan};

/// The `format_version` of Terraform's JSON plan format this document follows.
pub const FORMAT_VERSION: &str = "1.2";

/// The `terraform_version` written: the Terraform release whose `show -json` output this shape
/// matches (tools such as Checkov read nothing without one). kiln does not run Terraform.
pub const TERRAFORM_VERSION: &str = "1.9.0";

/// The provider every resource belongs to.
pub const PROVIDER: &str = "registry.terraform.io/oracle/oci";

/// A kiln address in Terraform's terms.
struct TfAddress {
    /// `oci_core_instance.web[0]`.
    address: String,
    /// `oci_core_instance.web`: the configuration's resource (without the index).
    resource: String,
    ty: &'static str,
    name: String,
    index: Option<Value>,
}

fn tf_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Instance => "oci_core_instance",
        Kind::Image => "oci_core_image",
    }
}

fn tf_address(address: &str, kind: Kind) -> TfAddress {
    let ty = tf_type(kind);
    let rest = address.split_once('.').map(|(_, r)| r).unwrap_or(address);
    let (name, index) = match rest.split_once('[') {
        Some((name, idx)) => {
            let idx = idx.trim_end_matches(']');
            let index = match idx.parse::<u64>() {
                Ok(n) => json!(n),
                Err(_) => json!(idx.trim_matches('"')),
            };
            (name.to_string(), Some(index))
        }
        None => (rest.to_string(), None),
    };
    let suffix = rest.strip_prefix(&name).unwrap_or("");
    TfAddress {
        address: format!("{ty}.{name}{suffix}"),
        resource: format!("{ty}.{name}"),
        ty,
        name,
        index,
    }
}

/// The kind of a kiln address (`instance.…` or `image.…`).
fn kind_of(address: &str) -> Kind {
    match address.starts_with("image.") {
        true => Kind::Image,
        false => Kind::Instance,
    }
}

/// The head of a resource object: address, mode, type, name, index, provider.
fn head(a: &TfAddress) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("address".into(), json!(a.address));
    m.insert("mode".into(), json!("managed"));
    m.insert("type".into(), json!(a.ty));
    m.insert("name".into(), json!(a.name));
    if let Some(i) = &a.index {
        m.insert("index".into(), i.clone());
    }
    m.insert("provider_name".into(), json!(PROVIDER));
    m
}

/// The primary VNIC of a live instance in CreateVnicDetails' form: the create-time inputs kiln
/// recorded and the VNIC facts it read.
fn recorded_vnic(o: &Observed) -> Option<Value> {
    let mut m = Map::new();
    if let Some(s) = o.inputs.get("subnet_id") {
        m.insert("subnetId".into(), s.clone());
    }
    if let Some(p) = o.inputs.get("assign_public_ip") {
        m.insert("assignPublicIp".into(), p.clone());
    }
    // The primary VNIC's settings kiln launched or last updated it with.
    for (input, oci) in crate::plan::from_manifest::VNIC_UPDATABLE
        .iter()
        .chain(&[("private_ip", "privateIp")])
    {
        if let Some(v) = o.inputs.get(*input) {
            m.insert(oci.to_string(), v.clone());
        }
    }
    if let Some(n) = &o.network {
        if let Some(s) = &n.subnet_id {
            m.entry("subnetId").or_insert(json!(s));
        }
        if let Some(ip) = &n.private_ip {
            m.entry("privateIp").or_insert(json!(ip));
        }
        if let Some(h) = &n.hostname_label {
            m.entry("hostnameLabel").or_insert(json!(h));
        }
        m.entry("assignPublicIp")
            .or_insert(json!(n.public_ip.is_some()));
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// A resource's attributes from an OCI body (live, recorded, or a create request).
fn attributes(kind: Kind, body: &Value, o: Option<&Observed>) -> Value {
    match kind {
        Kind::Image => schema::image(body),
        Kind::Instance => {
            let vnic = match body.get("createVnicDetails") {
                Some(_) => None,
                None => o.and_then(recorded_vnic),
            };
            let public_ip = o
                .and_then(|o| o.network.as_ref())
                .and_then(|n| n.public_ip.as_deref());
            schema::instance(body, vnic.as_ref(), public_ip)
        }
    }
}

/// What the resource is now: live when read, else the state's record.
fn current(o: &Observed) -> Option<&Value> {
    o.live.as_ref().or(o.state.as_ref())
}

/// Keys of UpdateInstanceDetails / UpdateImageDetails objects that change only the keys they
/// name; every other key replaces the whole value.
const MERGED: &[&str] = &[
    "shapeConfig",
    "instanceOptions",
    "availabilityConfig",
    "launchOptions",
    "agentConfig",
];

/// The OCI body after in-place changes: `base` with each change's request laid over it.
fn updated(base: &Value, changes: &[&Change]) -> Value {
    let mut body = base.clone();
    for c in changes {
        match (c.action, c.request.as_ref().map(|r| r.parse()), &mut body) {
            (Action::Start, _, Value::Object(m)) => {
                m.insert("lifecycleState".into(), json!("RUNNING"));
            }
            (Action::Stop, _, Value::Object(m)) => {
                m.insert("lifecycleState".into(), json!("STOPPED"));
            }
            (Action::Update | Action::Move, Some(Value::Object(req)), Value::Object(m)) => {
                for (k, v) in &req {
                    match (MERGED.contains(&k.as_str()), m.get_mut(k), v) {
                        (true, Some(Value::Object(old)), Value::Object(new)) => {
                            old.extend(new.clone());
                        }
                        _ => {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    body
}

/// Terraform's path of a kiln attribute path (`replace_paths`).
fn tf_path(kind: Kind, path: &str) -> Value {
    let p: Vec<Value> = match (kind, path) {
        (Kind::Instance, "compartment") | (Kind::Image, "compartment") => {
            vec![json!("compartment_id")]
        }
        (Kind::Instance, "source.image" | "source.boot_volume" | "source.image_lookup") => {
            vec![json!("source_details"), json!(0), json!("source_id")]
        }
        (Kind::Instance, "boot_volume_size_in_gbs") => vec![
            json!("source_details"),
            json!(0),
            json!("boot_volume_size_in_gbs"),
        ],
        (Kind::Instance, "subnet" | "assign_public_ip") => vec![
            json!("create_vnic_details"),
            json!(0),
            json!(match path {
                "subnet" => "subnet_id",
                _ => "assign_public_ip",
            }),
        ],
        (Kind::Instance, p) if p.starts_with("shape_config.") => vec![
            json!("shape_config"),
            json!(0),
            json!(&p["shape_config.".len()..]),
        ],
        (Kind::Instance, "boot_volume_vpus_per_gb" | "kms_key_id") => {
            vec![json!("source_details"), json!(0), json!(path)]
        }
        (Kind::Instance, "preemptible.preserve_boot_volume") => vec![
            json!("preemptible_instance_config"),
            json!(0),
            json!("preemption_action"),
            json!(0),
            json!("preserve_boot_volume"),
        ],
        (Kind::Instance, p) if p.starts_with("agent_config.plugins.") => {
            vec![json!("agent_config"), json!(0), json!("plugins_config")]
        }
        // The launch settings are blocks: a list of one object.
        (Kind::Instance, p)
            if crate::manifest::launch::SETTINGS
                .iter()
                .any(|s| p.starts_with(&format!("{}.", s.name))) =>
        {
            let (block, key) = p.split_once('.').expect("checked");
            vec![json!(block), json!(0), json!(key)]
        }
        (Kind::Image, p) if p.starts_with("source.") => vec![json!("image_source_details")],
        (_, p) => p.split('.').map(|s| json!(s)).collect(),
    };
    Value::Array(p)
}

/// Why a resource is replaced or deleted, in Terraform's words.
fn action_reason(c: &Change, declared: bool, plan: &Plan) -> Option<&'static str> {
    match c.action {
        Action::Replace if c.reason.contains("--replace") => Some("replace_by_request"),
        Action::Replace => Some("replace_because_cannot_update"),
        Action::Delete if !declared && !c.deposed => {
            let a = tf_address(&c.address, c.kind);
            let sibling_declared = a.index.is_some()
                && plan
                    .observed
                    .iter()
                    .any(|o| o.declared && tf_address(&o.address, o.kind).resource == a.resource);
            Some(match (sibling_declared, &a.index) {
                (true, Some(Value::Number(_))) => "delete_because_count_index",
                (true, Some(_)) => "delete_because_each_key",
                _ => "delete_because_no_resource_config",
            })
        }
        _ => None,
    }
}

/// One resource's change (`resource_changes[]` or `planned_values`'s source).
struct Planned {
    addr: TfAddress,
    previous: Option<String>,
    actions: Vec<&'static str>,
    before: Value,
    after: Value,
    after_unknown: Value,
    replace_paths: Vec<Value>,
    reason: Option<&'static str>,
    deposed: Option<String>,
}

impl Planned {
    fn to_json(&self) -> Value {
        let mut m = head(&self.addr);
        if let Some(p) = &self.previous {
            m.insert("previous_address".into(), json!(p));
        }
        if let Some(d) = &self.deposed {
            m.insert("deposed".into(), json!(d));
        }
        let mut change = Map::new();
        change.insert("actions".into(), json!(self.actions));
        change.insert("before".into(), self.before.clone());
        change.insert("after".into(), self.after.clone());
        change.insert("after_unknown".into(), self.after_unknown.clone());
        change.insert("before_sensitive".into(), sensitive(&self.before));
        change.insert("after_sensitive".into(), sensitive(&self.after));
        if !self.replace_paths.is_empty() {
            change.insert("replace_paths".into(), json!(self.replace_paths));
        }
        m.insert("change".into(), Value::Object(change));
        if let Some(r) = self.reason {
            m.insert("action_reason".into(), json!(r));
        }
        Value::Object(m)
    }
}

/// Nothing kiln shows is sensitive: `false` for a value, `{}` for none.
fn sensitive(v: &Value) -> Value {
    match v {
        Value::Null => json!(false),
        _ => json!({}),
    }
}

/// Every resource's planned change, in the plan's order, then the unchanged resources.
fn planned(plan: &Plan) -> Vec<Planned> {
    let observed: BTreeMap<&str, &Observed> = plan
        .observed
        .iter()
        .map(|o| (o.address.as_str(), o))
        .collect();
    let previous: BTreeMap<&str, &str> = plan
        .moved
        .iter()
        .map(|(from, to)| (to.as_str(), from.as_str()))
        .collect();
    let mut by_address: Vec<(&str, Vec<&Change>)> = Vec::new();
    for c in &plan.changes {
        match by_address.iter_mut().find(|(a, _)| *a == c.address) {
            Some((_, cs)) => cs.push(c),
            None => by_address.push((c.address.as_str(), vec![c])),
        }
    }
    let mut out = Vec::new();
    for (address, cs) in &by_address {
        let o = observed.get(address).copied();
        let kind = cs[0].kind;
        let addr = tf_address(address, kind);
        let prev = previous.get(address).map(|p| tf_address(p, kind).address);
        let declared = o.is_none_or(|o| o.declared);
        let before = o
            .and_then(current)
            .map(|b| attributes(kind, b, o))
            .unwrap_or(Value::Null);
        let main: Vec<&Change> = cs.iter().copied().filter(|c| !c.deposed).collect();
        let deposed: Vec<&Change> = cs.iter().copied().filter(|c| c.deposed).collect();
        let replace = main.iter().find(|c| c.action == Action::Replace);
        let create = main.iter().find(|c| c.action == Action::Create);
        let delete = main.iter().find(|c| c.action == Action::Delete);
        let (actions, after, after_unknown, paths, reason) = if let Some(c) = replace.or(create) {
            let request = c.request.as_ref().map(|r| r.parse()).unwrap_or(Value::Null);
            let (after, unknown) = schema::split_unknown(&attributes(kind, &request, None));
            let mut unknown = unknown;
            if let Value::Object(u) = &mut unknown {
                u.insert("id".into(), json!(true));
                u.insert("time_created".into(), json!(true));
                u.insert("state".into(), json!(true));
            }
            let first_create = c
                .inputs
                .as_ref()
                .and_then(|i| {
                    i.parse_keys(&["create_before_destroy"])
                        .get("create_before_destroy")
                        .and_then(Value::as_bool)
                })
                .unwrap_or(false)
                || !deposed.is_empty();
            let actions = match (c.action, first_create) {
                (Action::Create, _) => vec!["create"],
                (_, true) => vec!["create", "delete"],
                (_, false) => vec!["delete", "create"],
            };
            let paths = c
                .attributes
                .iter()
                .filter(|a| a.forces_replacement)
                .map(|a| tf_path(kind, &a.path))
                .collect();
            (
                actions,
                after,
                unknown,
                paths,
                action_reason(c, declared, plan),
            )
        } else if let Some(c) = delete {
            (
                vec!["delete"],
                Value::Null,
                json!(false),
                Vec::new(),
                action_reason(c, declared, plan),
            )
        } else if main.is_empty() {
            // Only a deposed object's delete: shown below as its own change.
            (vec![], Value::Null, json!({}), Vec::new(), None)
        } else {
            let base = o.and_then(current).cloned().unwrap_or(json!({}));
            let after = attributes(kind, &updated(&base, &main), o);
            (vec!["update"], after, json!({}), Vec::new(), None)
        };
        if !actions.is_empty() {
            out.push(Planned {
                addr,
                previous: prev,
                actions,
                before,
                after,
                after_unknown,
                replace_paths: paths,
                reason,
                deposed: None,
            });
        }
        // A previous object (create-before-destroy) not superseded in this plan: a deposed
        // object's delete, as Terraform shows one.
        if replace.is_none() {
            for d in deposed {
                out.push(Planned {
                    addr: tf_address(address, kind),
                    previous: None,
                    actions: vec!["delete"],
                    before: json!({ "id": d.id }),
                    after: Value::Null,
                    after_unknown: json!(false),
                    replace_paths: Vec::new(),
                    reason: None,
                    deposed: d.id.clone(),
                });
            }
        }
    }
    // Declared, existing, unchanged: a no-op.
    for o in &plan.observed {
        if !o.declared || o.id.is_none() || by_address.iter().any(|(a, _)| *a == o.address) {
            continue;
        }
        let Some(body) = current(o) else { continue };
        let v = attributes(o.kind, body, Some(o));
        out.push(Planned {
            addr: tf_address(&o.address, o.kind),
            previous: previous
                .get(o.address.as_str())
                .map(|p| tf_address(p, o.kind).address),
            actions: vec!["no-op"],
            before: v.clone(),
            after: v,
            after_unknown: json!({}),
            replace_paths: Vec::new(),
            reason: None,
            deposed: None,
        });
    }
    out
}

/// `resource_drift[]`: what changed outside kiln, the state's record before, the live read after.
fn drift(plan: &Plan) -> Vec<Value> {
    plan.drift
        .iter()
        .map(|d| {
            let o = plan.observed.iter().find(|o| o.address == d.address);
            let kind = o.map(|o| o.kind).unwrap_or_else(|| kind_of(&d.address));
            let addr = tf_address(&d.address, kind);
            let before = o
                .and_then(|o| o.state.as_ref())
                .map(|b| attributes(kind, b, o))
                .unwrap_or(Value::Null);
            let (actions, after) = match (&d.gone, o.and_then(|o| o.live.as_ref())) {
                (Some(_), _) => (vec!["delete"], Value::Null),
                (None, Some(live)) => (vec!["update"], attributes(kind, live, o)),
                (None, None) => (vec!["update"], before.clone()),
            };
            Planned {
                addr,
                previous: None,
                actions,
                before,
                after,
                after_unknown: json!({}),
                replace_paths: Vec::new(),
                reason: None,
                deposed: None,
            }
            .to_json()
        })
        .collect()
}

/// A resource in `planned_values` / `prior_state`.
fn value_resource(addr: &TfAddress, values: &Value) -> Value {
    let mut m = head(addr);
    m.insert("schema_version".into(), json!(0));
    m.insert("values".into(), values.clone());
    m.insert("sensitive_values".into(), json!({}));
    Value::Object(m)
}

/// Terraform configuration expressions of known attribute values (blocks as lists of objects).
fn expressions(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "id" | "state" | "time_created"))
                .map(|(k, x)| {
                    let e = match x {
                        Value::Array(items) if items.iter().all(Value::is_object) => {
                            Value::Array(items.iter().map(expressions).collect())
                        }
                        other => json!({ "constant_value": other }),
                    };
                    (k.clone(), e)
                })
                .collect(),
        ),
        _ => json!({}),
    }
}

/// The plan as Terraform's JSON plan representation.
pub fn document(plan: &Plan) -> Value {
    let changes = planned(plan);
    let planned_values: Vec<Value> = changes
        .iter()
        .filter(|p| p.deposed.is_none() && !p.after.is_null())
        .map(|p| value_resource(&p.addr, &p.after))
        .collect();
    let prior: Vec<Value> = plan
        .observed
        .iter()
        .filter(|o| o.id.is_some())
        .filter_map(|o| {
            let body = current(o)?;
            Some(value_resource(
                &tf_address(&o.address, o.kind),
                &attributes(o.kind, body, Some(o)),
            ))
        })
        .collect();
    let mut config: BTreeMap<String, Value> = BTreeMap::new();
    for p in changes.iter().filter(|p| p.deposed.is_none()) {
        let declared = plan
            .observed
            .iter()
            .find(|o| tf_address(&o.address, o.kind).address == p.addr.address)
            .is_none_or(|o| o.declared);
        if p.after.is_null() || !declared || config.contains_key(&p.addr.resource) {
            continue;
        }
        config.insert(
            p.addr.resource.clone(),
            json!({
                "address": p.addr.resource,
                "mode": "managed",
                "type": p.addr.ty,
                "name": p.addr.name,
                "provider_config_key": "oci",
                "expressions": expressions(&p.after),
                "schema_version": 0,
            }),
        );
    }
    let errored = false;
    json!({
        "format_version": FORMAT_VERSION,
        "terraform_version": TERRAFORM_VERSION,
        "planned_values": { "root_module": { "resources": planned_values } },
        "resource_drift": drift(plan),
        "resource_changes": changes.iter().map(Planned::to_json).collect::<Vec<_>>(),
        "prior_state": {
            "format_version": "1.0",
            "terraform_version": TERRAFORM_VERSION,
            "values": { "root_module": { "resources": prior } },
        },
        "configuration": {
            "provider_config": { "oci": { "name": "oci", "full_name": PROVIDER } },
            "root_module": { "resources": config.into_values().collect::<Vec<_>>() },
        },
        "applyable": !plan.is_noop(),
        "complete": true,
        "errored": errored,
    })
}

/// [`document`] as pretty-printed text.
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(&document(plan)).expect("a document always serialises")
}
