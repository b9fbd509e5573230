//! `kiln import --compartment`'s images: a custom image made outside kiln as an adopted
//! `[image.NAME]` table (`source = { adopted = OCID }`) and the create-time inputs its state
//! record holds, such that the next plan shows no changes. The mapping is the inverse of
//! [`super::from_manifest::image`] for an adopted source.
//!
//! What the table holds is what UpdateImageDetails can change (display name, operating system and
//! its version, freeform and defined tags — the fields of UpdateImageDetails in
//! oracle/terraform-provider-oci's vendored oci-go-sdk,
//! `vendor/github.com/oracle/oci-go-sdk/v65/core/update_image_details.go`), plus
//! the compartment (ChangeImageCompartment moves it). `launch_mode` is left out: it is fixed when
//! an image is made, so declaring it could only ever ask for a replacement kiln cannot make.

use serde_json::{Map, Value};
use toml_edit::{value, InlineTable, Table};

use crate::oci::models::Image;

use super::from_manifest::{adopted_source, ADDRESS_TAG};

/// The `[image.NAME]` table for a live custom image.
pub fn image_table(live: &Image) -> Table {
    let mut t = Table::new();
    if let Some(n) = &live.display_name {
        t.insert("display_name", value(n.as_str()));
    }
    if let Some(c) = &live.compartment_id {
        t.insert("compartment", value(c.as_str()));
    }
    let mut src = InlineTable::new();
    src.insert("adopted", live.id.as_str().into());
    t.insert("source", value(src));
    if !live.operating_system.is_empty() {
        t.insert("operating_system", value(live.operating_system.as_str()));
    }
    if !live.operating_system_version.is_empty() {
        t.insert(
            "operating_system_version",
            value(live.operating_system_version.as_str()),
        );
    }
    let free: Vec<_> = live
        .freeform_tags
        .iter()
        .filter(|(k, _)| k.as_str() != ADDRESS_TAG)
        .collect();
    if !free.is_empty() {
        let mut f = InlineTable::new();
        for (k, v) in free {
            f.insert(k, v.as_str().into());
        }
        t.insert("freeform_tags", value(f));
    }
    if let Some(d) = defined_tags(&live.defined_tags) {
        t.insert("defined_tags", value(d));
    }
    t
}

/// Defined tags as an inline table, without those OCI adds itself (`Oracle-Tags`: not the user's
/// to manage). `None` when nothing is left.
pub(super) fn defined_tags(tags: &crate::oci::models::DefinedTags) -> Option<InlineTable> {
    let mut d = InlineTable::new();
    for (ns, m) in tags.iter().filter(|(ns, _)| ns.as_str() != "Oracle-Tags") {
        let mut inner = InlineTable::new();
        for (k, v) in m {
            let item: toml_edit::Value = match v {
                Value::Bool(b) => (*b).into(),
                Value::Number(n) if n.is_i64() => n.as_i64().unwrap_or_default().into(),
                Value::Number(n) => n.as_f64().unwrap_or_default().into(),
                Value::String(s) => s.as_str().into(),
                other => other.to_string().into(),
            };
            inner.insert(k, item);
        }
        d.insert(ns, toml_edit::Value::InlineTable(inner));
    }
    (!d.is_empty()).then_some(d)
}

/// The create-time inputs recorded for an adopted image: what a plan of its table compares
/// (`source`, see [`crate::plan::desired::DesiredResource::adopted`]) and the flags every record
/// carries.
pub fn image_inputs(id: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("source".into(), adopted_source(id));
    m.insert("prevent_destroy".into(), Value::Bool(false));
    m.insert("preserve_boot_volume".into(), Value::Bool(false));
    m.insert("create_before_destroy".into(), Value::Bool(false));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adopted_image_keeps_its_updatable_fields_and_drops_what_kiln_and_oci_manage() {
        let live: Image = serde_json::from_value(serde_json::json!({
            "id": "ocid1.image.oc1.iad.aaaa",
            "compartmentId": "ocid1.compartment.oc1..c",
            "displayName": "golden-2024",
            "lifecycleState": "AVAILABLE",
            "operatingSystem": "Oracle Linux",
            "operatingSystemVersion": "9",
            "launchMode": "PARAVIRTUALIZED",
            "freeformTags": { "team": "web", "kiln-address": "image.old" },
            "definedTags": { "Oracle-Tags": { "CreatedBy": "x" }, "ops": { "tier": 1 } }
        }))
        .unwrap();
        let mut doc = toml_edit::DocumentMut::new();
        doc.insert("golden", toml_edit::Item::Table(image_table(&live)));
        assert_eq!(
            doc.to_string(),
            "[golden]\ndisplay_name = \"golden-2024\"\ncompartment = \"ocid1.compartment.oc1..c\"\nsource = { adopted = \"ocid1.image.oc1.iad.aaaa\" }\noperating_system = \"Oracle Linux\"\noperating_system_version = \"9\"\nfreeform_tags = { team = \"web\" }\ndefined_tags = { ops = { tier = 1 } }\n"
        );
        assert_eq!(
            image_inputs(&live.id)["source"],
            serde_json::json!({ "adopted": "ocid1.image.oc1.iad.aaaa" })
        );
    }
}
