//! The emulator's security tokens: what OCI's auth service issues and every OCI service accepts
//! as `keyId="ST$<token>"`.
//!
//! A token is a JWT signed RS256 by the emulator's own issuer key (made on first use, kept in
//! memory: tokens do not survive a restart). Its claims follow OCI's: `iss`, `aud`, `sub` (the
//! principal), `tenant`, `ptype` (`user`, `instance`, `resource`), `ttype` (`login`, `x509`,
//! `res`), `iat`, `exp`, `jti`, and `jwk` — the public key of the session key pair, as a JSON
//! string — whose private half must sign every request made with the token. Session tokens
//! also carry `sess_exp`, the end of the session past which no refresh is granted; resource
//! principal tokens `res_tenant`, `res_compartment`, `res_id`, `res_type`.
//!
//! Token times are read on the emulator's token clock: the wall clock plus an offset that tests
//! move forward ([`super::RunningEmulator::advance_token_clock`]) to expire tokens without
//! waiting. The signature date check (±5 minutes) stays on the wall clock.
//!
//! The JWT part is a few lines over the `rsa` crate (already the emulator's verifier) rather than
//! a JWT crate: `jsonwebtoken` 9 would bring a second RSA implementation (ring) and keys in
//! another encoding, its later versions need a newer Rust than kiln's or a C crypto build, and
//! its claim checks read the system clock, where the emulator needs its own.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Map, Value};
use sha2::Sha256;

/// OCI's instance principal tokens live 20 minutes; the emulator's, by default, too.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(20 * 60);

/// The issuer: its key, its clock, the lifetime of what it issues.
#[derive(Debug)]
pub struct Issuer {
    key: OnceLock<RsaPrivateKey>,
    offset_ms: AtomicI64,
    /// Lifetime of tokens issued by federation and refresh.
    pub lifetime: Duration,
}

impl Default for Issuer {
    fn default() -> Self {
        Issuer::new(DEFAULT_TOKEN_LIFETIME)
    }
}

/// What kind of principal a token is for.
#[derive(Clone, Debug, PartialEq)]
pub enum Principal {
    /// A user's session (`oci session authenticate`); refreshable until `session_end`.
    Session {
        tenancy: String,
        user: String,
        session_end: DateTime<Utc>,
    },
    /// A resource principal (DevOps build runner, Function): its RPST.
    Resource {
        tenancy: String,
        compartment: String,
        resource_id: String,
        resource_type: String,
    },
    /// An instance, federated with its certificate.
    Instance { tenancy: String, instance: String },
}

/// A token the verifier accepted.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// The session public key (`jwk`).
    pub public_key: RsaPublicKey,
    /// `tenancy/subject`, in the place of an API key's `tenancy/user`.
    pub principal: String,
    pub claims: Map<String, Value>,
}

impl Issuer {
    pub fn new(lifetime: Duration) -> Issuer {
        Issuer {
            key: OnceLock::new(),
            offset_ms: AtomicI64::new(0),
            lifetime,
        }
    }

    fn key(&self) -> &RsaPrivateKey {
        self.key.get_or_init(|| {
            RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("an RSA key is generated")
        })
    }

    /// The token clock: now, plus the offset tests gave it.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Move the token clock forward.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    /// A token for `principal`, bound to `public_key`, valid from the token clock's now for
    /// `lifetime` (a session's, at most until its end).
    pub fn issue(
        &self,
        principal: &Principal,
        public_key: &RsaPublicKey,
        lifetime: Duration,
    ) -> String {
        let iat = self.now();
        let exp = iat + chrono::Duration::from_std(lifetime).unwrap_or_default();
        self.issue_between(principal, public_key, iat, exp)
    }

    /// A token issued at `iat`, expiring at `exp` (a session's, at most at its end).
    pub fn issue_between(
        &self,
        principal: &Principal,
        public_key: &RsaPublicKey,
        iat: DateTime<Utc>,
        mut exp: DateTime<Utc>,
    ) -> String {
        let mut claims = Map::new();
        let mut put = |k: &str, v: Value| {
            claims.insert(k.to_string(), v);
        };
        put("iss", json!("authService.oracle.com"));
        put("aud", json!("oci"));
        match principal {
            Principal::Session {
                tenancy,
                user,
                session_end,
            } => {
                exp = exp.min(*session_end);
                put("sub", json!(user));
                put("tenant", json!(tenancy));
                put("ptype", json!("user"));
                put("ttype", json!("login"));
                put("sess_exp", json!(session_end.timestamp()));
            }
            Principal::Resource {
                tenancy,
                compartment,
                resource_id,
                resource_type,
            } => {
                put("sub", json!(resource_id));
                put("tenant", json!(tenancy));
                put("ptype", json!("resource"));
                put("ttype", json!("res"));
                put("res_tenant", json!(tenancy));
                put("res_compartment", json!(compartment));
                put("res_id", json!(resource_id));
                put("res_type", json!(resource_type));
            }
            Principal::Instance { tenancy, instance } => {
                put("sub", json!(instance));
                put("tenant", json!(tenancy));
                put("ptype", json!("instance"));
                put("ttype", json!("x509"));
                put("opc-instance", json!(instance));
            }
        }
        put("iat", json!(iat.timestamp()));
        put("exp", json!(exp.timestamp()));
        put("jti", json!(uuid::Uuid::new_v4().to_string()));
        put("jwk", json!(jwk(public_key).to_string()));
        self.sign(&Value::Object(claims))
    }

