//! A plan beside an apply (issue 21): a CI drift check that overlaps an apply reads the state as
//! the apply has recorded it so far — local state with its journal folded in, remote state as
//! stored — instead of failing on the lock; its header names the holder; a plan saved meanwhile
//! is refused as stale once the apply records more.

use std::collections::BTreeMap;
use std::time::Duration;

use kiln::oci::object_storage::ObjectStorage;
use kiln::state::{Commits, LockInfo, RemoteStore, StateStore};

use crate::state::remote::{backend, BUCKET, NS};
use crate::support::{self, Out, Project};

fn flat(out: &Out) -> String {
    format!("{}\n{}", out.stdout, out.stderr)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The plans a CI job runs beside the apply: all succeed, read serial `serial`, name the holder.
async fn plans_read_beside(p: &Project, serial: u64) {
    for args in [
        &["plan", "--detailed-exitcode"][..],
        &["plan", "--refresh-only", "--detailed-exitcode"],
    ] {
        let out = p.kiln(args).await;
        assert_eq!(out.code, 0, "{args:?} reads beside the apply: {out:?}");
        let text = flat(&out);
        assert!(
            text.contains("the state is locked by")
                && text.contains(&format!("pid {}", std::process::id()))
                && text.contains("`kiln apply` is running")
                && text.contains(&format!("(serial {serial})")),
            "{args:?}: {out:?}"
        );
    }
    let out = p.kiln(&["plan", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["state_serial"], serial, "{plan}");
    assert_eq!(plan["locked_by"]["pid"], std::process::id(), "{plan}");
}

/// `kiln apply beside.plan`, saved before the apply recorded more, is refused as stale and creates
/// nothing: `live` instances stay.
async fn assert_stale_plan_refused(p: &Project, live: usize) {
    let out = p.kiln(&["apply", "beside.plan"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        flat(&out).contains("the state changed since this plan was made"),
        "{out:?}"
    );
    assert_eq!(p.live_instances().await.len(), live, "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_beside_an_apply_reads_its_journal_instead_of_failing() {
    let p = Project::new(support::config(0.0)).await;
    let state_file = p.path().join("state/default.json");
    p.write("[instance.web]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let before = std::fs::read(&state_file).unwrap();
    p.write("[instance.web]\n[instance.db]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let db = support::stored_state(p.path())
        .await
        .unwrap()
        .unwrap()
        .resources["instance.db"]
        .clone();
    // The second apply as it was while running: the state file from before it, `instance.db`
    // recorded in its journal only, the lock held.
    std::fs::write(&state_file, &before).unwrap();
    let store = StateStore::local(p.path(), None, "default").unwrap();
    let lock = store
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .await
        .unwrap();
    let st = store.load().await.unwrap().unwrap();
    let mut commits = Commits::new(store.clone());
    commits.begin(&lock, &st).await.unwrap();
    let record = |r: &kiln::state::ResourceState| {
        BTreeMap::from([("instance.db".to_string(), Some(r.clone()))])
    };
    let serial = commits
        .append(&lock, &st.lineage, st.serial, record(&db))
        .await
        .unwrap();
    assert!(p.path().join("state/default.json.journal").exists());

    // Without the journal the plan would create `instance.db` again: it reads it.
    plans_read_beside(&p, serial).await;

    // A plan saved now names that serial; the apply records one more commit and finishes; the
    // saved plan is refused as stale.
    p.write("[instance.web]\n[instance.db]\n[instance.cache]\n");
    let out = p.kiln(&["plan", "--out", "beside.plan"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let mut later = db.clone();
    later.updated_at = chrono::Utc::now();
    let mut st = store.load().await.unwrap().unwrap();
    st.serial = commits
        .append(&lock, &st.lineage, serial, record(&later))
        .await
        .unwrap();
    st.resources.insert("instance.db".into(), later);
    commits.finish(&lock, &mut st, false).await.unwrap();
    lock.release().await.unwrap();
    assert_stale_plan_refused(&p, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_beside_an_apply_on_remote_state_reads_instead_of_failing() {
    let p = Project::new(support::config(0.0)).await;
    p.write(&format!("[instance.web]\n{}", backend("beside/")));
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let store = StateStore::Remote(RemoteStore::new(
        ObjectStorage::new(p.client()),
        NS,
        BUCKET,
        "beside/",
        "default",
    ));
    let lock = store
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .await
        .unwrap();
    // The apply records a commit (the whole object, on a remote store).
    let mut st = store.load().await.unwrap().unwrap();
    st.resources.get_mut("instance.web").unwrap().updated_at = chrono::Utc::now();
    store.save(&lock, &mut st).await.unwrap();
    plans_read_beside(&p, st.serial).await;

    p.write(&format!(
        "[instance.web]\n[instance.cache]\n{}",
        backend("beside/")
    ));
    let out = p.kiln(&["plan", "--out", "beside.plan"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    st.resources.get_mut("instance.web").unwrap().updated_at = chrono::Utc::now();
    store.save(&lock, &mut st).await.unwrap();
    lock.release().await.unwrap();
    assert_stale_plan_refused(&p, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_with_a_lock_timeout_waits_for_a_free_lock_and_reads_beside_a_held_one() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let store = StateStore::local(p.path(), None, "default").unwrap();
    let lock = store
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .await
        .unwrap();
    // Still held when the timeout ends: the plan reads beside the holder all the same.
    let out = p
        .kiln(&["plan", "--detailed-exitcode", "--lock-timeout", "1s"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(flat(&out).contains("the state is locked by"), "{out:?}");
    lock.release().await.unwrap();
    // Free: no note.
    let out = p
        .kiln(&["plan", "--detailed-exitcode", "--lock-timeout", "5s"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!flat(&out).contains("locked"), "{out:?}");
}
