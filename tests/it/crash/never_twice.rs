//! Regressions of issue 12 ("never twice, never lost"), each named after what broke: the kiln
//! binary against the emulator, faults injected with `FAILPOINTS` (a real process abort included;
//! see `kiln::failpoint`). The exhaustive enumeration of faults lives in `tests/faults/`.

use std::time::Duration;

use kiln::state::{LockInfo, StateStore};

use crate::support::{self, Project, COMPARTMENT};

async fn assert_converged(p: &Project) {
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
}

async fn import_newer_image(p: &Project) -> String {
    let uri = support::put_image_file(&p.emu, &p.client(), "ol9.qcow2").await;
    let details: kiln::oci::models::CreateImageDetails =
        serde_json::from_value(serde_json::json!({
            "compartmentId": COMPARTMENT,
            "displayName": "Oracle-Linux-9-newer",
            "imageSourceDetails": {
                "sourceType": "objectStorageUri",
                "sourceUri": uri,
                "operatingSystem": "Oracle Linux",
                "operatingSystemVersion": "9"
            }
        }))
        .unwrap();
    let id = p
        .client()
        .create_image(&details, &Default::default())
        .await
        .unwrap()
        .body
        .id;
    p.client()
        .wait_for_image(&id, &["AVAILABLE"], &support::wait(30))
        .await
        .unwrap();
    id
}

