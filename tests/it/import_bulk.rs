//! `kiln import --compartment`: every matching instance and custom image adopted at once, the
//! next plan empty; filters, already-managed and skipped resources, `--dry-run`, `--out`, a
//! second run that finishes what a first one left, and an adopted image kiln cannot make again.

use serde_json::json;

use kiln::oci::models::{CreateImageDetails, Image, Instance, InstanceAction};
use kiln::oci::{Client, MutationOptions};

use crate::support::{self, scrub, Project, COMPARTMENT};

/// Launch `name` by hand (not through kiln), with freeform `tags`, from `image` (default: the
/// first platform image).
async fn launch(p: &Project, name: &str, tags: &[(&str, &str)], image: Option<&str>) -> Instance {
    let mut d = support::launch_details(&p.emu, name);
    for (k, v) in tags {
        d.freeform_tags.insert(k.to_string(), v.to_string());
    }
    if let Some(i) = image {
        d.source_details =
            serde_json::from_value(json!({"sourceType": "image", "imageId": i})).unwrap();
    }
    p.client()
        .launch_instance(&d, &MutationOptions::default())
        .await
        .unwrap()
        .body
}

async fn running(c: &Client, id: &str) {
    c.wait_for_instance(id, &["RUNNING"], &support::wait(20))
        .await
        .unwrap();
}

/// A custom image imported from an Object Storage object by hand, with freeform `tags`.
async fn import_image(p: &Project, name: &str, tags: &[(&str, &str)]) -> Image {
    let c = p.client();
    let f = p.emu.fixtures();
    support::put_image_file(&p.emu, &c, &format!("{name}.qcow2")).await;
    let mut d: CreateImageDetails = serde_json::from_value(json!({
        "compartmentId": COMPARTMENT,
        "displayName": name,
        "imageSourceDetails": {"sourceType": "objectStorageTuple", "namespaceName": f.namespace,
            "bucketName": f.image_bucket, "objectName": format!("{name}.qcow2"),
            "operatingSystem": "Custom Linux", "operatingSystemVersion": "1"}
    }))
    .unwrap();
    for (k, v) in tags {
        d.freeform_tags.insert(k.to_string(), v.to_string());
    }
    c.create_image(&d, &MutationOptions::default())
        .await
        .unwrap()
        .body
}

fn manifest(p: &Project) -> String {
    std::fs::read_to_string(p.path().join("kiln.toml")).unwrap()
}

