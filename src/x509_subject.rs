//! Reading what OCI writes into an instance certificate's subject: the tenancy
//! (`opc-tenant:…`, or `opc-identity:…` on older certificates), the instance (`opc-instance:…`)
//! and the common name; and a certificate's fingerprint as OCI spells it (hex pairs joined by
//! `:`). Shared by the instance-principal signer (`oci::auth::instance`) and the emulator's
//! federation endpoint, which must not depend on each other. A leaf: it knows nothing of kiln.

use sha2::{Digest, Sha256};
use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
use x509_cert::Certificate;

/// The common name's object identifier.
const CN: &str = "2.5.4.3";

/// The subject's attributes whose value is a string: (object identifier, value), in order.
fn strings(cert: &Certificate) -> impl Iterator<Item = (String, String)> + '_ {
    cert.tbs_certificate.subject.0.iter().flat_map(|rdn| {
        rdn.0.iter().filter_map(|atv| {
            let v = &atv.value;
            let value = v
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    v.decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .or_else(|_| {
                    v.decode_as::<Ia5StringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .ok()?;
            Some((atv.oid.to_string(), value))
        })
    })
}

/// The rest of the first subject value that starts with `prefix` (`opc-instance:`).
pub fn prefixed(cert: &Certificate, prefix: &str) -> Option<String> {
    strings(cert).find_map(|(_, v)| v.strip_prefix(prefix).map(str::to_string))
}

/// The tenancy the certificate names (`opc-tenant:`, else `opc-identity:`).
pub fn tenancy(cert: &Certificate) -> Option<String> {
    prefixed(cert, "opc-tenant:").or_else(|| prefixed(cert, "opc-identity:"))
}

/// The subject's common name.
pub fn common_name(cert: &Certificate) -> Option<String> {
    strings(cert).find_map(|(oid, v)| (oid == CN).then_some(v))
}

/// A digest as lowercase hex pairs joined by `:` (how OCI writes fingerprints).
pub fn hex_pairs(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// SHA-256 of a certificate's DER as hex pairs (the `fed-x509-sha256` keyId of Oracle's Go SDK).
pub fn sha256_fingerprint(der: &[u8]) -> String {
    hex_pairs(&Sha256::digest(der))
}
