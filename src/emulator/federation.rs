//! The auth service's two endpoints that kiln calls, served on the emulator's own URL (point
//! `OCI_SDK_AUTH_CLIENT_REGION_URL` at it):
//!
//! - `POST /v1/x509` (operation `X509Federation`): an instance trades its certificate for a
//!   security token. The body is `{"certificate", "publicKey", "intermediateCertificates",
//!   "fingerprintAlgorithm"}` (base64 DER). The request must be signed by the certificate's key
//!   with `keyId="<tenancy>/fed-x509-sha256/<SHA-256 fingerprint>"` (Oracle's Go and Java SDKs;
//!   `<tenancy>/fed-x509/<SHA-1 fingerprint>` as the Python SDK sends it is accepted too) over
//!   `date (request-target) content-length content-type x-content-sha256` — `host` is not
//!   required. The certificate must chain, through the intermediates sent, to a CA the emulator
//!   was told to trust (`EmulatorConfig::trusted_instance_cas`, `kiln emulator
//!   --trust-instance-ca`), verified as [`super::cert_chain`] says (every issuer a CA allowed to
//!   sign certificates, path lengths, validity on the token clock), and name the `keyId`'s
//!   tenancy (`opc-tenant:` in its subject) and an instance (`opc-instance:`, or an instance
//!   OCID as its common name). The answer is `{"token": …}`, bound to `publicKey`.
//! - `POST /v1/authentication/refresh` (operation `RefreshSecurityToken`): `{"currentToken": …}`,
//!   signed with that very token (`ST$…`) and its session key, answered with a new token for the
//!   same session and key — until the session's end (`sess_exp`). An expired token cannot be
//!   refreshed (401), as on OCI, where `oci session authenticate` is then the way back.
//!
//! Failures are 401 `NotAuthenticated` (400 `InvalidParameter` for a body that is not what the
//! endpoint takes), with the reason and never a token in the message.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::Utc;
use rsa::pkcs8::DecodePublicKey;
use rsa::RsaPublicKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use x509_cert::der::Decode;
use x509_cert::Certificate;

use super::api::{self, Reply};
use super::auth::RequestHead;
use super::body;
use super::cert_chain;
use super::server::Shared;
use super::tokens::Principal;

/// The largest federation or refresh body (a certificate chain is a few KB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The operation of an auth service path, if it is one.
pub fn operation(method: &str, path: &str) -> Option<&'static str> {
    match (method, path) {
        ("POST", "/v1/x509") => Some("X509Federation"),
        ("POST", "/v1/authentication/refresh") => Some("RefreshSecurityToken"),
        _ => None,
    }
}

fn not_authenticated(reason: impl Into<String>) -> Reply {
    api::error(
        401,
        "NotAuthenticated",
        format!(
            "The required information to complete authentication was not provided or was incorrect: {}",
            reason.into()
        ),
    )
}

fn invalid(reason: impl Into<String>) -> Reply {
    api::error(400, "InvalidParameter", reason.into())
}

/// Serve `op`; `None` = drop the connection (the body broke off).
pub(super) async fn handle(
    shared: &Shared,
    op: &'static str,
    head: &RequestHead<'_>,
    incoming: hyper::body::Incoming,
) -> Option<Reply> {
    let declared = (head.header)("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    match op {
        "X509Federation" => {
            let params = match super::auth::signature_params(head) {
                Ok(p) => p,
                Err(r) => return Some(not_authenticated(r)),
            };
            let key_id = params.get("keyId").cloned().unwrap_or_default();
            let Some((tenancy, algorithm, fingerprint)) = parse_fed_key_id(&key_id) else {
                return Some(not_authenticated(
                    "the federation endpoint takes a keyId `<tenancy>/fed-x509-sha256/<fingerprint>`",
                ));
            };
            let body = match body::read_capped(incoming, declared, BODY_LIMIT).await {
                Ok(b) => b,
                Err(body::BodyError::TooLarge { limit }) => {
                    return Some(api::error(
                        413,
                        "RequestEntityTooLarge",
                        format!("The request body is larger than {limit} bytes"),
                    ))
                }
                Err(body::BodyError::Broken) => return None,
            };
            Some(
                federate(shared, head, &body, &tenancy, algorithm, &fingerprint)
                    .unwrap_or_else(|r| r),
            )
        }
        _ => {
            let verified = match shared.verifier.verify_head_at(head, Utc::now()) {
                Ok(v) => v,
                Err(r) => return Some(not_authenticated(r)),
            };
            let Some(accepted) = verified.token().cloned() else {
                return Some(not_authenticated(
                    "a session is refreshed with a request signed with its token (keyId `ST$…`)",
                ));
            };
            let body = match body::read_capped(incoming, declared, BODY_LIMIT).await {
                Ok(b) => b,
                Err(body::BodyError::TooLarge { limit }) => {
                    return Some(api::error(
                        413,
                        "RequestEntityTooLarge",
                        format!("The request body is larger than {limit} bytes"),
                    ))
                }
                Err(body::BodyError::Broken) => return None,
            };
            if let Err(r) = verified.check_body(&body) {
                return Some(not_authenticated(r));
            }
            let current = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["currentToken"].as_str().map(str::to_string));
            let Some(current) = current else {
                return Some(invalid("the body must be `{\"currentToken\": \"…\"}`"));
            };
            let signed_with = (head.header)("authorization")
                .and_then(|a| super::auth::parse_params(a.strip_prefix("Signature ")?).ok())
                .and_then(|p| p.get("keyId").cloned())
                .unwrap_or_default();
            if signed_with.strip_prefix("ST$") != Some(current.as_str()) {
                return Some(not_authenticated(
                    "`currentToken` is not the token the request is signed with",
                ));
            }
            Some(match shared.issuer.reissue(&accepted) {
                Ok(token) => Reply::json(200, &json!({ "token": token })),
                Err(r) => not_authenticated(r),
            })
        }
    }
}

