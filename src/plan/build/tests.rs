//! The builder's unit tests: each decision of [`super::compute`] on small hand-made inputs.

use super::*;
use crate::plan::desired::{DesiredAttr, DesiredValue, Lookup, Power};
use crate::plan::AttrClass;
use serde_json::json;

fn instance(name: &str, power: Power, image: Option<&str>) -> DesiredResource {
    let mut attrs = vec![
        DesiredAttr {
            path: "display_name".into(),
            lookup: Lookup::live("displayName"),
            value: DesiredValue::Known(json!(name)),
            class: AttrClass::Update,
            why: None,
        },
        DesiredAttr {
            path: "availability_domain".into(),
            lookup: Lookup::live("availabilityDomain"),
            value: DesiredValue::Known(json!("AD-1")),
            class: AttrClass::Replace,
            why: Some("an instance cannot move to another availability domain"),
        },
    ];
    if let Some(img) = image {
        attrs.push(DesiredAttr {
            path: "source.image".into(),
            lookup: Lookup::live("sourceDetails.imageId"),
            value: DesiredValue::IdOf(img.into()),
            class: AttrClass::Replace,
            why: Some("the boot image"),
        });
    }
    DesiredResource {
        address: format!("instance.{name}"),
        kind: Kind::Instance,
        region: None,
        display_name: name.into(),
        compartment: "c".into(),
        attrs,
        power: Some(power),
        depends_on: image.into_iter().map(str::to_string).collect(),
        captured_from: None,
        restart_source: true,
        ignore_changes: vec![],
        prevent_destroy: false,
        create_before_destroy: false,
        preserve_boot_volume: false,
        create_body: Default::default(),
    }
}

fn image(name: &str, from: &str) -> DesiredResource {
    DesiredResource {
        address: format!("image.{name}"),
        kind: Kind::Image,
        region: None,
        display_name: name.into(),
        compartment: "c".into(),
        attrs: vec![DesiredAttr {
            path: "from_instance".into(),
            lookup: Lookup::Input("source_instance".into()),
            value: DesiredValue::IdOf(from.into()),
            class: AttrClass::Replace,
            why: Some("an image is captured once"),
        }],
        power: None,
        depends_on: vec![from.into()],
        captured_from: Some(from.into()),
        restart_source: true,
        ignore_changes: vec![],
        prevent_destroy: false,
        create_before_destroy: false,
        preserve_boot_volume: false,
        create_body: Default::default(),
    }
}

fn run(
    desired: &[DesiredResource],
    prior: &BTreeMap<String, Prior>,
    live: &HashMap<String, LiveRead>,
) -> Computed {
    compute(&Inputs {
        desired,
        prior,
        live,
        refreshed: true,
        destroy: false,
        force_replace: &BTreeSet::new(),
        default_region: None,
    })
    .unwrap()
}

fn dag(c: &Computed) -> String {
    let plan = crate::plan::Plan {
        format_version: "1".into(),
        env: "t".into(),
        endpoint: "e".into(),
        regions: vec![],
        state_lineage: None,
        state_serial: 0,
        changes: c.changes.clone(),
        drift: c.drift.clone(),
        forget: vec![],
        forget_deposed: vec![],
        retain: vec![],
        envs: vec![],
        moved: vec![],
        warnings: vec![],
        summary: Default::default(),
        refresh_only: false,
        refresh: vec![],
        read_network: vec![],
        observed: vec![],
        rollouts: vec![],
        locked_by: None,
        partial: None,
        lookups: Vec::new(),
    };
    plan.graph().to_string()
}

fn prior(id: &str, attrs: Value) -> Prior {
    Prior {
        kind: None,
        id: Some(id.into()),
        attributes: attrs.clone().into(),
        inputs: Default::default(),
        pending_create: false,
        pending_region: None,
        pending_stale: false,
        deposed: Vec::new(),
        retained: Vec::new(),
    }
}

