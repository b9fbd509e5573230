//! `resource_principal`: the identity OCI gives a DevOps build runner or a Function, handed over
//! in the environment (version 2.2, as Oracle's Python SDK reads it in
//! `resource_principals_signer.py` / `ephemeral_resource_principals_signer.py`):
//!
//! - `OCI_RESOURCE_PRINCIPAL_VERSION` = `2.2` (1.1 and 2.1 fetch tokens from endpoints of the
//!   runtime; kiln does not support them and says so);
//! - `OCI_RESOURCE_PRINCIPAL_RPST`: the resource principal session token, or the absolute path of
//!   a file holding it;
//! - `OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM`: the PEM private key that signs, or the absolute path of a
//!   file holding it;
//! - `OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE` (optional): its pass phrase — a file path too
//!   when the key is given as a file;
//! - `OCI_RESOURCE_PRINCIPAL_REGION`: the region (id or 3-letter code).
//!
//! As in the SDK, a value that is an absolute path is read from that file, and files are read
//! again when the token is about to expire and after a 401 (the runtime replaces them); inline
//! values are used as they are. The `keyId` is `ST$<RPST>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;

use super::token::Token;
use crate::oci::config::Secret;
use crate::oci::keys::{self, KeyError, SigningKey, KEY_FILE_LIMIT, SECURITY_TOKEN_LIMIT};

pub const VERSION: &str = "OCI_RESOURCE_PRINCIPAL_VERSION";
pub const RPST: &str = "OCI_RESOURCE_PRINCIPAL_RPST";
pub const PRIVATE_PEM: &str = "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM";
pub const PASSPHRASE: &str = "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE";
pub const REGION: &str = "OCI_RESOURCE_PRINCIPAL_REGION";

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ResourceError {
    #[error("auth `resource_principal` needs `{var}`, which is not set")]
    #[diagnostic(
        code(kiln::oci::resource_principal),
        help("resource principals are given by OCI to DevOps build runners and Functions as OCI_RESOURCE_PRINCIPAL_VERSION=2.2, OCI_RESOURCE_PRINCIPAL_RPST, OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM and OCI_RESOURCE_PRINCIPAL_REGION; outside such a runtime use another auth method")
    )]
    Missing { var: &'static str },
    #[error("`OCI_RESOURCE_PRINCIPAL_VERSION` is `{version}`; kiln supports resource principals version 2.2")]
    #[diagnostic(
        code(kiln::oci::resource_principal),
        help("versions 1.1 and 2.1 fetch their tokens from endpoints of the runtime, which kiln does not do")
    )]
    Version { version: String },
    #[error("cannot read `{path}` (named by `{var}`): {reason}")]
    #[diagnostic(code(kiln::oci::resource_principal))]
    Unreadable {
        var: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the resource principal session token in `{var}` is unreadable: {reason}")]
    #[diagnostic(code(kiln::oci::resource_principal))]
    Token { var: &'static str, reason: String },
    #[error("the private key in `{var}` could not be used")]
    #[diagnostic(code(kiln::oci::resource_principal))]
    Key {
        var: &'static str,
        #[source]
        #[diagnostic_source]
        source: KeyError,
    },
    #[error("`OCI_RESOURCE_PRINCIPAL_REGION` is `{value}`, which is not a region")]
    #[diagnostic(
        code(kiln::oci::resource_principal),
        help("use a region id such as `us-ashburn-1` or a 3-letter code such as `iad`")
    )]
    Region { value: String },
}

/// An inline value or an absolute file path.
#[derive(Clone, Debug)]
enum Source {
    Inline(Secret),
    File(PathBuf),
}

impl Source {
    fn of(value: String) -> Source {
        if Path::new(&value).is_absolute() {
            Source::File(PathBuf::from(value))
        } else {
            Source::Inline(Secret::new(value))
        }
    }

    fn read(&self, var: &'static str, limit: u64) -> Result<Secret, ResourceError> {
        match self {
            Source::Inline(s) => Ok(s.clone()),
            Source::File(p) => crate::small_file::read_to_string(p, limit)
                .map(Secret::new)
                .map_err(|e| ResourceError::Unreadable {
                    var,
                    path: p.clone(),
                    reason: e.to_string(),
                }),
        }
    }

