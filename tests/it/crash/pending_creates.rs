//! Regressions of issue 21, each named after what broke and counted from the emulator's own
//! listing: a pending create is a resource of its own until its outcome is known (its address
//! leaving the manifest, its region changing, its token going stale after a rename), the
//! `kiln-address` tag is compared, and a power state changed outside kiln is drift.

use kiln::emulator::RunningEmulator;
use kiln::oci::compute::ListInstances;
use kiln::oci::models::Instance;

use crate::support::{self, Project, COMPARTMENT};

/// Live instances of `emu` (not terminating or terminated), from its own listing.
async fn live_in(emu: &RunningEmulator) -> Vec<Instance> {
    support::client(emu)
        .list_instances(&ListInstances {
            compartment_id: COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|i| !matches!(i.lifecycle_state.as_str(), "TERMINATED" | "TERMINATING"))
        .collect()
}

/// Apply with the `n`-th LaunchInstance (from 0) landing and its answer lost as kiln dies.
async fn crash_launch(p: &Project, n: usize) {
    let fp = match n {
        0 => "oci.response.LaunchInstance=return(abort)".to_string(),
        n => format!("oci.response.LaunchInstance={n}*off->1*return(abort)"),
    };
    let out = p
        .kiln_faulted(&fp, &["apply", "--auto-approve", "--parallelism", "1"])
        .await;
    assert_ne!(out.code, 0, "the apply died: {out:?}");
}

async fn assert_converged(p: &Project) {
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "converged: {plan:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_create_whose_address_left_the_manifest_is_destroyed_not_left_running() {
    // (before, crashed launch, after, the address that left, what stays live)
    let cases: [(&str, usize, &str, &str, &[&str]); 4] = [
        (
            "[instance.web]\ncount = 2\n",
            1,
            "[instance.web]\ncount = 1\n",
            "instance.web[1]",
            &["web-0"],
        ),
        (
            "[instance.app]\nfor_each = [\"a\", \"b\"]\n",
            1,
            "[instance.app]\nfor_each = [\"a\"]\n",
            "instance.app[\"b\"]",
            &["app-a"],
        ),
        (
            "[instance.keep]\n[instance.web]\n",
            1,
            "[instance.keep]\n[instance.web]\nenabled = false\n",
            "instance.web",
            &["keep"],
        ),
        (
            "[instance.keep]\n[instance.web]\n",
            1,
            "[instance.keep]\n",
            "instance.web",
            &["keep"],
        ),
    ];
    for (before, n, after, gone, stays) in cases {
        let p = Project::new(support::config(0.0)).await;
        p.write(before);
        crash_launch(&p, n).await;
        let st = support::stored_state(p.path()).await.unwrap().unwrap();
        assert!(
            st.resources[gone].pending_create.is_some(),
            "{gone} has a pending create"
        );
        p.write(after);
        let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
        assert_eq!(plan.code, 2, "{after}: the plan shows it: {plan:?}");
        assert!(
            plan.stdout.contains(&format!("{gone} will be destroyed")),
            "{plan:?}"
        );
        let out = p.kiln(&["apply", "--auto-approve"]).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(
            support::live_names(&p.live_instances().await),
            stays,
            "{after}: {out:?}"
        );
        assert_converged(&p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiln_destroy_destroys_what_a_pending_create_made() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    crash_launch(&p, 0).await;
    assert_eq!(p.live_instances().await.len(), 1);
    let out = p.kiln(&["destroy", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("1 destroyed"), "{out:?}");
    assert!(p.live_instances().await.is_empty(), "{out:?}");
    let st = support::stored_state(p.path()).await.unwrap().unwrap();
    assert!(st.resources.is_empty(), "{st:?}");
}

/// A second region (us-phoenix-1) served by its own emulator, and the manifest lines that put
/// `instance.web` there.
async fn phoenix(p: &Project) -> (RunningEmulator, String, String) {
    let (phx, header) = support::second_region(p, "us-phoenix-1").await;
    let f = phx.fixtures();
    let web = format!(
        "[instance.web]\nregion = \"us-phoenix-1\"\navailability_domain = \"{}\"\nsubnet = \"{}\"\nsource = {{ image = \"{}\" }}\n",
        f.availability_domains[0], f.public_subnet_id, f.platform_images[0].id
    );
    (phx, header, web)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_create_moved_to_another_region_is_resolved_where_it_was_sent() {
    let p = Project::new(support::config(0.0)).await;
    let (phx, header, web_in_phx) = phoenix(&p).await;
    let write = |body: &str| std::fs::write(p.path().join("kiln.toml"), format!("{header}{body}"));
    write(&web_in_phx).unwrap();
    crash_launch(&p, 0).await;
    assert_eq!(
        live_in(&phx).await.len(),
        1,
        "the launch landed in us-phoenix-1"
    );
    // The manifest moves it home (us-ashburn-1, the provider's region).
    write("[instance.web]\n").unwrap();
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 2, "{plan:?}");
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert!(
        live_in(&phx).await.is_empty(),
        "what the first create made was replaced: {out:?}"
    );
    assert_eq!(
        support::live_names(&p.live_instances().await),
        ["web"],
        "{out:?}"
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        plan.stdout.contains("did not finish in us-phoenix-1"),
        "{plan:?}"
    );
    assert_converged(&p).await;
}

/// Age the pending create of `address` and the emulator's memory of its retry token past OCI's
/// 24 hours (the clocks moved, nobody waits): the state's `started_at` and the token's time.
async fn age_past_the_token_window(p: &Project, address: &str) {
    let day = chrono::Duration::hours(25);
    let mut st = support::stored_state(p.path()).await.unwrap().unwrap();
    let pending = st
        .resources
        .get_mut(address)
        .and_then(|r| r.pending_create.as_mut())
        .expect("a pending create");
    pending.started_at -= day;
    // The journal folded in: the state file alone, whole — as format version 2 (the oldest that
    // keeps the request; its records are read as they are), so that the kiln before this
    // regression's fix reads it too.
    let mut text = serde_json::to_value(&st).unwrap();
    text["version"] = 2.into();
    let _ = std::fs::remove_file(p.path().join("state/default.json.journal"));
    std::fs::write(
        p.path().join("state/default.json"),
        serde_json::to_vec(&text).unwrap(),
    )
    .unwrap();
    let mut world = p.emu.snapshot();
    for r in world.retry_tokens.values_mut() {
        r.at -= day;
    }
    p.emu.restore(world);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pending_create_renamed_by_moved_is_found_under_its_old_address() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\ndisplay_name = \"web\"\n");
    crash_launch(&p, 0).await;
    age_past_the_token_window(&p, "instance.web").await;
    p.write(
        "[instance.app]\ndisplay_name = \"web\"\n\n[[moved]]\nfrom = \"instance.web\"\nto = \"instance.app\"\n",
    );
    let plan = p.kiln(&["plan"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    let live = p.live_instances().await;
    assert_eq!(
        support::live_names(&live),
        ["web"],
        "adopted, not duplicated: {out:?}"
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        !plan.stdout.contains("resumed with the same retry token"),
        "a stale token is not announced as resumed: {plan:?}"
    );
    assert!(plan.stdout.contains("looks for what it made"), "{plan:?}");
    assert_eq!(live[0].freeform_tags["kiln-address"], "instance.app");
    assert_converged(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_ocids_are_refused_never_replaced() {
    let p = Project::new(support::config(0.0)).await;
    let ad2 = p.emu.fixtures().availability_domains[1].clone();
    p.write(&format!(
        "[instance.a]\n[instance.b]\navailability_domain = \"{ad2}\"\n"
    ));
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let before = p.live_instances().await;
    for (from, to) in [
        ("instance.a", "instance.tmp"),
        ("instance.b", "instance.a"),
        ("instance.tmp", "instance.b"),
    ] {
        let out = p.kiln(&["state", "mv", from, to]).await;
        assert_eq!(out.code, 0, "{out:?}");
    }
    let a_id = p.state()["resources"]["instance.a"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for args in [
        &["plan"][..],
        &["plan", "--refresh-only", "--detailed-exitcode"][..],
        &["apply", "--auto-approve"][..],
        &["destroy", "--auto-approve"][..],
    ] {
        let out = p.kiln(args).await;
        assert_eq!(out.code, 1, "{args:?} refuses: {out:?}");
        // (miette wraps at 80 columns, OCIDs too: compared without blanks.)
        let bare = |t: &str| -> String {
            t.chars()
                .filter(|c| !c.is_whitespace() && *c != '│')
                .collect()
        };
        assert!(out.stderr.contains("kiln::plan::address_tag"), "{out:?}");
        assert!(
            bare(&out.stderr).contains(&bare(&format!(
                "`instance.a` records {a_id}, which is tagged `kiln-address = instance.b`"
            ))),
            "{out:?}"
        );
    }
    assert_eq!(p.live_instances().await.len(), 2);
    let mut after = p.live_instances().await;
    after.sort_by(|x, y| x.id.cmp(&y.id));
    let mut before = before;
    before.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        after.iter().map(|i| &i.id).collect::<Vec<_>>(),
        before.iter().map(|i| &i.id).collect::<Vec<_>>(),
        "nothing destroyed"
    );
    // Swapped back, all is well; a rename on purpose retags.
    for (from, to) in [
        ("instance.a", "instance.tmp"),
        ("instance.b", "instance.a"),
        ("instance.tmp", "instance.b"),
    ] {
        assert_eq!(p.kiln(&["state", "mv", from, to]).await.code, 0);
    }
    assert_converged(&p).await;
    assert_eq!(
        p.kiln(&["state", "mv", "instance.b", "instance.c"])
            .await
            .code,
        0
    );
    p.write(&format!(
        "[instance.a]\n[instance.c]\ndisplay_name = \"b\"\navailability_domain = \"{ad2}\"\n"
    ));
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("kiln-address"), "the retag: {plan:?}");
    assert!(plan.stdout.contains("0 to replace"), "{plan:?}");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let c = p
        .live_instances()
        .await
        .into_iter()
        .find(|i| i.display_name.as_deref() == Some("b"))
        .unwrap();
    assert_eq!(c.freeform_tags["kiln-address"], "instance.c");
    assert_eq!(p.live_instances().await.len(), 2);
    assert_converged(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_stopped_outside_kiln_is_drift() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let id = p.live_instances().await[0].id.clone();
    // Someone stops it with the API, as Oracle's CLI would.
    let c = p.client();
    c.instance_action(
        &id,
        kiln::oci::models::InstanceAction::Stop,
        None,
        &Default::default(),
    )
    .await
    .unwrap();
    c.wait_for_instance(&id, &["STOPPED"], &support::wait(30))
        .await
        .unwrap();
    let check = p
        .kiln(&["plan", "--refresh-only", "--detailed-exitcode"])
        .await;
    assert_eq!(check.code, 2, "drift, not `No drift`: {check:?}");
    assert!(check.stdout.contains("RUNNING"), "{check:?}");
    assert!(check.stdout.contains("STOPPED"), "{check:?}");
    let plan = p.kiln(&["plan"]).await;
    assert!(plan.stdout.contains("Drift"), "a Drift section: {plan:?}");
    assert!(plan.stdout.contains("will be started"), "{plan:?}");
    // Accepted: recorded, and no longer drift.
    let accept = p.kiln(&["apply", "--refresh-only", "--auto-approve"]).await;
    assert_eq!(accept.code, 0, "{accept:?}");
    let again = p
        .kiln(&["plan", "--refresh-only", "--detailed-exitcode"])
        .await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(p.live_instances().await[0].lifecycle_state, "STOPPED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_refused_after_kilns_own_create_does_not_blame_the_plan() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\nstate = \"STOPPED\"\n");
    let out = p
        .kiln_faulted(
            "oci.request.InstanceAction=return(status(412))",
            &["apply", "--auto-approve"],
        )
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!text.contains("since the plan"), "{out:?}");
    assert!(text.contains("since this apply read it"), "{out:?}");
    assert_eq!(p.live_instances().await.len(), 1);
}

/// Found by the simulation (seed 69): a pending create past its token window was adopted, but
/// its tags were compared with the manifest of now instead of the request that made it, so a tag
/// changed since stayed unapplied after an apply that reported success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pending_create_adopted_gets_the_tags_changed_since_it_was_sent() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\nfreeform_tags = { t = \"0\" }\n");
    crash_launch(&p, 0).await;
    age_past_the_token_window(&p, "instance.web").await;
    p.write("[instance.web]\nfreeform_tags = { t = \"1\" }\n");
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let live = p.live_instances().await;
    assert_eq!(
        support::live_names(&live),
        ["web"],
        "adopted, not duplicated: {out:?}"
    );
    assert_eq!(live[0].freeform_tags["t"], "1", "{out:?}");
    assert_converged(&p).await;
}

/// Found by the simulation (seed 234): an instance terminated outside kiln, its re-create crashed
/// (the record holds the dead id and a pending create), then its address left the manifest: the
/// apply must destroy what the pending create made, not only the dead id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_create_beside_a_dead_id_is_destroyed_when_its_address_leaves() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let first = p.live_instances().await.remove(0);
    support::client(&p.emu)
        .terminate_instance(
            &first.id,
            None,
            None,
            &kiln::oci::MutationOptions::default(),
        )
        .await
        .unwrap();
    crash_launch(&p, 0).await;
    assert_eq!(p.live_instances().await.len(), 1, "the re-create landed");
    p.write("[instance.web]\nenabled = false\n");
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        p.live_instances().await.is_empty(),
        "what the pending create made is destroyed: {out:?}"
    );
    assert_converged(&p).await;
}
