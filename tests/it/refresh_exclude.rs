//! `--refresh-only` (drift into the state, nothing into OCI) and `--exclude` (everything but an
//! address and what depends on it; for destroy, what it depends on), and fleet names as selectors.

use serde_json::json;

use kiln::oci::MutationOptions;

use crate::support::{self, calls_between, scrub, Project};

/// Whether an emulator operation could change anything (every read is a Get, List or Head).
fn mutating(call: &str) -> bool {
    !(call.starts_with("Get") || call.starts_with("List") || call.starts_with("Head"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_only_adopts_an_out_of_band_tag_change_without_a_mutating_call() {
    let p = Project::new(support::config(0.002)).await;
    p.write("[instance.web]\nfreeform_tags = { role = \"web\" }\n\n[instance.db]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let web = p.state()["resources"]["instance.web"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let upd: kiln::oci::models::UpdateInstanceDetails =
        serde_json::from_value(json!({ "freeformTags": { "role": "frontend" } })).unwrap();
    p.client()
        .update_instance(&web, &upd, &MutationOptions::default())
        .await
        .unwrap();

    let plan = p
        .kiln(&["plan", "--refresh-only", "--detailed-exitcode"])
        .await;
    assert_eq!(plan.code, 2, "drift: {plan:?}");
    insta::assert_snapshot!("plan_refresh_only", scrub(&plan.stdout, Some(&p)));

    let serial = p.state()["serial"].as_u64().unwrap();
    let before = p.emu.stats();
    let apply = p.kiln(&["apply", "--refresh-only", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let calls = calls_between(&before, &p.emu.stats());
    assert!(
        !calls.iter().any(|c| mutating(c)),
        "no mutating call: {calls:?}"
    );
    assert!(
        apply
            .stdout
            .contains("Refresh complete: 1 records refreshed")
            && apply.stdout.contains("nothing was changed in OCI"),
        "{apply:?}"
    );
    let st = p.state();
    assert!(st["serial"].as_u64().unwrap() > serial);
    assert_eq!(
        st["resources"]["instance.web"]["attributes"]["freeformTags"]["role"],
        "frontend"
    );
    // The drift is accepted: a refresh-only plan is clean, and a plain plan shows the change back
    // to the manifest as a change, not as drift.
    let again = p
        .kiln(&["plan", "--refresh-only", "--detailed-exitcode"])
        .await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("No drift."), "{again:?}");
    let plan = p.kiln(&["plan"]).await;
    assert!(
        !plan.stdout.contains("Drift:")
            && plan
                .stdout
                .contains("freeform_tags.role = \"frontend\" -> \"web\""),
        "{plan:?}"
    );
    // Adopted in the manifest too: the later plan is clean.
    p.write("[instance.web]\nfreeform_tags = { role = \"frontend\" }\n\n[instance.db]\n");
    let clean = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(clean.code, 0, "{clean:?}");

    // Gone out of band: refresh-only drops it from the state (nothing is created), and the next
    // plan creates it again.
    let db = p.state()["resources"]["instance.db"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let c = p.client();
    c.terminate_instance(&db, None, None, &MutationOptions::default())
        .await
        .unwrap();
    c.wait_for_termination(&db, &support::wait(10))
        .await
        .unwrap();
    let before = p.emu.stats();
    let apply = p.kiln(&["apply", "--refresh-only", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stdout.contains("! instance.db is gone"), "{apply:?}");
    let calls = calls_between(&before, &p.emu.stats());
    assert!(!calls.iter().any(|c| mutating(c)), "{calls:?}");
    assert!(p.state()["resources"].get("instance.db").is_none());
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout
            .contains("# instance.db will be created (not in state)"),
        "{plan:?}"
    );
    // A saved plan keeps its mode; `--refresh-only` never takes a plan file.
    let out = p.path().join("refresh.plan");
    let saved = p
        .kiln(&["plan", "--refresh-only", "--out", out.to_str().unwrap()])
        .await;
    assert_eq!(saved.code, 0, "{saved:?}");
    let refused = p
        .kiln(&["apply", "--refresh-only", out.to_str().unwrap()])
        .await;
    assert_eq!(refused.code, 1, "{refused:?}");
    let refused = p.kiln(&["plan", "--refresh-only", "--refresh=false"]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
}

const GOLDEN: &str =
    "[instance.builder]\n\n[image.golden]\nfrom_instance = \"instance.builder\"\n\n\
     [instance.web1]\nsource = { image = \"image.golden\" }\n\n\
     [instance.web2]\nsource = { image = \"image.golden\" }\n\n[instance.other]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclude_leaves_the_resource_and_its_dependents_and_destroy_keeps_what_it_needs() {
    let p = Project::new(support::config(0.0)).await;
    p.write(GOLDEN);
    // Plan and apply: the image and the instances launched from it are left out, and the
    // builder is not stopped for a capture that does not happen.
    let plan = p.kiln(&["plan", "--exclude", "image.golden"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    insta::assert_snapshot!("plan_exclude_golden", scrub(&plan.stdout, Some(&p)));
    let apply = p
        .kiln(&["apply", "--auto-approve", "--exclude", "image.golden"])
        .await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(
        support::live_names(&p.live_instances().await),
        ["builder", "other"]
    );
    assert!(p.live_images().await.is_empty());
    let before = p.emu.stats();
    let plan = p
        .kiln(&["plan", "--detailed-exitcode", "--exclude", "image.golden"])
        .await;
    // Nothing else to do in the selection; the excluded image and its instances are still to be
    // created, which the exit code counts (issue 27) and the summary says.
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains("No changes in what this plan selects.")
            && plan.stdout.contains(
                "Partial plan (--exclude image.golden): 3 changes outside the selection are not in this plan."
            ),
        "{plan:?}"
    );
    assert!(
        !calls_between(&before, &p.emu.stats())
            .iter()
            .any(|c| c.contains("Image")),
        "the excluded image is not even read"
    );
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    assert_eq!(
        support::live_names(&p.live_instances().await),
        ["builder", "other", "web1", "web2"]
    );

    // An update everywhere but one instance.
    p.write(&GOLDEN.replace("]\n", "]\nfreeform_tags = { v = \"2\" }\n"));
    let apply = p
        .kiln(&["apply", "--auto-approve", "--exclude", "instance.web1"])
        .await;
    assert_eq!(apply.code, 0, "{apply:?}");
    for i in p.live_instances().await {
        let v = i.freeform_tags.get("v").map(String::as_str);
        let expected = if i.display_name.as_deref() == Some("web1") {
            None
        } else {
            Some("2")
        };
        assert_eq!(v, expected, "{:?}", i.display_name);
    }
    assert_eq!(
        p.live_images().await[0].freeform_tags.get("v").unwrap(),
        "2"
    );

    // Destroy all but the image: what it depends on (its builder) stays, what depends on it goes.
    let destroy = p
        .kiln(&["destroy", "--auto-approve", "--exclude", "image.golden"])
        .await;
    assert_eq!(destroy.code, 0, "{destroy:?}");
    assert_eq!(support::live_names(&p.live_instances().await), ["builder"]);
    assert_eq!(p.live_images().await.len(), 1);
    let st = p.state();
    let left: Vec<&String> = st["resources"].as_object().unwrap().keys().collect();
    assert_eq!(left, ["image.golden", "instance.builder"]);

    // An unknown address is an error, like `--target`'s, with a suggestion.
    let bad = p
        .kiln(&["destroy", "--auto-approve", "--exclude", "image.goldne"])
        .await;
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr
            .contains("`image.goldne` is not a resource of this manifest or its state")
            && bad.stderr.contains("did you mean `image.golden`?"),
        "{bad:?}"
    );
    assert_eq!(p.live_images().await.len(), 1, "nothing was destroyed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_name_selects_every_member_for_target_and_exclude() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web1]\n[instance.web2]\n[instance.db]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    // Members of a fleet `instance.web` in the state (as a fleet manifest leaves them), no longer
    // declared here: the plan destroys them.
    for (from, to) in [
        ("instance.web1", "instance.web[0]"),
        ("instance.web2", "instance.web[1]"),
    ] {
        let mv = p.kiln(&["state", "mv", from, to]).await;
        assert_eq!(mv.code, 0, "{mv:?}");
    }
    p.write("[instance.db]\nfreeform_tags = { v = \"2\" }\n");
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains("- instance.web[0]")
            && plan.stdout.contains("- instance.web[1]")
            && plan.stdout.contains("~ instance.db"),
        "{plan:?}"
    );
    let excluded = p.kiln(&["plan", "--exclude", "instance.web"]).await;
    assert!(
        !excluded.stdout.contains("instance.web[") && excluded.stdout.contains("~ instance.db"),
        "{excluded:?}"
    );
    let one = p.kiln(&["plan", "--exclude", "instance.web[1]"]).await;
    assert!(
        one.stdout.contains("- instance.web[0]") && !one.stdout.contains(" instance.web[1]\n"),
        "{one:?}"
    );
    let targeted = p.kiln(&["plan", "--target", "instance.web"]).await;
    assert!(
        targeted.stdout.contains("- instance.web[0]")
            && targeted.stdout.contains("- instance.web[1]")
            && !targeted.stdout.contains("instance.db"),
        "{targeted:?}"
    );
    // `instance.we` names no fleet: a selector matches whole names only.
    let partial = p.kiln(&["plan", "--target", "instance.we"]).await;
    assert_eq!(partial.code, 1, "{partial:?}");
}

/// Issue 27: a `--target` plan never said it was partial and exited 0 with `--detailed-exitcode`
/// while other changes were pending. Now the header and the summary say so (as Terraform's
/// "Resource targeting is in effect"), and the exit code counts the changes and drift found
/// outside the selection (a `--target` plan reads everything); `--exclude`d resources are not
/// read, and the summary says that instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_plan_says_so_and_its_exit_code_counts_what_is_pending_outside() {
    let p = Project::new(support::config(0.002)).await;
    p.write("[instance.web]\n\n[instance.db]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    // `web` is updated in place and `api` created; `db` is as declared.
    p.write(
        "[instance.web]\nfreeform_tags = { role = \"web\" }\n\n[instance.db]\n\n[instance.api]\n",
    );

    let db = p
        .kiln(&["plan", "--detailed-exitcode", "--target", "instance.db"])
        .await;
    assert_eq!(
        db.code, 2,
        "2 changes are pending outside the target: {db:?}"
    );
    insta::assert_snapshot!("plan_partial_target", scrub(&db.stdout, Some(&p)));

    let web = p
        .kiln(&["plan", "--detailed-exitcode", "--target", "instance.web"])
        .await;
    assert_eq!(web.code, 2, "{web:?}");
    assert!(
        web.stdout.contains("Plan: 0 to create, 1 to update")
            && web.stdout.contains(
                "Partial plan (--target instance.web): 1 change outside the selection is not in this plan."
            ),
        "{web:?}"
    );

    // Excluded: `api`, which only the manifest has (a create, known without a read), and `db`,
    // which both have (not read: what it needs is not known).
    let json = p
        .kiln(&[
            "plan",
            "--json",
            "--exclude",
            "instance.api",
            "--exclude",
            "instance.db",
        ])
        .await;
    let j: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        j["partial"],
        json!({"excludes": ["instance.api", "instance.db"], "changes_outside": 1, "drifted_outside": 0, "not_read": 1})
    );

    // Applied, the target leaves the rest pending, and the summary says so.
    let out = p
        .kiln(&["apply", "--auto-approve", "--target", "instance.web"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(
            "Partial plan (--target instance.web): 1 change outside the selection is not in this plan."
        ),
        "{out:?}"
    );
    // With nothing pending anywhere, a partial plan exits 0 and says why.
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let done = p
        .kiln(&["plan", "--detailed-exitcode", "--target", "instance.db"])
        .await;
    assert_eq!(done.code, 0, "{done:?}");
    assert!(
        done.stdout.contains(
            "Partial plan (--target instance.db): nothing outside the selection is pending."
        ),
        "{done:?}"
    );
}
