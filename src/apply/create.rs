//! Creates that are never made twice.
//!
//! Before a create is sent, the state records it as pending: its `opc-retry-token` and its exact
//! request body. Sending the same body with the same token again returns what the first send made
//! (or makes it, if the first send never arrived), so whatever happened — a crash, a lost answer,
//! a refusal that says nothing about the first send (401, 403, 404, 429, 5xx) — the next attempt
//! resends the *stored* request with the *stored* token, even if the manifest changed meanwhile
//! (a new tag, a newer `image_lookup` result). Only an answer that proves the token made nothing
//! (400, or a 409 other than `InvalidatedRetryToken`: OCI replays a used token before it checks
//! anything else) clears the pending create.
//!
//! When the token cannot be trusted — it is older than OCI's 24-hour retry window, or the state
//! was written by a kiln that did not keep the request — kiln looks for what the first send may
//! have made (same display name and compartment, created since the pending create started, tagged
//! with this address or not tagged by kiln at all) and adopts it instead of creating another.
//!
//! A create resumed with its stored request, for a manifest that changed since, is followed by an
//! update of the names and tags that can change in place, so one apply converges.

use chrono::Utc;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::oci::compute::{ListImages, ListInstances};
use crate::oci::models::{CreateImageDetails, LaunchInstanceDetails};
use crate::oci::{MutationOptions, OciError};
use crate::plan::from_manifest::ADDRESS_TAG;
use crate::plan::{Change, Kind};
use crate::state::{PendingCreate, ResourceState};

use super::ctx::{label, state_kind, to_json, Ctx};
use super::execute::NodeError;

fn digest(body: &Value) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(body).expect("json serialises"),
    ))
}

fn str_at<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// Whether a refused create proves its token made nothing. A capacity refusal (500
/// `InternalError` "Out of host capacity.") does, as a 400 does: OCI replays a used token before
/// it checks anything else, so a token that had made something would have been answered with it.
fn made_nothing(e: &OciError) -> bool {
    if e.is_out_of_capacity() {
        return true;
    }
    match e.status {
        Some(400) => true,
        Some(409) => e.code != "InvalidatedRetryToken",
        _ => false,
    }
}

/// What to do about a pending create found in the state.
enum Resume {
    /// Send this (stored) request with this (stored) token to this region (`None`: the
    /// provider's) — the region it was sent to the first time.
    Resend(Value, String, Option<String>),
    /// The first send made this resource.
    Adopt(String),
    /// Nothing was made: create afresh.
    Fresh,
}

impl Ctx {
    /// Launch / create, idempotent across crashes; returns the new id once it is ready. Under
    /// `placement`, place after place while OCI has no capacity (`super::placement`).
    pub(super) async fn create(&self, c: &Change) -> Result<String, NodeError> {
        let request = c
            .request
            .as_ref()
            .ok_or_else(|| self.invalid(c, "the plan has no request for this create"))?;
        let mut body = self.resolve_text(&c.address, Some(request)).await?;
        // An image's shapes and capabilities are applied once it is AVAILABLE — a copy in
        // another region too: it is an image of its own there, with its own entries and schema.
        let (shapes, caps) = super::image_caps::take(&mut body);
        if super::image_copy::is_copy(&body) {
            let id = self.create_copy(c, body).await?;
            if shapes.is_some() || caps.is_some() {
                self.apply_image_caps(c, &id, shapes, caps).await?;
            }
            return Ok(id);
        }
        let places = super::placement::take_places(&mut body);
        if shapes.is_some() || caps.is_some() {
            let id = self.create_once(c, body).await?;
            self.apply_image_caps(c, &id, shapes, caps).await?;
            return Ok(id);
        }
        if places.is_empty() {
            return self.create_once(c, body).await;
        }
        let pending = self
            .state
            .lock()
            .await
            .resources
            .get(&c.address)
            .and_then(|r| r.pending_create.as_ref().and_then(|p| p.request.clone()));
        self.create_placed(c, body, places, pending.as_ref()).await
    }

