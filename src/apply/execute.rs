//! The executor: one arm per [`Action`], each guarded by If-Match, each create made idempotent
//! across crashes with a pending create recorded in state before it is sent.
//!
//! The state is saved after every finished action (atomic, serial + 1), so a crash or Ctrl-C loses
//! nothing. Saves are group commits: an action whose change is already covered by a save that
//! started after it does not write again, so parallel actions share writes instead of queueing
//! one full rewrite each. The first mutation of a resource sends the etag the plan captured; later nodes of the
//! same apply send the etag this apply read last — so an out-of-band change between plan and
//! apply is a 412 that overwrites nothing, and kiln never trips over its own changes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::oci::compute::{ListImages, ListInstances};
use crate::oci::models::{
    CreateImageDetails, InstanceAction, LaunchInstanceDetails, UpdateImageDetails,
    UpdateInstanceDetails,
};
use crate::oci::wait::WaitOptions;
use crate::oci::{Client, MutationOptions, OciError};
use crate::plan::desired::resolve_refs;
use crate::plan::{Action, Change, Kind, Plan};
use crate::state::{
    PendingCreate, ResourceKind, ResourceState, State, StateError, StateLock, StateStore,
};

use super::progress::{Progress, Timer};
use super::walk::{self, Outcome, StopFlag};

/// Per-kind wait limits (defaults suit real OCI: an image capture can take up to 2 hours).
#[derive(Clone, Debug)]
pub struct Timeouts {
    pub instance: Duration,
    pub image: Duration,
    pub terminate: Duration,
    pub work_request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            instance: Duration::from_secs(20 * 60),
            image: Duration::from_secs(2 * 3600),
            terminate: Duration::from_secs(20 * 60),
            work_request: Duration::from_secs(3600),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub parallelism: usize,
    pub timeouts: Timeouts,
}

/// Why a node failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum NodeError {
    #[error("`{address}` changed in OCI since the plan (etag {etag}); run `kiln plan` again")]
    #[diagnostic(
        code(kiln::apply::changed_since_plan),
        help("nothing was overwritten: review the change with `kiln plan`, then apply again")
    )]
    ChangedSincePlan {
        address: String,
        etag: String,
        source: OciError,
    },
    #[error("`{address}`: {source}")]
    #[diagnostic(code(kiln::apply::oci))]
    Oci { address: String, source: OciError },
    #[error("`{address}`: {source}")]
    #[diagnostic(code(kiln::apply::state))]
    State { address: String, source: StateError },
    #[error("`{address}`: {message}")]
    #[diagnostic(code(kiln::apply::invalid))]
    Invalid { address: String, message: String },
}

/// What happened, for the summary and the exit code.
#[derive(Debug, Default)]
pub struct Report {
    pub created: usize,
    pub updated: usize,
    pub replaced: usize,
    pub moved: usize,
    pub started: usize,
    pub stopped: usize,
    pub deleted: usize,
    /// (node label, error)
    pub failed: Vec<(String, String)>,
    /// (node label, the failed node it waited for)
    pub skipped: Vec<(String, String)>,
    pub not_started: Vec<String>,
    pub elapsed: Duration,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && self.not_started.is_empty()
    }

    pub fn summary_line(&self) -> String {
        format!(
            "Apply {}: {} created, {} updated, {} replaced, {} moved, {} started, {} stopped, {} destroyed, {} failed, {} skipped in {}",
            if self.ok() { "complete" } else { "incomplete" },
            self.created,
            self.updated,
            self.replaced,
            self.moved,
            self.started,
            self.stopped,
            self.deleted,
            self.failed.len(),
            self.skipped.len() + self.not_started.len(),
            super::progress::human(self.elapsed)
        )
    }
}

struct Ctx {
    client: Client,
    store: StateStore,
    lock: StateLock,
    state: Mutex<State>,
    /// Changes made to `state` so far, and how many of them are durably saved.
    changed: std::sync::atomic::AtomicU64,
    saved: Mutex<u64>,
    /// Addresses already mutated by this apply (their next mutation uses the etag read since).
    touched: Mutex<HashSet<String>>,
    timeouts: Timeouts,
    progress: Arc<Progress>,
}

fn label(c: &Change) -> String {
    format!("{} {}", c.action.as_str(), c.address)
}

fn digest(body: &Value) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(body).expect("json serialises"),
    ))
}

