//! The emulator against what OCI does, one divergence per test (issue 14): nothing a client sends
//! is silently dropped, boot volumes, shapes and architectures, identity fixtures, VNIC IPs,
//! moves and reboots as lifecycles, work request logs, keyset pagination, failed imports, the
//! calls Terraform's OCI provider makes, and the emulator's own stats and request log.
//!
//! Requests are sent raw (signed by kiln's signer) so that the JSON on the wire is what is
//! checked. Lifecycles run at time scale 1.0 and are jumped over with [`fast_forward`] (the
//! emulator's own state), never waited for with sleeps.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::{self, emulator, pending, qs, Api, COMPARTMENT, OTHER_COMPARTMENT};

/// Every field of the SDK's `Instance` model (oci 2.189 `attribute_map`).
const INSTANCE_FIELDS: &[&str] = &[
    "availabilityDomain",
    "capacityReservationId",
    "compartmentId",
    "placementConstraintDetails",
    "isAIEnterpriseEnabled",
    "clusterPlacementGroupId",
    "dedicatedVmHostId",
    "definedTags",
    "securityAttributes",
    "securityAttributesState",
    "displayName",
    "extendedMetadata",
    "faultDomain",
    "freeformTags",
    "id",
    "imageId",
    "ipxeScript",
    "launchMode",
    "launchOptions",
    "instanceOptions",
    "availabilityConfig",
    "preemptibleInstanceConfig",
    "lifecycleState",
    "metadata",
    "region",
    "shape",
    "shapeConfig",
    "isCrossNumaNode",
    "sourceDetails",
    "systemTags",
    "timeCreated",
    "agentConfig",
    "timeMaintenanceRebootDue",
    "platformConfig",
    "instanceConfigurationId",
    "licensingConfigs",
];

/// Every field of the SDK's `Image` model.
const IMAGE_FIELDS: &[&str] = &[
    "baseImageId",
    "compartmentId",
    "createImageAllowed",
    "definedTags",
    "displayName",
    "freeformTags",
    "id",
    "launchMode",
    "launchOptions",
    "lifecycleState",
    "operatingSystem",
    "operatingSystemVersion",
    "agentFeatures",
    "listingType",
    "sizeInMBs",
    "billableSizeInGBs",
    "timeCreated",
];

