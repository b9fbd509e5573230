//! What a launch keeps: every field it accepts, the VNIC details on the VNIC, boot volumes that
//! terminate preserves and a relaunch boots, shapes with their ranges and architectures.

use super::*;

use serde_json::{json, Value};

use crate::support::{self, emulator, qs, Api, COMPARTMENT};

#[tokio::test]
async fn launch_keeps_every_field_it_accepts_and_the_vnic_details_land_on_the_vnic() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let f = emu.fixtures();
    let agent = json!({"isMonitoringDisabled": true, "isManagementDisabled": false, "areAllPluginsDisabled": false, "pluginsConfig": [{"name": "Bastion", "desiredState": "ENABLED"}]});
    let launched = api
        .launch(
            "full",
            json!({
                "agentConfig": agent,
                "instanceOptions": {"areLegacyImdsEndpointsDisabled": true},
                "availabilityConfig": {"recoveryAction": "STOP_INSTANCE", "isLiveMigrationPreferred": true},
                "launchOptions": {"networkType": "VFIO", "firmware": "BIOS"},
                "platformConfig": {"type": "AMD_VM", "isSecureBootEnabled": true, "isMeasuredBootEnabled": true},
                "securityAttributes": {"oracle-zpr": {"app": {"value": "web", "mode": "enforce"}}},
                "ipxeScript": "#!ipxe\nchain http://boot/x",
                "extendedMetadata": {"nested": {"a": 1}},
                "definedTags": {"Operations": {"CostCenter": "42"}},
                "isPvEncryptionInTransitEnabled": true,
                "faultDomain": "FAULT-DOMAIN-2",
                "createVnicDetails": {
                    "subnetId": f.public_subnet_id, "privateIp": "10.0.0.77", "hostnameLabel": "full-web",
                    "displayName": "full-nic", "skipSourceDestCheck": true, "nsgIds": [f.nsg_id],
                    "assignPublicIp": false, "freeformTags": {"nic": "yes"}
                }
            }),
        )
        .await;
    let id = launched["id"].as_str().unwrap();
    let got = api.ok(&format!("/instances/{id}")).await;
    assert!(
        missing(&got, INSTANCE_FIELDS).is_empty(),
        "missing {:?}",
        missing(&got, INSTANCE_FIELDS)
    );
    assert_eq!(got["agentConfig"], agent);
    assert_eq!(
        got["instanceOptions"]["areLegacyImdsEndpointsDisabled"],
        true
    );
    assert_eq!(got["availabilityConfig"]["recoveryAction"], "STOP_INSTANCE");
    assert_eq!(got["availabilityConfig"]["isLiveMigrationPreferred"], true);
    assert_eq!(got["launchOptions"]["networkType"], "VFIO");
    assert_eq!(got["launchOptions"]["firmware"], "BIOS");
    assert_eq!(got["launchOptions"]["isPvEncryptionInTransitEnabled"], true);
    assert_eq!(got["platformConfig"]["type"], "AMD_VM");
    assert_eq!(got["platformConfig"]["isSecureBootEnabled"], true);
    assert_eq!(
        got["securityAttributes"]["oracle-zpr"]["app"]["value"],
        "web"
    );
    assert_eq!(got["securityAttributesState"], "STABLE");
    assert_eq!(got["ipxeScript"], "#!ipxe\nchain http://boot/x");
    assert_eq!(got["extendedMetadata"]["nested"]["a"], 1);
    assert_eq!(got["definedTags"]["Operations"]["CostCenter"], "42");
    assert_eq!(got["faultDomain"], "FAULT-DOMAIN-2");
    assert_eq!(got["region"], "iad", "OCI names iad and phx by their codes");

    let atts = api
        .ok(&format!(
            "/vnicAttachments?{}",
            qs(&[("compartmentId", COMPARTMENT), ("instanceId", id)])
        ))
        .await;
    let vnic_id = atts[0]["vnicId"].as_str().unwrap();
    let vnic = api.ok(&format!("/vnics/{vnic_id}")).await;
    assert!(
        missing(&vnic, VNIC_FIELDS).is_empty(),
        "missing {:?}",
        missing(&vnic, VNIC_FIELDS)
    );
    assert_eq!(vnic["privateIp"], "10.0.0.77");
    assert_eq!(vnic["hostnameLabel"], "full-web");
    assert_eq!(vnic["displayName"], "full-nic");
    assert_eq!(vnic["skipSourceDestCheck"], true);
    assert_eq!(vnic["nsgIds"], json!([f.nsg_id]));
    assert_eq!(vnic["publicIp"], Value::Null);
    assert_eq!(vnic["freeformTags"]["nic"], "yes");

    // Taken addresses and labels are refused; so is what the emulator does not model, by name.
    let again = |patch: Value| api.launch_body("again", patch);
    let vnic_with = |extra: Value| {
        let mut v = json!({"subnetId": f.public_subnet_id});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        json!({ "createVnicDetails": v })
    };
    for (patch, status, needle) in [
        (
            vnic_with(json!({"privateIp": "10.0.0.77"})),
            409,
            "10.0.0.77",
        ),
        (
            vnic_with(json!({"hostnameLabel": "full-web"})),
            409,
            "full-web",
        ),
        (
            vnic_with(json!({"privateIp": "192.168.1.1"})),
            400,
            "privateIp",
        ),
        (
            vnic_with(json!({"vlanId": "ocid1.vlan.oc1.iad.x"})),
            400,
            "createVnicDetails.vlanId",
        ),
        (
            vnic_with(json!({"nsgIds": ["ocid1.networksecuritygroup.oc1.iad.nope"]})),
            400,
            "nope",
        ),
        (
            json!({"launchVolumeAttachments": []}),
            400,
            "launchVolumeAttachments",
        ),
        (
            json!({"dedicatedVmHostId": "ocid1.dedicatedvmhost.oc1.iad.x"}),
            400,
            "dedicatedVmHostId",
        ),
        (json!({"noSuchField": 1}), 400, "noSuchField"),
        (
            json!({"agentConfig": {"isMonitoringDisabled": "yes"}}),
            400,
            "agentConfig.isMonitoringDisabled",
        ),
        (
            json!({"availabilityConfig": {"recoveryAction": "REBOOT"}}),
            400,
            "availabilityConfig.recoveryAction",
        ),
        (
            json!({"platformConfig": {"type": "INTEL_VM"}}),
            400,
            "platformConfig.type",
        ),
        (
            json!({"shapeConfig": {"ocpus": 1, "nvmes": 1}}),
            400,
            "shapeConfig.nvmes",
        ),
        (
            json!({"sourceDetails": {"sourceType": "image", "imageId": f.platform_images[0].id, "kmsKeyId": "ocid1.key.oc1.iad.x"}}),
            400,
            "sourceDetails.kmsKeyId",
        ),
    ] {
        let a = api.post("/instances", &again(patch.clone())).await;
        assert_eq!(a.status, status, "{patch}: {a:?}");
        assert!(
            a.body["message"].as_str().unwrap().contains(needle),
            "{patch}: {a:?}"
        );
    }
}

