//! `kiln import` round-trips: the rewritten manifest keeps every comment, and the next plan is empty.

use serde_json::json;

use kiln::oci::MutationOptions;

use crate::support::{self, scrub, Project};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_writes_the_table_keeps_comments_and_the_next_plan_is_empty() {
    let p = Project::new(support::config(0.002)).await;
    p.write("# Our web tier.\n[instance.web] # managed since day one\nfreeform_tags = { role = \"web\" }  # keep\n\n# Legacy boxes are imported below.\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    // Someone made an instance by hand, then stopped it and tagged it.
    let c = p.client();
    let mut d = support::launch_details(&p.emu, "legacy-box");
    d.freeform_tags.insert("owner".into(), "ops".into());
    let legacy = c
        .launch_instance(&d, &MutationOptions::default())
        .await
        .unwrap()
        .body;
    c.wait_for_instance(&legacy.id, &["RUNNING"], &support::wait(10))
        .await
        .unwrap();
    c.instance_action(
        &legacy.id,
        kiln::oci::models::InstanceAction::Stop,
        None,
        &MutationOptions::default(),
    )
    .await
    .unwrap();
    c.wait_for_instance(&legacy.id, &["STOPPED"], &support::wait(10))
        .await
        .unwrap();

    let dry = p
        .kiln(&["import", "instance.legacy", &legacy.id, "--dry-run"])
        .await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("[instance.legacy]"), "{dry:?}");
    assert!(
        !std::fs::read_to_string(p.path().join("kiln.toml"))
            .unwrap()
            .contains("legacy"),
        "dry run writes nothing"
    );

    let out = p.kiln(&["import", "instance.legacy", &legacy.id]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let manifest = std::fs::read_to_string(p.path().join("kiln.toml")).unwrap();
    let body = manifest
        .split_once("# Our web tier.")
        .map(|(_, b)| format!("# Our web tier.{b}"))
        .unwrap();
    insta::assert_snapshot!("imported_manifest", scrub(&body, Some(&p)));
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    assert_eq!(
        p.state()["resources"]["instance.legacy"]["id"],
        json!(legacy.id)
    );
    // Importing it again is refused.
    let again = p.kiln(&["import", "instance.other", &legacy.id]).await;
    assert_eq!(again.code, 1);
    assert!(
        again
            .stderr
            .contains("already managed as `instance.legacy`"),
        "{again:?}"
    );
}