/// Every field of the SDK's `BootVolume`, `BootVolumeAttachment`, `Vnic` and `Shape` models.
const BOOT_VOLUME_FIELDS: &[&str] = &[
    "availabilityDomain",
    "compartmentId",
    "definedTags",
    "systemTags",
    "displayName",
    "freeformTags",
    "id",
    "imageId",
    "isHydrated",
    "clusterPlacementGroupId",
    "vpusPerGB",
    "lifecycleState",
    "sizeInGBs",
    "sizeInMBs",
    "sourceDetails",
    "timeCreated",
    "volumeGroupId",
    "kmsKeyId",
    "isAutoTuneEnabled",
    "autoTunedVpusPerGB",
    "bootVolumeReplicas",
    "autotunePolicies",
];
const ATTACHMENT_FIELDS: &[&str] = &[
    "availabilityDomain",
    "bootVolumeId",
    "compartmentId",
    "displayName",
    "id",
    "instanceId",
    "lifecycleState",
    "timeCreated",
    "timeUpdated",
    "isPvEncryptionInTransitEnabled",
    "isEncryptionInTransitEnabled",
    "encryptionInTransitType",
];
const VNIC_FIELDS: &[&str] = &[
    "availabilityDomain",
    "compartmentId",
    "definedTags",
    "displayName",
    "securityAttributes",
    "freeformTags",
    "hostnameLabel",
    "id",
    "isPrimary",
    "lifecycleState",
    "macAddress",
    "nsgIds",
    "vlanId",
    "privateIp",
    "publicIp",
    "skipSourceDestCheck",
    "subnetId",
    "systemTags",
    "timeCreated",
    "ipv6Addresses",
    "routeTableId",
];
/// Every field of the SDK's `PrivateIp` and `PublicIp` models.
const PRIVATE_IP_FIELDS: &[&str] = &[
    "availabilityDomain",
    "compartmentId",
    "definedTags",
    "displayName",
    "freeformTags",
    "hostnameLabel",
    "id",
    "ipAddress",
    "cidrPrefixLength",
    "isPrimary",
    "vlanId",
    "subnetId",
    "timeCreated",
    "vnicId",
    "ipState",
    "lifetime",
    "routeTableId",
    "ipv4SubnetCidrAtCreation",
];
const PUBLIC_IP_FIELDS: &[&str] = &[
    "assignedEntityId",
    "assignedEntityType",
    "availabilityDomain",
    "compartmentId",
    "definedTags",
    "displayName",
    "freeformTags",
    "id",
    "ipAddress",
    "lifecycleState",
    "lifetime",
    "privateIpId",
    "scope",
    "timeCreated",
    "publicIpPoolId",
];
const SHAPE_FIELDS: &[&str] = &[
    "baselineOcpuUtilizations",
    "minTotalBaselineOcpusRequired",
    "shape",
    "processorDescription",
    "ocpus",
    "memoryInGBs",
    "networkPorts",
    "networkingBandwidthInGbps",
    "maxVnicAttachments",
    "gpus",
    "gpuDescription",
    "localDisks",
    "localDisksTotalSizeInGBs",
    "localDiskDescription",
    "rdmaPorts",
    "rdmaBandwidthInGbps",
    "isLiveMigrationSupported",
    "ocpuOptions",
    "memoryOptions",
    "networkingBandwidthOptions",
    "maxVnicAttachmentOptions",
    "platformConfigOptions",
    "bsNvmeAttachmentsConfig",
    "isBilledForStoppedInstance",
    "billingType",
    "quotaNames",
    "isSubcore",
    "isFlexible",
    "supportedResourceManagement",
    "resizeCompatibleShapes",
    "recommendedAlternatives",
    "platformNames",
];

fn missing(v: &Value, fields: &[&str]) -> Vec<String> {
    fields
        .iter()
        .filter(|f| v.get(**f).is_none())
        .map(|f| f.to_string())
        .collect()
}

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

