//! The launch settings that are OCI objects (`instance_options`, `launch_options`,
//! `availability_config`, `platform_config`): sent at launch, read back with GetInstance to a
//! clean plan, changed in place where UpdateInstanceDetails allows it and replaced (with the
//! reason) where not, and written back by `kiln import`.

use crate::support::{self, Project};

const HARDENED: &str = "[instance.web]\ninstance_options = { are_legacy_imds_endpoints_disabled = true }\nlaunch_options = { is_pv_encryption_in_transit_enabled = true, network_type = \"PARAVIRTUALIZED\" }\navailability_config = { recovery_action = \"STOP_INSTANCE\", is_live_migration_preferred = true }\nplatform_config = { type = \"AMD_VM\", is_secure_boot_enabled = true, is_measured_boot_enabled = true, is_trusted_platform_module_enabled = true }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_settings_round_trip_update_in_place_or_replace_and_import_back() {
    let p = Project::new(support::config(0.002)).await;
    p.write(HARDENED);
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let id = p.state()["resources"]["instance.web"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let live = p.client().get_instance(&id).await.unwrap().body;
    let x = &live.extra;
    assert_eq!(x["instanceOptions"]["areLegacyImdsEndpointsDisabled"], true);
    assert_eq!(x["launchOptions"]["isPvEncryptionInTransitEnabled"], true);
    assert_eq!(x["availabilityConfig"]["recoveryAction"], "STOP_INSTANCE");
    assert_eq!(x["platformConfig"]["isSecureBootEnabled"], true);
    assert_eq!(x["platformConfig"]["isTrustedPlatformModuleEnabled"], true);
    let clean = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(clean.code, 0, "read back as launched: {clean:?}");

    // In place: instance options, availability config, launch options' in-transit encryption.
    p.write(
        &HARDENED
            .replace(
                "are_legacy_imds_endpoints_disabled = true",
                "are_legacy_imds_endpoints_disabled = false",
            )
            .replace("\"STOP_INSTANCE\"", "\"RESTORE_INSTANCE\"")
            .replace(
                "is_pv_encryption_in_transit_enabled = true",
                "is_pv_encryption_in_transit_enabled = false",
            ),
    );
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains("~ instance.web") && !plan.stdout.contains("-/+"),
        "{plan:?}"
    );
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    assert_eq!(
        p.state()["resources"]["instance.web"]["id"],
        id.as_str(),
        "the same instance"
    );
    let live = p.client().get_instance(&id).await.unwrap().body;
    assert_eq!(
        live.extra["instanceOptions"]["areLegacyImdsEndpointsDisabled"],
        false
    );
    assert_eq!(
        live.extra["availabilityConfig"]["recoveryAction"],
        "RESTORE_INSTANCE"
    );
    assert_eq!(
        live.extra["launchOptions"]["isPvEncryptionInTransitEnabled"],
        false
    );
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);

    // Replaced, with the reason: the platform configuration is set at launch only.
    p.write(&HARDENED.replace(
        "is_measured_boot_enabled = true",
        "is_measured_boot_enabled = false",
    ));
    let plan = p.kiln(&["plan"]).await;
    assert!(plan.stdout.contains("-/+ instance.web"), "{plan:?}");
    assert!(
        plan.stdout
            .contains("# forces replacement (OCI sets the platform configuration at launch only)"),
        "{plan:?}"
    );
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let new_id = p.state()["resources"]["instance.web"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_id, id);

    // `kiln import` writes the settings back: another manifest adopting it (under the address it
    // was made as: its `kiln-address` tag) plans clean.
    std::fs::remove_dir_all(p.path().join("state")).unwrap();
    std::fs::write(
        p.path().join("kiln.toml"),
        format!("{}# adopted\n", p.header()),
    )
    .unwrap();
    let import = p.kiln(&["import", "instance.web", &new_id]).await;
    assert_eq!(import.code, 0, "{import:?}");
    let manifest = std::fs::read_to_string(p.path().join("kiln.toml")).unwrap();
    for line in [
        "instance_options = { are_legacy_imds_endpoints_disabled = true }",
        "launch_options = { is_pv_encryption_in_transit_enabled = true }",
        "availability_config = { recovery_action = \"STOP_INSTANCE\", is_live_migration_preferred = true }",
        "platform_config = { type = \"AMD_VM\", is_secure_boot_enabled = true, is_trusted_platform_module_enabled = true }",
    ] {
        assert!(manifest.contains(line), "{line}\n{manifest}");
    }
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
}

/// The primary VNIC of the instance at `address`, as GetVnic returns it.
async fn primary_vnic(p: &Project, address: &str) -> (String, serde_json::Value) {
    let id = p.state()["resources"][address]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let c = p.client();
    let attachments = c
        .list_vnic_attachments(support::COMPARTMENT, Some(&id))
        .await
        .unwrap();
    assert_eq!(attachments.len(), 1, "{attachments:?}");
    let vnic = c
        .get_vnic(attachments[0].vnic_id.as_deref().unwrap())
        .await
        .unwrap()
        .body;
    (id, serde_json::to_value(vnic).unwrap())
}

