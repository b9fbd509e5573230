//! How kiln proves who it is to OCI: the four methods of Oracle's CLI (`--auth`, `OCI_CLI_AUTH`,
//! `[provider] auth`), minus interactive login.
//!
//! | method | key that signs requests | `keyId` | where it comes from | renewed |
//! |---|---|---|---|---|
//! | `api_key` | the profile's `key_file` | `tenancy/user/fingerprint` | the OCI config profile | never needed |
//! | `security_token` | the profile's `key_file` | `ST$<token>` | the profile's `security_token_file` (`oci session authenticate`) | [`session`]: refreshed at the auth service before it expires, written back to the file |
//! | `resource_principal` | `OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM` | `ST$<RPST>` | the `OCI_RESOURCE_PRINCIPAL_*` environment, version 2.2 ([`resource`]) | re-read when given as files |
//! | `instance_principal` | a session key kiln makes | `ST$<token>` | the instance metadata service and the auth service's X.509 federation ([`instance`]) | federated again (certificates re-read) before expiry and after a 401 |
//!
//! Which method: `--auth`, else `OCI_CLI_AUTH`, else `[provider] auth`, else the profile's own:
//! `security_token` when it names a `security_token_file` (as a profile written by
//! `oci session authenticate` does), `api_key` otherwise.
//!
//! The auth service is `https://auth.<region>.<realm domain>`; `OCI_SDK_AUTH_CLIENT_REGION_URL`
//! (the variable Oracle's Go SDK reads) replaces it, for a private realm or a test. The metadata
//! service is `http://169.254.169.254/opc/v2`; `OCI_METADATA_BASE_URL` (the variable Oracle's Python
//! SDK reads) replaces it.
//!
//! [`Credentials`] hands the [`super::Client`] a signing key per request and, after a 401, a new
//! one when its method can get one; the client then retries once. Tokens, keys and pass phrases
//! never appear in a message, a log line or a `Debug` output.

pub mod instance;
pub mod resource;
pub mod session;
pub mod token;

use std::sync::Arc;

use super::keys::SigningKey;
use super::net::Network;
use super::signer;

pub use token::Token;

/// The variable that chooses the method when `--auth` does not.
pub const AUTH_ENV: &str = "OCI_CLI_AUTH";
/// Replaces `https://auth.<region>.<domain>` (federation and session refresh).
pub const AUTH_URL_ENV: &str = "OCI_SDK_AUTH_CLIENT_REGION_URL";
/// Replaces `http://169.254.169.254/opc/v2`.
pub const METADATA_URL_ENV: &str = "OCI_METADATA_BASE_URL";

/// An authentication method, named as Oracle's CLI names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    ApiKey,
    SecurityToken,
    ResourcePrincipal,
    InstancePrincipal,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 4] = [
        AuthMethod::ApiKey,
        AuthMethod::SecurityToken,
        AuthMethod::ResourcePrincipal,
        AuthMethod::InstancePrincipal,
    ];
    pub const NAMES: [&'static str; 4] = [
        "api_key",
        "security_token",
        "resource_principal",
        "instance_principal",
    ];

    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
            AuthMethod::SecurityToken => "security_token",
            AuthMethod::ResourcePrincipal => "resource_principal",
            AuthMethod::InstancePrincipal => "instance_principal",
        }
    }

    pub fn parse(s: &str) -> Option<AuthMethod> {
        AuthMethod::ALL.into_iter().find(|m| m.name() == s)
    }
}

impl std::fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AuthMethod::parse(s).ok_or_else(|| {
            format!(
                "`{s}` is not an auth method (use {})",
                AuthMethod::NAMES.join(", ")
            )
        })
    }
}

/// Where the method was chosen, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chosen {
    Flag,
    Env,
    Manifest,
    /// Nothing chose: the profile decides.
    Profile,
}

/// `--auth`, else `OCI_CLI_AUTH`, else the manifest's `auth`; `None` when none of them chose.
pub fn resolve_method(
    flag: Option<AuthMethod>,
    env: &dyn Fn(&str) -> Option<String>,
    manifest: Option<AuthMethod>,
) -> Result<Option<(AuthMethod, Chosen)>, AuthError> {
    if let Some(m) = flag {
        return Ok(Some((m, Chosen::Flag)));
    }
    if let Some(v) = env(AUTH_ENV).map(|v| v.trim().to_string()) {
        if !v.is_empty() {
            return match AuthMethod::parse(&v) {
                Some(m) => Ok(Some((m, Chosen::Env))),
                None => Err(AuthError::UnknownMethod { value: v }),
            };
        }
    }
    Ok(manifest.map(|m| (m, Chosen::Manifest)))
}

