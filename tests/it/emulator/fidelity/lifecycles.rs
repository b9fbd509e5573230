//! Lifecycles as OCI runs them: moves as work requests, a shape change's reboot, page tokens
//! across changes, an import that fails, a volume preserved from a provisioning instance.

use super::*;

use serde_json::json;

use crate::support::{self, emulator, pending, qs, Api, COMPARTMENT, OTHER_COMPARTMENT};

#[tokio::test]
async fn moves_are_202_with_a_work_request_and_the_instance_is_moving_until_it_succeeds() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let i = api.launch("mover", json!({})).await;
    let id = i["id"].as_str().unwrap();
    support::fast_forward(&emu);
    let moved = api
        .post(
            &format!("/instances/{id}/actions/changeCompartment"),
            &json!({"compartmentId": OTHER_COMPARTMENT}),
        )
        .await;
    assert_eq!(moved.status, 202, "{moved:?}");
    let wr = moved.header("opc-work-request-id").unwrap().to_string();
    let got = api.ok(&format!("/instances/{id}")).await;
    assert_eq!(
        (
            got["lifecycleState"].as_str(),
            got["compartmentId"].as_str()
        ),
        (Some("MOVING"), Some(OTHER_COMPARTMENT))
    );
    assert!(pending(&api.ok(&format!("/workRequests/{wr}")).await));
    let stop = api
        .call("POST", &format!("/instances/{id}?action=STOP"), None, &[])
        .await;
    assert_eq!(stop.status, 409, "no power action while MOVING: {stop:?}");
    support::fast_forward(&emu);
    assert_eq!(
        api.ok(&format!("/workRequests/{wr}")).await["status"],
        "SUCCEEDED"
    );
    assert_eq!(
        api.ok(&format!("/instances/{id}")).await["lifecycleState"],
        "RUNNING"
    );
    // Its attachments live with it; an unknown target is 404.
    let atts = api
        .ok(&format!(
            "/vnicAttachments?{}",
            qs(&[("compartmentId", OTHER_COMPARTMENT), ("instanceId", id)])
        ))
        .await;
    assert_eq!(atts.as_array().unwrap().len(), 1);
    let a = api
        .post(
            &format!("/instances/{id}/actions/changeCompartment"),
            &json!({"compartmentId": "ocid1.compartment.oc1..aaaaaaaanosuchcompartment"}),
        )
        .await;
    assert_eq!(a.status, 404, "{a:?}");

    // Images move the same way (an image has no MOVING state).
    let url = support::put_image_file(&emu, &support::client(&emu), "move.qcow2").await;
    let img = api.post("/images", &json!({"compartmentId": COMPARTMENT, "imageSourceDetails": {"sourceType": "objectStorageUri", "sourceUri": url}})).await;
    let img_id = img.body["id"].as_str().unwrap();
    support::fast_forward(&emu);
    let m = api
        .post(
            &format!("/images/{img_id}/actions/changeCompartment"),
            &json!({"compartmentId": OTHER_COMPARTMENT}),
        )
        .await;
    assert_eq!(m.status, 202, "{m:?}");
    let wr = m.header("opc-work-request-id").unwrap().to_string();
    assert!(pending(&api.ok(&format!("/workRequests/{wr}")).await));
    support::fast_forward(&emu);
    assert_eq!(
        api.ok(&format!("/workRequests/{wr}")).await["status"],
        "SUCCEEDED"
    );
    assert_eq!(
        api.ok(&format!("/images/{img_id}")).await["compartmentId"],
        OTHER_COMPARTMENT
    );
}

