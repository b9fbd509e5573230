//! Concurrent kiln runs on one manifest with `endpoint = "emulator"` see ONE emulated cloud: the
//! first run serves the embedded emulator, the others attach to it, and the server hands over
//! only once they are done (`kiln::emulator::embedded`). Real kiln processes, held at named
//! points with `return(hold(FIFO))` failpoints: the test learns a run has reached a point when
//! its open of the FIFO returns, and lets it go on by closing it — no timing involved.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln::emulator::{Fixtures, World};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

use crate::support::{Out, AMBIENT_VARS};

/// A manifest on the embedded emulator: a builder captured into an image, two instances
/// launched from it; `backend`: state in the embedded emulator's Object Storage.
fn write_manifest(dir: &Path, backend: bool) {
    let fx = Fixtures::for_region("us-ashburn-1").unwrap();
    let backend = match backend {
        true => format!(
            "[backend]\nkind = \"object_storage\"\nnamespace = \"{}\"\nbucket = \"{}\"\nprefix = \"shared/\"\n\n",
            fx.namespace, fx.bucket
        ),
        false => String::new(),
    };
    std::fs::write(
        dir.join("kiln.toml"),
        format!(
            "[provider]\nendpoint = \"emulator\"\nregion = \"iad\"\n\n{backend}\
             [defaults]\ncompartment = \"{}\"\navailability_domain = \"{}\"\nshape = \"VM.Standard.E4.Flex\"\n\
             shape_config = {{ ocpus = 1, memory_in_gbs = 16 }}\nsubnet = \"{}\"\n\n\
             [instance.builder]\nsource = {{ image_lookup = {{ os = \"Oracle Linux\", version = \"9\" }} }}\n\n\
             [image.golden]\nfrom_instance = \"instance.builder\"\ndisplay_name = \"golden\"\n\n\
             [instance.web1]\nsource = {{ image = \"image.golden\" }}\n\n\
             [instance.web2]\nsource = {{ image = \"image.golden\" }}\n",
            fx.compartment_id, fx.availability_domains[0], fx.public_subnet_id
        ),
    )
    .unwrap();
}

/// A named pipe for a `hold` failpoint.
fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    path
}

/// `point=1*return(hold(FIFO))`.
fn hold(point: &str, fifo: &Path) -> String {
    format!("{point}=1*return(hold({}))", fifo.display())
}

/// A kiln process under test, its standard output read line by line as it comes.
struct Run {
    child: tokio::process::Child,
    stdout: Arc<Mutex<String>>,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: tokio::task::JoinHandle<String>,
}

fn spawn(cwd: &Path, args: &[&str], failpoints: &str) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    for var in AMBIENT_VARS {
        cmd.env_remove(var);
    }
    cmd.args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env("KILN_EMULATOR_TIME_SCALE", "0.002")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if !failpoints.is_empty() {
        cmd.env("FAILPOINTS", failpoints);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = Arc::new(Mutex::new(String::new()));
    let (tx, lines) = mpsc::unbounded_channel();
    let mut reader = BufReader::new(child.stdout.take().unwrap()).lines();
    let all = stdout.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            all.lock().unwrap().push_str(&format!("{line}\n"));
            let _ = tx.send(line);
        }
    });
    let mut err = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    });
    Run {
        child,
        stdout,
        lines,
        stderr,
    }
}

impl Run {
    /// Wait until the run is held at `fifo`'s point; it goes on when the returned file is
    /// dropped. A run that exits first fails the test with its output.
    async fn reached(&mut self, fifo: &Path) -> File {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let path = fifo.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(OpenOptions::new().write(true).open(&path));
        });
        tokio::select! {
            f = rx => f.unwrap().unwrap(),
            status = self.child.wait() => {
                // Let the opening thread go.
                use std::os::unix::fs::OpenOptionsExt;
                let _ = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(fifo);
                let status = status.unwrap();
                let out = self.out(status).await;
                panic!("kiln exited before reaching `{}`: {out:?}", fifo.display());
            }
        }
    }

    /// Wait for a line of standard output starting with `prefix`.
    async fn line_starting(&mut self, prefix: &str) {
        while let Some(line) = self.lines.recv().await {
            if line.starts_with(prefix) {
                return;
            }
        }
        panic!(
            "no line starting with `{prefix}` in:\n{}",
            self.stdout.lock().unwrap()
        );
    }

    async fn out(&mut self, status: std::process::ExitStatus) -> Out {
        let stderr = (&mut self.stderr).await.unwrap();
        let stdout = self.stdout.lock().unwrap().clone();
        Out {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }

    async fn finish(mut self) -> Out {
        let status = self.child.wait().await.unwrap();
        // The reader task ends at EOF; drain what it has not handed over yet.
        while self.lines.recv().await.is_some() {}
        self.out(status).await
    }
}

/// What the emulator's data file holds: (instances, images) made in it.
fn counted(dir: &Path) -> (usize, usize) {
    let w = World::load(&dir.join("state/.emulator/data.json")).unwrap();
    (w.instances.len(), w.images.len())
}