    /// One create of `body` (module doc).
    pub(super) async fn create_once(&self, c: &Change, body: Value) -> Result<String, NodeError> {
        let inputs = match &c.inputs {
            Some(i) => match self.resolve_text(&c.address, Some(i)).await? {
                Value::Object(m) => Some(m),
                _ => None,
            },
            None => None,
        };
        let pending = self
            .state
            .lock()
            .await
            .resources
            .get(&c.address)
            .and_then(|r| r.pending_create.clone());
        let resume = match &pending {
            Some(p) => self.resume(c, p, Some(&body)).await?,
            None => Resume::Fresh,
        };
        let (sent_body, token, region) = match resume {
            Resume::Adopt(id) => {
                let live = self.adopt(c, &id, inputs).await?;
                // Compared with the request that made it, not the manifest of now, so names and
                // tags changed since are brought up to date (the simulation's seed 69). Made under
                // the address it had before a rename: its tag is brought up too.
                let mut sent = pending
                    .as_ref()
                    .and_then(|p| p.request.clone())
                    .unwrap_or_else(|| body.clone());
                if let Some(tag) = live.pointer(&format!("/freeformTags/{ADDRESS_TAG}")) {
                    if sent.get("freeformTags").is_some() {
                        sent["freeformTags"][ADDRESS_TAG] = tag.clone();
                    }
                }
                return self.finish(c, &id, &sent, &body).await;
            }
            Resume::Resend(stored, token, region) => {
                self.progress.step(
                    &label(c),
                    "resuming an unfinished create with its retry token and request",
                );
                (stored, token, region)
            }
            Resume::Fresh => {
                let token = crate::oci::client::new_retry_token();
                // A test-only switch skips the record, to prove the simulation catches it.
                if !crate::failpoint::switched_on(crate::failpoint::SKIP_PENDING_SAVE) {
                    self.record_pending(c, &body, &token).await?;
                }
                (body.clone(), token, c.region.clone())
            }
        };
        let (id, live, etag) = match self
            .send_create(c, region.as_deref(), &sent_body, token)
            .await
        {
            Ok(x) => x,
            Err(e) => {
                if made_nothing(&e) {
                    self.clear_pending(c).await?;
                }
                return Err(self.oci(&c.address, e));
            }
        };
        // One save records the id and clears the pending create.
        self.store_read(c, &id, live, etag, inputs).await?;
        self.finish(c, &id, &sent_body, &body).await
    }

    /// Resolve the address's unfinished create without making anything new of the manifest's:
    /// resend its stored request with its token to the region it was sent to, or (a token past
    /// its window) look for what it made there. Returns what it made — recorded as the address's
    /// object, and ready — or `None` when it made nothing (the pending create is then dropped).
    /// Without a pending create, the address's object as recorded.
    pub(super) async fn resolve_pending(&self, c: &Change) -> Result<Option<String>, NodeError> {
        let pending = self
            .state
            .lock()
            .await
            .resources
            .get(&c.address)
            .and_then(|r| r.pending_create.clone());
        let Some(p) = pending else {
            return Ok(self.id_of(&c.address).await);
        };
        let id = match self.resume(c, &p, None).await? {
            Resume::Adopt(id) => {
                self.adopt(c, &id, None).await?;
                id
            }
            Resume::Resend(stored, token, region) => {
                self.progress.step(
                    &label(c),
                    "resending an unfinished create with its retry token, to learn what it made",
                );
                match self.send_create(c, region.as_deref(), &stored, token).await {
                    Ok((id, live, etag)) => {
                        self.store_read(c, &id, live, etag, None).await?;
                        id
                    }
                    Err(e) if made_nothing(&e) => {
                        self.progress
                            .step(&label(c), "the unfinished create made nothing");
                        self.clear_pending(c).await?;
                        return Ok(None);
                    }
                    Err(e) => return Err(self.oci(&c.address, e)),
                }
            }
            Resume::Fresh => {
                self.progress.step(
                    &label(c),
                    "the unfinished create made nothing that can be found",
                );
                self.clear_pending(c).await?;
                return Ok(None);
            }
        };
        self.wait_ready(c, &id).await?;
        Ok(Some(id))
    }

    /// Record `id`, made by an unfinished earlier create, as the address's object; its read.
    async fn adopt(
        &self,
        c: &Change,
        id: &str,
        inputs: Option<Map<String, Value>>,
    ) -> Result<Value, NodeError> {
        self.progress.step(
            &label(c),
            &format!("adopting {id}, created by an unfinished earlier apply"),
        );
        let (live, etag) = self
            .read(c, id)
            .await
            .map_err(|e| self.oci(&c.address, e))?;
        self.store_read(c, id, live.clone(), etag, inputs).await?;
        Ok(live)
    }

    /// LaunchInstance / CreateImage with `body` and `token`, in `region` (`None`: the
    /// provider's): the new id, its JSON and etag.
    async fn send_create(
        &self,
        c: &Change,
        region: Option<&str>,
        body: &Value,
        token: String,
    ) -> Result<(String, Value, Option<String>), OciError> {
        let client = self.clients.for_region(region)?;
        let opts = MutationOptions {
            if_match: None,
            retry_token: Some(token),
        };
        match c.kind {
            Kind::Instance => {
                let details: LaunchInstanceDetails = serde_json::from_value(body.clone())
                    .map_err(|e| super::actions::decode_error("LaunchInstance", e))?;
                client
                    .launch_instance(&details, &opts)
                    .await
                    .map(|r| (r.body.id.clone(), to_json(r.body), r.etag))
            }
            Kind::Image => {
                let details: CreateImageDetails = serde_json::from_value(body.clone())
                    .map_err(|e| super::actions::decode_error("CreateImage", e))?;
                client
                    .create_image(&details, &opts)
                    .await
                    .map(|r| (r.body.id.clone(), to_json(r.body), r.etag))
            }
        }
    }

