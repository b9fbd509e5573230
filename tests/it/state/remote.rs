//! Remote state on Object Storage (`[backend] kind = "object_storage"`), driven through the kiln
//! binary against the emulator: end to end, concurrent runs, a killed holder, faults, migration.

use std::time::Duration;

use kiln::emulator::EmulatorConfig;
use kiln::oci::object_storage::ObjectStorage;
use serde_json::Value;

use crate::support::{self, Out, Project};

pub(crate) const NS: &str = "kilnemulator";
pub(crate) const BUCKET: &str = "kiln-state";

pub(crate) fn backend(prefix: &str) -> String {
    format!("\n[backend]\nkind = \"object_storage\"\nnamespace = \"{NS}\"\nbucket = \"{BUCKET}\"\nprefix = \"{prefix}\"\n")
}

/// The object `name` parsed as JSON, if it exists.
pub(crate) async fn object(p: &Project, name: &str) -> Option<Value> {
    let os = ObjectStorage::new(p.client());
    os.get_object(NS, BUCKET, name).await.unwrap().map(|o| {
        serde_json::from_slice(&o.body).unwrap_or_else(|e| panic!("`{name}` does not parse: {e}"))
    })
}

fn spawn(dir: &std::path::Path, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

async fn finish(child: tokio::process::Child) -> Out {
    let out = child.wait_with_output().await.unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_apply_on_the_remote_backend_and_migration_round_trips() {
    let p = Project::new(support::config(0.0)).await;
    let resources = "[instance.web]\n[instance.db]\n";
    p.write(&format!("{resources}{}", backend("team/")));
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        !p.path().join("state/default.json").exists(),
        "no local state"
    );
    let state = object(&p, "team/default.json").await.expect("remote state");
    assert_eq!(state["resources"].as_object().unwrap().len(), 2);
    assert!(
        object(&p, "team/default.json.lock").await.is_none(),
        "lock released"
    );
    let backup = object(&p, "team/default.json.backup")
        .await
        .expect("previous version kept");
    assert!(backup["serial"].as_u64().unwrap() < state["serial"].as_u64().unwrap());
    let out = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let list = p.kiln(&["state", "list"]).await;
    assert!(
        list.stdout.contains("instance.web") && list.stdout.contains("instance.db"),
        "{list:?}"
    );

    // Remote → local; the manifest without [backend] then plans nothing from the local file.
    let out = p.kiln(&["state", "migrate", "--to-local"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let local: Value = serde_json::from_str(
        &std::fs::read_to_string(p.path().join("state/default.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&local["lineage"], &local["serial"]),
        (&state["lineage"], &state["serial"])
    );
    p.write(resources);
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert!(
        out.code == 0 && out.stdout.contains("No changes"),
        "{out:?}"
    );

    // Local → a new remote prefix, lineage and serial kept; plans nothing there either.
    p.write(&format!("{resources}{}", backend("moved/")));
    let out = p.kiln(&["state", "migrate", "--to-backend"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let moved = object(&p, "moved/default.json").await.unwrap();
    assert_eq!(
        (&moved["lineage"], &moved["serial"]),
        (&local["lineage"], &local["serial"])
    );
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);
    let again = p.kiln(&["state", "migrate", "--to-backend"]).await;
    assert!(
        again.code == 0 && again.stdout.contains("nothing to copy"),
        "{again:?}"
    );

    // A destination holding another lineage is refused and left alone.
    let mut other = local.clone();
    other["lineage"] = "another-lineage".into();
    std::fs::write(p.path().join("state/default.json"), other.to_string()).unwrap();
    let out = p.kiln(&["state", "migrate", "--to-backend"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("different state"), "{out:?}");
    assert_eq!(object(&p, "moved/default.json").await.unwrap(), moved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applies_at_once_one_proceeds_the_other_waits_or_names_the_holder() {
    // Launches take 1.2 s, so the first apply holds the lock while the second starts.
    let p = Project::new(support::config(0.02)).await;
    p.write(&format!("[instance.a]\n[instance.b]\n{}", backend("")));
    let a = spawn(p.path(), &["apply", "--auto-approve"]);
    let b = spawn(p.path(), &["apply", "--auto-approve"]);
    let (a, b) = (finish(a).await, finish(b).await);
    let (won, lost) = if a.code == 0 { (a, b) } else { (b, a) };
    assert_eq!(won.code, 0, "{won:?}");
    assert_eq!(lost.code, 1, "{lost:?}");
    assert!(
        lost.stderr.contains("locked")
            && lost.stderr.contains("pid ")
            && lost.stderr.contains("apply"),
        "the loser names the holder: {lost:?}"
    );

    // With a lock timeout both proceed, one after the other; nothing is lost or duplicated.
    p.write(&format!(
        "[instance.a]\n[instance.b]\n[instance.c]\n[instance.d]\n{}",
        backend("")
    ));
    let c = spawn(
        p.path(),
        &["apply", "--auto-approve", "--lock-timeout", "2m"],
    );
    let d = spawn(
        p.path(),
        &["apply", "--auto-approve", "--lock-timeout", "2m"],
    );
    let (c, d) = (finish(c).await, finish(d).await);
    assert_eq!((c.code, d.code), (0, 0), "{c:?}\n{d:?}");
    assert!(
        c.stdout.contains("No changes") || d.stdout.contains("No changes"),
        "{c:?}\n{d:?}"
    );
    assert_eq!(p.live_instances().await.len(), 4);
    let state = object(&p, "default.json").await.unwrap();
    assert_eq!(state["resources"].as_object().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_runs_only_raise_the_serial_and_every_version_parses() {
    let p = Project::new(support::config(0.0)).await;
    let manifest = |run: usize| {
        format!(
            "{}[instance.web]\nfreeform_tags = {{ run = \"{run}\" }}\n{}",
            p.header(),
            backend("busy/")
        )
    };
    p.write(&format!(
        "[instance.web]\nfreeform_tags = {{ run = \"0\" }}\n{}",
        backend("busy/")
    ));
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);

    // 25 applies that each change the tag, 25 plans, all at once on one remote state.
    let dirs: Vec<tempfile::TempDir> = (0..50).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut children = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        std::fs::write(d.path().join("kiln.toml"), manifest(i + 1)).unwrap();
        let args: &[&str] = if i % 2 == 0 {
            &["apply", "--auto-approve", "--lock-timeout", "5m"]
        } else {
            &["plan", "--lock-timeout", "5m"]
        };
        children.push(spawn(d.path(), args));
    }
    // Watch the state while they run: every version read parses and the serial never falls.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let os = ObjectStorage::new(p.client());
        let done = done.clone();
        tokio::spawn(async move {
            let mut serials = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                for name in ["busy/default.json", "busy/default.json.backup"] {
                    if let Some(o) = os.get_object(NS, BUCKET, name).await.unwrap() {
                        let v: Value = serde_json::from_slice(&o.body)
                            .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
                        assert_eq!(v["version"], kiln::state::FORMAT_VERSION);
                        if name == "busy/default.json" {
                            serials.push(v["serial"].as_u64().unwrap());
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            serials
        })
    };
    for c in children {
        let out = finish(c).await;
        assert_eq!(out.code, 0, "{out:?}");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let serials = watcher.await.unwrap();
    assert!(serials.len() > 10, "the watcher saw the runs: {serials:?}");
    assert!(
        serials.windows(2).all(|w| w[0] <= w[1]),
        "the serial fell: {serials:?}"
    );
    assert!(serials.last() > serials.first(), "{serials:?}");
    let state = object(&p, "busy/default.json").await.unwrap();
    assert!(
        state["serial"].as_u64().unwrap() >= 26,
        "every apply wrote: {state}"
    );
    assert_eq!(p.live_instances().await.len(), 1, "no duplicates");
    assert!(object(&p, "busy/default.json.lock").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_is_named_and_force_unlock_recovers() {
    // Launches take 3 s: the apply is killed while it holds the lock with creates in flight.
    let p = Project::new(support::config(0.05)).await;
    p.write(&format!("[instance.a]\n[instance.b]\n{}", backend("")));
    let child = spawn(p.path(), &["apply", "--auto-approve"]);
    let pid = child.id().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let in_flight = object(&p, "default.json")
            .await
            .is_some_and(|s| s["resources"].as_object().is_some_and(|r| r.len() == 2));
        if in_flight && object(&p, "default.json.lock").await.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the apply never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let _ = finish(child).await;

    // A plan reads beside it, naming it; an apply is refused, naming it.
    let out = p.kiln(&["plan"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains(&format!("pid {pid}")), "{out:?}");
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("pid {pid}")) && out.stderr.contains("force-unlock"),
        "{out:?}"
    );
    // Its lease is fresh (nothing tells a dead holder on another machine from a live one until
    // it runs out): refused without `--force`.
    let out = p.kiln(&["force-unlock"]).await;
    assert!(
        out.code == 1 && out.stderr.contains("renewed its lease"),
        "{out:?}"
    );
    let out = p.kiln(&["force-unlock", "--force"]).await;
    assert!(
        out.code == 0 && out.stdout.contains(&format!("pid {pid}")),
        "{out:?}"
    );
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        p.live_instances().await.len(),
        2,
        "the crashed creates were not duplicated"
    );
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_errors_and_resets_never_leave_a_half_written_state() {
    // Every seeded run must keep the state whole; which faults a seed draws depends on how many
    // requests the apply makes, so seeds are tried in turn until a write's answer was lost
    // (`reset_after`, the fault this test is about) — every run checked the same way.
    let mut resets_after = 0;
    for seed in 9..=16 {
        resets_after += faulty_remote_apply(seed).await;
        if resets_after > 0 {
            break;
        }
    }
    assert!(resets_after > 0, "no seed of 9..=16 lost a write's answer");
}

/// One apply of three instances with remote state through an emulator answering with injected
/// 5xx, resets before and after the request took effect, and 429s (`seed`); returns how many
/// answers were lost after the request took effect.
async fn faulty_remote_apply(seed: u64) -> u64 {
    let p = Project::new(EmulatorConfig {
        fault_5xx: 0.15,
        fault_reset: 0.1,
        fault_reset_after: 0.15,
        fault_429: 0.05,
        seed: Some(seed),
        ..support::config(0.0)
    })
    .await;
    p.write(&format!(
        "[instance.a]\n[instance.b]\n[instance.c]\n{}",
        backend("faulty/")
    ));
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let state = object(&p, "faulty/default.json").await.unwrap();
    let resources = state["resources"].as_object().unwrap();
    assert!(
        resources
            .values()
            .all(|r| r["id"].is_string() && r["pending_create"].is_null()),
        "{state}"
    );
    let backup = object(&p, "faulty/default.json.backup").await.unwrap();
    assert_eq!(backup["lineage"], state["lineage"]);
    assert_eq!(p.live_instances().await.len(), 3);
    let out = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let stats = p.emu.stats();
    assert!(stats["PutObject"] > 4, "{stats:?}");
    let injected: u64 = ["fault.reset", "fault.5xx", "fault.429"]
        .iter()
        .filter_map(|k| stats.get(*k))
        .sum();
    assert!(injected > 0, "{stats:?}");
    stats.get("fault.reset_after").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_a_clear_error_and_nothing_is_sent_to_compute() {
    let p = Project::new(support::config(0.0)).await;
    p.write(&format!(
        "[instance.a]\n{}",
        backend("").replace(BUCKET, "no-such-bucket")
    ));
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    for part in [
        "cannot use the remote state",
        "objectstorage://kilnemulator/no-such-bucket/",
        "PutObject",
        "404 BucketNotFound",
        "opc-request-id",
    ] {
        assert!(out.stderr.contains(part), "`{part}` missing: {out:?}");
    }
    assert!(!p.emu.stats().contains_key("LaunchInstance"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_interrupt_releases_the_lock_object_before_exiting() {
    use tokio::io::AsyncBufReadExt;
    let p = Project::new(support::config(0.01)).await;
    let body: String = (0..20).map(|n| format!("[instance.c{n:02}]\n")).collect();
    p.write(&format!("{body}{}", backend("interrupted/")));
    let mut child = spawn(p.path(), &["apply", "--auto-approve", "--parallelism", "2"]);
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let pid = child.id().unwrap().to_string();
    let interrupt = || {
        assert!(std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success())
    };
    // The first interrupt once an action runs; the second once kiln has acknowledged the first.
    let mut seen = String::new();
    let mut sent = 0;
    while let Some(line) = stderr.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
        if sent == 0 && line.contains("started") {
            interrupt();
            sent = 1;
        } else if sent == 1 && line.contains("Interrupted") {
            interrupt();
            sent = 2;
        }
    }
    let status = child.wait().await.unwrap();
    assert_eq!(sent, 2, "{seen}");
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(
        object(&p, "interrupted/default.json.lock").await.is_none(),
        "the lock object was released: {seen}"
    );
    let again = finish(spawn(p.path(), &["apply", "--auto-approve"])).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(p.live_instances().await.len(), 20);
}
