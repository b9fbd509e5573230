//! Retrying, as the client's callers see it: how hard to retry ([`RetryPolicy`], full-jitter
//! backoff), and the notices a waiting request gives ([`RetryNotice`], a family's pace) to whoever
//! observes the retries of a piece of work ([`observe_retries`]: an apply's progress line).

use std::time::Duration;

use rand::Rng;

use super::error::{ErrorKind, OciError};
use crate::failpoint;

/// A request about to wait before its next attempt: what was refused and for how long it waits.
pub struct RetryNotice<'a> {
    /// The answer (or transport failure) that is retried.
    pub error: &'a OciError,
    /// Attempts made so far.
    pub attempt: u32,
    /// The wait before the next one.
    pub delay: Duration,
}

impl std::fmt::Display for RetryNotice<'_> {
    /// `retrying after 409 IncorrectState (instance `ocid1.instance.…q7xa3t` was captured
    /// recently: the next image can be made after …), next attempt in 4.0s`: OCI's message in
    /// full — it says why — with its OCIDs shortened.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.error;
        let status = e.status.map(|s| format!("{s} ")).unwrap_or_default();
        write!(
            f,
            "retrying after {status}{} ({}), next attempt in {:.1}s",
            e.code,
            shorten_ocids(&e.message),
            self.delay.as_secs_f64()
        )
    }
}

/// `text` with every OCID cut to its kind and the last 6 characters of its unique part
/// (`ocid1.instance.…q7xa3t`): enough to tell resources apart on a progress line, where the
/// full 80-odd characters would crowd out the reason.
pub fn shorten_ocids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("ocid1.") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
            .unwrap_or(tail.len());
        let ocid = tail[..end].trim_end_matches('.');
        let parts: Vec<&str> = ocid.split('.').collect();
        let unique = parts.last().copied().unwrap_or_default();
        match (parts.get(1), unique.len()) {
            (Some(kind), n) if parts.len() >= 5 && n > 6 => {
                out.push_str(&format!("ocid1.{kind}.…{}", &unique[n - 6..]));
            }
            _ => out.push_str(ocid),
        }
        rest = &tail[ocid.len()..];
    }
    out.push_str(rest);
    out
}

/// Whoever watches the retries of the requests made inside [`observe_retries`] (a
/// [`RetryNotice`]), and their waits for their family's rate ([`super::budget`]).
pub type RetryObserver = std::sync::Arc<dyn Fn(&dyn std::fmt::Display) + Send + Sync>;

/// A request that waited for its family's pace.
pub(super) struct PaceNotice {
    pub(super) family: &'static str,
    pub(super) rate: f64,
    pub(super) waited: Duration,
}

impl std::fmt::Display for PaceNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "throttled: {} paced at {:.1}/s (waited {:.1}s)",
            self.family,
            self.rate,
            self.waited.as_secs_f64()
        )
    }
}

tokio::task_local! {
    pub(super) static RETRY_OBSERVER: RetryObserver;
}

/// Run `work`, telling `observer` of every retry its requests wait for (an apply shows them on the
/// action's progress line). Retries of requests outside it are told to no one.
pub async fn observe_retries<F: std::future::Future>(
    observer: RetryObserver,
    work: F,
) -> F::Output {
    RETRY_OBSERVER.scope(observer, work).await
}

/// How hard to retry.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all (1 = never retry).
    pub max_attempts: u32,
    /// No retry starts after this much time since the first attempt.
    pub max_elapsed: Duration,
    /// First backoff ceiling; doubles per attempt.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Oracle's SDK default: 8 attempts within 600 s, backoff up to 30 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            max_elapsed: Duration::from_secs(600),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        }
    }

    /// Full jitter: uniform in [0, min(max_delay, base × 2^(attempt-1))].
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.max_delay);
        ceiling.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
    }
}

/// Whether a failed attempt may be tried again (what the module docs of [`super::client`] list).
pub(super) fn retryable(e: &OciError) -> bool {
    if failpoint::aborted() {
        return false;
    }
    match e.kind {
        // A certificate the trusted roots do not vouch for will not change on a retry.
        ErrorKind::Transport if e.message.contains("invalid peer certificate") => false,
        ErrorKind::Transport | ErrorKind::Timeout | ErrorKind::Throttled => true,
        ErrorKind::Server => matches!(e.status, Some(500 | 502 | 503 | 504)),
        ErrorKind::Conflict => matches!(e.code.as_str(), "IncorrectState" | "LockConflict"),
        _ => false,
    }
}