#[tokio::test]
async fn identity_serves_domains_compartments_and_tag_namespaces_and_refuses_unknown_ones() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let f = emu.fixtures();
    let tenancy = support::TENANCY;
    let ads = api
        .ok(&format!(
            "/availabilityDomains?{}",
            qs(&[("compartmentId", tenancy)])
        ))
        .await;
    let names: Vec<&str> = ads
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(
        names,
        f.availability_domains
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert!(ads[0]["id"]
        .as_str()
        .unwrap()
        .starts_with("ocid1.availabilitydomain."));
    let fds = api
        .ok(&format!(
            "/faultDomains?{}",
            qs(&[
                ("compartmentId", tenancy),
                ("availabilityDomain", &f.availability_domains[0])
            ])
        ))
        .await;
    assert_eq!(fds.as_array().unwrap().len(), 3);
    assert_eq!(
        fds[0]["availabilityDomain"],
        json!(f.availability_domains[0])
    );

    // Compartments: the tenancy root, the named ones, the test's; an unknown one is 404.
    let c = api.ok(&format!("/compartments/{COMPARTMENT}")).await;
    assert_eq!(
        (c["lifecycleState"].as_str(), c["compartmentId"].as_str()),
        (Some("ACTIVE"), Some(tenancy))
    );
    let children = api
        .ok(&format!(
            "/compartments?{}",
            qs(&[("compartmentId", tenancy)])
        ))
        .await;
    let ids: Vec<&str> = children
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(
        ids.contains(&COMPARTMENT) && ids.contains(&f.compartment_id.as_str()),
        "{ids:?}"
    );
    let unknown = "ocid1.compartment.oc1..aaaaaaaanosuchcompartment";
    for pq in [
        format!("/compartments/{unknown}"),
        format!("/instances?{}", qs(&[("compartmentId", unknown)])),
        format!("/images?{}", qs(&[("compartmentId", unknown)])),
    ] {
        let a = api.get(&pq).await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (404, Some("NotAuthorizedOrNotFound")),
            "{pq}: {a:?}"
        );
    }
    let a = api
        .post(
            "/instances",
            &api.launch_body("x", json!({"compartmentId": unknown})),
        )
        .await;
    assert_eq!(a.status, 404, "{a:?}");

    // Tag namespaces; defined tags outside them are 400.
    let namespaces = api
        .ok(&format!(
            "/tagNamespaces?{}",
            qs(&[("compartmentId", tenancy)])
        ))
        .await;
    let ops = namespaces
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "Operations")
        .unwrap();
    let tags = api
        .ok(&format!(
            "/tagNamespaces/{}/tags",
            ops["id"].as_str().unwrap()
        ))
        .await;
    assert!(tags
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "CostCenter"));
    for (tags, needle) in [
        (json!({"NoSuchNamespace": {"x": "1"}}), "NoSuchNamespace"),
        (json!({"Operations": {"NoSuchKey": "1"}}), "NoSuchKey"),
    ] {
        let a = api
            .post(
                "/instances",
                &api.launch_body("t", json!({"definedTags": tags})),
            )
            .await;
        assert_eq!(a.status, 400, "{a:?}");
        assert!(
            a.body["message"].as_str().unwrap().contains(needle),
            "{a:?}"
        );
    }
    let ok = api
        .launch(
            "t",
            json!({"definedTags": {"operations": {"costcenter": "7"}}}),
        )
        .await;
    let id = ok["id"].as_str().unwrap();
    let a = api
        .put(
            &format!("/instances/{id}"),
            &json!({"definedTags": {"Operations": {"Nope": "1"}}}),
        )
        .await;
    assert_eq!(a.status, 400, "{a:?}");
}

#[tokio::test]
async fn private_ips_ipv6_and_subnets_by_vcn_are_served() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let f = emu.fixtures();
    let i = api.launch("ips", json!({})).await;
    let id = i["id"].as_str().unwrap();
    let atts = api
        .ok(&format!(
            "/vnicAttachments?{}",
            qs(&[("compartmentId", COMPARTMENT), ("instanceId", id)])
        ))
        .await;
    let vnic_id = atts[0]["vnicId"].as_str().unwrap();
    let vnic = api.ok(&format!("/vnics/{vnic_id}")).await;
    let ips = api
        .ok(&format!("/privateIps?{}", qs(&[("vnicId", vnic_id)])))
        .await;
    assert_eq!(ips.as_array().unwrap().len(), 1, "{ips}");
    assert_eq!(
        (ips[0]["ipAddress"].clone(), ips[0]["isPrimary"].as_bool()),
        (vnic["privateIp"].clone(), Some(true))
    );
    let by_subnet = api
        .ok(&format!(
            "/privateIps?{}",
            qs(&[
                ("subnetId", &f.public_subnet_id),
                ("ipAddress", vnic["privateIp"].as_str().unwrap())
            ])
        ))
        .await;
    assert_eq!(by_subnet[0]["vnicId"], json!(vnic_id));
    assert_eq!(api.get("/privateIps").await.status, 400);
    assert_eq!(
        api.ok(&format!("/ipv6?{}", qs(&[("vnicId", vnic_id)])))
            .await,
        json!([])
    );
    assert_eq!(
        api.get(&format!(
            "/ipv6?{}",
            qs(&[("vnicId", "ocid1.vnic.oc1.iad.nope")])
        ))
        .await
        .status,
        404
    );

    let subnets = |vcn: &str| qs(&[("compartmentId", COMPARTMENT), ("vcnId", vcn)]);
    assert_eq!(
        api.ok(&format!("/subnets?{}", subnets(&f.vcn_id)))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        api.ok(&format!("/subnets?{}", subnets("ocid1.vcn.oc1.iad.other")))
            .await,
        json!([])
    );
}

