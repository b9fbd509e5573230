//! Every auth method against the emulator on loopback: resource principals from their environment
//! (inline and as files, re-read after a 401), instance principals through a metadata server
//! written here and the emulator's federation endpoint (token expiry, certificate rotation),
//! session tokens (refreshed before they expire; an ended session as a 401 naming the method),
//! proxies (a CONNECT and forward proxy written here) and a CA bundle (a TLS forwarder with a CA
//! of its own). Tokens expire by moving the emulator's token clock, never by waiting.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kiln::emulator::{EmulatorConfig, Principal, RunningEmulator};
use kiln::oci::auth::instance::{Endpoints, InstancePrincipal};
use kiln::oci::auth::resource::{ResourcePrincipal, Settings};
use kiln::oci::auth::{Credentials, Token};
use kiln::oci::compute::ListInstances;
use kiln::oci::net::Network;
use kiln::oci::{Client, ClientOptions, ErrorKind, RetryPolicy};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;
use sha2::Sha256;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::EncodePem;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

use crate::support::{self, key_path, Project, COMPARTMENT, TENANCY, USER};

const HOUR: Duration = Duration::from_secs(3600);
const INSTANCE: &str = "ocid1.instance.oc1.iad.aaaaaaaakilnrunner";

// ---------------------------------------------------------------------------------------------
// Keys and certificates

pub(crate) fn fixture_key(name: &str, pass: Option<&str>) -> RsaPrivateKey {
    kiln::oci::keys::load_private_key(&key_path(name), pass).unwrap()
}

pub(crate) fn pem_of(key: &RsaPrivateKey) -> String {
    key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
}

/// A root CA and an intermediate under it, made once per test binary.
pub(crate) struct Pki {
    pub(crate) root_key: RsaPrivateKey,
    pub(crate) root_pem: String,
    pub(crate) root_name: Name,
    pub(crate) inter_key: RsaPrivateKey,
    pub(crate) inter_pem: String,
    pub(crate) inter_name: Name,
}

pub(crate) fn new_key() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap()
}

pub(crate) fn spki(key: &RsaPrivateKey) -> SubjectPublicKeyInfoOwned {
    SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).unwrap()
}

pub(crate) fn serial() -> SerialNumber {
    SerialNumber::from(rand::random::<u32>() >> 1)
}

pub(crate) fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let root_key = new_key();
        let root_name = Name::from_str("CN=kiln test root CA,O=kiln tests").unwrap();
        let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(root_key.clone());
        let root = CertificateBuilder::new(
            Profile::Root,
            serial(),
            Validity::from_now(Duration::from_secs(10 * 24 * 3600)).unwrap(),
            root_name.clone(),
            spki(&root_key),
            &signer,
        )
        .unwrap()
        .build::<rsa::pkcs1v15::Signature>()
        .unwrap();
        let inter_key = new_key();
        let inter_name = Name::from_str("CN=kiln test intermediate CA,O=kiln tests").unwrap();
        let inter = CertificateBuilder::new(
            Profile::SubCA {
                issuer: root_name.clone(),
                path_len_constraint: Some(0),
            },
            serial(),
            Validity::from_now(Duration::from_secs(10 * 24 * 3600)).unwrap(),
            inter_name.clone(),
            spki(&inter_key),
            &signer,
        )
        .unwrap()
        .build::<rsa::pkcs1v15::Signature>()
        .unwrap();
        Pki {
            root_key,
            root_pem: root.to_pem(LineEnding::LF).unwrap(),
            root_name,
            inter_key,
            inter_pem: inter.to_pem(LineEnding::LF).unwrap(),
            inter_name,
        }
    })
}

