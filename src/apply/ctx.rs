//! What every action of an apply shares ([`Ctx`]): a client per region, the state behind
//! group-committed saves ([`Ctx::record`]), the If-Match to send ([`Ctx::if_match`]), fresh reads
//! stored as an address's object, and waits that share listings.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::oci::wait::WaitOptions;
use crate::oci::watch;
use crate::oci::{Client, Clients, OciError};
use crate::plan::desired::resolve_refs;
use crate::plan::{Action, Change, Kind};
use crate::state::{ResourceKind, ResourceState, State, StateLock, StateStore};

use super::execute::{NodeError, Timeouts};
use super::progress::Progress;
use super::walk::StopFlag;

pub(super) struct Ctx {
    /// A client per region; [`Ctx::at`] and [`Ctx::in_region`] pick one.
    pub(super) clients: Clients,
    pub(super) store: StateStore,
    pub(super) lock: StateLock,
    pub(super) state: Mutex<State>,
    /// Changes made to `state` so far, and how many of them are durably saved.
    pub(super) changed: std::sync::atomic::AtomicU64,
    pub(super) saved: Mutex<u64>,
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

    /// Apply `f` to the state and return once a save that includes it is durable (serial + 1,
    /// atomic). One save runs at a time; changes made while it runs are saved together by the
    /// next one.
    pub(super) async fn record(
        &self,
        address: &str,
        f: impl FnOnce(&mut State),
    ) -> Result<(), NodeError> {
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
        if let Err(source) = self.store.save(&self.lock, &mut snapshot).await {
            self.stop.stop();
            return Err(NodeError::State {
                address: address.to_string(),
                source,
            });
        }
        self.state.lock().await.serial = snapshot.serial;
        *saved = upto;
        Ok(())
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
    /// first mutation of the resource in this apply, then the etag this apply read last.
    pub(super) async fn if_match(&self, c: &Change) -> (Option<String>, Option<String>) {
        let first = self.touched.lock().await.insert(c.address.clone());
        let st = self.state.lock().await;
        let recorded = st.resources.get(&c.address);
        if first && c.etag.is_some() {
            (c.etag.clone(), c.observed.clone())
        } else {
            (
                recorded.and_then(|r| r.etag.clone()),
                recorded
                    .filter(|r| !r.attributes.is_null())
                    .map(|r| crate::plan::observed_digest(&r.attributes)),
            )
        }
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
    /// ([`crate::oci::watch`]); the final read, with its etag.
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
}
