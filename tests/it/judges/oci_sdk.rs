//! Conformance: Oracle's Python SDK (PyPI `oci`, installed by `.ci/run`) against `kiln emulator`,
//! walking what issue 14 names (`tests/conformance/oci_sdk.py`). A missing SDK is a failure, not a
//! skip: the test cannot judge anything without it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::{self, PKCS8_FP, TENANCY, USER};

struct Emulator(std::process::Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs python3 with Oracle's Python SDK: pip install oci (the README's test command runs it)"]
fn oracles_python_sdk_walks_the_emulator() {
    let sdk = Command::new("python3")
        .args(["-c", "import oci; print(oci.__version__)"])
        .output();
    match &sdk {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "python3 cannot import Oracle's SDK (`oci`): `.ci/run` installs it (`pip install oci`){}",
            if std::env::var_os("CI").is_some() {
                ""
            } else {
                "; install it to run this conformance test"
            }
        ),
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::write(&cfg, format!("[DEFAULT]\nuser={USER}\ntenancy={TENANCY}\nfingerprint={PKCS8_FP}\nkey_file={}\nregion=us-ashburn-1\n", support::key_path("pkcs8-labelled.pem").display())).unwrap();
    // Time scale 0.1: launch 6 s, a move 0.5 s (long enough to be seen MOVING).
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--oci-config",
            cfg.to_str().unwrap(),
            "--time-scale",
            "0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Emulator(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first}"))
        .to_string();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/oci_sdk.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&url, cfg.to_str().unwrap()])
        .env("OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING", "True")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "Oracle's SDK found divergences:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    drop(lines);
}

/// Issue 24 (copies): the same SDK against one `kiln emulator` process serving two regions,
/// walking `tests/conformance/oci_sdk_copies.py` — CreateBucket, ExportImage, CopyObject to the
/// other region and its Object Storage work request, CreateImage from the copied export.
#[test]
#[ignore = "needs python3 with Oracle's Python SDK: pip install oci (the README's test command runs it)"]
fn oracles_python_sdk_copies_an_image_across_regions() {
    let sdk = Command::new("python3").args(["-c", "import oci"]).output();
    assert!(
        sdk.is_ok_and(|o| o.status.success()),
        "python3 cannot import Oracle's SDK (`oci`): `.ci/run` installs it (`pip install oci`)"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::write(&cfg, format!("[DEFAULT]\nuser={USER}\ntenancy={TENANCY}\nfingerprint={PKCS8_FP}\nkey_file={}\nregion=us-ashburn-1\n", support::key_path("pkcs8-labelled.pem").display())).unwrap();
    // Time scale 0.01: an import 6 s, an export 3 s, a copy 1.2 s.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--oci-config",
            cfg.to_str().unwrap(),
            "--time-scale",
            "0.01",
            "--region",
            "us-ashburn-1",
            "--region",
            "us-phoenix-1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Emulator(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut urls = Vec::new();
    while urls.len() < 2 {
        let line = lines.next().expect("the emulator names its URLs").unwrap();
        if let Some(url) = line.strip_prefix("listening on ") {
            urls.push(url.to_string());
        }
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/conformance/oci_sdk_copies.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&urls[0], &urls[1], cfg.to_str().unwrap()])
        .env("OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING", "True")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "Oracle's SDK found divergences:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    drop(lines);
}