#[tokio::test]
async fn a_shape_change_reboots_a_running_instance_and_update_takes_only_input_fields() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let i = api.launch("resize", json!({})).await;
    let id = i["id"].as_str().unwrap().to_string();
    support::fast_forward(&emu);
    let path = format!("/instances/{id}");

    // Server-set fields of the shape config are refused, by name.
    let live = api.ok(&path).await;
    let mut sent_back = live["shapeConfig"].clone();
    sent_back["ocpus"] = json!(2);
    let a = api.put(&path, &json!({"shapeConfig": sent_back})).await;
    assert_eq!(a.status, 400, "{a:?}");
    assert!(
        a.body["message"].as_str().unwrap().contains("shapeConfig."),
        "{a:?}"
    );
    let a = api
        .put(
            &path,
            &json!({"shapeConfig": {"ocpus": 2}, "updateOperationConstraint": "AVOID_DOWNTIME"}),
        )
        .await;
    assert_eq!(a.status, 400, "a reboot is downtime: {a:?}");
    let a = api
        .put(&path, &json!({"platformConfig": {"type": "AMD_VM"}}))
        .await;
    assert_eq!(a.status, 400, "{a:?}");

    // A resize reboots: STOPPING, then STARTING, then RUNNING with the new size.
    let u = api.put(&path, &json!({"shapeConfig": {"ocpus": 2}})).await;
    assert_eq!(u.status, 200, "{u:?}");
    assert_eq!(u.body["lifecycleState"], "STOPPING");
    assert_eq!(
        (
            u.body["shapeConfig"]["ocpus"].as_f64(),
            u.body["shapeConfig"]["memoryInGBs"].as_f64()
        ),
        (Some(2.0), Some(16.0))
    );
    let wr = u.header("opc-work-request-id").unwrap().to_string();
    assert!(pending(&api.ok(&format!("/workRequests/{wr}")).await));
    support::fast_forward(&emu);
    assert_eq!(api.ok(&path).await["lifecycleState"], "RUNNING");
    assert_eq!(
        api.ok(&format!("/workRequests/{wr}")).await["status"],
        "SUCCEEDED"
    );

    // A rename does not reboot; other updatable fields are kept.
    let u = api.put(&path, &json!({"displayName": "renamed", "agentConfig": {"isMonitoringDisabled": true}, "availabilityConfig": {"recoveryAction": "STOP_INSTANCE"}, "securityAttributes": {"oracle-zpr": {"db": {"value": "x"}}}})).await;
    assert_eq!(
        (u.status, u.body["lifecycleState"].as_str()),
        (200, Some("RUNNING")),
        "{u:?}"
    );
    let got = api.ok(&path).await;
    assert_eq!(got["agentConfig"]["isMonitoringDisabled"], true);
    assert_eq!(got["availabilityConfig"]["recoveryAction"], "STOP_INSTANCE");
    assert_eq!(got["securityAttributes"]["oracle-zpr"]["db"]["value"], "x");

    // Work request logs say what happened.
    let logs = api.ok(&format!("/workRequests/{wr}/logs")).await;
    let messages: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(messages.len(), 3, "{logs}");
    assert!(
        messages[2].contains("succeeded") && logs[0]["timestamp"].is_string(),
        "{logs}"
    );
}

