//! The executor: one arm per [`Action`], each mutation guarded by If-Match ([`super::guard`]),
//! each create made idempotent across crashes ([`super::create`]).
//!
//! The state is committed after every finished action (serial + 1, compare-and-swap), so a crash
//! or Ctrl-C loses nothing. A commit records only the records it changed — an append to the local
//! store's journal, folded into the state file at the end ([`crate::state::journal`]) — so its
//! cost does not grow with the estate (the remote store writes the whole object). Commits are
//! group commits: an action whose change is already covered by a commit that started after it
//! does not write again, so parallel actions share writes. A commit that fails stops the apply:
//! no new action starts that the state could not record.
//!
//! The first mutation of a resource sends the etag the plan captured; later nodes of the same
//! apply send the etag this apply read last — so an out-of-band change between plan and apply is
//! a 412 that overwrites nothing, and kiln never trips over its own changes.
//!
//! Replacements keep their predecessor in the state until it is destroyed: create-before-destroy
//! records the old object as *deposed* before its successor is created, so a failure or a crash
//! between the two leaves it in the state, shown in the next plan and destroyed by it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::oci::models::{InstanceAction, UpdateImageDetails, UpdateInstanceDetails};
use crate::oci::wait::WaitOptions;
use crate::oci::watch;
use crate::oci::{Client, Clients, MutationOptions, OciError};
use crate::plan::desired::resolve_refs;
use crate::plan::{Action, Change, Kind, Plan};
use crate::state::{
    Commits, Deposed, ResourceKind, ResourceState, State, StateError, StateLock, StateStore,
};