    fn is_file(&self) -> bool {
        matches!(self, Source::File(_))
    }
}

/// The settings of the environment, before anything is read.
#[derive(Clone, Debug)]
pub struct Settings {
    rpst: Source,
    pem: Source,
    passphrase: Option<Source>,
    /// The region id (`None` when the variable is unset).
    pub region: Option<String>,
}

impl Settings {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ResourceError> {
        let get = |var: &'static str| env(var).filter(|v| !v.trim().is_empty());
        let need = |var: &'static str| get(var).ok_or(ResourceError::Missing { var });
        let version = need(VERSION)?;
        if version.trim() != "2.2" {
            return Err(ResourceError::Version {
                version: version.trim().to_string(),
            });
        }
        let rpst = Source::of(need(RPST)?.trim().to_string());
        let pem = Source::of(need(PRIVATE_PEM)?);
        // The pass phrase is a file exactly when the key is (as the SDK reads them).
        let passphrase = get(PASSPHRASE).map(|p| match pem.is_file() {
            true => Source::File(PathBuf::from(p.trim())),
            false => Source::Inline(Secret::new(p)),
        });
        let region = match get(REGION) {
            None => None,
            Some(r) => Some(
                crate::region::resolve(&r)
                    .map(str::to_string)
                    .or_else(|_| {
                        // A region of a realm kiln's catalogue lacks is used as given.
                        let r = r.trim().to_ascii_lowercase();
                        match r.split('-').count() >= 3 {
                            true => Ok(r),
                            false => Err(ResourceError::Region { value: r }),
                        }
                    })?,
            ),
        };
        Ok(Settings {
            rpst,
            pem,
            passphrase,
            region,
        })
    }

    /// Read the token and the key (from files where they are files).
    fn load(&self) -> Result<(Token, Arc<SigningKey>), ResourceError> {
        let text = self.rpst.read(RPST, SECURITY_TOKEN_LIMIT)?;
        let token = Token::parse(text.expose()).map_err(|e| ResourceError::Token {
            var: RPST,
            reason: e.to_string(),
        })?;
        let pass = match &self.passphrase {
            Some(p) => Some(p.read(PASSPHRASE, KEY_FILE_LIMIT)?),
            None => None,
        };
        let pem = self.pem.read(PRIVATE_PEM, KEY_FILE_LIMIT)?;
        let label = match &self.pem {
            Source::File(p) => p.clone(),
            Source::Inline(_) => PathBuf::from(format!("${PRIVATE_PEM}")),
        };
        let key = keys::parse_private_key(
            &label,
            pem.expose(),
            pass.as_ref()
                .map(|p| p.expose().trim_end_matches(['\n', '\r'])),
        )
        .map_err(|source| ResourceError::Key {
            var: PRIVATE_PEM,
            source,
        })?;
        let signing = Arc::new(SigningKey::new(key, format!("ST${}", token.expose())));
        Ok((token, signing))
    }

    fn uses_files(&self) -> bool {
        self.rpst.is_file() || self.pem.is_file()
    }
}

/// A resource principal.
pub struct ResourcePrincipal {
    settings: Settings,
    current: tokio::sync::Mutex<(Token, Arc<SigningKey>)>,
}

impl std::fmt::Debug for ResourcePrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourcePrincipal")
            .field("region", &self.settings.region)
            .field("from_files", &self.settings.uses_files())
            .finish_non_exhaustive()
    }
}

impl ResourcePrincipal {
    pub fn new(settings: Settings) -> Result<ResourcePrincipal, ResourceError> {
        let current = settings.load()?;
        Ok(ResourcePrincipal {
            settings,
            current: tokio::sync::Mutex::new(current),
        })
    }

    pub fn region(&self) -> Option<&str> {
        self.settings.region.as_deref()
    }

    /// Read the files again; whether they hold another token now.
    fn reload(&self, cur: &mut (Token, Arc<SigningKey>)) -> bool {
        if !self.settings.uses_files() {
            return false;
        }
        match self.settings.load() {
            Ok(next) if next.0 != cur.0 => {
                tracing::debug!(target: "kiln::oci", expires_at = %next.0.expires_at, "resource principal token re-read");
                *cur = next;
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(target: "kiln::oci", "cannot re-read the resource principal: {e}");
                false
            }
        }
    }