/// Two applies at once: A is held at its state lock, B too (both have started their embedded
/// emulator, or attached to one); A goes first and is held again at its first launch, with the
/// state lock; B is let go to wait for the lock; then A finishes. B must find what A made.
async fn two_concurrent_applies(backend: bool) -> (Out, Out, PathBuf, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    std::fs::create_dir(&dir).unwrap();
    write_manifest(&dir, backend);
    let (a_lock, a_launch, b_lock) = (
        fifo(tmp.path(), "a-lock"),
        fifo(tmp.path(), "a-launch"),
        fifo(tmp.path(), "b-lock"),
    );
    let mut a = spawn(
        &dir,
        &["apply", "--auto-approve"],
        &format!(
            "{};{}",
            hold("state.lock", &a_lock),
            hold("oci.request.LaunchInstance", &a_launch)
        ),
    );
    let held_a = a.reached(&a_lock).await;
    let mut b = spawn(
        &dir,
        &["apply", "--auto-approve", "--lock-timeout", "120s"],
        &hold("state.lock", &b_lock),
    );
    let held_b = b.reached(&b_lock).await;
    drop(held_a);
    let held_a = a.reached(&a_launch).await;
    drop(held_b);
    drop(held_a);
    let (a, b) = tokio::join!(a.finish(), b.finish());
    (a, b, dir, tmp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_applies_on_one_manifest_see_one_embedded_emulator() {
    let (a, b, dir, _tmp) = two_concurrent_applies(false).await;
    assert_eq!(a.code, 0, "{a:?}");
    assert!(a.stdout.contains("Apply complete"), "{a:?}");
    assert_eq!(b.code, 0, "{b:?}");
    assert!(
        b.stdout.contains("No changes"),
        "the second apply planned against a stale cloud: {b:?}"
    );
    // Counted in the emulator's own data: one image, one set of instances, the state's.
    assert_eq!(counted(&dir), (3, 1));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state/default.json")).unwrap())
            .unwrap();
    let w = World::load(&dir.join("state/.emulator/data.json")).unwrap();
    let image = state["resources"]["image.golden"]["id"].as_str().unwrap();
    assert!(w.images.contains_key(image), "{image} is not in the data");
    assert!(!dir.join("state/.emulator/serving.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_applies_with_a_backend_on_the_embedded_emulator_take_turns() {
    let (a, b, dir, _tmp) = two_concurrent_applies(true).await;
    assert_eq!(a.code, 0, "{a:?}");
    assert!(a.stdout.contains("Apply complete"), "{a:?}");
    assert_eq!(b.code, 0, "{b:?}");
    assert!(
        b.stdout.contains("No changes"),
        "both applies took the lock: {b:?}"
    );
    assert_eq!(counted(&dir), (3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_started_during_an_apply_goes_on_once_the_apply_is_done() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    std::fs::create_dir(&dir).unwrap();
    write_manifest(&dir, true);
    let (a_launch, p_first) = (fifo(tmp.path(), "a-launch"), fifo(tmp.path(), "p-first"));
    let mut a = spawn(
        &dir,
        &["apply", "--auto-approve"],
        &hold("oci.request.LaunchInstance", &a_launch),
    );
    let held_a = a.reached(&a_launch).await;
    // The plan starts while the apply holds the state lock, and is held at its first request.
    let mut p = spawn(
        &dir,
        &["plan", "--detailed-exitcode", "--lock-timeout", "120s"],
        &hold("oci.request", &p_first),
    );
    let held_p = p.reached(&p_first).await;
    drop(held_a);
    a.line_starting("Apply complete").await;
    // The apply is done (its process waits for the plan, which uses its emulator).
    drop(held_p);
    let p = p.finish().await;
    assert_eq!(p.code, 0, "{p:?}");
    assert!(p.stdout.contains("No changes"), "{p:?}");
    let a = a.finish().await;
    assert_eq!(a.code, 0, "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_emulators_config_names_its_key_by_an_absolute_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    std::fs::create_dir(&dir).unwrap();
    write_manifest(&dir, false);
    // Run from the parent directory, naming the manifest directory relatively.
    let out = crate::support::run_kiln(tmp.path(), &["plan", "project"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let config = std::fs::read_to_string(dir.join("state/.emulator/config")).unwrap();
    let key_file = config
        .lines()
        .find_map(|l| l.strip_prefix("key_file="))
        .unwrap();
    assert!(Path::new(key_file).is_absolute(), "{config}");
    assert!(Path::new(key_file).exists(), "{config}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_its_data_and_the_next_run_serves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    std::fs::create_dir(&dir).unwrap();
    write_manifest(&dir, false);
    // The serving run dies (abort) at its second launch, after the first was answered.
    let a = spawn(
        &dir,
        &["apply", "--auto-approve"],
        "oci.response.LaunchInstance=1*off->return(abort)",
    )
    .finish()
    .await;
    assert_ne!(a.code, 0, "{a:?}");
    assert!(
        dir.join("state/.emulator/serving.json").exists(),
        "the killed server could not clean up"
    );
    let before = counted(&dir);
    assert!(before.0 >= 2, "{before:?}");
    // The next run finds `serve.lock` free, serves the saved data, and completes the manifest.
    let b = spawn(&dir, &["apply", "--auto-approve"], "").finish().await;
    assert_eq!(b.code, 0, "{b:?}");
    assert_eq!(counted(&dir), (3, 1), "{b:?}");
    let again = spawn(&dir, &["plan", "--detailed-exitcode"], "")
        .finish()
        .await;
    assert_eq!(again.code, 0, "{again:?}");
}
