//! The HTTP layer: signs every request, retries what is safe to retry, and surfaces every
//! response header callers need (`etag`, `opc-request-id`, `opc-next-page`, `opc-work-request-id`).
//!
//! Retries: 429, 500, 502, 503, 504, 409 `IncorrectState`/`LockConflict` and connection errors,
//! with exponential backoff and full jitter, `Retry-After` honoured, bounded in attempts and total
//! time (a 500 "Out of host capacity." is not retried: the place stays full, the caller may try
//! another, see [`ErrorKind::OutOfCapacity`]). POST and PUT keep one `opc-retry-token` across attempts (so a retried create never makes
//! two resources); every attempt gets a new `opc-request-id`. 412 and other 4xx are never retried.
//! A request log at debug level (target `kiln::oci`): method, path, status, duration,
//! opc-request-id — never the Authorization header, keys or bodies.
//!
//! Every attempt first takes a turn in its operation family's budget ([`super::budget`]: requests
//! in flight and a pace, both adapted to 429s); a throttled request is retried through it rather
//! than after a blind backoff.
//!
//! Every request is signed with the key [`Credentials`] hands out at that moment (a token-based
//! method renews its token first when it is about to expire). A 401 to a request signed with a
//! token is answered by asking the credentials for a new one and, when they have it, sending the
//! request once more at once. Proxies and trusted roots come from [`Network`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::auth::Credentials;
use super::budget::{Budgets, Outcome};
use super::error::{injected, kind_of_answer, ErrorKind, OciError};
use super::keys::SigningKey;
use super::net::Network;
use super::signer::{self, RequestParts};
use crate::failpoint;

pub use super::call::{
    encode_query_value, new_retry_token, Call, MutationOptions, Response, API_VERSION,
};
pub use super::retry::{observe_retries, shorten_ocids, RetryNotice, RetryObserver, RetryPolicy};
use super::retry::{retryable, PaceNotice, RETRY_OBSERVER};

/// How to build a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Base URL of the service (`https://iaas.us-ashburn-1.oraclecloud.com`, or an emulator's URL).
    pub endpoint: String,
    pub retry: RetryPolicy,
    /// Per-request timeout (one attempt).
    pub timeout: Duration,
    pub user_agent: String,
    /// Proxies and trusted roots (default: direct, built-in roots).
    pub network: Network,
    /// Requests in flight and their pace, per operation family ([`Budgets`]).
    pub budgets: Budgets,
}

impl ClientOptions {
    pub fn new(endpoint: impl Into<String>) -> ClientOptions {
        ClientOptions {
            endpoint: endpoint.into(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(60),
            user_agent: format!("kiln/{}", env!("CARGO_PKG_VERSION")),
            network: Network::default(),
            budgets: Budgets::default(),
        }
    }
}

/// The OCI client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    host: String,
    auth: Credentials,
    network: Arc<Network>,
    retry: RetryPolicy,
    budgets: Budgets,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// The `host` header of a URL: host, with `:port` when the URL has one.
fn host_of(endpoint: &str) -> String {
    url::Url::parse(endpoint)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_default()
}

fn opc_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string().to_uppercase()
}

impl Client {
    /// A client signing with a fixed key (an API key).
    pub fn new(key: SigningKey, options: ClientOptions) -> Client {
        Client::with_credentials(Credentials::api_key(key), options)
    }

    /// A client signing with `auth` (any method).
    pub fn with_credentials(auth: Credentials, options: ClientOptions) -> Client {
        let endpoint = options.endpoint.trim_end_matches('/').to_string();
        let host = host_of(&endpoint);
        let http = options
            .network
            .apply(
                reqwest::Client::builder()
                    .timeout(options.timeout)
                    .user_agent(options.user_agent)
                    .pool_max_idle_per_host(32),
            )
            .build()
            .expect("the HTTP client builds");
        Client {
            http,
            endpoint,
            host,
            auth,
            network: Arc::new(options.network),
            retry: options.retry,
            budgets: options.budgets,
        }
    }

    /// The budgets of this client's operation families (`--parallelism` is their ceiling).
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// What signs this client's requests.
    pub fn credentials(&self) -> &Credentials {
        &self.auth
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The same identity and retry policy against another service endpoint (e.g. Object Storage).
    pub fn with_endpoint(&self, endpoint: &str) -> Client {
        let mut c = self.clone();
        c.endpoint = endpoint.trim_end_matches('/').to_string();
        c.host = host_of(&c.endpoint);
        c
    }

    /// The same client on a new connection pool (for use from another runtime, e.g. a thread
    /// that releases a lock while the process exits).
    pub fn detached(&self, timeout: Duration, retry: RetryPolicy) -> Client {
        let mut c = self.clone();
        c.http = self
            .network
            .apply(reqwest::Client::builder().timeout(timeout))
            .build()
            .expect("the HTTP client builds");
        c.retry = retry;
        c
    }

    /// Send with signing and retries; decode a JSON body.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        call: Call,
    ) -> Result<Response<T>, OciError> {
        let op = call.operation;
        let resource = call.resource.clone();
        let resp = self.send(call).await?;
        let body: &[u8] = if resp.body.is_empty() {
            b"null"
        } else {
            &resp.body
        };
        let parsed = serde_json::from_slice(body).map_err(|e| OciError {
            kind: ErrorKind::Decode,
            operation: op,
            resource,
            status: Some(resp.status),
            code: "InvalidResponse".into(),
            message: format!("cannot decode the response: {e}"),
            opc_request_id: resp.opc_request_id.clone(),
            attempts: 1,
            help: None,
        })?;
        Ok(resp.map(|_| parsed))
    }

