//! The remote lock's lease (issue 21): a holder renews its lock object while it runs;
//! `force-unlock` refuses a holder whose lease is fresh unless `--force`; a lock whose lease ran
//! out is reported as such and taken over, the state's own compare-and-swap still guarding it.
//!
//! Time without sleeps: the lease is judged on the store's clock, which these tests move
//! ([`Clock`]); a renewal is awaited as a condition (the lock object changing), with a short
//! renewal period.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kiln::oci::object_storage::{ObjectStorage, Precondition};
use kiln::state::remote::{Clock, Lease, LeaseStanding};
use kiln::state::{LockInfo, RemoteStore, State, StateError, StateStore};

use crate::state::remote::{backend, object, BUCKET, NS};
use crate::support::{self, Project};

fn remote(p: &Project, prefix: &str) -> RemoteStore {
    RemoteStore::new(
        ObjectStorage::new(p.client()),
        NS,
        BUCKET,
        prefix,
        "default",
    )
}

/// A clock `ahead` seconds ahead of the system's, movable.
fn clock(ahead: &Arc<AtomicI64>) -> Clock {
    let ahead = ahead.clone();
    Clock::new(move || Utc::now() + chrono::Duration::seconds(ahead.load(Ordering::SeqCst)))
}

/// The lock object's record.
async fn lock_record(p: &Project, prefix: &str) -> Option<LockInfo> {
    object(p, &format!("{prefix}default.json.lock"))
        .await
        .map(|v| serde_json::from_value(v).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_force_unlock_refuses_a_holder_whose_lease_is_fresh() {
    let p = Project::new(support::config(0.0)).await;
    p.write(&format!("[instance.a]\n{}", backend("fresh/")));
    let held = StateStore::Remote(remote(&p, "fresh/"))
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .await
        .unwrap();
    let record = lock_record(&p, "fresh/").await.expect("the lock object");
    assert_eq!(record.lease_seconds, Some(120), "{record:?}");
    assert!(record.renewed_at.is_some(), "{record:?}");

    // Library and CLI: refused, naming the holder and how long its lease runs.
    let e = StateStore::Remote(remote(&p, "fresh/"))
        .force_unlock(None, false)
        .await
        .unwrap_err();
    assert!(matches!(e, StateError::LeaseHeld { .. }), "{e:?}");
    let out = p.kiln(&["force-unlock"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let flat = out.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("renewed its lease")
            && flat.contains(&format!("pid {}", std::process::id()))
            && flat.contains("--force"),
        "{out:?}"
    );
    assert_eq!(
        lock_record(&p, "fresh/").await.map(|r| r.id),
        Some(held.info.id.clone()),
        "the lock is still there"
    );
    // `--force` removes it; the old holder's release then leaves the new state of things alone.
    let out = p.kiln(&["force-unlock", "--force"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Removed the lock held by"), "{out:?}");
    assert!(lock_record(&p, "fresh/").await.is_none());
    held.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_renews_its_lease_while_it_runs() {
    let p = Project::new(support::config(0.0)).await;
    let lease = Lease {
        length: Duration::from_secs(5),
        renew_every: Duration::from_millis(20),
    };
    let store = StateStore::Remote(remote(&p, "renew/").with_lease(lease));
    let held = store
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .await
        .unwrap();
    let first = lock_record(&p, "renew/").await.unwrap();
    assert_eq!(first.lease_seconds, Some(5));
    // Wait for a renewal: the record's `renewed_at` moves on (same lock id).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = lock_record(&p, "renew/").await.unwrap();
        assert_eq!(now.id, first.id);
        if now.renewed_at > first.renewed_at {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease was never renewed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Released: the lock object is gone (a renewal racing the release does not keep it).
    held.release().await.unwrap();
    assert!(lock_record(&p, "renew/").await.is_none());
}

/// A holder that dies: its lock object stays, renewed no more (its runtime is gone, its lock
/// never released).
fn die_holding(store: StateStore) -> LockInfo {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let lock = rt
            .block_on(store.lock(LockInfo::new("apply"), Duration::ZERO))
            .unwrap();
        let info = lock.info.clone();
        std::mem::forget(lock);
        rt.shutdown_background();
        info
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_lock_whose_holder_stopped_renewing_is_reported_and_taken_over() {
    let p = Project::new(support::config(0.0)).await;
    // The state at serial 1, then its holder dies holding the lock.
    let first = StateStore::Remote(remote(&p, "lapsed/"));
    let lock = first
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .await
        .unwrap();
    let mut old = State::new();
    first.save(&lock, &mut old).await.unwrap();
    lock.release().await.unwrap();
    let dead = die_holding(first.clone());
    let renewed_at = lock_record(&p, "lapsed/")
        .await
        .unwrap()
        .renewed_at
        .unwrap();

    // Within the lease: refused, as for a live holder.
    let ahead = Arc::new(AtomicI64::new(0));
    let later = StateStore::Remote(remote(&p, "lapsed/").with_clock(clock(&ahead)));
    let e = later.lock(LockInfo::new("apply"), Duration::ZERO).await;
    assert!(
        matches!(&e, Err(StateError::Locked { holder, .. }) if holder.contains(&dead.id)),
        "{:?}",
        e.map(|l| l.info.clone())
    );
    // A lease later: lapsed, reported with when its holder stopped renewing, and taken over.
    ahead.store(121, Ordering::SeqCst);
    let StateStore::Remote(r) = &later else {
        unreachable!()
    };
    let record = lock_record(&p, "lapsed/").await.unwrap();
    assert!(
        matches!(r.lease_standing(&record), LeaseStanding::Lapsed { renewed_at: t, .. } if t == renewed_at),
        "{:?}",
        r.lease_standing(&record)
    );
    let taken = later
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .await
        .expect("a lapsed lock is taken over");
    assert_eq!(
        lock_record(&p, "lapsed/").await.map(|r| r.id),
        Some(taken.info.id.clone())
    );
    // The state stays guarded: the new holder writes serial 2, and a write based on serial 1
    // (the dead holder's, were it to wake up) is refused.
    let mut st = later.load().await.unwrap().unwrap();
    later.save(&taken, &mut st).await.unwrap();
    let mut mine = kiln::state::ResourceState::new(kiln::state::ResourceKind::Instance);
    mine.id = Some("ocid1.instance.oc1..mine".into());
    old.resources.insert("instance.mine".into(), mine);
    let e = first.save(&taken, &mut old).await.unwrap_err();
    assert!(matches!(e, StateError::Conflict { .. }), "{e:?}");
    taken.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiln_force_unlock_and_apply_report_a_lapsed_lease_and_take_it_over() {
    let p = Project::new(support::config(0.0)).await;
    p.write(&format!("[instance.a]\n{}", backend("cli/")));
    let os = ObjectStorage::new(p.client());
    // The lock object a kiln left 10 minutes ago, with a 2-minute lease.
    let stale = |id: &str| LockInfo {
        id: id.into(),
        pid: 4242,
        lease_seconds: Some(120),
        renewed_at: Some(Utc::now() - chrono::Duration::minutes(10)),
        ..LockInfo::new("apply")
    };
    let put = |info: LockInfo| {
        let os = os.clone();
        async move {
            os.put_object(
                NS,
                BUCKET,
                "cli/default.json.lock",
                serde_json::to_vec(&info).unwrap(),
                "application/json",
                &Precondition::None,
            )
            .await
            .unwrap();
        }
    };
    put(stale("dead-1")).await;
    let out = p.kiln(&["force-unlock"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("pid 4242") && out.stdout.contains("stopped renewing its lease at"),
        "{out:?}"
    );
    assert!(lock_record(&p, "cli/").await.is_none());

    // The next run takes a lapsed lock over by itself, saying whose.
    put(stale("dead-2")).await;
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("taking over the state lock") && out.stderr.contains("dead-2"),
        "{out:?}"
    );
    assert!(lock_record(&p, "cli/").await.is_none(), "released after");
    assert_eq!(p.live_instances().await.len(), 1);
}
