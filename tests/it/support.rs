//! Shared test support: an in-process emulator trusting a fixed test key, and a kiln client for it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use kiln::emulator::{self, EmulatorConfig, RunningEmulator, TrustedKey};
use kiln::oci::keys::{self, SigningKey};
use kiln::oci::signer::{self, RequestParts};
use kiln::oci::{Client, ClientOptions, RetryPolicy};

pub const TENANCY: &str = "ocid1.tenancy.oc1..aaaatest";
pub const USER: &str = "ocid1.user.oc1..aaaatest";
pub const PKCS1_FP: &str = "f7:f0:c3:be:cc:84:ea:6c:21:0a:72:40:37:bb:0d:ed";
pub const PKCS8_FP: &str = "ca:f8:ba:ea:d3:cc:7a:a2:d3:8b:92:48:41:1c:f0:94";
pub const COMPARTMENT: &str = "ocid1.compartment.oc1..aaaaaaaatestcompartment";
/// A second compartment (moves).
pub const OTHER_COMPARTMENT: &str = "ocid1.compartment.oc1..aaaaaaaaothercompartment";

/// The compartments the tests use: the emulator knows these besides its fixtures, and answers
/// 404 for any other, as OCI does.
pub const TEST_COMPARTMENTS: &[&str] = &[COMPARTMENT, OTHER_COMPARTMENT];

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn key_path(name: &str) -> PathBuf {
    fixtures_dir().join("signing/keys").join(name)
}

/// The pkcs1 test key as kiln signs with it.
pub fn signing_key() -> SigningKey {
    let key = keys::load_private_key(&key_path("pkcs1.pem"), None).unwrap();
    SigningKey::new(key, format!("{TENANCY}/{USER}/{PKCS1_FP}"))
}

/// The pkcs8 test key (not trusted by default).
pub fn other_key() -> SigningKey {
    let key = keys::load_private_key(&key_path("pkcs8.pem"), None).unwrap();
    SigningKey::new(key, format!("{TENANCY}/{USER}/{PKCS8_FP}"))
}

pub fn trusted() -> Vec<TrustedKey> {
    let k = signing_key();
    vec![TrustedKey {
        key_id: k.key_id.clone(),
        public_key: k.key.to_public_key(),
    }]
}

/// A config with fast lifecycles.
pub fn config(time_scale: f64) -> EmulatorConfig {
    EmulatorConfig {
        trusted_keys: trusted(),
        time_scale,
        ..EmulatorConfig::default()
    }
}

/// Start `config`, knowing the [`TEST_COMPARTMENTS`] too.
pub async fn start(mut config: EmulatorConfig) -> RunningEmulator {
    for c in TEST_COMPARTMENTS {
        if !config.compartments.iter().any(|k| k == c) {
            config.compartments.push(c.to_string());
        }
    }
    emulator::start(config).await.expect("emulator starts")
}

/// Put an image file to import into the emulator's `images` bucket; its `sourceUri`.
pub async fn put_image_file(emu: &RunningEmulator, client: &Client, name: &str) -> String {
    let f = emu.fixtures();
    kiln::oci::object_storage::ObjectStorage::new(client.clone())
        .put_object(
            &f.namespace,
            &f.image_bucket,
            name,
            b"QFI not really a qcow2".to_vec(),
            "application/octet-stream",
            &kiln::oci::object_storage::Precondition::None,
        )
        .await
        .expect("the image file is put");
    format!(
        "https://objectstorage.{}.oraclecloud.com/n/{}/b/{}/o/{name}",
        f.region, f.namespace, f.image_bucket
    )
}

/// A client for `emu` with quick retries.
pub fn client(emu: &RunningEmulator) -> Client {
    client_with(emu, signing_key())
}

pub fn client_with(emu: &RunningEmulator, key: SigningKey) -> Client {
    let mut opts = ClientOptions::new(emu.url());
    opts.retry = RetryPolicy {
        max_attempts: 8,
        max_elapsed: Duration::from_secs(60),
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    };
    opts.timeout = Duration::from_secs(10);
    Client::new(key, opts)
}

pub fn wait(secs: u64) -> kiln::oci::wait::WaitOptions {
    kiln::oci::wait::WaitOptions::new(Duration::from_secs(secs))
}

