//! Per-attribute comparison: desired vs live (what will change) and state vs live (drift).
//!
//! Only attributes the manifest sets are compared, key by key for maps, so tags and metadata that
//! OCI adds itself (`Oracle-Tags.CreatedBy`, …) never produce a diff. Numbers compare by value
//! (`16` equals `16.0`); a missing key equals `null`.

use serde_json::{Map, Value};

use super::desired::{DesiredAttr, DesiredResource, DesiredValue, Lookup};
use super::from_manifest::{BOOT_VOLUME_UPDATABLE, VNIC_UPDATABLE};
use super::{AttrChange, AttrClass};
use crate::manifest::launch::PLUGINS;

/// The value at a path of keys in a JSON document (`Value::Null` when absent). In a list of
/// named objects (`agentConfig.pluginsConfig`: `[{name, desiredState}]`) a key is an element's
/// `name`.
pub fn at<'a>(doc: &'a Value, path: &[String]) -> &'a Value {
    let mut v = doc;
    for k in path {
        let next = match v {
            Value::Array(items) => items
                .iter()
                .find(|i| i.get("name") == Some(&Value::String(k.clone()))),
            _ => v.get(k),
        };
        match next {
            Some(x) => v = x,
            None => return &Value::Null,
        }
    }
    v
}

/// `agentConfig.pluginsConfig` of an update body, built as an object of plugin name →
/// `{desiredState}`, back into OCI's list: the live list with the plugins the manifest names
/// laid over it (whether OCI merges the list or replaces it, no plugin the manifest does not
/// name changes).
fn plugins_as_list(body: &mut Map<String, Value>, live: &Value) {
    let Some(Value::Object(named)) = body
        .get_mut("agentConfig")
        .and_then(|a| a.get_mut(PLUGINS))
        .map(std::mem::take)
    else {
        return;
    };
    let mut list: Vec<Value> = at(live, &["agentConfig".into(), PLUGINS.into()])
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (name, v) in named {
        let item = serde_json::json!({ "name": name, "desiredState": v["desiredState"] });
        match list.iter_mut().find(|i| i["name"] == name.as_str()) {
            Some(slot) => *slot = item,
            None => list.push(item),
        }
    }
    body["agentConfig"][PLUGINS] = Value::Array(list);
}

/// Whether `live` has every key of `sent`: objects key by key, lists of named objects element by
/// name, anything else equal.
fn covers(live: &Value, sent: &Value) -> bool {
    match sent {
        Value::Object(o) => o
            .iter()
            .all(|(k, v)| covers(live.get(k).unwrap_or(&Value::Null), v)),
        Value::Array(items) if items.iter().all(|i| i.get("name").is_some()) => {
            items.iter().all(|i| {
                live.as_array().is_some_and(|l| {
                    l.iter()
                        .any(|x| x.get("name") == i.get("name") && covers(x, i))
                })
            })
        }
        _ => same(live, sent),
    }
}

/// Equality as OCI means it: numbers by value, objects key by key, missing = null.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-9,
            _ => x == y,
        },
        (Value::Object(x), Value::Object(y)) => {
            x.iter()
                .all(|(k, v)| same(v, y.get(k).unwrap_or(&Value::Null)))
                && y.iter()
                    .all(|(k, v)| same(v, x.get(k).unwrap_or(&Value::Null)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

/// What the desired value resolves to now.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    Known(Value),
    /// A reference to a resource that is created or replaced by this plan: its id is known only
    /// after apply, so the attribute changes.
    AfterApply(String),
}

/// One attribute that differs, with its class.
#[derive(Clone, Debug, PartialEq)]
pub struct AttrDiff {
    pub change: AttrChange,
    pub class: AttrClass,
}

/// The current value of `attr`: from the live JSON or the recorded create-time inputs. A boot
/// volume setting kiln has not recorded ([`BOOT_VOLUME_UPDATABLE`]) is the launch-time value in
/// `sourceDetails`.
pub fn current<'a>(
    attr: &DesiredAttr,
    live: &'a Value,
    inputs: &'a Map<String, Value>,
) -> &'a Value {
    match &attr.lookup {
        Lookup::Live(path) => at(live, path),
        Lookup::Input(key) => match inputs.get(key) {
            Some(v) => v,
            None => match BOOT_VOLUME_UPDATABLE.iter().find(|(k, ..)| k == key) {
                Some((_, _, launch, _)) => {
                    let path: Vec<String> = launch.split('.').map(str::to_string).collect();
                    at(live, &path)
                }
                None => &Value::Null,
            },
        },
    }
}

