//! Guarded mutations: every update, action, move and delete carries the If-Match of a version kiln
//! saw, and a refusal is answered by reading the resource again rather than by guessing.
//!
//! A 412 (or a 409 `IncorrectState` that outlasted the client's retries) happens for three
//! reasons, told apart by one read that waits for the resource to leave a transitional state:
//! - the change is already made — the first attempt landed and its answer was lost, or the
//!   resource got there on its own (a DELETE whose target is TERMINATING, TERMINATED or 404; a
//!   STOP of a STOPPED instance; an update whose values are all there): the node is done;
//! - only the resource's lifecycle moved (a capture kiln started finished, an instance stopped):
//!   everything else is as the plan (or kiln's own last change) saw it, so nobody changed it and
//!   the mutation is sent again with the new etag — a version kiln has now seen;
//! - anything else changed: someone else's change, which is never overwritten
//!   ([`NodeError::ChangedSincePlan`] when kiln sent the plan's etag, [`NodeError::ChangedSinceRead`]
//!   when it sent one this apply read — after its own create or change, which the plan never saw).

use std::future::Future;

use serde_json::Value;

use crate::oci::{ErrorKind, MutationOptions, OciError};
use crate::plan::{observed_digest, Change, Kind};

use super::ctx::{label, Ctx};
use super::execute::NodeError;

/// How a guarded mutation ended.
pub(super) enum Sent<T> {
    /// OCI accepted it and answered.
    Answered(T),
    /// The resource is already as the mutation would make it.
    AlreadyDone,
}

/// Rounds of re-read and resend before a resource that keeps changing is reported.
const ROUNDS: usize = 4;

fn lifecycle(body: &Value) -> &str {
    body.get("lifecycleState")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// States a resource stays in until someone acts on it.
fn settled_states(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Instance => &["RUNNING", "STOPPED", "TERMINATED"],
        Kind::Image => &["AVAILABLE", "DISABLED", "DELETED"],
    }
}

fn gone(body: &Value) -> bool {
    matches!(lifecycle(body), "TERMINATING" | "TERMINATED" | "DELETED")
}

impl Ctx {
    /// The resource once it is in a settled state (`None`: 404).
    async fn settled(
        &self,
        c: &Change,
        id: &str,
    ) -> Result<Option<(Value, Option<String>)>, NodeError> {
        let states = settled_states(c.kind);
        let wait = self.wait(c);
        let r = match c.kind {
            Kind::Instance => self
                .at(id)
                .wait_for_instance(id, states, &wait)
                .await
                .map(|r| (super::ctx::to_json(r.body), r.etag)),
            Kind::Image => self
                .at(id)
                .wait_for_image(id, states, &wait)
                .await
                .map(|r| (super::ctx::to_json(r.body), r.etag)),
        };
        match r {
            Ok(read) => Ok(Some(read)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(self.oci(&c.address, e)),
        }
    }

    /// Send `send(if_match)`; on a refusal, continue from the resource's real state (module doc).
    /// `seen` is the digest of the version `etag` names; `done` says whether a read of the
    /// resource shows the mutation's effect already.
    pub(super) async fn guarded<T, F, Fut>(
        &self,
        c: &Change,
        id: &str,
        mut etag: Option<String>,
        mut seen: Option<String>,
        done: impl Fn(&Value) -> bool,
        send: F,
    ) -> Result<Sent<T>, NodeError>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: Future<Output = Result<T, OciError>>,
    {
        // Whether the first etag sent is the plan's (else a version this apply read: its own
        // create's, or a read after its own change).
        let from_plan = etag.is_some() && etag == c.etag;
        let mut round = 0;
        loop {
            let e = match send(etag.clone()).await {
                Ok(t) => return Ok(Sent::Answered(t)),
                Err(e) => e,
            };
            let refused = e.is_precondition_failed()
                || e.is_not_found()
                || (e.kind == ErrorKind::Conflict && e.code == "IncorrectState");
            if !refused {
                return Err(self.oci(&c.address, e));
            }
            round += 1;
            self.progress.step(
                &label(c),
                &format!("{} {}: reading it again", e.status.unwrap_or(0), e.code),
            );
            let Some((body, new_etag)) = self.settled(c, id).await? else {
                // 404 on the read too: gone, which is done for a delete and an error otherwise.
                return if c.action == crate::plan::Action::Delete
                    || c.action == crate::plan::Action::Replace
                {
                    Ok(Sent::AlreadyDone)
                } else {
                    Err(self.oci(&c.address, e))
                };
            };
            if done(&body) {
                return Ok(Sent::AlreadyDone);
            }
            if e.is_not_found() {
                // The resource is there: the 404 was about something else (permissions).
                return Err(self.oci(&c.address, e));
            }
            let unchanged = seen.as_deref() == Some(observed_digest(&body).as_str());
            if !unchanged || round >= ROUNDS {
                return Err(match from_plan {
                    true => NodeError::ChangedSincePlan {
                        address: c.address.clone(),
                        etag: etag.unwrap_or_default(),
                        source: e,
                    },
                    false => NodeError::ChangedSinceRead {
                        address: c.address.clone(),
                        source: Some(e),
                    },
                });
            }
            tracing::debug!(address = %c.address, "only the lifecycle changed; sending again with the new etag");
            etag = new_etag;
            seen = Some(observed_digest(&body));
        }
    }

    /// Terminate / delete the object `id` of the address (its current one or a deposed one),
    /// guarded by `if_match`; wait until it is gone; then drop it from the state.
    pub(super) async fn destroy(
        &self,
        c: &Change,
        id: &str,
        if_match: Option<String>,
        seen: Option<String>,
    ) -> Result<(), NodeError> {
        let preserve = self
            .state
            .lock()
            .await
            .resources
            .get(&c.address)
            .and_then(|r| {
                r.inputs
                    .get("preserve_boot_volume")
                    .and_then(Value::as_bool)
            });
        self.guarded(c, id, if_match, seen, gone, |etag| async move {
            let opts = MutationOptions::if_match(etag.as_deref());
            match c.kind {
                Kind::Instance => self
                    .at(id)
                    .terminate_instance(id, preserve, None, &opts)
                    .await
                    .map(|_| ()),
                Kind::Image => self.at(id).delete_image(id, &opts).await.map(|_| ()),
            }
        })
        .await?;
        if c.kind == Kind::Instance {
            self.progress.step(&label(c), "waiting for TERMINATED");
            match self
                .wait_for(
                    c,
                    id,
                    &["TERMINATED"],
                    &[],
                    crate::oci::wait::WaitOptions::new(self.timeouts.terminate),
                )
                .await
            {
                Ok(_) => {}
                // Purged already: gone.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(self.oci(&c.address, e)),
            }
        }
        let id = id.to_string();
        self.record(&c.address, |st| {
            if let Some(r) = st.resources.get_mut(&c.address) {
                if r.id.as_deref() == Some(id.as_str()) {
                    r.clear_object();
                }
                r.deposed.retain(|d| d.id != id);
                r.retained.retain(|d| d.id != id);
                if r.is_empty() {
                    st.resources.remove(&c.address);
                }
            }
        })
        .await
    }
}
