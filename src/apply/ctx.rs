//! What every action of an apply shares ([`Ctx`]): a client per region, the state behind
//! group commits of the records each change touched ([`Ctx::record`]: a journal append on the
//! local store), the If-Match to send ([`Ctx::if_match`]), fresh reads stored as an address's
//! object, and waits that share listings.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use chrono::Utc;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::oci::wait::WaitOptions;
use crate::oci::watch;
use crate::oci::{Client, Clients, OciError};
use crate::plan::desired::resolve_refs;
use crate::plan::{Action, Change, Kind};
use crate::state::{Commits, ResourceKind, ResourceState, State, StateLock};

use super::execute::{NodeError, Timeouts};
use super::progress::Progress;
use super::walk::StopFlag;

pub(super) struct Ctx {
    /// A client per region: [`Ctx::at`] picks an existing resource's; a create picks the one
    /// of its region.
    pub(super) clients: Clients,
    pub(super) lock: StateLock,
    pub(super) state: Mutex<State>,
    /// Changes made to `state` so far; and how many of them are durably committed, with the
    /// writer of commits.
    pub(super) changed: std::sync::atomic::AtomicU64,
    pub(super) commits: Mutex<(u64, Commits)>,
    /// Addresses changed since the last commit started (locked inside `state`'s lock).
    pub(super) dirty: std::sync::Mutex<BTreeSet<String>>,
    /// Addresses already mutated by this apply (their next mutation uses the etag read since).
    pub(super) touched: Mutex<HashSet<String>>,
    pub(super) timeouts: Timeouts,
    pub(super) progress: Arc<Progress>,
    /// Raised when a save fails: nothing new starts that the state could not record.
    pub(super) stop: StopFlag,
    /// Waits that share listings, per compartment.
    pub(super) watches: watch::Watches,
    /// Instances created, replaced or moved by this apply: their network facts are read after
    /// the walk ([`super::network`]).
    pub(super) network_stale: std::sync::Mutex<BTreeSet<String>>,
    /// Resumed creates OCI made as first requested while the manifest has moved on in what
    /// only an update or a replacement can bring (see [`super::create`]): the next apply does.
    pub(super) behind: std::sync::Mutex<BTreeSet<String>>,
    /// The plan's rollouts: each member's health gate ([`super::rollout`]).
    pub(super) rollouts: Vec<crate::plan::rollout::Rollout>,
    /// Per fleet: members healthy on the new image, members in their health gate (the progress
    /// line).
    pub(super) rollout_counts: std::sync::Mutex<BTreeMap<String, (usize, usize)>>,
    /// Fleets whose rollout failed in this apply with `on_failure = "rollback"`.
    pub(super) rolling_back: std::sync::Mutex<BTreeSet<String>>,
    /// Rollout members' new instances that their create's wait has just seen RUNNING, with
    /// that read: the health gate that follows takes it instead of reading again
    /// ([`super::rollout`]).
    pub(super) seen_running: std::sync::Mutex<std::collections::HashMap<String, Value>>,
    /// The exports image copies share ([`super::image_copy`]).
    pub(super) exports: super::image_copy::Exports,
    /// The create-time inputs this apply recorded lately, each once: records with equal inputs
    /// (a fleet's members) share one map ([`Ctx::shared_inputs`]).
    pub(super) inputs_seen: std::sync::Mutex<Vec<std::sync::Arc<Map<String, Value>>>>,
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

    /// [`Ctx::resolve`] of a plan's request or inputs, kept as text (`None`: `null`).
    pub(super) async fn resolve_text(
        &self,
        address: &str,
        v: Option<&crate::raw_json::RawJson>,
    ) -> Result<Value, NodeError> {
        let v = v.map(|r| r.parse()).unwrap_or(Value::Null);
        self.resolve(address, &v).await
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
                    .map(|r| crate::plan::observed_digest(&r.attributes.parse())),
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
                source: None,
            });
        }
        self.store_read(c, &id, body, etag.clone(), None).await?;
        Ok((etag, Some(now)))
    }

    /// `inputs` as a shared map: one this apply recorded lately if equal (a fleet's members have
    /// the same), else a new one. (Shared maps are copied on write: `Arc::make_mut`.)
    fn shared_inputs(&self, inputs: Map<String, Value>) -> std::sync::Arc<Map<String, Value>> {
        const KEPT: usize = 16;
        let mut seen = self.inputs_seen.lock().expect("inputs seen");
        if let Some(i) = seen.iter().position(|s| **s == inputs) {
            let shared = seen.remove(i);
            seen.push(shared.clone());
            return shared;
        }
        let shared = std::sync::Arc::new(inputs);
        if seen.len() == KEPT {
            seen.remove(0);
        }
        seen.push(shared.clone());
        shared
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
            r.region = crate::region::from_ocid(id).map(str::to_string);
            r.compartment = body
                .get("compartmentId")
                .and_then(Value::as_str)
                .map(str::to_string);
            r.etag = etag;
            r.attributes = body.into();
            if let Some(i) = inputs {
                r.inputs = self.shared_inputs(i);
            }
            r.pending_create = None;
            // Retagged (or never tagged): nothing carries the address it was renamed from.
            let tag = r
                .attributes
                .str_at(&["freeformTags", crate::plan::from_manifest::ADDRESS_TAG]);
            if tag.is_none_or(|t| t == c.address) {
                r.renamed_from = None;
            }
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
    pub(super) async fn accept_drift(&self, address: &str) -> Result<(), NodeError> {
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
            pending: false,
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
        opts: WaitOptions,
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
            .wait(id, states, failed, &opts)
            .await
    }

    pub(super) fn wait(&self, c: &Change) -> WaitOptions {
        WaitOptions::new(match c.kind {
            Kind::Instance => self.timeouts.instance,
            Kind::Image => self.timeouts.image,
        })
    }
}

/// The `create_before_destroy` of a plan's create-time inputs (`None`: not recorded).
pub(super) fn create_before_destroy(inputs: &crate::raw_json::RawJson) -> Option<bool> {
    inputs
        .parse_keys(&["create_before_destroy"])
        .get("create_before_destroy")
        .and_then(Value::as_bool)
}