/// An instance certificate as OCI issues them: the tenancy and instance in its subject, signed
/// by the intermediate, valid for `valid`.
fn instance_cert(key: &RsaPrivateKey, valid: Duration) -> String {
    let pki = pki();
    let subject = Name::from_str(&format!(
        "CN={INSTANCE},OU=opc-certtype:instance,OU=opc-compartment:{COMPARTMENT},OU=opc-instance:{INSTANCE},OU=opc-tenant:{TENANCY}"
    ))
    .unwrap();
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(pki.inter_key.clone());
    CertificateBuilder::new(
        Profile::Leaf {
            issuer: pki.inter_name.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        serial(),
        Validity::from_now(valid).unwrap(),
        subject,
        spki(key),
        &signer,
    )
    .unwrap()
    .build::<rsa::pkcs1v15::Signature>()
    .unwrap()
    .to_pem(LineEnding::LF)
    .unwrap()
}

/// The same subject, but signed by a CA of its own that nobody trusts.
fn untrusted_instance_cert(key: &RsaPrivateKey) -> String {
    let subject = Name::from_str(&format!(
        "CN={INSTANCE},OU=opc-instance:{INSTANCE},OU=opc-tenant:{TENANCY}"
    ))
    .unwrap();
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone());
    CertificateBuilder::new(
        Profile::Root,
        serial(),
        Validity::from_now(HOUR * 24).unwrap(),
        subject,
        spki(key),
        &signer,
    )
    .unwrap()
    .build::<rsa::pkcs1v15::Signature>()
    .unwrap()
    .to_pem(LineEnding::LF)
    .unwrap()
}

/// A TLS server certificate for 127.0.0.1 under the root CA: (certificate DER, PKCS#8 key DER).
fn tls_server_cert() -> (Vec<u8>, Vec<u8>) {
    use x509_cert::der::asn1::OctetString;
    use x509_cert::der::oid::ObjectIdentifier;
    use x509_cert::der::Encode;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
    let pki = pki();
    let key = fixture_key("pkcs1.pem", None);
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(pki.root_key.clone());
    let mut b = CertificateBuilder::new(
        Profile::Leaf {
            issuer: pki.root_name.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: true,
        },
        serial(),
        Validity::from_now(HOUR * 24).unwrap(),
        Name::from_str("CN=127.0.0.1").unwrap(),
        spki(&key),
        &signer,
    )
    .unwrap();
    b.add_extension(&SubjectAltName(vec![GeneralName::IpAddress(
        OctetString::new(vec![127, 0, 0, 1]).unwrap(),
    )]))
    .unwrap();
    b.add_extension(&ExtendedKeyUsage(vec![ObjectIdentifier::new_unwrap(
        "1.3.6.1.5.5.7.3.1",
    )]))
    .unwrap();
    let cert = b.build::<rsa::pkcs1v15::Signature>().unwrap();
    (
        cert.to_der().unwrap(),
        key.to_pkcs8_der().unwrap().as_bytes().to_vec(),
    )
}

// ---------------------------------------------------------------------------------------------
// Servers written for the tests

type Resp = hyper::Response<Full<Bytes>>;

fn reply(status: u16, body: impl Into<Bytes>) -> Resp {
    hyper::Response::builder()
        .status(status)
        .body(Full::new(body.into()))
        .unwrap()
}

/// Serve `handler` on a loopback port (HTTP/1, upgrades allowed for CONNECT).
async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let h = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let h = h.clone();
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// What the metadata server serves, and what it was asked.
#[derive(Default)]
pub(crate) struct Imds {
    pub(crate) region: String,
    pub(crate) cert: String,
    pub(crate) key: String,
    pub(crate) intermediate: String,
    /// Requests per path.
    hits: BTreeMap<String, u64>,
    /// Requests without `Authorization: Bearer Oracle` (answered 401).
    unauthorized: u64,
}

/// An instance metadata service (IMDS v2) on loopback; its base URL.
pub(crate) async fn metadata_server(state: Arc<Mutex<Imds>>) -> String {
    let addr = serve(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = state.clone();
        async move {
            let mut s = state.lock().unwrap();
            let path = req.uri().path().to_string();
            *s.hits.entry(path.clone()).or_default() += 1;
            if req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                != Some("Bearer Oracle")
            {
                s.unauthorized += 1;
                return reply(401, "missing Authorization: Bearer Oracle");
            }
            match path.as_str() {
                "/opc/v2/instance/region" => reply(200, s.region.clone()),
                "/opc/v2/identity/cert.pem" => reply(200, s.cert.clone()),
                "/opc/v2/identity/key.pem" => reply(200, s.key.clone()),
                "/opc/v2/identity/intermediate.pem" => reply(200, s.intermediate.clone()),
                _ => reply(404, "not found"),
            }
        }
    })
    .await;
    format!("http://{addr}/opc/v2")
}

