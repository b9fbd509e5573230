//! Waiters: poll until a lifecycle state or a work request's end, with a timeout and adaptive
//! polling — fast at first (a quick transition is seen quickly), then each pause a tenth of the
//! time waited so far, up to a cap (a long image capture does not hammer the API). Never a fixed
//! one-second loop.
//!
//! The pause is proportional to the time already waited, so a transition is seen at most ~10 %
//! (plus one round trip) after it happens, whatever its length: apply's wall time stays within
//! ~1.1× the DAG's critical path (BENCHMARKS.md, scenario 3). The earlier ×1.5 backoff could
//! notice a transition up to 50 % late — on a chain of waits (stop → capture → launch) that is
//! the whole difference between the plan's critical path and the apply. The price is more reads:
//! about 7 per doubling of the wait — 62 for a 60 s launch, 93 for an 8 min capture (one every
//! 15 s past 2.5 min) — where ×1.5 made 18 and 46.

use std::time::{Duration, Instant};

use super::client::{Client, Response};
use super::error::{ErrorKind, OciError};
use super::models::{Image, Instance, WorkRequest};

/// How to poll.
#[derive(Clone, Debug)]
pub struct WaitOptions {
    pub timeout: Duration,
    /// The shortest pause between two reads.
    pub first_interval: Duration,
    /// The longest pause between two reads.
    pub max_interval: Duration,
    /// Each pause is this fraction of the time waited so far (within the two bounds above): the
    /// most a transition can be noticed late, relative to how long it took.
    pub lateness: f64,
    /// Look at once, not when this apply's quickest such transition was still under way
    /// (`watch`, "Learned durations"): for a wait whose transition began before the waiter did,
    /// such as a health gate's wait for RUNNING right after the launch's own wait (which cost
    /// every member of a rollout one launch's length: BENCHMARKS.md section 7).
    pub at_once: bool,
}

impl WaitOptions {
    pub fn new(timeout: Duration) -> Self {
        WaitOptions {
            timeout,
            first_interval: Duration::from_millis(50),
            max_interval: Duration::from_secs(15),
            lateness: 0.1,
            at_once: false,
        }
    }

    /// The same, looking at once (see [`WaitOptions::at_once`]).
    pub fn at_once(self) -> Self {
        WaitOptions {
            at_once: true,
            ..self
        }
    }

    /// The pause before the next read, after `waited` so far.
    pub fn interval(&self, waited: Duration) -> Duration {
        waited.mul_f64(self.lateness.max(0.0)).clamp(
            self.first_interval,
            self.max_interval.max(self.first_interval),
        )
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

// The one poll loop every wait shares: each argument is a different part of what is awaited.
#[allow(clippy::too_many_arguments)]
pub(super) async fn poll<'a, T>(
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
        let waited = start.elapsed();
        tokio::time::sleep(
            opts.interval(waited)
                .min(opts.timeout.saturating_sub(waited)),
        )
        .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The reads a waiter makes (at zero latency) until it sees a transition that took `took`:
    /// (how late it noticed, how many reads).
    fn simulate(opts: &WaitOptions, took: Duration) -> (Duration, usize) {
        let mut t = Duration::ZERO;
        let mut reads = 1;
        while t < took {
            t += opts.interval(t);
            reads += 1;
        }
        (t - took, reads)
    }

    #[test]
    fn pauses_grow_with_the_time_waited_within_bounds() {
        let o = WaitOptions::new(Duration::from_secs(3600));
        assert_eq!(o.interval(Duration::ZERO), Duration::from_millis(50));
        assert_eq!(
            o.interval(Duration::from_millis(200)),
            Duration::from_millis(50)
        );
        assert_eq!(o.interval(Duration::from_secs(10)), Duration::from_secs(1));
        assert_eq!(
            o.interval(Duration::from_secs(3600)),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn a_transition_is_noticed_at_most_a_tenth_of_its_duration_late() {
        let o = WaitOptions::new(Duration::from_secs(7200));
        for ms in [
            1u64, 40, 120, 499, 501, 1_500, 3_000, 24_000, 60_000, 149_000, 480_000, 1_800_000,
        ] {
            let took = Duration::from_millis(ms);
            let (late, _) = simulate(&o, took);
            let bound = took.mul_f64(0.1).clamp(o.first_interval, o.max_interval);
            assert!(
                late <= bound,
                "{took:?}: noticed {late:?} late (bound {bound:?})"
            );
        }
    }

    #[test]
    fn long_waits_do_not_hammer_the_api() {
        let o = WaitOptions::new(Duration::from_secs(7200));
        // A 60 s launch and an 8 min image capture, at OCI's real pace.
        let (_, launch) = simulate(&o, Duration::from_secs(60));
        let (_, capture) = simulate(&o, Duration::from_secs(480));
        assert!(launch <= 65, "{launch} reads for a 60 s launch");
        assert!(capture <= 95, "{capture} reads for an 8 min capture");
    }
}