#[tokio::test]
async fn page_tokens_survive_inserts_and_deletes_between_pages() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let mut before = std::collections::BTreeSet::new();
    for n in 0..7 {
        before.insert(
            api.launch(&format!("p{n}"), json!({})).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Walk newest first, two at a time, launching two more after every page.
    let mut seen = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut q = vec![("compartmentId", COMPARTMENT), ("limit", "2")];
        if let Some(p) = &page {
            q.push(("page", p));
        }
        let a = api.get(&format!("/instances?{}", qs(&q))).await;
        assert_eq!(a.status, 200, "{a:?}");
        seen.extend(
            a.body
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string()),
        );
        page = a.header("opc-next-page").map(str::to_string);
        if page.is_none() {
            break;
        }
        for n in 0..2 {
            api.launch(&format!("new{n}"), json!({})).await;
        }
    }
    let unique: std::collections::BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no item twice: {seen:?}");
    assert!(
        before.is_subset(&unique),
        "every instance that existed throughout is listed"
    );

    // Deletes: images deleted between pages (already seen) leave the list; none is skipped.
    let client = support::client(&emu);
    let url = support::put_image_file(&emu, &client, "page.qcow2").await;
    let mut images = Vec::new();
    for n in 0..6 {
        let a = api.post("/images", &json!({"compartmentId": COMPARTMENT, "displayName": format!("img{n}"), "imageSourceDetails": {"sourceType": "objectStorageUri", "sourceUri": url}})).await;
        images.push(a.body["id"].as_str().unwrap().to_string());
    }
    support::fast_forward(&emu);
    let mut seen = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut q = vec![
            ("compartmentId", COMPARTMENT),
            ("limit", "3"),
            ("sortBy", "DISPLAYNAME"),
        ];
        if let Some(p) = &page {
            q.push(("page", p));
        }
        let a = api.get(&format!("/images?{}", qs(&q))).await;
        let ids: Vec<String> = a
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        // Delete what this page showed of ours: an offset would now skip as many.
        for id in ids.iter().filter(|i| images.contains(i)) {
            assert_eq!(api.delete(&format!("/images/{id}")).await.status, 204);
        }
        seen.extend(ids);
        page = a.header("opc-next-page").map(str::to_string);
        if page.is_none() {
            break;
        }
    }
    for id in &images {
        assert_eq!(
            seen.iter().filter(|s| *s == id).count(),
            1,
            "image {id} listed once: {seen:?}"
        );
    }
    let bad = api
        .get(&format!(
            "/instances?{}",
            qs(&[("compartmentId", COMPARTMENT), ("page", "kilnpage-3")])
        ))
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn an_import_from_a_missing_object_fails_instead_of_becoming_available() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let f = emu.fixtures();
    let a = api.post("/images", &json!({"compartmentId": COMPARTMENT, "imageSourceDetails": {"sourceType": "objectStorageTuple", "namespaceName": f.namespace, "bucketName": f.image_bucket, "objectName": "missing.qcow2"}})).await;
    assert_eq!(
        (a.status, a.body["lifecycleState"].as_str()),
        (200, Some("IMPORTING")),
        "{a:?}"
    );
    let wr = a.header("opc-work-request-id").unwrap().to_string();
    let id = a.body["id"].as_str().unwrap().to_string();
    support::fast_forward(&emu);
    assert_eq!(
        api.ok(&format!("/images/{id}")).await["lifecycleState"],
        "DELETED"
    );
    assert_eq!(
        api.ok(&format!("/workRequests/{wr}")).await["status"],
        "FAILED"
    );
    let errors = api.ok(&format!("/workRequests/{wr}/errors")).await;
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("missing.qcow2"),
        "{errors}"
    );
    let logs = api.ok(&format!("/workRequests/{wr}/logs")).await;
    assert!(logs.as_array().unwrap().last().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("failed"));

    support::put_image_file(&emu, &support::client(&emu), "present.qcow2").await;
    let a = api.post("/images", &json!({"compartmentId": COMPARTMENT, "imageSourceDetails": {"sourceType": "objectStorageTuple", "namespaceName": f.namespace, "bucketName": f.image_bucket, "objectName": "present.qcow2"}})).await;
    let id = a.body["id"].as_str().unwrap().to_string();
    support::fast_forward(&emu);
    let img = api.ok(&format!("/images/{id}")).await;
    assert_eq!(img["lifecycleState"], "AVAILABLE");
    assert!(
        missing(&img, IMAGE_FIELDS).is_empty(),
        "missing {:?}",
        missing(&img, IMAGE_FIELDS)
    );
}

/// Found by Oracle's SDK: an instance terminated while still PROVISIONING, keeping its boot
/// volume, left the volume PROVISIONING after the instance was gone, so it could not boot again.
#[tokio::test]
async fn a_volume_preserved_from_a_provisioning_instance_is_available_when_it_is_terminated() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let i = api.launch("early", json!({})).await;
    let id = i["id"].as_str().unwrap().to_string();
    assert_eq!(
        api.delete(&format!("/instances/{id}?preserveBootVolume=true"))
            .await
            .status,
        204
    );
    let w = emu.snapshot();
    let gone = w.instances[&id].steps.last().unwrap().at;
    let volume = w.boot_volumes.values().next().unwrap();
    assert!(
        volume.steps.iter().all(|s| s.at <= gone),
        "{:?} vs {gone}",
        volume.steps
    );
}
