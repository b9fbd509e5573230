//! `on_failure = "rollback"` in the plan: which fleets are being moved back onto the image their
//! members ran before a rollout failed, and the desired source that holds them there.
//!
//! The executor marks it in the state when a member fails its gate: every member the rollout
//! had moved (and the failed one) gets the input [`MARK`] = `{"image": PREVIOUS}` in the same
//! commit as the failure ([`crate::apply`]'s `rollout`). A fleet is **rolling back** while some
//! marked member's record runs another image than its mark; then every member of the fleet is
//! planned onto the mark's image instead of the manifest's, so the rollout's batches (the same
//! limits and health gate, [`super::rollout`]) carry the moved members back, and no member moves
//! forward. A member's mark goes when its record is rewritten (a replacement or a boot volume
//! replacement records the inputs of its node, which have no mark), so once every marked member
//! is back the fleet is not rolling back any more and the next apply moves it forward again.
//! Because the marks are in the state, a rollback that was interrupted (a kill, a lost answer,
//! a member failing its gate on the way back) resumes at the next apply.
//!
//! Only an image source is rolled back (`source = { image = … }`); a fleet launched from an
//! `image_lookup` or a boot volume keeps the manifest's source.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::build::Prior;
use super::desired::{DesiredResource, DesiredValue};
use super::Kind;

/// The input of a member's state record while its fleet is rolled back: `{"image": OCID}`.
pub const MARK: &str = "rollback_to";

/// `instance.web[2]` → `instance.web`.
pub fn fleet_of(address: &str) -> &str {
    address.split_once('[').map_or(address, |(f, _)| f)
}

/// The image a recorded instance runs (`sourceDetails.imageId`, else `imageId`).
pub fn image_of_record(attributes: &Value) -> Option<&str> {
    attributes["sourceDetails"]["imageId"]
        .as_str()
        .or(attributes["imageId"].as_str())
}

/// The fleets being rolled back, with the image they return to (module doc).
pub fn rolling_back(prior: &BTreeMap<String, Prior>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (address, p) in prior {
        let Some(image) = p.inputs.get(MARK).and_then(|m| m["image"].as_str()) else {
            continue;
        };
        let attributes = p.attributes.parse();
        let runs = p.id.as_ref().and(image_of_record(&attributes));
        if runs != Some(image) {
            out.insert(fleet_of(address).to_string(), image.to_string());
        }
    }
    out
}

/// Plan every member of a fleet being rolled back onto the image it returns to (module doc).
pub fn hold(desired: &mut [DesiredResource], prior: &BTreeMap<String, Prior>) {
    let fleets = rolling_back(prior);
    if fleets.is_empty() {
        return;
    }
    for d in desired.iter_mut().filter(|d| d.kind == Kind::Instance) {
        let Some(image) = fleets.get(fleet_of(&d.address)) else {
            continue;
        };
        let Some(a) = d.attrs.iter_mut().find(|a| a.path == "source.image") else {
            continue;
        };
        a.value = DesiredValue::Known(json!(image));
        let mut body = d.create_body.parse();
        if let Some(s) = body.get_mut("sourceDetails").and_then(Value::as_object_mut) {
            s.insert("imageId".into(), json!(image));
        }
        d.create_body = body.into();
    }
}