const LOOKUP: &str = "source = { image_lookup = { os = \"Oracle Linux\", version = \"9\" } }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_manifest_after_a_crashed_create_resumes_that_create() {
    let p = Project::new(support::config(0.0)).await;
    p.write(&format!("[instance.web]\n{LOOKUP}"));
    // The launch lands; kiln dies before it reads the answer.
    let crashed = p
        .kiln_faulted(
            "oci.response.LaunchInstance=return(abort)",
            &["apply", "--auto-approve"],
        )
        .await;
    assert_ne!(crashed.code, 0, "{crashed:?}");
    assert_eq!(p.live_instances().await.len(), 1);
    let first_image = p.live_instances().await[0].extra["sourceDetails"].clone();
    // The user adds a tag, and the lookup now finds a newer image.
    p.write(&format!(
        "[instance.web]\n{LOOKUP}freeform_tags = {{ added = \"yes\" }}\n"
    ));
    import_newer_image(&p).await;
    let again = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    let live = p.live_instances().await;
    assert_eq!(support::live_names(&live), ["web"], "one instance, not two");
    assert_eq!(
        live[0].freeform_tags.get("added").map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        live[0].extra["sourceDetails"], first_image,
        "created as first sent"
    );
    assert_converged(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_on_a_resumed_create_keeps_its_retry_token() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    let crashed = p
        .kiln_faulted(
            "oci.response.LaunchInstance=return(abort)",
            &["apply", "--auto-approve"],
        )
        .await;
    assert_ne!(crashed.code, 0, "{crashed:?}");
    // Resumed with the wrong credentials: refused before OCI looked at the token.
    let refused = p
        .kiln_faulted(
            "oci.request.LaunchInstance=return(status(401))",
            &["apply", "--auto-approve"],
        )
        .await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        p.state()["resources"]["instance.web"]["pending_create"].is_object(),
        "the pending create survives a 401: {}",
        p.state()
    );
    let again = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(support::live_names(&p.live_instances().await), ["web"]);
    assert_converged(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_destroy_after_create_before_destroy_leaves_the_old_instance_deposed() {
    let p = Project::new(support::config(0.0)).await;
    let ad2 = p.emu.fixtures().availability_domains[1].clone();
    p.write("[instance.web]\ncreate_before_destroy = true\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let old = p.live_instances().await[0].id.clone();
    p.write(&format!(
        "[instance.web]\ncreate_before_destroy = true\navailability_domain = \"{ad2}\"\n"
    ));
    let failed = p
        .kiln_faulted(
            "oci.request.TerminateInstance=return(status(409))",
            &["apply", "--auto-approve"],
        )
        .await;
    assert_eq!(failed.code, 1, "{failed:?}");
    let st = p.state();
    assert_eq!(
        st["resources"]["instance.web"]["deposed"][0]["id"],
        old.as_str()
    );
    assert_eq!(p.live_instances().await.len(), 2);
    // The next plan shows it, and the next apply destroys it.
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("superseded"), "{plan:?}");
    let again = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    let live = p.live_instances().await;
    assert_eq!(live.len(), 1);
    assert_ne!(live[0].id, old);
    assert_converged(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_over_a_state_written_by_someone_else_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::local(dir.path(), None, "default").unwrap();
    let lock = store
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .await
        .unwrap();
    let mut mine = kiln::state::State::new();
    store.save(&lock, &mut mine).await.unwrap();
    store.save(&lock, &mut mine).await.unwrap();
    // Someone who broke the lock wrote serial 5 meanwhile.
    let mut theirs = mine.clone();
    theirs.serial = 5;
    let path = dir.path().join("state/default.json");
    std::fs::write(&path, serde_json::to_vec(&theirs).unwrap()).unwrap();
    let before = std::fs::read(&path).unwrap();
    let e = store.save(&lock, &mut mine).await.unwrap_err();
    assert!(e.to_string().contains("written by someone else"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing overwritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_unlock_refuses_a_holder_that_is_still_running() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    let store = StateStore::local(p.path(), None, "default").unwrap();
    let held = store
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .await
        .unwrap();
    let refused = p.kiln(&["force-unlock", "--dir", "."]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("still running"), "{refused:?}");
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 1, "the lock still holds: {apply:?}");
    let forced = p.kiln(&["force-unlock", "--force", "--dir", "."]).await;
    assert_eq!(forced.code, 0, "{forced:?}");
    drop(held);
    assert!(p.path().join("state/default.json.lock").exists() || p.kiln(&["plan"]).await.code == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrustworthy_states_are_refused_and_never_overwritten() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    std::fs::create_dir_all(p.path().join("state")).unwrap();
    let path = p.path().join("state/default.json");
    let rec = r#"{"kind":"instance","id":"ocid1.instance.oc1.iad.aaaa","updated_at":"2026-11-23T00:00:00Z"}"#;
    for (text, why) in [
        (
            format!(r#"{{"version":2,"lineage":"l","serial":3,"resources":{{"instance.web":{rec}}},"resources":{{}}}}"#),
            "appears twice",
        ),
        (
            r#"{"version":2,"lineage":"l","serial":3,"resources":{"instance.web":{"kind":"instance","id":null,"updated_at":"2026-11-23T00:00:00Z"}}}"#.to_string(),
            "no id",
        ),
        (
            format!(r#"{{"version":2,"lineage":"l","serial":3,"resources":{{"instance.web":{rec},"instance.db":{rec}}}}}"#),
            "recorded for both",
        ),
        (
            format!(r#"{{"version":2,"lineage":"l","serial":18446744073709551615,"resources":{{"instance.web":{rec}}}}}"#),
            "cannot grow",
        ),
        (
            format!(r#"{{"version":2,"lineage":"l","serial":3,"resources":{{"image.web":{rec}}}}}"#),
            "kind",
        ),
    ] {
        std::fs::write(&path, &text).unwrap();
        for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
            let out = p.kiln(args).await;
            assert_eq!(out.code, 1, "{text}\n{out:?}");
            assert!(out.stderr.contains(why), "{why}: {out:?}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "left untouched");
        }
    }
    assert!(p.live_instances().await.is_empty(), "nothing was created");
    let out = p.kiln(&["plan", "--env", "../outside"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not an environment name"), "{out:?}");
    let out = p.kiln(&["state", "list", "--env", "../outside"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(!p.path().join("outside.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_of_a_target_takes_what_depends_on_it_not_what_it_depends_on() {
    let p = Project::new(support::config(0.0)).await;
    p.write(
        "[instance.builder]\n[image.golden]\nfrom_instance = \"instance.builder\"\n\
         [instance.web1]\nsource = { image = \"image.golden\" }\n\
         [instance.web2]\nsource = { image = \"image.golden\" }\n",
    );
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let out = p
        .kiln(&["destroy", "--auto-approve", "--target", "instance.web1"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        support::live_names(&p.live_instances().await),
        ["builder", "web2"],
        "{out:?}"
    );
    assert_eq!(p.live_images().await.len(), 1);
    let out = p
        .kiln(&["destroy", "--auto-approve", "--target", "image.golden"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(support::live_names(&p.live_instances().await), ["builder"]);
    assert!(p.live_images().await.is_empty());
    let out = p.kiln(&["plan", "--replace", "instance.nope"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("instance.nope"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_whose_answer_was_lost_is_not_someone_elses_change() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n[instance.db]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    p.write("[instance.db]\n");
    let out = p
        .kiln_faulted(
            "oci.response.TerminateInstance=1*return(lost)",
            &["apply", "--auto-approve"],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(support::live_names(&p.live_instances().await), ["db"]);
    assert!(p.state()["resources"].get("instance.web").is_none());
    assert_converged(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_resumed_during_a_capture_waits_for_it_instead_of_failing() {
    // Capture 4.8 s, cooldown 12 s.
    let p = Project::new(support::config(0.01)).await;
    p.write("[instance.builder]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    p.write("[instance.builder]\n[image.golden]\nfrom_instance = \"instance.builder\"\n");
    let crashed = p
        .kiln_faulted(
            "oci.response.CreateImage=return(abort)",
            &["apply", "--auto-approve"],
        )
        .await;
    assert_ne!(crashed.code, 0, "{crashed:?}");
    // The capture runs on; the next apply plans around an instance in CREATING_IMAGE.
    let again = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(p.live_images().await.len(), 1);
    assert_eq!(p.live_instances().await[0].lifecycle_state, "RUNNING");
    assert_converged(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_like_ctrl_c_saves_and_releases_the_lock() {
    let p = Project::new(support::config(0.01)).await;
    let body: String = (0..20).map(|n| format!("[instance.c{n:02}]\n")).collect();
    p.write(&body);
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["apply", "--auto-approve", "--parallelism", "2"])
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (on the state, not the clock) until the apply has recorded a first instance (in its
    // journal: the state file is written whole at the end).
    let started = std::time::Instant::now();
    loop {
        let recorded = support::stored_state(p.path())
            .await
            .ok()
            .flatten()
            .is_some_and(|s| s.resources.values().any(|r| r.id.is_some()));
        if recorded {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lock = std::fs::read_to_string(p.path().join("state/default.json.lock")).unwrap();
    assert!(lock.is_empty(), "the lock was released: {lock}");
    let st = p.state();
    let recorded = st["resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["id"].is_string())
        .count();
    assert!(recorded < 20, "it stopped starting new actions");
    assert_eq!(
        p.live_instances().await.len(),
        recorded,
        "every launch is recorded"
    );
    let again = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(p.live_instances().await.len(), 20);
}

/// Run `kiln ARGS` in `dir` on a pseudo-terminal, and send it SIGINT once it prints `wait_for`:
/// returns its exit code and everything it printed.
fn interrupt_on_a_terminal(dir: &std::path::Path, args: &[&str], wait_for: &str) -> (i32, String) {
    let script = r#"
import os, pty, signal, sys, time
exe, wait_for, args = sys.argv[1], sys.argv[2], sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.environ["NO_COLOR"] = "1"
    os.execv(exe, [exe] + args)
out = b""
deadline = time.time() + 60
while wait_for.encode() not in out and time.time() < deadline:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
os.kill(pid, signal.SIGINT)
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
sys.stdout.write(out.decode(errors="replace"))
sys.stdout.write("\nEXIT %d\n" % code)
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg(wait_for)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text
        .rsplit_once("EXIT ")
        .and_then(|(_, c)| c.trim().parse().ok())
        .unwrap_or(i32::MIN);
    (code, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_at_the_confirmation_prompt_cancels_and_releases_the_lock() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    let dir = p.path().to_path_buf();
    let (code, text) = tokio::task::spawn_blocking(move || {
        interrupt_on_a_terminal(&dir, &["apply"], "Only `yes` is accepted")
    })
    .await
    .unwrap();
    assert_eq!(code, 130, "{text}");
    assert!(text.contains("Apply cancelled"), "{text}");
    let lock = std::fs::read_to_string(p.path().join("state/default.json.lock")).unwrap();
    assert!(lock.is_empty(), "the lock record was cleared: {lock}");
    assert!(p.live_instances().await.is_empty());
}
