//! The launch settings beyond the object tables (`agent_config` with its plugins,
//! `preemptible`, `boot_volume_vpus_per_gb`, `kms_key_id`, `capacity_reservation_id`): sent at
//! launch, read back with GetInstance (and GetBootVolume) to a clean plan, changed in place where
//! UpdateInstanceDetails allows it and replaced with the reason where not, written back by `kiln
//! import`, refused by the emulator where OCI refuses them.

use serde_json::{json, Value};

use crate::support::{self, Api, Project};

async fn instance_id(p: &Project) -> String {
    p.state()["resources"]["instance.web"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn live(p: &Project, id: &str) -> Value {
    let i = p.client().get_instance(id).await.unwrap().body;
    serde_json::to_value(i).unwrap()
}

/// The boot volume attached to `instance`, as GetBootVolume returns it.
async fn boot_volume(p: &Project, instance: &str) -> Value {
    let api = Api::new(&p.emu);
    let ad = &p.emu.fixtures().availability_domains[0];
    let a = api
        .get(&format!(
            "/bootVolumeAttachments?{}",
            support::qs(&[
                ("compartmentId", support::COMPARTMENT),
                ("availabilityDomain", ad),
                ("instanceId", instance)
            ])
        ))
        .await;
    let volume = a.body[0]["bootVolumeId"].as_str().unwrap().to_string();
    api.get(&format!("/bootVolumes/{volume}")).await.body
}

/// After `kiln import` of the instance into an empty manifest: the table it wrote, and a plan
/// of it that must be clean.
async fn import_back(p: &Project, id: &str) -> String {
    std::fs::remove_dir_all(p.path().join("state")).unwrap();
    std::fs::write(
        p.path().join("kiln.toml"),
        format!("{}# adopted\n", p.header()),
    )
    .unwrap();
    let import = p.kiln(&["import", "instance.web", id]).await;
    assert_eq!(import.code, 0, "{import:?}");
    let manifest = std::fs::read_to_string(p.path().join("kiln.toml")).unwrap();
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "{plan:?}\n{manifest}");
    manifest
}

const AGENT: &str = "[instance.web]\nagent_config = { is_monitoring_disabled = true, plugins = { \"Vulnerability Scanning\" = \"ENABLED\", \"Bastion\" = \"DISABLED\" } }\n";

/// `agent_config`: launched, read back clean; a flag and a plugin changed in place
/// (UpdateInstance), a plugin the manifest stops naming left as it is; imported back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_agent_config_round_trips_and_changes_in_place() {
    let p = Project::new(support::config(0.002)).await;
    p.write(AGENT);
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let id = instance_id(&p).await;
    let a = &live(&p, &id).await["agentConfig"];
    assert_eq!(a["isMonitoringDisabled"], true, "{a}");
    assert_eq!(a["isManagementDisabled"], false, "{a}");
    assert_eq!(
        a["pluginsConfig"],
        json!([{"name": "Vulnerability Scanning", "desiredState": "ENABLED"}, {"name": "Bastion", "desiredState": "DISABLED"}])
    );
    let clean = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(clean.code, 0, "read back as launched: {clean:?}");

    // In place: a flag and one plugin; the plugin no longer named keeps its state.
    p.write("[instance.web]\nagent_config = { is_monitoring_disabled = true, is_management_disabled = true, plugins = { \"Bastion\" = \"ENABLED\" } }\n");
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains("~ instance.web") && !plan.stdout.contains("-/+"),
        "{plan:?}"
    );
    insta::assert_snapshot!(
        "agent_config_in_place",
        support::scrub(&plan.stdout, Some(&p))
    );
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(instance_id(&p).await, id, "the same instance");
    let a = &live(&p, &id).await["agentConfig"];
    assert_eq!(a["isManagementDisabled"], true, "{a}");
    assert_eq!(
        a["pluginsConfig"],
        json!([{"name": "Vulnerability Scanning", "desiredState": "ENABLED"}, {"name": "Bastion", "desiredState": "ENABLED"}])
    );
    let clean = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(clean.code, 0, "{clean:?}");

    let manifest = import_back(&p, &id).await;
    assert!(
        manifest.contains("agent_config = { is_monitoring_disabled = true, is_management_disabled = true, plugins = { \"Vulnerability Scanning\" = \"ENABLED\", Bastion = \"ENABLED\" } }"),
        "{manifest}"
    );
}