/// Every private IP of a subnet, and the ephemeral public IPs of a compartment's private IPs per
/// AD (ListPublicIps, strict about `scope`, its AD and the compartment): one per VNIC with a public
/// IP, naming its primary private IP; paged; GetPublicIp and GetPublicIpByPrivateIpId agree; a
/// terminated instance's are gone.
#[tokio::test]
async fn private_ips_by_subnet_and_ephemeral_public_ips_are_listed_with_every_field() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let f = emu.fixtures();
    let ad = f.availability_domains[0].as_str();
    let no_public = json!({"subnetId": f.public_subnet_id, "assignPublicIp": false});
    let mut vnics = Vec::new();
    for (name, patch) in [
        ("pub-a", json!({})),
        ("pub-b", json!({})),
        ("nopub", json!({"createVnicDetails": no_public})),
        (
            "other-ad",
            json!({"availabilityDomain": f.availability_domains[1]}),
        ),
    ] {
        let i = api.launch(name, patch).await;
        let id = i["id"].as_str().unwrap();
        let atts = api
            .ok(&format!(
                "/vnicAttachments?{}",
                qs(&[("compartmentId", COMPARTMENT), ("instanceId", id)])
            ))
            .await;
        let vnic = atts[0]["vnicId"].as_str().unwrap();
        vnics.push((id.to_string(), api.ok(&format!("/vnics/{vnic}")).await));
    }
    // ListPrivateIps by subnet: all four, every field, one page at a time.
    let mut listed = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut q = vec![("subnetId", f.public_subnet_id.as_str()), ("limit", "3")];
        if let Some(p) = &page {
            q.push(("page", p));
        }
        let a = api.get(&format!("/privateIps?{}", qs(&q))).await;
        assert_eq!(a.status, 200, "{a:?}");
        listed.extend(a.body.as_array().unwrap().iter().cloned());
        match a.header("opc-next-page") {
            Some(p) => page = Some(p.to_string()),
            None => break,
        }
    }
    assert_eq!(listed.len(), 4, "{listed:?}");
    for p in &listed {
        assert!(
            missing(p, PRIVATE_IP_FIELDS).is_empty(),
            "missing {:?}",
            missing(p, PRIVATE_IP_FIELDS)
        );
        let (_, v) = vnics.iter().find(|(_, v)| v["id"] == p["vnicId"]).unwrap();
        assert_eq!(
            (&p["ipAddress"], &p["hostnameLabel"], &p["isPrimary"]),
            (&v["privateIp"], &v["hostnameLabel"], &json!(true))
        );
    }
    let private_of =
        |vnic: &Value| listed.iter().find(|p| p["vnicId"] == vnic["id"]).unwrap()["id"].clone();

    let public = |pairs: &[(&str, &str)]| format!("/publicIps?{}", qs(pairs));
    let ad_scope = [
        ("scope", "AVAILABILITY_DOMAIN"),
        ("compartmentId", COMPARTMENT),
        ("availabilityDomain", ad),
        ("lifetime", "EPHEMERAL"),
    ];
    let ips = api.ok(&public(&ad_scope)).await;
    let ips = ips.as_array().unwrap();
    // The two in AD 1 with a public IP; not the one without, not the one in AD 2.
    assert_eq!(ips.len(), 2, "{ips:?}");
    for ip in ips {
        assert!(
            missing(ip, PUBLIC_IP_FIELDS).is_empty(),
            "missing {:?}",
            missing(ip, PUBLIC_IP_FIELDS)
        );
        let (_, v) = vnics[..2]
            .iter()
            .find(|(_, v)| v["publicIp"] == ip["ipAddress"])
            .unwrap_or_else(|| panic!("{ip} is the public IP of pub-a or pub-b"));
        assert_eq!(ip["privateIpId"], private_of(v), "{ip}");
        assert_eq!(ip["assignedEntityId"], private_of(v), "{ip}");
        for (k, want) in [
            ("assignedEntityType", json!("PRIVATE_IP")),
            ("scope", json!("AVAILABILITY_DOMAIN")),
            ("lifetime", json!("EPHEMERAL")),
            ("lifecycleState", json!("ASSIGNED")),
            ("availabilityDomain", json!(ad)),
            ("compartmentId", json!(COMPARTMENT)),
        ] {
            assert_eq!(ip[k], want, "{k}: {ip}");
        }
        let id = ip["id"].as_str().unwrap();
        assert!(id.starts_with("ocid1.publicip.oc1.iad."), "{id}");
        assert_eq!(&api.ok(&format!("/publicIps/{id}")).await, ip);
        let by_private = api
            .post(
                "/publicIps/actions/getByPrivateIpId",
                &json!({"privateIpId": private_of(v)}),
            )
            .await;
        assert_eq!((by_private.status, &by_private.body), (200, ip));
    }
    // Stable: the same ids on the next read; paged.
    let first = api
        .get(&public(&[&ad_scope[..], &[("limit", "1")]].concat()))
        .await;
    assert_eq!(first.body, json!([ips[0]]));
    let next = first.header("opc-next-page").unwrap().to_string();
    let second = api
        .ok(&public(
            &[&ad_scope[..], &[("limit", "1"), ("page", &next)]].concat(),
        ))
        .await;
    assert_eq!(second, json!([ips[1]]));
    // A private IP without a public IP has none.
    let none = api
        .post(
            "/publicIps/actions/getByPrivateIpId",
            &json!({"privateIpId": private_of(&vnics[2].1)}),
        )
        .await;
    assert_eq!(none.status, 404, "{none:?}");
    let unknown_field = api
        .post(
            "/publicIps/actions/getByPrivateIpId",
            &json!({"privateIpId": private_of(&vnics[2].1), "publicIpId": "x"}),
        )
        .await;
    assert_eq!(unknown_field.status, 400, "{unknown_field:?}");
    // The other AD has its own; REGION scope (reserved IPs, NAT gateways) has none here, nor has
    // RESERVED.
    let other = api
        .ok(&public(&[
            ("scope", "AVAILABILITY_DOMAIN"),
            ("compartmentId", COMPARTMENT),
            ("availabilityDomain", &f.availability_domains[1]),
        ]))
        .await;
    assert_eq!(other[0]["ipAddress"], vnics[3].1["publicIp"]);
    let region = public(&[("scope", "REGION"), ("compartmentId", COMPARTMENT)]);
    assert_eq!(api.ok(&region).await, json!([]));
    let reserved = [&ad_scope[..3], &[("lifetime", "RESERVED")]].concat();
    assert_eq!(api.ok(&public(&reserved)).await, json!([]));
    assert_eq!(
        api.ok(&public(&[
            ("scope", "AVAILABILITY_DOMAIN"),
            ("compartmentId", OTHER_COMPARTMENT),
            ("availabilityDomain", ad)
        ]))
        .await,
        json!([])
    );
    // Strict: scope required and spelled right, an AD with AD scope only, a known compartment.
    for (pairs, status) in [
        (vec![("compartmentId", COMPARTMENT)], 400),
        (vec![("scope", "AD"), ("compartmentId", COMPARTMENT)], 400),
        (
            vec![
                ("scope", "AVAILABILITY_DOMAIN"),
                ("compartmentId", COMPARTMENT),
            ],
            400,
        ),
        (
            vec![
                ("scope", "REGION"),
                ("compartmentId", COMPARTMENT),
                ("availabilityDomain", ad),
            ],
            400,
        ),
        (
            vec![
                ("scope", "AVAILABILITY_DOMAIN"),
                ("compartmentId", COMPARTMENT),
                ("availabilityDomain", "nope:AD-9"),
            ],
            400,
        ),
        (
            vec![
                ("scope", "REGION"),
                ("compartmentId", COMPARTMENT),
                ("lifetime", "FOREVER"),
            ],
            400,
        ),
        (vec![("scope", "REGION")], 400),
        (
            vec![
                ("scope", "REGION"),
                ("compartmentId", "ocid1.compartment.oc1..unknown"),
            ],
            404,
        ),
        (
            vec![
                ("scope", "REGION"),
                ("compartmentId", COMPARTMENT),
                ("limit", "0"),
            ],
            400,
        ),
    ] {
        let a = api.get(&public(&pairs)).await;
        assert_eq!(a.status, status, "{pairs:?}: {a:?}");
    }
    assert_eq!(
        api.get("/publicIps/ocid1.publicip.oc1.iad.nope")
            .await
            .status,
        404
    );
    // Terminated: its private and public IPs are released.
    let (gone, v) = &vnics[0];
    assert_eq!(api.delete(&format!("/instances/{gone}")).await.status, 204);
    support::fast_forward(&emu);
    let ips = api.ok(&public(&ad_scope)).await;
    assert_eq!(ips.as_array().unwrap().len(), 1, "{ips}");
    assert_eq!(ips[0]["ipAddress"], vnics[1].1["publicIp"]);
    let id = v["id"]
        .as_str()
        .unwrap()
        .replacen("ocid1.vnic.", "ocid1.publicip.", 1);
    assert_eq!(api.get(&format!("/publicIps/{id}")).await.status, 404);
    let by_subnet = api
        .ok(&format!(
            "/privateIps?{}",
            qs(&[("subnetId", f.public_subnet_id.as_str())])
        ))
        .await;
    assert_eq!(by_subnet.as_array().unwrap().len(), 3, "{by_subnet}");
    let stats = emu.stats();
    for op in ["ListPublicIps", "GetPublicIp", "GetPublicIpByPrivateIpId"] {
        assert!(stats.get(op).copied().unwrap_or(0) > 0, "{op}: {stats:?}");
    }
}

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