/// Desired vs live for one existing resource. `resolve` turns a reference into its id, or says it
/// is known only after apply.
pub fn diff(
    desired: &DesiredResource,
    live: &Value,
    inputs: &Map<String, Value>,
    resolve: &dyn Fn(&str) -> Resolved,
) -> Vec<AttrDiff> {
    let mut out = Vec::new();
    for attr in &desired.attrs {
        if desired.ignores(&attr.path) || attr.class == AttrClass::Power {
            continue;
        }
        let before = current(attr, live, inputs);
        let after = match &attr.value {
            DesiredValue::Known(v) => Resolved::Known(v.clone()),
            DesiredValue::IdOf(addr) => resolve(addr),
        };
        let (differs, after_value) = match after {
            Resolved::Known(v) => (!same(before, &v), v),
            Resolved::AfterApply(addr) => (
                true,
                Value::String(format!("(id of {addr}, known after apply)")),
            ),
        };
        if differs {
            out.push(AttrDiff {
                change: AttrChange {
                    path: attr.path.clone(),
                    before: before.clone(),
                    after: after_value,
                    forces_replacement: attr.class == AttrClass::Replace,
                    why: attr.why.map(str::to_string),
                },
                class: attr.class,
            });
        }
    }
    out
}

/// Objects whose update details are a type of their own (UpdateInstanceShapeConfigDetails,
/// InstanceOptions, UpdateLaunchOptions, UpdateInstanceAvailabilityConfigDetails,
/// UpdateInstanceAgentConfigDetails), not
/// a map OCI replaces: only the keys kiln manages are sent, never the server-set fields of the
/// live object (`processorDescription`, `gpus`, …, which OCI refuses).
const PARTIAL_OBJECTS: &[&str] = &[
    "shapeConfig",
    "instanceOptions",
    "launchOptions",
    "availabilityConfig",
    "agentConfig",
];

/// Key of an update body under which the primary VNIC's UpdateVnicDetails travel (the executor
/// takes it out and sends it to the VNIC, guarded by the VNIC's own etag).
pub const VNIC_UPDATE: &str = "$vnic";

/// Key of an update body under which the boot volume's new `vpusPerGB` / `kmsKeyId` travel (the
/// executor takes it out and sends UpdateBootVolume / UpdateBootVolumeKmsKey, guarded by the
/// volume's own etag).
pub const BOOT_VOLUME_UPDATE: &str = "$bootVolume";

/// The UpdateInstanceDetails / UpdateImageDetails body for the updatable attributes that differ.
///
/// OCI replaces whole maps (tags, metadata) on update, so a changed map key is sent together with
/// every key the live resource has — nothing kiln does not manage is removed. A
/// [`PARTIAL_OBJECTS`] field is sent with every key of it the manifest manages, and no other.
pub fn update_body(desired: &DesiredResource, live: &Value, changed: &[AttrDiff]) -> Value {
    let mut body = Map::new();
    for d in changed.iter().filter(|d| d.class == AttrClass::Update) {
        let Some(attr) = desired.attrs.iter().find(|a| a.path == d.change.path) else {
            continue;
        };
        let path = match &attr.lookup {
            Lookup::Live(path) => path,
            // The primary VNIC's settings: UpdateVnicDetails, under [`VNIC_UPDATE`]; the boot
            // volume's, under [`BOOT_VOLUME_UPDATE`].
            Lookup::Input(key) => {
                let to = VNIC_UPDATABLE
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, oci)| (VNIC_UPDATE, *oci))
                    .or_else(|| {
                        BOOT_VOLUME_UPDATABLE
                            .iter()
                            .find(|(k, ..)| k == key)
                            .map(|(_, oci, ..)| (BOOT_VOLUME_UPDATE, *oci))
                    });
                if let Some((under, oci)) = to {
                    let entry = body
                        .entry(under.to_string())
                        .or_insert_with(|| Value::Object(Map::new()));
                    entry[oci] = d.change.after.clone();
                }
                continue;
            }
        };
        let top = &path[0];
        // An image's shapes and capabilities: their own calls, applied by the executor.
        if let Some((key, whole)) = super::image_caps::update_part(desired, top) {
            body.insert(key.into(), whole);
            continue;
        }
        if PARTIAL_OBJECTS.contains(&top.as_str()) && path.len() > 1 {
            let entry = body
                .entry(top.clone())
                .or_insert_with(|| managed_keys(desired, top));
            set_at(entry, &path[1..], d.change.after.clone());
            continue;
        }
        // The top-level field: maps and nested objects are sent whole, starting from live.
        let entry = body
            .entry(top.clone())
            .or_insert_with(|| match live.get(top) {
                Some(Value::Object(m)) if path.len() > 1 => Value::Object(m.clone()),
                _ => Value::Null,
            });
        set_at(entry, &path[1..], d.change.after.clone());
    }
    plugins_as_list(&mut body, live);
    Value::Object(body)
}