/// A minimal valid launch request on the emulator's fixtures.
pub fn launch_details(
    emu: &RunningEmulator,
    name: &str,
) -> kiln::oci::models::LaunchInstanceDetails {
    let f = emu.fixtures();
    serde_json::from_value(serde_json::json!({
        "availabilityDomain": f.availability_domains[0],
        "compartmentId": COMPARTMENT,
        "displayName": name,
        "shape": "VM.Standard.E4.Flex",
        "shapeConfig": {"ocpus": 1, "memoryInGBs": 16},
        "createVnicDetails": {"subnetId": f.public_subnet_id},
        "sourceDetails": {"sourceType": "image", "imageId": f.platform_images[0].id},
        "metadata": {"ssh_authorized_keys": "ssh-ed25519 AAAA test"}
    }))
    .unwrap()
}

/// A manifest directory wired to an in-process emulator through a real OCI config file, driven
/// through the kiln binary.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub emu: RunningEmulator,
    pub config: PathBuf,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Project {
    pub async fn new(config: EmulatorConfig) -> Project {
        let emu = start(config).await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("oci-config");
        std::fs::write(&cfg, format!("[DEFAULT]\nuser={USER}\ntenancy={TENANCY}\nfingerprint={PKCS1_FP}\nkey_file={}\nregion=us-ashburn-1\n", key_path("pkcs1.pem").display())).unwrap();
        Project {
            dir,
            emu,
            config: cfg,
        }
    }

    /// The `[provider]` and `[defaults]` every test manifest starts with.
    pub fn header(&self) -> String {
        let f = self.emu.fixtures();
        format!(
            "[provider]\nendpoint = \"{}\"\nconfig_file = \"{}\"\n\n[defaults]\ncompartment = \"{COMPARTMENT}\"\navailability_domain = \"{}\"\nshape = \"VM.Standard.E4.Flex\"\nshape_config = {{ ocpus = 1, memory_in_gbs = 16 }}\nsubnet = \"{}\"\nsource = {{ image = \"{}\" }}\n\n",
            self.emu.url(),
            self.config.display(),
            f.availability_domains[0],
            f.public_subnet_id,
            f.platform_images[0].id
        )
    }

    pub fn write(&self, body: &str) {
        std::fs::write(
            self.dir.path().join("kiln.toml"),
            format!("{}{body}", self.header()),
        )
        .unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub async fn kiln(&self, args: &[&str]) -> Out {
        run_kiln(self.dir.path(), args).await
    }

    /// Run kiln with failpoints set (`FAILPOINTS`, see `kiln::failpoint`).
    pub async fn kiln_faulted(&self, failpoints: &str, args: &[&str]) -> Out {
        run_kiln_env(self.dir.path(), args, &[("FAILPOINTS", failpoints)]).await
    }

    /// Instances and images that are not terminated or deleted, in the test compartment.
    pub async fn live_images(&self) -> Vec<kiln::oci::models::Image> {
        self.client()
            .list_images(&kiln::oci::compute::ListImages {
                compartment_id: COMPARTMENT.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.compartment_id.is_some() && i.lifecycle_state != "DELETED")
            .collect()
    }

    pub fn client(&self) -> Client {
        client(&self.emu)
    }

    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.dir.path().join("state/default.json")).unwrap(),
        )
        .unwrap()
    }

    /// Instances that are not terminated, in the test compartment.
    pub async fn live_instances(&self) -> Vec<kiln::oci::models::Instance> {
        self.client()
            .list_instances(&kiln::oci::compute::ListInstances {
                compartment_id: COMPARTMENT.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|i| !matches!(i.lifecycle_state.as_str(), "TERMINATED" | "TERMINATING"))
            .collect()
    }
}

/// The state of `dir`'s default environment as kiln loads it (the state file with any journal
/// folded in); `None` when there is none.
pub async fn stored_state(dir: &Path) -> Result<Option<kiln::state::State>, String> {
    kiln::state::StateStore::local(dir, None, "default")
        .map_err(|e| e.to_string())?
        .load()
        .await
        .map_err(|e| format!("{:?}", miette::Report::new(e)))
}

