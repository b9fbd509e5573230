//! What Terraform's OCI provider calls, with the fields it reads; the emulator's stats and request
//! log; kiln's image lookup against the emulator's images.

use super::*;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::{self, emulator, qs, Api, COMPARTMENT};

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