/// The calls terraform-provider-oci makes to create, refresh and destroy `oci_core_instance` and
/// `oci_core_image` (`core_instance_resource.go`, `core_image_resource.go`), in its order, with
/// the fields it reads.
#[tokio::test]
async fn every_call_of_terraforms_provider_is_served_with_the_fields_it_reads() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let f = emu.fixtures();
    let ad = f.availability_domains[0].as_str();
    // Create: LaunchInstance, then GetWorkRequest until it succeeds, then a refresh.
    let launched = api
        .post("/instances", &api.launch_body("tf", json!({})))
        .await;
    assert_eq!(launched.status, 200);
    let wr = launched.header("opc-work-request-id").unwrap().to_string();
    support::fast_forward(&emu);
    let w = api.ok(&format!("/workRequests/{wr}")).await;
    assert_eq!(w["status"], "SUCCEEDED");
    assert_eq!(w["resources"][0]["actionType"], "CREATED");
    let id = launched.body["id"].as_str().unwrap();
    let shapes = api
        .ok(&format!(
            "/shapes?{}",
            qs(&[("compartmentId", COMPARTMENT), ("availabilityDomain", ad)])
        ))
        .await;
    assert!(shapes
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["shape"] == "VM.Standard.E4.Flex"));
    // Refresh: GetInstance, ListVnicAttachments (all pages), GetVnic, ListBootVolumeAttachments,
    // GetBootVolume, ListIpv6, ListPrivateIps.
    let inst = api.ok(&format!("/instances/{id}")).await;
    assert!(
        missing(&inst, INSTANCE_FIELDS).is_empty(),
        "missing {:?}",
        missing(&inst, INSTANCE_FIELDS)
    );
    assert_eq!(
        inst["securityAttributes"],
        json!({}),
        "present and empty, never missing"
    );
    let atts = api
        .get(&format!(
            "/vnicAttachments?{}",
            qs(&[("compartmentId", COMPARTMENT), ("instanceId", id)])
        ))
        .await;
    assert!(atts.header("opc-next-page").is_none());
    assert_eq!(atts.body[0]["lifecycleState"], "ATTACHED");
    let vnic_id = atts.body[0]["vnicId"].as_str().unwrap();
    let vnic = api.ok(&format!("/vnics/{vnic_id}")).await;
    assert_eq!(vnic["isPrimary"], true);
    assert!(vnic["hostnameLabel"].is_string() && vnic["privateIp"].is_string());
    let bva = api
        .ok(&format!(
            "/bootVolumeAttachments?{}",
            qs(&[
                ("availabilityDomain", ad),
                ("compartmentId", COMPARTMENT),
                ("instanceId", id)
            ])
        ))
        .await;
    let bv = api
        .ok(&format!(
            "/bootVolumes/{}",
            bva[0]["bootVolumeId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        bv["sizeInGBs"],
        inst["sourceDetails"]["bootVolumeSizeInGBs"]
    );
    assert_eq!(
        api.ok(&format!("/ipv6?{}", qs(&[("vnicId", vnic_id)])))
            .await,
        json!([])
    );
    assert_eq!(
        api.ok(&format!("/privateIps?{}", qs(&[("vnicId", vnic_id)])))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Image: CreateImage, GetWorkRequest, GetImage, DeleteImage.
    let img = api
        .post(
            "/images",
            &json!({"compartmentId": COMPARTMENT, "instanceId": id, "displayName": "tf-image"}),
        )
        .await;
    assert_eq!(img.status, 200, "{img:?}");
    support::fast_forward(&emu);
    let img_id = img.body["id"].as_str().unwrap();
    let got = api.ok(&format!("/images/{img_id}")).await;
    assert!(
        missing(&got, IMAGE_FIELDS).is_empty(),
        "missing {:?}",
        missing(&got, IMAGE_FIELDS)
    );
    assert_eq!(api.delete(&format!("/images/{img_id}")).await.status, 204);
    // Destroy: TerminateInstance, then GetWorkRequest.
    let t = api.delete(&format!("/instances/{id}")).await;
    support::fast_forward(&emu);
    assert_eq!(
        api.ok(&format!(
            "/workRequests/{}",
            t.header("opc-work-request-id").unwrap()
        ))
        .await["status"],
        "SUCCEEDED"
    );
    let stats = emu.stats();
    for op in [
        "GetInstance",
        "ListVnicAttachments",
        "GetVnic",
        "ListBootVolumeAttachments",
        "GetBootVolume",
        "ListIpv6s",
        "ListPrivateIps",
        "GetWorkRequest",
        "CreateImage",
        "GetImage",
        "DeleteImage",
        "ListShapes",
        "LaunchInstance",
        "TerminateInstance",
    ] {
        assert!(
            stats.get(op).copied().unwrap_or(0) > 0,
            "{op} served: {stats:?}"
        );
        assert_eq!(
            stats.get(&format!("errors.{op}")),
            None,
            "{op} never failed: {stats:?}"
        );
    }
}

#[tokio::test]
async fn stats_count_errors_per_operation_and_unknown_routes_and_the_request_id_is_echoed() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let a = api.get("/instances/ocid1.instance.oc1.iad.nope").await;
    assert_eq!(a.status, 404);
    let a = api.get("/volumes/ocid1.volume.oc1.iad.abc").await;
    assert_eq!(a.status, 404);
    let a = api
        .call(
            "GET",
            &format!("/instances?{}", qs(&[("compartmentId", COMPARTMENT)])),
            None,
            &[("opc-request-id", "MYCLIENTID42")],
        )
        .await;
    let rid = a.header("opc-request-id").unwrap();
    assert!(
        rid.starts_with("MYCLIENTID42/") && rid.split('/').count() == 3,
        "{rid}"
    );
    let stats: Value = reqwest::get(format!("{}/_emulator/stats", emu.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["GetInstance"], 1);
    assert_eq!(stats["errors.GetInstance"], 1);
    assert_eq!(stats["unknown_route"], 1);
    assert_eq!(stats["unknown_route.GET /20160918/volumes/{id}"], 1);
    assert_eq!(stats.get("errors.ListInstances"), None);
}

/// `kiln emulator -v` logs each request (method, path, status, duration, opc-request-id) and never
/// the Authorization header.
#[tokio::test]
async fn the_emulator_request_log_names_each_request_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::write(
        &cfg,
        format!(
            "[DEFAULT]\nuser={}\ntenancy={}\nfingerprint={}\nkey_file={}\nregion=us-ashburn-1\n",
            support::USER,
            support::TENANCY,
            support::PKCS1_FP,
            support::key_path("pkcs1.pem").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "emulator",
            "-v",
            "--listen",
            "127.0.0.1:0",
            "--oci-config",
            cfg.to_str().unwrap(),
            "--compartment",
            COMPARTMENT,
        ])
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let _guard = Kill(child);
    // Kept open while the emulator runs: it prints its fixtures after the first line.
    let mut out = BufReader::new(stdout).lines();
    let first = out.next().unwrap().unwrap();
    let url = first.strip_prefix("listening on ").unwrap().to_string();
    let mut opts = kiln::oci::ClientOptions::new(url);
    opts.retry = kiln::oci::RetryPolicy::none();
    let client = kiln::oci::Client::new(support::signing_key(), opts);
    let listed = tokio::spawn(async move {
        client
            .list_instances(&kiln::oci::compute::ListInstances {
                compartment_id: COMPARTMENT.into(),
                ..Default::default()
            })
            .await
    });
    // Read the log until the request's line (the read ends when it is there, not after a sleep).
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("/20160918/instances"))
    })
    .await
    .unwrap()
    .expect("a log line for the request");
    listed.await.unwrap().unwrap();
    drop(out);
    assert!(
        line.contains("GET")
            && line.contains(" 200 ")
            && line.contains("ms")
            && line.contains("opc-request-id="),
        "{line}"
    );
    for secret in [
        "Signature",
        "signature=",
        "keyId",
        "authorization",
        "Authorization",
        support::PKCS1_FP,
    ] {
        assert!(!line.contains(secret), "`{secret}` in the log: {line}");
    }
}

