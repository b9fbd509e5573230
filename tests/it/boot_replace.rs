//! The emulator's boot volume replacement (UpdateInstance with `sourceDetails`) against what OCI
//! does (`src/emulator/boot_replace.rs` cites the SDK models and Oracle's docs): the instance stops
//! and comes back in the state it had, a new boot volume (new OCID) is attached, the old one is
//! deleted or preserved, `imageId`/`sourceDetails` change, the OCID, VNIC and private IP stay, a
//! work request (UPDATED) tells when it is done; and the refusals. Lifecycles run at time scale
//! 1.0 and are jumped over with `fast_forward` (the emulator's state), never slept on.

use serde_json::{json, Value};

use crate::support::{emulator, fast_forward, pending, qs, Api, COMPARTMENT};

async fn boot_attachments(api: &Api<'_>, ad: &str, id: &str) -> Vec<Value> {
    let a = api
        .ok(&format!(
            "/bootVolumeAttachments?{}",
            qs(&[
                ("availabilityDomain", ad),
                ("compartmentId", COMPARTMENT),
                ("instanceId", id)
            ])
        ))
        .await;
    a.as_array().unwrap().clone()
}

async fn private_ip(api: &Api<'_>, id: &str) -> (String, String) {
    let atts = api
        .ok(&format!(
            "/vnicAttachments?{}",
            qs(&[("compartmentId", COMPARTMENT), ("instanceId", id)])
        ))
        .await;
    let vnic_id = atts[0]["vnicId"].as_str().unwrap().to_string();
    let vnic = api.ok(&format!("/vnics/{vnic_id}")).await;
    (vnic_id, vnic["privateIp"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn boot_volume_replacement_keeps_the_instance_and_swaps_its_volume_with_a_work_request() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let f = emu.fixtures();
    let ad = f.availability_domains[0].clone();
    let by_os = |os: &str, arch: &str| -> Vec<String> {
        f.platform_images
            .iter()
            .filter(|i| i.operating_system == os && i.arch == arch)
            .map(|i| i.id.clone())
            .collect()
    };
    let ol = by_os("Oracle Linux", "x86_64");
    let (old_image, new_image) = (ol[0].clone(), ol[1].clone());
    let ubuntu = by_os("Canonical Ubuntu", "x86_64")[0].clone();
    let arm = f
        .platform_images
        .iter()
        .find(|i| i.arch == "aarch64")
        .unwrap()
        .id
        .clone();
    let i = api
        .launch(
            "bvr",
            json!({"sourceDetails": {"sourceType": "image", "imageId": old_image, "bootVolumeSizeInGBs": 60}}),
        )
        .await;
    let id = i["id"].as_str().unwrap().to_string();
    fast_forward(&emu);
    let (vnic, ip) = private_ip(&api, &id).await;
    let before = boot_attachments(&api, &ad, &id).await;
    let old_volume = before[0]["bootVolumeId"].as_str().unwrap().to_string();
    let put = |src: Value| {
        let api = &api;
        let id = id.clone();
        async move {
            api.put(
                &format!("/instances/{id}"),
                &json!({ "sourceDetails": src }),
            )
            .await
        }
    };

    // Refused as OCI refuses it.
    for (src, status, code, what) in [
        (
            json!({"sourceType": "image", "imageId": new_image, "bootVolumeSizeInGBs": 50}),
            400,
            "InvalidParameter",
            "a size decrease",
        ),
        (
            json!({"sourceType": "image", "imageId": ubuntu}),
            400,
            "InvalidParameter",
            "another distribution",
        ),
        (
            json!({"sourceType": "image", "imageId": arm}),
            400,
            "InvalidParameter",
            "another architecture",
        ),
        (
            json!({"sourceType": "image", "imageId": "ocid1.image.oc1.iad.nosuchimage"}),
            400,
            "RelatedResourceNotAuthorizedOrNotFound",
            "an unknown image",
        ),
        (
            json!({"sourceType": "image", "imageId": new_image, "kmsKeyId": "ocid1.key.oc1.iad.k"}),
            400,
            "RelatedResourceNotAuthorizedOrNotFound",
            "a Vault key the fixtures do not hold",
        ),
        (
            json!({"sourceType": "image", "imageId": new_image, "bogus": 1}),
            400,
            "InvalidParameter",
            "a field of no type",
        ),
        (
            json!({"sourceType": "snapshot"}),
            400,
            "InvalidParameter",
            "an unknown source type",
        ),
    ] {
        let a = put(src).await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (status, Some(code)),
            "{what}: {a:?}"
        );
    }

    // The replacement: same OCID, STOPPING now, new source at once, a work request.
    let a =
        put(json!({"sourceType": "image", "imageId": new_image, "bootVolumeSizeInGBs": 70})).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["id"], json!(id));
    assert_eq!(a.body["lifecycleState"], "STOPPING");
    assert_eq!(a.body["imageId"], json!(new_image));
    assert_eq!(a.body["sourceDetails"]["imageId"], json!(new_image));
    assert_eq!(a.body["sourceDetails"]["bootVolumeSizeInGBs"], 70);
    let wr = a.header("opc-work-request-id").unwrap().to_string();
    let w = api.ok(&format!("/workRequests/{wr}")).await;
    assert!(pending(&w), "{w}");
    assert_eq!(w["operationType"], "UpdateInstance");
    assert_eq!(w["resources"][0]["actionType"], "UPDATED");
    assert_eq!(w["resources"][0]["identifier"], json!(id));
    let again = put(json!({"sourceType": "image", "imageId": old_image})).await;
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (409, Some("IncorrectState")),
        "not while it is being replaced: {again:?}"
    );

    fast_forward(&emu);
    assert_eq!(
        api.ok(&format!("/workRequests/{wr}")).await["status"],
        "SUCCEEDED"
    );
    let got = api.ok(&format!("/instances/{id}")).await;
    assert_eq!(got["lifecycleState"], "RUNNING", "back in the state it had");
    let atts = boot_attachments(&api, &ad, &id).await;
    let attached: Vec<&Value> = atts
        .iter()
        .filter(|a| a["lifecycleState"] == "ATTACHED")
        .collect();
    assert_eq!(attached.len(), 1, "{atts:?}");
    let new_volume = attached[0]["bootVolumeId"].as_str().unwrap().to_string();
    assert_ne!(new_volume, old_volume, "a new boot volume, with a new OCID");
    let nv = api.ok(&format!("/bootVolumes/{new_volume}")).await;
    assert_eq!(
        (
            nv["imageId"].clone(),
            nv["sizeInGBs"].clone(),
            nv["lifecycleState"].clone()
        ),
        (json!(new_image), json!(70), json!("AVAILABLE"))
    );
    let old = api.get(&format!("/bootVolumes/{old_volume}")).await;
    assert!(
        old.status == 404 || old.body["lifecycleState"] == "TERMINATED",
        "not preserved: deleted ({old:?})"
    );
    assert_eq!(
        private_ip(&api, &id).await,
        (vnic.clone(), ip.clone()),
        "VNIC and IP stay"
    );

    // Preserved: the old volume stays AVAILABLE, detached. A STOPPED instance stays STOPPED.
    let stop = api
        .call("POST", &format!("/instances/{id}?action=STOP"), None, &[])
        .await;
    assert_eq!(stop.status, 200, "{stop:?}");
    fast_forward(&emu);
    let a = put(
        json!({"sourceType": "image", "imageId": old_image, "isPreserveBootVolumeEnabled": true}),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["lifecycleState"], "STOPPED");
    assert_eq!(
        a.body["sourceDetails"]["bootVolumeSizeInGBs"], 70,
        "the size stays without one given"
    );
    fast_forward(&emu);
    let kept = api.ok(&format!("/bootVolumes/{new_volume}")).await;
    assert_eq!(kept["lifecycleState"], "AVAILABLE", "preserved");
    let got = api.ok(&format!("/instances/{id}")).await;
    assert_eq!(
        (got["lifecycleState"].as_str(), got["imageId"].clone()),
        (Some("STOPPED"), json!(old_image))
    );
    assert_eq!(private_ip(&api, &id).await, (vnic, ip));

    // The preserved volume can be the next source (the bootVolume variant).
    let a = put(json!({"sourceType": "bootVolume", "bootVolumeId": new_volume})).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["sourceDetails"]["bootVolumeId"], json!(new_volume));
    assert_eq!(a.body["imageId"], json!(new_image));
}

#[tokio::test]
async fn boot_volume_replacement_is_refused_on_bare_metal() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let f = emu.fixtures();
    let bm = api
        .launch(
            "metal",
            json!({"shape": "BM.Standard.E4.128", "shapeConfig": null}),
        )
        .await;
    let id = bm["id"].as_str().unwrap();
    fast_forward(&emu);
    let a = api
        .put(
            &format!("/instances/{id}"),
            &json!({"sourceDetails": {"sourceType": "image", "imageId": f.platform_images[1].id}}),
        )
        .await;
    assert_eq!(a.status, 400, "{a:?}");
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .contains("virtual machine"),
        "{a:?}"
    );
}
