//! One arm per [`Action`]: start and stop, update, move to another compartment, replace
//! (destroy then create, or create before destroy with the predecessor deposed), and the dispatch.
//! Creates are in `create`, destroys and If-Match'ed mutations in `guard`.

use chrono::Utc;
use serde_json::Value;

use crate::oci::models::{InstanceAction, UpdateImageDetails, UpdateInstanceDetails};
use crate::oci::wait::WaitOptions;
use crate::oci::{MutationOptions, OciError};
use crate::plan::{Action, Change, Kind};
use crate::state::{Deposed, ResourceState};

use super::ctx::{label, state_kind, to_json, Ctx};
use super::execute::NodeError;
use super::guard::Sent;

impl Ctx {
    async fn power(
        &self,
        c: &Change,
        action: InstanceAction,
        target: &str,
    ) -> Result<(), NodeError> {
        let id = self
            .id_of(&c.address)
            .await
            .ok_or_else(|| self.invalid(c, "no instance id in state"))?;
        let (etag, seen) = self.if_match(c).await?;
        // Done once the instance is in (or on its way to) the target state: a lost answer or
        // someone else's start/stop did it already.
        let heading = match action {
            InstanceAction::Start => ["RUNNING", "STARTING"],
            _ => ["STOPPED", "STOPPING"],
        };
        self.guarded(
            c,
            &id,
            etag,
            seen,
            |body| {
                body.get("lifecycleState")
                    .and_then(Value::as_str)
                    .is_some_and(|s| heading.contains(&s))
            },
            |etag| {
                let id = id.clone();
                async move {
                    self.at(&id)
                        .instance_action(
                            &id,
                            action,
                            None,
                            &MutationOptions::if_match(etag.as_deref()),
                        )
                        .await
                        .map(|_| ())
                }
            },
        )
        .await?;
        self.progress
            .step(&label(c), &format!("waiting for {target}"));
        let r = self
            .wait_for(
                c,
                &id,
                &[target],
                &["TERMINATING", "TERMINATED"],
                crate::oci::wait::WaitOptions::new(self.timeouts.instance),
            )
            .await
            .map_err(|e| self.oci(&c.address, e))?;
        self.store_read(c, &id, r.body, r.etag, None).await
    }

    async fn update(&self, c: &Change) -> Result<(), NodeError> {
        let id =
            c.id.clone()
                .ok_or_else(|| self.invalid(c, "update without an id"))?;
        let mut body = self.resolve_text(&c.address, c.request.as_ref()).await?;
        // The primary VNIC's settings go to the VNIC (UpdateVnic), the boot volume's to the
        // volume (UpdateBootVolume, UpdateBootVolumeKmsKey), after the instance's own.
        let vnic = body
            .as_object_mut()
            .and_then(|m| m.remove(crate::plan::diff::VNIC_UPDATE));
        let volume = body
            .as_object_mut()
            .and_then(|m| m.remove(crate::plan::diff::BOOT_VOLUME_UPDATE));
        // An image's shapes and capabilities: their own calls, after the image's own update.
        let (shapes, caps) = super::image_caps::take(&mut body);
        let others = vnic.is_some() || volume.is_some() || shapes.is_some() || caps.is_some();
        if body.as_object().is_none_or(|m| !m.is_empty()) || !others {
            let (etag, seen) = self.if_match(c).await?;
            self.update_with(c, &id, body, etag, seen).await?;
        }
        if shapes.is_some() || caps.is_some() {
            self.apply_image_caps(c, &id, shapes, caps).await?;
        }
        if let Some(details) = vnic {
            self.update_primary_vnic(c, &id, details).await?;
        }
        match volume {
            Some(details) => self.update_boot_volume(c, &id, details).await,
            None => Ok(()),
        }
    }

