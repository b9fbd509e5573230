//! The emulator's own signature verifier (independent of the client's signer, so a mistake on one
//! side cannot be mirrored on the other). It rebuilds the draft-cavage signing string from the
//! raw, undecoded request target and the headers as they arrived, and checks:
//! - the `Authorization: Signature …` parameters, in any order;
//! - a trusted `keyId` (`tenancy/user/fingerprint`);
//! - the required signed headers per method (GET/HEAD/DELETE: date (request-target) host;
//!   POST/PUT/PATCH also content-length content-type x-content-sha256, except Object Storage
//!   PutObject), `x-date` accepted for `date`;
//! - body hash and length; the RSA-SHA256 signature;
//! - the signed date within ±5 minutes: `x-date` when `x-date` is in the signed headers list, else
//!   `date` (which must then be signed), so an unsigned fresh `x-date` added to a stale request
//!   changes nothing.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;
use rsa::RsaPublicKey;
use sha2::{Digest, Sha256};

/// A key the emulator trusts.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    /// `tenancy/user/fingerprint`.
    pub key_id: String,
    pub public_key: RsaPublicKey,
}

/// Allowed clock skew.
pub const MAX_SKEW_SECONDS: i64 = 300;

/// The parts of a request the verifier looks at.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// Path and query exactly as received.
    pub target: &'a str,
    /// Header lookup, case-insensitive.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    pub body: &'a [u8],
    /// Whether the body headers must be signed (POST/PUT/PATCH except Object Storage PutObject,
    /// which Oracle's SDK signs with `date (request-target) host` only).
    pub body_signed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Verifier {
    keys: HashMap<String, RsaPublicKey>,
}

impl Verifier {
    pub fn new(keys: &[TrustedKey]) -> Verifier {
        Verifier {
            keys: keys
                .iter()
                .map(|k| (k.key_id.clone(), k.public_key.clone()))
                .collect(),
        }
    }

    /// Verify at `now`. `Err` says why (the reason is safe to show: it holds no secret).
    pub fn verify_at(&self, req: &SignedRequest<'_>, now: DateTime<Utc>) -> Result<String, String> {
        let auth = (req.header)("authorization").ok_or("missing Authorization header")?;
        let params = auth
            .strip_prefix("Signature ")
            .ok_or("the Authorization scheme is not `Signature`")?;
        let params = parse_params(params)?;
        let key_id = params.get("keyId").ok_or("no keyId")?;
        let signature = params.get("signature").ok_or("no signature")?;
        if let Some(alg) = params.get("algorithm") {
            if alg != "rsa-sha256" {
                return Err(format!("unsupported algorithm `{alg}`"));
            }
        }
        if let Some(v) = params.get("version") {
            if v != "1" {
                return Err(format!("unsupported signature version `{v}`"));
            }
        }
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| format!("unknown keyId `{key_id}`"))?;
        let headers: Vec<String> = params
            .get("headers")
            .ok_or("no headers list")?
            .split(' ')
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let method = req.method.to_ascii_lowercase();
        let mut required = vec!["(request-target)", "host"];
        if req.body_signed && matches!(method.as_str(), "post" | "put" | "patch") {
            required.extend(["content-length", "content-type", "x-content-sha256"]);
        }
        for r in &required {
            if !headers.iter().any(|h| h == r) {
                return Err(format!("`{r}` is not signed"));
            }
        }
        // The date window applies to the date that was signed, never to an unsigned one.
        let date_header = if headers.iter().any(|h| h == "x-date") {
            "x-date"
        } else if headers.iter().any(|h| h == "date") {
            "date"
        } else {
            return Err("neither `date` nor `x-date` is signed".into());
        };
        let mut lines = Vec::with_capacity(headers.len());
        for h in &headers {
            let value = if h == "(request-target)" {
                format!("{method} {}", req.target)
            } else {
                (req.header)(h).ok_or_else(|| format!("signed header `{h}` is missing"))?
            };
            lines.push(format!("{h}: {value}"));
        }
        // Body checks.
        if let Some(sha) = (req.header)("x-content-sha256") {
            if headers.iter().any(|h| h == "x-content-sha256")
                && sha != B64.encode(Sha256::digest(req.body))
            {
                return Err("x-content-sha256 does not match the body".into());
            }
        }
        if let Some(len) = (req.header)("content-length") {
            if headers.iter().any(|h| h == "content-length")
                && len.trim().parse::<usize>().ok() != Some(req.body.len())
            {
                return Err("content-length does not match the body".into());
            }
        }
        // Date window: `x-date` when it is signed, else `date`.
        let date = (req.header)(date_header).ok_or("no date header")?;
        let when =
            httpdate::parse_http_date(&date).map_err(|_| format!("cannot parse date `{date}`"))?;
        let when: DateTime<Utc> = when.into();
        if (now - when).num_seconds().abs() > MAX_SKEW_SECONDS {
            return Err(format!(
                "`{date_header}` `{date}` is more than 5 minutes from the server's clock"
            ));
        }
        let sig = B64
            .decode(signature)
            .map_err(|_| "the signature is not base64")?;
        let sig = Signature::try_from(sig.as_slice()).map_err(|_| "malformed signature")?;
        VerifyingKey::<Sha256>::new(key.clone())
            .verify(lines.join("\n").as_bytes(), &sig)
            .map_err(|_| "the signature does not verify".to_string())?;
        Ok(key_id.clone())
    }
}

/// `k="v",k="v"` in any order; values may contain commas inside the quotes.
fn parse_params(s: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("malformed Signature parameters")?;
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let after = after
            .strip_prefix('"')
            .ok_or("Signature parameter values must be quoted")?;
        let end = after.find('"').ok_or("unterminated Signature parameter")?;
        out.insert(key, after[..end].to_string());
        rest = after[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    Ok(out)
}