/// The auth service's base URL for `region`: `OCI_SDK_AUTH_CLIENT_REGION_URL`, else
/// `https://auth.<region>.<domain>`.
pub fn auth_service_url(env: &dyn Fn(&str) -> Option<String>, region: &str) -> String {
    match env(AUTH_URL_ENV).filter(|v| !v.trim().is_empty()) {
        Some(v) => v.trim().trim_end_matches('/').to_string(),
        None => format!("https://auth.{region}.{}", crate::region::domain(region)),
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AuthError {
    #[error("`OCI_CLI_AUTH` is `{value}`, which is not an auth method")]
    #[diagnostic(
        code(kiln::oci::auth_method),
        help("use one of api_key, security_token, resource_principal, instance_principal")
    )]
    UnknownMethod { value: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(Box<super::config::ConfigError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Resource(#[from] resource::ResourceError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Instance(#[from] instance::InstanceError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Session(#[from] session::SessionError),
}

impl From<super::config::ConfigError> for AuthError {
    fn from(e: super::config::ConfigError) -> Self {
        AuthError::Config(Box::new(e))
    }
}

/// What signs kiln's requests. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Credentials {
    inner: Arc<Inner>,
}

#[derive(Debug)]
enum Inner {
    Static(Arc<SigningKey>),
    Session(Box<session::SessionToken>),
    Resource(Box<resource::ResourcePrincipal>),
    Instance(Box<instance::InstancePrincipal>),
}

impl Credentials {
    /// A fixed key: an API key (or any key the caller manages).
    pub fn api_key(key: SigningKey) -> Credentials {
        Credentials {
            inner: Arc::new(Inner::Static(Arc::new(key))),
        }
    }

    pub fn session(s: session::SessionToken) -> Credentials {
        Credentials {
            inner: Arc::new(Inner::Session(Box::new(s))),
        }
    }

    pub fn resource(r: resource::ResourcePrincipal) -> Credentials {
        Credentials {
            inner: Arc::new(Inner::Resource(Box::new(r))),
        }
    }

    pub fn instance(i: instance::InstancePrincipal) -> Credentials {
        Credentials {
            inner: Arc::new(Inner::Instance(Box::new(i))),
        }
    }

    pub fn method(&self) -> AuthMethod {
        match &*self.inner {
            Inner::Static(k) if k.key_id.starts_with("ST$") => AuthMethod::SecurityToken,
            Inner::Static(_) => AuthMethod::ApiKey,
            Inner::Session(_) => AuthMethod::SecurityToken,
            Inner::Resource(_) => AuthMethod::ResourcePrincipal,
            Inner::Instance(_) => AuthMethod::InstancePrincipal,
        }
    }

    /// The tenancy these credentials act in, where they name it: an API key's id
    /// (`<tenancy>/<user>/<fingerprint>`), an instance principal's certificate. `None` for a
    /// session token or a resource principal (their tenancy is in a token kiln does not read).
    pub fn tenancy(&self) -> Option<String> {
        match &*self.inner {
            Inner::Static(k) => k
                .key_id
                .split('/')
                .next()
                .filter(|t| t.starts_with("ocid1.tenancy."))
                .map(str::to_string),
            Inner::Instance(i) => Some(i.tenancy().to_string()),
            Inner::Session(_) | Inner::Resource(_) => None,
        }
    }

    /// The key to sign the next request with, renewed first when its token is about to expire.
    /// `Err` is a message naming the method (never a secret).
    pub async fn signing_key(&self) -> Result<Arc<SigningKey>, String> {
        match &*self.inner {
            Inner::Static(k) => Ok(k.clone()),
            Inner::Session(s) => s.signing_key().await,
            Inner::Resource(r) => r.signing_key().await,
            Inner::Instance(i) => i.signing_key().await,
        }
    }

    /// After a 401 to a request signed with `used`: whether a different key is now ready (the
    /// request is then retried once).
    pub async fn after_unauthorized(&self, used: &SigningKey) -> bool {
        match &*self.inner {
            Inner::Static(_) => false,
            Inner::Session(s) => s.after_unauthorized(used).await,
            Inner::Resource(r) => r.after_unauthorized(used).await,
            Inner::Instance(i) => i.after_unauthorized(used).await,
        }
    }

    /// The help for a 401/403: what kiln authenticated with and what to check.
    pub fn auth_help(&self) -> String {
        match &*self.inner {
            Inner::Static(k) if k.key_id.starts_with("ST$") => {
                "kiln signed with a session token (auth: security_token); it may have expired: run `oci session authenticate`".to_string()
            }
            Inner::Static(_) => {
                "check the profile's user, tenancy, fingerprint and key, and the clock of this machine"
                    .to_string()
            }
            Inner::Session(s) => s.auth_help(),
            Inner::Resource(r) => r.auth_help(),
            Inner::Instance(i) => i.auth_help(),
        }
    }
}

/// An answer of the auth service (federation, refresh).
#[derive(Debug)]
pub(crate) struct AuthReply {
    pub status: u16,
    pub body: Vec<u8>,
    pub opc_request_id: Option<String>,
}

impl AuthReply {
    /// `code: message` of an OCI error body, or the start of the body.
    pub fn error_text(&self) -> String {
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            code: Option<String>,
            message: Option<String>,
        }
        let mut s = match serde_json::from_slice::<ErrorBody>(&self.body) {
            Ok(ErrorBody {
                code: Some(c),
                message,
            }) => format!("{} {c}: {}", self.status, message.unwrap_or_default()),
            _ => format!(
                "{} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        };
        if let Some(id) = &self.opc_request_id {
            s.push_str(&format!(" (opc-request-id: {id})"));
        }
        s
    }

    /// The `token` of a `{"token": …}` answer.
    pub fn token(&self) -> Result<Token, String> {
        #[derive(serde::Deserialize)]
        struct TokenBody {
            token: String,
        }
        let body: TokenBody = serde_json::from_slice(&self.body)
            .map_err(|_| "the auth service's answer has no `token`".to_string())?;
        Token::parse(&body.token)
            .map_err(|e| format!("the token the auth service returned is unreadable: {e}"))
    }
}

/// POST a JSON body to the auth service, signed with `key`; `with_host` signs the `host` header
/// too (the federation endpoint is signed without it, as Oracle's SDKs do).
pub(crate) async fn auth_post(
    http: &reqwest::Client,
    url: &str,
    key: &SigningKey,
    body: Vec<u8>,
    with_host: bool,
) -> Result<AuthReply, String> {
    let parsed = url::Url::parse(url).map_err(|_| format!("`{url}` is not a URL"))?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return Err(format!("`{url}` has no host")),
    };
    let path_and_query = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let date = signer::http_date_now();
    let parts = signer::RequestParts {
        method: "POST",
        path_and_query: &path_and_query,
        host: &host,
        date: &date,
        body: &body,
        content_type: "application/json",
        exclude_body: false,
    };
    let signed = if with_host {
        signer::sign(key, &parts)
    } else {
        signer::sign_without_host(key, &parts)
    };
    let mut req = http.post(url).header("accept", "application/json").header(
        "opc-request-id",
        uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
    );
    for (k, v) in &signed.headers {
        req = req.header(*k, v);
    }
    let resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| format!("cannot reach the auth service at {url}: {}", chain(&e)))?;
    let status = resp.status().as_u16();
    let opc_request_id = resp
        .headers()
        .get("opc-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp
        .bytes()
        .await
        .map_err(|e| {
            format!(
                "the auth service at {url} broke off its answer: {}",
                chain(&e)
            )
        })?
        .to_vec();
    Ok(AuthReply {
        status,
        body,
        opc_request_id,
    })
}

/// An error and its sources, on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A client for the auth service: the network's proxies and roots, bounded time.
pub(crate) fn auth_http(network: &Network) -> reqwest::Client {
    network
        .apply(
            reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .connect_timeout(std::time::Duration::from_secs(10))
                .user_agent(format!("kiln/{}", env!("CARGO_PKG_VERSION"))),
        )
        .build()
        .expect("the HTTP client builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flag_then_environment_then_manifest() {
        let e = env(&[("OCI_CLI_AUTH", "instance_principal")]);
        assert_eq!(
            resolve_method(
                Some(AuthMethod::ResourcePrincipal),
                &e,
                Some(AuthMethod::ApiKey)
            )
            .unwrap(),
            Some((AuthMethod::ResourcePrincipal, Chosen::Flag))
        );
        assert_eq!(
            resolve_method(None, &e, Some(AuthMethod::ApiKey)).unwrap(),
            Some((AuthMethod::InstancePrincipal, Chosen::Env))
        );
        assert_eq!(
            resolve_method(
                None,
                &env(&[("OCI_CLI_AUTH", " ")]),
                Some(AuthMethod::ApiKey)
            )
            .unwrap(),
            Some((AuthMethod::ApiKey, Chosen::Manifest))
        );
        assert_eq!(resolve_method(None, &env(&[]), None).unwrap(), None);
        let bad = resolve_method(None, &env(&[("OCI_CLI_AUTH", "password")]), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            bad,
            "`OCI_CLI_AUTH` is `password`, which is not an auth method"
        );
        for m in AuthMethod::ALL {
            assert_eq!(m.name().parse::<AuthMethod>(), Ok(m));
        }
        assert!("apikey".parse::<AuthMethod>().is_err());
    }

    #[test]
    fn auth_service_url_is_the_regions_unless_overridden() {
        assert_eq!(
            auth_service_url(&env(&[]), "us-ashburn-1"),
            "https://auth.us-ashburn-1.oraclecloud.com"
        );
        assert_eq!(
            auth_service_url(&env(&[]), "us-langley-1"),
            "https://auth.us-langley-1.oraclegovcloud.com"
        );
        assert_eq!(
            auth_service_url(
                &env(&[("OCI_SDK_AUTH_CLIENT_REGION_URL", "http://127.0.0.1:9/")]),
                "us-ashburn-1"
            ),
            "http://127.0.0.1:9"
        );
    }
}
