//! What kiln reads of an OCI security token (a JWT, `header.payload.signature` in base64url):
//! its times. kiln never checks a token's signature — only the service that issued it can — it
//! only needs to know when to get a new one. The token itself is a credential: [`Token`] never
//! shows it in `Debug`, and no message kiln prints contains it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};

/// How long before its expiry a token is replaced (Oracle's SDKs use 60 s of "jitter"); for a token
/// that lives less than two minutes, half its lifetime.
pub const REFRESH_MARGIN_SECONDS: i64 = 60;

/// A security token and the times in its claims.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    text: String,
    /// `iat`: when it was issued.
    pub issued_at: Option<DateTime<Utc>>,
    /// `exp`: when it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("text", &"***")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a token could not be read (never quotes the token).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("it is not a JWT (three base64url parts separated by `.`)")]
    NotJwt,
    #[error("its claims are not a JSON object")]
    Claims,
    #[error("it has no `exp` claim")]
    NoExpiry,
}

impl Token {
    /// Read the claims of `text` (surrounding whitespace, as token files have, is dropped).
    pub fn parse(text: &str) -> Result<Token, TokenError> {
        let text = text.trim();
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(TokenError::NotJwt);
        }
        let payload = B64URL
            .decode(parts[1].trim_end_matches('='))
            .map_err(|_| TokenError::NotJwt)?;
        let claims: serde_json::Value =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Claims)?;
        let claims = claims.as_object().ok_or(TokenError::Claims)?;
        let time = |name: &str| {
            claims
                .get(name)
                .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
                .and_then(|s| Utc.timestamp_opt(s, 0).single())
        };
        Ok(Token {
            text: text.to_string(),
            issued_at: time("iat"),
            expires_at: time("exp").ok_or(TokenError::NoExpiry)?,
        })
    }

    /// The token itself, for a `keyId` or a request body; never for a message.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// Whether it is time to replace it: within [`REFRESH_MARGIN_SECONDS`] of its expiry (half its
    /// lifetime for a short-lived token), or past it.
    pub fn needs_refresh(&self, now: DateTime<Utc>) -> bool {
        let mut margin = REFRESH_MARGIN_SECONDS;
        if let Some(iat) = self.issued_at {
            let lifetime = (self.expires_at - iat).num_seconds();
            if lifetime > 0 && lifetime < 2 * REFRESH_MARGIN_SECONDS {
                margin = lifetime / 2;
            }
        }
        (self.expires_at - now).num_seconds() <= margin
    }

    /// Whether it has expired by `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.c2ln",
            B64URL.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            B64URL.encode(claims)
        )
    }

    #[test]
    fn reads_times_and_never_shows_the_token() {
        let t = Token::parse(&format!(
            "{}\n",
            jwt(r#"{"iat":1700000000,"exp":1700003600,"sub":"x"}"#)
        ))
        .unwrap();
        assert_eq!(t.expires_at.timestamp(), 1700003600);
        assert_eq!(t.issued_at.unwrap().timestamp(), 1700000000);
        assert!(!t.expose().ends_with('\n'));
        assert!(!format!("{t:?}").contains(t.expose()));
        let at = |s| Utc.timestamp_opt(s, 0).unwrap();
        assert!(!t.needs_refresh(at(1700003539)));
        assert!(t.needs_refresh(at(1700003540)));
        assert!(!t.expired(at(1700003599)));
        assert!(t.expired(at(1700003600)));
        // A 60-second token is replaced after half its life, not before every request.
        let short = Token::parse(&jwt(r#"{"iat":100,"exp":160}"#)).unwrap();
        assert!(!short.needs_refresh(at(129)));
        assert!(short.needs_refresh(at(130)));
    }

    #[test]
    fn refuses_what_is_not_a_token() {
        assert_eq!(Token::parse("abc"), Err(TokenError::NotJwt));
        assert_eq!(Token::parse("a..c"), Err(TokenError::NotJwt));
        assert_eq!(Token::parse("a.!!.c"), Err(TokenError::NotJwt));
        assert_eq!(
            Token::parse(&format!("a.{}.c", B64URL.encode("[1]"))),
            Err(TokenError::Claims)
        );
        assert_eq!(
            Token::parse(&jwt(r#"{"iat":1}"#)),
            Err(TokenError::NoExpiry)
        );
    }
}
