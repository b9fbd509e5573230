//! An image's `shapes` and `capabilities` (issue 24): its shape compatibility entries and
//! capability schema created, diffed key by key and changed in place; an instance on a shape its
//! image is not compatible with, and a capability OCI's global schema does not have, refused at
//! plan time at their spans; the emulator refusing an incompatible launch as OCI does.

use serde_json::{json, Value};

use crate::support::{self, scrub, Api, Project, COMPARTMENT};

const GOLDEN: &str = r#"[instance.builder]

[image.golden]
from_instance = "instance.builder"
shapes = ["VM.Standard.E4.Flex", { shape = "VM.Optimized3.Flex", ocpus = { min = 1, max = 8 } }]
capabilities = { "Compute.Firmware" = "UEFI_64", "Storage.ConsistentVolumeNaming" = true }
"#;

/// The image's entries as OCI lists them: shape → (ocpu range, memory range).
async fn entries(p: &Project, id: &str) -> Vec<(String, Option<(Option<u64>, Option<u64>)>)> {
    let mut out: Vec<_> = p
        .client()
        .list_image_shapes(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.shape, e.ocpu_constraints.map(|c| (c.min, c.max))))
        .collect();
    out.sort();
    out
}

/// The image's capability schema data: name → (values, default).
async fn capabilities(p: &Project, id: &str) -> Vec<(String, Value)> {
    let (schema, _) = p
        .client()
        .image_capability_schema(COMPARTMENT, id)
        .await
        .unwrap()
        .expect("the image has a capability schema");
    schema
        .schema_data
        .into_iter()
        .map(|(k, v)| (k, v["defaultValue"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shapes_and_capabilities_are_made_diffed_key_by_key_and_changed_in_place() {
    let p = Project::new(support::config(0.002)).await;
    p.write(GOLDEN);
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let id = p.state()["resources"]["image.golden"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        entries(&p, &id).await,
        vec![
            ("VM.Optimized3.Flex".to_string(), Some((Some(1), Some(8)))),
            ("VM.Standard.E4.Flex".to_string(), None),
        ]
    );
    assert_eq!(
        capabilities(&p, &id).await,
        vec![
            ("Compute.Firmware".to_string(), json!("UEFI_64")),
            ("Storage.ConsistentVolumeNaming".to_string(), json!(true)),
        ]
    );
    let again = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(again.code, 0, "a second plan is clean: {again:?}");

    // One entry removed, one added, one range changed, one capability changed: an update in
    // place of the same image, key by key.
    p.write(
        &GOLDEN
            .replace(
                r#"{ shape = "VM.Optimized3.Flex", ocpus = { min = 1, max = 8 } }"#,
                r#"{ shape = "VM.Optimized3.Flex", ocpus = { min = 2, max = 4 } }, "VM.Standard2.1""#,
            )
            .replace(r#""VM.Standard.E4.Flex", "#, "")
            .replace(r#""Compute.Firmware" = "UEFI_64""#, r#""Compute.Firmware" = "BIOS""#),
    );
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 2, "{plan:?}");
    insta::assert_snapshot!("image_shapes_update_plan", scrub(&plan.stdout, Some(&p)));
    let before = p.emu.stats();
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let calls = support::calls_between(&before, &p.emu.stats());
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("CreateImage") || c.starts_with("DeleteImage")),
        "changed in place: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("UpdateComputeImageCapabilitySchema")),
        "{calls:?}"
    );
    assert_eq!(
        p.state()["resources"]["image.golden"]["id"].as_str(),
        Some(id.as_str())
    );
    assert_eq!(
        entries(&p, &id).await,
        vec![
            ("VM.Optimized3.Flex".to_string(), Some((Some(2), Some(4)))),
            ("VM.Standard2.1".to_string(), None),
        ]
    );
    assert_eq!(
        capabilities(&p, &id).await,
        vec![
            ("Compute.Firmware".to_string(), json!("BIOS")),
            ("Storage.ConsistentVolumeNaming".to_string(), json!(true)),
        ]
    );
    let clean = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(clean.code, 0, "a second plan is clean: {clean:?}");

    // Changed outside kiln: the plan puts it back.
    p.client()
        .remove_image_shape(&id, "VM.Standard2.1")
        .await
        .unwrap();
    let drifted = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(drifted.code, 2, "{drifted:?}");
    assert!(drifted.stdout.contains("VM.Standard2.1"), "{drifted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_on_a_shape_its_image_is_not_compatible_with_is_a_plan_time_error() {
    let p = Project::new(support::config(0.002)).await;
    p.write(&format!(
        "{}\n[instance.web]\nsource = {{ image = \"image.golden\" }}\nshape = \"VM.Standard2.1\"\nshape_config = {{}}\n\n[instance.big]\nsource = {{ image = \"image.golden\" }}\nshape = \"VM.Optimized3.Flex\"\nshape_config = {{ ocpus = 16, memory_in_gbs = 64 }}\n\n[instance.arm]\nshape = \"VM.Standard.A1.Flex\"\nshape_config = {{ ocpus = 1, memory_in_gbs = 6 }}\n",
        GOLDEN
    ));
    let before = p.emu.stats();
    let plan = p.kiln(&["plan"]).await;
    assert_eq!(plan.code, 1, "{plan:?}");
    let calls = support::calls_between(&before, &p.emu.stats());
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("LaunchInstance") || c.starts_with("CreateImage")),
        "{calls:?}"
    );
    insta::assert_snapshot!("image_shapes_incompatible", scrub(&plan.stderr, Some(&p)));
    // Fixed, it plans.
    p.write(GOLDEN);
    let ok = p.kiln(&["plan"]).await;
    assert_eq!(ok.code, 0, "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_the_global_schema_lacks_is_a_plan_time_error() {
    let p = Project::new(support::config(0.002)).await;
    p.write(
        &GOLDEN.replace(
            r#"capabilities = { "Compute.Firmware" = "UEFI_64", "Storage.ConsistentVolumeNaming" = true }"#,
            r#"capabilities = { "Compute.Firmware" = "UEFI_32", "Compute.SecureBot" = true, "Compute.SecureBoot" = "yes" }"#,
        ),
    );
    let plan = p.kiln(&["plan"]).await;
    assert_eq!(plan.code, 1, "{plan:?}");
    insta::assert_snapshot!("image_capabilities_invalid", scrub(&plan.stderr, Some(&p)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_refuses_a_launch_on_a_shape_the_image_does_not_list() {
    let emu = support::emulator().await;
    let api = Api::new(&emu);
    let src = api.launch("src", json!({})).await;
    support::fast_forward(&emu);
    let made = api
        .post(
            "/images",
            &json!({ "compartmentId": COMPARTMENT, "instanceId": src["id"], "displayName": "golden" }),
        )
        .await;
    assert_eq!(made.status, 200, "{made:?}");
    let id = made.body["id"].as_str().unwrap().to_string();
    support::fast_forward(&emu);
    // A captured image is compatible with its source's shape family.
    let listed = api.ok(&format!("/images/{id}/shapes")).await;
    let shapes: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["shape"].as_str().unwrap())
        .collect();
    assert!(
        shapes.contains(&"VM.Standard2.1") && !shapes.contains(&"VM.Standard.A1.Flex"),
        "{shapes:?}"
    );
    let on = |shape: &str, cfg: Value| json!({ "shape": shape, "shapeConfig": cfg, "sourceDetails": { "sourceType": "image", "imageId": id } });
    assert_eq!(
        api.launch_body("x", on("VM.Standard2.1", Value::Null))["shape"],
        "VM.Standard2.1"
    );
    // Launchable before the entry goes.
    let fine = api
        .post(
            "/instances",
            &api.launch_body("fine", on("VM.Standard2.1", Value::Null)),
        )
        .await;
    assert_eq!(fine.status, 200, "{fine:?}");
    assert_eq!(
        api.delete(&format!("/images/{id}/shapes/VM.Standard2.1"))
            .await
            .status,
        204
    );
    let refused = api
        .post(
            "/instances",
            &api.launch_body("no", on("VM.Standard2.1", Value::Null)),
        )
        .await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(refused.body["code"], "InvalidParameter");
    assert_eq!(
        refused.body["message"],
        format!("Shape VM.Standard2.1 is not valid for image {id}.")
    );
    // A range: within it launches, beyond it is refused the same way.
    let put = api
        .put(
            &format!("/images/{id}/shapes/VM.Standard.E4.Flex"),
            &json!({ "ocpuConstraints": { "min": 1, "max": 2 } }),
        )
        .await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(
        put.body,
        json!({ "imageId": id, "shape": "VM.Standard.E4.Flex", "ocpuConstraints": { "min": 1, "max": 2 }, "memoryConstraints": null })
    );
    let big = api
        .post(
            "/instances",
            &api.launch_body(
                "big",
                on(
                    "VM.Standard.E4.Flex",
                    json!({ "ocpus": 4, "memoryInGBs": 16 }),
                ),
            ),
        )
        .await;
    assert_eq!(
        (big.status, big.body["code"].as_str()),
        (400, Some("InvalidParameter")),
        "{big:?}"
    );
    let small = api
        .post(
            "/instances",
            &api.launch_body(
                "small",
                on(
                    "VM.Standard.E4.Flex",
                    json!({ "ocpus": 2, "memoryInGBs": 16 }),
                ),
            ),
        )
        .await;
    assert_eq!(small.status, 200, "{small:?}");
    // A boot volume replacement onto the image is refused for an instance on a shape it lacks.
    let fine_id = fine.body["id"].as_str().unwrap().to_string();
    support::fast_forward(&emu);
    let replace = api
        .put(
            &format!("/instances/{fine_id}"),
            &json!({ "sourceDetails": { "sourceType": "image", "imageId": id } }),
        )
        .await;
    assert_eq!(replace.status, 400, "{replace:?}");
    assert_eq!(
        replace.body["message"],
        format!("Shape VM.Standard2.1 is not valid for image {id}.")
    );
}
