//! The state file: locking across processes, corrupt and future files, and `kiln state`.

use std::time::Duration;

use kiln::state::{LockInfo, StateStore};

use crate::support::{self, scrub, Project};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_kiln_waits_for_the_lock_then_fails_naming_the_holder() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    let store = StateStore::local(p.path(), None, "default").unwrap();
    let held = store
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .await
        .unwrap();
    let out = p.kiln(&["plan", "--lock-timeout", "300ms"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("is locked by")
            && out.stderr.contains(&format!("pid {}", std::process::id()))
            && out.stderr.contains("apply"),
        "{out:?}"
    );
    drop(held);
    assert_eq!(p.kiln(&["plan"]).await.code, 0);
    // A lock record whose process is gone (no OS lock) is reported by force-unlock and removed.
    std::fs::create_dir_all(p.path().join("state")).unwrap();
    let stale = LockInfo {
        pid: 999_999,
        ..LockInfo::new("apply")
    };
    std::fs::write(
        p.path().join("state/default.json.lock"),
        serde_json::to_string(&stale).unwrap(),
    )
    .unwrap();
    let out = p.kiln(&["force-unlock", "--dir", "."]).await;
    assert!(out.stdout.contains("pid 999999"), "{out:?}");
    // The record is cleared; the lock file itself stays (unlinking it would split the lock).
    let left = std::fs::read_to_string(p.path().join("state/default.json.lock")).unwrap();
    assert!(left.is_empty(), "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_truncated_or_future_state_is_refused_and_left_untouched() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    std::fs::create_dir_all(p.path().join("state")).unwrap();
    let path = p.path().join("state/default.json");
    for (content, expect) in [
        (
            "{\"version\": 1, \"lineage\": \"x\", \"ser",
            "is corrupt or truncated",
        ),
        (
            "{\"version\": 7, \"lineage\": \"x\", \"serial\": 1, \"resources\": {}}",
            "has format version 7",
        ),
    ] {
        std::fs::write(&path, content).unwrap();
        let out = p.kiln(&["apply", "--auto-approve"]).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains(expect), "{out:?}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            content,
            "nothing overwritten"
        );
    }
    assert!(p.live_instances().await.is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_list_show_rm_and_mv() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n[instance.db]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let list = p.kiln(&["state", "list"]).await;
    insta::assert_snapshot!("state_list", scrub(&list.stdout, Some(&p)));
    let show = p.kiln(&["state", "show", "instance.web"]).await;
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(v["kind"], "instance");
    assert!(v["etag"].is_string() && v["attributes"]["displayName"] == "web");
    let serial = p.state()["serial"].as_u64().unwrap();
    let mv = p
        .kiln(&["state", "mv", "instance.web", "instance.frontend"])
        .await;
    assert_eq!(mv.code, 0, "{mv:?}");
    assert_eq!(p.state()["serial"].as_u64().unwrap(), serial + 1);
    assert_eq!(
        p.kiln(&["state", "mv", "instance.db", "instance.frontend"])
            .await
            .code,
        1,
        "target exists"
    );
    assert_eq!(
        p.kiln(&["state", "mv", "instance.db", "image.db"])
            .await
            .code,
        1,
        "kinds differ"
    );
    let rm = p.kiln(&["state", "rm", "instance.db"]).await;
    assert_eq!(rm.code, 0, "{rm:?}");
    let missing = p.kiln(&["state", "rm", "instance.nope"]).await;
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("`instance.nope` is not in the state"),
        "{missing:?}"
    );
    let list = p.kiln(&["state", "list"]).await;
    assert_eq!(scrub(&list.stdout, Some(&p)).lines().count(), 1);
    assert_eq!(
        p.live_instances().await.len(),
        2,
        "state rm leaves resources in OCI"
    );
}