#[derive(Default)]
struct ProxyLog {
    /// `CONNECT` tunnels opened, by target.
    connects: Mutex<Vec<String>>,
    /// Requests forwarded in absolute form.
    forwarded: AtomicU64,
}

/// An HTTP proxy: `CONNECT host:port` tunnels, and absolute-form requests forwarded.
async fn proxy_server() -> (SocketAddr, Arc<ProxyLog>) {
    let log = Arc::new(ProxyLog::default());
    let upstream = reqwest::Client::builder().no_proxy().build().unwrap();
    let l = log.clone();
    let addr = serve(move |req: hyper::Request<hyper::body::Incoming>| {
        let log = l.clone();
        let upstream = upstream.clone();
        async move {
            if req.method() == hyper::Method::CONNECT {
                let target = req
                    .uri()
                    .authority()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                log.connects.lock().unwrap().push(target.clone());
                tokio::spawn(async move {
                    let Ok(upgraded) = hyper::upgrade::on(req).await else {
                        return;
                    };
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let mut client = hyper_util::rt::TokioIo::new(upgraded);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                return reply(200, "");
            }
            if req.uri().scheme().is_none() {
                return reply(400, "a proxy takes absolute-form requests");
            }
            log.forwarded.fetch_add(1, Ordering::SeqCst);
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let mut headers = parts.headers.clone();
            for hop in [
                "connection",
                "proxy-connection",
                "keep-alive",
                "proxy-authorization",
            ] {
                headers.remove(hop);
            }
            let resp = upstream
                .request(parts.method, parts.uri.to_string())
                .headers(headers)
                .body(body)
                .send()
                .await;
            match resp {
                Ok(r) => {
                    let mut b = hyper::Response::builder().status(r.status().as_u16());
                    for (k, v) in r.headers() {
                        if !matches!(
                            k.as_str(),
                            "connection" | "transfer-encoding" | "content-length" | "keep-alive"
                        ) {
                            b = b.header(k, v);
                        }
                    }
                    b.body(Full::new(r.bytes().await.unwrap_or_default()))
                        .unwrap()
                }
                Err(e) => reply(502, e.to_string()),
            }
        }
    })
    .await;
    (addr, log)
}

/// A TLS endpoint (certificate for 127.0.0.1 under the test root) forwarding to `upstream` in
/// plain TCP; its address and the count of TLS sessions it accepted.
async fn tls_forwarder(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicU64>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let (cert, key) = tls_server_cert();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert)],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sessions = Arc::new(AtomicU64::new(0));
    let n = sessions.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let n = n.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                n.fetch_add(1, Ordering::SeqCst);
                let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, sessions)
}

// ---------------------------------------------------------------------------------------------
// Helpers

pub(crate) fn options(url: &str) -> ClientOptions {
    let mut opts = ClientOptions::new(url);
    opts.retry = RetryPolicy {
        max_attempts: 3,
        max_elapsed: Duration::from_secs(30),
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    };
    opts.timeout = Duration::from_secs(30);
    opts
}

pub(crate) fn list() -> ListInstances {
    ListInstances {
        compartment_id: COMPARTMENT.into(),
        ..Default::default()
    }
}

pub(crate) fn stat(emu: &RunningEmulator, name: &str) -> u64 {
    emu.stats().get(name).copied().unwrap_or(0)
}

fn resource_principal() -> Principal {
    Principal::Resource {
        tenancy: TENANCY.into(),
        compartment: COMPARTMENT.into(),
        resource_id: "ocid1.devopsbuildpipeline.oc1.iad.aaaaaaaakilnbuild".into(),
        resource_type: "devopsbuildpipeline".into(),
    }
}

/// The project's manifest header with `extra` lines added to `[provider]`.
fn header_with(p: &Project, extra: &str) -> String {
    p.header()
        .replacen("[provider]\n", &format!("[provider]\n{extra}"), 1)
}