/// `<tenancy>/fed-x509-sha256/<fp>` (SHA-256) or `<tenancy>/fed-x509/<fp>` (SHA-1).
fn parse_fed_key_id(key_id: &str) -> Option<(String, &'static str, String)> {
    for (marker, alg) in [("/fed-x509-sha256/", "SHA256"), ("/fed-x509/", "SHA1")] {
        if let Some((tenancy, fp)) = key_id.split_once(marker) {
            if !tenancy.is_empty() && !fp.is_empty() {
                return Some((tenancy.to_string(), alg, fp.to_ascii_lowercase()));
            }
        }
    }
    None
}

fn fingerprint(der: &[u8], algorithm: &str) -> String {
    let digest: Vec<u8> = match algorithm {
        "SHA1" => sha1::Sha1::digest(der).to_vec(),
        _ => Sha256::digest(der).to_vec(),
    };
    crate::x509_subject::hex_pairs(&digest)
}

fn federate(
    shared: &Shared,
    head: &RequestHead<'_>,
    body: &[u8],
    tenancy: &str,
    algorithm: &str,
    key_fingerprint: &str,
) -> Result<Reply, Reply> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|_| invalid("the body is not a JSON object"))?;
    let der = |v: &Value, field: &str| -> Result<Vec<u8>, Reply> {
        v.as_str()
            .and_then(|s| B64.decode(s.trim()).ok())
            .ok_or_else(|| invalid(format!("`{field}` must be base64 DER")))
    };
    let cert = |bytes: &[u8], field: &str| {
        Certificate::from_der(bytes)
            .map_err(|_| invalid(format!("`{field}` is not an X.509 certificate")))
    };
    let leaf_der = der(&doc["certificate"], "certificate")?;
    let leaf = cert(&leaf_der, "certificate")?;
    let mut intermediates = Vec::new();
    if let Some(list) = doc["intermediateCertificates"].as_array() {
        for c in list {
            intermediates.push(cert(
                &der(c, "intermediateCertificates")?,
                "intermediateCertificates",
            )?);
        }
    }
    let session_key = RsaPublicKey::from_public_key_der(&der(&doc["publicKey"], "publicKey")?)
        .map_err(|_| invalid("`publicKey` is not an RSA public key (SubjectPublicKeyInfo DER)"))?;
    if let Some(alg) = doc["fingerprintAlgorithm"].as_str() {
        if alg != algorithm {
            return Err(invalid(format!(
                "`fingerprintAlgorithm` is `{alg}` but the keyId's fingerprint is {algorithm}"
            )));
        }
    }
    if fingerprint(&leaf_der, algorithm) != key_fingerprint {
        return Err(not_authenticated(
            "the keyId's fingerprint is not the certificate's",
        ));
    }
    let named = crate::x509_subject::tenancy(&leaf);
    if named.as_deref() != Some(tenancy) {
        return Err(not_authenticated(
            "the certificate does not name the keyId's tenancy",
        ));
    }
    cert_chain::verify(
        &leaf,
        &intermediates,
        &shared.instance_cas,
        shared.issuer.now(),
    )
    .map_err(not_authenticated)?;
    let leaf_key = cert_chain::public_key(&leaf)
        .ok_or_else(|| not_authenticated("the certificate's key is not an RSA key"))?;
    shared
        .verifier
        .verify_head_with_key(head, Utc::now(), &leaf_key, false)
        .and_then(|v| v.check_body(body))
        .map_err(not_authenticated)?;
    let instance = crate::x509_subject::prefixed(&leaf, "opc-instance:")
        .or_else(|| {
            crate::x509_subject::common_name(&leaf).filter(|cn| cn.starts_with("ocid1.instance."))
        })
        .ok_or_else(|| {
            not_authenticated(
                "the certificate names no instance (`opc-instance:` or an instance OCID as its common name)",
            )
        })?;
    let token = shared.issuer.issue(
        &Principal::Instance {
            tenancy: tenancy.to_string(),
            instance,
        },
        &session_key,
        shared.issuer.lifetime,
    );
    Ok(Reply::json(200, &json!({ "token": token })))
}
