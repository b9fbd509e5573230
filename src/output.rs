//! Outputs: what `kiln output` prints — the facts a pipeline needs next about every managed
//! resource (id, region, compartment, lifecycle state; an instance's primary private IP, public
//! IP and hostname; an image's size), as text, as JSON keyed by address, or one bare value
//! (`instance.web.public_ip`) for scripts.
//!
//! Everything comes from the state: no network, so it is instant and works offline. Apply keeps
//! it current (it reads an instance's primary VNIC after creating, replacing or moving it, see
//! `apply::network`), and `kiln apply --refresh-only` brings it up to date with OCI.
//!
//! A module of its own, beside the stages rather than inside `state`: it is a view of the state
//! for people and scripts, as [`crate::plan::render`] is a view of a plan, while `state` owns the
//! format and its durability. It reads [`crate::state`] and borrows the manifest module's
//! did-you-mean; only the CLI uses it.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Map, Value};

use crate::state::{ResourceKind, ResourceState, State};
use crate::suggest::did_you_mean;

/// The attributes every resource has.
const COMMON: &[&str] = &[
    "id",
    "kind",
    "region",
    "compartment",
    "display_name",
    "state",
];
/// An instance's, besides [`COMMON`]: its primary VNIC's.
const INSTANCE: &[&str] = &["private_ip", "public_ip", "hostname"];
/// An image's, besides [`COMMON`]: `ids` is its id in every region it is in, its own and
/// those of its copies (`image.NAME@<region>`, see `plan::image_copies`): region → OCID.
const IMAGE: &[&str] = &["size_in_mbs", "ids"];

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum OutputError {
    #[error("`{address}` is not a resource in the state")]
    #[diagnostic(code(kiln::output::unknown_address), help("{help}"))]
    UnknownAddress { address: String, help: String },
    #[error("`{address}` has no attribute `{attribute}`")]
    #[diagnostic(code(kiln::output::unknown_attribute), help("{help}"))]
    UnknownAttribute {
        address: String,
        attribute: String,
        help: String,
    },
    #[error("the network facts of `{address}` are not in the state yet")]
    #[diagnostic(
        code(kiln::output::not_read),
        help("`kiln apply --refresh-only` reads them (changing nothing in OCI); so does the next `kiln apply`")
    )]
    NotRead { address: String },
}

/// The attributes a resource of `kind` has, in the order they are shown.
fn attributes(kind: ResourceKind) -> impl Iterator<Item = &'static str> {
    let own = match kind {
        ResourceKind::Instance => INSTANCE,
        ResourceKind::Image => IMAGE,
    };
    COMMON.iter().chain(own).copied()
}

fn kind_name(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Instance => "instance",
        ResourceKind::Image => "image",
    }
}

/// One resource's outputs: attribute → value (`null`: none), and whether its network facts were
/// read (instances).
fn record(r: &ResourceState) -> Map<String, Value> {
    let a = r.attributes.parse();
    let text = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_string);
    let id = r.id.clone().unwrap_or_default();
    let region = r
        .region
        .clone()
        .or_else(|| crate::region::from_ocid(&id).map(str::to_string));
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("kind".into(), json!(kind_name(r.kind)));
    m.insert("region".into(), json!(region));
    m.insert(
        "compartment".into(),
        json!(text("compartmentId").or_else(|| r.compartment.clone())),
    );
    m.insert("display_name".into(), json!(text("displayName")));
    m.insert("state".into(), json!(text("lifecycleState")));
    match r.kind {
        ResourceKind::Instance => {
            let n = r.network.as_ref();
            m.insert(
                "private_ip".into(),
                json!(n.and_then(|n| n.private_ip.clone())),
            );
            m.insert(
                "public_ip".into(),
                json!(n.and_then(|n| n.public_ip.clone())),
            );
            m.insert(
                "hostname".into(),
                json!(n.and_then(|n| n.hostname_label.clone())),
            );
            m.insert("network_read_at".into(), json!(n.map(|n| n.read_at)));
        }
        ResourceKind::Image => {
            m.insert(
                "size_in_mbs".into(),
                a.get("sizeInMBs").cloned().unwrap_or(Value::Null),
            );
        }
    }
    m
}