/// `nsg_ids`, `hostname_label`, `private_ip`, `skip_source_dest_check`: sent in
/// CreateVnicDetails, read back clean; all but `private_ip` change in place with UpdateVnic
/// (the instance stays), a new `private_ip` replaces the instance with the
/// reason; the emulator refuses an address outside the subnet, the manifest a bad label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_vnic_settings_round_trip_update_with_update_vnic_or_replace() {
    let p = Project::new(support::config(0.002)).await;
    let nsg = p.emu.fixtures().nsg_id;
    let manifest = format!("[instance.web]\nnsg_ids = [\"{nsg}\"]\nhostname_label = \"web-one\"\nprivate_ip = \"10.0.3.7\"\nskip_source_dest_check = true\n");
    p.write(&manifest);
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let (id, vnic) = primary_vnic(&p, "instance.web").await;
    assert_eq!(vnic["nsgIds"], serde_json::json!([nsg]));
    assert_eq!(vnic["hostnameLabel"], "web-one");
    assert_eq!(vnic["privateIp"], "10.0.3.7");
    assert_eq!(vnic["skipSourceDestCheck"], true);
    let clean = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(clean.code, 0, "read back as launched: {clean:?}");

    // In place, on the VNIC (UpdateVnic): NSGs, hostname label, source/destination check.
    p.write(
        &manifest
            .replace(&format!("[\"{nsg}\"]"), "[]")
            .replace("web-one", "web-two")
            .replace(
                "skip_source_dest_check = true",
                "skip_source_dest_check = false",
            ),
    );
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains("~ instance.web") && !plan.stdout.contains("-/+"),
        "{plan:?}"
    );
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let (same, vnic) = primary_vnic(&p, "instance.web").await;
    assert_eq!(same, id, "the same instance");
    assert_eq!(vnic["nsgIds"], serde_json::json!([]));
    assert_eq!(vnic["hostnameLabel"], "web-two");
    assert_eq!(vnic["skipSourceDestCheck"], false);
    let clean = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(clean.code, 0, "{clean:?}");

    // Replaced, with the reason: UpdateVnicDetails has no private IP.
    let moved = manifest.replace("10.0.3.7", "10.0.3.8");
    p.write(&moved);
    let plan = p.kiln(&["plan"]).await;
    assert!(plan.stdout.contains("-/+ instance.web"), "{plan:?}");
    assert!(
        plan.stdout
            .contains("OCI cannot change the primary private IP of a VNIC"),
        "{plan:?}"
    );
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let (new_id, vnic) = primary_vnic(&p, "instance.web").await;
    assert_ne!(new_id, id);
    assert_eq!(vnic["privateIp"], "10.0.3.8");
    assert_eq!(vnic["hostnameLabel"], "web-one");
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);

    // The emulator refuses an address outside the subnet's CIDR; the manifest a bad label.
    p.write(
        &moved
            .replace("[instance.web]", "[instance.other]")
            .replace("10.0.3.8", "10.9.0.1")
            .replace("web-one", "other"),
    );
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_ne!(apply.code, 0, "{apply:?}");
    assert!(apply.stderr.contains("10.9.0.1"), "{apply:?}");
    p.write(&moved.replace("web-one", "1-bad"));
    let plan = p.kiln(&["plan"]).await;
    assert_ne!(plan.code, 0);
    assert!(
        plan.stderr
            .contains("`hostname_label` `1-bad` is not a hostname label"),
        "{plan:?}"
    );
}

/// A boot volume replacement (`replace_method = "boot_volume"`) planned together with a primary
/// VNIC edit: the volume is replaced with UpdateInstance and the VNIC's settings go to UpdateVnic
/// (they were folded into the UpdateInstance body, whose model has no such field, and dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_volume_replacement_with_a_vnic_edit_updates_the_vnic_too() {
    let p = Project::new(support::config(0.002)).await;
    let f = p.emu.fixtures();
    let ol: Vec<String> = f
        .platform_images
        .iter()
        .filter(|i| i.operating_system == "Oracle Linux" && i.arch == "x86_64")
        .map(|i| i.id.clone())
        .collect();
    let manifest = |image: &str, label: &str| {
        format!("[instance.web]\nreplace_method = \"boot_volume\"\nsource = {{ image = \"{image}\" }}\nhostname_label = \"{label}\"\n")
    };
    p.write(&manifest(&ol[0], "web-one"));
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let (id, _) = primary_vnic(&p, "instance.web").await;
    p.write(&manifest(&ol[1], "web-two"));
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains("boot volume replacement") && !plan.stdout.contains("-/+"),
        "{plan:?}"
    );
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let (same, vnic) = primary_vnic(&p, "instance.web").await;
    assert_eq!(same, id, "the same instance");
    assert_eq!(vnic["hostnameLabel"], "web-two", "{vnic}");
    let clean = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(clean.code, 0, "{clean:?}");
}
