//! The launch settings beyond the object tables (`agent_config` with its plugins,
//! `preemptible`, `boot_volume_vpus_per_gb`, `kms_key_id`, `capacity_reservation_id`): sent at
//! launch, read back with GetInstance (and GetBootVolume) to a clean plan, changed in place where
//! OCI allows it (UpdateInstance; the boot volume's UpdateBootVolume and UpdateBootVolumeKmsKey)
//! and replaced with the reason where not, written back by `kiln import`, refused by the emulator
//! where OCI refuses them.

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
/// boot volume, read back clean; the boot volume's performance and key change in place (the same
/// instance, GetInstance's launch-time `sourceDetails` untouched, the volume read back), a second
/// plan clean, imported back from the volume; a change of `preemptible` replaces the instance with
/// the reason. The emulator refuses a key it does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_preemptible_vpus_and_kms_key_round_trip_in_place_or_replace() {
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

    // The boot volume's performance and key change in place, with the reason.
    let in_place = manifest.replace("= 20", "= 30").replace(&keys[0], &keys[1]);
    p.write(&in_place);
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains("~ instance.web") && !plan.stdout.contains("-/+"),
        "{plan:?}"
    );
    insta::assert_snapshot!("vpus_kms_in_place", support::scrub(&plan.stdout, Some(&p)));
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(instance_id(&p).await, id, "the same instance");
    let v = boot_volume(&p, &id).await;
    assert_eq!(
        (
            v["vpusPerGB"].clone(),
            v["kmsKeyId"].clone(),
            v["lifecycleState"].clone()
        ),
        (json!(30), json!(keys[1]), json!("AVAILABLE")),
        "{v}"
    );
    // GetInstance keeps what the instance was launched with (as OCI's does).
    let i = live(&p, &id).await;
    assert_eq!(i["sourceDetails"]["bootVolumeVpusPerGB"], 20);
    assert_eq!(i["sourceDetails"]["kmsKeyId"], keys[0].as_str());
    let clean = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(clean.code, 0, "{clean:?}");

    // One alone: only its call.
    p.write(&in_place.replace("= 30", "= 40"));
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(instance_id(&p).await, id, "the same instance");
    let v = boot_volume(&p, &id).await;
    assert_eq!(
        (v["vpusPerGB"].clone(), v["kmsKeyId"].clone()),
        (json!(40), json!(keys[1]))
    );
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);

    // Imported back: the volume's values, not the launch's.
    let back = import_back(&p, &id).await;
    for line in [
        "boot_volume_vpus_per_gb = 40".to_string(),
        format!("kms_key_id = \"{}\"", keys[1]),
    ] {
        assert!(back.contains(&line), "{line}\n{back}");
    }

    // Preemptible capacity is set at launch: a change replaces, with the reason.
    p.write(&in_place.replace("= 30", "= 40").replace(
        "preserve_boot_volume = true",
        "preserve_boot_volume = false",
    ));
    let plan = p.kiln(&["plan"]).await;
    assert!(plan.stdout.contains("-/+ instance.web"), "{plan:?}");
    insta::assert_snapshot!(
        "preemptible_replace",
        support::scrub(&plan.stdout, Some(&p))
    );
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let new_id = instance_id(&p).await;
    assert_ne!(new_id, id);
    let v = boot_volume(&p, &new_id).await;
    assert_eq!(
        (v["vpusPerGB"].clone(), v["kmsKeyId"].clone()),
        (json!(40), json!(keys[1]))
    );
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);

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

/// The emulator's UpdateBootVolume and UpdateBootVolumeKmsKey as OCI has them: If-Match of
/// another version is 412 and changes nothing; the volume is PROVISIONING after a change, then
/// AVAILABLE (a second change before that is 409); bad VPUs and unknown keys are 400. And kiln's
/// apply, meeting a volume someone else is changing, waits for it to be AVAILABLE and sends its
/// change with the If-Match of the version it then read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_volume_updates_are_guarded_by_if_match() {
    let p = Project::new(support::config(0.002)).await;
    let keys = p.emu.fixtures().kms_key_ids;
    p.write("[instance.web]\nboot_volume_vpus_per_gb = 20\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let id = instance_id(&p).await;
    let api = Api::new(&p.emu);
    let v = boot_volume(&p, &id).await;
    let vol = v["id"].as_str().unwrap().to_string();
    let path = format!("/bootVolumes/{vol}");
    let etag = api.get(&path).await.header("etag").unwrap().to_string();

    let stale = api
        .call(
            "PUT",
            &path,
            Some(&json!({"vpusPerGB": 30})),
            &[("if-match", "not-this-one")],
        )
        .await;
    assert_eq!(stale.status, 412, "{stale:?}");
    assert_eq!(stale.body["code"], "NoEtagMatch");
    let stale = api
        .call(
            "PUT",
            &format!("{path}/kmsKey"),
            Some(&json!({"kmsKeyId": keys[0]})),
            &[("if-match", "not-this-one")],
        )
        .await;
    assert_eq!(stale.status, 412, "{stale:?}");
    assert_eq!(boot_volume(&p, &id).await["vpusPerGB"], 20, "unchanged");

    for bad in [
        json!({"vpusPerGB": 25}),
        json!({"vpusPerGB": 130}),
        json!({"isAutoTuneEnabled": true}),
    ] {
        let r = api.call("PUT", &path, Some(&bad), &[]).await;
        assert_eq!(
            (r.status, r.body["code"].clone()),
            (400, json!("InvalidParameter")),
            "{bad}: {r:?}"
        );
    }
    let unknown = api
        .call(
            "PUT",
            &format!("{path}/kmsKey"),
            Some(&json!({"kmsKeyId": keys[0].replace("aaaaaaaa", "aaaaaaab")})),
            &[],
        )
        .await;
    assert_eq!(unknown.status, 400, "{unknown:?}");
    assert_eq!(
        unknown.body["code"],
        "RelatedResourceNotAuthorizedOrNotFound"
    );

    // Someone else is changing the performance (PROVISIONING): kiln waits, then sends its
    // change with the If-Match of the version it read.
    p.write("[instance.web]\nboot_volume_vpus_per_gb = 30\n");
    let ok = api
        .call(
            "PUT",
            &path,
            Some(&json!({"vpusPerGB": 50})),
            &[("if-match", etag.as_str())],
        )
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.body["vpusPerGB"], 50);
    assert_eq!(ok.body["lifecycleState"], "PROVISIONING");
    let busy = api
        .call("PUT", &path, Some(&json!({"vpusPerGB": 60})), &[])
        .await;
    assert_eq!(
        (busy.status, busy.body["code"].clone()),
        (409, json!("IncorrectState")),
        "{busy:?}"
    );
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let v = boot_volume(&p, &id).await;
    assert_eq!(
        (v["vpusPerGB"].clone(), v["lifecycleState"].clone()),
        (json!(30), json!("AVAILABLE")),
        "{v}"
    );
    assert_eq!(instance_id(&p).await, id);
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);
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
