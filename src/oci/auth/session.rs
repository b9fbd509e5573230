//! `security_token`: a session of `oci session authenticate` — the profile's `key_file` signs,
//! the token in its `security_token_file` is the `keyId` (`ST$<token>`).
//!
//! Refresh, as `oci session refresh` does it: `POST <auth service>/v1/authentication/refresh` with
//! `{"currentToken": <token>}`, signed with the current token and the session key; the answer's
//! `{"token": …}` is written back to the token file (atomically, mode 0600), so the next kiln and
//! Oracle's CLI use it too. kiln refreshes a token [`super::token::REFRESH_MARGIN_SECONDS`] before
//! it expires. After a 401 it first reads the file again (another tool may have refreshed it),
//! then tries a refresh; a session that can no longer be refreshed needs
//! `oci session authenticate`, and the error says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use rsa::RsaPrivateKey;

use super::token::Token;
use crate::oci::config::{ConfigError, Profile};
use crate::oci::keys::{self, SigningKey, SECURITY_TOKEN_LIMIT};
use crate::oci::net::Network;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SessionError {
    #[error("profile `{profile}` in `{path}` has no `security_token_file`, which auth `security_token` needs")]
    #[diagnostic(
        code(kiln::oci::security_token),
        help("create a session with `oci session authenticate --profile-name {profile}`, or use another auth method")
    )]
    NoTokenFile { path: PathBuf, profile: String },
    #[error("profile `{profile}`: the session token in `{file}` is unreadable: {reason}")]
    #[diagnostic(
        code(kiln::oci::security_token),
        help("create a new session with `oci session authenticate`")
    )]
    Unreadable {
        profile: String,
        file: PathBuf,
        reason: String,
    },
}

/// A session token that refreshes itself.
pub struct SessionToken {
    profile: String,
    file: PathBuf,
    key: RsaPrivateKey,
    refresh_url: String,
    http: reqwest::Client,
    current: tokio::sync::Mutex<Current>,
}

struct Current {
    token: Token,
    signing: Arc<SigningKey>,
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionToken")
            .field("profile", &self.profile)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

fn read_token(profile: &str, file: &Path) -> Result<Token, SessionError> {
    let text = crate::small_file::read_to_string(file, SECURITY_TOKEN_LIMIT).map_err(|e| {
        SessionError::Unreadable {
            profile: profile.to_string(),
            file: file.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    Token::parse(&text).map_err(|e| SessionError::Unreadable {
        profile: profile.to_string(),
        file: file.to_path_buf(),
        reason: e.to_string(),
    })
}

impl SessionToken {
    /// The session of `profile`; `auth_url` is the auth service's base URL (see
    /// [`super::auth_service_url`]).
    pub fn new(
        profile: &Profile,
        auth_url: &str,
        network: &Network,
    ) -> Result<SessionToken, super::AuthError> {
        let file =
            profile
                .security_token_file
                .clone()
                .ok_or_else(|| SessionError::NoTokenFile {
                    path: profile.config_path.clone(),
                    profile: profile.name.clone(),
                })?;
        let key = keys::load_private_key(
            &profile.key_file,
            profile.pass_phrase.as_ref().map(|p| p.expose()),
        )
        .map_err(|source| ConfigError::Key {
            path: profile.config_path.clone(),
            profile: profile.name.clone(),
            key_file: profile.key_file.clone(),
            source,
        })?;
        let token = read_token(&profile.name, &file)?;
        let signing = Arc::new(SigningKey::new(
            key.clone(),
            format!("ST${}", token.expose()),
        ));
        Ok(SessionToken {
            profile: profile.name.clone(),
            file,
            key,
            refresh_url: format!("{auth_url}/v1/authentication/refresh"),
            http: super::auth_http(network),
            current: tokio::sync::Mutex::new(Current { token, signing }),
        })
    }

    fn adopt(&self, cur: &mut Current, token: Token) {
        cur.signing = Arc::new(SigningKey::new(
            self.key.clone(),
            format!("ST${}", token.expose()),
        ));
        cur.token = token;
    }

    /// The file again, if it now holds another token (e.g. `oci session refresh` ran).
    fn reread(&self, cur: &mut Current) -> bool {
        match read_token(&self.profile, &self.file) {
            Ok(t) if t != cur.token => {
                tracing::debug!(target: "kiln::oci", file = %self.file.display(), "session token file changed; using its token");
                self.adopt(cur, t);
                true
            }
            _ => false,
        }
    }

    /// Exchange the current token for a new one and write it to the file.
    async fn refresh(&self, cur: &mut Current) -> Result<(), String> {
        let body = serde_json::to_vec(&serde_json::json!({"currentToken": cur.token.expose()}))
            .expect("serialises");
        let reply =
            super::auth_post(&self.http, &self.refresh_url, &cur.signing, body, true).await?;
        if !(200..300).contains(&reply.status) {
            return Err(format!(
                "the auth service refused to refresh the session: {}",
                reply.error_text()
            ));
        }
        let token = reply.token()?;
        write_private(&self.file, token.expose().as_bytes()).map_err(|e| {
            format!(
                "the session was refreshed but `{}` could not be written: {e}",
                self.file.display()
            )
        })?;
        tracing::debug!(target: "kiln::oci", file = %self.file.display(), expires_at = %token.expires_at, "session token refreshed");
        self.adopt(cur, token);
        Ok(())
    }

    pub async fn signing_key(&self) -> Result<Arc<SigningKey>, String> {
        let mut cur = self.current.lock().await;
        let now = Utc::now();
        let fresh_in_file =
            |this: &Self, cur: &mut Current| this.reread(cur) && !cur.token.needs_refresh(now);
        if cur.token.needs_refresh(now) && !fresh_in_file(self, &mut cur) {
            if let Err(e) = self.refresh(&mut cur).await {
                if cur.token.expired(Utc::now()) {
                    return Err(format!(
                        "the session token of profile `{}` (auth: security_token, `{}`) expired at {} and could not be refreshed: {e}; run `oci session authenticate`",
                        self.profile,
                        self.file.display(),
                        cur.token.expires_at
                    ));
                }
                tracing::warn!(target: "kiln::oci", "the session token expires at {} and could not be refreshed yet: {e}", cur.token.expires_at);
            }
        }
        Ok(cur.signing.clone())
    }

    pub async fn after_unauthorized(&self, used: &SigningKey) -> bool {
        let mut cur = self.current.lock().await;
        if cur.signing.key_id != used.key_id {
            return true;
        }
        if self.reread(&mut cur) {
            return true;
        }
        match self.refresh(&mut cur).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(target: "kiln::oci", "after a 401: {e}");
                false
            }
        }
    }

    pub fn auth_help(&self) -> String {
        format!(
            "kiln signed with the session token of profile `{}` (auth: security_token, `{}`); it expired or was revoked and could not be refreshed: run `oci session authenticate --profile-name {}`",
            self.profile,
            self.file.display(),
            self.profile
        )
    }
}

/// Replace `path` atomically with `bytes`, readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let mut f = tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new(".")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    std::io::Write::write_all(&mut f, bytes)?;
    f.as_file().sync_all()?;
    f.persist(path).map_err(|e| e.error)?;
    Ok(())
}
