//! The emulator's resources through time: lifecycles on the scaled clock, images captured,
//! listed, updated, deleted and moved, data across a restart, injected faults, and a launch's
//! primary VNIC.

use serde_json::{json, Value};

use kiln::oci::MutationOptions;

use crate::support::{self, COMPARTMENT};

#[tokio::test]
async fn lifecycles_run_on_the_scaled_clock_and_terminated_instances_stay_listed() {
    let emu = support::start(support::config(0.002)).await;
    let c = support::client(&emu);
    let i = c
        .launch_instance(
            &support::launch_details(&emu, "life"),
            &MutationOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(i.body.lifecycle_state, "PROVISIONING");
    let r = c
        .wait_for_instance(&i.body.id, &["RUNNING"], &support::wait(10))
        .await
        .unwrap();
    let s = c
        .instance_action(
            &i.body.id,
            kiln::oci::models::InstanceAction::Stop,
            None,
            &MutationOptions::if_match(r.etag.as_deref()),
        )
        .await
        .unwrap();
    assert_eq!(s.body.lifecycle_state, "STOPPING");
    c.wait_for_instance(&i.body.id, &["STOPPED"], &support::wait(10))
        .await
        .unwrap();
    c.instance_action(
        &i.body.id,
        kiln::oci::models::InstanceAction::Start,
        None,
        &MutationOptions::default(),
    )
    .await
    .unwrap();
    c.wait_for_instance(&i.body.id, &["RUNNING"], &support::wait(10))
        .await
        .unwrap();
    let details = kiln::oci::models::InstancePowerActionDetails::SoftReset {
        allow_dense_reboot_migration: Some(true),
    };
    c.instance_action(
        &i.body.id,
        kiln::oci::models::InstanceAction::SoftReset,
        Some(&details),
        &MutationOptions::default(),
    )
    .await
    .unwrap();
    c.wait_for_instance(&i.body.id, &["RUNNING"], &support::wait(10))
        .await
        .unwrap();
    let t = c
        .terminate_instance(&i.body.id, Some(true), None, &MutationOptions::default())
        .await
        .unwrap();
    let wr = t.opc_work_request_id.unwrap();
    let done = c
        .wait_for_work_request(&wr, &support::wait(10))
        .await
        .unwrap();
    assert_eq!(done.body.percent_complete, 100.0);
    assert_eq!(done.body.resources[0].identifier, i.body.id);
    let listed = c
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed[0].lifecycle_state, "TERMINATED");
    let wrs = c
        .list_work_requests(COMPARTMENT, Some(&i.body.id))
        .await
        .unwrap();
    assert!(
        wrs.len() >= 4,
        "launch, actions and terminate are work requests: {}",
        wrs.len()
    );
}

