//! `placement` and capacity fallback, with the kiln binary against the emulator's `--capacity`:
//! members spread over ADs and FDs and stay put when the fleet scales; a full place makes the
//! apply try the next fault domain, then the next AD; nothing left fails that member only; an
//! explicit AD is never moved.

use std::collections::BTreeMap;

use crate::support::{self, Project};

const AD1: &str = "kIdk:US-ASHBURN-AD-1";
const AD2: &str = "kIdk:US-ASHBURN-AD-2";
const AD3: &str = "kIdk:US-ASHBURN-AD-3";

/// Live instances by display name → (AD, FD), TERMINATED left out.
async fn places(p: &Project) -> BTreeMap<String, (String, String)> {
    p.live_instances()
        .await
        .into_iter()
        .filter(|i| i.lifecycle_state != "TERMINATED")
        .map(|i| {
            (
                i.display_name.unwrap_or_default(),
                (i.availability_domain, i.fault_domain.unwrap_or_default()),
            )
        })
        .collect()
}

fn short(ad: &str) -> &str {
    ad.rsplit('-').next().unwrap_or(ad)
}

/// `name → "AD/FD"` with the AD's number and the FD's number, e.g. `web-0 → 1/1`.
async fn layout(p: &Project) -> Vec<String> {
    places(p)
        .await
        .into_iter()
        .map(|(n, (ad, fd))| format!("{n} {}/{}", short(&ad), short(&fd)))
        .collect()
}

fn fleet(n: usize) -> String {
    format!("[instance.web]\ncount = {n}\nplacement = {{ availability_domains = [\"{AD1}\", \"{AD2}\", \"{AD3}\"], fault_domains = \"spread\" }}\n")
}

async fn apply_ok(p: &Project) -> support::Out {
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let again = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(again.code, 0, "converged: {again:?}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_spreads_a_fleet_over_ads_and_fault_domains_and_scaling_moves_no_member() {
    let p = Project::new(support::config(0.0)).await;
    p.write(&fleet(4));
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains(AD2) && plan.stdout.contains("FAULT-DOMAIN-2"),
        "the plan shows each member's place: {plan:?}"
    );
    apply_ok(&p).await;
    assert_eq!(
        layout(&p).await,
        ["web-0 1/1", "web-1 2/1", "web-2 3/1", "web-3 1/2"]
    );
    let ids: BTreeMap<String, String> = p
        .live_instances()
        .await
        .into_iter()
        .map(|i| (i.display_name.unwrap_or_default(), i.id))
        .collect();
    p.write(&fleet(7));
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout
            .contains("Plan: 3 to create, 0 to update, 0 to replace"),
        "{plan:?}"
    );
    apply_ok(&p).await;
    assert_eq!(
        layout(&p).await,
        [
            "web-0 1/1",
            "web-1 2/1",
            "web-2 3/1",
            "web-3 1/2",
            "web-4 2/2",
            "web-5 3/2",
            "web-6 1/3"
        ]
    );
    p.write(&fleet(2));
    let plan = p.kiln(&["plan"]).await;
    assert!(
        plan.stdout.contains("0 to create, 0 to update, 0 to replace, 0 to move, 0 to start, 0 to stop, 5 to destroy"),
        "{plan:?}"
    );
    apply_ok(&p).await;
    let now: BTreeMap<String, String> = p
        .live_instances()
        .await
        .into_iter()
        .filter(|i| i.lifecycle_state != "TERMINATED")
        .map(|i| (i.display_name.unwrap_or_default(), i.id))
        .collect();
    assert_eq!(now.len(), 2);
    for (n, id) in &now {
        assert_eq!(&ids[n], id, "{n} untouched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_fallback_goes_to_the_next_fault_domain_then_the_next_ad_and_is_kept() {
    let mut cfg = support::config(0.0);
    // AD-1 has room in FAULT-DOMAIN-2 only; AD-2 has none at all; AD-3 is open.
    cfg.capacity = vec![
        "VM.Standard.E4.Flex@AD-1/FAULT-DOMAIN-1=0".parse().unwrap(),
        "VM.Standard.E4.Flex@AD-1/FAULT-DOMAIN-3=0".parse().unwrap(),
        "VM.Standard.E4.Flex@AD-2=0".parse().unwrap(),
    ];
    let p = Project::new(cfg).await;
    p.write(&format!("[instance.web]\ncount = 3\nplacement = {{ availability_domains = [\"{AD1}\", \"{AD2}\", \"{AD3}\"], fault_domains = \"spread\" }}\n"));
    let out = apply_ok(&p).await;
    // web-0: AD-1/FD-1 full → AD-1/FD-2. web-1: AD-2 full everywhere → AD-3/FD-1.
    assert_eq!(layout(&p).await, ["web-0 1/2", "web-1 3/1", "web-2 3/1"]);
    assert!(
        out.stderr.contains("no capacity in") || out.stdout.contains("no capacity in"),
        "the apply says which places were full: {out:?}"
    );
    let stats = p.emu.stats();
    assert_eq!(stats["LaunchInstance"], 3 + 1 + 3, "{stats:?}");
    assert_eq!(p.emu.snapshot().instances.len(), 3, "never twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_place_left_fails_that_member_listing_the_places_and_the_rest_applies() {
    let mut cfg = support::config(0.0);
    cfg.capacity = vec!["VM.Standard.E4.Flex@AD-1=1".parse().unwrap()];
    let p = Project::new(cfg).await;
    p.write(&format!("[instance.other]\navailability_domain = \"{AD2}\"\n[instance.web]\ncount = 2\nplacement = {{ availability_domains = [\"{AD1}\"], fault_domains = \"any\" }}\n"));
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("out of host capacity in kIdk:US-ASHBURN-AD-1")
            || all.contains("Out of host capacity"),
        "{out:?}"
    );
    let landed = places(&p).await;
    assert_eq!(landed.len(), 2, "other and one member: {landed:?}");
    assert!(
        landed.contains_key("other"),
        "the rest of the apply went on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_availability_domain_is_never_moved_for_capacity() {
    let mut cfg = support::config(0.0);
    cfg.capacity = vec!["*@AD-1=0".parse().unwrap()];
    let p = Project::new(cfg).await;
    p.write("[instance.pinned]\n");
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("Out of host capacity"), "{out:?}");
    assert!(all.contains("InternalError"), "{out:?}");
    assert_eq!(
        p.emu.stats()["LaunchInstance"],
        1,
        "tried once, in its AD only"
    );
    assert!(places(&p).await.is_empty());
}
