//! `instance_principal`: the identity of the OCI Compute instance kiln runs on.
//!
//! As Oracle's SDKs do it (Python `instance_principals_security_token_signer.py` and
//! `federation_client.py`, Go `x509FederationClient`):
//! 1. The instance metadata service (IMDS v2, `http://169.254.169.254/opc/v2`, every request with
//!    `Authorization: Bearer Oracle`; `OCI_METADATA_BASE_URL` replaces the base) gives the region
//!    (`/instance/region`, an id or a 3-letter code) and the instance's certificate
//!    (`/identity/cert.pem`), its private key (`/identity/key.pem`) and the intermediate CA
//!    certificate (`/identity/intermediate.pem`). The tenancy is the `opc-tenant:` (or
//!    `opc-identity:`) value in the certificate's subject.
//! 2. kiln makes a fresh 2048-bit RSA session key and asks the auth service for a token:
//!    `POST <auth service>/v1/x509` with `{"certificate", "publicKey", "intermediateCertificates",
//!    "fingerprintAlgorithm": "SHA256"}` (certificates and key as base64 DER, PEM armour and line
//!    breaks removed), signed with the certificate's key over `date (request-target)
//!    content-length content-type x-content-sha256` — no `host` — with the `keyId`
//!    `<tenancy>/fed-x509-sha256/<SHA-256 fingerprint of the certificate>`.
//! 3. The answer is `{"token": …}`; requests are then signed with the session key and
//!    `ST$<token>`.
//!
//! Before the token expires, and after a 401, kiln federates again — reading the certificates
//! again (OCI rotates them) and making a new session key. The metadata service is never reached
//! through a proxy (a link-local address is not behind one); the auth service is, like any OCI
//! endpoint.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::Utc;
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::RsaPrivateKey;
use x509_cert::der::{Decode, DecodePem, Encode};

use super::token::Token;
use crate::oci::keys::{self, SigningKey};
use crate::oci::net::Network;

/// The metadata service's base URL.
pub const DEFAULT_METADATA_URL: &str = "http://169.254.169.254/opc/v2";

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum InstanceError {
    #[error(
        "instance principal: cannot read `{url}` from the instance metadata service: {reason}"
    )]
    #[diagnostic(
        code(kiln::oci::instance_principal),
        help("instance principals work only on an OCI Compute instance (the metadata service is {DEFAULT_METADATA_URL}, or `OCI_METADATA_BASE_URL`); elsewhere use another auth method")
    )]
    Metadata { url: String, reason: String },
    #[error("instance principal: {0}")]
    #[diagnostic(code(kiln::oci::instance_principal))]
    Certificate(String),
    #[error("instance principal: the auth service did not issue a token: {0}")]
    #[diagnostic(
        code(kiln::oci::instance_principal),
        help("the instance needs to be in a dynamic group (and that group needs policies); the auth service is `https://auth.<region>.<domain>`, or `OCI_SDK_AUTH_CLIENT_REGION_URL`")
    )]
    Federation(String),
}

/// Where the instance principal's services are.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// IMDS base, e.g. `http://169.254.169.254/opc/v2`.
    pub metadata: String,
    /// `OCI_SDK_AUTH_CLIENT_REGION_URL`, when set (else the region's auth service).
    pub auth_override: Option<String>,
}

impl Endpoints {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Endpoints {
        let metadata = env(super::METADATA_URL_ENV)
            .map(|v| v.trim().trim_end_matches('/').to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_METADATA_URL.to_string());
        let auth_override = env(super::AUTH_URL_ENV)
            .map(|v| v.trim().trim_end_matches('/').to_string())
            .filter(|v| !v.is_empty());
        Endpoints {
            metadata,
            auth_override,
        }
    }
}

/// What the metadata service says about this instance's identity.
struct Identity {
    /// The leaf certificate, DER.
    leaf: Vec<u8>,
    leaf_key: RsaPrivateKey,
    intermediates: Vec<Vec<u8>>,
    tenancy: String,
}

pub use crate::x509_subject::{sha256_fingerprint, tenancy as tenancy_of};

/// An instance principal.
pub struct InstancePrincipal {
    endpoints: Endpoints,
    federation_url: String,
    region: String,
    tenancy: String,
    imds: reqwest::Client,
    http: reqwest::Client,
    current: tokio::sync::Mutex<(Token, Arc<SigningKey>)>,
}

