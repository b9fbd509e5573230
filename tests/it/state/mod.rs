//! The state file: locking across processes, corrupt and future files, and `kiln state`;
//! [`remote`] keeps it on Object Storage, [`remote_lock`] tests the remote lock's lease.

pub(crate) mod remote;
mod remote_lock;

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
    let out = p
        .kiln(&["apply", "--auto-approve", "--lock-timeout", "300ms"])
        .await;
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
    // (a record last read from a listing has no etag: the next mutation reads one first)
    assert!(
        (v["etag"].is_string() || v["etag"].is_null()) && v["attributes"]["displayName"] == "web"
    );
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

mod fuzz {
    //! State files through the loader: never a panic; what it accepts is a state kiln can write
    //! and read back unchanged.

    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn valid() -> Value {
        json!({
            "version": 2, "lineage": "4f0c", "serial": 7,
            "resources": {
                "instance.web": {"kind": "instance", "id": "ocid1.instance.oc1.iad.aaaa", "etag": "e1",
                    "attributes": {"displayName": "web", "lifecycleState": "RUNNING"}, "inputs": {"subnet_id": "s"},
                    "network": {"vnic_id": "ocid1.vnic.oc1.iad.cccc", "private_ip": "10.0.0.2", "public_ip": null,
                        "hostname_label": "web", "read_at": "2026-11-23T00:00:00Z"},
                    "updated_at": "2026-11-23T00:00:00Z"},
                "image.golden": {"kind": "image", "id": null, "updated_at": "2026-11-23T00:00:00Z",
                    "pending_create": {"retry_token": "abc", "request_digest": "d", "request": {"displayName": "g"},
                        "started_at": "2026-11-23T00:00:00Z"},
                    "deposed": [{"id": "ocid1.image.oc1.iad.bbbb", "since": "2026-11-23T00:00:00Z"}]}
            }
        })
    }

    fn arb_scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z.\\[\\]\"0-9]{0,12}".prop_map(Value::from),
            Just(json!("ocid1.instance.oc1.iad.aaaa")),
            Just(json!("instance.web")),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        arb_scalar().prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        "[a-z_]{1,10}".boxed(),
                        prop::sample::select(vec![
                            "version",
                            "lineage",
                            "serial",
                            "resources",
                            "kind",
                            "id",
                            "deposed",
                            "pending_create",
                            "retry_token",
                            "network",
                            "vnic_id",
                            "updated_at",
                            "instance.web"
                        ])
                        .prop_map(str::to_string)
                        .boxed()
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A valid state with one field somewhere replaced by an arbitrary value.
    fn arb_mutated() -> impl Strategy<Value = String> {
        (any::<prop::sample::Index>(), arb_value()).prop_map(|(ix, v)| {
            let mut doc = valid();
            let mut paths = Vec::new();
            fn walk(v: &Value, at: String, out: &mut Vec<String>) {
                out.push(at.clone());
                if let Value::Object(m) = v {
                    for (k, x) in m {
                        walk(
                            x,
                            format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                            out,
                        );
                    }
                }
            }
            walk(&doc, String::new(), &mut paths);
            let path = ix.get(&paths).clone();
            match doc.pointer_mut(&path) {
                Some(slot) => *slot = v,
                None => doc = v,
            }
            doc.to_string()
        })
    }

    /// Raw text: valid documents cut, spliced, with keys repeated.
    fn arb_text() -> impl Strategy<Value = String> {
        let text = valid().to_string();
        (0..text.len(), 0..text.len(), "[{}\\[\\]\",:0-9a-z ]{0,8}").prop_map(
            move |(a, b, junk)| {
                let (a, b) = (a.min(b), a.max(b));
                let mut t = text.clone();
                if a % 3 == 0 {
                    // Repeat a key: `"resources":{}` inserted after the opening brace.
                    t.insert_str(1, "\"resources\":{},");
                }
                t.replace_range(a..b, &junk);
                t
            },
        )
    }