fn state_kind(k: Kind) -> ResourceKind {
    match k {
        Kind::Instance => ResourceKind::Instance,
        Kind::Image => ResourceKind::Image,
    }
}

impl Ctx {
    fn oci(&self, address: &str, e: OciError) -> NodeError {
        NodeError::Oci {
            address: address.to_string(),
            source: e.with_resource(address),
        }
    }

    /// Apply `f` to the state and return once a save that includes it is durable (serial + 1,
    /// atomic). One save runs at a time; changes made while it runs are saved together by the
    /// next one.
    async fn record(&self, address: &str, f: impl FnOnce(&mut State)) -> Result<(), NodeError> {
        use std::sync::atomic::Ordering;
        let mine = {
            let mut st = self.state.lock().await;
            f(&mut st);
            self.changed.fetch_add(1, Ordering::SeqCst) + 1
        };
        let mut saved = self.saved.lock().await;
        if *saved >= mine {
            return Ok(());
        }
        let (mut snapshot, upto) = {
            let st = self.state.lock().await;
            (st.clone(), self.changed.load(Ordering::SeqCst))
        };
        self.store
            .save(&self.lock, &mut snapshot)
            .await
            .map_err(|source| NodeError::State {
                address: address.to_string(),
                source,
            })?;
        self.state.lock().await.serial = snapshot.serial;
        *saved = upto;
        Ok(())
    }

    async fn id_of(&self, address: &str) -> Option<String> {
        self.state
            .lock()
            .await
            .resources
            .get(address)
            .and_then(|r| r.id.clone())
    }

    async fn resolve(&self, address: &str, v: &Value) -> Result<Value, NodeError> {
        let st = self.state.lock().await;
        let id_of = |a: &str| st.resources.get(a).and_then(|r| r.id.clone());
        resolve_refs(v, &id_of).map_err(|missing| NodeError::Invalid {
            address: address.to_string(),
            message: format!("`{missing}` has no id yet (did its create fail?)"),
        })
    }

    /// The If-Match for a node: the plan's etag for the first mutation of the resource in this
    /// apply, then the etag this apply read last.
    async fn if_match(&self, c: &Change) -> Option<String> {
        let first = self.touched.lock().await.insert(c.address.clone());
        let recorded = self
            .state
            .lock()
            .await
            .resources
            .get(&c.address)
            .and_then(|r| r.etag.clone());
        if first {
            c.etag.clone().or(recorded)
        } else {
            recorded
        }
    }

    fn precondition(&self, c: &Change, etag: &Option<String>, e: OciError) -> NodeError {
        if e.is_precondition_failed() {
            NodeError::ChangedSincePlan {
                address: c.address.clone(),
                etag: etag.clone().unwrap_or_default(),
                source: e,
            }
        } else {
            self.oci(&c.address, e)
        }
    }

    /// Store a fresh read of the resource.
    async fn store_read(
        &self,
        c: &Change,
        id: &str,
        body: Value,
        etag: Option<String>,
        inputs: Option<Map<String, Value>>,
    ) -> Result<(), NodeError> {
        let kind = state_kind(c.kind);
        self.record(&c.address, |st| {
            let r = st
                .resources
                .entry(c.address.clone())
                .or_insert_with(|| ResourceState::new(kind));
            r.kind = kind;
            r.id = Some(id.to_string());
            r.region = crate::oci::region::from_ocid(id).map(str::to_string);
            r.compartment = body
                .get("compartmentId")
                .and_then(Value::as_str)
                .map(str::to_string);
            r.etag = etag;
            r.attributes = body;
            if let Some(i) = inputs {
                r.inputs = i;
            }
            r.pending_create = None;
            r.updated_at = Utc::now();
        })
        .await
    }

    async fn read(&self, c: &Change, id: &str) -> Result<(Value, Option<String>), NodeError> {
        match c.kind {
            Kind::Instance => self
                .client
                .get_instance(id)
                .await
                .map(|r| (serde_json::to_value(r.body).expect("serialises"), r.etag)),
            Kind::Image => self
                .client
                .get_image(id)
                .await
                .map(|r| (serde_json::to_value(r.body).expect("serialises"), r.etag)),
        }
        .map_err(|e| self.oci(&c.address, e))
    }

    async fn refresh_record(&self, c: &Change, id: &str) -> Result<(), NodeError> {
        let (body, etag) = self.read(c, id).await?;
        self.store_read(c, id, body, etag, None).await
    }