/// The keys of the object `top` the manifest manages, with their desired (known) values.
fn managed_keys(desired: &DesiredResource, top: &str) -> Value {
    let mut obj = Value::Object(Map::new());
    for a in desired.attrs.iter().filter(|a| !desired.ignores(&a.path)) {
        if let (Lookup::Live(p), DesiredValue::Known(v)) = (&a.lookup, &a.value) {
            if p.len() > 1 && p[0] == top {
                set_at(&mut obj, &p[1..], v.clone());
            }
        }
    }
    obj
}

/// Whether `live` already has what an update body `sent` asks for (a lost answer): maps and
/// values must be equal, a [`PARTIAL_OBJECTS`] field only on the keys sent.
pub fn update_applied(live: &Value, sent: &Value) -> bool {
    let Some(m) = sent.as_object() else {
        return false;
    };
    m.iter()
        .filter(|(k, _)| *k != VNIC_UPDATE && *k != BOOT_VOLUME_UPDATE)
        .all(|(k, v)| {
            let l = live.get(k).unwrap_or(&Value::Null);
            match v.as_object() {
                Some(_) if PARTIAL_OBJECTS.contains(&k.as_str()) => covers(l, v),
                _ => same(l, v),
            }
        })
}

fn set_at(slot: &mut Value, rest: &[String], value: Value) {
    match rest.split_first() {
        None => *slot = value,
        Some((k, tail)) => {
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let m = slot.as_object_mut().expect("just made an object");
            set_at(m.entry(k.clone()).or_insert(Value::Null), tail, value);
        }
    }
}

/// State vs live for the attributes the manifest manages: what changed outside kiln.
/// Create-time inputs are not read live, so they cannot drift.
pub fn drift(desired: &DesiredResource, state_attrs: &Value, live: &Value) -> Vec<AttrChange> {
    desired
        .attrs
        .iter()
        .filter(|a| !desired.ignores(&a.path))
        .filter_map(|a| match &a.lookup {
            // Read live only (an image's shapes and capabilities): the state does not hold them.
            Lookup::Live(path) if path[0].starts_with('$') => None,
            Lookup::Live(path) => {
                let (s, l) = (at(state_attrs, path), at(live, path));
                (!same(s, l)).then(|| AttrChange {
                    path: a.path.clone(),
                    before: s.clone(),
                    after: l.clone(),
                    forces_replacement: false,
                    why: None,
                })
            }
            Lookup::Input(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::desired::Power;
    use crate::plan::Kind;
    use serde_json::json;

    fn attr(path: &str, live: &str, v: Value, class: AttrClass) -> DesiredAttr {
        DesiredAttr {
            path: path.into(),
            lookup: Lookup::live(live),
            value: DesiredValue::Known(v),
            class,
            why: (class == AttrClass::Replace).then_some("cannot change"),
        }
    }

    fn res(attrs: Vec<DesiredAttr>) -> DesiredResource {
        DesiredResource {
            address: "instance.web".into(),
            kind: Kind::Instance,
            region: None,
            display_name: "web".into(),
            compartment: "c".into(),
            attrs,
            power: Some(Power::Running),
            depends_on: vec![],
            captured_from: None,
            restart_source: true,
            ignore_changes: vec![],
            prevent_destroy: false,
            create_before_destroy: false,
            preserve_boot_volume: false,
            create_body: Default::default(),
        }
    }

    #[test]
    fn numbers_compare_by_value_and_unset_keys_are_ignored() {
        let d = res(vec![
            attr(
                "shape_config.ocpus",
                "shapeConfig.ocpus",
                json!(1),
                AttrClass::Update,
            ),
            attr(
                "freeform_tags.team",
                "freeformTags.team",
                json!("infra"),
                AttrClass::Update,
            ),
        ]);
        let live = json!({"shapeConfig": {"ocpus": 1.0, "memoryInGBs": 16.0},
                          "freeformTags": {"team": "infra"},
                          "definedTags": {"Oracle-Tags": {"CreatedBy": "x"}}});
        assert!(diff(&d, &live, &Map::new(), &|_| Resolved::AfterApply(
            String::new()
        ))
        .is_empty());
    }

    #[test]
    fn changed_attributes_carry_class_and_reason() {
        let mut d = res(vec![
            attr("display_name", "displayName", json!("b"), AttrClass::Update),
            attr(
                "availability_domain",
                "availabilityDomain",
                json!("AD-2"),
                AttrClass::Replace,
            ),
        ]);
        let live = json!({"displayName": "a", "availabilityDomain": "AD-1"});
        let out = diff(&d, &live, &Map::new(), &|_| unreachable!());
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].change.before, json!("a"));
        assert!(out[1].change.forces_replacement);
        d.ignore_changes = vec!["display_name".into()];
        assert_eq!(diff(&d, &live, &Map::new(), &|_| unreachable!()).len(), 1);
    }

    #[test]
    fn references_resolve_or_change_after_apply() {
        let d = res(vec![DesiredAttr {
            path: "source.image".into(),
            lookup: Lookup::live("sourceDetails.imageId"),
            value: DesiredValue::IdOf("image.golden".into()),
            class: AttrClass::Replace,
            why: Some("the source image"),
        }]);
        let live = json!({"sourceDetails": {"imageId": "ocid1.image.oc1..a"}});
        assert!(diff(&d, &live, &Map::new(), &|_| Resolved::Known(json!(
            "ocid1.image.oc1..a"
        )))
        .is_empty());
        let out = diff(&d, &live, &Map::new(), &|a| {
            Resolved::AfterApply(a.to_string())
        });
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn drift_compares_state_with_live_on_managed_paths_only() {
        let d = res(vec![attr(
            "display_name",
            "displayName",
            json!("web"),
            AttrClass::Update,
        )]);
        let state = json!({"displayName": "web", "freeformTags": {}});
        let live = json!({"displayName": "renamed", "freeformTags": {"x": "y"}});
        let out = drift(&d, &state, &live);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].after, json!("renamed"));
    }
}

