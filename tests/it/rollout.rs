//! Rollouts (issue 23), with the kiln binary against the emulator: a fleet of 6 moved onto a new
//! image in batches within its limits — the live member count and the healthy count sampled from
//! the emulator's own records during the apply — in both replace methods; boot volume
//! replacement keeps each member's OCID and private IP; a failing health check stops the rollout
//! with exit 1, and fixing it lets the next apply move the rest.
//!
//! The health check is a script whose answer the test controls with files (`fail/<address>`);
//! lifecycles run on the emulator's scaled clock; nothing sleeps to synchronise (the sampler
//! only observes).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use kiln::emulator::RunningEmulator;

use crate::support::{self, Project};

/// Fails while `fail/<address>` exists, and once for `fail-once/<address>` (which it removes).
const CHECK: &str = "#!/bin/sh\necho \"checking $KILN_ADDRESS at $KILN_PRIVATE_IP ($KILN_INSTANCE_ID, $KILN_REGION)\"\nif [ -e \"fail/$KILN_ADDRESS\" ]; then echo \"told to fail\" >&2; exit 1; fi\nif [ -e \"fail-once/$KILN_ADDRESS\" ]; then rm \"fail-once/$KILN_ADDRESS\"; echo \"told to fail once\" >&2; exit 1; fi\n";

fn manifest(image: &str, surge: &str, unavailable: &str, method: &str, on_failure: &str) -> String {
    format!(
        "[instance.web]\ncount = 6\nsource = {{ image = \"{image}\" }}\nreplace_method = \"{method}\"\n\n[instance.web.rollout]\nmax_surge = {surge}\nmax_unavailable = {unavailable}\nhealth_check = {{ command = [\"./healthy.sh\"], timeout = \"0s\", interval = \"0s\" }}\non_failure = \"{on_failure}\"\n"
    )
}

/// Two Oracle Linux x86 platform images: the fleet's first and its next.
fn images(emu: &RunningEmulator) -> (String, String) {
    let ol: Vec<String> = emu
        .fixtures()
        .platform_images
        .iter()
        .filter(|i| i.operating_system == "Oracle Linux" && i.arch == "x86_64")
        .map(|i| i.id.clone())
        .collect();
    (ol[0].clone(), ol[1].clone())
}

/// Run `fut` while sampling the emulator's own records: the most members that existed (not
/// TERMINATED), the fewest that were RUNNING, and how many samples were taken.
async fn sampled<F: std::future::Future>(
    emu: &RunningEmulator,
    fut: F,
) -> (F::Output, (usize, usize, usize)) {
    observed(emu, fut, None).await
}

