//! The emulator's limits (`--rate-limit`, `--capacity`): OCI's answers, what they count, and that a
//! refused launch creates nothing.

use std::time::Duration;

use kiln::oci::{ErrorKind, MutationOptions, RetryPolicy};

use crate::support::{self, COMPARTMENT};

/// A client that never retries, so every answer is seen.
fn one_shot(emu: &kiln::emulator::RunningEmulator) -> kiln::oci::Client {
    let mut opts = kiln::oci::ClientOptions::new(emu.url());
    opts.retry = RetryPolicy {
        max_attempts: 1,
        max_elapsed: Duration::from_secs(1),
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
    };
    kiln::oci::Client::new(support::signing_key(), opts)
}

#[tokio::test]
async fn rate_limit_answers_429_too_many_requests_per_operation_and_counts_it() {
    let mut cfg = support::config(0.0);
    cfg.rate_limits = vec!["ListInstances=0.001:3".parse().unwrap()];
    let emu = support::start(cfg).await;
    let client = one_shot(&emu);
    let req = kiln::oci::compute::ListInstances {
        compartment_id: COMPARTMENT.into(),
        ..Default::default()
    };
    for _ in 0..3 {
        client.list_instances(&req).await.expect("within the burst");
    }
    let e = client.list_instances(&req).await.unwrap_err();
    assert_eq!(
        (e.status, e.code.as_str(), e.kind),
        (Some(429), "TooManyRequests", ErrorKind::Throttled)
    );
    assert!(e.opc_request_id.is_some());
    // Another operation has its own bucket (no `*` rule).
    client
        .list_images(&kiln::oci::compute::ListImages {
            compartment_id: COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .expect("images are not limited");
    let stats = emu.stats();
    assert_eq!(stats.get("throttled"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("throttled.ListInstances"), Some(&1), "{stats:?}");
}

#[tokio::test]
async fn capacity_refuses_a_launch_beyond_room_with_out_of_host_capacity_and_creates_nothing() {
    let mut cfg = support::config(0.0);
    let ad = "kIdk:US-ASHBURN-AD-1";
    cfg.capacity = vec![
        format!("VM.Standard.E4@{ad}/FAULT-DOMAIN-1=1")
            .parse()
            .unwrap(),
        "VM.Standard.E4.Flex@AD-1=2".parse().unwrap(),
    ];
    let emu = support::start(cfg).await;
    assert_eq!(emu.fixtures().availability_domains[0], ad);
    let client = one_shot(&emu);
    let mut d = support::launch_details(&emu, "a");
    d.fault_domain = Some("FAULT-DOMAIN-1".into());
    let first = client
        .launch_instance(&d, &MutationOptions::default())
        .await
        .expect("room for one in FAULT-DOMAIN-1")
        .body;
    let before = emu.snapshot();
    let e = client
        .launch_instance(&d, &MutationOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        (e.status, e.code.as_str(), e.message.as_str()),
        (Some(500), "InternalError", "Out of host capacity.")
    );
    assert!(e.is_out_of_capacity());
    assert_eq!(e.attempts, 1);
    let after = emu.snapshot();
    assert_eq!(
        before.instances.len(),
        after.instances.len(),
        "nothing made"
    );
    assert_eq!(
        before.work_requests.len(),
        after.work_requests.len(),
        "no work request"
    );
    // Without a fault domain, OCI picks one with room.
    let mut any = support::launch_details(&emu, "b");
    any.fault_domain = None;
    let second = client
        .launch_instance(&any, &MutationOptions::default())
        .await
        .expect("the AD has room for 2")
        .body;
    assert_ne!(second.fault_domain.as_deref(), Some("FAULT-DOMAIN-1"));
    // The AD is full now: no fault domain helps.
    let e = client
        .launch_instance(&any, &MutationOptions::default())
        .await
        .unwrap_err();
    assert!(e.is_out_of_capacity(), "{e:?}");
    // Other ADs are not limited.
    let mut elsewhere = support::launch_details(&emu, "c");
    elsewhere.availability_domain = emu.fixtures().availability_domains[1].clone();
    client
        .launch_instance(&elsewhere, &MutationOptions::default())
        .await
        .expect("AD-2 has no limit");
    // Room comes back once an instance is TERMINATED (time scale 0: at once).
    client
        .terminate_instance(&first.id, None, None, &MutationOptions::default())
        .await
        .unwrap();
    client
        .launch_instance(&d, &MutationOptions::default())
        .await
        .expect("freed on TERMINATED");
}

/// 429 adaptation: an apply of 40 launches at parallelism 10 against `LaunchInstance=20:5`
/// finishes with no failed action, with few 429s (the budget paces the family after the first
/// ones instead of storming), and says it was throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_under_a_rate_limit_adapts_and_no_action_fails() {
    let mut cfg = support::config(0.0);
    cfg.rate_limits = vec!["LaunchInstance=20:5".parse().unwrap()];
    let p = support::Project::new(cfg).await;
    p.write("[instance.web]\ncount = 40\n");
    let out = p
        .kiln(&["apply", "--auto-approve", "--parallelism", "10"])
        .await;
    assert_eq!(out.code, 0, "no action failed: {out:?}");
    let stats = p.emu.stats();
    let sent = stats["LaunchInstance"];
    let throttled = stats.get("throttled.LaunchInstance").copied().unwrap_or(0);
    assert_eq!(sent - throttled, 40, "each launched once: {stats:?}");
    assert!(throttled > 0, "the limit was reached: {stats:?}");
    // Every request within the burst went through; beyond it, the emulator's bucket held (each
    // 429 is its refusal) — and kiln did not storm it: at most the first wave of the in-flight
    // requests, and a probe now and then.
    assert!(
        throttled <= 20,
        "the budget adapted instead of retrying blindly: {throttled} 429s for 40 launches ({stats:?})"
    );
    assert_eq!(
        stats.get("throttled"),
        Some(&throttled),
        "only launches are limited"
    );
    assert!(
        out.stderr.contains("429") || out.stderr.contains("throttled"),
        "the progress says kiln was throttled: {out:?}"
    );
    assert_eq!(p.live_instances().await.len(), 40);
}