fn state_text(p: &Project) -> Option<String> {
    std::fs::read_to_string(p.path().join("state/default.json")).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_import_of_20_instances_and_3_images_then_a_clean_plan() {
    let p = Project::new(support::config(0.002)).await;
    p.write("# Our web tier.\n[instance.web] # managed since day one\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let c = p.client();
    // Three custom images made by hand: one captured from an instance, two imported.
    let builder = launch(&p, "builder", &[], None).await;
    running(&c, &builder.id).await;
    let captured: CreateImageDetails = serde_json::from_value(json!({
        "compartmentId": COMPARTMENT, "displayName": "golden", "instanceId": builder.id,
        "freeformTags": {"team": "web"}
    }))
    .unwrap();
    let golden = c
        .create_image(&captured, &MutationOptions::default())
        .await
        .unwrap()
        .body;
    let mut images = vec![golden.clone()];
    images.push(import_image(&p, "base 2024/1", &[]).await);
    images.push(import_image(&p, "base 2024/2", &[("team", "db")]).await);
    for i in &images {
        c.wait_for_image(&i.id, &["AVAILABLE"], &support::wait(20))
            .await
            .unwrap();
    }
    running(&c, &builder.id).await;
    // 19 more instances: two from the captured image, one named like the managed `web`, one
    // with a name that is no table name, one stopped.
    let mut made = vec![builder.clone()];
    for n in 0..15 {
        made.push(launch(&p, &format!("app-{n:02}"), &[("team", "app")], None).await);
    }
    made.push(launch(&p, "from-golden-1", &[], Some(&golden.id)).await);
    made.push(launch(&p, "from-golden-2", &[], Some(&golden.id)).await);
    made.push(launch(&p, "web", &[], None).await);
    made.push(launch(&p, "Batch Worker #1", &[("owner", "ops")], None).await);
    assert_eq!(made.len(), 20);
    for i in &made {
        running(&c, &i.id).await;
    }
    let stopped = &made[1];
    c.instance_action(
        &stopped.id,
        InstanceAction::Stop,
        None,
        &MutationOptions::default(),
    )
    .await
    .unwrap();
    c.wait_for_instance(&stopped.id, &["STOPPED"], &support::wait(20))
        .await
        .unwrap();

    // A dry run writes nothing.
    let (before, state_before) = (manifest(&p), state_text(&p));
    let dry = p
        .kiln(&["import", "--compartment", COMPARTMENT, "--dry-run"])
        .await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("would import 23 resources"), "{dry:?}");
    assert_eq!(manifest(&p), before, "a dry run writes no manifest");
    assert_eq!(state_text(&p), state_before, "a dry run writes no state");

    let out = p.kiln(&["import", "--compartment", COMPARTMENT]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Imported 23 resources"), "{out:?}");
    let web = p.state()["resources"]["instance.web"]["id"].clone();
    assert!(
        out.stdout.contains(&format!(
            "= {:<28} {} \"web\": already managed",
            "instance.web",
            web.as_str().unwrap()
        )),
        "{out:?}"
    );
    let text = manifest(&p);
    assert!(
        text.contains("# Our web tier.\n[instance.web] # managed since day one\n"),
        "comments kept:\n{text}"
    );
    let st = p.state();
    let resources = st["resources"].as_object().unwrap();
    assert_eq!(resources.len(), 24, "{resources:#?}");
    for i in &made {
        assert!(
            resources.values().any(|r| r["id"] == json!(i.id)),
            "{} recorded",
            i.id
        );
    }
    for i in &images {
        assert!(resources.values().any(|r| r["id"] == json!(i.id)));
        assert!(text.contains(&format!("source = {{ adopted = \"{}\" }}", i.id)));
    }
    // Names: unique, valid, never the managed `web`'s; the instances from the captured image
    // reference it; the stopped one stays stopped.
    for table in [
        "[instance.web-2]",
        "[instance.Batch-Worker-1]",
        "[image.golden]",
        "[image.base-2024-1]",
        "[image.base-2024-2]",
    ] {
        assert!(text.contains(table), "{table} in:\n{text}");
    }
    assert_eq!(
        text.matches("source = { image = \"image.golden\" }")
            .count(),
        2,
        "{text}"
    );
    assert_eq!(text.matches("state = \"STOPPED\"").count(), 1, "{text}");
    assert_eq!(
        st["resources"]["instance.from-golden-1"]["id"],
        json!(made[16].id)
    );

    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");

    // Again: everything is managed, nothing changes.
    let again = p.kiln(&["import", "--compartment", COMPARTMENT]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("Nothing to import"), "{again:?}");
    assert_eq!(
        again.stdout.matches("already managed").count(),
        24,
        "{again:?}"
    );
    assert_eq!(manifest(&p), text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_import_filters_by_tag_and_name_writes_out_files_and_skips_what_it_cannot_adopt() {
    // Lifecycles at real speed, jumped over with `fast_forward`: the last launch stays
    // PROVISIONING.
    let p = Project::new(support::config(1.0)).await;
    p.write("");
    let blue1 = launch(&p, "blue-1", &[("team", "blue")], None).await;
    let blue2 = launch(&p, "blue-2", &[("team", "blue"), ("env", "prod")], None).await;
    let red = launch(&p, "red-1", &[("team", "red")], None).await;
    let image = import_image(&p, "blue-image", &[("team", "blue")]).await;
    support::fast_forward(&p.emu);
    let c = p.client();
    for i in [&blue1, &blue2, &red] {
        running(&c, &i.id).await;
    }
    c.wait_for_image(&image.id, &["AVAILABLE"], &support::wait(10))
        .await
        .unwrap();
    let late = launch(&p, "blue-late", &[("team", "blue")], None).await;
    let before = manifest(&p);

    let dry = p
        .kiln(&[
            "import",
            "--compartment",
            COMPARTMENT,
            "--tag",
            "team=blue",
            "--dry-run",
        ])
        .await;
    assert_eq!(dry.code, 0, "{dry:?}");
    insta::assert_snapshot!("bulk_dry_run", scrub(&dry.stdout, Some(&p)));
    assert!(dry.stdout.contains(&late.id) && !dry.stdout.contains(&red.id));
    assert_eq!(manifest(&p), before);
    assert_eq!(state_text(&p), None, "a dry run writes no state");

    // Tags all match.
    let both = p
        .kiln(&[
            "import",
            "--compartment",
            COMPARTMENT,
            "--tag",
            "team=blue",
            "--tag",
            "env=prod",
            "--dry-run",
        ])
        .await;
    assert_eq!(both.code, 0, "{both:?}");
    assert!(both.stdout.contains("[instance.blue-2]"), "{both:?}");
    assert!(!both.stdout.contains("[instance.blue-1]"), "{both:?}");
    assert!(!both.stdout.contains("[image.blue-image]"), "{both:?}");

    // `--name` and `--out`: the tables in a new file, nothing recorded.
    let out = p
        .kiln(&[
            "import",
            "--compartment",
            COMPARTMENT,
            "--name",
            "^red",
            "--out",
            "red.toml",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("nothing was recorded in the state"),
        "{out:?}"
    );
    let red_tables = std::fs::read_to_string(p.path().join("red.toml")).unwrap();
    assert!(red_tables.contains("[instance.red-1]"), "{red_tables}");
    assert!(!red_tables.contains("blue"), "{red_tables}");
    assert_eq!(manifest(&p), before);
    assert_eq!(state_text(&p), None);
    // An existing file is not overwritten.
    let exists = p
        .kiln(&[
            "import",
            "--compartment",
            COMPARTMENT,
            "--name",
            "^red",
            "--out",
            "red.toml",
        ])
        .await;
    assert_eq!(exists.code, 1, "{exists:?}");
    assert!(exists.stderr.contains("exists"), "{exists:?}");

    let blue = p
        .kiln(&["import", "--compartment", COMPARTMENT, "--tag", "team=blue"])
        .await;
    assert_eq!(blue.code, 0, "{blue:?}");
    assert!(blue.stdout.contains("Imported 3 resources"), "{blue:?}");
    assert!(
        blue.stdout.contains("skipped, it is PROVISIONING"),
        "{blue:?}"
    );
    let st = p.state();
    assert_eq!(st["resources"]["instance.blue-1"]["id"], json!(blue1.id));
    assert_eq!(st["resources"]["image.blue-image"]["id"], json!(image.id));
    assert!(st["resources"].get("instance.blue-late").is_none());
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");

    // The `--out` tables added to kiln.toml by hand: the next import records them under their
    // addresses (by the comment above each), adding no second table.
    let mut m = manifest(&p);
    m.push_str(&red_tables);
    std::fs::write(p.path().join("kiln.toml"), &m).unwrap();
    let recorded = p
        .kiln(&["import", "--compartment", COMPARTMENT, "--name", "^red"])
        .await;
    assert_eq!(recorded.code, 0, "{recorded:?}");
    assert!(
        recorded.stdout.contains("in kiln.toml already"),
        "{recorded:?}"
    );
    assert_eq!(manifest(&p), m, "no table added");
    assert_eq!(
        p.state()["resources"]["instance.red-1"]["id"],
        json!(red.id)
    );
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_image_gone_from_oci_is_refused_not_rebuilt() {
    let p = Project::new(support::config(0.002)).await;
    p.write("");
    let image = import_image(&p, "legacy", &[]).await;
    let c = p.client();
    c.wait_for_image(&image.id, &["AVAILABLE"], &support::wait(10))
        .await
        .unwrap();
    let out = p.kiln(&["import", "--compartment", COMPARTMENT]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);
    let live = c.get_image(&image.id).await.unwrap();
    c.delete_image(&image.id, &MutationOptions::if_match(live.etag.as_deref()))
        .await
        .unwrap();
    let plan = p.kiln(&["plan"]).await;
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(
        plan.stderr.contains("kiln::plan::adopted_image")
            && plan.stderr.contains("it is gone from OCI"),
        "{plan:?}"
    );
    assert_eq!(p.live_images().await.len(), 0, "nothing was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_import_of_another_region_writes_its_region_and_plans_clean() {
    let p = Project::new(support::config(0.002)).await;
    let (phx, header) = support::second_region(&p, "us-phoenix-1").await;
    std::fs::write(p.path().join("kiln.toml"), format!("{header}# West.\n")).unwrap();
    let west = support::client(&phx);
    let mine = west
        .launch_instance(
            &support::launch_details(&phx, "west-1"),
            &MutationOptions::default(),
        )
        .await
        .unwrap()
        .body;
    running(&west, &mine.id).await;
    // One in the default region too, which `--region phx` leaves alone.
    let east = launch(&p, "east-1", &[], None).await;

    let out = p
        .kiln(&["import", "--compartment", COMPARTMENT, "--region", "phx"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Imported 1 resource of"), "{out:?}");
    assert!(out.stdout.contains("in us-phoenix-1"), "{out:?}");
    let text = manifest(&p);
    assert!(
        text.contains("[instance.west-1]") && text.contains("region = \"us-phoenix-1\""),
        "{text}"
    );
    assert!(!text.contains("east-1"), "{text}");
    assert_eq!(
        p.state()["resources"]["instance.west-1"]["id"],
        json!(mine.id)
    );
    assert!(!out.stdout.contains(&east.id));
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
}