    /// Launch / create, idempotent across crashes; returns the new id after it is ready.
    async fn create(&self, c: &Change) -> Result<String, NodeError> {
        let request = c.request.as_ref().ok_or_else(|| NodeError::Invalid {
            address: c.address.clone(),
            message: "the plan has no request for this create".into(),
        })?;
        let body = self.resolve(&c.address, request).await?;
        let inputs = match &c.inputs {
            Some(i) => match self.resolve(&c.address, i).await? {
                Value::Object(m) => Some(m),
                _ => None,
            },
            None => None,
        };
        let request_digest = digest(&body);
        let source_instance = body
            .get("instanceId")
            .and_then(Value::as_str)
            .map(str::to_string);
        let display_name = body
            .get("displayName")
            .and_then(Value::as_str)
            .map(str::to_string);
        let compartment = body
            .get("compartmentId")
            .and_then(Value::as_str)
            .map(str::to_string);
        let pending = self
            .state
            .lock()
            .await
            .resources
            .get(&c.address)
            .and_then(|r| r.pending_create.clone());
        let token = match pending {
            Some(p)
                if p.request_digest == request_digest
                    && Utc::now() - p.started_at < chrono::Duration::hours(23) =>
            {
                self.progress.step(
                    &label(c),
                    "resuming an unfinished create with its retry token",
                );
                p.retry_token
            }
            Some(p) if p.request_digest == request_digest => {
                // Past the token's lifetime: look for what the crashed create may have made.
                if let Some(id) = self.find_orphan(c, &p).await? {
                    self.progress.step(
                        &label(c),
                        &format!("adopting {id}, created by an unfinished earlier apply"),
                    );
                    let (body, etag) = self.read(c, &id).await?;
                    self.record(&c.address, |st| {
                        if let Some(r) = st.resources.get_mut(&c.address) {
                            r.pending_create = None;
                        }
                    })
                    .await?;
                    self.store_read(c, &id, body, etag, inputs.clone()).await?;
                    return self.wait_ready(c, &id).await.map(|_| id);
                }
                crate::oci::client::new_retry_token()
            }
            _ => crate::oci::client::new_retry_token(),
        };
        // Record the pending create before sending it.
        let kind = state_kind(c.kind);
        let pc = PendingCreate {
            retry_token: token.clone(),
            request_digest,
            started_at: Utc::now(),
            display_name,
            compartment,
        };
        self.record(&c.address, |st| {
            let r = st
                .resources
                .entry(c.address.clone())
                .or_insert_with(|| ResourceState::new(kind));
            r.kind = kind;
            r.pending_create = Some(pc);
            r.updated_at = Utc::now();
        })
        .await?;
        let opts = MutationOptions {
            if_match: None,
            retry_token: Some(token),
        };
        let sent = match c.kind {
            Kind::Instance => {
                let details: LaunchInstanceDetails =
                    serde_json::from_value(body).map_err(|e| NodeError::Invalid {
                        address: c.address.clone(),
                        message: format!("launch request: {e}"),
                    })?;
                self.client.launch_instance(&details, &opts).await.map(|r| {
                    (
                        r.body.id.clone(),
                        serde_json::to_value(r.body).expect("serialises"),
                        r.etag,
                    )
                })
            }
            Kind::Image => {
                let details: CreateImageDetails =
                    serde_json::from_value(body).map_err(|e| NodeError::Invalid {
                        address: c.address.clone(),
                        message: format!("image request: {e}"),
                    })?;
                self.client.create_image(&details, &opts).await.map(|r| {
                    (
                        r.body.id.clone(),
                        serde_json::to_value(r.body).expect("serialises"),
                        r.etag,
                    )
                })
            }
        };
        let (id, body, etag) = match sent {
            Ok(x) => x,
            Err(e) => {
                // A definite refusal made nothing: forget the token. Anything else (no answer,
                // throttled, 5xx) may have created it: keep the token for the next apply.
                if e.status
                    .is_some_and(|s| (400..500).contains(&s) && s != 429)
                {
                    let _ = self
                        .record(&c.address, |st| {
                            if let Some(r) = st.resources.get_mut(&c.address) {
                                r.pending_create = None;
                                if r.id.is_none() {
                                    st.resources.remove(&c.address);
                                }
                            }
                        })
                        .await;
                }
                return Err(self.oci(&c.address, e));
            }
        };
        // One save records the id and clears the pending create.
        self.store_read(c, &id, body, etag, inputs).await?;
        self.wait_ready(c, &id).await?;
        if let Some(src) = source_instance {
            // The capture moved the source through CREATING_IMAGE (new etags): read it again so the
            // next action on it (a restart) sends the etag kiln itself caused, not a stale one.
            self.refresh_source(&src).await?;
        }
        Ok(id)
    }