    /// Send with signing and retries; the raw body.
    pub async fn send(&self, mut call: Call) -> Result<Response<Vec<u8>>, OciError> {
        if call.retry_token
            && call.options.retry_token.is_none()
            && matches!(call.method, Method::POST | Method::PUT)
        {
            call.options.retry_token = Some(new_retry_token());
        }
        let mut path_and_query = format!("{}{}", call.prefix, call.path);
        if !call.query.is_empty() {
            path_and_query.push('?');
            path_and_query.push_str(
                &call
                    .query
                    .iter()
                    .map(|(k, v)| format!("{k}={}", encode_query_value(v)))
                    .collect::<Vec<_>>()
                    .join("&"),
            );
        }
        let url = format!("{}{}", self.endpoint, path_and_query);
        let started = Instant::now();
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            let key = match self.auth.signing_key().await {
                Ok(k) => k,
                Err(message) => return Err(self.auth_error(&call, message, attempt)),
            };
            let (ticket, waited) = self.budgets.acquire(call.operation).await;
            if waited >= Duration::from_millis(250) {
                if let Some((_, rate)) = self
                    .budgets
                    .throttled()
                    .into_iter()
                    .find(|(f, _)| *f == call.operation)
                {
                    let notice = PaceNotice {
                        family: call.operation,
                        rate,
                        waited,
                    };
                    let _ = RETRY_OBSERVER.try_with(|observe| observe(&notice));
                }
            }
            let result = self.attempt(&call, &url, &path_and_query, &key).await;
            ticket.done(match &result {
                Ok(_) => Outcome::Success,
                Err((e, after)) if e.kind == ErrorKind::Throttled => Outcome::Throttled(*after),
                Err(_) => Outcome::Other,
            });
            // A token refused: once per call, with new credentials when the method has them.
            if let Err((e, _)) = &result {
                if e.status == Some(401)
                    && !renewed
                    && !failpoint::aborted()
                    && self.auth.after_unauthorized(&key).await
                {
                    renewed = true;
                    tracing::debug!(operation = call.operation, auth = %self.auth.method(), "401: retrying with renewed credentials");
                    continue;
                }
            }
            let (retry, after) = match &result {
                Ok(_) => (false, None),
                Err((e, retry_after)) => (retryable(e), *retry_after),
            };
            if !retry || attempt >= self.retry.max_attempts {
                return result.map_err(|(mut e, _)| {
                    e.attempts = attempt;
                    e
                });
            }
            let throttled = matches!(&result, Err((e, _)) if e.kind == ErrorKind::Throttled);
            let mut delay = if throttled && self.budgets.adaptive() {
                // The family's budget paces the next attempt (and holds a `Retry-After`).
                Duration::ZERO
            } else {
                self.retry.backoff(attempt)
            };
            if let Some(after) = after.filter(|_| !self.budgets.adaptive() || !throttled) {
                delay = delay.max(after);
            }
            if started.elapsed() + delay > self.retry.max_elapsed {
                return result.map_err(|(mut e, _)| {
                    e.attempts = attempt;
                    e
                });
            }
            tracing::debug!(
                operation = call.operation,
                attempt,
                delay_ms = delay.as_millis() as u64,
                "retrying"
            );
            if let Err((e, _)) = &result {
                let notice = RetryNotice {
                    error: e,
                    attempt,
                    delay,
                };
                let _ = RETRY_OBSERVER.try_with(|observe| observe(&notice));
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// The credentials could not give a key: an authentication error of this call.
    fn auth_error(&self, call: &Call, message: String, attempts: u32) -> OciError {
        OciError {
            kind: ErrorKind::Auth,
            operation: call.operation,
            resource: call.resource.clone(),
            status: None,
            code: "NotAuthenticated".into(),
            message,
            opc_request_id: None,
            attempts,
            help: Some(self.auth.auth_help()),
        }
    }

    async fn attempt(
        &self,
        call: &Call,
        url: &str,
        path_and_query: &str,
        key: &SigningKey,
    ) -> Result<Response<Vec<u8>>, (OciError, Option<Duration>)> {
        if let Some(fault) = failpoint::cross_op(failpoint::OCI_REQUEST, call.operation) {
            return Err((injected(call, fault), None));
        }
        let body = call.body.clone().unwrap_or_default();
        let date = signer::http_date_now();
        let content_type = call.content_type.as_deref().unwrap_or("application/json");
        let signed = signer::sign(
            key,
            &RequestParts {
                method: call.method.as_str(),
                path_and_query,
                host: &self.host,
                date: &date,
                body: &body,
                content_type,
                exclude_body: call.exclude_body,
            },
        );
        let request_id = opc_request_id();
        let mut req = self
            .http
            .request(call.method.clone(), url)
            .header("accept", "application/json")
            .header("opc-request-id", &request_id);
        if !matches!(call.method, Method::POST | Method::PUT | Method::PATCH) {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in &signed.headers {
            req = req.header(*k, v);
        }
        if call.exclude_body {
            // The signer left the body headers out; the body still needs its type.
            req = req.header("content-type", content_type);
        }
        for (k, v) in &call.headers {
            req = req.header(*k, v);
        }
        if let Some(m) = &call.options.if_match {
            req = req.header("if-match", m);
        }
        if let Some(t) = &call.options.retry_token {
            req = req.header("opc-retry-token", t);
        }
        if matches!(call.method, Method::POST | Method::PUT | Method::PATCH) {
            req = req.body(body);
        }
        let t0 = Instant::now();
        let transport = |e: reqwest::Error| {
            let timeout = e.is_timeout();
            let err = OciError {
                kind: if timeout {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Transport
                },
                operation: call.operation,
                resource: call.resource.clone(),
                status: None,
                code: if timeout {
                    "Timeout".into()
                } else {
                    "Transport".into()
                },
                message: error_chain(&e),
                opc_request_id: Some(request_id.clone()),
                attempts: 1,
                help: Some(
                    "check the endpoint and your network; kiln retried what was safe to retry"
                        .into(),
                ),
            };
            tracing::debug!(method = %call.method, path = path_and_query, error = %err.message, "request failed");
            (err, None)
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("etag");
        let opc_request_id = header("opc-request-id").or(Some(request_id.clone()));
        let opc_work_request_id = header("opc-work-request-id");
        let opc_next_page = header("opc-next-page");
        let retry_after = header("retry-after")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64);
        let bytes = resp.bytes().await.map_err(transport)?.to_vec();
        if let Some(fault) = failpoint::cross_op(failpoint::OCI_RESPONSE, call.operation) {
            return Err((injected(call, fault), None));
        }
        tracing::debug!(
            method = %call.method,
            path = path_and_query,
            status,
            duration_ms = t0.elapsed().as_millis() as u64,
            opc_request_id = opc_request_id.as_deref().unwrap_or(""),
            "{} {}",
            call.operation,
            status
        );
        if (200..300).contains(&status) {
            return Ok(Response {
                body: bytes,
                status,
                etag,
                opc_request_id,
                opc_work_request_id,
                opc_next_page,
            });
        }
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            code: Option<String>,
            message: Option<String>,
        }
        let parsed: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        let code = parsed
            .as_ref()
            .and_then(|b| b.code.clone())
            .unwrap_or_else(|| format!("HTTP{status}"));
        let message = parsed
            .and_then(|b| b.message)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
        let kind = kind_of_answer(status, &code, &message);
        let help = match kind {
            ErrorKind::PreconditionFailed => Some("the resource changed since its etag was read; read it again (`kiln plan`) and retry".to_string()),
            ErrorKind::Auth => Some(self.auth.auth_help()),
            _ => None,
        };
        Err((
            OciError {
                kind,
                operation: call.operation,
                resource: call.resource.clone(),
                status: Some(status),
                code,
                message,
                opc_request_id,
                attempts: 1,
                help,
            },
            retry_after,
        ))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let p = RetryPolicy::default();
        for attempt in 1..12 {
            assert!(p.backoff(attempt) <= Duration::from_secs(30));
        }
        assert!(p.backoff(1) <= Duration::from_secs(1));
    }

    /// Issue 27: a retry line cut OCI's reason at 80 characters, most of them an OCID.
    #[test]
    fn a_retry_notice_shows_the_whole_reason_with_short_ocids() {
        let id =
            "ocid1.instance.oc1.iad.aaaaaaaa0a9d8f7e6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3q7xa3t";
        let error = OciError {
            kind: ErrorKind::Conflict,
            operation: "CreateImage",
            resource: None,
            status: Some(409),
            code: "IncorrectState".into(),
            message: format!("instance `{id}` was captured recently: the next image can be made after 2026-12-06T22:41:07.123Z"),
            opc_request_id: None,
            attempts: 1,
            help: None,
        };
        let n = RetryNotice {
            error: &error,
            attempt: 1,
            delay: Duration::from_millis(4000),
        };
        assert_eq!(
            n.to_string(),
            "retrying after 409 IncorrectState (instance `ocid1.instance.…q7xa3t` was captured recently: the next image can be made after 2026-12-06T22:41:07.123Z), next attempt in 4.0s"
        );
        assert_eq!(
            shorten_ocids("in ocid1.compartment.oc1..aaaaaaaakilnemulatordev."),
            "in ocid1.compartment.…tordev."
        );
        assert_eq!(shorten_ocids("ocid1.x short"), "ocid1.x short");
    }
}