#[tokio::test]
async fn launch_makes_a_boot_volume_that_terminate_can_preserve_and_a_relaunch_can_boot() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let f = emu.fixtures();
    let ad = f.availability_domains[0].as_str();
    let first = api
        .launch("bv", json!({"sourceDetails": {"sourceType": "image", "imageId": f.platform_images[0].id, "bootVolumeSizeInGBs": 60}}))
        .await;
    let id = first["id"].as_str().unwrap();
    assert_eq!(first["sourceDetails"]["bootVolumeSizeInGBs"], 60);
    support::fast_forward(&emu);
    let by = |k: &str, v: &str| {
        qs(&[
            ("availabilityDomain", ad),
            ("compartmentId", COMPARTMENT),
            (k, v),
        ])
    };
    let atts = api
        .ok(&format!("/bootVolumeAttachments?{}", by("instanceId", id)))
        .await;
    assert_eq!(atts.as_array().unwrap().len(), 1, "{atts}");
    assert!(missing(&atts[0], ATTACHMENT_FIELDS).is_empty());
    assert_eq!(atts[0]["lifecycleState"], "ATTACHED");
    let bv = atts[0]["bootVolumeId"].as_str().unwrap().to_string();
    let vol = api.ok(&format!("/bootVolumes/{bv}")).await;
    assert!(
        missing(&vol, BOOT_VOLUME_FIELDS).is_empty(),
        "missing {:?}",
        missing(&vol, BOOT_VOLUME_FIELDS)
    );
    assert_eq!(
        (vol["lifecycleState"].as_str(), vol["sizeInGBs"].as_u64()),
        (Some("AVAILABLE"), Some(60))
    );
    assert_eq!(vol["imageId"], json!(f.platform_images[0].id));
    let listed = api
        .ok(&format!(
            "/bootVolumes?{}",
            qs(&[("availabilityDomain", ad), ("compartmentId", COMPARTMENT)])
        ))
        .await;
    assert_eq!(listed[0]["id"], json!(bv));
    let by_volume = api
        .ok(&format!(
            "/bootVolumeAttachments?{}",
            by("bootVolumeId", &bv)
        ))
        .await;
    assert_eq!(by_volume[0]["instanceId"], json!(id));

    // Launching from a volume that is attached is a conflict.
    let from_volume = json!({"sourceDetails": {"sourceType": "bootVolume", "bootVolumeId": bv}, "shapeConfig": {"ocpus": 1}});
    let a = api
        .post("/instances", &api.launch_body("again", from_volume.clone()))
        .await;
    assert_eq!(a.status, 409, "{a:?}");

    // Terminate, keeping the volume: detached and AVAILABLE.
    let t = api
        .delete(&format!("/instances/{id}?preserveBootVolume=true"))
        .await;
    assert_eq!(t.status, 204, "{t:?}");
    support::fast_forward(&emu);
    let vol = api.ok(&format!("/bootVolumes/{bv}")).await;
    assert_eq!(vol["lifecycleState"], "AVAILABLE");
    let atts = api
        .ok(&format!(
            "/bootVolumeAttachments?{}",
            by("bootVolumeId", &bv)
        ))
        .await;
    assert_eq!(atts[0]["lifecycleState"], "DETACHED");

    // Another availability domain cannot boot it; its own can.
    let mut elsewhere = api.launch_body("elsewhere", from_volume.clone());
    elsewhere["availabilityDomain"] = json!(f.availability_domains[1]);
    let a = api.post("/instances", &elsewhere).await;
    assert_eq!(a.status, 400, "{a:?}");
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .contains("availability domain"),
        "{a:?}"
    );
    let second = api.launch("relaunched", from_volume).await;
    assert_eq!(
        second["sourceDetails"],
        json!({"sourceType": "bootVolume", "bootVolumeId": bv})
    );
    assert_eq!(second["imageId"], json!(f.platform_images[0].id));
    support::fast_forward(&emu);
    let sid = second["id"].as_str().unwrap();
    assert_eq!(
        api.ok(&format!("/instances/{sid}")).await["lifecycleState"],
        "RUNNING"
    );
    let atts = api
        .ok(&format!("/bootVolumeAttachments?{}", by("instanceId", sid)))
        .await;
    assert_eq!(
        (
            atts[0]["bootVolumeId"].as_str(),
            atts[0]["lifecycleState"].as_str()
        ),
        (Some(bv.as_str()), Some("ATTACHED"))
    );

    // Terminating without preserving deletes it.
    assert_eq!(api.delete(&format!("/instances/{sid}")).await.status, 204);
    support::fast_forward(&emu);
    assert_eq!(
        api.ok(&format!("/bootVolumes/{bv}")).await["lifecycleState"],
        "TERMINATED"
    );
}

