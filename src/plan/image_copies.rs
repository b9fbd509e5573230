//! An image's copies in other regions as resources of their own: `image.NAME@<region id>`
//! (kind image, in that region), made from the image they copy (`copy_of`, the image's id: a
//! rebuild of the image replaces every copy), created by export → copy → import
//! (`apply::image_copy`). A reference to `image.NAME` from a resource in a region of `regions`
//! means the copy there ([`retarget`]).

use serde_json::{json, Map, Value};

use crate::manifest::image_copies::ImageCopies;
use crate::manifest::{ImageSpec, Manifest};

use super::desired::{id_ref, DesiredAttr, DesiredResource, DesiredValue, Lookup};
use super::from_manifest::{image, ADDRESS_TAG};
use super::AttrClass;

/// The key of a copy's create body (under `imageSourceDetails`) that apply turns into export →
/// copy → an `objectStorageTuple` source.
pub const COPY_KEY: &str = "$copy";

/// The copies `spec` declares, one per region of `regions`.
pub fn copies(spec: &ImageSpec) -> Vec<DesiredResource> {
    let Some(export) = &spec.copies.export else {
        return Vec::new();
    };
    let of = spec.address.to_string();
    spec.copies
        .regions
        .iter()
        .map(|region| {
            let mut d = image(spec);
            let address = ImageCopies::address(&of, region);
            d.address = address.clone();
            d.region = Some(region.clone());
            d.captured_from = None;
            d.restart_source = false;
            d.depends_on = vec![of.clone()];
            d.attrs
                .retain(|a| !matches!(a.path.as_str(), "from_instance" | "source"));
            d.attrs.push(DesiredAttr {
                path: "copy_of".into(),
                lookup: Lookup::Input("copy_of".into()),
                value: DesiredValue::IdOf(of.clone()),
                class: AttrClass::Replace,
                why: Some("a copy is imported from an export of the image it copies"),
            });
            let mut body = match d.create_body.parse() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            body.remove("instanceId");
            let mut source = json!({
                "sourceType": "objectStorageTuple",
                COPY_KEY: {
                    "image": id_ref(&of),
                    "namespace": export.namespace,
                    "bucket": export.bucket,
                    "keepExports": spec.copies.keep_exports,
                    "regions": spec.copies.regions.len(),
                },
            });
            for k in ["operatingSystem", "operatingSystemVersion"] {
                if let Some(v) = body
                    .get("imageSourceDetails")
                    .and_then(|s| s.get(k))
                    .cloned()
                {
                    source[k] = v;
                }
            }
            body.insert("imageSourceDetails".into(), source);
            if let Some(Value::Object(tags)) = body.get_mut("freeformTags") {
                tags.insert(ADDRESS_TAG.into(), json!(address));
            }
            d.create_body = crate::raw_json::RawJson::from_value(&Value::Object(body));
            d
        })
        .collect()
}

/// Point every reference to a copied image from a resource in one of its `regions` at the copy
/// there (its `depends_on`, recorded inputs and create body).
pub fn retarget(manifest: &Manifest, out: &mut [DesiredResource]) {
    let copied: Vec<(String, &ImageSpec)> = manifest
        .images
        .values()
        .filter(|i| !i.copies.regions.is_empty() && i.copies.export.is_some())
        .map(|i| (i.address.to_string(), i))
        .collect();
    if copied.is_empty() {
        return;
    }
    for d in out.iter_mut() {
        let Some(region) = d
            .region
            .clone()
            .or_else(|| manifest.provider.region.clone())
        else {
            continue;
        };
        for (of, spec) in &copied {
            // A copy depends on the image itself, wherever it is.
            if d.address.starts_with(&format!("{of}@"))
                || !d.depends_on.iter().any(|a| a == of)
                || !spec.copies.regions.contains(&region)
            {
                continue;
            }
            let copy = ImageCopies::address(of, &region);
            for a in d.depends_on.iter_mut().filter(|a| *a == of) {
                *a = copy.clone();
            }
            for a in d.attrs.iter_mut() {
                if a.value == DesiredValue::IdOf(of.clone()) {
                    a.value = DesiredValue::IdOf(copy.clone());
                }
            }
            let mut body = d.create_body.parse();
            replace_refs(&mut body, of, &copy);
            d.create_body = crate::raw_json::RawJson::from_value(&body);
        }
    }
}

fn replace_refs(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::Object(m) => {
            if m.len() == 1 && m.get("$ref").and_then(Value::as_str) == Some(from) {
                m.insert("$ref".into(), json!(to));
                return;
            }
            m.values_mut().for_each(|x| replace_refs(x, from, to));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| replace_refs(x, from, to)),
        _ => {}
    }
}