/// [`record`], with an image's `ids`: its own region's and each of its copies'.
fn record_in(state: &State, address: &str, r: &ResourceState) -> Map<String, Value> {
    let mut m = record(r);
    if r.kind == ResourceKind::Image {
        let mut ids = Map::new();
        let prefix = format!("{address}@");
        let own = std::iter::once((address, r));
        let copies = managed(state)
            .filter(|(a, _)| a.starts_with(&prefix))
            .map(|(a, r)| (a.as_str(), r));
        for (_, rec) in own.chain(copies) {
            let one = record(rec);
            if let (Some(region), Some(id)) = (one["region"].as_str(), one["id"].as_str()) {
                ids.insert(region.to_string(), json!(id));
            }
        }
        m.insert("ids".into(), Value::Object(ids));
    }
    m
}

/// The managed resources (those with an object; a create still pending has none yet).
fn managed(state: &State) -> impl Iterator<Item = (&String, &ResourceState)> {
    state.resources.iter().filter(|(_, r)| r.id.is_some())
}

/// Every managed resource's outputs, keyed by address (`kiln output --json`).
pub fn json(state: &State) -> Value {
    Value::Object(
        managed(state)
            .map(|(addr, r)| (addr.clone(), Value::Object(record_in(state, addr, r))))
            .collect(),
    )
}

/// The text view of one resource.
fn block(out: &mut String, state: &State, address: &str, r: &ResourceState) {
    let m = record_in(state, address, r);
    let read = r.kind != ResourceKind::Instance || r.network.is_some();
    // `ids` is shown when the image has copies (its own region's id is `id`).
    let copies = m
        .get("ids")
        .and_then(Value::as_object)
        .is_some_and(|i| i.len() > 1);
    let names: Vec<&str> = attributes(r.kind)
        .filter(|a| *a != "kind" && (*a != "ids" || copies))
        .collect();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let _ = writeln!(out, "{address}");
    for name in names {
        let shown = match &m[name] {
            Value::Null if INSTANCE.contains(&name) && !read => {
                "(not read yet: `kiln apply --refresh-only` reads it)".to_string()
            }
            Value::Null => "(none)".to_string(),
            Value::String(s) => s.clone(),
            // `ids`: region and OCID, one region after the other.
            Value::Object(ids) => ids
                .iter()
                .map(|(region, id)| format!("{region} {}", id.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        let _ = writeln!(out, "  {name:<width$} = {shown}");
    }
}

/// Every managed resource's outputs as text (`kiln output`).
pub fn text(state: &State) -> String {
    let mut out = String::new();
    for (i, (addr, r)) in managed(state).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        block(&mut out, state, addr, r);
    }
    if out.is_empty() {
        out.push_str("No resources in the state.\n");
    }
    out
}

/// What `kiln output QUERY` prints.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// `ADDRESS`: every output of one resource (as text, and as a JSON object).
    Resource { text: String, json: Value },
    /// `ADDRESS.ATTRIBUTE`: one value (`null`: none).
    Value(Value),
    /// A fleet's name (`instance.web`, `instance.web.private_ip`): the answer for each member,
    /// in member order (`[2]` before `[10]`).
    Members(Vec<(String, Answer)>),
}

impl Answer {
    /// The bare form for scripts: a string without quotes, none as an empty line; with `json`,
    /// JSON.
    pub fn render(&self, as_json: bool) -> String {
        match (self, as_json) {
            (Answer::Resource { text, .. }, false) => text.clone(),
            (Answer::Resource { json, .. }, true) => {
                format!("{}\n", serde_json::to_string_pretty(json).expect("json"))
            }
            (Answer::Value(v), true) => format!("{v}\n"),
            (Answer::Value(Value::String(s)), false) => format!("{s}\n"),
            (Answer::Value(Value::Null), false) => "\n".to_string(),
            (Answer::Value(v), false) => format!("{v}\n"),
            // As JSON, one object keyed by member address; as text, the members' blocks (blank
            // lines between them), or their bare values one per line, in member order.
            (Answer::Members(members), true) => {
                let object: Map<String, Value> = members
                    .iter()
                    .map(|(a, answer)| {
                        let v = match answer {
                            Answer::Resource { json, .. } => json.clone(),
                            Answer::Value(v) => v.clone(),
                            Answer::Members(_) => Value::Null,
                        };
                        (a.clone(), v)
                    })
                    .collect();
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&Value::Object(object)).expect("json")
                )
            }
            (Answer::Members(members), false) => {
                let blocks = matches!(members.first(), Some((_, Answer::Resource { .. })));
                let parts: Vec<String> = members.iter().map(|(_, a)| a.render(false)).collect();
                parts.join(if blocks { "\n" } else { "" })
            }
        }
    }
}

