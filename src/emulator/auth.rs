//! The emulator's own signature verifier (independent of the client's signer, so a mistake on one
//! side cannot be mirrored on the other). It rebuilds the draft-cavage signing string from the
//! raw, undecoded request target and the headers as they arrived.
//!
//! It runs in two stages, so that nothing is spent on the body of a request that is not
//! authentic:
//! 1. [`Verifier::verify_head_at`], before the body is read, checks everything the headers can
//!    prove: the `Authorization: Signature …` parameters (in any order); a trusted `keyId`
//!    (`tenancy/user/fingerprint`); the required signed headers per method (GET/HEAD/DELETE:
//!    a date, `(request-target)`, `host`; POST/PUT/PATCH also `content-length`, `content-type`,
//!    `x-content-sha256`, except Object Storage PutObject); the date within ±5 minutes; and the
//!    RSA-SHA256 signature. The date checked is the one that was signed: `x-date` when `x-date`
//!    is in the signed headers list, else `date` (which must then be signed) — an unsigned
//!    `x-date` added to a stale request changes nothing.
//! 2. [`HeadVerified::check_body`], once the body is read, checks it against the signed
//!    `x-content-sha256` and `content-length`.
//!
//! A `keyId` of `ST$<token>` is a principal's (session token, resource or instance principal):
//! the token must be one the emulator issued and not expired ([`super::tokens`]), and the
//! request must be signed by the private half of the token's `jwk`. The federation endpoint's
//! `keyId` (`<tenancy>/fed-x509-sha256/<fingerprint>`) names a key that only its body holds;
//! [`Verifier::verify_head_with_key`] checks such a request once [`super::federation`] has found
//! the key.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;
use rsa::RsaPublicKey;
use sha2::{Digest, Sha256};

use super::tokens::{Accepted, Issuer};

/// A key the emulator trusts.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    /// `tenancy/user/fingerprint`.
    pub key_id: String,
    pub public_key: RsaPublicKey,
}

/// Allowed clock skew.
pub const MAX_SKEW_SECONDS: i64 = 300;

/// What the header stage looks at: everything of a request but its body.
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// Path and query exactly as received.
    pub target: &'a str,
    /// Header lookup, case-insensitive.
    pub header: &'a (dyn Fn(&str) -> Option<String> + Sync),
    /// Whether the body headers must be signed (POST/PUT/PATCH except Object Storage PutObject,
    /// which Oracle's SDK signs with `date (request-target) host` only).
    pub body_signed: bool,
}

/// A whole request, for verifying both stages at once.
pub struct SignedRequest<'a> {
    pub head: RequestHead<'a>,
    pub body: &'a [u8],
}

/// A request whose headers verified; its body is still to be checked against what was signed.
#[must_use = "the body is not checked until `check_body` is called"]
#[derive(Debug)]
pub struct HeadVerified {
    key_id: String,
    /// The security token of an `ST$` keyId.
    token: Option<Accepted>,
    /// The signed `x-content-sha256` (base64), when it was signed.
    sha256: Option<String>,
    /// The signed `content-length`, when it was signed.
    content_length: Option<String>,
}

impl HeadVerified {
    /// The accepted security token, when the request was signed with one.
    pub fn token(&self) -> Option<&Accepted> {
        self.token.as_ref()
    }

