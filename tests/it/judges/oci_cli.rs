//! Conformance: Oracle's own `oci` CLI (PyPI `oci-cli`) against `kiln emulator`. The CLI signs
//! with Oracle's SDK and parses responses with its models, so it judges the emulator's wire format.
//! The tests are `#[ignore]`d with that reason, so a plain `cargo test` reports them as ignored,
//! never as passed; the README's test command (`cargo test -- --include-ignored`, what `.ci/run`
//! runs after `pip install oci-cli`) runs them, and a missing CLI fails them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{self, COMPARTMENT, PKCS8_FP, TENANCY, USER};

fn oci_available() -> bool {
    Command::new("oci")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Emulator(std::process::Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kiln emulator` with `extra` arguments; the URL of each region it serves, in order.
fn spawn_emulator(cfg: &std::path::Path, extra: &[&str]) -> (Emulator, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--oci-config",
            cfg.to_str().unwrap(),
            "--time-scale",
            "0.01",
            "--compartment",
            COMPARTMENT,
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Emulator(child);
    let regions = extra.iter().filter(|a| **a == "--region").count().max(1);
    let mut urls = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("listening on ") {
            urls.push(url.to_string());
            if urls.len() == regions {
                break;
            }
        }
    }
    assert_eq!(urls.len(), regions, "the emulator printed its URLs");
    // Keep reading what it prints, so that it never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (guard, urls)
}

fn require_oci() {
    assert!(
        oci_available(),
        "Oracle's `oci` CLI is not on PATH: `pip install oci-cli` (.ci/run does)"
    );
}

#[test]
#[ignore = "needs Oracle's oci CLI: pip install oci-cli (the README's test command runs it)"]
fn oracles_oci_cli_reaches_every_region_of_one_emulator_process() {
    require_oci();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::write(&cfg, format!("[DEFAULT]\nuser={USER}\ntenancy={TENANCY}\nfingerprint={PKCS8_FP}\nkey_file={}\nregion=us-ashburn-1\n", support::key_path("pkcs8.pem").display())).unwrap();
    let (_guard, urls) = spawn_emulator(&cfg, &["--region", "iad", "--region", "eu-frankfurt-1"]);
    for (url, code) in urls.iter().zip(["iad", "fra"]) {
        let out = Command::new("oci")
            .args([
                "compute",
                "image",
                "list",
                "--compartment-id",
                COMPARTMENT,
                "--all",
            ])
            .args([
                "--endpoint",
                url,
                "--config-file",
                cfg.to_str().unwrap(),
                "--profile",
                "DEFAULT",
            ])
            .env("OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING", "True")
            .env_remove("OCI_CLI_PROFILE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let ids: Vec<&str> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert!(
            !ids.is_empty() && ids.iter().all(|id| id.contains(&format!(".{code}."))),
            "{url}: {ids:?}"
        );
    }
}

#[test]
#[ignore = "needs Oracle's oci CLI: pip install oci-cli (the README's test command runs it)"]
fn oracles_oci_cli_drives_the_emulator() {
    require_oci();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::write(&cfg, format!("[DEFAULT]\nuser={USER}\ntenancy={TENANCY}\nfingerprint={PKCS8_FP}\nkey_file={}\nregion=us-ashburn-1\n", support::key_path("pkcs8-labelled.pem").display())).unwrap();
    let (_guard, urls) = spawn_emulator(&cfg, &[]);
    let url = urls[0].clone();
    let fixtures: Value = reqwest::blocking::get(format!("{url}/_emulator/fixtures"))
        .unwrap()
        .json()
        .unwrap();

    let oci = |args: &[&str]| -> (bool, Value, String) {
        let out = Command::new("oci")
            .args(args)
            .args([
                "--endpoint",
                &url,
                "--config-file",
                cfg.to_str().unwrap(),
                "--profile",
                "DEFAULT",
            ])
            .env("OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING", "True")
            .env_remove("OCI_CLI_PROFILE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (
            out.status.success(),
            json,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ad = fixtures["availability_domains"][0].as_str().unwrap();
    let subnet = fixtures["public_subnet_id"].as_str().unwrap();
    let image = fixtures["platform_images"][0]["id"].as_str().unwrap();
    let launch = |name: &str| {
        oci(&[
            "compute",
            "instance",
            "launch",
            "--availability-domain",
            ad,
            "--compartment-id",
            COMPARTMENT,
            "--shape",
            "VM.Standard.E4.Flex",
            "--shape-config",
            r#"{"ocpus": 1, "memoryInGBs": 16}"#,
            "--subnet-id",
            subnet,
            "--image-id",
            image,
            "--display-name",
            name,
            "--wait-for-state",
            "RUNNING",
            "--wait-interval-seconds",
            "1",
        ])
    };
    let (ok, launched, err) = launch("cli-1");
    assert!(ok, "launch: {err}");
    let id = launched["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(launched["data"]["lifecycle-state"], "RUNNING", "{launched}");
    assert!(launch("cli-2").0 && launch("cli-3").0);

    let (ok, got, err) = oci(&["compute", "instance", "get", "--instance-id", &id]);
    assert!(ok, "get: {err}");
    assert_eq!(got["data"]["display-name"], "cli-1");
    assert!(got["etag"].is_string(), "{got}");
    // Oracle's CLI reads the primary VNIC (ListVnicAttachments, then GetVnic) as kiln does.
    let (ok, vnics, err) = oci(&["compute", "instance", "list-vnics", "--instance-id", &id]);
    assert!(ok, "list-vnics: {err}");
    let vnic = &vnics["data"][0];
    assert_eq!(vnic["is-primary"], true, "{vnics}");
    assert_eq!(vnic["hostname-label"], "cli-1", "{vnics}");
    assert!(
        vnic["private-ip"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.0."))
            && vnic["mac-address"].is_string(),
        "{vnics}"
    );

    let (ok, listed, err) = oci(&[
        "compute",
        "instance",
        "list",
        "--compartment-id",
        COMPARTMENT,
        "--all",
        "--page-size",
        "1",
    ]);
    assert!(ok, "list: {err}");
    assert_eq!(listed["data"].as_array().unwrap().len(), 3, "{listed}");

    let (ok, stopped, err) = oci(&[
        "compute",
        "instance",
        "action",
        "--action",
        "STOP",
        "--instance-id",
        &id,
        "--wait-for-state",
        "STOPPED",
        "--wait-interval-seconds",
        "1",
    ]);
    assert!(ok, "stop: {err}");
    assert_eq!(stopped["data"]["lifecycle-state"], "STOPPED");

    let (ok, img, err) = oci(&[
        "compute",
        "image",
        "create",
        "--compartment-id",
        COMPARTMENT,
        "--instance-id",
        &id,
        "--display-name",
        "cli-image",
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
    ]);
    assert!(ok, "image create: {err}");
    let image_id = img["data"]["id"].as_str().unwrap().to_string();
    let (ok, img, err) = oci(&["compute", "image", "get", "--image-id", &image_id]);
    assert!(ok, "image get: {err}");
    assert_eq!(img["data"]["lifecycle-state"], "AVAILABLE");

    let (ok, _, err) = oci(&[
        "compute",
        "instance",
        "update",
        "--instance-id",
        &id,
        "--display-name",
        "x",
        "--if-match",
        "not-the-etag",
        "--force",
    ]);
    assert!(!ok, "a wrong --if-match must fail");
    assert!(err.contains("412") && err.contains("NoEtagMatch"), "{err}");

    let (ok, _, err) = oci(&[
        "compute",
        "instance",
        "terminate",
        "--instance-id",
        &id,
        "--force",
        "--wait-for-state",
        "SUCCEEDED",
        "--wait-interval-seconds",
        "1",
    ]);
    assert!(ok, "terminate: {err}");
    let (_, got, _) = oci(&["compute", "instance", "get", "--instance-id", &id]);
    assert_eq!(got["data"]["lifecycle-state"], "TERMINATED");

    // Object Storage (remote state): the SDK signs PutObject without the body headers.
    let ns = fixtures["namespace"].as_str().unwrap();
    let bucket = fixtures["bucket"].as_str().unwrap();
    let (ok, got, err) = oci(&["os", "ns", "get"]);
    assert!(ok, "ns get: {err}");
    assert_eq!(got["data"], ns);
    let file = dir.path().join("state.json");
    std::fs::write(&file, r#"{"version": 1}"#).unwrap();
    let obj = [
        "--namespace",
        ns,
        "--bucket-name",
        bucket,
        "--name",
        "cli/state.json",
    ];
    let (ok, put, err) = oci(&[
        &["os", "object", "put", "--file", file.to_str().unwrap()][..],
        &obj[..],
    ]
    .concat());
    assert!(ok, "object put: {err}");
    let etag = put["etag"].as_str().unwrap().to_string();
    let (ok, listed, err) = oci(&[
        "os",
        "object",
        "list",
        "--namespace",
        ns,
        "--bucket-name",
        bucket,
        "--prefix",
        "cli/",
    ]);
    assert!(ok, "object list: {err}");
    assert_eq!(listed["data"][0]["name"], "cli/state.json", "{listed}");
    assert_eq!(listed["data"][0]["size"], 14, "{listed}");
    let (ok, head, err) = oci(&[&["os", "object", "head"][..], &obj[..]].concat());
    assert!(ok, "object head: {err}");
    assert_eq!(head["etag"], etag.as_str(), "{head}");
    let copy = dir.path().join("copy.json");
    let (ok, _, err) = oci(&[
        &["os", "object", "get", "--file", copy.to_str().unwrap()][..],
        &obj[..],
    ]
    .concat());
    assert!(ok, "object get: {err}");
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&file).unwrap());
    let (ok, _, err) = oci(&[
        &[
            "os",
            "object",
            "delete",
            "--force",
            "--if-match",
            "not-the-etag",
        ][..],
        &obj[..],
    ]
    .concat());
    assert!(
        !ok && err.contains("412") && err.contains("IfMatchFailed"),
        "{err}"
    );
    let (ok, _, err) = oci(&[
        &["os", "object", "delete", "--force", "--if-match", &etag][..],
        &obj[..],
    ]
    .concat());
    assert!(ok, "object delete: {err}");
    let (ok, _, err) = oci(&[
        "os",
        "bucket",
        "get",
        "--namespace",
        ns,
        "--bucket-name",
        "no-such-bucket",
    ]);
    assert!(!ok && err.contains("BucketNotFound"), "{err}");
}