/// The members of fleet `name` (`instance.web`) among `records`, in member order: indexes by
/// number (`[2]` before `[10]`), keys as the state orders them.
fn members<'a>(records: &BTreeMap<&'a str, &ResourceState>, name: &str) -> Vec<&'a str> {
    let mut found: Vec<&str> = records
        .keys()
        .copied()
        .filter(|a| {
            a.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('['))
        })
        .collect();
    let index = |a: &str| -> Option<u64> {
        a[name.len()..]
            .strip_prefix('[')?
            .strip_suffix(']')?
            .parse()
            .ok()
    };
    found.sort_by_key(|a| index(a));
    found
}

/// Answer `ADDRESS` or `ADDRESS.ATTRIBUTE` (`instance.web.public_ip`,
/// `instance.web[0].private_ip`, `image.golden.size_in_mbs`).
pub fn query(state: &State, q: &str) -> Result<Answer, OutputError> {
    let records: BTreeMap<&str, &ResourceState> =
        managed(state).map(|(a, r)| (a.as_str(), r)).collect();
    if let Some(r) = records.get(q) {
        let mut text = String::new();
        block(&mut text, state, q, r);
        return Ok(Answer::Resource {
            text,
            json: Value::Object(record_in(state, q, r)),
        });
    }
    // A fleet's name, as `--target` takes it: every member.
    let fleet = members(&records, q);
    if !fleet.is_empty() {
        let answers = fleet
            .into_iter()
            .map(|m| Ok((m.to_string(), query(state, m)?)))
            .collect::<Result<_, OutputError>>()?;
        return Ok(Answer::Members(answers));
    }
    // The attribute is the last `.`-part, when it looks like one (a member key may hold dots).
    let (address, attribute) = match q.rsplit_once('.') {
        Some((a, attr))
            if !attr.is_empty() && attr.chars().all(|c| c.is_ascii_lowercase() || c == '_') =>
        {
            (a, Some(attr))
        }
        _ => (q, None),
    };
    if let (Some(attribute), false) = (attribute, records.contains_key(address)) {
        let fleet = members(&records, address);
        if !fleet.is_empty() {
            let answers = fleet
                .into_iter()
                .map(|m| Ok((m.to_string(), query(state, &format!("{m}.{attribute}"))?)))
                .collect::<Result<_, OutputError>>()?;
            return Ok(Answer::Members(answers));
        }
    }
    // `instance.nope` is an address, not `instance` with an attribute `nope`.
    let (address, attribute) = match (attribute, address.contains('.')) {
        (Some(_), false) => (q, None),
        other => (address, other.0),
    };
    let Some(r) = records.get(address) else {
        let suggestion = did_you_mean(address, records.keys().copied())
            .or_else(|| did_you_mean(q, records.keys().copied()));
        return Err(OutputError::UnknownAddress {
            address: address.to_string(),
            help: match suggestion {
                Some(s) => format!("did you mean `{s}`? (`kiln output` lists every resource)"),
                None if records.is_empty() => {
                    "the state manages nothing yet: run `kiln apply` first".into()
                }
                None => "`kiln output` lists every resource in the state".into(),
            },
        });
    };
    let attribute = attribute.expect("an address in the state was matched whole");
    let known: Vec<&str> = attributes(r.kind).collect();
    if !known.contains(&attribute) {
        return Err(OutputError::UnknownAttribute {
            address: address.to_string(),
            attribute: attribute.to_string(),
            help: match did_you_mean(attribute, known.iter().copied()) {
                Some(s) => format!("did you mean `{address}.{s}`?"),
                None => format!(
                    "{} {address} has: {}",
                    if r.kind == ResourceKind::Instance {
                        "the instance"
                    } else {
                        "the image"
                    },
                    known.join(", ")
                ),
            },
        });
    }
    if INSTANCE.contains(&attribute) && r.network.is_none() {
        return Err(OutputError::NotRead {
            address: address.to_string(),
        });
    }
    Ok(Answer::Value(
        record_in(state, address, r)[attribute].clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Network;

    fn state() -> State {
        let mut st = State::new();
        let mut web = ResourceState::new(ResourceKind::Instance);
        web.id = Some("ocid1.instance.oc1.iad.aaaa".into());
        web.attributes = json!({"compartmentId": "ocid1.compartment.oc1..c", "displayName": "web-0", "lifecycleState": "RUNNING"}).into();
        web.network = Some(Network {
            vnic_id: "ocid1.vnic.oc1.iad.v".into(),
            subnet_id: None,
            private_ip: Some("10.0.0.7".into()),
            public_ip: None,
            hostname_label: Some("web-0".into()),
            read_at: chrono::Utc::now(),
        });
        st.resources.insert("instance.web[0]".into(), web);
        let mut old = ResourceState::new(ResourceKind::Instance);
        old.id = Some("ocid1.instance.oc1.iad.bbbb".into());
        st.resources.insert("instance.old".into(), old);
        let mut img = ResourceState::new(ResourceKind::Image);
        img.id = Some("ocid1.image.oc1.iad.cccc".into());
        img.attributes = json!({"lifecycleState": "AVAILABLE", "sizeInMBs": 47694}).into();
        st.resources.insert("image.golden".into(), img);
        st
    }

    #[test]
    fn bare_values_for_scripts() {
        let st = state();
        let v = |q| query(&st, q).unwrap().render(false);
        assert_eq!(v("instance.web[0].private_ip"), "10.0.0.7\n");
        assert_eq!(v("instance.web[0].public_ip"), "\n");
        assert_eq!(
            query(&st, "instance.web[0].public_ip")
                .unwrap()
                .render(true),
            "null\n"
        );
        assert_eq!(v("instance.web[0].region"), "us-ashburn-1\n");
        assert_eq!(v("image.golden.size_in_mbs"), "47694\n");
        assert!(v("image.golden").contains("\n  size_in_mbs  = 47694\n"));
    }

    #[test]
    fn a_fleet_lists_its_members_in_index_order() {
        let mut st = State::new();
        for i in [10, 2, 1] {
            let mut r = ResourceState::new(ResourceKind::Instance);
            r.id = Some(format!("ocid1.instance.oc1.iad.m{i}"));
            st.resources.insert(format!("instance.web[{i}]"), r);
        }
        assert_eq!(
            query(&st, "instance.web.id").unwrap().render(false),
            "ocid1.instance.oc1.iad.m1\nocid1.instance.oc1.iad.m2\nocid1.instance.oc1.iad.m10\n"
        );
        let text = query(&st, "instance.web").unwrap().render(false);
        let order: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("instance."))
            .collect();
        assert_eq!(
            order,
            ["instance.web[1]", "instance.web[2]", "instance.web[10]"]
        );
    }

    #[test]
    fn mistakes_say_what_was_meant() {
        let st = state();
        let e = |q| query(&st, q).unwrap_err();
        match e("instance.web[0].public_pi") {
            OutputError::UnknownAttribute { help, .. } => {
                assert!(help.contains("`instance.web[0].public_ip`"), "{help}")
            }
            other => panic!("{other:?}"),
        }
        match e("instance.wbe[0].public_ip") {
            OutputError::UnknownAddress { address, help } => {
                assert_eq!(address, "instance.wbe[0]");
                assert!(help.contains("`instance.web[0]`"), "{help}")
            }
            other => panic!("{other:?}"),
        }
        match e("image.golden.private_ip") {
            OutputError::UnknownAttribute { help, .. } => {
                assert!(help.contains("size_in_mbs"), "{help}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            e("instance.old.private_ip"),
            OutputError::NotRead { .. }
        ));
        assert!(text(&st).contains("(not read yet"));
    }
}