    /// Decide how to go on with a pending create (module doc). `body` is the request the plan
    /// would send now (`None`: the address is not created again — the create is only resolved).
    async fn resume(
        &self,
        c: &Change,
        p: &PendingCreate,
        body: Option<&Value>,
    ) -> Result<Resume, NodeError> {
        // Where it was sent: recorded, or (older states) as the kiln that wrote it chose.
        let region = p.sent_region().or_else(|| c.region.clone());
        let stored = p
            .request
            .clone()
            .or_else(|| body.filter(|b| p.request_digest == digest(b)).cloned());
        if let (true, Some(stored)) = (p.token_fresh(Utc::now()), stored) {
            return Ok(Resume::Resend(stored, p.retry_token.clone(), region));
        }
        self.progress.step(
            &label(c),
            "looking for what an unfinished earlier create may have made",
        );
        Ok(
            match self.find_orphan(c, p, body, region.as_deref()).await? {
                Some(id) => Resume::Adopt(id),
                None => Resume::Fresh,
            },
        )
    }

    async fn record_pending(&self, c: &Change, body: &Value, token: &str) -> Result<(), NodeError> {
        let kind = state_kind(c.kind);
        let pc = PendingCreate {
            retry_token: token.to_string(),
            request_digest: digest(body),
            request: Some(body.clone()),
            started_at: Utc::now(),
            display_name: str_at(body, "displayName").map(str::to_string),
            compartment: str_at(body, "compartmentId").map(str::to_string),
            region: Some(
                c.region
                    .clone()
                    .unwrap_or_else(|| self.clients.default_region().to_string()),
            ),
            address: Some(c.address.clone()),
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
        .await
    }

    async fn clear_pending(&self, c: &Change) -> Result<(), NodeError> {
        self.record(&c.address, |st| {
            if let Some(r) = st.resources.get_mut(&c.address) {
                r.pending_create = None;
                if r.is_empty() {
                    st.resources.remove(&c.address);
                }
            }
        })
        .await
    }

    /// After the create: wait until ready, refresh a capture's source, and bring a resumed
    /// create's names and tags up to the manifest (`sent` was the request, `wanted` the plan's).
    async fn finish(
        &self,
        c: &Change,
        id: &str,
        sent: &Value,
        wanted: &Value,
    ) -> Result<String, NodeError> {
        let live = self.wait_ready(c, id).await?;
        if let Some(src) = str_at(wanted, "instanceId") {
            // The capture moved the source through CREATING_IMAGE (new etags): read it again so the
            // next action on it (a restart) sends the etag kiln itself caused, not a stale one.
            self.refresh_source(src).await?;
        }
        if sent != wanted {
            self.converge(c, id, sent, wanted, &live).await?;
        }
        Ok(id.to_string())
    }

    /// Update what can change in place where the manifest moved on since `sent`.
    async fn converge(
        &self,
        c: &Change,
        id: &str,
        sent: &Value,
        wanted: &Value,
        live: &Value,
    ) -> Result<(), NodeError> {
        let mut update = Map::new();
        if str_at(sent, "displayName") != str_at(wanted, "displayName") {
            if let Some(n) = wanted.get("displayName") {
                update.insert("displayName".into(), n.clone());
            }
        }
        for key in ["freeformTags", "definedTags"] {
            let (was, now) = (&sent[key], &wanted[key]);
            if was == now {
                continue;
            }
            // OCI replaces whole maps: keep what the resource has, minus what kiln sent and the
            // manifest no longer has, plus the manifest's.
            let mut merged = live[key].as_object().cloned().unwrap_or_default();
            if let Some(was) = was.as_object() {
                for k in was.keys() {
                    if now.get(k).is_none() {
                        merged.remove(k);
                    }
                }
            }
            if let Some(now) = now.as_object() {
                for (k, v) in now {
                    merged.insert(k.clone(), v.clone());
                }
            }
            update.insert(key.into(), Value::Object(merged));
        }
        let others: Vec<&String> = wanted
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| {
                !matches!(k.as_str(), "displayName" | "freeformTags" | "definedTags")
                    && sent.get(k.as_str()) != Some(v)
            })
            .map(|(k, _)| k)
            .collect();
        if !others.is_empty() {
            self.behind
                .lock()
                .expect("behind")
                .insert(c.address.clone());
            self.progress.step(
                &label(c),
                &format!(
                    "created as first requested; the manifest changed `{}` since — `kiln plan` shows what remains",
                    others.iter().map(|k| k.as_str()).collect::<Vec<_>>().join("`, `")
                ),
            );
        }
        if update.is_empty() {
            return Ok(());
        }
        self.progress.step(
            &label(c),
            "updating names and tags changed since the first request",
        );
        // The version of kiln's own last read, after its own create.
        let (etag, seen) = self.recorded_version(c).await?;
        self.touch(&c.address).await;
        self.update_with(c, id, Value::Object(update), etag, seen)
            .await
    }

