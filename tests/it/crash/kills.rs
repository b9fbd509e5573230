//! A kiln killed (SIGKILL) or interrupted (SIGINT) in the middle of an apply leaves a valid state;
//! the next apply converges without duplicates.

use std::time::Duration;

use crate::support::{self, Project};

fn twenty() -> String {
    (0..20).map(|n| format!("[instance.c{n:02}]\n")).collect()
}

async fn spawn_apply(p: &Project) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["apply", "--auto-approve", "--parallelism", "5"])
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Instances the state records (its file and journal, read as kiln reads them).
async fn recorded(p: &Project) -> usize {
    support::stored_state(p.path())
        .await
        .ok()
        .flatten()
        .map_or(0, |s| {
            s.resources.values().filter(|r| r.id.is_some()).count()
        })
}

/// Wait until the apply has recorded at least `n` instances (or ended): a point in its progress,
/// not a time.
async fn until_recorded(p: &Project, child: &mut tokio::process::Child, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while recorded(p).await < n && child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the apply made no progress"
        );
        // A pause between two looks at the condition (not a guess at how long the apply takes).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The state file parses, and kiln's loader takes it with whatever journal the apply left.
async fn assert_state_valid(p: &Project) {
    let path = p.path().join("state/default.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("state does not parse after a crash: {e}\n{text}"));
        assert_eq!(v["version"], kiln::state::FORMAT_VERSION);
    }
    if let Err(e) = support::stored_state(p.path()).await {
        panic!("kiln refuses the state after a crash: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_several_points_then_apply_again_converges_without_duplicates() {
    let p = Project::new(support::config(0.01)).await;
    p.write(&twenty());
    // Killed at four points of the progress: after 1, 5, 10 and 15 instances are recorded
    // (each run resumes the one before).
    for n in [1, 5, 10, 15] {
        let mut child = spawn_apply(&p).await;
        until_recorded(&p, &mut child, n).await;
        if child.id().is_some() {
            signal(&child, "-KILL");
        }
        let _ = child.wait().await;
        assert_state_valid(&p).await;
        // The state lock died with the process: the next run takes it over.
    }
    let again = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    let live = p.live_instances().await;
    let mut names: Vec<String> = live
        .iter()
        .map(|i| i.display_name.clone().unwrap())
        .collect();
    names.sort();
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(names, unique, "a duplicate instance was created");
    assert_eq!(live.len(), 20);
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_lets_in_flight_actions_finish_saves_and_exits_130() {
    let p = Project::new(support::config(0.01)).await;
    p.write(&twenty());
    let mut child = spawn_apply(&p).await;
    until_recorded(&p, &mut child, 3).await;
    signal(&child, "-INT");
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(130));
    assert_state_valid(&p).await;
    let st = p.state();
    let recorded = st["resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["id"].is_string())
        .count();
    assert!(
        recorded < 20,
        "the interrupted apply stopped starting new actions"
    );
    assert_eq!(
        p.live_instances().await.len(),
        recorded,
        "every launched instance is in the state"
    );
    let again = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(p.live_instances().await.len(), 20);
    assert_eq!(p.kiln(&["plan", "--detailed-exitcode"]).await.code, 0);
}