/// [`sampled`], and each sample also given to `trace` (with its time).
async fn observed<F: std::future::Future>(
    emu: &RunningEmulator,
    fut: F,
    trace: Option<(&Traced, std::time::Instant)>,
) -> (F::Output, (usize, usize, usize)) {
    let done = AtomicBool::new(false);
    let main = async {
        let r = fut.await;
        done.store(true, Ordering::SeqCst);
        r
    };
    let sampler = async {
        let mut seen = (0, usize::MAX, 0);
        while !done.load(Ordering::SeqCst) {
            // The instances' states alone: a copy of the whole world each time would take the
            // emulator's lock and CPU from the apply being observed.
            let states = emu.instance_states();
            let exist = states.iter().filter(|r| r.state != "TERMINATED").count();
            let running = states.iter().filter(|r| r.state == "RUNNING").count();
            seen = (seen.0.max(exist), seen.1.min(running), seen.2 + 1);
            if let Some((traced, start)) = trace {
                traced.record(states, start.elapsed().as_secs_f64());
            }
            // A sampling period (an observer, not a synchronisation).
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        seen
    };
    tokio::join!(main, sampler)
}

async fn members(p: &Project) -> BTreeMap<String, (String, String)> {
    p.live_instances()
        .await
        .into_iter()
        .map(|i| {
            (
                i.display_name.clone().unwrap_or_default(),
                (i.id.clone(), i.image_id.clone().unwrap_or_default()),
            )
        })
        .collect()
}

async fn setup(method: &str, surge: &str, unavailable: &str) -> (Project, String, String) {
    let p = Project::new(support::config(0.002)).await;
    let script = p.path().join("healthy.sh");
    std::fs::write(&script, CHECK).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::create_dir(p.path().join("fail")).unwrap();
    std::fs::create_dir(p.path().join("fail-once")).unwrap();
    let (old, new) = images(&p.emu);
    p.write(&manifest(&old, surge, unavailable, method, "pause"));
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    (p, old, new)
}

/// Roll a fleet of 6 from one image to the next with `(surge, unavailable)` and check the limits,
/// the end state and, for boot volume replacement, that every member kept its OCID and IP.
async fn roll(method: &str, surge: &str, unavailable: &str, limits: (usize, usize)) {
    let (p, old, new) = setup(method, surge, unavailable).await;
    let before = members(&p).await;
    let ips_before = private_ips(&p).await;
    p.write(&manifest(&new, surge, unavailable, method, "pause"));
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains("rollout instance.web: 6 of 6 members"),
        "{plan:?}"
    );
    let (out, (most, fewest, samples)) =
        sampled(&p.emu, p.kiln(&["apply", "--auto-approve"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    eprintln!("{method} ({surge}, {unavailable}): at most {most} existed, at least {fewest} RUNNING, {samples} samples");
    assert!(samples > 1, "the sampler ran");
    let (s, u) = limits;
    assert!(
        most <= 6 + s,
        "{method} ({surge}, {unavailable}): {most} members existed at once"
    );
    assert!(
        fewest >= 6 - u,
        "{method} ({surge}, {unavailable}): only {fewest} members were RUNNING at once"
    );
    let after = members(&p).await;
    assert_eq!(after.len(), 6, "{after:?}");
    assert!(after.values().all(|(_, img)| *img == new), "{after:?}");
    assert!(before.values().all(|(_, img)| *img == old));
    if method == "boot_volume" {
        let ids = |m: &BTreeMap<String, (String, String)>| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&before),
            ids(&after),
            "boot volume replacement keeps the OCIDs"
        );
        assert_eq!(ips_before, private_ips(&p).await, "and the private IPs");
    }
    let again = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(again.code, 0, "converged: {again:?}");
}

/// Private IP per instance OCID, read from the emulator.
async fn private_ips(p: &Project) -> BTreeMap<String, String> {
    let c = p.client();
    let mut out = BTreeMap::new();
    for a in c
        .list_vnic_attachments(support::COMPARTMENT, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.lifecycle_state == "ATTACHED")
    {
        let v = c
            .get_vnic(a.vnic_id.as_deref().unwrap())
            .await
            .unwrap()
            .body;
        out.insert(a.instance_id, v.private_ip.unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_6_rolls_one_new_member_at_a_time_with_surge_1() {
    roll("instance", "1", "0", (1, 0)).await;
    // A member being boot-volume-replaced is down: it needs `max_unavailable` >= 1.
    roll("boot_volume", "1", "1", (1, 1)).await;
}

/// It used to be accepted and took one member down at a time, one more than `max_unavailable`
/// allows; now the manifest is refused at the span, before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_volume_rollout_that_allows_no_member_down_is_refused_at_its_span() {
    let p = Project::new(support::config(0.002)).await;
    let (old, _) = images(&p.emu);
    p.write(&manifest(&old, "1", "0", "boot_volume", "pause"));
    let calls = p.emu.stats().get("total").copied().unwrap_or(0);
    let out = p.kiln(&["plan"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("kiln::manifest::rollout_boot_volume_needs_unavailable")
            && out.stderr.contains("max_unavailable = 0")
            && out.stderr.contains("no member may be down"),
        "{out:?}"
    );
    assert_eq!(
        p.emu.stats().get("total").copied().unwrap_or(0),
        calls,
        "nothing was sent"
    );
}

/// Was only a warning (the plan then took one member down at a time, beyond the limit the user
/// wrote): a percentage `max_unavailable` that rounds down to 0 for the fleet's size leaves boot
/// volume replacement no member it may take down, so the plan is refused at its span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_volume_rollout_whose_unavailable_percentage_rounds_down_to_0_is_refused() {
    let p = Project::new(support::config(0.002)).await;
    let (old, _) = images(&p.emu);
    p.write(
        &manifest(&old, "1", "\"10%\"", "boot_volume", "pause").replace("count = 6", "count = 3"),
    );
    let calls = p.emu.stats().get("total").copied().unwrap_or(0);
    let out = p.kiln(&["plan"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        p.emu.stats().get("total").copied().unwrap_or(0),
        calls,
        "nothing was sent"
    );
    insta::assert_snapshot!(
        "boot_volume_unavailable_rounds_to_0",
        support::scrub(&out.stderr, Some(&p))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_6_rolls_one_member_down_at_a_time_with_unavailable_1() {
    roll("instance", "0", "1", (0, 1)).await;
    roll("boot_volume", "0", "1", (0, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_6_rolls_three_at_a_time_with_surge_2_and_unavailable_1() {
    roll("instance", "2", "1", (2, 1)).await;
    roll("boot_volume", "2", "1", (2, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_6_rolls_with_a_surge_of_25_percent_rounded_up_to_2() {
    roll("instance", "\"25%\"", "0", (2, 0)).await;
    roll("boot_volume", "\"25%\"", "\"25%\"", (2, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_on_the_third_member_stops_the_rollout_and_the_next_apply_moves_the_rest() {
    for method in ["instance", "boot_volume"] {
        let down = if method == "boot_volume" { "1" } else { "0" };
        let (p, _old, new) = setup(method, "1", down).await;
        std::fs::write(p.path().join("fail/instance.web[2]"), "").unwrap();
        p.write(&manifest(&new, "1", down, method, "pause"));
        let out = p.kiln(&["apply", "--auto-approve"]).await;
        assert_eq!(out.code, 1, "{out:?}");
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains("instance.web[2]") && text.contains("health check"),
            "{out:?}"
        );
        assert!(
            text.contains("told to fail"),
            "the check's output is shown: {out:?}"
        );
        let st = p.state();
        let on_new = |i: usize| {
            st["resources"][format!("instance.web[{i}]")]["attributes"]["imageId"].as_str()
                == Some(new.as_str())
        };
        let moved: Vec<usize> = (0..6).filter(|&i| on_new(i)).collect();
        assert_eq!(
            moved,
            vec![0, 1, 2],
            "{method}: two moved, the third tried and failed: {st}"
        );
        assert!(
            st["resources"]["instance.web[2]"]["inputs"]["rollout_failed"].is_object(),
            "the failed member is marked in the state"
        );
        assert!(p.live_instances().await.len() <= 7);

        std::fs::remove_file(p.path().join("fail/instance.web[2]")).unwrap();
        let out = p.kiln(&["apply", "--auto-approve"]).await;
        assert_eq!(out.code, 0, "{out:?}");
        let after = members(&p).await;
        assert_eq!(after.len(), 6, "{after:?}");
        assert!(
            after.values().all(|(_, img)| *img == new),
            "{method}: {after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_rollout_then_apply_again_resumes_within_the_limits() {
    // The process dies (a real abort) at an answer it never reads: mid-launch of the third new
    // member, after the second old one's terminate was sent, mid-replacement of the second boot
    // volume; or before a request leaves: after the second batch's launch passed its gate, before
    // the old member's terminate.
    for (method, point, down) in [
        (
            "instance",
            "oci.response.LaunchInstance=2*off->return(abort)",
            0,
        ),
        (
            "instance",
            "oci.request.TerminateInstance=1*off->return(abort)",
            0,
        ),
        (
            "instance",
            "oci.response.TerminateInstance=1*off->return(abort)",
            0,
        ),
        (
            "boot_volume",
            "oci.response.UpdateInstance=1*off->return(abort)",
            1,
        ),
    ] {
        let (p, _old, new) = setup(method, "1", &down.to_string()).await;
        p.write(&manifest(&new, "1", &down.to_string(), method, "pause"));
        let killed = p.kiln_faulted(point, &["apply", "--auto-approve"]).await;
        assert_ne!(killed.code, 0, "{point}: {killed:?}");
        let live = p.live_instances().await.len();
        assert!(live <= 7, "{point}: {live} members after the kill");
        let (out, (most, fewest, _)) = sampled(&p.emu, p.kiln(&["apply", "--auto-approve"])).await;
        assert_eq!(out.code, 0, "{point}: {out:?}");
        eprintln!("{point}: after the kill, at most {most} existed, at least {fewest} RUNNING");
        assert!(most <= 7, "{point}: {most} members existed at once");
        assert!(fewest >= 6 - down, "{point}: only {fewest} RUNNING at once");
        let after = members(&p).await;
        assert_eq!(
            after.len(),
            6,
            "{point}: no duplicate, nothing lost: {after:?}"
        );
        assert!(
            after.values().all(|(_, img)| *img == new),
            "{point}: {after:?}"
        );
        let again = p.kiln(&["plan", "--detailed-exitcode"]).await;
        assert_eq!(again.code, 0, "{point}: converged: {again:?}");
    }
}

/// A fleet declared STOPPED rolls too. Nothing can be checked on a stopped member, so its gate
/// is its launch: the check (failing for every member here) never runs, and a rollout killed
/// between a launch and its predecessor's terminate resumes (found by the simulation: the resumed
/// rollout waited for RUNNING on a member the manifest stops, and failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_fleet_rolls_without_its_check_and_resumes_after_a_kill() {
    let (p, old, new) = setup("instance", "1", "0").await;
    let stopped = |image: &str| {
        manifest(image, "1", "0", "instance", "pause")
            .replace("replace_method", "state = \"STOPPED\"\nreplace_method")
    };
    p.write(&stopped(&old));
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    for i in 0..6 {
        std::fs::write(p.path().join(format!("fail/instance.web[{i}]")), "").unwrap();
    }
    p.write(&stopped(&new));
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout
            .contains("healthy = launched (the fleet is declared STOPPED: no health check)"),
        "{plan:?}"
    );
    let killed = p
        .kiln_faulted(
            "oci.response.LaunchInstance=1*off->return(abort)",
            &["apply", "--auto-approve"],
        )
        .await;
    assert_ne!(killed.code, 0, "{killed:?}");
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("told to fail"), "{out:?}");
    let live = p.live_instances().await;
    assert_eq!(live.len(), 6, "no duplicate, nothing lost");
    for i in &live {
        assert_eq!(i.image_id.as_deref(), Some(new.as_str()), "{i:?}");
        assert_eq!(i.lifecycle_state, "STOPPED", "{i:?}");
    }
    let again = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(again.code, 0, "converged: {again:?}");
}

/// The emulator's own count of members that exist (not TERMINATED), and the image of each.
fn existing(emu: &RunningEmulator) -> Vec<String> {
    emu.snapshot()
        .instances
        .values()
        .filter(|r| r.state() != "TERMINATED")
        .map(|r| {
            r.body
                .get("imageId")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// No member record of the state is marked for a rollback any more.
fn no_rollback_marks(st: &serde_json::Value) -> bool {
    (0..6).all(|i| st["resources"][format!("instance.web[{i}]")]["inputs"]["rollback_to"].is_null())
}

/// `on_failure = "rollback"` used to act as `pause`: the moved members stayed on the new image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_rollback_returns_the_moved_members_to_the_old_image_within_the_limits() {
    for (method, surge, down) in [
        ("instance", 1, 0),
        ("instance", 0, 1),
        ("boot_volume", 1, 1),
    ] {
        let (s, u) = (surge.to_string(), down.to_string());
        let (p, old, new) = setup(method, &s, &u).await;
        std::fs::write(p.path().join("fail-once/instance.web[2]"), "").unwrap();
        p.write(&manifest(&new, &s, &u, method, "rollback"));
        let (out, (most, fewest, _)) = sampled(&p.emu, p.kiln(&["apply", "--auto-approve"])).await;
        let what = format!("{method} ({surge}, {down})");
        assert_eq!(out.code, 1, "{what}: {out:?}");
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains("instance.web[2]") && text.contains("told to fail once"),
            "{what}: {out:?}"
        );
        assert!(
            out.stdout.contains(
                "Rolled back onto the previous image: instance.web[0], instance.web[1], instance.web[2]"
            ),
            "{what}: {out:?}"
        );
        assert!(most <= 6 + surge, "{what}: {most} members existed at once");
        assert!(fewest >= 6 - down, "{what}: only {fewest} RUNNING at once");
        let live = existing(&p.emu);
        assert_eq!(
            live.len(),
            6,
            "{what}: no duplicate, nothing lost: {live:?}"
        );
        assert!(
            live.iter().all(|i| *i == old),
            "{what}: all back on the old image: {live:?}"
        );
        let st = p.state();
        assert!(no_rollback_marks(&st), "{what}: the rollback is over: {st}");
        // Nothing of the rollout is left but the move itself: the next apply tries again.
        let plan = p.kiln(&["plan"]).await;
        assert!(
            plan.stdout.contains("rollout instance.web: 6 of 6 members")
                && !plan.stdout.contains("rollback instance.web"),
            "{what}: {plan:?}"
        );
    }
}

/// A kill in the middle of a rollback (the launch of the first member going back, its answer
/// never read): the next apply finishes the rollback from the marks in the state, without a
/// duplicate and within the limits, and then the fleet is as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_killed_half_way_resumes_at_the_next_apply() {
    let (p, old, new) = setup("instance", "1", "0").await;
    std::fs::write(p.path().join("fail-once/instance.web[2]"), "").unwrap();
    p.write(&manifest(&new, "1", "0", "instance", "rollback"));
    // Launches 1 to 3 move members 0 to 2 (the third fails its check); the fourth is the first
    // member going back.
    let point = "oci.response.LaunchInstance=3*off->return(abort)";
    let killed = p.kiln_faulted(point, &["apply", "--auto-approve"]).await;
    assert_ne!(killed.code, 0, "{killed:?}");
    assert!(existing(&p.emu).len() <= 7);
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains("rollback instance.web:"),
        "the plan says the fleet goes back: {plan:?}"
    );
    let (out, (most, fewest, _)) = sampled(&p.emu, p.kiln(&["apply", "--auto-approve"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("Rolled back onto the previous image:"),
        "{out:?}"
    );
    assert!(most <= 7, "{most} members existed at once");
    assert!(fewest >= 6, "only {fewest} RUNNING at once");
    let live = existing(&p.emu);
    assert_eq!(live.len(), 6, "no duplicate, nothing lost: {live:?}");
    assert!(live.iter().all(|i| *i == old), "{live:?}");
    assert!(no_rollback_marks(&p.state()));
}

/// BENCHMARKS.md, scenario 6: roll 100 members onto a new image at ("10%", 0) with a health check
/// that takes a fixed time; wall time ÷ the optimal batch schedule's length, and API calls per
/// member. `cargo test --release --test it bench_rollout -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark (BENCHMARKS.md, scenario 6): run it with --ignored --nocapture"]
async fn bench_rollout_100_members_at_10_percent() {
    let scale = 0.01;
    let check_ms = 200u64;
    let p = Project::new(support::config(scale)).await;
    let script = p.path().join("healthy.sh");
    // The check's fixed cost: the workload being measured, not a synchronisation.
    std::fs::write(
        &script,
        format!("#!/bin/sh\nsleep {}\n", check_ms as f64 / 1000.0),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (old, new) = images(&p.emu);
    let t = kiln::emulator::Timings::scaled(scale);
    let write = |img: &str| {
        let fleet = format!("[instance.web]\ncount = 100\nsource = {{ image = \"{img}\" }}\n\n[instance.web.rollout]\nmax_surge = \"10%\"\nmax_unavailable = 0\nhealth_check = {{ command = [\"./healthy.sh\"], timeout = \"1m\", interval = \"1s\" }}\n");
        let text = format!("{}{fleet}", p.header()).replacen(
            "[provider]\n",
            "[provider]\nparallelism = 20\n",
            1,
        );
        std::fs::write(p.path().join("kiln.toml"), text).unwrap();
    };
    write(&old);
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    write(&new);
    // What the apply's own plan (refresh of 100 members) costs, apart: inside the wall below.
    let planned = std::time::Instant::now();
    let out = p.kiln(&["plan"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    println!("plan alone: {:.2} s", planned.elapsed().as_secs_f64());
    let calls_before = p.emu.stats().get("total").copied().unwrap_or(0);
    let start = std::time::Instant::now();
    let traced = Traced::default();
    let (out, (most, fewest, _)) = observed(
        &p.emu,
        async {
            // KILN_BENCH_LOG=FILE: the apply's request log and steps, time-stamped, to FILE.
            match std::env::var("KILN_BENCH_LOG") {
                Ok(file) => {
                    let env = [("RUST_LOG", "warn,kiln::oci=debug,kiln::apply=debug")];
                    let out =
                        support::run_kiln_env(p.path(), &["apply", "--auto-approve"], &env).await;
                    std::fs::write(file, &out.stderr).unwrap();
                    out
                }
                Err(_) => p.kiln(&["apply", "--auto-approve"]).await,
            }
        },
        Some((&traced, start)),
    )
    .await;
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(out.code, 0, "{out:?}");
    traced.phases(
        &old,
        &new,
        wall,
        t.launch.as_secs_f64(),
        t.terminate.as_secs_f64(),
    );
    let calls = p.emu.stats().get("total").copied().unwrap_or(0) - calls_before;
    // 10 batches of 10: launch, check, terminate, one after the other.
    let batch = t.launch.as_secs_f64() + check_ms as f64 / 1000.0 + t.terminate.as_secs_f64();
    let optimal = 10.0 * batch;
    println!("| members | limits | batches | wall (s) | optimal (s) | wall ÷ optimal | API calls / member | most existing | fewest RUNNING |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| 100 | (\"10%\", 0) | 10 | {wall:.2} | {optimal:.2} | {:.2}× | {:.1} | {most} | {fewest} |",
        wall / optimal,
        calls as f64 / 100.0
    );
    assert!(most <= 110 && fewest >= 100, "{most} {fewest}");
}

/// An instance's display name, image, and each state with when it was first seen.
type Lifecycle = (String, String, Vec<(String, f64)>);

/// The bench's record of each instance's lifecycle as the emulator's records show it (seconds
/// since the apply started, first seen in each state), to say where a rollout's time goes.
#[derive(Default)]
struct Traced {
    seen: std::sync::Mutex<BTreeMap<String, Lifecycle>>,
}

impl Traced {
    /// One sample of every instance's state, taken `now` seconds after the apply started.
    fn record(&self, states: Vec<kiln::emulator::InstanceState>, now: f64) {
        let mut seen = self.seen.lock().unwrap();
        for r in states {
            let e = seen
                .entry(r.id)
                .or_insert_with(|| (r.name, r.image, vec![]));
            if e.2.last().map(|(s, _)| s.as_str()) != Some(r.state.as_str()) {
                e.2.push((r.state, now));
            }
        }
    }

    /// Print where the time went: each phase's mean and the largest, per member.
    fn phases(&self, old: &str, new: &str, wall: f64, launch: f64, terminate: f64) {
        let seen = self.seen.lock().unwrap();
        let at = |id: &str, state: &str| {
            seen.get(id)
                .and_then(|e| e.2.iter().find(|(s, _)| s == state).map(|(_, t)| *t))
        };
        let by_name = |image: &str| -> BTreeMap<String, String> {
            seen.iter()
                .filter(|(_, e)| e.1 == image)
                .map(|(id, e)| (e.0.clone(), id.clone()))
                .collect()
        };
        let (olds, news) = (by_name(old), by_name(new));
        let mut gate = vec![];
        let mut launched = vec![];
        let mut ended = vec![];
        let (mut up, mut down) = (vec![], vec![]);
        for (name, n) in &news {
            let (Some(p), Some(r)) = (at(n, "PROVISIONING"), at(n, "RUNNING")) else {
                continue;
            };
            launched.push(p);
            up.push(r - p);
            if let Some(o) = olds.get(name) {
                if let (Some(ti), Some(td)) = (at(o, "TERMINATING"), at(o, "TERMINATED")) {
                    gate.push(ti - r);
                    down.push(td - ti);
                    ended.push(td);
                }
            }
        }
        launched.sort_by(f64::total_cmp);
        ended.sort_by(f64::total_cmp);
        // The k-th launch after the first ten takes the slot the (k-10)-th end freed.
        let handoff: Vec<f64> = launched
            .iter()
            .skip(10)
            .zip(&ended)
            .map(|(l, e)| l - e)
            .collect();
        let stat = |v: &[f64]| {
            let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
            let max = v.iter().copied().fold(0.0, f64::max);
            format!("mean {mean:.3} s, max {max:.3} s ({} members)", v.len())
        };
        println!(
            "where the time goes (seconds since the apply started, from the emulator's records):"
        );
        println!(
            "- first launch at {:.3} s (the plan, refresh and start before it)",
            launched.first().copied().unwrap_or(0.0)
        );
        println!(
            "- launch → RUNNING: {} (the emulator's {launch:.3} s)",
            stat(&up)
        );
        println!("- RUNNING → old member TERMINATING (gate: the wait's lateness, reads, the check, commits): {}", stat(&gate));
        println!(
            "- TERMINATING → TERMINATED: {} (the emulator's {terminate:.3} s)",
            stat(&down)
        );
        println!("- old TERMINATED → the next launch in its slot (the wait's lateness, commits, the walk): {}", stat(&handoff));
        println!(
            "- last TERMINATED → the apply's end: {:.3} s",
            wall - ended.last().copied().unwrap_or(wall)
        );
    }
}