/// kiln's `image_lookup` asks ListImages for the instance's shape, so an Arm instance boots the
/// Arm build of the image OCI would pick.
#[tokio::test]
async fn kilns_image_lookup_picks_the_image_the_shape_can_boot() {
    let p = support::Project::new(support::config(0.002)).await;
    p.write("[instance.arm]\nshape = \"VM.Standard.A1.Flex\"\nshape_config = { ocpus = 2, memory_in_gbs = 12 }\nsource = { image_lookup = { os = \"Oracle Linux\", version = \"9\" } }\n\n[instance.x86]\nsource = { image_lookup = { os = \"Oracle Linux\", version = \"9\" } }\n");
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let f = p.emu.fixtures();
    let ol9 = |arch: &str| {
        f.platform_images
            .iter()
            .rfind(|i| {
                i.operating_system == "Oracle Linux"
                    && i.operating_system_version == "9"
                    && i.arch == arch
            })
            .unwrap()
            .id
            .clone()
    };
    let live = p.live_instances().await;
    let image_of = |name: &str| {
        live.iter()
            .find(|i| i.display_name.as_deref() == Some(name))
            .unwrap()
            .image_id
            .clone()
    };
    assert_eq!(image_of("arm"), Some(ol9("aarch64")));
    assert_eq!(image_of("x86"), Some(ol9("x86_64")));
    let again = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(again.code, 0, "{again:?}");
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
