//! Image versions, retention and promotion (issue 24, part C), with the kiln binary against the
//! emulator: `keep = 2` across three rebuilds keeps two versions and never deletes one an
//! instance runs; `version = "previous"` rolls an instance (and a rolling fleet) back; an
//! environment takes its image from another's state (`env = "staging"`), with local and remote
//! state; a kill between a rebuild's new image and the old one being retained, then apply again.
//! Every count is the emulator's own listing.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::{self, Project};

async fn ok(p: &Project, args: &[&str]) -> support::Out {
    let out = p.kiln(args).await;
    assert_eq!(out.code, 0, "{args:?}: {out:?}");
    out
}

/// Live images of the test compartment that kiln made: `kiln-version` → OCID.
async fn versions(p: &Project) -> BTreeMap<u64, String> {
    p.live_images()
        .await
        .into_iter()
        .filter_map(|i| {
            let v = i.freeform_tags.get("kiln-version")?.parse().ok()?;
            Some((v, i.id))
        })
        .collect()
}

/// The image each live instance whose display name starts with `prefix` runs.
async fn runs(p: &Project, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = p
        .live_instances()
        .await
        .into_iter()
        .filter(|i| {
            i.display_name
                .as_deref()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .map(|i| i.image_id.unwrap_or_default())
        .collect();
    out.sort();
    out
}

fn retained(state: &Value, address: &str) -> Vec<u64> {
    state["resources"][address]["retained"]
        .as_array()
        .map(|a| a.iter().map(|v| v["version"].as_u64().unwrap()).collect())
        .unwrap_or_default()
}

const GOLDEN: &str =
    "[instance.builder]\n\n[image.golden]\nfrom_instance = \"instance.builder\"\nkeep = 2\n\n";

async fn rebuild(p: &Project, extra: &[&str]) -> support::Out {
    support::pass_capture_cooldown(&p.emu);
    let mut args = vec!["apply", "--auto-approve", "--replace", "image.golden"];
    args.extend_from_slice(extra);
    ok(p, &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_2_across_three_rebuilds_keeps_two_versions_and_never_deletes_one_in_use() {
    let p = Project::new(support::config(0.0)).await;
    p.write(&format!(
        "{GOLDEN}[instance.web]\nsource = {{ image = \"image.golden\" }}\n"
    ));
    ok(&p, &["apply", "--auto-approve"]).await;
    let v = versions(&p).await;
    assert_eq!(v.keys().copied().collect::<Vec<_>>(), [1], "{v:?}");

    // Rebuild 1: version 2 is made, web moves to it, version 1 is retained (not deleted).
    let out = rebuild(&p, &[]).await;
    let v = versions(&p).await;
    assert_eq!(v.keys().copied().collect::<Vec<_>>(), [1, 2], "{out:?}");
    assert_eq!(runs(&p, "web").await, [v[&2].clone()]);
    assert_eq!(retained(&p.state(), "image.golden"), [1]);
    ok(&p, &["plan", "--detailed-exitcode"]).await;
    let shown = ok(&p, &["state", "show", "image.golden"]).await;
    assert!(
        shown.stdout.contains(&v[&1]),
        "state show lists the retained version: {shown:?}"
    );

    // An instance pinned to the previous version (1) launches from it.
    p.write(&format!(
        "{GOLDEN}[instance.web]\nsource = {{ image = \"image.golden\" }}\n\n[instance.pinned]\nsource = {{ image = \"image.golden\", version = \"previous\" }}\n"
    ));
    ok(&p, &["apply", "--auto-approve"]).await;
    assert_eq!(runs(&p, "pinned").await, [v[&1].clone()]);

    // Rebuild 2: version 3; versions 2 and 1 are previous, one may stay: 1 is beyond `keep`
    // but `instance.pinned` still runs it (its pin now resolves to 2 only after this apply).
    let plan = {
        support::pass_capture_cooldown(&p.emu);
        ok(&p, &["plan", "--replace", "image.golden"]).await
    };
    assert!(
        plan.stdout.contains("version 1")
            && plan.stdout.contains("kept back")
            && plan.stdout.contains("`instance.pinned`"),
        "the plan says which version is kept back and why: {plan:?}"
    );
    let said: String = support::scrub(&plan.stdout, Some(&p))
        .lines()
        .filter(|l| l.contains("kept back") || l.contains("retained version"))
        .map(|l| format!("{l}\n"))
        .collect();
    insta::assert_snapshot!("version_kept_back", said);
    rebuild(&p, &[]).await;
    let v3 = versions(&p).await;
    assert_eq!(
        v3.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3],
        "nothing in use deleted"
    );
    assert_eq!(runs(&p, "pinned").await, [v[&1].clone()]);

    // The next plan moves the pin to version 2 and then deletes version 1, which nothing runs.
    let out = ok(&p, &["apply", "--auto-approve"]).await;
    let v = versions(&p).await;
    assert_eq!(v.keys().copied().collect::<Vec<_>>(), [2, 3], "{out:?}");
    assert_eq!(runs(&p, "pinned").await, [v[&2].clone()]);
    assert_eq!(runs(&p, "web").await, [v[&3].clone()]);
    assert_eq!(retained(&p.state(), "image.golden"), [2]);

    // Rebuild 3 without the pin: version 4, version 3 retained, version 2 deleted.
    p.write(&format!(
        "{GOLDEN}[instance.web]\nsource = {{ image = \"image.golden\" }}\n"
    ));
    rebuild(&p, &[]).await;
    let v = versions(&p).await;
    assert_eq!(v.keys().copied().collect::<Vec<_>>(), [3, 4]);
    assert_eq!(retained(&p.state(), "image.golden"), [3]);
    ok(&p, &["plan", "--detailed-exitcode"]).await;

    // A retained version deleted outside kiln drops from the state on the next apply.
    p.client()
        .delete_image(&v[&3], &kiln::oci::MutationOptions::default())
        .await
        .unwrap();
    ok(&p, &["apply", "--auto-approve"]).await;
    assert!(retained(&p.state(), "image.golden").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_not_retained_is_refused_at_its_span() {
    let p = Project::new(support::config(0.0)).await;
    p.write(&format!(
        "{GOLDEN}[instance.web]\nsource = {{ image = \"image.golden\" }}\n"
    ));
    ok(&p, &["apply", "--auto-approve"]).await;
    p.write(&format!(
        "{GOLDEN}[instance.web]\nsource = {{ image = \"image.golden\", version = \"previous\" }}\n"
    ));
    let out = p.kiln(&["plan"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    insta::assert_snapshot!(
        "version_not_retained",
        support::scrub(&out.stderr, Some(&p))
    );
}

const CHECK: &str = "#!/bin/sh\nexit 0\n";

fn rolling(pin: &str) -> String {
    format!(
        "{GOLDEN}[instance.web]\ncount = 3\nsource = {{ image = \"image.golden\"{pin} }}\n\n[instance.web.rollout]\nmax_surge = 1\nmax_unavailable = 0\nhealth_check = {{ command = [\"./healthy.sh\"], timeout = \"0s\", interval = \"0s\" }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_previous_rolls_a_rolling_fleet_back_in_one_line() {
    let p = Project::new(support::config(0.0)).await;
    let check = p.path().join("healthy.sh");
    std::fs::write(&check, CHECK).unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&check).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&check, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p.write(&rolling(""));
    ok(&p, &["apply", "--auto-approve"]).await;
    rebuild(&p, &[]).await;
    let v = versions(&p).await;
    assert_eq!(runs(&p, "web-").await, vec![v[&2].clone(); 3]);

    // The rollback: one line.
    p.write(&rolling(", version = \"previous\""));
    let plan = ok(&p, &["plan"]).await;
    assert!(
        plan.stdout.contains("rollout instance.web: 3 of 3 members"),
        "the rollback rolls: {plan:?}"
    );
    ok(&p, &["apply", "--auto-approve"]).await;
    assert_eq!(runs(&p, "web-").await, vec![v[&1].clone(); 3]);
    ok(&p, &["plan", "--detailed-exitcode"]).await;
    // Nothing was deleted: both versions are still there.
    assert_eq!(versions(&p).await, v);

    // And forward again: the pin removed.
    p.write(&rolling(""));
    ok(&p, &["apply", "--auto-approve"]).await;
    assert_eq!(runs(&p, "web-").await, vec![v[&2].clone(); 3]);
}

/// Staging builds the image; production takes it (`env = "staging"`) and builds none.
fn promotion(p: &Project, backend: &str) {
    p.write(&format!(
        "{GOLDEN}[instance.web]\nsource = {{ image = \"image.golden\" }}\ndisplay_name = \"web-${{vars.env}}\"\n\n[vars]\nenv = \"staging\"\n{backend}"
    ));
    std::fs::create_dir_all(p.path().join("envs")).unwrap();
    std::fs::write(p.path().join("envs/staging.toml"), "").unwrap();
    std::fs::write(
        p.path().join("envs/production.toml"),
        "[vars]\nenv = \"production\"\n\n[instance.builder]\nenabled = false\n\n[image.golden]\nenabled = false\n\n[instance.web]\nsource = { image = \"image.golden\", env = \"staging\" }\n",
    )
    .unwrap();
}

async fn promotes(p: &Project) {
    // Before staging has built anything, production plans nothing for `web` and says why.
    let plan = ok(p, &["plan", "--env", "production"]).await;
    assert!(
        plan.stdout
            .contains("environment `staging` has no AVAILABLE `image.golden`")
            && plan
                .stdout
                .contains("nothing is planned for `instance.web`"),
        "{plan:?}"
    );
    assert!(plan.stdout.contains("No changes"), "{plan:?}");

    ok(p, &["apply", "--auto-approve", "--env", "staging"]).await;
    let plan = ok(p, &["plan", "--env", "production"]).await;
    assert!(
        plan.stdout
            .contains("images from environment `staging`: its state at serial"),
        "the header names the environment and its serial: {plan:?}"
    );
    ok(p, &["apply", "--auto-approve", "--env", "production"]).await;
    let v = versions(p).await;
    assert_eq!(v.len(), 1, "production built no image: {v:?}");
    assert_eq!(runs(p, "web-production").await, [v[&1].clone()]);
    ok(p, &["plan", "--env", "production", "--detailed-exitcode"]).await;

    // Staging rebuilds: the next production plan shows the change, and applies it.
    support::pass_capture_cooldown(&p.emu);
    ok(
        p,
        &[
            "apply",
            "--auto-approve",
            "--env",
            "staging",
            "--replace",
            "image.golden",
        ],
    )
    .await;
    let v = versions(p).await;
    let plan = p
        .kiln(&["plan", "--env", "production", "--detailed-exitcode"])
        .await;
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains(&v[&2]), "{plan:?}");
    ok(p, &["apply", "--auto-approve", "--env", "production"]).await;
    assert_eq!(runs(p, "web-production").await, [v[&2].clone()]);
    assert_eq!(runs(p, "web-staging").await, [v[&2].clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_from_staging_to_production_with_local_state() {
    let p = Project::new(support::config(0.0)).await;
    promotion(&p, "");
    promotes(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_from_staging_to_production_with_remote_state() {
    let p = Project::new(support::config(0.0)).await;
    promotion(&p, &crate::state::remote::backend("envs/"));
    promotes(&p).await;
    assert!(
        !p.path().join("state/staging.json").exists(),
        "no local state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_rebuild_then_apply_again_keeps_each_version_once() {
    // Killed once the new image was made (its answer never read), once while the old one's
    // delete was sent (the third version's rebuild deletes version 1), and once before the
    // state's last commit.
    for point in [
        "oci.response.CreateImage=return(abort)",
        "oci.request.DeleteImage=return(abort)",
    ] {
        let p = Project::new(support::config(0.0)).await;
        p.write(&format!(
            "{GOLDEN}[instance.web]\nsource = {{ image = \"image.golden\" }}\n"
        ));
        ok(&p, &["apply", "--auto-approve"]).await;
        rebuild(&p, &[]).await;
        support::pass_capture_cooldown(&p.emu);
        let killed = p
            .kiln_faulted(
                point,
                &["apply", "--auto-approve", "--replace", "image.golden"],
            )
            .await;
        assert_ne!(killed.code, 0, "{point}: {killed:?}");
        let out = ok(&p, &["apply", "--auto-approve"]).await;
        let v = versions(&p).await;
        assert_eq!(
            v.keys().copied().collect::<Vec<_>>(),
            [2, 3],
            "{point}: each version once, the oldest gone: {out:?}"
        );
        assert_eq!(
            p.live_images().await.len(),
            2,
            "{point}: no duplicate image"
        );
        assert_eq!(runs(&p, "web").await, [v[&3].clone()], "{point}");
        assert_eq!(retained(&p.state(), "image.golden"), [2], "{point}");
        ok(&p, &["plan", "--detailed-exitcode"]).await;
    }
}

/// Found by the simulation (a rebuild while the fleet on the old image left the manifest): the
/// old image's delete was left out of the plan as "still run" by members the same plan destroys,
/// so a successful apply left it deposed and the next plan not empty. Now it waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_deletes_the_old_image_after_the_members_it_destroys() {
    let p = Project::new(support::config(0.0)).await;
    let golden = "[instance.builder]\n\n[image.golden]\nfrom_instance = \"instance.builder\"\n\n";
    p.write(&format!(
        "{golden}[instance.web]\ncount = 2\nsource = {{ image = \"image.golden\" }}\n"
    ));
    ok(&p, &["apply", "--auto-approve"]).await;
    p.write(golden);
    let out = rebuild(&p, &[]).await;
    let v = versions(&p).await;
    assert_eq!(v.keys().copied().collect::<Vec<_>>(), [2], "{out:?}");
    assert!(runs(&p, "web").await.is_empty());
    ok(&p, &["plan", "--detailed-exitcode"]).await;
}