#[cfg(test)]
mod update_body_tests {
    use super::*;
    use crate::plan::desired::Power;
    use crate::plan::Kind;
    use serde_json::json;

    #[test]
    fn maps_are_sent_whole_with_the_live_keys_kiln_does_not_manage() {
        let d = DesiredResource {
            address: "instance.web".into(),
            kind: Kind::Instance,
            region: None,
            display_name: "web".into(),
            compartment: "c".into(),
            attrs: vec![DesiredAttr {
                path: "freeform_tags.team".into(),
                lookup: Lookup::live("freeformTags.team"),
                value: DesiredValue::Known(json!("infra")),
                class: AttrClass::Update,
                why: None,
            }],
            power: Some(Power::Running),
            depends_on: vec![],
            captured_from: None,
            restart_source: true,
            ignore_changes: vec![],
            prevent_destroy: false,
            create_before_destroy: false,
            preserve_boot_volume: false,
            create_body: Default::default(),
        };
        let live = json!({"freeformTags": {"team": "web", "cost": "42"}});
        let diffs = diff(&d, &live, &Map::new(), &|_| unreachable!());
        assert_eq!(
            update_body(&d, &live, &diffs),
            json!({"freeformTags": {"team": "infra", "cost": "42"}})
        );
    }

    #[test]
    fn a_shape_config_is_sent_with_the_managed_keys_only() {
        let attr = |path: &str, live: &str, v: Value| DesiredAttr {
            path: path.into(),
            lookup: Lookup::live(live),
            value: DesiredValue::Known(v),
            class: AttrClass::Update,
            why: None,
        };
        let d = DesiredResource {
            address: "instance.web".into(),
            kind: Kind::Instance,
            display_name: "web".into(),
            compartment: "c".into(),
            region: None,
            attrs: vec![
                attr("shape_config.ocpus", "shapeConfig.ocpus", json!(2.0)),
                attr(
                    "shape_config.memory_in_gbs",
                    "shapeConfig.memoryInGBs",
                    json!(16.0),
                ),
            ],
            power: Some(Power::Running),
            depends_on: vec![],
            captured_from: None,
            restart_source: true,
            ignore_changes: vec![],
            prevent_destroy: false,
            create_before_destroy: false,
            preserve_boot_volume: false,
            create_body: Default::default(),
        };
        let live = json!({"shapeConfig": {"ocpus": 1.0, "memoryInGBs": 16.0, "processorDescription": "AMD", "gpus": 0, "networkingBandwidthInGbps": 1.0}});
        let diffs = diff(&d, &live, &Map::new(), &|_| unreachable!());
        let body = update_body(&d, &live, &diffs);
        assert_eq!(
            body,
            json!({"shapeConfig": {"ocpus": 2.0, "memoryInGBs": 16.0}})
        );
        let after = json!({"shapeConfig": {"ocpus": 2.0, "memoryInGBs": 16.0, "processorDescription": "AMD"}});
        assert!(update_applied(&after, &body));
        assert!(!update_applied(&live, &body));
    }
}