fn write_manifest(p: &Project, header: &str, body: &str) {
    std::fs::write(p.path().join("kiln.toml"), format!("{header}{body}")).unwrap();
}

/// The `CreatedBy` tag the emulator put on the first live instance named `name`.
async fn created_by(p: &Project, name: &str) -> String {
    let i = p
        .live_instances()
        .await
        .into_iter()
        .find(|i| i.display_name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no instance {name}"));
    i.defined_tags["Oracle-Tags"]["CreatedBy"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Nothing secret in a log: no token, no Authorization header, no private key.
fn assert_no_secrets(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "a secret leaked into:\n{text}");
    }
    for marker in ["ST$", "Signature ", "keyId", "PRIVATE KEY", "Bearer"] {
        assert!(!text.contains(marker), "`{marker}` in:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Resource principals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_principal_from_its_environment_drives_plan_and_apply_inline_and_from_files() {
    let p = Project::new(support::config(0.0)).await;
    // Inline: the token and the PEM in the variables themselves; the manifest chooses the method.
    let key = fixture_key("pkcs8.pem", None);
    let rpst = p
        .emu
        .issue_token(&resource_principal(), &key.to_public_key(), HOUR);
    let pem = pem_of(&key);
    write_manifest(
        &p,
        &header_with(&p, "auth = \"resource_principal\"\n"),
        "[instance.web]\n",
    );
    let inline = [
        ("OCI_RESOURCE_PRINCIPAL_VERSION", "2.2"),
        ("OCI_RESOURCE_PRINCIPAL_RPST", rpst.as_str()),
        ("OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM", pem.as_str()),
        ("OCI_RESOURCE_PRINCIPAL_REGION", "iad"),
    ];
    let out = support::run_kiln_env(p.path(), &["apply", "--auto-approve"], &inline).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        created_by(&p, "web").await,
        "oracleidentitycloudservice/ocid1.devopsbuildpipeline.oc1.iad.aaaaaaaakilnbuild",
        "the emulator knew the request came from the resource principal"
    );
    // `-v` logs every request, and nothing secret.
    let out =
        support::run_kiln_env(p.path(), &["plan", "-v", "--detailed-exitcode"], &inline).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("ListInstances 200"), "{out:?}");
    assert_no_secrets(&out.stderr, &[&rpst, &pem[40..100]]);
    assert_no_secrets(&out.stdout, &[&rpst]);

    // Files (absolute paths), an encrypted key with its pass phrase in a file, and the method
    // from OCI_CLI_AUTH over a manifest that names none.
    let key2 = fixture_key("pkcs8-encrypted.pem", Some("kiln-test-pass"));
    let rpst2 = p
        .emu
        .issue_token(&resource_principal(), &key2.to_public_key(), HOUR);
    let secrets = tempfile::tempdir().unwrap();
    let (tf, kf, pf) = (
        secrets.path().join("rpst"),
        secrets.path().join("key.pem"),
        secrets.path().join("passphrase"),
    );
    std::fs::write(&tf, &rpst2).unwrap();
    std::fs::copy(key_path("pkcs8-encrypted.pem"), &kf).unwrap();
    std::fs::write(&pf, "kiln-test-pass").unwrap();
    write_manifest(&p, &p.header(), "[instance.web]\n[instance.db]\n");
    let (t, k, pp) = (
        tf.display().to_string(),
        kf.display().to_string(),
        pf.display().to_string(),
    );
    let files = [
        ("OCI_CLI_AUTH", "resource_principal"),
        ("OCI_RESOURCE_PRINCIPAL_VERSION", "2.2"),
        ("OCI_RESOURCE_PRINCIPAL_RPST", t.as_str()),
        ("OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM", k.as_str()),
        ("OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE", pp.as_str()),
        ("OCI_RESOURCE_PRINCIPAL_REGION", "us-ashburn-1"),
    ];
    let out = support::run_kiln_env(p.path(), &["apply", "--auto-approve"], &files).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(p.live_instances().await.len(), 2);
    // `--auth api_key` on the command line wins over OCI_CLI_AUTH: the profile's API key signs.
    let out = support::run_kiln_env(
        p.path(),
        &["plan", "--detailed-exitcode", "--auth", "api_key"],
        &files,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("(profile DEFAULT)"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_principal_files_are_read_again_after_a_401_inline_values_are_not() {
    let emu = support::start(support::config(0.0)).await;
    let key = fixture_key("pkcs8.pem", None);
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("rpst");
    std::fs::write(
        &tf,
        emu.issue_token(&resource_principal(), &key.to_public_key(), HOUR),
    )
    .unwrap();
    let env = {
        let t = tf.display().to_string();
        let k = key_path("pkcs8.pem").display().to_string();
        move |v: &str| match v {
            "OCI_RESOURCE_PRINCIPAL_VERSION" => Some("2.2".to_string()),
            "OCI_RESOURCE_PRINCIPAL_RPST" => Some(t.clone()),
            "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM" => Some(k.clone()),
            _ => None,
        }
    };
    let rp = ResourcePrincipal::new(Settings::from_env(&env).unwrap()).unwrap();
    let client = Client::with_credentials(Credentials::resource(rp), options(&emu.url()));
    client.list_instances(&list()).await.unwrap();

    // The runtime replaces the token in its file; the old one expires on the emulator's clock.
    emu.advance_token_clock(2 * HOUR);
    std::fs::write(
        &tf,
        emu.issue_token(&resource_principal(), &key.to_public_key(), HOUR),
    )
    .unwrap();
    client.list_instances(&list()).await.unwrap();
    assert_eq!(stat(&emu, "errors.ListInstances"), 1, "{:?}", emu.stats());
    assert_eq!(stat(&emu, "ListInstances"), 3);

    // Inline, nothing can be read again: the 401 stands, and says what signed.
    let inline = emu.issue_token(&resource_principal(), &key.to_public_key(), HOUR);
    let pem = pem_of(&key);
    let env = move |v: &str| match v {
        "OCI_RESOURCE_PRINCIPAL_VERSION" => Some("2.2".to_string()),
        "OCI_RESOURCE_PRINCIPAL_RPST" => Some(inline.clone()),
        "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM" => Some(pem.clone()),
        _ => None,
    };
    let rp = ResourcePrincipal::new(Settings::from_env(&env).unwrap()).unwrap();
    let client = Client::with_credentials(Credentials::resource(rp), options(&emu.url()));
    client.list_instances(&list()).await.unwrap();
    emu.advance_token_clock(2 * HOUR);
    let e = client.list_instances(&list()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert_eq!(e.status, Some(401));
    assert!(e.message.contains("the security token expired at"), "{e}");
    assert!(
        e.help
            .as_deref()
            .unwrap_or("")
            .contains("auth: resource_principal"),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_resource_principal_variable_is_explained() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    let out = support::run_kiln_env(
        p.path(),
        &["plan", "--auth", "resource_principal"],
        &[("OCI_RESOURCE_PRINCIPAL_VERSION", "2.2")],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    insta::assert_snapshot!(
        "missing_resource_principal_variable",
        support::scrub(&out.stderr, Some(&p))
    );
    assert_eq!(stat(&p.emu, "total"), 0, "nothing was sent");
}

// ---------------------------------------------------------------------------------------------
// Instance principals

/// An emulator trusting the test root for instance certificates.
pub(crate) fn federating(token_lifetime: Duration) -> EmulatorConfig {
    EmulatorConfig {
        trusted_instance_cas: vec![pki().root_pem.clone()],
        token_lifetime,
        ..support::config(0.0)
    }
}

pub(crate) fn imds_serving(key: &RsaPrivateKey, cert: String) -> Arc<Mutex<Imds>> {
    Arc::new(Mutex::new(Imds {
        region: "iad".into(),
        cert,
        key: pem_of(key),
        intermediate: pki().inter_pem.clone(),
        ..Imds::default()
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_principal_through_the_metadata_service_drives_plan_and_apply() {
    let p = Project::new(federating(Duration::from_secs(1200))).await;
    let leaf_key = fixture_key("pkcs8.pem", None);
    let imds = imds_serving(&leaf_key, instance_cert(&leaf_key, HOUR));
    let metadata = metadata_server(imds.clone()).await;
    write_manifest(
        &p,
        &header_with(&p, "auth = \"instance_principal\"\n"),
        "[instance.web]\n",
    );
    let emu_url = p.emu.url();
    let env = [
        ("OCI_METADATA_BASE_URL", metadata.as_str()),
        ("OCI_SDK_AUTH_CLIENT_REGION_URL", emu_url.as_str()),
    ];
    let out = support::run_kiln_env(p.path(), &["apply", "-v", "--auto-approve"], &env).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("auth: instance_principal"), "{out:?}");
    assert_no_secrets(&out.stderr, &[]);
    assert_eq!(stat(&p.emu, "X509Federation"), 1);
    assert_eq!(stat(&p.emu, "errors.X509Federation"), 0);
    assert_eq!(
        created_by(&p, "web").await,
        format!("oracleidentitycloudservice/{INSTANCE}")
    );
    let s = imds.lock().unwrap();
    assert_eq!(
        s.unauthorized, 0,
        "every metadata request said `Bearer Oracle`"
    );
    assert_eq!(s.hits.get("/opc/v2/instance/region"), Some(&1));
    assert_eq!(s.hits.get("/opc/v2/identity/cert.pem"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_instance_token_is_renewed_with_rotated_certificates() {
    let emu = support::start(federating(Duration::from_secs(1200))).await;
    let key1 = fixture_key("pkcs8.pem", None);
    let imds = imds_serving(&key1, instance_cert(&key1, HOUR));
    let endpoints = Endpoints {
        metadata: metadata_server(imds.clone()).await,
        auth_override: Some(emu.url()),
    };
    let ip = InstancePrincipal::new(endpoints, &Network::default())
        .await
        .unwrap();
    assert_eq!(ip.region(), "us-ashburn-1");
    assert_eq!(ip.tenancy(), TENANCY);
    let client = Client::with_credentials(Credentials::instance(ip), options(&emu.url()));
    client.list_instances(&list()).await.unwrap();
    assert_eq!(stat(&emu, "X509Federation"), 1);

    // OCI rotates the instance's certificate and key; two hours later the token and the old
    // certificate have both expired (on the emulator's token clock). The 401 makes kiln read the
    // certificates again and federate with the new ones, then repeat the request once.
    let key2 = fixture_key("pkcs8-encrypted.pem", Some("kiln-test-pass"));
    {
        let mut s = imds.lock().unwrap();
        s.cert = instance_cert(&key2, 24 * HOUR);
        s.key = pem_of(&key2);
    }
    emu.advance_token_clock(2 * HOUR);
    client.list_instances(&list()).await.unwrap();
    assert_eq!(stat(&emu, "errors.ListInstances"), 1, "{:?}", emu.stats());
    assert_eq!(stat(&emu, "X509Federation"), 2);
    assert_eq!(
        stat(&emu, "errors.X509Federation"),
        0,
        "the old certificate was not used again"
    );
    assert_eq!(
        imds.lock().unwrap().hits.get("/opc/v2/identity/cert.pem"),
        Some(&2)
    );

    // A certificate the auth service does not trust: no token, and the 401 names the method.
    {
        let mut s = imds.lock().unwrap();
        s.cert = untrusted_instance_cert(&key1);
        s.key = pem_of(&key1);
    }
    emu.advance_token_clock(2 * HOUR);
    let e = client.list_instances(&list()).await.unwrap_err();
    assert_eq!(e.status, Some(401), "{e}");
    assert!(
        e.help
            .as_deref()
            .unwrap_or("")
            .contains("auth: instance_principal"),
        "{e:?}"
    );
    assert_eq!(stat(&emu, "errors.X509Federation"), 1);
}

// ---------------------------------------------------------------------------------------------
// Session tokens

/// A session profile as `oci session authenticate` writes it, for the pkcs8 key and `token`.
fn session_project_files(p: &Project, token: &str) -> std::path::PathBuf {
    let token_file = p.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let cfg = p.path().join("session-config");
    std::fs::write(
        &cfg,
        format!(
            "[session]\nfingerprint={}\nkey_file={}\ntenancy={TENANCY}\nregion=us-ashburn-1\nsecurity_token_file={}\n",
            support::PKCS8_FP,
            key_path("pkcs8.pem").display(),
            token_file.display()
        ),
    )
    .unwrap();
    let f = p.emu.fixtures();
    std::fs::write(
        p.path().join("kiln.toml"),
        format!(
            "[provider]\nendpoint = \"{}\"\nconfig_file = \"{}\"\nprofile = \"session\"\n\n[defaults]\ncompartment = \"{COMPARTMENT}\"\navailability_domain = \"{}\"\nshape = \"VM.Standard.E4.Flex\"\nshape_config = {{ ocpus = 1, memory_in_gbs = 16 }}\nsubnet = \"{}\"\nsource = {{ image = \"{}\" }}\n\n[instance.web]\n",
            p.emu.url(),
            cfg.display(),
            f.availability_domains[0],
            f.public_subnet_id,
            f.platform_images[0].id
        ),
    )
    .unwrap();
    token_file
}

fn session(p: &Project, ends_in: Duration) -> Principal {
    Principal::Session {
        tenancy: TENANCY.into(),
        user: USER.into(),
        session_end: p.emu.token_clock() + chrono::Duration::from_std(ends_in).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_token_about_to_expire_is_refreshed_and_written_back() {
    let p = Project::new(EmulatorConfig {
        token_lifetime: HOUR,
        ..support::config(0.0)
    })
    .await;
    let key = fixture_key("pkcs8.pem", None);
    // Issued 59 minutes ago, expiring in 30 seconds: inside the refresh margin.
    let now = p.emu.token_clock();
    let token = p.emu.issue_token_between(
        &session(&p, 10 * HOUR),
        &key.to_public_key(),
        now - chrono::Duration::minutes(59),
        now + chrono::Duration::seconds(30),
    );
    let token_file = session_project_files(&p, &token);
    let emu_url = p.emu.url();
    let out = support::run_kiln_env(
        p.path(),
        &["apply", "-v", "--auto-approve"],
        &[("OCI_SDK_AUTH_CLIENT_REGION_URL", emu_url.as_str())],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("auth: security_token"), "{out:?}");
    assert_eq!(
        stat(&p.emu, "RefreshSecurityToken"),
        1,
        "{:?}",
        p.emu.stats()
    );
    assert_eq!(stat(&p.emu, "errors.RefreshSecurityToken"), 0);
    let fresh = std::fs::read_to_string(&token_file).unwrap();
    assert_ne!(fresh, token, "the refreshed token was written back");
    let (old, new) = (Token::parse(&token).unwrap(), Token::parse(&fresh).unwrap());
    assert!(new.expires_at > old.expires_at + chrono::Duration::minutes(30));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_no_secrets(&out.stderr, &[&token, &fresh]);
    assert_eq!(p.live_instances().await.len(), 1);
    // The next run finds a fresh token and refreshes nothing.
    let out = support::run_kiln_env(
        p.path(),
        &["plan", "--detailed-exitcode"],
        &[("OCI_SDK_AUTH_CLIENT_REGION_URL", emu_url.as_str())],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(stat(&p.emu, "RefreshSecurityToken"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_is_a_401_that_names_the_auth_method() {
    let p = Project::new(EmulatorConfig {
        token_lifetime: HOUR,
        ..support::config(0.0)
    })
    .await;
    let key = fixture_key("pkcs8.pem", None);
    let token = p
        .emu
        .issue_token(&session(&p, 2 * HOUR), &key.to_public_key(), HOUR);
    session_project_files(&p, &token);
    let emu_url = p.emu.url();
    let env = [("OCI_SDK_AUTH_CLIENT_REGION_URL", emu_url.as_str())];
    let out = support::run_kiln_env(p.path(), &["apply", "--auto-approve"], &env).await;
    assert_eq!(out.code, 0, "{out:?}");
    // Three hours on, for the emulator: the token expired, the session ended.
    p.emu.advance_token_clock(3 * HOUR);
    let out = support::run_kiln_env(p.path(), &["plan", "-v"], &env).await;
    assert_eq!(out.code, 1, "{out:?}");
    // As one line, without miette's wrapping.
    let flat = out
        .stderr
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for needle in [
        "401",
        "NotAuthenticated",
        "the security token expired at",
        "auth: security_token",
        "oci session authenticate",
    ] {
        assert!(flat.contains(needle), "`{needle}` missing: {out:?}");
    }
    assert_no_secrets(&out.stderr, &[&token]);
    assert!(
        stat(&p.emu, "errors.RefreshSecurityToken") >= 1,
        "kiln tried to refresh before giving up: {:?}",
        p.emu.stats()
    );
}

// ---------------------------------------------------------------------------------------------
// Proxies and a CA bundle

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_carries_every_request_unless_no_proxy_says_otherwise() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    let (proxy, log) = proxy_server().await;
    let proxy_url = format!("http://{proxy}");
    let out = support::run_kiln_env(
        p.path(),
        &["apply", "--auto-approve"],
        &[("HTTP_PROXY", proxy_url.as_str())],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let through = log.forwarded.load(Ordering::SeqCst);
    assert!(through > 0);
    assert_eq!(
        through,
        stat(&p.emu, "total"),
        "every request went through the proxy"
    );
    let out = support::run_kiln_env(
        p.path(),
        &["plan", "--detailed-exitcode"],
        &[
            ("http_proxy", proxy_url.as_str()),
            ("NO_PROXY", "127.0.0.1"),
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        log.forwarded.load(Ordering::SeqCst),
        through,
        "NO_PROXY bypassed it"
    );
    assert!(stat(&p.emu, "total") > through);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_through_a_connect_proxy_to_an_endpoint_trusted_by_a_ca_bundle() {
    let p = Project::new(support::config(0.0)).await;
    let (tls, sessions) = tls_forwarder(p.emu.addr()).await;
    let endpoint = format!("https://{tls}");
    let header = p.header().replace(
        &format!("endpoint = \"{}\"", p.emu.url()),
        &format!("endpoint = \"{endpoint}\""),
    );
    write_manifest(&p, &header, "[instance.web]\n");
    let root = p.path().join("corporate-root.pem");
    std::fs::write(&root, &pki().root_pem).unwrap();

    // The built-in roots do not know the test CA: refused at once, not retried for minutes.
    let out = support::run_kiln(p.path(), &["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("certificate"), "{out:?}");
    assert!(!out.stderr.contains("after 2 attempts"), "{out:?}");

    // OCI_DEFAULT_CERTS_PATH, through an HTTPS_PROXY: a CONNECT tunnel, TLS inside it.
    let (proxy, log) = proxy_server().await;
    let (root_s, proxy_url) = (root.display().to_string(), format!("http://{proxy}"));
    let out = support::run_kiln_env(
        p.path(),
        &["apply", "--auto-approve"],
        &[
            ("OCI_DEFAULT_CERTS_PATH", root_s.as_str()),
            ("HTTPS_PROXY", proxy_url.as_str()),
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let connects = log.connects.lock().unwrap().clone();
    assert!(!connects.is_empty());
    assert!(
        connects.iter().all(|c| *c == tls.to_string()),
        "{connects:?}"
    );
    assert_eq!(log.forwarded.load(Ordering::SeqCst), 0);
    assert!(sessions.load(Ordering::SeqCst) >= connects.len() as u64);
    assert_eq!(p.live_instances().await.len(), 1);

    // `[provider] ca_bundle`, relative to the manifest directory, direct.
    write_manifest(
        &p,
        &header.replacen(
            "[provider]\n",
            "[provider]\nca_bundle = \"corporate-root.pem\"\n",
            1,
        ),
        "[instance.web]\n",
    );
    let before = connects.len();
    let sessions_before = sessions.load(Ordering::SeqCst);
    let out = support::run_kiln(p.path(), &["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(log.connects.lock().unwrap().len(), before);
    assert!(
        sessions.load(Ordering::SeqCst) > sessions_before,
        "the plan read over TLS"
    );
}
