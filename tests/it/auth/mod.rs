//! Every auth method against the emulator on loopback: resource principals from their environment
//! (inline and as files, re-read after a 401), instance principals through a metadata server
//! written here and the emulator's federation endpoint (token expiry, certificate rotation),
//! session tokens (refreshed before they expire; an ended session as a 401 naming the method),
//! proxies (a CONNECT and forward proxy written here) and a CA bundle (a TLS forwarder with a CA
//! of its own). Tokens expire by moving the emulator's token clock, never by waiting.

//!
//! Here: the servers and certificates the tests stand up; [`principals`] (resource and instance
//! principals), [`sessions`] (session tokens), [`proxies`] (HTTP and CONNECT proxies, CA bundles).

mod principals;
mod proxies;
mod sessions;

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
use kiln::oci::compute::ListInstances;
use kiln::oci::{ClientOptions, RetryPolicy};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;
use sha2::Sha256;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::EncodePem;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

use crate::support::{self, key_path, Project, COMPARTMENT, TENANCY};

pub(super) const HOUR: Duration = Duration::from_secs(3600);
pub(super) const INSTANCE: &str = "ocid1.instance.oc1.iad.aaaaaaaakilnrunner";

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
pub(super) fn instance_cert(key: &RsaPrivateKey, valid: Duration) -> String {
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
pub(super) fn untrusted_instance_cert(key: &RsaPrivateKey) -> String {
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
pub(super) fn tls_server_cert() -> (Vec<u8>, Vec<u8>) {
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

pub(super) type Resp = hyper::Response<Full<Bytes>>;

pub(super) fn reply(status: u16, body: impl Into<Bytes>) -> Resp {
    hyper::Response::builder()
        .status(status)
        .body(Full::new(body.into()))
        .unwrap()
}

/// Serve `handler` on a loopback port (HTTP/1, upgrades allowed for CONNECT).
pub(super) async fn serve<F, Fut>(handler: F) -> SocketAddr
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
pub(super) struct ProxyLog {
    /// `CONNECT` tunnels opened, by target.
    connects: Mutex<Vec<String>>,
    /// Requests forwarded in absolute form.
    forwarded: AtomicU64,
}

/// An HTTP proxy: `CONNECT host:port` tunnels, and absolute-form requests forwarded.
pub(super) async fn proxy_server() -> (SocketAddr, Arc<ProxyLog>) {
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
pub(super) async fn tls_forwarder(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicU64>) {
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

pub(super) fn resource_principal() -> Principal {
    Principal::Resource {
        tenancy: TENANCY.into(),
        compartment: COMPARTMENT.into(),
        resource_id: "ocid1.devopsbuildpipeline.oc1.iad.aaaaaaaakilnbuild".into(),
        resource_type: "devopsbuildpipeline".into(),
    }
}

/// The project's manifest header with `extra` lines added to `[provider]`.
pub(super) fn header_with(p: &Project, extra: &str) -> String {
    p.header()
        .replacen("[provider]\n", &format!("[provider]\n{extra}"), 1)
}

pub(super) fn write_manifest(p: &Project, header: &str, body: &str) {
    std::fs::write(p.path().join("kiln.toml"), format!("{header}{body}")).unwrap();
}

/// The `CreatedBy` tag the emulator put on the first live instance named `name`.
pub(super) async fn created_by(p: &Project, name: &str) -> String {
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
pub(super) fn assert_no_secrets(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "a secret leaked into:\n{text}");
    }
    for marker in ["ST$", "Signature ", "keyId", "PRIVATE KEY", "Bearer"] {
        assert!(!text.contains(marker), "`{marker}` in:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Resource principals

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

// ---------------------------------------------------------------------------------------------
// Session tokens

// ---------------------------------------------------------------------------------------------
// Proxies and a CA bundle