impl std::fmt::Debug for InstancePrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstancePrincipal")
            .field("metadata", &self.endpoints.metadata)
            .field("federation", &self.federation_url)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl InstancePrincipal {
    /// Ask the metadata service who this instance is, and get a first token.
    pub async fn new(
        endpoints: Endpoints,
        network: &Network,
    ) -> Result<InstancePrincipal, InstanceError> {
        let imds = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("the HTTP client builds");
        let raw = get_metadata(&imds, &endpoints.metadata, "instance/region").await?;
        let raw = raw.trim().to_ascii_lowercase();
        let region = crate::region::resolve(&raw)
            .map(str::to_string)
            .unwrap_or(raw);
        let auth = match &endpoints.auth_override {
            Some(u) => u.clone(),
            None => format!("https://auth.{region}.{}", crate::region::domain(&region)),
        };
        let identity = fetch_identity(&imds, &endpoints.metadata).await?;
        let http = super::auth_http(network);
        let federation_url = format!("{auth}/v1/x509");
        let first = federate(&http, &federation_url, &identity).await?;
        Ok(InstancePrincipal {
            endpoints,
            federation_url,
            region,
            tenancy: identity.tenancy,
            imds,
            http,
            current: tokio::sync::Mutex::new(first),
        })
    }

    /// The instance's region (from the metadata service).
    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn tenancy(&self) -> &str {
        &self.tenancy
    }

    /// Read the certificates again and get a new token with a new session key.
    async fn renew(&self) -> Result<(Token, Arc<SigningKey>), InstanceError> {
        let identity = fetch_identity(&self.imds, &self.endpoints.metadata).await?;
        if identity.tenancy != self.tenancy {
            return Err(InstanceError::Certificate(format!(
                "the instance certificate now names tenancy `{}`, not `{}`",
                identity.tenancy, self.tenancy
            )));
        }
        federate(&self.http, &self.federation_url, &identity).await
    }

    pub async fn signing_key(&self) -> Result<Arc<SigningKey>, String> {
        let mut cur = self.current.lock().await;
        if cur.0.needs_refresh(Utc::now()) {
            match self.renew().await {
                Ok(next) => *cur = next,
                Err(e) if cur.0.expired(Utc::now()) => {
                    return Err(format!(
                        "the instance principal token (auth: instance_principal) expired at {} and no new one could be had: {e}",
                        cur.0.expires_at
                    ))
                }
                Err(e) => tracing::warn!(target: "kiln::oci", "cannot renew the instance principal token yet: {e}"),
            }
        }
        Ok(cur.1.clone())
    }

    pub async fn after_unauthorized(&self, used: &SigningKey) -> bool {
        let mut cur = self.current.lock().await;
        if cur.1.key_id != used.key_id {
            return true;
        }
        match self.renew().await {
            Ok(next) => {
                *cur = next;
                true
            }
            Err(e) => {
                tracing::debug!(target: "kiln::oci", "after a 401: {e}");
                false
            }
        }
    }

    pub fn auth_help(&self) -> String {
        format!(
            "kiln signed as this instance (auth: instance_principal, token from {}); the instance's dynamic group may lack a policy for this request, or its token was refused even after a new one was fetched",
            self.federation_url
        )
    }
}

/// One metadata document, as text.
async fn get_metadata(
    imds: &reqwest::Client,
    base: &str,
    path: &str,
) -> Result<String, InstanceError> {
    let url = format!("{base}/{path}");
    let err = |reason: String| InstanceError::Metadata {
        url: url.clone(),
        reason,
    };
    let resp = imds
        .get(&url)
        .header("authorization", "Bearer Oracle")
        .send()
        .await
        .map_err(|e| err(super::chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(err(format!("HTTP {}", status.as_u16())));
    }
    resp.text().await.map_err(|e| err(super::chain(&e)))
}

/// The PEM certificates of a document, as DER.
fn certificates(what: &str, pem: &str) -> Result<Vec<Vec<u8>>, InstanceError> {
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end_marker = "-----END CERTIFICATE-----";
        let end = rest[start..]
            .find(end_marker)
            .map(|e| start + e + end_marker.len())
            .ok_or_else(|| InstanceError::Certificate(format!("{what} is cut short")))?;
        let cert = x509_cert::Certificate::from_pem(&rest.as_bytes()[start..end]).map_err(|e| {
            InstanceError::Certificate(format!("{what} is not a valid certificate: {e}"))
        })?;
        out.push(
            cert.to_der().map_err(|e| {
                InstanceError::Certificate(format!("{what} does not re-encode: {e}"))
            })?,
        );
        rest = &rest[end..];
    }
    if out.is_empty() {
        return Err(InstanceError::Certificate(format!(
            "{what} holds no PEM certificate"
        )));
    }
    Ok(out)
}