/// `preemptible`, `boot_volume_vpus_per_gb`, `kms_key_id`: sent at launch, on the instance and its
/// boot volume, read back clean; a change of any replaces the instance with the reason; imported
/// back. The emulator refuses a key it does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_preemptible_vpus_and_kms_key_round_trip_or_replace() {
    let p = Project::new(support::config(0.002)).await;
    let keys = p.emu.fixtures().kms_key_ids;
    let manifest = format!("[instance.web]\npreemptible = {{ preserve_boot_volume = true }}\nboot_volume_vpus_per_gb = 20\nkms_key_id = \"{}\"\n", keys[0]);
    p.write(&manifest);
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let id = instance_id(&p).await;
    let i = live(&p, &id).await;
    assert_eq!(
        i["preemptibleInstanceConfig"],
        json!({"preemptionAction": {"type": "TERMINATE", "preserveBootVolume": true}})
    );
    assert_eq!(i["sourceDetails"]["bootVolumeVpusPerGB"], 20);
    assert_eq!(i["sourceDetails"]["kmsKeyId"], keys[0].as_str());
    let v = boot_volume(&p, &id).await;
    assert_eq!(v["vpusPerGB"], 20, "{v}");
    assert_eq!(v["kmsKeyId"], keys[0].as_str(), "{v}");
    let clean = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(clean.code, 0, "read back as launched: {clean:?}");

    // Each is set at launch: a change replaces, with the reason.
    let changed = manifest
        .replace(
            "preserve_boot_volume = true",
            "preserve_boot_volume = false",
        )
        .replace("= 20", "= 30")
        .replace(&keys[0], &keys[1]);
    p.write(&changed);
    let plan = p.kiln(&["plan"]).await;
    assert!(plan.stdout.contains("-/+ instance.web"), "{plan:?}");
    insta::assert_snapshot!(
        "preemptible_vpus_kms_replace",
        support::scrub(&plan.stdout, Some(&p))
    );
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let new_id = instance_id(&p).await;
    assert_ne!(new_id, id);
    let v = boot_volume(&p, &new_id).await;
    assert_eq!(
        (v["vpusPerGB"].clone(), v["kmsKeyId"].clone()),
        (json!(30), json!(keys[1]))
    );
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);

    let back = import_back(&p, &new_id).await;
    for line in [
        "preemptible = { preserve_boot_volume = false }".to_string(),
        "boot_volume_vpus_per_gb = 30".to_string(),
        format!("kms_key_id = \"{}\"", keys[1]),
    ] {
        assert!(back.contains(&line), "{line}\n{back}");
    }

    // A key the emulator does not know is refused, as OCI refuses it.
    p.write(&format!(
        "[instance.other]\nkms_key_id = \"{}\"\n",
        keys[0].replace("aaaaaaaa", "aaaaaaab")
    ));
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_ne!(apply.code, 0, "{apply:?}");
    assert!(
        apply
            .stderr
            .contains("RelatedResourceNotAuthorizedOrNotFound"),
        "{apply:?}"
    );
}

/// `capacity_reservation_id`: added to a running instance in place (UpdateInstance), read back
/// clean, imported back; the emulator refuses an unknown reservation and preemptible capacity in
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_capacity_reservation_changes_in_place() {
    let p = Project::new(support::config(0.002)).await;
    let reservation = p.emu.fixtures().capacity_reservation_id;
    p.write("[instance.web]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let id = instance_id(&p).await;
    assert_eq!(live(&p, &id).await["capacityReservationId"], Value::Null);

    let manifest = format!("[instance.web]\ncapacity_reservation_id = \"{reservation}\"\n");
    p.write(&manifest);
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains("~ instance.web") && !plan.stdout.contains("-/+"),
        "{plan:?}"
    );
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(instance_id(&p).await, id, "the same instance");
    assert_eq!(
        live(&p, &id).await["capacityReservationId"],
        reservation.as_str()
    );
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);

    // Launched in it, read back clean.
    p.write(&format!(
        "{manifest}[instance.two]\ncapacity_reservation_id = \"{reservation}\"\n"
    ));
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let two = p.state()["resources"]["instance.two"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        live(&p, &two).await["capacityReservationId"],
        reservation.as_str()
    );
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);

    // The emulator: an unknown reservation, and preemptible capacity in one (raw requests: the
    // manifest refuses the second itself).
    let api = Api::new(&p.emu);
    let f = p.emu.fixtures();
    let launch = |extra: Value| {
        let mut b = json!({
            "availabilityDomain": f.availability_domains[0], "compartmentId": support::COMPARTMENT,
            "shape": "VM.Standard.E4.Flex", "shapeConfig": {"ocpus": 1, "memoryInGBs": 16},
            "createVnicDetails": {"subnetId": f.public_subnet_id},
            "sourceDetails": {"sourceType": "image", "imageId": f.platform_images[0].id},
        });
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let unknown = api
        .call(
            "POST",
            "/instances",
            Some(&launch(
                json!({"capacityReservationId": reservation.replace("aaaaaaaa", "aaaaaaab")}),
            )),
            &[],
        )
        .await;
    assert_eq!(unknown.status, 400, "{unknown:?}");
    assert_eq!(
        unknown.body["code"],
        "RelatedResourceNotAuthorizedOrNotFound"
    );
    let both = api
        .call("POST", "/instances", Some(&launch(json!({"capacityReservationId": reservation, "preemptibleInstanceConfig": {"preemptionAction": {"type": "TERMINATE"}}}))), &[])
        .await;
    assert_eq!(both.status, 400, "{both:?}");
    assert_eq!(both.body["code"], "InvalidParameter");

    let back = import_back(&p, &id).await;
    assert!(
        back.contains(&format!("capacity_reservation_id = \"{reservation}\"")),
        "{back}"
    );
}
