//! Two kilns on one local state, one forced out mid-apply (`kiln force-unlock --force`): the
//! old holder's writes that race the new holder's must fail their compare-and-swap — never be
//! acknowledged into a journal nobody reads, never roll the state back (issue 21, item 4).
//!
//! The race is hit deterministically, without sleeps: a failpoint callback runs the second kiln
//! (on a thread of its own) at the instant the first crosses a journal boundary. The failpoint
//! registry is global to this binary, so the callback fires only on the thread of the test that
//! set it (these tests run on a current-thread runtime: the first kiln runs on that thread).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kiln::failpoint;
use kiln::state::{Commits, LockInfo, ResourceKind, ResourceState, State, StateStore};

/// Run `f` once, the first time the test's own thread crosses `point`; removed on drop.
pub struct OnThisThread(&'static str);

impl OnThisThread {
    pub fn new(point: &'static str, f: impl Fn() + Send + Sync + 'static) -> OnThisThread {
        let me = std::thread::current().id();
        let fired = AtomicBool::new(false);
        fail::cfg_callback(point, move || {
            if std::thread::current().id() == me && !fired.swap(true, Ordering::SeqCst) {
                f();
            }
        })
        .unwrap();
        OnThisThread(point)
    }
}

impl Drop for OnThisThread {
    fn drop(&mut self) {
        fail::remove(self.0);
    }
}

fn record(id: &str) -> Option<ResourceState> {
    let mut r = ResourceState::new(ResourceKind::Instance);
    r.id = Some(id.into());
    Some(r)
}

fn change(address: &str, id: &str) -> BTreeMap<String, Option<ResourceState>> {
    BTreeMap::from([(address.to_string(), record(id))])
}

fn store(dir: &Path) -> StateStore {
    StateStore::local(dir, None, "default").unwrap()
}

/// The second kiln, on a thread and runtime of its own (the first is blocked in the failpoint):
/// `kiln force-unlock --force`, then lock, load (the journal folded in), fold the journal the
/// first left (as every apply does first), and, with `commit`, record one change of its own and
/// fold it.
fn second_kiln(dir: PathBuf, commit: Option<(&'static str, &'static str)>) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let b = store(&dir);
            b.force_unlock(None, true).await.unwrap();
            let lock = b
                .lock(LockInfo::new("apply"), Duration::ZERO)
                .await
                .unwrap();
            let mut st = b.load().await.unwrap().unwrap();
            let mut commits = Commits::new(b.clone());
            commits.begin(&lock, &st).await.unwrap();
            if let Some((address, id)) = commit {
                let changes = change(address, id);
                st.serial = commits
                    .append(&lock, &st.lineage, st.serial, changes.clone())
                    .await
                    .unwrap();
                st.resources
                    .extend(changes.into_iter().map(|(a, r)| (a, r.expect("a record"))));
                commits.finish(&lock, &mut st, false).await.unwrap();
            }
            lock.release().await.unwrap();
        })
    })
    .join()
    .expect("the second kiln ran");
}

/// The first kiln: a state at serial 1 and one journaled commit (serial 2), holding the lock.
async fn first_kiln(dir: &Path) -> (StateStore, kiln::state::StateLock, Commits, State) {
    let a = store(dir);
    let lock = a
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .await
        .unwrap();
    let mut st = State::new();
    a.save(&lock, &mut st).await.unwrap();
    let mut commits = Commits::new(a.clone());
    commits.begin(&lock, &st).await.unwrap();
    let serial = commits
        .append(
            &lock,
            &st.lineage,
            st.serial,
            change("instance.one", "ocid1.instance.oc1..one"),
        )
        .await
        .unwrap();
    assert_eq!(serial, 2);
    let st = a.load().await.unwrap().unwrap();
    assert_eq!(st.serial, 2);
    (a, lock, commits, st)
}

#[tokio::test]
async fn an_append_racing_a_forced_takeover_is_refused_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (a, lock, mut commits, st) = first_kiln(dir.path()).await;
    // The second kiln takes over and folds the journal just as the first is about to append.
    let taken = dir.path().to_path_buf();
    let _fp = OnThisThread::new(failpoint::STATE_JOURNAL, move || {
        second_kiln(taken.clone(), None)
    });
    let appended = commits
        .append(
            &lock,
            &st.lineage,
            st.serial,
            change("instance.two", "ocid1.instance.oc1..two"),
        )
        .await;
    let stored = a.load().await.unwrap().unwrap();
    match appended {
        // Acknowledged: the commit must be in the state every later kiln reads.
        Ok(serial) => assert!(
            stored.resources.contains_key("instance.two") && stored.serial >= serial,
            "commit {serial} was acknowledged but is not in the stored state (serial {}): {:?}",
            stored.serial,
            stored.resources.keys().collect::<Vec<_>>()
        ),
        Err(e) => {
            assert!(e.to_string().contains("written by someone else"), "{e}");
            assert!(!stored.resources.contains_key("instance.two"));
        }
    }
    assert!(stored.resources.contains_key("instance.one"), "{stored:?}");
    assert!(
        !dir.path().join("state/default.json.journal").exists(),
        "no journal left behind"
    );
}

#[tokio::test]
async fn a_fold_racing_a_forced_takeover_never_rolls_the_state_back() {
    let dir = tempfile::tempdir().unwrap();
    let (a, lock, mut commits, mut st) = first_kiln(dir.path()).await;
    // The second kiln takes over, folds, and records a commit of its own (serial 3) just as the
    // first is about to fold its journal at the end of its apply.
    let taken = dir.path().to_path_buf();
    let _fp = OnThisThread::new(failpoint::STATE_FOLD, move || {
        second_kiln(
            taken.clone(),
            Some(("instance.theirs", "ocid1.instance.oc1..theirs")),
        )
    });
    let folded = commits.finish(&lock, &mut st, false).await;
    let stored = a.load().await.unwrap().unwrap();
    assert_eq!(
        stored.serial, 3,
        "the state went back to serial {}: {folded:?}",
        stored.serial
    );
    assert!(
        stored.resources.contains_key("instance.theirs"),
        "the second kiln's commit was lost: {:?}",
        stored.resources.keys().collect::<Vec<_>>()
    );
    let e = folded.unwrap_err();
    assert!(e.to_string().contains("written by someone else"), "{e}");
}
