//! Waiters: poll until a lifecycle state or a work request's end, with a timeout and adaptive
//! polling — fast at first (a quick transition is seen quickly), then backing off ×1.5 up to a cap
//! (a long image capture does not hammer the API). Never a fixed one-second loop.

use std::time::{Duration, Instant};

use super::client::{Client, Response};
use super::error::{ErrorKind, OciError};
use super::models::{Image, Instance, WorkRequest};

/// How to poll.
#[derive(Clone, Debug)]
pub struct WaitOptions {
    pub timeout: Duration,
    pub first_interval: Duration,
    pub max_interval: Duration,
}

impl WaitOptions {
    pub fn new(timeout: Duration) -> Self {
        WaitOptions {
            timeout,
            first_interval: Duration::from_millis(50),
            max_interval: Duration::from_secs(15),
        }
    }
}

fn timeout_error(
    operation: &'static str,
    id: &str,
    what: &str,
    last: &str,
    timeout: Duration,
) -> OciError {
    OciError {
        kind: ErrorKind::Timeout,
        operation,
        resource: Some(id.to_string()),
        status: None,
        code: "WaitTimeout".into(),
        message: format!("still {last} after {}s waiting for {what}", timeout.as_secs()),
        opc_request_id: None,
        attempts: 1,
        help: Some("raise the wait timeout (see `kiln apply --help`) or look at the resource in the console".into()),
    }
}

fn wrong_state(operation: &'static str, id: &str, what: &str, state: &str) -> OciError {
    OciError {
        kind: ErrorKind::Conflict,
        operation,
        resource: Some(id.to_string()),
        status: None,
        code: "UnexpectedState".into(),
        message: format!("reached {state} while waiting for {what}"),
        opc_request_id: None,
        attempts: 1,
        help: None,
    }
}

#[allow(clippy::too_many_arguments)]
async fn poll<'a, T>(
    opts: &WaitOptions,
    operation: &'static str,
    id: &str,
    what: &str,
    mut read: impl FnMut() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<T>, OciError>> + Send + 'a>,
    >,
    state_of: impl Fn(&T) -> String,
    done: impl Fn(&str) -> bool,
    failed: impl Fn(&str) -> bool,
) -> Result<Response<T>, OciError> {
    let start = Instant::now();
    let mut interval = opts.first_interval;
    loop {
        let r = read().await?;
        let state = state_of(&r.body);
        if done(&state) {
            return Ok(r);
        }
        if failed(&state) {
            return Err(wrong_state(operation, id, what, &state));
        }
        if start.elapsed() >= opts.timeout {
            return Err(timeout_error(operation, id, what, &state, opts.timeout));
        }
        tokio::time::sleep(interval.min(opts.timeout.saturating_sub(start.elapsed()))).await;
        interval = interval.mul_f64(1.5).min(opts.max_interval);
    }
}

impl Client {
    /// Wait until the instance is in one of `states`; fails fast on TERMINATED when not awaited.
    pub async fn wait_for_instance(
        &self,
        id: &str,
        states: &[&str],
        opts: &WaitOptions,
    ) -> Result<Response<Instance>, OciError> {
        let what = states.join(" or ");
        poll(
            opts,
            "GetInstance",
            id,
            &what,
            || Box::pin(self.get_instance(id)),
            |i: &Instance| i.lifecycle_state.clone(),
            |s| states.contains(&s),
            |s| {
                matches!(s, "TERMINATED" | "TERMINATING")
                    && !states.iter().any(|x| x.starts_with("TERMINAT"))
            },
        )
        .await
    }

    /// Wait until the instance is TERMINATED (a 404 counts: the record is gone).
    pub async fn wait_for_termination(&self, id: &str, opts: &WaitOptions) -> Result<(), OciError> {
        match self.wait_for_instance(id, &["TERMINATED"], opts).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn wait_for_image(
        &self,
        id: &str,
        states: &[&str],
        opts: &WaitOptions,
    ) -> Result<Response<Image>, OciError> {
        let what = states.join(" or ");
        poll(
            opts,
            "GetImage",
            id,
            &what,
            || Box::pin(self.get_image(id)),
            |i: &Image| i.lifecycle_state.clone(),
            |s| states.contains(&s),
            |s| matches!(s, "DELETED" | "DISABLED") && !states.contains(&s),
        )
        .await
    }

    /// Wait until the work request SUCCEEDED; FAILED or CANCELED is an error carrying its errors.
    pub async fn wait_for_work_request(
        &self,
        id: &str,
        opts: &WaitOptions,
    ) -> Result<Response<WorkRequest>, OciError> {
        let r = poll(
            opts,
            "GetWorkRequest",
            id,
            "SUCCEEDED",
            || Box::pin(self.get_work_request(id)),
            |w: &WorkRequest| w.status.clone(),
            |s| matches!(s, "SUCCEEDED" | "FAILED" | "CANCELED"),
            |_| false,
        )
        .await?;
        if r.body.status == "SUCCEEDED" {
            return Ok(r);
        }
        let errors = self.list_work_request_errors(id).await.unwrap_or_default();
        let mut e = wrong_state("GetWorkRequest", id, "SUCCEEDED", &r.body.status);
        if !errors.is_empty() {
            e.message = format!(
                "{}: {}",
                e.message,
                errors
                    .iter()
                    .map(|x| format!("{}: {}", x.code, x.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        Err(e)
    }
}