    /// Re-issue `accepted`'s token for the same principal and key (a session refresh).
    pub fn reissue(&self, accepted: &Accepted) -> Result<String, String> {
        let now = self.now();
        let c = &accepted.claims;
        let s = |k: &str| {
            c.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        if s("ptype") != "user" {
            return Err("only a user's session token can be refreshed".into());
        }
        let end = c
            .get("sess_exp")
            .and_then(Value::as_i64)
            .and_then(|t| Utc.timestamp_opt(t, 0).single())
            .ok_or("the token has no session end")?;
        if now >= end {
            return Err(format!(
                "the session ended at {}; authenticate again",
                end.to_rfc3339()
            ));
        }
        Ok(self.issue(
            &Principal::Session {
                tenancy: s("tenant"),
                user: s("sub"),
                session_end: end,
            },
            &accepted.public_key,
            self.lifetime,
        ))
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "kiln-emulator"});
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let sig = SigningKey::<Sha256>::new(self.key().clone()).sign(input.as_bytes());
        format!("{input}.{}", B64URL.encode(sig.to_bytes()))
    }

    /// Check a token: issued here (signature), not expired on the token clock, with a `jwk`.
    /// `Err` says why, never quoting the token.
    pub fn verify(&self, token: &str) -> Result<Accepted, String> {
        let foreign = || "the security token was not issued by this service".to_string();
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err("the security token is not a JWT".into());
        }
        let header: Value = B64URL
            .decode(parts[0])
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("the security token's header is unreadable")?;
        if header["alg"] != "RS256" {
            return Err("the security token is not signed RS256".into());
        }
        // No key yet means nothing was issued yet: don't make one just to refuse.
        let key = self.key.get().ok_or_else(foreign)?;
        let sig = B64URL
            .decode(parts[2])
            .ok()
            .and_then(|b| Signature::try_from(b.as_slice()).ok())
            .ok_or_else(foreign)?;
        VerifyingKey::<Sha256>::new(key.to_public_key())
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .map_err(|_| foreign())?;
        let claims: Map<String, Value> = B64URL
            .decode(parts[1])
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("the security token's claims are unreadable")?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .and_then(|t| Utc.timestamp_opt(t, 0).single())
            .ok_or("the security token has no expiry")?;
        if self.now() >= exp {
            return Err(format!(
                "the security token expired at {}",
                exp.to_rfc3339()
            ));
        }
        let jwk: Value = match claims.get("jwk") {
            Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
            Some(v) => v.clone(),
            None => Value::Null,
        };
        let public_key = from_jwk(&jwk).ok_or("the security token has no usable `jwk`")?;
        let s = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("unknown");
        Ok(Accepted {
            public_key,
            principal: format!("{}/{}", s("tenant"), s("sub")),
            claims,
        })
    }
}

/// An RSA public key as a JWK.
pub fn jwk(key: &RsaPublicKey) -> Value {
    json!({
        "kid": "session",
        "n": B64URL.encode(key.n().to_bytes_be()),
        "e": B64URL.encode(key.e().to_bytes_be()),
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
    })
}

fn from_jwk(v: &Value) -> Option<RsaPublicKey> {
    if v["kty"] != "RSA" {
        return None;
    }
    let n = B64URL.decode(v["n"].as_str()?.trim_end_matches('=')).ok()?;
    let e = B64URL.decode(v["e"].as_str()?.trim_end_matches('=')).ok()?;
    RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RsaPublicKey {
        rsa::pkcs1::DecodeRsaPrivateKey::from_pkcs1_pem(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/signing/keys/pkcs1.pem"),
            )
            .unwrap(),
        )
        .map(|k: RsaPrivateKey| k.to_public_key())
        .unwrap()
    }

    #[test]
    fn issues_verifies_expires_and_refuses_foreign_tokens() {
        let issuer = Issuer::new(Duration::from_secs(600));
        let p = Principal::Instance {
            tenancy: "ocid1.tenancy.oc1..t".into(),
            instance: "ocid1.instance.oc1..i".into(),
        };
        let t = issuer.issue(&p, &key(), Duration::from_secs(600));
        let ok = issuer.verify(&t).unwrap();
        assert_eq!(ok.public_key, key());
        assert_eq!(ok.principal, "ocid1.tenancy.oc1..t/ocid1.instance.oc1..i");
        assert!(
            issuer.reissue(&ok).is_err(),
            "instance tokens are not refreshed"
        );
        // Another issuer's token, and a tampered one.
        let other = Issuer::new(Duration::from_secs(600));
        other.issue(&p, &key(), Duration::from_secs(1));
        assert_eq!(
            other.verify(&t).unwrap_err(),
            "the security token was not issued by this service"
        );
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        parts[1] = B64URL.encode(r#"{"exp":9999999999}"#);
        assert!(issuer.verify(&parts.join(".")).is_err());
        issuer.advance(Duration::from_secs(601));
        let e = issuer.verify(&t).unwrap_err();
        assert!(e.starts_with("the security token expired at "), "{e}");
        assert!(!e.contains(&t));
    }

    #[test]
    fn sessions_refresh_until_their_end() {
        let issuer = Issuer::new(Duration::from_secs(3600));
        let end = issuer.now() + chrono::Duration::seconds(5400);
        let t = issuer.issue(
            &Principal::Session {
                tenancy: "t".into(),
                user: "u".into(),
                session_end: end,
            },
            &key(),
            Duration::from_secs(3600),
        );
        issuer.advance(Duration::from_secs(3000));
        let fresh = issuer.reissue(&issuer.verify(&t).unwrap()).unwrap();
        let claims = issuer.verify(&fresh).unwrap().claims;
        // Capped at the session's end.
        assert_eq!(claims["exp"], json!(end.timestamp()));
        issuer.advance(Duration::from_secs(2500));
        assert!(issuer.verify(&fresh).is_err());
    }
}
