//! List-based waiting, counted (`kiln::oci::watch`): the waits of an apply share one listing per
//! poll round, so an apply of N launches makes N LaunchInstance and reads that grow with the
//! rounds, not with N × rounds. Everything here is counted by the emulator (`/_emulator/stats`),
//! never timed: how late a transition is noticed is measured by the benchmark (BENCHMARKS.md).

use std::collections::BTreeMap;

use crate::support::{self, Project};

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, op: &str) -> u64 {
    after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0)
}

/// N launches (one in ten then stopped) at parallelism N / 2, with `--wait-reads MODE`, on a fresh
/// emulator (launch 300 ms, stop 150 ms); the calls made by the apply, and those of the destroy.
async fn launches(mode: &str) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let p = Project::new(support::config(0.005)).await;
    let body: String = (0..N)
        .map(|i| {
            if i % 10 == 0 {
                format!("[instance.w{i:02}]\nstate = \"STOPPED\"\n")
            } else {
                format!("[instance.w{i:02}]\n")
            }
        })
        .collect();
    p.write(&body);
    let s0 = p.emu.stats();
    let apply = p
        .kiln(&[
            "apply",
            "--auto-approve",
            "--parallelism",
            "50",
            "--wait-reads",
            mode,
        ])
        .await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(p.live_instances().await.len() as u64, N);
    let s1 = p.emu.stats();
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "the apply converged: {plan:?}");
    let s2 = p.emu.stats();
    let destroy = p
        .kiln(&[
            "destroy",
            "--auto-approve",
            "--parallelism",
            "50",
            "--wait-reads",
            mode,
        ])
        .await;
    assert_eq!(destroy.code, 0, "{destroy:?}");
    assert!(p.live_instances().await.is_empty());
    let s3 = p.emu.stats();
    let apply_calls = s1
        .keys()
        .map(|op| (op.clone(), delta(&s0, &s1, op)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let destroy_calls = s3
        .keys()
        .map(|op| (op.clone(), delta(&s2, &s3, op)))
        .filter(|(_, n)| *n > 0)
        .collect();
    (apply_calls, destroy_calls)
}

/// Launches per apply.
const N: u64 = 100;

fn n(calls: &BTreeMap<String, u64>, op: &str) -> u64 {
    calls.get(op).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_share_listings_so_reads_grow_with_rounds_not_launches() {
    let (apply, destroy) = launches("list").await;
    // Every mutation once.
    assert_eq!(n(&apply, "LaunchInstance"), N, "{apply:?}");
    assert_eq!(n(&apply, "InstanceAction"), N / 10, "{apply:?}");
    assert_eq!(n(&destroy, "TerminateInstance"), N, "{destroy:?}");
    // The reads of the waits (and the plan's one listing): at most one per launch on average —
    // ≤ 2 calls per launch with the launch itself. Each waiter polling on its own reads about
    // 7 times over a 300 ms launch (the `get` test below), 700 in all; shared rounds come every
    // 50 ms or so while anything waits (30 to 45 here), whatever N.
    let reads = n(&apply, "GetInstance") + n(&apply, "ListInstances");
    assert!(
        reads <= N,
        "{reads} instance reads for {N} launches: {apply:?}"
    );
    // A wait that ends on a listing needs no Get; the stops read their instance once first
    // (a listing carries no etag, and every If-Match names a version kiln read).
    assert!(n(&apply, "GetInstance") >= N / 10, "{apply:?}");
    // Network facts: one listing of the attachments, of the subnet's private IPs and of the
    // compartment's public IPs in the AD; no GetVnic.
    for op in ["ListVnicAttachments", "ListPrivateIps", "ListPublicIps"] {
        assert_eq!(n(&apply, op), 1, "{op}: {apply:?}");
    }
    assert_eq!(n(&apply, "GetVnic"), 0, "{apply:?}");
    // The destroy waits for TERMINATED the same way (its plan lists once, and reads the etag
    // of each instance it deletes).
    let reads = n(&destroy, "GetInstance") + n(&destroy, "ListInstances");
    assert!(
        reads <= N + N,
        "{reads} instance reads for {N} terminations: {destroy:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_reads_get_polls_each_resource_on_its_own() {
    let (shared, _) = launches("list").await;
    let (apart, _) = launches("get").await;
    assert_eq!(n(&apart, "LaunchInstance"), N, "{apart:?}");
    // Only the plan lists (once); every wait reads with its own
    // Get, several times over a launch.
    assert_eq!(n(&apart, "ListInstances"), 1, "{apart:?}");
    let reads = |c: &BTreeMap<String, u64>| n(c, "GetInstance") + n(c, "ListInstances");
    assert!(
        reads(&apart) >= 2 * reads(&shared),
        "per-resource waits read {} times, shared ones {}: {apart:?} / {shared:?}",
        reads(&apart),
        reads(&shared)
    );
}

/// A waiter's first look comes when the quickest transition of the same kind in this apply was
/// still under way (`kiln::oci::watch::Learned`), not at once: one launch at a time (each wait
/// alone, reading with Gets), the first launch teaches the rest. Counted, not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_waits_look_first_when_the_transition_is_due() {
    const M: u64 = 10;
    // Launch 300 ms: polling from the start (50 ms pauses) reads ~7 times per launch.
    let p = Project::new(support::config(0.005)).await;
    let body: String = (0..M).map(|i| format!("[instance.w{i:02}]\n")).collect();
    p.write(&body);
    let s0 = p.emu.stats();
    let apply = p
        .kiln(&["apply", "--auto-approve", "--parallelism", "1"])
        .await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let s1 = p.emu.stats();
    let calls: BTreeMap<String, u64> = s1
        .keys()
        .map(|op| (op.clone(), delta(&s0, &s1, op)))
        .collect();
    assert_eq!(n(&calls, "LaunchInstance"), M, "{calls:?}");
    // The first wait polls from the start (~7 reads); each later one sleeps until the first
    // launch was last seen PROVISIONING and then reads about twice. Without learning: ~70.
    let reads = n(&calls, "GetInstance") + n(&calls, "ListInstances");
    assert!(
        reads <= 4 * M,
        "{reads} instance reads for {M} launches one at a time: {calls:?}"
    );
}