    /// UpdateInstance / UpdateImage with `body`, guarded by `etag`; records the answer.
    pub(super) async fn update_with(
        &self,
        c: &Change,
        id: &str,
        body: Value,
        etag: Option<String>,
        seen: Option<String>,
    ) -> Result<(), NodeError> {
        let wanted = body.clone();
        let sent = self
            .guarded(
                c,
                id,
                etag,
                seen,
                // Done when the resource already has every value sent (a lost answer).
                |live| crate::plan::diff::update_applied(live, &wanted),
                |etag| {
                    let body = body.clone();
                    async move {
                        let opts = MutationOptions::if_match(etag.as_deref());
                        match c.kind {
                            Kind::Instance => {
                                let d: UpdateInstanceDetails = serde_json::from_value(body)
                                    .map_err(|e| decode_error("UpdateInstance", e))?;
                                self.at(id)
                                    .update_instance(id, &d, &opts)
                                    .await
                                    .map(|r| (to_json(r.body), r.etag))
                            }
                            Kind::Image => {
                                let d: UpdateImageDetails = serde_json::from_value(body)
                                    .map_err(|e| decode_error("UpdateImage", e))?;
                                self.at(id)
                                    .update_image(id, &d, &opts)
                                    .await
                                    .map(|r| (to_json(r.body), r.etag))
                            }
                        }
                    }
                },
            )
            .await?;
        match sent {
            Sent::Answered((body, etag)) => self.store_read(c, id, body, etag, None).await,
            Sent::AlreadyDone => self.refresh_record(c, id).await,
        }
    }

    async fn move_compartment(&self, c: &Change) -> Result<(), NodeError> {
        let id =
            c.id.clone()
                .ok_or_else(|| self.invalid(c, "move without an id"))?;
        let target = c
            .request
            .as_ref()
            .and_then(|r| r.top_str("compartmentId"))
            .unwrap_or_default()
            .to_string();
        let (etag, seen) = self.if_match(c).await?;
        let sent = self
            .guarded(
                c,
                &id,
                etag,
                seen,
                |live| live.get("compartmentId").and_then(Value::as_str) == Some(target.as_str()),
                |etag| {
                    let (id, target) = (id.clone(), target.clone());
                    async move {
                        let opts = MutationOptions::if_match(etag.as_deref());
                        match c.kind {
                            Kind::Instance => {
                                self.at(&id)
                                    .change_instance_compartment(&id, &target, &opts)
                                    .await
                            }
                            Kind::Image => {
                                self.at(&id)
                                    .change_image_compartment(&id, &target, &opts)
                                    .await
                            }
                        }
                    }
                },
            )
            .await?;
        if let Sent::Answered(r) = sent {
            if let Some(wr) = r.opc_work_request_id {
                self.progress
                    .step(&label(c), "waiting for the work request");
                self.at(&id)
                    .wait_for_work_request(&wr, &WaitOptions::new(self.timeouts.work_request))
                    .await
                    .map_err(|e| self.oci(&c.address, e))?;
            }
        }
        self.refresh_record(c, &id).await?;
        if c.kind == Kind::Instance {
            self.mark_network_stale(&c.address);
        }
        Ok(())
    }

    /// Record `old` as a deposed object of the address (it stops being the address's object).
    async fn depose(&self, c: &Change, old: &str, etag: Option<String>) -> Result<(), NodeError> {
        let kind = state_kind(c.kind);
        let old = old.to_string();
        self.record(&c.address, |st| {
            let r = st
                .resources
                .entry(c.address.clone())
                .or_insert_with(|| ResourceState::new(kind));
            // An image's version number goes with it (it may become a retained version).
            let version = r
                .version()
                .filter(|_| r.id.as_deref() == Some(old.as_str()));
            if r.id.as_deref() == Some(old.as_str()) {
                r.clear_object();
            }
            if !r.deposed.iter().any(|d| d.id == old) {
                r.deposed.push(Deposed {
                    id: old.clone(),
                    etag,
                    compartment: r.compartment.clone(),
                    since: Utc::now(),
                    version,
                });
            }
            r.updated_at = Utc::now();
        })
        .await
    }