    pub async fn signing_key(&self) -> Result<Arc<SigningKey>, String> {
        let mut cur = self.current.lock().await;
        if cur.0.needs_refresh(Utc::now()) {
            self.reload(&mut cur);
        }
        Ok(cur.1.clone())
    }

    pub async fn after_unauthorized(&self, used: &SigningKey) -> bool {
        let mut cur = self.current.lock().await;
        cur.1.key_id != used.key_id || self.reload(&mut cur)
    }

    pub fn auth_help(&self) -> String {
        let how = if self.settings.rpst.is_file() {
            "re-read from its file, and still refused"
        } else {
            "given inline, so kiln cannot renew it"
        };
        format!("kiln signed as a resource principal (auth: resource_principal, the token of OCI_RESOURCE_PRINCIPAL_RPST, {how}); it expired or the principal lacks a policy for this request")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn reads_the_2_2_environment_inline_and_from_files() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!(
            "{}.{}.c2ln",
            b64.encode("{}"),
            b64.encode(r#"{"exp":4102444800,"res_tenant":"t"}"#)
        );
        let pem = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/signing/keys/pkcs1.pem"),
        )
        .unwrap();
        let s = Settings::from_env(&env(vec![
            (VERSION, "2.2".into()),
            (RPST, token.clone()),
            (PRIVATE_PEM, pem.clone()),
            (REGION, "phx".into()),
        ]))
        .unwrap();
        assert_eq!(s.region.as_deref(), Some("us-phoenix-1"));
        let (t, k) = s.load().unwrap();
        assert_eq!(t.expose(), token);
        assert_eq!(k.key_id, format!("ST${token}"));
        assert!(!s.uses_files());
        assert!(!format!("{s:?}").contains(&token));

        let dir = tempfile::tempdir().unwrap();
        let (tf, kf, pf) = (
            dir.path().join("rpst"),
            dir.path().join("key.pem"),
            dir.path().join("pass"),
        );
        std::fs::write(&tf, format!("{token}\n")).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/signing/keys/pkcs8-encrypted.pem"),
            &kf,
        )
        .unwrap();
        std::fs::write(&pf, "kiln-test-pass\n").unwrap();
        let s = Settings::from_env(&env(vec![
            (VERSION, "2.2".into()),
            (RPST, tf.display().to_string()),
            (PRIVATE_PEM, kf.display().to_string()),
            (PASSPHRASE, pf.display().to_string()),
        ]))
        .unwrap();
        assert!(s.uses_files());
        assert_eq!(s.region, None);
        assert_eq!(s.load().unwrap().0.expose(), token);
    }

    #[test]
    fn says_what_is_missing_or_unsupported() {
        let e = |vars| Settings::from_env(&env(vars)).unwrap_err().to_string();
        assert_eq!(
            e(vec![]),
            "auth `resource_principal` needs `OCI_RESOURCE_PRINCIPAL_VERSION`, which is not set"
        );
        assert_eq!(
            e(vec![(VERSION, "1.1".into())]),
            "`OCI_RESOURCE_PRINCIPAL_VERSION` is `1.1`; kiln supports resource principals version 2.2"
        );
        assert_eq!(
            e(vec![(VERSION, "2.2".into()), (RPST, "x".into())]),
            "auth `resource_principal` needs `OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM`, which is not set"
        );
        let s = Settings::from_env(&env(vec![
            (VERSION, "2.2".into()),
            (RPST, "secret-not-a-jwt".into()),
            (PRIVATE_PEM, "/nonexistent/key.pem".into()),
        ]))
        .unwrap();
        let msg = s.load().unwrap_err().to_string();
        assert_eq!(msg, "the resource principal session token in `OCI_RESOURCE_PRINCIPAL_RPST` is unreadable: it is not a JWT (three base64url parts separated by `.`)");
        assert!(!msg.contains("secret-not-a-jwt"));
        assert_eq!(
            e(vec![
                (VERSION, "2.2".into()),
                (RPST, "x".into()),
                (PRIVATE_PEM, "y".into()),
                (REGION, "mars".into())
            ]),
            "`OCI_RESOURCE_PRINCIPAL_REGION` is `mars`, which is not a region"
        );
    }
}