    async fn refresh_source(&self, instance_id: &str) -> Result<(), NodeError> {
        let address = self
            .state
            .lock()
            .await
            .resources
            .iter()
            .find(|(_, r)| r.id.as_deref() == Some(instance_id))
            .map(|(a, _)| a.clone());
        let Some(address) = address else {
            return Ok(());
        };
        let r = self
            .client
            .get_instance(instance_id)
            .await
            .map_err(|e| self.oci(&address, e))?;
        let body = serde_json::to_value(r.body).expect("serialises");
        self.record(&address, |st| {
            if let Some(x) = st.resources.get_mut(&address) {
                x.etag = r.etag;
                x.attributes = body;
                x.updated_at = Utc::now();
            }
        })
        .await
    }

    /// After a token expired: the resource a crashed create made, found by display name and
    /// compartment, created after the create started.
    async fn find_orphan(
        &self,
        c: &Change,
        p: &PendingCreate,
    ) -> Result<Option<String>, NodeError> {
        let (Some(name), Some(compartment)) = (&p.display_name, &p.compartment) else {
            return Ok(None);
        };
        let since = (p.started_at - chrono::Duration::minutes(5)).to_rfc3339();
        let found = match c.kind {
            Kind::Instance => self
                .client
                .list_instances(&ListInstances {
                    compartment_id: compartment.clone(),
                    display_name: Some(name.clone()),
                    ..Default::default()
                })
                .await
                .map(|l| {
                    l.into_iter()
                        .filter(|i| {
                            !matches!(i.lifecycle_state.as_str(), "TERMINATED" | "TERMINATING")
                                && i.time_created
                                    .as_deref()
                                    .is_some_and(|t| t >= since.as_str())
                        })
                        .map(|i| i.id)
                        .next()
                }),
            Kind::Image => self
                .client
                .list_images(&ListImages {
                    compartment_id: compartment.clone(),
                    display_name: Some(name.clone()),
                    ..Default::default()
                })
                .await
                .map(|l| {
                    l.into_iter()
                        .filter(|i| {
                            i.lifecycle_state != "DELETED"
                                && i.time_created
                                    .as_deref()
                                    .is_some_and(|t| t >= since.as_str())
                        })
                        .map(|i| i.id)
                        .next()
                }),
        };
        found.map_err(|e| self.oci(&c.address, e))
    }

    async fn wait_ready(&self, c: &Change, id: &str) -> Result<(), NodeError> {
        let (body, etag) = match c.kind {
            Kind::Instance => {
                self.progress.step(&label(c), "waiting for RUNNING");
                let r = self
                    .client
                    .wait_for_instance(id, &["RUNNING"], &WaitOptions::new(self.timeouts.instance))
                    .await
                    .map_err(|e| self.oci(&c.address, e))?;
                (serde_json::to_value(r.body).expect("serialises"), r.etag)
            }
            Kind::Image => {
                self.progress.step(&label(c), "waiting for AVAILABLE");
                let r = self
                    .client
                    .wait_for_image(id, &["AVAILABLE"], &WaitOptions::new(self.timeouts.image))
                    .await
                    .map_err(|e| self.oci(&c.address, e))?;
                (serde_json::to_value(r.body).expect("serialises"), r.etag)
            }
        };
        self.store_read(c, id, body, etag, None).await
    }