    /// Wait until the new resource is ready; record and return that read.
    async fn wait_ready(&self, c: &Change, id: &str) -> Result<Value, NodeError> {
        let (target, failed): (&[&str], &[&str]) = match c.kind {
            Kind::Instance => (&["RUNNING"], &["TERMINATING", "TERMINATED"]),
            Kind::Image => (&["AVAILABLE"], &["DELETED", "DISABLED"]),
        };
        self.progress
            .step(&label(c), &format!("waiting for {}", target[0]));
        let r = self
            .wait_for(c, id, target, failed, self.wait(c))
            .await
            .map_err(|e| self.oci(&c.address, e))?;
        self.store_read(c, id, r.body.clone(), r.etag, None).await?;
        if c.kind == Kind::Instance && self.rollout_of(&c.address).is_some() {
            self.seen_running
                .lock()
                .expect("seen running")
                .insert(id.to_string(), r.body.clone());
        }
        Ok(r.body)
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
            .at(instance_id)
            .get_instance(instance_id)
            .await
            .map_err(|e| self.oci(&address, e))?;
        let body = to_json(r.body);
        self.record(&address, |st| {
            if let Some(x) = st.resources.get_mut(&address) {
                x.etag = r.etag;
                x.attributes = body.into();
                x.updated_at = Utc::now();
            }
        })
        .await
    }

    /// The resource an unfinished create made, if any, in `region` (where it was sent): same
    /// display name and compartment, created since the create started (5 minutes of clock skew
    /// allowed), tagged with the address it was sent under or this one (a `[[moved]]` or `kiln
    /// state mv` since renamed it) or not tagged by kiln, and not already an object of any
    /// address. More than one candidate is refused: kiln does not guess.
    async fn find_orphan(
        &self,
        c: &Change,
        p: &PendingCreate,
        body: Option<&Value>,
        region: Option<&str>,
    ) -> Result<Option<String>, NodeError> {
        let name = p.display_name.clone().or_else(|| {
            body.and_then(|b| str_at(b, "displayName"))
                .map(str::to_string)
        });
        let compartment = p.compartment.clone().or_else(|| {
            body.and_then(|b| str_at(b, "compartmentId"))
                .map(str::to_string)
        });
        let (Some(name), Some(compartment)) = (name, compartment) else {
            return Ok(None);
        };
        let client = self
            .clients
            .for_region(region)
            .map_err(|e| self.oci(&c.address, e))?;
        let since = (p.started_at - chrono::Duration::minutes(5)).to_rfc3339();
        let sent_under = p.sent_address();
        let ours = |tags: &crate::oci::models::FreeformTags| {
            tags.get(ADDRESS_TAG)
                .is_none_or(|a| *a == c.address || sent_under.as_deref() == Some(a.as_str()))
        };
        let candidates: Vec<String> = match c.kind {
            Kind::Instance => client
                .list_instances(&ListInstances {
                    compartment_id: compartment,
                    display_name: Some(name),
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
                                && ours(&i.freeform_tags)
                        })
                        .map(|i| i.id)
                        .collect()
                }),
            Kind::Image => client
                .list_images(&ListImages {
                    compartment_id: compartment,
                    display_name: Some(name),
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
                                && ours(&i.freeform_tags)
                        })
                        .map(|i| i.id)
                        .collect()
                }),
        }
        .map_err(|e| self.oci(&c.address, e))?;
        let known: std::collections::HashSet<String> = self
            .state
            .lock()
            .await
            .resources
            .values()
            .flat_map(|r| r.ids().map(str::to_string).collect::<Vec<_>>())
            .collect();
        let candidates: Vec<String> = candidates
            .into_iter()
            .filter(|id| !known.contains(id))
            .collect();
        match candidates.len() {
            0 | 1 => Ok(candidates.into_iter().next()),
            _ => Err(self.invalid(
                c,
                format!(
                    "an unfinished earlier create may have made any of {}; kiln does not guess — keep one with `kiln import`, delete the others, then apply again",
                    candidates.join(", ")
                ),
            )),
        }
    }
}
