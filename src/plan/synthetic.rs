//! Synthetic plan inputs of any size: `n` managed instances in state and live, all matching the
//! manifest (a no-change plan) except every 100th, which drifted. Used by the plan-CPU benchmark
//! (`cargo bench --bench plan_cpu`) and its smoke test, so the benchmark cannot rot.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::build::{LiveRead, Prior};
use super::desired::{DesiredAttr, DesiredResource, DesiredValue, Lookup, Power};
use super::{AttrClass, Kind};

pub struct Synthetic {
    pub desired: Vec<DesiredResource>,
    pub prior: BTreeMap<String, Prior>,
    pub live: HashMap<String, LiveRead>,
}

fn attr(path: &str, live: &str, v: Value, class: AttrClass) -> DesiredAttr {
    DesiredAttr {
        path: path.into(),
        lookup: Lookup::live(live),
        value: DesiredValue::Known(v),
        class,
        why: None,
    }
}

pub fn instances(n: usize) -> Synthetic {
    let mut desired = Vec::with_capacity(n);
    let mut prior = BTreeMap::new();
    let mut live = HashMap::with_capacity(n);
    for i in 0..n {
        let name = format!("i{i:05}");
        let id = format!("ocid1.instance.oc1.iad.{i:060}");
        let body = json!({
            "id": id, "compartmentId": "ocid1.compartment.oc1..c", "availabilityDomain": "kIdk:US-ASHBURN-AD-1",
            "displayName": name, "lifecycleState": "RUNNING", "shape": "VM.Standard.E4.Flex",
            "shapeConfig": { "ocpus": 1.0, "memoryInGBs": 16.0 }, "sourceDetails": { "sourceType": "image", "imageId": "ocid1.image.oc1.iad.img" },
            "metadata": { "ssh_authorized_keys": "ssh-ed25519 AAAA" }, "freeformTags": { "team": "infra" },
            "definedTags": { "Oracle-Tags": { "CreatedBy": "x", "CreatedOn": "2026-11-23T00:00:00Z" } },
        });
        let mut live_body = body.clone();
        if i % 100 == 99 {
            live_body["displayName"] = json!(format!("{name}-renamed"));
        }
        let mut inputs = Map::new();
        inputs.insert("subnet_id".into(), json!("ocid1.subnet.oc1.iad.s"));
        prior.insert(
            format!("instance.{name}"),
            Prior {
                kind: Some(Kind::Instance),
                id: Some(id.clone()),
                attributes: body.into(),
                inputs: inputs.into(),
                pending_create: false,
                pending_region: None,
                pending_stale: false,
                deposed: Vec::new(),
                retained: Vec::new(),
            },
        );
        live.insert(id, LiveRead::from_value(&live_body, None));
        desired.push(DesiredResource {
            address: format!("instance.{name}"),
            kind: Kind::Instance,
            region: None,
            display_name: name.clone(),
            compartment: "ocid1.compartment.oc1..c".into(),
            attrs: vec![
                attr(
                    "display_name",
                    "displayName",
                    json!(name),
                    AttrClass::Update,
                ),
                attr(
                    "compartment",
                    "compartmentId",
                    json!("ocid1.compartment.oc1..c"),
                    AttrClass::Move,
                ),
                attr(
                    "availability_domain",
                    "availabilityDomain",
                    json!("kIdk:US-ASHBURN-AD-1"),
                    AttrClass::Replace,
                ),
                attr(
                    "shape",
                    "shape",
                    json!("VM.Standard.E4.Flex"),
                    AttrClass::Update,
                ),
                attr(
                    "shape_config.ocpus",
                    "shapeConfig.ocpus",
                    json!(1),
                    AttrClass::Update,
                ),
                attr(
                    "shape_config.memory_in_gbs",
                    "shapeConfig.memoryInGBs",
                    json!(16),
                    AttrClass::Update,
                ),
                attr(
                    "source.image",
                    "sourceDetails.imageId",
                    json!("ocid1.image.oc1.iad.img"),
                    AttrClass::Replace,
                ),
                attr(
                    "metadata.ssh_authorized_keys",
                    "metadata.ssh_authorized_keys",
                    json!("ssh-ed25519 AAAA"),
                    AttrClass::Replace,
                ),
                attr(
                    "freeform_tags.team",
                    "freeformTags.team",
                    json!("infra"),
                    AttrClass::Update,
                ),
                DesiredAttr {
                    path: "subnet".into(),
                    lookup: Lookup::Input("subnet_id".into()),
                    value: DesiredValue::Known(json!("ocid1.subnet.oc1.iad.s")),
                    class: AttrClass::Replace,
                    why: None,
                },
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
        });
    }
    Synthetic {
        desired,
        prior,
        live,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::build::{compute, Inputs};

    /// Smoke run of the plan-CPU benchmark at a tiny size.
    #[test]
    fn the_benchmark_inputs_plan_one_update_per_hundred() {
        let s = instances(300);
        let c = compute(&Inputs {
            desired: &s.desired,
            prior: &s.prior,
            live: &s.live,
            refreshed: true,
            destroy: false,
            force_replace: &Default::default(),
            default_region: None,
        })
        .unwrap();
        assert_eq!(c.changes.len(), 3);
        assert_eq!(c.drift.len(), 3);
    }
}