    /// The body stage: the body must match the signed hash and length. Returns the `keyId` (for
    /// a security token, `tenancy/principal`).
    pub fn check_body(self, body: &[u8]) -> Result<String, String> {
        if let Some(sha) = &self.sha256 {
            if *sha != B64.encode(Sha256::digest(body)) {
                return Err("x-content-sha256 does not match the body".into());
            }
        }
        if let Some(len) = &self.content_length {
            if len.trim().parse::<usize>().ok() != Some(body.len()) {
                return Err("content-length does not match the body".into());
            }
        }
        Ok(self.key_id)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Verifier {
    keys: HashMap<String, RsaPublicKey>,
    issuer: Arc<Issuer>,
}

impl Verifier {
    pub fn new(keys: &[TrustedKey]) -> Verifier {
        Verifier::with_issuer(keys, Arc::new(Issuer::default()))
    }

    /// Trusting `keys`, and the security tokens of `issuer`.
    pub fn with_issuer(keys: &[TrustedKey], issuer: Arc<Issuer>) -> Verifier {
        Verifier {
            keys: keys
                .iter()
                .map(|k| (k.key_id.clone(), k.public_key.clone()))
                .collect(),
            issuer,
        }
    }

    /// Both stages at `now`. `Err` says why (the reason is safe to show: it holds no secret).
    pub fn verify_at(&self, req: &SignedRequest<'_>, now: DateTime<Utc>) -> Result<String, String> {
        self.verify_head_at(&req.head, now)?.check_body(req.body)
    }

    /// The header stage at `now`: everything but the body. `Err` says why (no secret in it).
    pub fn verify_head_at(
        &self,
        req: &RequestHead<'_>,
        now: DateTime<Utc>,
    ) -> Result<HeadVerified, String> {
        let params = signature_params(req)?;
        let key_id = params.get("keyId").ok_or("no keyId")?;
        // A session token configured as a trusted key (`kiln emulator --oci-config` with a
        // session profile) is taken as it is; any other `ST$` keyId must be a token issued here.
        if let Some(token) = key_id
            .strip_prefix("ST$")
            .filter(|_| !self.keys.contains_key(key_id))
        {
            let accepted = self.issuer.verify(token)?;
            let key = accepted.public_key.clone();
            let mut v = check_signature(req, &params, &key, now, true)?;
            v.key_id = accepted.principal.clone();
            v.token = Some(accepted);
            return Ok(v);
        }
        let key = self.keys.get(key_id).ok_or_else(|| {
            if key_id.len() > 200 {
                "unknown keyId".to_string()
            } else {
                format!("unknown keyId `{key_id}`")
            }
        })?;
        check_signature(req, &params, key, now, true)
    }

    /// The header stage for a request whose key the caller found (the federation endpoint's:
    /// the certificate in its body). `host` need not be signed when `require_host` is false.
    pub fn verify_head_with_key(
        &self,
        req: &RequestHead<'_>,
        now: DateTime<Utc>,
        key: &RsaPublicKey,
        require_host: bool,
    ) -> Result<HeadVerified, String> {
        let params = signature_params(req)?;
        check_signature(req, &params, key, now, require_host)
    }
}

/// The `Signature` parameters of the Authorization header, with algorithm and version checked.
pub fn signature_params(req: &RequestHead<'_>) -> Result<HashMap<String, String>, String> {
    let auth = (req.header)("authorization").ok_or("missing Authorization header")?;
    let params = auth
        .strip_prefix("Signature ")
        .ok_or("the Authorization scheme is not `Signature`")?;
    let params = parse_params(params)?;
    params.get("keyId").ok_or("no keyId")?;
    params.get("signature").ok_or("no signature")?;
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
    Ok(params)
}

/// Everything the headers can prove, with `key`.
fn check_signature(
    req: &RequestHead<'_>,
    params: &HashMap<String, String>,
    key: &RsaPublicKey,
    now: DateTime<Utc>,
    require_host: bool,
) -> Result<HeadVerified, String> {
    {
        let key_id = params.get("keyId").ok_or("no keyId")?;
        let signature = params.get("signature").ok_or("no signature")?;
        let headers: Vec<String> = params
            .get("headers")
            .ok_or("no headers list")?
            .split(' ')
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let signed = |name: &str| headers.iter().any(|h| h == name);
        let method = req.method.to_ascii_lowercase();
        let mut required = vec!["(request-target)"];
        if require_host {
            required.push("host");
        }
        if req.body_signed && matches!(method.as_str(), "post" | "put" | "patch") {
            required.extend(["content-length", "content-type", "x-content-sha256"]);
        }
        for r in &required {
            if !signed(r) {
                return Err(format!("`{r}` is not signed"));
            }
        }
        // The date window applies to the date that was signed, never to an unsigned one.
        let date_header = if signed("x-date") {
            "x-date"
        } else if signed("date") {
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
        Ok(HeadVerified {
            key_id: key_id.clone(),
            token: None,
            sha256: signed("x-content-sha256")
                .then(|| (req.header)("x-content-sha256"))
                .flatten(),
            content_length: signed("content-length")
                .then(|| (req.header)("content-length"))
                .flatten(),
        })
    }
}

/// `k="v",k="v"` in any order; values may contain commas inside the quotes.
pub(crate) fn parse_params(s: &str) -> Result<HashMap<String, String>, String> {
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