#[test]
fn golden_image_from_empty_state_orders_stop_capture_start_then_fleet() {
    let desired = vec![
        instance("builder", Power::Running, None),
        image("golden", "instance.builder"),
        instance("web1", Power::Running, Some("image.golden")),
        instance("web2", Power::Running, Some("image.golden")),
    ];
    let c = run(&desired, &BTreeMap::new(), &HashMap::new());
    assert_eq!(
        dag(&c),
        "create image.golden <- create instance.builder, stop instance.builder\n\
         create instance.builder\n\
         create instance.web1 <- create image.golden\n\
         create instance.web2 <- create image.golden\n\
         start instance.builder <- create image.golden, stop instance.builder\n\
         stop instance.builder <- create instance.builder\n"
    );
}

#[test]
fn capture_from_a_running_instance_stops_and_restarts_it() {
    let desired = vec![
        instance("builder", Power::Running, None),
        image("golden", "instance.builder"),
    ];
    let mut p = BTreeMap::new();
    let attrs = json!({"displayName": "builder", "availabilityDomain": "AD-1", "lifecycleState": "RUNNING"});
    p.insert("instance.builder".to_string(), prior("i1", attrs.clone()));
    let mut live = HashMap::new();
    live.insert(
        "i1".to_string(),
        LiveRead::from_value(&attrs, Some("e1".into())),
    );
    let c = run(&desired, &p, &live);
    assert_eq!(
        dag(&c),
        "create image.golden <- stop instance.builder\n\
         start instance.builder <- create image.golden, stop instance.builder\n\
         stop instance.builder\n"
    );
    let stop = c.changes.iter().find(|x| x.action == Action::Stop).unwrap();
    assert_eq!(stop.etag.as_deref(), Some("e1"));
    assert!(c.drift.is_empty());
}

#[test]
fn matching_live_state_plans_nothing_and_oci_added_fields_are_ignored() {
    let desired = vec![instance("web", Power::Running, None)];
    let mut p = BTreeMap::new();
    let attrs =
        json!({"displayName": "web", "availabilityDomain": "AD-1", "lifecycleState": "RUNNING"});
    p.insert("instance.web".to_string(), prior("i1", attrs));
    let mut live = HashMap::new();
    let body = json!({"displayName": "web", "availabilityDomain": "AD-1", "lifecycleState": "RUNNING",
        "definedTags": {"Oracle-Tags": {"CreatedBy": "someone"}}});
    live.insert("i1".to_string(), LiveRead::from_value(&body, None));
    let c = run(&desired, &p, &live);
    assert!(c.changes.is_empty() && c.drift.is_empty(), "{c:?}");
}

#[test]
fn out_of_band_rename_is_drift_and_an_update_replacement_is_reasoned() {
    let desired = vec![instance("web", Power::Stopped, None)];
    let mut p = BTreeMap::new();
    let attrs =
        json!({"displayName": "web", "availabilityDomain": "AD-1", "lifecycleState": "RUNNING"});
    p.insert("instance.web".to_string(), prior("i1", attrs));
    let mut live = HashMap::new();
    let body = json!({"displayName": "renamed", "availabilityDomain": "AD-1", "lifecycleState": "RUNNING"});
    live.insert("i1".to_string(), LiveRead::from_value(&body, None));
    let c = run(&desired, &p, &live);
    assert_eq!(c.drift.len(), 1);
    assert_eq!(
        dag(&c),
        "stop instance.web <- update instance.web\nupdate instance.web\n"
    );

    let mut live2 = live.clone();
    let mut moved = live2["i1"].body.parse();
    moved["availabilityDomain"] = json!("AD-2");
    live2.insert("i1".to_string(), LiveRead::from_value(&moved, None));
    let c = run(&desired, &p, &live2);
    assert_eq!(c.changes[0].action, Action::Replace);
    assert!(c.changes[0]
        .reason
        .contains("`availability_domain` cannot change in place"));
}