#[tokio::test]
async fn shapes_are_listed_with_their_ranges_and_an_image_boots_only_on_its_architecture() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let f = emu.fixtures();
    let shapes = api
        .ok(&format!(
            "/shapes?{}",
            qs(&[("compartmentId", COMPARTMENT)])
        ))
        .await;
    let a1 = shapes
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shape"] == "VM.Standard.A1.Flex")
        .expect("A1 is listed")
        .clone();
    assert!(
        missing(&a1, SHAPE_FIELDS).is_empty(),
        "missing {:?}",
        missing(&a1, SHAPE_FIELDS)
    );
    assert_eq!(a1["isFlexible"], true);
    assert_eq!(a1["ocpuOptions"]["max"], 80.0);
    assert_eq!(a1["memoryOptions"]["defaultPerOcpuInGBs"], 6.0);
    assert!(a1["processorDescription"]
        .as_str()
        .unwrap()
        .contains("Ampere"));
    let micro = shapes
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shape"] == "VM.Standard.E2.1.Micro")
        .unwrap();
    assert_eq!(
        (micro["isFlexible"].as_bool(), &micro["ocpuOptions"]),
        (Some(false), &Value::Null)
    );

    let arm = f
        .platform_images
        .iter()
        .find(|i| i.arch == "aarch64")
        .unwrap();
    let x86 = &f.platform_images[0];
    let for_arm = api
        .ok(&format!(
            "/shapes?{}",
            qs(&[("compartmentId", COMPARTMENT), ("imageId", &arm.id)])
        ))
        .await;
    let names: Vec<&str> = for_arm
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["shape"].as_str())
        .collect();
    assert_eq!(names, ["VM.Standard.A1.Flex"]);

    // ListImages with `shape`: only images that shape can boot.
    let images = |shape: &str| {
        qs(&[
            ("compartmentId", COMPARTMENT),
            ("operatingSystem", "Oracle Linux"),
            ("operatingSystemVersion", "9"),
            ("shape", shape),
        ])
    };
    let on_a1 = api
        .ok(&format!("/images?{}", images("VM.Standard.A1.Flex")))
        .await;
    assert_eq!(on_a1.as_array().unwrap().len(), 1);
    assert_eq!(on_a1[0]["id"], json!(arm.id));
    let on_e4 = api
        .ok(&format!("/images?{}", images("VM.Standard.E4.Flex")))
        .await;
    assert!(
        on_e4
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != json!(arm.id))
            && !on_e4.as_array().unwrap().is_empty()
    );
    assert_eq!(
        api.get(&format!("/images?{}", images("VM.Nope")))
            .await
            .status,
        400
    );

    // An x86 image on A1 is refused; the Arm one boots, with the shape's defaults.
    let a = api.post("/instances", &api.launch_body("x", json!({"shape": "VM.Standard.A1.Flex", "shapeConfig": null, "sourceDetails": {"sourceType": "image", "imageId": x86.id}}))).await;
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.body["message"]
        .as_str()
        .unwrap()
        .contains("VM.Standard.A1.Flex"));
    let arm_vm = api.launch("arm", json!({"shape": "VM.Standard.A1.Flex", "shapeConfig": null, "sourceDetails": {"sourceType": "image", "imageId": arm.id}})).await;
    assert_eq!(
        (
            arm_vm["shapeConfig"]["ocpus"].as_f64(),
            arm_vm["shapeConfig"]["memoryInGBs"].as_f64(),
            arm_vm["shapeConfig"]["vcpus"].as_u64()
        ),
        (Some(1.0), Some(6.0), Some(1))
    );
    let e4 = api.launch("e4", json!({"shapeConfig": null})).await;
    assert_eq!(
        (
            e4["shapeConfig"]["ocpus"].as_f64(),
            e4["shapeConfig"]["memoryInGBs"].as_f64()
        ),
        (Some(1.0), Some(16.0))
    );
    let big = api
        .post(
            "/instances",
            &api.launch_body("big", json!({"shapeConfig": {"ocpus": 65}})),
        )
        .await;
    assert_eq!(big.status, 400, "E4 has at most 64 OCPUs: {big:?}");
}