    fn check(text: &str) {
        if let Ok(state) = kiln::state::parse("fuzz.json", text) {
            let again = serde_json::to_string(&state).unwrap();
            let back =
                kiln::state::parse("fuzz.json", &again).expect("what is accepted reads back");
            assert_eq!(back, state);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(std::env::var("KILN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)))]
        #[test]
        fn the_state_loader_never_panics(text in prop_oneof![arb_mutated(), arb_text(), arb_value().prop_map(|v| v.to_string())]) {
            check(&text);
        }
    }

    #[test]
    fn the_valid_sample_is_accepted() {
        check(&valid().to_string());
        assert!(kiln::state::parse("x", &valid().to_string()).is_ok());
    }
}

/// A journal line as kiln writes it: `<hex SHA-256 of the JSON> <JSON>\n`.
fn journal_line(json: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let text = json.to_string();
    format!("{} {text}\n", hex::encode(Sha256::digest(text.as_bytes())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_left_by_a_dead_kiln_is_read_and_folded_by_the_next() {
    let p = Project::new(support::config(0.0)).await;
    let body: String = (0..6).map(|n| format!("[instance.j{n}]\n")).collect();
    p.write(&body);
    // The kiln dies (a real abort) right after its fifth durable commit: pending creates and
    // ids are in the journal only.
    let died = p
        .kiln_faulted(
            "state.journaled=4*off->return(abort)",
            &["apply", "--auto-approve", "--parallelism", "1"],
        )
        .await;
    assert_ne!(died.code, 0, "{died:?}");
    let journal = p.path().join("state/default.json.journal");
    assert!(journal.exists(), "{died:?}");
    // Every reader folds it: the recorded ids are there, and the serial counts the commits.
    let st = support::stored_state(p.path()).await.unwrap().unwrap();
    assert_eq!(st.serial, 5);
    assert!(st.resources.values().any(|r| r.id.is_some()), "{st:?}");
    let list = p.kiln(&["state", "list"]).await;
    assert_eq!(list.code, 0, "{list:?}");
    // The next apply folds it first, finishes the work, and leaves no journal.
    let again = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(!journal.exists());
    assert_eq!(p.live_instances().await.len(), 6, "nothing launched twice");
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrustworthy_journal_is_refused_and_nothing_is_overwritten() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n[instance.db]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let st = p.state();
    let (lineage, serial) = (
        st["lineage"].as_str().unwrap(),
        st["serial"].as_u64().unwrap(),
    );
    let web = st["resources"]["instance.web"].clone();
    let header = |lineage: &str, base: u64| {
        journal_line(
            &serde_json::json!({"kiln_journal": 1, "lineage": lineage, "base_serial": base}),
        )
    };
    let entry = |serial: u64, address: &str, record: &serde_json::Value| {
        journal_line(&serde_json::json!({"serial": serial, "resources": {address: record}}))
    };
    let mut damaged = entry(serial + 1, "instance.extra", &web).into_bytes();
    damaged[100] ^= 1;
    let damaged = String::from_utf8(damaged).unwrap();
    for (journal, why) in [
        (
            // A damaged line with an acknowledged one after it.
            format!(
                "{}{damaged}{}",
                header(lineage, serial),
                entry(serial + 2, "instance.web", &serde_json::Value::Null)
            ),
            "line 2 is damaged",
        ),
        (
            format!(
                "{}{}",
                header("another-lineage", serial),
                entry(serial + 1, "instance.web", &serde_json::Value::Null)
            ),
            "belongs to lineage another-lineage",
        ),
        (
            // It extends a serial the state is not at (the state was rolled back under it).
            format!(
                "{}{}",
                header(lineage, serial + 3),
                entry(serial + 4, "instance.web", &serde_json::Value::Null)
            ),
            "extends serial",
        ),
        (
            // The folded state records one OCID twice.
            format!(
                "{}{}",
                header(lineage, serial),
                entry(serial + 1, "instance.extra", &web)
            ),
            "recorded for both",
        ),
    ] {
        let path = p.path().join("state/default.json.journal");
        std::fs::write(&path, &journal).unwrap();
        let state_before = std::fs::read(p.path().join("state/default.json")).unwrap();
        for args in [
            &["plan"][..],
            &["apply", "--auto-approve"],
            &["state", "list"],
        ] {
            let out = p.kiln(args).await;
            assert_eq!(out.code, 1, "{args:?} with {why}: {out:?}");
            // (the diagnostic wraps lines)
            let flat = out
                .stderr
                .replace('│', " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                flat.contains("cannot be trusted") && flat.contains(why),
                "{args:?}: {out:?}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            journal,
            "journal kept"
        );
        assert_eq!(
            std::fs::read(p.path().join("state/default.json")).unwrap(),
            state_before,
            "state kept"
        );
    }
    assert_eq!(p.live_instances().await.len(), 2, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_append_after_someone_else_wrote_the_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::local(dir.path(), None, "default").unwrap();
    let lock = store
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .await
        .unwrap();
    let mut mine = kiln::state::State::new();
    store.save(&lock, &mut mine).await.unwrap();
    let mut commits = kiln::state::Commits::new(store.clone());
    assert!(commits.journaled());
    let serial = commits
        .append(&lock, &mine.lineage, mine.serial, Default::default())
        .await
        .unwrap();
    assert_eq!(serial, 2);
    let journal = dir.path().join("state/default.json.journal");
    // Someone who broke the lock folded it and wrote serial 3: the next append is refused.
    let mut theirs = store.load().await.unwrap().unwrap();
    assert_eq!(theirs.serial, 2);
    store.save(&lock, &mut theirs).await.unwrap();
    assert!(!journal.exists(), "their save folded the journal");
    let before = std::fs::read(dir.path().join("state/default.json")).unwrap();
    let e = commits
        .append(&lock, &mine.lineage, serial, Default::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("written by someone else"), "{e}");
    assert!(!journal.exists());
    assert_eq!(
        std::fs::read(dir.path().join("state/default.json")).unwrap(),
        before
    );
    // Nor is a journal started over a state that moved since it was read.
    let mut fresh = kiln::state::Commits::new(store.clone());
    let e = fresh
        .append(&lock, &mine.lineage, 1, Default::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("written by someone else"), "{e}");
    assert!(!journal.exists());
}

#[test]
fn a_pending_create_of_an_older_state_says_where_and_under_which_address_it_was_sent() {
    let p: kiln::state::PendingCreate = serde_json::from_value(serde_json::json!({
        "retry_token": "t", "request_digest": "d", "started_at": "2026-11-23T00:00:00Z",
        "request": {
            "displayName": "web",
            "createVnicDetails": {"subnetId": "ocid1.subnet.oc1.phx.aaaa"},
            "freeformTags": {"kiln-address": "instance.web"}
        }
    }))
    .unwrap();
    assert_eq!(
        p.sent_region().as_deref(),
        Some("us-phoenix-1"),
        "from the subnet"
    );
    assert_eq!(
        p.sent_address().as_deref(),
        Some("instance.web"),
        "from the tag"
    );
    let recorded = kiln::state::PendingCreate {
        region: Some("eu-frankfurt-1".into()),
        address: Some("instance.old".into()),
        ..p.clone()
    };
    assert_eq!(recorded.sent_region().as_deref(), Some("eu-frankfurt-1"));
    assert_eq!(recorded.sent_address().as_deref(), Some("instance.old"));
    let v1 = kiln::state::PendingCreate { request: None, ..p };
    assert_eq!(v1.sent_region(), None, "a format-1 record cannot tell");
    let started = v1.started_at;
    assert!(v1.token_fresh(started + chrono::Duration::hours(22)));
    assert!(!v1.token_fresh(started + chrono::Duration::hours(23)));
}
