//! `kiln plan` and `kiln apply` end to end through the binary, against the emulator.

use serde_json::json;

use kiln::oci::MutationOptions;

use crate::support::{self, scrub, Project};

const TWO: &str =
    "[instance.web]\nfreeform_tags = { role = \"web\" }\n\n[instance.db]\nstate = \"STOPPED\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_nothing_to_do_with_ci_exit_codes() {
    let p = Project::new(support::config(0.002)).await;
    p.write(TWO);
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 2, "{plan:?}");
    insta::assert_snapshot!("plan_from_empty_state", scrub(&plan.stdout, Some(&p)));
    let json_plan = p.kiln(&["plan", "--json"]).await;
    let j: serde_json::Value = serde_json::from_str(&json_plan.stdout).unwrap();
    insta::assert_snapshot!(
        "plan_json_from_empty_state",
        scrub(&json_plan.stdout, Some(&p))
    );
    assert_eq!(j["format_version"], "1");
    assert_eq!(j["summary"]["create"], 2);
    assert_eq!(j["summary"]["stop"], 1);
    assert_eq!(j["changes"][0]["action"], "create");

    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(
        apply.stdout.contains(
            "Apply complete: 2 created, 0 updated, 0 replaced, 0 moved, 0 started, 1 stopped"
        ),
        "{apply:?}"
    );
    let again = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("No changes."), "{again:?}");
    let live = p.live_instances().await;
    assert_eq!(live.len(), 2);
    assert_eq!(
        live.iter()
            .find(|i| i.display_name.as_deref() == Some("db"))
            .unwrap()
            .lifecycle_state,
        "STOPPED"
    );
    // State: versioned, serial rose with every action, mode 0600, backup kept.
    let st = p.state();
    assert_eq!(st["version"], kiln::state::FORMAT_VERSION);
    assert!(st["serial"].as_u64().unwrap() >= 5, "{st}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p.path().join("state/default.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The apply's commits went to the journal, folded into the state at the end.
    assert!(!p.path().join("state/default.json.journal").exists());
    // Without a TTY and without --auto-approve, apply refuses.
    p.write(&TWO.replace("role = \"web\"", "role = \"frontend\""));
    let refused = p.kiln(&["apply"]).await;
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("--auto-approve"), "{refused:?}");
    // The next apply keeps the state it started from as the backup.
    let tagged = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(tagged.code, 0, "{tagged:?}");
    let backup: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.path().join("state/default.json.backup")).unwrap(),
    )
    .unwrap();
    assert_eq!(backup, st);
    assert!(p.state()["serial"].as_u64() > st["serial"].as_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_band_edits_are_drift_but_oracle_tags_never_are() {
    let p = Project::new(support::config(0.002)).await;
    p.write(TWO);
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let c = p.client();
    let web = p
        .live_instances()
        .await
        .into_iter()
        .find(|i| i.display_name.as_deref() == Some("web"))
        .unwrap();

    // A person adds a defined tag the manifest does not manage: never a diff.
    let got = c.get_instance(&web.id).await.unwrap();
    let mut defined = got.body.defined_tags.clone();
    defined
        .entry("Operations".into())
        .or_default()
        .insert("CostCenter".into(), json!("42"));
    let upd: kiln::oci::models::UpdateInstanceDetails =
        serde_json::from_value(json!({ "definedTags": defined })).unwrap();
    c.update_instance(&web.id, &upd, &MutationOptions::default())
        .await
        .unwrap();
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "no false 2: {plan:?}");

    // A rename and a changed tag made with the API: drift, and the plan puts them back.
    let upd: kiln::oci::models::UpdateInstanceDetails = serde_json::from_value(json!({ "displayName": "renamed-by-hand", "freeformTags": { "role": "hacked", "owner": "bob" } })).unwrap();
    c.update_instance(&web.id, &upd, &MutationOptions::default())
        .await
        .unwrap();
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 2, "{plan:?}");
    insta::assert_snapshot!("plan_with_drift", scrub(&plan.stdout, Some(&p)));
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let fixed = c.get_instance(&web.id).await.unwrap().body;
    assert_eq!(fixed.display_name.as_deref(), Some("web"));
    assert_eq!(
        fixed.freeform_tags.get("owner").map(String::as_str),
        Some("bob"),
        "tags kiln does not manage are kept"
    );
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);

    // Terminated out of band: drift says it is gone, and it is created again.
    c.terminate_instance(&web.id, None, None, &MutationOptions::default())
        .await
        .unwrap();
    c.wait_for_termination(&web.id, &support::wait(10))
        .await
        .unwrap();
    let plan = p.kiln(&["plan"]).await;
    assert!(plan.stdout.contains("! instance.web is gone"), "{plan:?}");
    assert!(plan.stdout.contains("+ instance.web"), "{plan:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_replace_move_power_and_delete_classes() {
    let p = Project::new(support::config(0.002)).await;
    p.write(TWO);
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let before: Vec<String> = p
        .live_instances()
        .await
        .iter()
        .map(|i| i.id.clone())
        .collect();
    let f = p.emu.fixtures();
    let other = "ocid1.compartment.oc1..aaaaaaaaothercompartment";
    let changed = format!(
        "[instance.web]\ndisplay_name = \"web-1\"\nfreeform_tags = {{ role = \"web\" }}\nshape_config = {{ ocpus = 2, memory_in_gbs = 32 }}\ncompartment = \"{other}\"\n\n[instance.db]\navailability_domain = \"{}\"\n",
        f.availability_domains[1]
    );
    p.write(&changed);
    let plan = p.kiln(&["plan"]).await;
    insta::assert_snapshot!(
        "plan_update_replace_move_start",
        scrub(&plan.stdout, Some(&p))
    );
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let c = p.client();
    let web_id = p.state()["resources"]["instance.web"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(before.contains(&web_id), "updated in place, same instance");
    let web = c.get_instance(&web_id).await.unwrap().body;
    assert_eq!(
        (web.display_name.as_deref(), web.compartment_id.as_str()),
        (Some("web-1"), other)
    );
    let db_id = p.state()["resources"]["instance.db"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!before.contains(&db_id), "replaced: a new instance");
    assert_eq!(
        c.get_instance(&db_id).await.unwrap().body.lifecycle_state,
        "RUNNING"
    );
    let again = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(again.code, 0, "{again:?}");

    // Removing a resource from the manifest deletes it.
    p.write(&format!("[instance.web]\ndisplay_name = \"web-1\"\nfreeform_tags = {{ role = \"web\" }}\nshape_config = {{ ocpus = 2, memory_in_gbs = 32 }}\ncompartment = \"{other}\"\n"));
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert!(apply.stdout.contains("- instance.db"), "{apply:?}");
    assert_eq!(
        c.get_instance(&db_id).await.unwrap().body.lifecycle_state,
        "TERMINATED"
    );
    assert!(p.state()["resources"].get("instance.db").is_none());
    // prevent_destroy refuses a plan that would destroy.
    p.write(&format!("[instance.web]\ndisplay_name = \"web-1\"\nfreeform_tags = {{ role = \"web\" }}\nshape_config = {{ ocpus = 2, memory_in_gbs = 32 }}\ncompartment = \"{other}\"\nprevent_destroy = true\navailability_domain = \"{}\"\n", f.availability_domains[2]));
    let refused = p.kiln(&["plan"]).await;
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("prevent_destroy"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_image_pipeline_stops_captures_restarts_and_launches_the_fleet() {
    let p = Project::new(support::config(0.002)).await;
    p.write(
        "[instance.builder]\n\n[image.golden]\nfrom_instance = \"instance.builder\"\n\n[instance.web1]\nsource = { image = \"image.golden\" }\n[instance.web2]\nsource = { image = \"image.golden\" }\n[instance.web3]\nsource = { image = \"image.golden\" }\n",
    );
    let graph = p.kiln(&["graph", "--actions"]).await;
    assert_eq!(graph.code, 0, "{graph:?}");
    insta::assert_snapshot!("golden_image_graph", graph.stdout);
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(
        apply.stdout.contains("5 created") && apply.stdout.contains("1 started, 1 stopped"),
        "{apply:?}"
    );
    let st = p.state();
    let image_id = st["resources"]["image.golden"]["id"].as_str().unwrap();
    let c = p.client();
    for n in 1..=3 {
        let id = st["resources"][format!("instance.web{n}")]["id"]
            .as_str()
            .unwrap();
        assert_eq!(
            c.get_instance(id).await.unwrap().body.image_id.as_deref(),
            Some(image_id)
        );
    }
    let builder = st["resources"]["instance.builder"]["id"].as_str().unwrap();
    assert_eq!(
        c.get_instance(builder).await.unwrap().body.lifecycle_state,
        "RUNNING",
        "builder restarted"
    );
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_between_plan_and_apply_is_a_412_that_overwrites_nothing() {
    let p = Project::new(support::config(0.002)).await;
    p.write(TWO);
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    p.write(&TWO.replace("role = \"web\"", "role = \"frontend\""));
    let plan_file = p.path().join("change.plan");
    let plan = p
        .kiln(&["plan", "--out", plan_file.to_str().unwrap()])
        .await;
    assert_eq!(plan.code, 0, "{plan:?}");
    let c = p.client();
    let web = p.state()["resources"]["instance.web"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let upd: kiln::oci::models::UpdateInstanceDetails =
        serde_json::from_value(json!({ "displayName": "changed-in-console" })).unwrap();
    c.update_instance(&web, &upd, &MutationOptions::default())
        .await
        .unwrap();
    let apply = p.kiln(&["apply", plan_file.to_str().unwrap()]).await;
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(
        apply
            .stderr
            .contains("`instance.web` changed in OCI since the plan (etag"),
        "{apply:?}"
    );
    assert!(apply.stderr.contains("run `kiln plan` again"), "{apply:?}");
    let now = c.get_instance(&web).await.unwrap().body;
    assert_eq!(
        now.display_name.as_deref(),
        Some("changed-in-console"),
        "the out-of-band change is intact"
    );
    assert_eq!(
        now.freeform_tags.get("role").map(String::as_str),
        Some("web")
    );
    // A saved plan from an older state serial is refused, naming both.
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let stale = p.kiln(&["apply", plan_file.to_str().unwrap()]).await;
    assert_eq!(stale.code, 1);
    assert!(
        stale
            .stderr
            .contains("the state changed since this plan was made"),
        "{stale:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_branch_does_not_stop_an_independent_one_and_targets_limit_the_plan() {
    let p = Project::new(support::config(0.002)).await;
    // OCI refuses a private IP outside the subnet's CIDR at launch; neither the manifest nor the
    // plan's checks read the subnet's free addresses (a shape OCI lacks is caught at plan time
    // now: `lookups`).
    p.write("[instance.bad]\nprivate_ip = \"192.168.1.10\"\n\n[image.from_bad]\nfrom_instance = \"instance.bad\"\n\n[instance.good]\n");
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(
        apply.stderr.contains("create instance.bad failed"),
        "{apply:?}"
    );
    assert!(
        apply.stderr.contains("400 InvalidParameter") && apply.stderr.contains("opc-request-id"),
        "{apply:?}"
    );
    assert!(
        apply
            .stderr
            .contains("create image.from_bad skipped: `create instance.bad` failed"),
        "{apply:?}"
    );
    assert!(apply.stdout.contains("1 created"), "{apply:?}");
    assert_eq!(p.live_instances().await.len(), 1);

    p.write("[instance.one]\n[instance.two]\n");
    let plan = p.kiln(&["plan", "--target", "instance.two"]).await;
    assert!(
        plan.stdout.contains("+ instance.two") && !plan.stdout.contains("+ instance.one"),
        "{plan:?}"
    );
    let bad = p.kiln(&["plan", "--target", "instance.three"]).await;
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("`instance.three` is not a resource"),
        "{bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_converges_through_throttling_errors_and_resets_without_duplicates() {
    let mut cfg = support::config(0.002);
    cfg.fault_429 = 0.3;
    cfg.fault_5xx = 0.05;
    cfg.fault_reset = 0.02;
    cfg.seed = Some(42);
    let p = Project::new(cfg).await;
    let body: String = (0..8).map(|n| format!("[instance.n{n}]\n")).collect();
    p.write(&body);
    // Retries are bounded per request; a node that still fails is retried by the next apply.
    let mut last = None;
    for _ in 0..4 {
        let out = p.kiln(&["apply", "--auto-approve"]).await;
        let done = out.code == 0;
        last = Some(out);
        if done {
            break;
        }
    }
    let last = last.unwrap();
    assert_eq!(last.code, 0, "{last:?}");
    // Faults stay on while counting; listing retries too.
    let live = p.live_instances().await;
    assert_eq!(
        live.len(),
        8,
        "no duplicates: {:?}",
        live.iter()
            .map(|i| i.display_name.clone())
            .collect::<Vec<_>>()
    );
    // The faults did happen. Which requests the seeded draws hit depends on the order requests
    // arrive in (one RNG for all), so whether a LaunchInstance was among them is not asserted
    // here: the fault suite (tests/faults/) injects every fault at every boundary, launches
    // included, deterministically.
    let stats = p.emu.stats();
    let faults: u64 = ["fault.429", "fault.5xx", "fault.reset"]
        .iter()
        .map(|k| stats.get(*k).copied().unwrap_or(0))
        .sum();
    assert!(faults > 0, "{stats:?}");
    assert!(stats["LaunchInstance"] >= 8, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_change_plan_of_500_instances_takes_at_most_10_api_calls() {
    let p = Project::new(support::config(0.0)).await;
    let body: String = (0..500).map(|n| format!("[instance.i{n:03}]\n")).collect();
    p.write(&body);
    let apply = p
        .kiln(&["apply", "--auto-approve", "--parallelism", "32"])
        .await;
    assert_eq!(
        apply.code,
        0,
        "{}",
        apply.stderr.chars().take(2000).collect::<String>()
    );
    let before = p.emu.stats()["total"];
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(
        plan.code,
        0,
        "{}",
        plan.stdout.chars().take(2000).collect::<String>()
    );
    let calls = p.emu.stats()["total"] - before;
    assert!(
        calls <= 10,
        "{calls} API calls for a no-change plan of 500 instances"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_deletes_dependents_first_and_respects_prevent_destroy() {
    let p = Project::new(support::config(0.002)).await;
    p.write("[instance.builder]\n\n[image.golden]\nfrom_instance = \"instance.builder\"\n\n[instance.web]\nsource = { image = \"image.golden\" }\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let st = p.state();
    let image = st["resources"]["image.golden"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = p.kiln(&["destroy"]).await;
    assert_eq!(refused.code, 1, "no TTY, no --auto-approve: {refused:?}");
    let out = p.kiln(&["destroy", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Plan: 0 to create, 0 to update, 0 to replace, 0 to move, 0 to start, 0 to stop, 3 to destroy."), "{out:?}");
    let web_done = out
        .stderr
        .find("delete instance.web: done")
        .expect("web deleted");
    let image_start = out
        .stderr
        .find("delete image.golden: started")
        .expect("image deleted");
    assert!(
        web_done < image_start,
        "the image is deleted after the instance launched from it: {out:?}"
    );
    assert!(p.live_instances().await.is_empty());
    assert_eq!(
        p.client()
            .get_image(&image)
            .await
            .unwrap()
            .body
            .lifecycle_state,
        "DELETED"
    );
    assert!(p.state()["resources"].as_object().unwrap().is_empty());

    p.write("[instance.db]\nprevent_destroy = true\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let out = p.kiln(&["destroy", "--auto-approve"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("prevent_destroy"), "{out:?}");
    assert_eq!(p.live_instances().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_image_is_created_first_and_deleted_after_its_dependents_moved() {
    let p = Project::new(support::config(0.002)).await;
    let m = "[instance.builder]\n\n[image.golden]\nfrom_instance = \"instance.builder\"\nlaunch_mode = \"PARAVIRTUALIZED\"\n\n[instance.web]\nsource = { image = \"image.golden\" }\n";
    p.write(m);
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let old_image = p.state()["resources"]["image.golden"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let old_web = p.state()["resources"]["instance.web"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Past the emulator's 20-minute capture cooldown (its records, not a sleep).
    support::pass_capture_cooldown(&p.emu);
    p.write(&m.replace("PARAVIRTUALIZED", "NATIVE"));
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains("-/+ image.golden")
            && plan.stdout.contains("- image.golden (previous version)"),
        "{plan:?}"
    );
    assert!(
        !plan.stdout.contains("1 to destroy"),
        "the previous version is not counted as a destroy: {plan:?}"
    );
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(
        apply.stdout.contains("2 replaced") && apply.stdout.contains(" 0 destroyed"),
        "the apply counts the previous version as the plan did, in the replacement: {apply:?}"
    );
    let web_done = apply
        .stderr
        .find("replace instance.web: done")
        .expect("web replaced");
    let old_deleted = apply
        .stderr
        .find("delete image.golden: started")
        .expect("old image deleted");
    assert!(web_done < old_deleted, "{apply:?}");
    let st = p.state();
    let new_image = st["resources"]["image.golden"]["id"].as_str().unwrap();
    assert_ne!(new_image, old_image);
    let c = p.client();
    assert_eq!(
        c.get_image(&old_image).await.unwrap().body.lifecycle_state,
        "DELETED"
    );
    let web = st["resources"]["instance.web"]["id"].as_str().unwrap();
    assert_ne!(web, old_web);
    assert_eq!(
        c.get_instance(web).await.unwrap().body.image_id.as_deref(),
        Some(new_image)
    );
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_forces_a_replacement_and_the_request_log_shows_no_secrets() {
    let p = Project::new(support::config(0.002)).await;
    p.write(TWO);
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let old = p.state()["resources"]["instance.web"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = p
        .kiln(&["apply", "--auto-approve", "--replace", "instance.web", "-v"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("forced with `--replace`"), "{out:?}");
    assert!(out.stdout.contains("1 replaced"), "{out:?}");
    assert_ne!(
        p.state()["resources"]["instance.web"]["id"]
            .as_str()
            .unwrap(),
        old
    );
    // -v logs every request with its opc-request-id, and never credentials.
    assert!(
        out.stderr.contains("LaunchInstance") && out.stderr.contains("opc_request_id"),
        "{out:?}"
    );
    let lower = out.stderr.to_lowercase();
    assert!(
        !lower.contains("signature=")
            && !lower.contains("authorization")
            && !lower.contains("private key"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_after_the_change_neither_duplicate_nor_fail() {
    // Nearly every other mutation takes effect but its answer is lost: launches, updates, actions and
    // terminations are retried (with the same retry token where OCI takes one) and must converge.
    let mut cfg = support::config(0.002);
    cfg.fault_reset_after = 0.4;
    cfg.seed = Some(5);
    let p = Project::new(cfg).await;
    let steps = [
        "[instance.a]\n[instance.b]\n[instance.c]\n",
        "[instance.a]\nfreeform_tags = { v = \"2\" }\nstate = \"STOPPED\"\n[instance.b]\n",
        "[instance.a]\nfreeform_tags = { v = \"3\" }\n[instance.b]\nstate = \"STOPPED\"\n[instance.d]\n",
    ];
    for body in steps {
        p.write(body);
        let out = p.kiln(&["apply", "--auto-approve"]).await;
        assert_eq!(out.code, 0, "{out:?}");
        let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
        assert_eq!(plan.code, 0, "{plan:?}");
    }
    let mut names: Vec<String> = p
        .live_instances()
        .await
        .into_iter()
        .map(|i| {
            format!(
                "{} {}",
                i.display_name.unwrap_or_default(),
                i.lifecycle_state
            )
        })
        .collect();
    names.sort();
    assert_eq!(names, ["a RUNNING", "b STOPPED", "d RUNNING"]);
    let lost = p.emu.stats().get("fault.reset_after").copied().unwrap_or(0);
    assert!(lost >= 1, "no answer was lost: the test tested nothing");
}