    /// Terminate / delete the resource `id` (If-Match), wait, and drop it from state when it is
    /// the address's current id.
    async fn destroy(
        &self,
        c: &Change,
        id: &str,
        if_match: Option<String>,
    ) -> Result<(), NodeError> {
        let opts = MutationOptions::if_match(if_match.as_deref());
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
        match c.kind {
            Kind::Instance => {
                match self
                    .client
                    .terminate_instance(id, preserve, None, &opts)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(self.precondition(c, &if_match, e)),
                }
                self.progress.step(&label(c), "waiting for TERMINATED");
                self.client
                    .wait_for_termination(id, &WaitOptions::new(self.timeouts.terminate))
                    .await
                    .map_err(|e| self.oci(&c.address, e))?;
            }
            Kind::Image => match self.client.delete_image(id, &opts).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(self.precondition(c, &if_match, e)),
            },
        }
        let id = id.to_string();
        self.record(&c.address, |st| {
            if st.resources.get(&c.address).and_then(|r| r.id.as_deref()) == Some(id.as_str()) {
                st.resources.remove(&c.address);
            }
        })
        .await
    }

    async fn power(
        &self,
        c: &Change,
        action: InstanceAction,
        target: &str,
    ) -> Result<(), NodeError> {
        let id = self
            .id_of(&c.address)
            .await
            .ok_or_else(|| NodeError::Invalid {
                address: c.address.clone(),
                message: "no instance id in state".into(),
            })?;
        let etag = self.if_match(c).await;
        self.client
            .instance_action(
                &id,
                action,
                None,
                &MutationOptions::if_match(etag.as_deref()),
            )
            .await
            .map_err(|e| self.precondition(c, &etag, e))?;
        self.progress
            .step(&label(c), &format!("waiting for {target}"));
        let r = self
            .client
            .wait_for_instance(&id, &[target], &WaitOptions::new(self.timeouts.instance))
            .await
            .map_err(|e| self.oci(&c.address, e))?;
        self.store_read(
            c,
            &id,
            serde_json::to_value(r.body).expect("serialises"),
            r.etag,
            None,
        )
        .await
    }

    async fn run(&self, c: &Change) -> Result<(), NodeError> {
        match c.action {
            Action::Create => self.create(c).await.map(|_| ()),
            Action::Update => {
                let id = c.id.clone().ok_or_else(|| NodeError::Invalid {
                    address: c.address.clone(),
                    message: "update without an id".into(),
                })?;
                let body = self
                    .resolve(&c.address, c.request.as_ref().unwrap_or(&Value::Null))
                    .await?;
                let etag = self.if_match(c).await;
                let opts = MutationOptions::if_match(etag.as_deref());
                let done =
                    match c.kind {
                        Kind::Instance => {
                            let d: UpdateInstanceDetails =
                                serde_json::from_value(body).map_err(|e| NodeError::Invalid {
                                    address: c.address.clone(),
                                    message: e.to_string(),
                                })?;
                            self.client.update_instance(&id, &d, &opts).await.map(|r| {
                                (serde_json::to_value(r.body).expect("serialises"), r.etag)
                            })
                        }
                        Kind::Image => {
                            let d: UpdateImageDetails =
                                serde_json::from_value(body).map_err(|e| NodeError::Invalid {
                                    address: c.address.clone(),
                                    message: e.to_string(),
                                })?;
                            self.client.update_image(&id, &d, &opts).await.map(|r| {
                                (serde_json::to_value(r.body).expect("serialises"), r.etag)
                            })
                        }
                    };
                let (body, etag) = done.map_err(|e| self.precondition(c, &etag, e))?;
                self.store_read(c, &id, body, etag, None).await
            }
            Action::Move => {
                let id = c.id.clone().ok_or_else(|| NodeError::Invalid {
                    address: c.address.clone(),
                    message: "move without an id".into(),
                })?;
                let target = c
                    .request
                    .as_ref()
                    .and_then(|r| r.get("compartmentId"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let etag = self.if_match(c).await;
                let opts = MutationOptions::if_match(etag.as_deref());
                let r = match c.kind {
                    Kind::Instance => {
                        self.client
                            .change_instance_compartment(&id, &target, &opts)
                            .await
                    }
                    Kind::Image => {
                        self.client
                            .change_image_compartment(&id, &target, &opts)
                            .await
                    }
                }
                .map_err(|e| self.precondition(c, &etag, e))?;
                if let Some(wr) = r.opc_work_request_id {
                    self.progress
                        .step(&label(c), "waiting for the work request");
                    self.client
                        .wait_for_work_request(&wr, &WaitOptions::new(self.timeouts.work_request))
                        .await
                        .map_err(|e| self.oci(&c.address, e))?;
                }
                self.refresh_record(c, &id).await
            }
            Action::Start => self.power(c, InstanceAction::Start, "RUNNING").await,
            Action::Stop => self.power(c, InstanceAction::Stop, "STOPPED").await,
            Action::Delete if c.deposed => {
                let id = c.id.clone().ok_or_else(|| NodeError::Invalid {
                    address: c.address.clone(),
                    message: "delete without an id".into(),
                })?;
                // The previous version: the etag the plan read for it, not the new version's.
                self.destroy(c, &id, c.etag.clone()).await
            }
            Action::Delete => {
                let id = c.id.clone().ok_or_else(|| NodeError::Invalid {
                    address: c.address.clone(),
                    message: "delete without an id".into(),
                })?;
                let etag = self.if_match(c).await;
                self.destroy(c, &id, etag).await
            }
            Action::Replace if c.kind == Kind::Image => {
                // Create before destroy: the previous image is deleted by its own (deposed) node
                // once everything launched from it has moved to this one.
                self.touched.lock().await.insert(c.address.clone());
                self.create(c).await.map(|_| ())
            }
            Action::Replace => {
                let old = c.id.clone();
                let etag = self.if_match(c).await;
                let create_first = c
                    .inputs
                    .as_ref()
                    .and_then(|i| i.get("create_before_destroy"))
                    .and_then(Value::as_bool)
                    == Some(true);
                if create_first {
                    self.progress
                        .step(&label(c), "creating the replacement first");
                    self.create(c).await?;
                    if let Some(old) = old {
                        self.progress
                            .step(&label(c), &format!("destroying the old {old}"));
                        self.destroy(c, &old, etag).await?;
                    }
                } else {
                    if let Some(old) = &old {
                        self.destroy(c, old, etag).await?;
                    }
                    self.create(c).await?;
                }
                Ok(())
            }
        }
    }
}

/// Execute `plan`. The state must be the one the plan was made from (the caller checked it and
/// holds `lock`). Returns the final state and a report.
pub async fn apply(
    plan: &Plan,
    client: Client,
    store: StateStore,
    lock: StateLock,
    state: State,
    opts: &ApplyOptions,
    stop: &StopFlag,
    progress: Arc<Progress>,
) -> (State, Report) {
    let timer = Timer::start();
    let ctx = Arc::new(Ctx {
        client,
        store,
        lock,
        state: Mutex::new(state),
        changed: std::sync::atomic::AtomicU64::new(0),
        saved: Mutex::new(0),
        touched: Mutex::new(HashSet::new()),
        timeouts: opts.timeouts.clone(),
        progress: progress.clone(),
    });
    let mut report = Report::default();
    if !plan.forget.is_empty() {
        let forget = plan.forget.clone();
        if let Err(e) = ctx
            .record("state", |st| {
                for a in &forget {
                    st.resources.remove(a);
                }
            })
            .await
        {
            report
                .failed
                .push(("forget gone resources".into(), e.to_string()));
        }
    }
    let deps: Vec<Vec<usize>> = plan.changes.iter().map(|c| c.depends_on.clone()).collect();
    let changes: Arc<Vec<Change>> = Arc::new(plan.changes.clone());
    let outcomes = walk::walk(&deps, opts.parallelism, stop, |i| {
        let ctx = ctx.clone();
        let changes = changes.clone();
        async move {
            let c = &changes[i];
            let l = label(c);
            ctx.progress.started(&l);
            let t = Timer::start();
            let r = ctx.run(c).await;
            match &r {
                Ok(()) => ctx.progress.finished(&l, t.elapsed(), Ok(())),
                Err(e) => ctx.progress.finished(&l, t.elapsed(), Err(&e.to_string())),
            }
            r.map_err(|e| format!("{:?}", miette::Report::new(e)))
        }
    })
    .await;
    let mut counts: BTreeMap<Action, usize> = BTreeMap::new();
    for (i, o) in outcomes.into_iter().enumerate() {
        let c = &plan.changes[i];
        match o {
            Outcome::Done => *counts.entry(c.action).or_default() += 1,
            Outcome::Failed(e) => report.failed.push((label(c), e)),
            Outcome::Skipped { failed } => report
                .skipped
                .push((label(c), label(&plan.changes[failed]))),
            Outcome::NotStarted => report.not_started.push(label(c)),
        }
    }
    let n = |a| counts.get(&a).copied().unwrap_or(0);
    report.created = n(Action::Create);
    report.updated = n(Action::Update);
    report.replaced = n(Action::Replace);
    report.moved = n(Action::Move);
    report.started = n(Action::Start);
    report.stopped = n(Action::Stop);
    report.deleted = n(Action::Delete);
    report.elapsed = timer.elapsed();
    let ctx = Arc::try_unwrap(ctx).ok().expect("every node finished");
    if let Err(e) = ctx.lock.release().await {
        report.failed.push((
            "release the state lock".into(),
            format!("{:?}", miette::Report::new(e)),
        ));
    }
    (ctx.state.into_inner(), report)
}
