//! Path validation of an instance certificate's chain, for the auth service's `/v1/x509`
//! federation ([`super::federation`]): the leaf, through the intermediates the instance sent, to a
//! CA the emulator trusts. Oracle does not publish its auth service's checks; what a verifier of
//! an X.509 chain owes its users is RFC 5280 §6.1, which Go's `crypto/x509.Certificate.Verify`
//! (what Oracle's Go services are built on) and OpenSSL both enforce, and this is that subset:
//!
//! - every certificate of the path, the trusted root included, is valid at `now` (the emulator's
//!   token clock): notBefore ≤ now ≤ notAfter (§6.1.3 (a)(2); Go checks roots too);
//! - every issuer is a CA: BasicConstraints present with cA TRUE (§6.1.4 (k)) and, since an
//!   issuer must be allowed to sign certificates, KeyUsage present with keyCertSign (§6.1.4 (n),
//!   §4.2.1.3; OCI's CAs carry both) — so an instance's own certificate (CA:false) signs nothing;
//! - an issuer's pathLenConstraint bounds the CA certificates below it in the path (§6.1.4 (l),
//!   (m); §4.2.1.9), each counted (stricter than the RFC only for a self-issued intermediate,
//!   which OCI's chains do not have);
//! - each signature verifies with its issuer's key, names chained (subject = issuer).
//!
//! The leaf's own subject (tenancy and instance) is checked by the caller.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier as _;
use rsa::RsaPublicKey;
use sha2::Sha256;
use x509_cert::der::Encode;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::Certificate;

/// `sha256WithRSAEncryption`.
const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";

/// A certificate's RSA key.
pub(super) fn public_key(cert: &Certificate) -> Option<RsaPublicKey> {
    let der = cert.tbs_certificate.subject_public_key_info.to_der().ok()?;
    RsaPublicKey::from_public_key_der(&der).ok()
}

/// The subject, for messages.
fn subject(cert: &Certificate) -> String {
    format!("`{}`", cert.tbs_certificate.subject)
}

/// Whether `cert` is valid at `now`; the reason if not.
fn check_validity(cert: &Certificate, now: DateTime<Utc>) -> Result<(), String> {
    let v = &cert.tbs_certificate.validity;
    let at: SystemTime = now.into();
    if v.not_before.to_system_time() <= at && at <= v.not_after.to_system_time() {
        return Ok(());
    }
    Err(format!(
        "the chain's certificate {} is not valid at {} (valid from {} to {})",
        subject(cert),
        now.format("%Y-%m-%dT%H:%M:%SZ"),
        v.not_before,
        v.not_after
    ))
}

/// Whether `issuer` signed `cert` (RSA-SHA256, names chained).
fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject
        || cert.signature_algorithm.oid.to_string() != SHA256_WITH_RSA
    {
        return false;
    }
    let (Some(key), Ok(tbs), Some(sig)) = (
        public_key(issuer),
        cert.tbs_certificate.to_der(),
        cert.signature.as_bytes(),
    ) else {
        return false;
    };
    let Ok(sig) = Signature::try_from(sig) else {
        return false;
    };
    VerifyingKey::<Sha256>::new(key).verify(&tbs, &sig).is_ok()
}

/// Whether `ca` may issue a certificate with `below` CA certificates under it in the path (0
/// for the leaf's own issuer), valid at `now`.
fn check_issuer(ca: &Certificate, below: usize, now: DateTime<Utc>) -> Result<(), String> {
    check_validity(ca, now)?;
    let tbs = &ca.tbs_certificate;
    let constraints = match tbs.get::<BasicConstraints>() {
        Ok(Some((_, bc))) if bc.ca => bc,
        Ok(_) => {
            return Err(format!(
                "{} signed a certificate of the chain but is not a CA (BasicConstraints CA:true)",
                subject(ca)
            ))
        }
        Err(_) => return Err(format!("{}'s BasicConstraints do not decode", subject(ca))),
    };
    match tbs.get::<KeyUsage>() {
        Ok(Some((_, usage))) if usage.key_cert_sign() => {}
        Ok(_) => {
            return Err(format!(
                "{} signed a certificate of the chain but its KeyUsage lacks keyCertSign",
                subject(ca)
            ))
        }
        Err(_) => return Err(format!("{}'s KeyUsage does not decode", subject(ca))),
    }
    if let Some(limit) = constraints.path_len_constraint {
        if below > usize::from(limit) {
            return Err(format!(
                "{} allows {limit} CA certificate(s) below it (pathLenConstraint) but the chain has {below}",
                subject(ca)
            ));
        }
    }
    Ok(())
}

/// Whether `leaf` chains to one of `trusted` through `intermediates`, every certificate of the
/// path valid at `now` and every issuer allowed to issue what it signed; the reason if not.
pub(super) fn verify(
    leaf: &Certificate,
    intermediates: &[Certificate],
    trusted: &[Certificate],
    now: DateTime<Utc>,
) -> Result<(), String> {
    check_validity(leaf, now)?;
    let mut current = leaf;
    // `below`: the CA certificates between `current` and the leaf. Each intermediate is used at
    // most once, then a trusted CA must follow: a loop among intermediates ends.
    for below in 0..=intermediates.len() {
        if let Some(ca) = trusted.iter().find(|ca| signed_by(current, ca)) {
            return check_issuer(ca, below, now);
        }
        let Some(next) = intermediates.iter().find(|i| signed_by(current, i)) else {
            break;
        };
        check_issuer(next, below, now)?;
        current = next;
    }
    Err("the certificate does not chain to a CA this service trusts".into())
}