/// The emulator's request counts that grew between two `stats()`: `Operation×n` each.
pub fn calls_between(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> Vec<String> {
    after
        .iter()
        .filter(|(op, n)| op.as_str() != "total" && before.get(*op).copied().unwrap_or(0) < **n)
        .map(|(op, n)| format!("{op}×{}", n - before.get(op).copied().unwrap_or(0)))
        .collect()
}

/// Variables of the machine a kiln under test must not see (unless a test sets them).
pub const AMBIENT_VARS: &[&str] = &[
    "OCI_CLI_PROFILE",
    "OCI_CLI_CONFIG_FILE",
    "OCI_CONFIG_FILE",
    "OCI_CLI_AUTH",
    "OCI_DEFAULT_CERTS_PATH",
    "OCI_METADATA_BASE_URL",
    "OCI_SDK_AUTH_CLIENT_REGION_URL",
    "OCI_RESOURCE_PRINCIPAL_VERSION",
    "OCI_RESOURCE_PRINCIPAL_RPST",
    "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM",
    "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE",
    "OCI_RESOURCE_PRINCIPAL_REGION",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Run the kiln binary in `cwd`, without colour, with fast embedded-emulator lifecycles.
pub async fn run_kiln(cwd: &Path, args: &[&str]) -> Out {
    run_kiln_env(cwd, args, &[]).await
}

/// [`run_kiln`] with extra environment variables (e.g. `FAILPOINTS`).
pub async fn run_kiln_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    // Nothing of the machine's OCI or network settings leaks in; a test sets what it tests.
    for var in AMBIENT_VARS {
        cmd.env_remove(var);
    }
    let out = cmd
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env("KILN_EMULATOR_TIME_SCALE", "0.002")
        // The test keys are checked out with the umask's mode (often 0644): kiln would warn
        // that they are too open in every test. `tests/it/paths.rs` tests the warning itself.
        .env("OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING", "True")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Replace volatile values (OCIDs, ports, times, paths) for snapshots.
pub fn scrub(text: &str, project: Option<&Project>) -> String {
    let mut s = text.to_string();
    if let Some(p) = project {
        s = s
            .replace(&p.emu.url(), "http://127.0.0.1:PORT")
            .replace(&p.path().display().to_string(), "[DIR]");
    }
    let mut seen: Vec<String> = Vec::new();
    s = {
        let mut out = String::new();
        let mut rest = s.as_str();
        while let Some(i) = rest.find("ocid1.") {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'))
                .unwrap_or(tail.len());
            let ocid = &tail[..end];
            let kind = ocid.split('.').nth(1).unwrap_or("x");
            let n = match seen.iter().position(|o| o == ocid) {
                Some(n) => n,
                None => {
                    seen.push(ocid.to_string());
                    seen.len() - 1
                }
            };
            out.push_str(&format!("ocid1.{kind}.[ID{}]", n + 1));
            rest = &tail[end..];
        }
        out.push_str(rest);
        out
    };
    // Durations and clock times.
    let mut out = String::new();
    for line in s.lines() {
        let mut l = line.to_string();
        if let Some(i) = l.find(" in ") {
            if l.starts_with("Apply ") {
                l.truncate(i);
                l.push_str(" in [TIME]");
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Jump every pending lifecycle step and work request to now (the emulator's state, not a sleep).
pub fn fast_forward(emu: &RunningEmulator) {
    let mut w = emu.snapshot();
    let past = chrono::Utc::now() - chrono::Duration::milliseconds(1);
    let records = w
        .instances
        .values_mut()
        .chain(w.images.values_mut())
        .chain(w.boot_volumes.values_mut())
        .chain(w.boot_volume_attachments.values_mut());
    for r in records {
        for s in r.steps.iter_mut() {
            s.at = s.at.min(past);
        }
    }
    for wr in w.work_requests.values_mut() {
        wr.finishes = wr.finishes.min(past);
        wr.accepted = wr.accepted.min(past);
    }
    emu.restore(w);
}

/// Move every instance's last image capture a day back: the next capture is past the emulator's
/// (scaled) cooldown at once, with no wait.
pub fn pass_capture_cooldown(emu: &RunningEmulator) {
    let mut w = emu.snapshot();
    for at in w.last_capture.values_mut() {
        *at -= chrono::Duration::days(1);
    }
    emu.restore(w);
}

/// The display names of `live` instances, sorted: what a test compares to what it declared.
pub fn live_names(live: &[kiln::oci::models::Instance]) -> Vec<String> {
    let mut names: Vec<String> = live
        .iter()
        .map(|i| i.display_name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names
}

/// A second region served by its own emulator (its own ADs, subnets, images and resources), and
/// `p`'s manifest header with the `[provider] endpoints` line that reaches it.
pub async fn second_region(p: &Project, region: &str) -> (RunningEmulator, String) {
    let emu = start(EmulatorConfig {
        region: region.into(),
        peers: p.emu.peers(),
        ..config(0.0)
    })
    .await;
    let header = p.header().replace(
        "[defaults]",
        &format!(
            "endpoints = {{ {region} = \"{}\" }}\n\n[defaults]",
            emu.url()
        ),
    );
    (emu, header)
}

// Raw requests (signed by kiln's signer), for tests that check the JSON on the wire: the
// emulator-fidelity and boot-replacement tests.

/// A work request that has not finished: ACCEPTED at the instant it is made, then IN_PROGRESS.
pub fn pending(w: &Value) -> bool {
    matches!(w["status"].as_str(), Some("ACCEPTED" | "IN_PROGRESS"))
}

/// One answer: status, headers, JSON body (Null when none).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).and_then(|v| v.to_str().ok())
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

/// Signed raw requests to an emulator.
pub struct Api<'a> {
    emu: &'a RunningEmulator,
    http: reqwest::Client,
}

pub fn qs(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

impl<'a> Api<'a> {
    pub fn new(emu: &'a RunningEmulator) -> Api<'a> {
        Api {
            emu,
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        pq: &str,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let pq = format!("/20160918{pq}");
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let host = self.emu.addr().to_string();
        let signed = signer::sign(
            &signing_key(),
            &RequestParts {
                method,
                path_and_query: &pq,
                host: &host,
                date: &signer::http_date_now(),
                body: &bytes,
                content_type: "application/json",
                exclude_body: false,
            },
        );
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{pq}", self.emu.url()));
        for (k, v) in &signed.headers {
            if *k != "content-length" {
                req = req.header(*k, v);
            }
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if matches!(method, "POST" | "PUT") {
            if bytes.is_empty() {
                req = req.header("content-length", "0");
            }
            req = req.body(bytes);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    pub async fn get(&self, pq: &str) -> Answer {
        self.call("GET", pq, None, &[]).await
    }

    pub async fn post(&self, pq: &str, body: &Value) -> Answer {
        self.call("POST", pq, Some(body), &[]).await
    }

    pub async fn put(&self, pq: &str, body: &Value) -> Answer {
        self.call("PUT", pq, Some(body), &[]).await
    }

    pub async fn delete(&self, pq: &str) -> Answer {
        self.call("DELETE", pq, None, &[]).await
    }

    /// GET that must succeed.
    pub async fn ok(&self, pq: &str) -> Value {
        let a = self.get(pq).await;
        assert_eq!(a.status, 200, "GET {pq}: {a:?}");
        a.body
    }

    /// A valid launch body, with `patch` merged over it (one level deep, nulls remove).
    pub fn launch_body(&self, name: &str, patch: Value) -> Value {
        let f = self.emu.fixtures();
        let mut b = json!({
            "availabilityDomain": f.availability_domains[0],
            "compartmentId": COMPARTMENT,
            "displayName": name,
            "shape": "VM.Standard.E4.Flex",
            "shapeConfig": {"ocpus": 1, "memoryInGBs": 16},
            "createVnicDetails": {"subnetId": f.public_subnet_id},
            "sourceDetails": {"sourceType": "image", "imageId": f.platform_images[0].id},
            "metadata": {"ssh_authorized_keys": "ssh-ed25519 AAAA test"}
        });
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        b
    }

    pub async fn launch(&self, name: &str, patch: Value) -> Value {
        let a = self
            .post("/instances", &self.launch_body(name, patch))
            .await;
        assert_eq!(a.status, 200, "launch {name}: {a:?}");
        a.body
    }
}

/// An emulator whose lifecycles run at time scale 1.0 (jumped over with [`fast_forward`]).
pub async fn emulator() -> RunningEmulator {
    start(config(1.0)).await
}
