//! The manifest's resources as the planner sees them: flat lists of desired attributes.
//!
//! Each [`DesiredAttr`] says where its current value is found — a path into the OCI JSON read
//! live ([`Lookup::Live`]), or, for create-time inputs OCI does not return (the subnet, public IP,
//! an `image_lookup`'s criteria), the inputs kiln recorded in state when it created the resource
//! ([`Lookup::Input`]) — and how it can change ([`AttrClass`]), following the OCI API reference
//! for UpdateInstanceDetails and UpdateImageDetails.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{AttrClass, Kind};

/// Where the current value of an attribute is read.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// A path of keys into the resource's OCI JSON (e.g. `["shapeConfig", "ocpus"]`).
    Live(Vec<String>),
    /// A create-time input kiln recorded in state (OCI does not return it).
    Input(String),
}

impl Lookup {
    pub fn live(path: &str) -> Lookup {
        Lookup::Live(path.split('.').map(str::to_string).collect())
    }
}

/// A desired value: known now, or the id of another managed resource.
#[derive(Clone, Debug, PartialEq)]
pub enum DesiredValue {
    Known(Value),
    /// The OCID of the resource at this address (`image.golden`), known once it exists.
    IdOf(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct DesiredAttr {
    /// Manifest path, e.g. `shape_config.ocpus`.
    pub path: String,
    pub lookup: Lookup,
    pub value: DesiredValue,
    pub class: AttrClass,
    /// For [`AttrClass::Replace`]: why OCI cannot change it in place.
    pub why: Option<&'static str>,
}

/// Desired power state of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Running,
    Stopped,
}

/// One managed resource as the manifest wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredResource {
    pub address: String,
    pub kind: Kind,
    /// The region it lives in (`None`: the provider's).
    pub region: Option<String>,
    pub display_name: String,
    pub compartment: String,
    pub attrs: Vec<DesiredAttr>,
    /// Instances only.
    pub power: Option<Power>,
    /// Addresses this resource needs to exist first (source image, source instance).
    pub depends_on: Vec<String>,
    /// For an image captured from a managed instance: that instance's address.
    pub captured_from: Option<String>,
    /// Whether the source instance is started again after capture (images only).
    pub restart_source: bool,
    /// Attribute paths (or prefixes) whose differences are ignored.
    pub ignore_changes: Vec<String>,
    pub prevent_destroy: bool,
    pub create_before_destroy: bool,
    pub preserve_boot_volume: bool,
    /// The create request (LaunchInstanceDetails / CreateImageDetails JSON); references to other
    /// managed resources are `{"$ref": ADDRESS}` placeholders. Kept as text: only creates and
    /// replacements read it, and a plan holds one per resource.
    pub create_body: crate::raw_json::RawJson,
}

impl DesiredResource {
    /// Whether differences at `path` are ignored (`ignore_changes` entries match a path or a prefix
    /// of it: `metadata` ignores `metadata.foo`).
    pub fn ignores(&self, path: &str) -> bool {
        self.ignore_changes.iter().any(|i| {
            path == i
                || (path.starts_with(i.as_str()) && path.as_bytes().get(i.len()) == Some(&b'.'))
        })
    }

    /// An image adopted by `kiln import --compartment` (`source = { adopted = OCID }`): its OCID.
    /// kiln cannot make such an image, so a plan that would create or replace it is refused.
    pub fn adopted(&self) -> Option<&str> {
        self.attrs.iter().find_map(|a| match (&a.lookup, &a.value) {
            (Lookup::Input(k), DesiredValue::Known(v)) if k == "source" => {
                v.get("adopted").and_then(Value::as_str)
            }
            _ => None,
        })
    }

    /// The create-time inputs to record in state, references as `{"$ref": …}` placeholders,
    /// plus the flags kiln needs after the resource leaves the manifest.
    pub fn input_values(&self) -> Value {
        let mut m: serde_json::Map<String, Value> = self
            .attrs
            .iter()
            .filter_map(|a| match (&a.lookup, &a.value) {
                (Lookup::Input(key), DesiredValue::Known(v)) => Some((key.clone(), v.clone())),
                (Lookup::Input(key), DesiredValue::IdOf(addr)) => Some((key.clone(), id_ref(addr))),
                _ => None,
            })
            .collect();
        m.insert("prevent_destroy".into(), Value::Bool(self.prevent_destroy));
        m.insert(
            "preserve_boot_volume".into(),
            Value::Bool(self.preserve_boot_volume),
        );
        m.insert(
            "create_before_destroy".into(),
            Value::Bool(self.create_before_destroy),
        );
        Value::Object(m)
    }

    /// The create-time inputs to record in state after a create (see [`Lookup::Input`]), with
    /// references resolved through `id_of`.
    pub fn inputs(&self, id_of: &dyn Fn(&str) -> Option<String>) -> BTreeMap<String, Value> {
        self.attrs
            .iter()
            .filter_map(|a| match &a.lookup {
                Lookup::Input(key) => {
                    let v = match &a.value {
                        DesiredValue::Known(v) => v.clone(),
                        DesiredValue::IdOf(addr) => id_of(addr).map(Value::String)?,
                    };
                    Some((key.clone(), v))
                }
                Lookup::Live(_) => None,
            })
            .collect()
    }
}

/// Placeholder for the id of a managed resource inside a request body.
pub fn id_ref(address: &str) -> Value {
    serde_json::json!({ "$ref": address })
}

/// Replace every `{"$ref": ADDRESS}` placeholder with `id_of(ADDRESS)`; `Err(address)` names the
/// first reference that has no id.
pub fn resolve_refs(body: &Value, id_of: &dyn Fn(&str) -> Option<String>) -> Result<Value, String> {
    Ok(match body {
        Value::Object(m) => {
            if let (1, Some(Value::String(a))) = (m.len(), m.get("$ref")) {
                return id_of(a).map(Value::String).ok_or_else(|| a.clone());
            }
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                out.insert(k.clone(), resolve_refs(v, id_of)?);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| resolve_refs(x, id_of))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}