#[test]
fn removed_resources_are_deleted_after_their_users_and_gone_ones_are_recreated() {
    let desired = vec![instance("web", Power::Running, Some("image.new"))];
    let mut p = BTreeMap::new();
    p.insert(
        "image.old".to_string(),
        prior("img1", json!({"lifecycleState": "AVAILABLE"})),
    );
    p.insert(
        "instance.web".to_string(),
        prior("i1", json!({"displayName": "web", "availabilityDomain": "AD-1", "sourceDetails": {"imageId": "img1"}})),
    );
    let mut live = HashMap::new();
    live.insert(
        "img1".to_string(),
        LiveRead::from_value(&json!({"lifecycleState": "AVAILABLE"}), None),
    );
    // instance.web is gone (404): recreated, drift says so; image.old deleted after it.
    let c = run(&desired, &p, &live);
    assert_eq!(
        dag(&c),
        "create instance.web\ndelete image.old <- create instance.web\n"
    );
    assert!(c.drift[0].gone.as_deref().unwrap().contains("not found"));
}

#[test]
fn a_power_state_changed_outside_kiln_is_drift_but_one_recorded_mid_transition_is_not() {
    let desired = vec![instance("web", Power::Running, None)];
    let drift_of = |recorded: &str, live: &str| {
        let mut p = BTreeMap::new();
        let attrs = |s: &str| json!({"displayName": "web", "availabilityDomain": "AD-1", "lifecycleState": s});
        p.insert("instance.web".to_string(), prior("i1", attrs(recorded)));
        let mut l = HashMap::new();
        l.insert("i1".to_string(), LiveRead::from_value(&attrs(live), None));
        run(&desired, &p, &l)
            .drift
            .iter()
            .flat_map(|d| d.attributes.iter().map(|a| a.path.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(drift_of("RUNNING", "STOPPED"), ["state"]);
    assert_eq!(drift_of("RUNNING", "STOPPING"), ["state"]);
    assert_eq!(drift_of("STOPPED", "STARTING"), ["state"]);
    assert!(drift_of("RUNNING", "STARTING").is_empty());
    assert!(drift_of("RUNNING", "CREATING_IMAGE").is_empty());
    // Recorded mid-transition (a shape update's answer): where it ended is not drift.
    assert!(drift_of("STOPPING", "RUNNING").is_empty());
}

#[test]
fn prevent_destroy_is_the_manifests() {
    // The state still records `prevent_destroy` from when it was created; the manifest is
    // what counts: removing the resource (and its flag) from the manifest lifts it.
    let mut p = BTreeMap::new();
    let mut pr = prior(
        "i1",
        json!({"displayName": "db", "availabilityDomain": "AD-1"}),
    );
    std::sync::Arc::make_mut(&mut pr.inputs).insert("prevent_destroy".into(), json!(true));
    p.insert("instance.db".to_string(), pr);
    let mut live = HashMap::new();
    live.insert(
        "i1".to_string(),
        LiveRead::from_value(&json!({"displayName": "db", "availabilityDomain": "AD-1", "lifecycleState": "RUNNING"}), None),
    );
    let run = |desired: &[DesiredResource], destroy| {
        compute(&Inputs {
            desired,
            prior: &p,
            live: &live,
            refreshed: true,
            destroy,
            force_replace: &BTreeSet::new(),
            default_region: None,
        })
    };
    let removed = run(&[], false).unwrap();
    assert_eq!(removed.changes[0].action, Action::Delete);
    let mut db = instance("db", Power::Running, None);
    db.prevent_destroy = true;
    let err = run(std::slice::from_ref(&db), true).unwrap_err();
    assert!(err.to_string().contains("prevent_destroy"));
    db.prevent_destroy = false;
    assert_eq!(run(&[db], true).unwrap().changes[0].action, Action::Delete);
}
