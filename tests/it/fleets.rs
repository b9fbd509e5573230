//! Fleets (`count`, `for_each`, `enabled`, per-environment sizes) and `[[moved]]`, applied with
//! the kiln binary against the emulator: only the right members are created or destroyed, and no
//! other resource is touched.

use std::collections::BTreeMap;

use crate::support::{self, Project};

/// Live instances by display name → OCID.
async fn live(p: &Project) -> BTreeMap<String, String> {
    p.live_instances()
        .await
        .into_iter()
        .map(|i| (i.display_name.unwrap_or_default(), i.id))
        .collect()
}

async fn apply(p: &Project, args: &[&str]) {
    let mut all = vec!["apply", "--auto-approve"];
    all.extend_from_slice(args);
    let out = p.kiln(&all).await;
    assert_eq!(out.code, 0, "{out:?}");
    let mut plan = vec!["plan", "--detailed-exitcode"];
    plan.extend_from_slice(args);
    let again = p.kiln(&plan).await;
    assert_eq!(again.code, 0, "converged: {again:?}");
}

fn names(m: &BTreeMap<String, String>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_scaled_3_5_2_creates_and_destroys_only_the_members_it_must() {
    let p = Project::new(support::config(0.0)).await;
    let fleet = |n: usize| {
        format!("[instance.other]\n[instance.web]\ncount = {n}\nfreeform_tags = {{ slot = \"${{count.index}}\" }}\n")
    };
    p.write(&fleet(3));
    apply(&p, &[]).await;
    let three = live(&p).await;
    assert_eq!(names(&three), ["other", "web-0", "web-1", "web-2"]);
    let web1 = p
        .live_instances()
        .await
        .into_iter()
        .find(|i| i.display_name.as_deref() == Some("web-1"))
        .unwrap();
    assert_eq!(web1.freeform_tags["slot"], "1");

    p.write(&fleet(5));
    let plan = p.kiln(&["plan"]).await;
    assert!(plan.stdout.contains("Plan: 2 to create, 0 to update, 0 to replace, 0 to move, 0 to start, 0 to stop, 0 to destroy"), "{plan:?}");
    assert!(
        plan.stdout.contains("instance.web[4] will be created"),
        "{plan:?}"
    );
    apply(&p, &[]).await;
    let five = live(&p).await;
    assert_eq!(names(&five).len(), 6);
    for (name, id) in &three {
        assert_eq!(&five[name], id, "{name} was not touched");
    }

    p.write(&fleet(2));
    let plan = p.kiln(&["plan"]).await;
    for gone in ["instance.web[2]", "instance.web[3]", "instance.web[4]"] {
        assert!(
            plan.stdout.contains(&format!("{gone} will be destroyed")),
            "{plan:?}"
        );
    }
    apply(&p, &[]).await;
    let two = live(&p).await;
    assert_eq!(names(&two), ["other", "web-0", "web-1"]);
    for name in names(&two) {
        assert_eq!(two[name], three[name], "{name} was not touched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_each_adds_and_removes_only_the_keys_that_changed() {
    let p = Project::new(support::config(0.0)).await;
    let fleet = |keys: &str| {
        format!(
            "[instance.app]\nfor_each = [{keys}]\nfreeform_tags = {{ key = \"${{each.key}}\" }}\n"
        )
    };
    p.write(&fleet("\"a\", \"b\""));
    apply(&p, &[]).await;
    let before = live(&p).await;
    assert_eq!(names(&before), ["app-a", "app-b"]);
    p.write(&fleet("\"b\", \"c\""));
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout
            .contains("instance.app[\"a\"] will be destroyed"),
        "{plan:?}"
    );
    assert!(
        plan.stdout.contains("instance.app[\"c\"] will be created"),
        "{plan:?}"
    );
    apply(&p, &[]).await;
    let after = live(&p).await;
    assert_eq!(names(&after), ["app-b", "app-c"]);
    assert_eq!(after["app-b"], before["app-b"]);
    // On the command line, a member is a target (quoted for the shell, here as one argument).
    let out = p
        .kiln(&[
            "destroy",
            "--auto-approve",
            "--target",
            "instance.app[\"b\"]",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(names(&live(&p).await), ["app-c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_size_fleets_and_switch_resources_off() {
    let p = Project::new(support::config(0.0)).await;
    p.write(
        "[instance.web]\ncount = 1\ndisplay_name = \"web-${count.index}\"\n[instance.canary]\n",
    );
    let envs = p.path().join("envs");
    std::fs::create_dir_all(&envs).unwrap();
    std::fs::write(envs.join("production.toml"), "[instance.web]\ncount = 4\n").unwrap();
    // Both environments share one compartment here: staging names its members apart.
    std::fs::write(
        envs.join("staging.toml"),
        "[instance.web]\ncount = 2\ndisplay_name = \"stg-web-${count.index}\"\n[instance.canary]\nenabled = false\n",
    )
    .unwrap();
    apply(&p, &["--env", "staging"]).await;
    assert_eq!(names(&live(&p).await), ["stg-web-0", "stg-web-1"]);
    apply(&p, &["--env", "production"]).await;
    assert_eq!(
        names(&live(&p).await),
        [
            "canary",
            "stg-web-0",
            "stg-web-1",
            "web-0",
            "web-1",
            "web-2",
            "web-3"
        ]
    );
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.path().join("state/production.json")).unwrap(),
    )
    .unwrap();
    assert!(st["resources"]["instance.web[3]"]["id"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_single_instance_into_a_fleet_renames_its_state_and_destroys_nothing() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    apply(&p, &[]).await;
    let before = live(&p).await;
    // Member 0's default display name is `web-0`: the move renames it in place (an update).
    p.write(
        "[instance.web]\ncount = 2\n\n[[moved]]\nfrom = \"instance.web\"\nto = \"instance.web[0]\"\n",
    );
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout
            .contains("instance.web has moved to instance.web[0]"),
        "{plan:?}"
    );
    assert!(!plan.stdout.contains("destroyed"), "{plan:?}");
    assert!(!plan.stdout.contains("replaced"), "{plan:?}");
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let after = live(&p).await;
    assert_eq!(after["web-0"], before["web"], "the same instance, renamed");
    assert!(after.contains_key("web-1"));
    let st = p.state();
    assert_eq!(
        st["resources"]["instance.web[0]"]["id"],
        before["web"].as_str()
    );
    assert!(st["resources"].get("instance.web").is_none());
    let again = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("is done"),
        "a warning once the move is done: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_golden_image_serves_a_whole_fleet() {
    let p = Project::new(support::config(0.0)).await;
    p.write(
        "[instance.builder]\n[image.golden]\nfrom_instance = \"instance.builder\"\n\
         [instance.web]\ncount = 3\nsource = { image = \"image.golden\" }\n",
    );
    apply(&p, &[]).await;
    let image = p.live_images().await[0].id.clone();
    let web: Vec<_> = p
        .live_instances()
        .await
        .into_iter()
        .filter(|i| {
            i.display_name
                .as_deref()
                .is_some_and(|n| n.starts_with("web-"))
        })
        .collect();
    assert_eq!(web.len(), 3);
    for i in web {
        assert_eq!(i.extra["sourceDetails"]["imageId"], image.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_member_can_be_imported_and_state_commands_take_members() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\ncount = 2\n");
    let c = p.client();
    let made = c
        .launch_instance(
            &support::launch_details(&p.emu, "web-1"),
            &kiln::oci::MutationOptions::default(),
        )
        .await
        .unwrap()
        .body;
    let out = p.kiln(&["import", "instance.web[5]", &made.id]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not a member"), "{out:?}");
    let out = p.kiln(&["import", "instance.web[1]", &made.id]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!std::fs::read_to_string(p.path().join("kiln.toml"))
        .unwrap()
        .contains("web[1]"));
    let show = p.kiln(&["state", "show", "instance.web[1]"]).await;
    assert_eq!(show.code, 0, "{show:?}");
    assert!(show.stdout.contains(&made.id));
    apply(&p, &[]).await;
    let names = live(&p).await;
    assert_eq!(
        names["web-1"], made.id,
        "the imported member is kept, not recreated"
    );
    assert_eq!(names.len(), 2);
    let mv = p
        .kiln(&["state", "mv", "instance.web[1]", "instance.web[\"x\"]"])
        .await;
    assert_eq!(mv.code, 0, "{mv:?}");
    assert!(p.state()["resources"]["instance.web[\"x\"]"]["id"].is_string());
}

/// Issue 27: the apply summary said "0 moved" after four `[[moved]]` renames the plan had
/// announced. Renames are counted with the moves, in the plan's summary and the apply's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summaries_count_moved_renames() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.a]\n[instance.b]\n[instance.c]\n[instance.d]\n");
    apply(&p, &[]).await;
    // Four renames (the display names stay; each instance's `kiln-address` tag is updated to its
    // new address) and one new instance.
    let mut body = String::new();
    for n in ["a", "b", "c", "d"] {
        body.push_str(&format!("[instance.{n}2]\ndisplay_name = \"{n}\"\n"));
    }
    body.push_str("[instance.e]\n");
    for n in ["a", "b", "c", "d"] {
        body.push_str(&format!(
            "[[moved]]\nfrom = \"instance.{n}\"\nto = \"instance.{n}2\"\n"
        ));
    }
    p.write(&body);
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains(
            "Plan: 1 to create, 4 to update, 0 to replace, 4 to move, 0 to start, 0 to stop, 0 to destroy."
        ),
        "{plan:?}"
    );
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(
            "Apply complete: 1 created, 4 updated, 0 replaced, 4 moved, 0 started, 0 stopped, 0 destroyed"
        ),
        "{out:?}"
    );
}