async fn fetch_identity(imds: &reqwest::Client, base: &str) -> Result<Identity, InstanceError> {
    let cert_pem = get_metadata(imds, base, "identity/cert.pem").await?;
    let key_pem = get_metadata(imds, base, "identity/key.pem").await?;
    let intermediate_pem = get_metadata(imds, base, "identity/intermediate.pem").await?;
    let leaf = certificates("the instance certificate", &cert_pem)?
        .into_iter()
        .next()
        .expect("at least one");
    let intermediates = certificates("the intermediate certificate", &intermediate_pem)?;
    let parsed = x509_cert::Certificate::from_der(&leaf)
        .map_err(|e| InstanceError::Certificate(format!("the instance certificate: {e}")))?;
    let tenancy = tenancy_of(&parsed).ok_or_else(|| {
        InstanceError::Certificate(
            "the instance certificate names no tenancy (`opc-tenant:` in its subject)".into(),
        )
    })?;
    let leaf_key = keys::parse_private_key(
        std::path::Path::new(&format!("{base}/identity/key.pem")),
        &key_pem,
        None,
    )
    .map_err(|e| InstanceError::Certificate(format!("the instance key: {e}")))?;
    let cert_spki = parsed
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| InstanceError::Certificate(e.to_string()))?;
    let key_spki = leaf_key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| InstanceError::Certificate(e.to_string()))?;
    if rsa::RsaPublicKey::from_public_key_der(&cert_spki).ok()
        != rsa::RsaPublicKey::from_public_key_der(key_spki.as_bytes()).ok()
    {
        return Err(InstanceError::Certificate(
            "the instance key does not belong to the instance certificate (read during a rotation? kiln reads them again next time)".into(),
        ));
    }
    Ok(Identity {
        leaf,
        leaf_key,
        intermediates,
        tenancy,
    })
}

/// Exchange the certificate for a token bound to a new session key.
async fn federate(
    http: &reqwest::Client,
    url: &str,
    identity: &Identity,
) -> Result<(Token, Arc<SigningKey>), InstanceError> {
    let session = tokio::task::spawn_blocking(|| RsaPrivateKey::new(&mut rand::thread_rng(), 2048))
        .await
        .map_err(|e| InstanceError::Federation(format!("making a session key: {e}")))?
        .map_err(|e| InstanceError::Federation(format!("making a session key: {e}")))?;
    let public = session
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| InstanceError::Federation(e.to_string()))?;
    let body = serde_json::json!({
        "certificate": B64.encode(&identity.leaf),
        "publicKey": B64.encode(public.as_bytes()),
        "intermediateCertificates": identity.intermediates.iter().map(|c| B64.encode(c)).collect::<Vec<_>>(),
        "fingerprintAlgorithm": "SHA256",
    });
    let key = SigningKey::new(
        identity.leaf_key.clone(),
        format!(
            "{}/fed-x509-sha256/{}",
            identity.tenancy,
            sha256_fingerprint(&identity.leaf)
        ),
    );
    let reply = super::auth_post(
        http,
        url,
        &key,
        serde_json::to_vec(&body).expect("serialises"),
        false,
    )
    .await
    .map_err(InstanceError::Federation)?;
    if !(200..300).contains(&reply.status) {
        return Err(InstanceError::Federation(reply.error_text()));
    }
    let token = reply.token().map_err(InstanceError::Federation)?;
    tracing::debug!(target: "kiln::oci", expires_at = %token.expires_at, "instance principal token issued");
    let signing = Arc::new(SigningKey::new(session, format!("ST${}", token.expose())));
    Ok((token, signing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_the_environment() {
        let none = Endpoints::from_env(&|_: &str| None);
        assert_eq!(none.metadata, "http://169.254.169.254/opc/v2");
        assert_eq!(none.auth_override, None);
        let set = Endpoints::from_env(&|k: &str| match k {
            "OCI_METADATA_BASE_URL" => Some("http://127.0.0.1:1/opc/v2/".into()),
            "OCI_SDK_AUTH_CLIENT_REGION_URL" => Some("http://127.0.0.1:2".into()),
            _ => None,
        });
        assert_eq!(set.metadata, "http://127.0.0.1:1/opc/v2");
        assert_eq!(set.auth_override.as_deref(), Some("http://127.0.0.1:2"));
    }

    #[test]
    fn fingerprints_are_sha256_hex_pairs() {
        assert_eq!(
            sha256_fingerprint(b"abc"),
            "ba:78:16:bf:8f:01:cf:ea:41:41:40:de:5d:ae:22:23:b0:03:61:a3:96:17:7a:9c:b4:10:ff:61:f2:00:15:ad"
        );
        assert!(matches!(
            certificates("x", "nothing"),
            Err(InstanceError::Certificate(m)) if m == "x holds no PEM certificate"
        ));
    }
}