use super::guard::Sent;
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
    /// How waits read ([`watch::WaitReads`]: shared listings by default).
    pub wait_reads: watch::WaitReads,
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
    #[error("`{address}` changed in OCI since this apply read it; run `kiln plan` again")]
    #[diagnostic(
        code(kiln::apply::changed_since_read),
        help("nothing was overwritten: review the change with `kiln plan`, then apply again")
    )]
    ChangedSinceRead { address: String },
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
    /// The plan was `--refresh-only`: the summary says what was recorded.
    pub refresh_only: bool,
    /// State records replaced with a fresh read (accepted drift, refresh-only).
    pub refreshed: usize,
    /// Addresses dropped from the state because their resource is gone.
    pub forgotten: usize,
    /// Instances whose network facts were read.
    pub networks_read: usize,
    /// What went wrong without failing anything (printed, not counted).
    pub warnings: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && self.not_started.is_empty()
    }

    pub fn summary_line(&self) -> String {
        if self.refresh_only {
            return format!(
                "Refresh {}: {} records refreshed, {} gone resources dropped from the state, network facts of {} instances read, {} failed; nothing was changed in OCI in {}",
                if self.ok() { "complete" } else { "incomplete" },
                self.refreshed,
                self.forgotten,
                self.networks_read,
                self.failed.len(),
                super::progress::human(self.elapsed)
            );
        }
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

pub(super) struct Ctx {
    /// A client per region; [`Ctx::at`] and [`Ctx::in_region`] pick one.
    pub(super) clients: Clients,
    lock: StateLock,
    pub(super) state: Mutex<State>,
    /// Changes made to `state` so far; and how many of them are durably committed, with the
    /// writer of commits.
    changed: std::sync::atomic::AtomicU64,
    commits: Mutex<(u64, Commits)>,
    /// Addresses changed since the last commit started (locked inside `state`'s lock).
    dirty: std::sync::Mutex<BTreeSet<String>>,
    /// Addresses already mutated by this apply (their next mutation uses the etag read since).
    touched: Mutex<HashSet<String>>,
    pub(super) timeouts: Timeouts,
    pub(super) progress: Arc<Progress>,
    /// Raised when a save fails: nothing new starts that the state could not record.
    stop: StopFlag,
    /// Waits that share listings, per compartment.
    watches: watch::Watches,
    /// Instances created, replaced or moved by this apply: their network facts are read after
    /// the walk ([`super::network`]).
    network_stale: std::sync::Mutex<BTreeSet<String>>,
}

pub(super) fn label(c: &Change) -> String {
    format!("{} {}", c.action.as_str(), c.address)
}

pub(super) fn state_kind(k: Kind) -> ResourceKind {
    match k {
        Kind::Instance => ResourceKind::Instance,
        Kind::Image => ResourceKind::Image,
    }
}

pub(super) fn to_json(body: impl serde::Serialize) -> Value {
    serde_json::to_value(body).expect("serialises")
}

impl Ctx {
    /// The client of the region `id` lives in. Every region with a resource in the plan has one
    /// (the session makes them from the manifest and the state); a missing one would send the
    /// request to the wrong region, whose 404 would read as "gone", so it is a bug, not a guess.
    pub(super) fn at(&self, id: &str) -> &Client {
        self.clients
            .for_id(id)
            .unwrap_or_else(|e| panic!("no client for {id}: {e}"))
    }

    /// The client of the region a create goes to.
    pub(super) fn in_region(&self, c: &Change) -> &Client {
        self.clients
            .for_region(c.region.as_deref())
            .unwrap_or_else(|e| panic!("no client for `{}`: {e}", c.address))
    }

    pub(super) fn oci(&self, address: &str, e: OciError) -> NodeError {
        NodeError::Oci {
            address: address.to_string(),
            source: e.with_resource(address),
        }
    }

    pub(super) fn invalid(&self, c: &Change, message: impl Into<String>) -> NodeError {
        NodeError::Invalid {
            address: c.address.clone(),
            message: message.into(),
        }
    }

    /// Apply `f` to the state of `address` and return once a commit that includes it is durable
    /// ([`Ctx::record_at`]).
    pub(super) async fn record(
        &self,
        address: &str,
        f: impl FnOnce(&mut State),
    ) -> Result<(), NodeError> {
        self.record_at(address, &[address.to_string()], f).await
    }

    /// Apply `f` to the state — it changes the records of `addresses` and nothing else — and
    /// return once a commit that includes it is durable (serial + 1; the local store appends the
    /// changed records to its journal, other stores save the whole state: [`Commits`]). One
    /// commit runs at a time; changes made while it runs are committed together by the next one.
    /// `label` names the work in errors.
    pub(super) async fn record_at(
        &self,
        label: &str,
        addresses: &[String],
        f: impl FnOnce(&mut State),
    ) -> Result<(), NodeError> {
        use std::sync::atomic::Ordering;
        let mine = {
            let mut st = self.state.lock().await;
            f(&mut st);
            self.dirty
                .lock()
                .expect("dirty set")
                .extend(addresses.iter().cloned());
            self.changed.fetch_add(1, Ordering::SeqCst) + 1
        };
        let mut commits = self.commits.lock().await;
        let (saved, writes) = &mut *commits;
        if *saved >= mine {
            return Ok(());
        }
        // Taken with the state locked, so that `upto` counts exactly the changes in `dirty`.
        let (upto, dirty, result) = if writes.journaled() {
            let (lineage, serial, upto, dirty, changes) = {
                let st = self.state.lock().await;
                let dirty = std::mem::take(&mut *self.dirty.lock().expect("dirty set"));
                let changes: BTreeMap<String, Option<ResourceState>> = dirty
                    .iter()
                    .map(|a| (a.clone(), st.resources.get(a).cloned()))
                    .collect();
                let upto = self.changed.load(Ordering::SeqCst);
                (st.lineage.clone(), st.serial, upto, dirty, changes)
            };
            let r = writes.append(&self.lock, &lineage, serial, changes).await;
            (upto, dirty, r)
        } else {
            let (mut snapshot, upto, dirty) = {
                let st = self.state.lock().await;
                let dirty = std::mem::take(&mut *self.dirty.lock().expect("dirty set"));
                (st.clone(), self.changed.load(Ordering::SeqCst), dirty)
            };
            let r = writes
                .save(&self.lock, &mut snapshot)
                .await
                .map(|()| snapshot.serial);
            (upto, dirty, r)
        };
        match result {
            Ok(serial) => {
                self.state.lock().await.serial = serial;
                *saved = upto;
                Ok(())
            }
            Err(source) => {
                // Not recorded: the next commit (or the end of the apply) tries them again.
                self.dirty.lock().expect("dirty set").extend(dirty);
                self.stop.stop();
                Err(NodeError::State {
                    address: label.to_string(),
                    source,
                })
            }
        }
    }

    pub(super) async fn id_of(&self, address: &str) -> Option<String> {
        self.state
            .lock()
            .await
            .resources
            .get(address)
            .and_then(|r| r.id.clone())
    }

    pub(super) async fn resolve(&self, address: &str, v: &Value) -> Result<Value, NodeError> {
        let st = self.state.lock().await;
        let id_of = |a: &str| st.resources.get(a).and_then(|r| r.id.clone());
        resolve_refs(v, &id_of).map_err(|missing| NodeError::Invalid {
            address: address.to_string(),
            message: format!("`{missing}` has no id yet (did its create fail?)"),
        })
    }

    /// The If-Match for a node and the digest of the version it names: the plan's etag for the
    /// first mutation of the resource in this apply, then the version this apply read last
    /// ([`Ctx::recorded_version`]).
    pub(super) async fn if_match(
        &self,
        c: &Change,
    ) -> Result<(Option<String>, Option<String>), NodeError> {
        let first = self.touched.lock().await.insert(c.address.clone());
        if first && c.etag.is_some() {
            return Ok((c.etag.clone(), c.observed.clone()));
        }
        self.recorded_version(c).await
    }

    /// The etag the state records for the address and the digest of the version it names. A
    /// record read from a listing has no etag ([`crate::oci::watch`]): one Get reads it now, and
    /// its etag is used only if everything but the lifecycle is as recorded — otherwise someone
    /// changed the resource since kiln read it, which is never overwritten.
    pub(super) async fn recorded_version(
        &self,
        c: &Change,
    ) -> Result<(Option<String>, Option<String>), NodeError> {
        let (id, etag, seen) = {
            let st = self.state.lock().await;
            let r = st.resources.get(&c.address);
            (
                r.and_then(|r| r.id.clone()),
                r.and_then(|r| r.etag.clone()),
                r.filter(|r| !r.attributes.is_null())
                    .map(|r| crate::plan::observed_digest(&r.attributes)),
            )
        };
        let id = match (etag, id) {
            (Some(etag), _) => return Ok((Some(etag), seen)),
            (None, None) => return Ok((None, seen)),
            (None, Some(id)) => id,
        };
        let (body, etag) = self
            .read(c, &id)
            .await
            .map_err(|e| self.oci(&c.address, e))?;
        let now = crate::plan::observed_digest(&body);
        if seen.as_ref().is_some_and(|s| *s != now) {
            return Err(NodeError::ChangedSinceRead {
                address: c.address.clone(),
            });
        }
        self.store_read(c, &id, body, etag.clone(), None).await?;
        Ok((etag, Some(now)))
    }

    /// Mark an address as mutated by this apply without sending anything yet.
    pub(super) async fn touch(&self, address: &str) {
        self.touched.lock().await.insert(address.to_string());
    }

    /// Store a fresh read of the resource as the address's object.
    pub(super) async fn store_read(
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
            if r.id.as_deref() != Some(id) {
                // Another object: what was read of the network of the previous one is not its.
                r.network = None;
                if kind == ResourceKind::Instance {
                    self.mark_network_stale(&c.address);
                }
            }
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

    /// Read the network facts of this instance after the walk.
    pub(super) fn mark_network_stale(&self, address: &str) {
        self.network_stale
            .lock()
            .expect("network set")
            .insert(address.to_string());
    }

    pub(super) async fn read(
        &self,
        c: &Change,
        id: &str,
    ) -> Result<(Value, Option<String>), OciError> {
        match c.kind {
            Kind::Instance => self
                .at(id)
                .get_instance(id)
                .await
                .map(|r| (to_json(r.body), r.etag)),
            Kind::Image => self
                .at(id)
                .get_image(id)
                .await
                .map(|r| (to_json(r.body), r.etag)),
        }
    }

    /// Record what OCI says now about `address` (no change planned for it, only drift, or a
    /// refresh-only plan).
    async fn accept_drift(&self, address: &str) -> Result<(), NodeError> {
        let found = self
            .state
            .lock()
            .await
            .resources
            .get(address)
            .and_then(|r| {
                let kind = match r.kind {
                    ResourceKind::Instance => Kind::Instance,
                    ResourceKind::Image => Kind::Image,
                };
                r.id.clone().map(|id| (id, kind))
            });
        let Some((id, kind)) = found else {
            return Ok(());
        };
        let c = Change {
            address: address.to_string(),
            kind,
            region: None,
            action: Action::Update,
            reason: "drift".into(),
            attributes: Vec::new(),
            id: Some(id.clone()),
            etag: None,
            request: None,
            inputs: None,
            depends_on: Vec::new(),
            deposed: false,
            observed: None,
        };
        self.refresh_record(&c, &id).await
    }

    pub(super) async fn refresh_record(&self, c: &Change, id: &str) -> Result<(), NodeError> {
        let (body, etag) = self
            .read(c, id)
            .await
            .map_err(|e| self.oci(&c.address, e))?;
        self.store_read(c, id, body, etag, None).await
    }

    /// Wait until the resource `id` of `c` is in one of `states` (`failed` ones end the wait),
    /// with the other waits of its compartment sharing one listing per round
    /// ([`crate::oci::watch`]); the final read — with its etag when it was a Get, without one
    /// when a listing saw it (recorded so; [`Ctx::recorded_version`] reads it before a mutation).
    pub(super) async fn wait_for(
        &self,
        c: &Change,
        id: &str,
        states: &[&str],
        failed: &[&str],
        timeout: Duration,
    ) -> Result<crate::oci::Response<Value>, OciError> {
        let compartment = self
            .state
            .lock()
            .await
            .resources
            .get(&c.address)
            .and_then(|r| {
                r.compartment.clone().or_else(|| {
                    r.deposed
                        .iter()
                        .find(|d| d.id == id)
                        .and_then(|d| d.compartment.clone())
                })
            })
            .unwrap_or_default();
        let kind = match c.kind {
            Kind::Instance => watch::Kind::Instance,
            Kind::Image => watch::Kind::Image,
        };
        self.watches
            .get(self.at(id), &compartment, kind)
            .wait(id, states, failed, &WaitOptions::new(timeout))
            .await
    }

    pub(super) fn wait(&self, c: &Change) -> WaitOptions {
        WaitOptions::new(match c.kind {
            Kind::Instance => self.timeouts.instance,
            Kind::Image => self.timeouts.image,
        })
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
                self.timeouts.instance,
            )
            .await
            .map_err(|e| self.oci(&c.address, e))?;
        self.store_read(c, &id, r.body, r.etag, None).await
    }

    async fn update(&self, c: &Change) -> Result<(), NodeError> {
        let id =
            c.id.clone()
                .ok_or_else(|| self.invalid(c, "update without an id"))?;
        let body = self
            .resolve(&c.address, c.request.as_ref().unwrap_or(&Value::Null))
            .await?;
        let (etag, seen) = self.if_match(c).await?;
        self.update_with(c, &id, body, etag, seen).await
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
            .and_then(|r| r.get("compartmentId"))
            .and_then(Value::as_str)
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
            if r.id.as_deref() == Some(old.as_str()) {
                r.clear_object();
            }
            if !r.deposed.iter().any(|d| d.id == old) {
                r.deposed.push(Deposed {
                    id: old.clone(),
                    etag,
                    compartment: r.compartment.clone(),
                    since: Utc::now(),
                });
            }
            r.updated_at = Utc::now();
        })
        .await
    }

    async fn replace(&self, c: &Change) -> Result<(), NodeError> {
        let old = c.id.clone();
        let (etag, seen) = self.if_match(c).await?;
        let create_first = c.kind == Kind::Image
            || c.inputs
                .as_ref()
                .and_then(|i| i.get("create_before_destroy"))
                .and_then(Value::as_bool)
                == Some(true);
        if !create_first {
            if let Some(old) = &old {
                self.destroy(c, old, etag, seen).await?;
            }
            return self.create(c).await.map(|_| ());
        }
        // Create before destroy: the old object stays in the state (deposed) until it is gone.
        if let Some(old) = &old {
            self.depose(c, old, etag.clone()).await?;
        }
        self.progress
            .step(&label(c), "creating the replacement first");
        self.create(c).await?;
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

    async fn run(&self, c: &Change) -> Result<(), NodeError> {
        match c.action {
            Action::Create => self.create(c).await.map(|_| ()),
            Action::Update => self.update(c).await,
            Action::Move => self.move_compartment(c).await,
            Action::Start => self.power(c, InstanceAction::Start, "RUNNING").await,
            Action::Stop => self.power(c, InstanceAction::Stop, "STOPPED").await,
            Action::Delete => {
                let id =
                    c.id.clone()
                        .ok_or_else(|| self.invalid(c, "delete without an id"))?;
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

fn decode_error(operation: &'static str, e: serde_json::Error) -> OciError {
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

/// Execute `plan`. The state must be the one the plan was made from (the caller checked it and
/// holds `lock`). Returns the final state and a report; the lock is released.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    plan: &Plan,
    clients: Clients,
    store: StateStore,
    lock: StateLock,
    state: State,
    opts: &ApplyOptions,
    stop: &StopFlag,
    progress: Arc<Progress>,
) -> (State, Report) {
    let timer = Timer::start();
    let ctx = Arc::new(Ctx {
        clients,
        lock,
        state: Mutex::new(state),
        changed: std::sync::atomic::AtomicU64::new(0),
        commits: Mutex::new((0, Commits::new(store))),
        dirty: std::sync::Mutex::new(BTreeSet::new()),
        touched: Mutex::new(HashSet::new()),
        timeouts: opts.timeouts.clone(),
        progress: progress.clone(),
        stop: stop.clone(),
        watches: watch::Watches::new(opts.wait_reads),
        network_stale: std::sync::Mutex::new(BTreeSet::new()),
    });
    let mut report = Report {
        refresh_only: plan.refresh_only,
        ..Report::default()
    };
    // Every region the plan touches needs its client before anything starts (a request sent to
    // another region would read a resource as gone).
    let unreachable: Vec<String> = plan
        .changes
        .iter()
        .filter_map(|c| {
            let reach = match &c.id {
                Some(id) => ctx.clients.for_id(id).map(|_| ()),
                None => ctx.clients.for_region(c.region.as_deref()).map(|_| ()),
            };
            reach.err().map(|e| format!("{}: {}", label(c), e.message))
        })
        .collect();
    if !unreachable.is_empty() {
        report.failed.push((
            "reach every region of the plan".into(),
            unreachable.join("\n"),
        ));
        stop.stop();
    }
    // A journal left by a kiln that died is folded first: this apply starts its own.
    {
        let st = ctx.state.lock().await;
        let mut commits = ctx.commits.lock().await;
        if let Err(e) = commits.1.begin(&ctx.lock, &st).await {
            report.failed.push((
                "fold the state journal left by an earlier apply".into(),
                format!("{:?}", miette::Report::new(e)),
            ));
            stop.stop();
        }
    }
    if !plan.moved.is_empty() {
        let moved = plan.moved.clone();
        let touched: Vec<String> = moved
            .iter()
            .flat_map(|(from, to)| [from.clone(), to.clone()])
            .collect();
        if let Err(e) = ctx
            .record_at("state", &touched, |st| {
                for (from, to) in &moved {
                    if !st.resources.contains_key(to) {
                        if let Some(r) = st.resources.remove(from) {
                            st.resources.insert(to.clone(), r);
                        }
                    }
                }
            })
            .await
        {
            // Nothing else may run on a state that does not have the names the plan uses.
            report
                .failed
                .push(("move state addresses".into(), e.to_string()));
            stop.stop();
        }
    }
    if !plan.forget.is_empty() || !plan.forget_deposed.is_empty() {
        let (forget, forget_deposed) = (plan.forget.clone(), plan.forget_deposed.clone());
        let touched: Vec<String> = forget
            .iter()
            .cloned()
            .chain(forget_deposed.iter().map(|(a, _)| a.clone()))
            .collect();
        if let Err(e) = ctx
            .record_at("state", &touched, |st| {
                for a in &forget {
                    if let Some(r) = st.resources.get_mut(a) {
                        r.id = None;
                        r.network = None;
                    }
                }
                for (a, id) in &forget_deposed {
                    if let Some(r) = st.resources.get_mut(a) {
                        r.deposed.retain(|d| &d.id != id);
                    }
                }
                st.resources.retain(|_, r| !r.is_empty());
            })
            .await
        {
            report
                .failed
                .push(("forget gone resources".into(), e.to_string()));
        } else {
            report.forgotten = plan.forget.len();
        }
    }
    // Drift the plan showed and changes nothing of: the state takes what OCI says (the plan was
    // approved with it), so the next plan does not show it again; under `--refresh-only`, also
    // every record OCI now describes differently (`plan.refresh`).
    let changing: HashSet<&str> = plan.changes.iter().map(|c| c.address.as_str()).collect();
    let accept: BTreeSet<&str> = plan
        .drift
        .iter()
        .filter(|d| d.gone.is_none())
        .map(|d| d.address.as_str())
        .chain(plan.refresh.iter().map(String::as_str))
        .filter(|a| !changing.contains(a) && !plan.forget.iter().any(|f| f == a))
        .collect();
    for address in accept {
        match ctx.accept_drift(address).await {
            Ok(()) => report.refreshed += 1,
            Err(e) => report
                .failed
                .push((format!("refresh {address}"), e.to_string())),
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
    // The network facts of what was created, replaced or moved (and of what the state lacks):
    // reads only, after every action, so a failed read fails no action (see `network`).
    if !stop.is_stopped() {
        let mut wanted: BTreeSet<String> = plan.read_network.iter().cloned().collect();
        wanted.extend(
            ctx.network_stale
                .lock()
                .expect("network set")
                .iter()
                .cloned(),
        );
        let (read, failed) = ctx.read_networks(&wanted, opts.parallelism).await;
        report.networks_read = read;
        report.failed.extend(failed);
    }
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
    // The journal folded into the state file; changes whose commit failed are saved whole.
    let unrecorded = !ctx.dirty.lock().expect("dirty set").is_empty();
    {
        let mut st = ctx.state.lock().await;
        let mut commits = ctx.commits.lock().await;
        if let Err(e) = commits.1.finish(&ctx.lock, &mut st, unrecorded).await {
            let e = format!("{:?}", miette::Report::new(e));
            if unrecorded {
                report.failed.push(("record the state".into(), e));
            } else {
                // Every commit is durable in the journal: the next kiln folds it.
                report.warnings.push(format!(
                    "the state journal was not folded into the state file (the next kiln run folds it): {e}"
                ));
            }
        }
    }
    if let Err(e) = ctx.lock.release().await {
        report.failed.push((
            "release the state lock".into(),
            format!("{:?}", miette::Report::new(e)),
        ));
    }
    (ctx.state.into_inner(), report)
}