    async fn replace(&self, c: &Change) -> Result<(), NodeError> {
        // A create that did not finish in another region: what it made is the object replaced.
        let old = match c.pending {
            true => self.resolve_pending(c).await?,
            false => c.id.clone(),
        };
        let (etag, seen) = self.if_match(c).await?;
        let create_first = c.kind == Kind::Image
            || c.inputs
                .as_ref()
                .and_then(super::ctx::create_before_destroy)
                == Some(true);
        if !create_first {
            if let Some(old) = &old {
                self.destroy(c, old, etag, seen).await?;
            }
            let new = self.create(c).await?;
            // A rollout member: healthy before the next batch starts.
            if c.kind == Kind::Instance {
                self.gate(c, &new).await?;
            }
            return Ok(());
        }
        // Create before destroy: the old object stays in the state (deposed) until it is gone.
        if let Some(old) = &old {
            self.depose(c, old, etag.clone()).await?;
        }
        self.progress
            .step(&label(c), "creating the replacement first");
        let new = self.create(c).await?;
        // A rollout member: the old instance goes only once its successor is healthy (with
        // `on_failure = "rollback"`, a failed successor goes and the old one stays).
        if c.kind == Kind::Instance {
            if let Err(e) = self.gate(c, &new).await {
                if let Some(old) = &old {
                    if let Err(undo) = self.give_back(c, old, &new).await {
                        tracing::warn!(address = %c.address, "rolling back: {undo}");
                    }
                }
                return Err(e);
            }
        }
        match (&old, c.kind) {
            (Some(old), Kind::Instance) => {
                self.progress
                    .step(&label(c), &format!("destroying the old {old}"));
                self.destroy(c, old, etag, seen).await
            }
            // The previous image is deleted by its own (deposed) node once everything launched
            // from it has moved to this one.
            _ => Ok(()),
        }
    }

    pub(super) async fn run(&self, c: &Change) -> Result<(), NodeError> {
        match c.action {
            Action::Create => self.create(c).await.map(|_| ()),
            Action::Update
                if c.kind == Kind::Instance
                    && c.request.as_ref().is_some_and(|r| {
                        r.parse_keys(&["sourceDetails"])
                            .get("sourceDetails")
                            .is_some()
                    }) =>
            {
                self.boot_volume_replace(c).await
            }
            Action::Update => self.update(c).await,
            Action::Move => self.move_compartment(c).await,
            Action::Start => {
                self.power(c, InstanceAction::Start, "RUNNING").await?;
                // A rollout member that was down: healthy before the next batch starts.
                match self.id_of(&c.address).await {
                    Some(id) if self.rollout_of(&c.address).is_some() => self.gate(c, &id).await,
                    _ => Ok(()),
                }
            }
            Action::Stop => self.power(c, InstanceAction::Stop, "STOPPED").await,
            Action::Delete if c.pending => {
                // An unfinished create of an address being destroyed: what it made, if anything.
                let Some(id) = self.resolve_pending(c).await? else {
                    return Ok(());
                };
                let (etag, seen) = self.if_match(c).await?;
                self.destroy(c, &id, etag, seen).await
            }
            Action::Delete => {
                let id =
                    c.id.clone()
                        .ok_or_else(|| self.invalid(c, "delete without an id"))?;
                if c.deposed && c.kind == Kind::Instance && self.rollout_of(&c.address).is_some() {
                    // The predecessor of an interrupted create-first rollout step: it goes only
                    // once its successor is healthy.
                    if let Some(current) = self.id_of(&c.address).await {
                        self.gate(c, &current).await?;
                    }
                }
                if c.deposed {
                    // A previous object: the etag the plan read for it, not the current one's.
                    self.destroy(c, &id, c.etag.clone(), c.observed.clone())
                        .await
                } else {
                    let (etag, seen) = self.if_match(c).await?;
                    self.destroy(c, &id, etag, seen).await
                }
            }
            Action::Replace => self.replace(c).await,
        }
    }
}

/// A planned request body that does not decode into the API's model (a bug, or a saved plan
/// from another version): refused before anything is sent.
pub(super) fn decode_error(operation: &'static str, e: serde_json::Error) -> OciError {
    OciError {
        kind: crate::oci::ErrorKind::Client,
        operation,
        resource: None,
        status: None,
        code: "InvalidRequest".into(),
        message: format!("the planned request does not fit the API: {e}"),
        opc_request_id: None,
        attempts: 0,
        help: None,
    }
}