#[tokio::test]
async fn images_capture_list_update_delete_and_compartment_moves() {
    let emu = support::start(support::config(0.001)).await;
    let c = support::client(&emu);
    let i = c
        .launch_instance(
            &support::launch_details(&emu, "builder"),
            &MutationOptions::default(),
        )
        .await
        .unwrap()
        .body;
    c.wait_for_instance(&i.id, &["RUNNING"], &support::wait(10))
        .await
        .unwrap();
    let details: kiln::oci::models::CreateImageDetails = serde_json::from_value(
        json!({"compartmentId": COMPARTMENT, "instanceId": i.id, "displayName": "golden"}),
    )
    .unwrap();
    let img = c
        .create_image(&details, &MutationOptions::default())
        .await
        .unwrap();
    assert_eq!(img.body.lifecycle_state, "PROVISIONING");
    assert_eq!(
        c.get_instance(&i.id).await.unwrap().body.lifecycle_state,
        "CREATING_IMAGE",
        "a running source is taken down for the capture"
    );
    let avail = c
        .wait_for_image(&img.body.id, &["AVAILABLE"], &support::wait(10))
        .await
        .unwrap();
    assert_eq!(avail.body.operating_system, "Oracle Linux");
    c.wait_for_instance(&i.id, &["RUNNING"], &support::wait(10))
        .await
        .unwrap();
    // Cooldown: 20 minutes × 0.001 = 1.2 s after the capture.
    let mut no_retry = kiln::oci::ClientOptions::new(emu.url());
    no_retry.retry = kiln::oci::RetryPolicy::none();
    let strict = kiln::oci::Client::new(support::signing_key(), no_retry);
    let e = strict
        .create_image(&details, &MutationOptions::default())
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (Some(409), "IncorrectState"));
    // Platform images first, then custom.
    let all = c
        .list_images(&kiln::oci::compute::ListImages {
            compartment_id: COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.last().unwrap().id, img.body.id);
    assert!(all[0].compartment_id.is_none());
    let ubuntu = c
        .list_images(&kiln::oci::compute::ListImages {
            compartment_id: COMPARTMENT.into(),
            operating_system: Some("Canonical Ubuntu".into()),
            operating_system_version: Some("24.04".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ubuntu.len(), 3, "two x86 builds and one for Arm");
    // Update with If-Match, then move, then delete.
    let upd: kiln::oci::models::UpdateImageDetails =
        serde_json::from_value(json!({"displayName": "golden-2"})).unwrap();
    let e = c
        .update_image(
            &img.body.id,
            &upd,
            &MutationOptions::if_match(img.etag.as_deref()),
        )
        .await
        .unwrap_err();
    assert!(
        e.is_precondition_failed(),
        "PROVISIONING→AVAILABLE changed the etag"
    );
    let u = c
        .update_image(
            &img.body.id,
            &upd,
            &MutationOptions::if_match(avail.etag.as_deref()),
        )
        .await
        .unwrap();
    assert_eq!(u.body.display_name.as_deref(), Some("golden-2"));
    let other = support::OTHER_COMPARTMENT;
    let moved = c
        .change_image_compartment(
            &img.body.id,
            other,
            &MutationOptions::if_match(u.etag.as_deref()),
        )
        .await
        .unwrap();
    c.wait_for_work_request(
        moved.opc_work_request_id.as_deref().unwrap(),
        &support::wait(10),
    )
    .await
    .unwrap();
    assert_eq!(
        c.get_image(&img.body.id)
            .await
            .unwrap()
            .body
            .compartment_id
            .as_deref(),
        Some(other)
    );
    c.change_instance_compartment(&i.id, other, &MutationOptions::default())
        .await
        .unwrap();
    assert_eq!(
        c.get_instance(&i.id).await.unwrap().body.compartment_id,
        other
    );
    let r = c
        .delete_image(
            &img.body.id,
            &MutationOptions::if_match(moved.etag.as_deref()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        c.get_image(&img.body.id)
            .await
            .unwrap()
            .body
            .lifecycle_state,
        "DELETED"
    );
    // Importing from Object Storage.
    support::put_image_file(&emu, &c, "o.qcow2").await;
    let f = emu.fixtures();
    let import: kiln::oci::models::CreateImageDetails = serde_json::from_value(json!({"compartmentId": COMPARTMENT, "imageSourceDetails": {"sourceType": "objectStorageTuple", "namespaceName": f.namespace, "bucketName": f.image_bucket, "objectName": "o.qcow2", "operatingSystem": "Custom Linux"}})).unwrap();
    let im = c
        .create_image(&import, &MutationOptions::default())
        .await
        .unwrap();
    assert_eq!(im.body.lifecycle_state, "IMPORTING");
    c.wait_for_image(&im.body.id, &["AVAILABLE"], &support::wait(10))
        .await
        .unwrap();
    // Network reads.
    let f = emu.fixtures();
    assert_eq!(
        c.get_subnet(&f.private_subnet_id)
            .await
            .unwrap()
            .body
            .prohibit_public_ip_on_vnic,
        Some(true)
    );
    assert_eq!(
        c.list_subnets(COMPARTMENT, Some(&f.vcn_id))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(c.list_vcns(COMPARTMENT).await.unwrap()[0].id, f.vcn_id);
}

#[tokio::test]
async fn data_persists_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("emulator.json");
    let mut cfg = support::config(0.0);
    cfg.data_file = Some(data.clone());
    let emu = support::start(cfg.clone()).await;
    let c = support::client(&emu);
    let opts = MutationOptions {
        if_match: None,
        retry_token: Some("persisted-token".into()),
    };
    let i = c
        .launch_instance(&support::launch_details(&emu, "keep"), &opts)
        .await
        .unwrap();
    emu.shutdown().await;

    let emu = support::start(cfg).await;
    let c = support::client(&emu);
    let got = c.get_instance(&i.body.id).await.unwrap();
    assert_eq!(got.body.display_name.as_deref(), Some("keep"));
    assert_eq!(got.body.lifecycle_state, "RUNNING");
    let again = c
        .launch_instance(&support::launch_details(&emu, "keep"), &opts)
        .await
        .unwrap();
    assert_eq!(again.body.id, i.body.id, "retry tokens survive the restart");
}

#[tokio::test]
async fn faults_are_injected_and_the_client_converges_without_duplicates() {
    let mut cfg = support::config(0.0);
    cfg.fault_429 = 0.3;
    cfg.fault_5xx = 0.05;
    cfg.fault_reset = 0.02;
    cfg.seed = Some(7);
    let emu = support::start(cfg).await;
    let c = support::client(&emu);
    for n in 0..10 {
        let r = c
            .launch_instance(
                &support::launch_details(&emu, &format!("f{n}")),
                &MutationOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let all = c
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.len(),
        10,
        "retries with one token per launch made no duplicates"
    );
    let stats = emu.stats();
    assert!(
        stats["LaunchInstance"] > 10,
        "some launches were faulted and retried: {stats:?}"
    );
}

#[tokio::test]
async fn a_launch_makes_a_primary_vnic_with_addresses_and_a_hostname() {
    let emu = support::start(support::config(0.0)).await;
    let c = support::client(&emu);
    let f = emu.fixtures();
    let launch = |name: &str, vnic: Value| {
        let mut d = support::launch_details(&emu, name);
        d.create_vnic_details = Some(serde_json::from_value(vnic).unwrap());
        let c = c.clone();
        async move { c.launch_instance(&d, &MutationOptions::default()).await }
    };
    let web = launch("Web Server", json!({"subnetId": f.public_subnet_id}))
        .await
        .unwrap()
        .body;
    let web2 = launch("web server", json!({"subnetId": f.public_subnet_id}))
        .await
        .unwrap()
        .body;
    let db = launch(
        "db",
        json!({"subnetId": f.private_subnet_id, "hostnameLabel": "primary-db"}),
    )
    .await
    .unwrap()
    .body;
    let taken = launch(
        "x",
        json!({"subnetId": f.private_subnet_id, "hostnameLabel": "primary-db"}),
    )
    .await
    .unwrap_err();
    assert_eq!((taken.status, taken.code.as_str()), (Some(409), "Conflict"));
    let quiet = launch(
        "quiet",
        json!({"subnetId": f.private_subnet_id, "assignPrivateDnsRecord": false}),
    )
    .await
    .unwrap()
    .body;
    // One list of the compartment finds every primary attachment.
    let all = c.list_vnic_attachments(COMPARTMENT, None).await.unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    let vnic = |instance: String| {
        let a = all
            .iter()
            .find(|a| a.instance_id == instance)
            .unwrap()
            .clone();
        let c = c.clone();
        async move {
            assert_eq!(
                (a.lifecycle_state.as_str(), a.nic_index),
                ("ATTACHED", Some(0))
            );
            c.get_vnic(a.vnic_id.as_deref().unwrap())
                .await
                .unwrap()
                .body
        }
    };
    let v = vnic(web.id.clone()).await;
    assert_eq!(v.is_primary, Some(true));
    assert_eq!(v.hostname_label.as_deref(), Some("web-server"));
    assert!(v.private_ip.as_deref().unwrap().starts_with("10.0.0."));
    assert!(v.public_ip.as_deref().unwrap().starts_with("203.0.113."));
    assert_eq!(v.extra["displayName"], "Web Server");
    assert!(v.extra["macAddress"].is_string());
    assert_eq!(
        vnic(web2.id.clone()).await.hostname_label.as_deref(),
        Some("web-server-2"),
        "unique in the subnet"
    );
    let d = vnic(db.id.clone()).await;
    assert_eq!(d.hostname_label.as_deref(), Some("primary-db"));
    assert_eq!(d.public_ip, None, "a private subnet has no public IPs");
    assert_eq!(vnic(quiet.id.clone()).await.hostname_label, None);
    // A moved instance takes its attachment along; the VNIC stays.
    let other = "ocid1.compartment.oc1..aaaaaaaaothercompartment";
    c.change_instance_compartment(&db.id, other, &MutationOptions::default())
        .await
        .unwrap();
    let moved = c.list_vnic_attachments(other, None).await.unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].instance_id, db.id);
    let v = c
        .get_vnic(moved[0].vnic_id.as_deref().unwrap())
        .await
        .unwrap()
        .body;
    assert_eq!(v.extra["compartmentId"], COMPARTMENT);
    assert_eq!(
        c.list_vnic_attachments(COMPARTMENT, None)
            .await
            .unwrap()
            .len(),
        3
    );
}
