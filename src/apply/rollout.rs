//! The executor's side of rollouts ([`crate::plan::rollout`] decides each member's method and
//! the batches the plan shows): the slots a rolling fleet's members take in the walk
//! ([`slots`]), boot volume replacement as an action, and the health gate a member of a rollout
//! passes before its slot goes to the next member — and, for a member launched before its
//! predecessor goes, before that predecessor goes.
//!
//! Slots: each rolling fleet has a surge pool (`max(max_surge, 1)` slots: a member launched
//! before its predecessor goes, or the predecessor of one launched before a crash) and an
//! unavailable pool (`max(max_unavailable, 1)` slots: a member whose predecessor goes first, a
//! boot volume replacement, a member started again). A member holds its slot from its first
//! request to its last (the new one healthy and the old one gone), and the next member starts the
//! moment any slot of its pool frees — the batches the plan shows are the schedule at its
//! slowest, not barriers (BENCHMARKS.md section 7). So at most `count + max_surge` members exist
//! and at least `count - max_unavailable` are healthy at every moment, as with batches; a failed
//! member stops the fleet: nothing of it starts after, the members in flight finish.
//!
//! Boot volume replacement: UpdateInstance with `sourceDetails`, guarded by If-Match like every
//! update; "done" after a lost answer means the instance runs the image asked for. kiln then waits
//! for the UpdateInstance work request (action UPDATED, as terraform-provider-oci's
//! `updateOptionsViaWorkRequest` does; found by listing the instance's work requests when the
//! answer was lost), and records the instance as it is then (back in the state it had: Oracle's
//! docs, "Replacing a Boot Volume").
//!
//! The gate: the instance is RUNNING; then `health_check.command` runs in the manifest directory,
//! without a shell, with `KILN_ADDRESS`, `KILN_INSTANCE_ID`, `KILN_PRIVATE_IP`, `KILN_PUBLIC_IP`
//! (empty when none), `KILN_HOSTNAME` and `KILN_REGION`, tried every `interval` until it exits 0
//! or `timeout` passed; then after `min_healthy_time` the instance must still be RUNNING and the
//! check pass once more. Its output goes to the log (`-v`); on failure its last 20 lines are in
//! the error. A member of a fleet declared STOPPED passes once it launched (RUNNING, or STOPPED
//! when a resumed rollout finds it stopped already): nothing can be checked on it, and a gate
//! waiting for RUNNING would wait for what the manifest says must not be.
//!
//! With `on_failure = "rollback"`, a failure marks the members the rollout moved to go back
//! ([`crate::plan::rollback`]); a create-first member's untouched predecessor is the member again
//! ([`Ctx::give_back`]). A member that fails is marked in the state (its record's
//! `rollout_failed` input, shown by `kiln output`) until it passes.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::oci::models::UpdateInstanceDetails;
use crate::oci::wait::WaitOptions;
use crate::oci::MutationOptions;
use crate::plan::rollback::{image_of_record, MARK};
use crate::plan::rollout::{Gate, Rollout};
use crate::plan::{Action, Change, Kind};

use super::ctx::create_before_destroy;

use super::walk::Slots;

use super::ctx::{label, to_json, Ctx};
use super::execute::NodeError;
use super::guard::Sent;

/// Lines of a failed check's output shown in the error.
const TAIL: usize = 20;

/// Whether `live` runs what a boot volume replacement asked for.
fn replaced(live: &Value, image: Option<&str>, size: Option<u64>) -> bool {
    let s = &live["sourceDetails"];
    image.is_none_or(|i| live["imageId"].as_str() == Some(i) || s["imageId"].as_str() == Some(i))
        && size.is_none_or(|n| {
            s["bootVolumeSizeInGBs"]
                .as_u64()
                .is_some_and(|have| have >= n)
        })
}

/// The slots of `changes`'s rolling fleets (module doc): every node of a member's address (its
/// replacement, a pending create resumed, a predecessor to destroy) is of that member, whose
/// pool is the surge pool when one of its nodes launches before the old instance goes (or
/// destroys a predecessor whose successor exists), the unavailable pool otherwise.
pub(super) fn slots(rollouts: &[Rollout], changes: &[Change]) -> Slots {
    let mut slots = Slots {
        member: vec![None; changes.len()],
        ..Slots::default()
    };
    for (g, r) in rollouts.iter().enumerate() {
        let (surge, unavailable) = (slots.capacity.len(), slots.capacity.len() + 1);
        slots.capacity.push(r.surge.max(1) as usize);
        slots.capacity.push(r.unavailable.max(1) as usize);
        slots.group.extend([g, g]);
        // Members are numbered in the batches' order: the order they take slots in.
        let first = slots.pool.len();
        let mut order: Vec<&str> = Vec::new();
        for m in r.members() {
            if !order.contains(&m.address.as_str()) {
                order.push(&m.address);
            }
        }
        let mut members: std::collections::BTreeMap<&str, (usize, bool)> = Default::default();
        for (i, c) in changes.iter().enumerate() {
            let Some(rank) = order.iter().position(|a| *a == c.address) else {
                continue;
            };
            if c.kind != Kind::Instance {
                continue;
            }
            let create_first = match c.action {
                Action::Delete => c.deposed,
                Action::Replace | Action::Create => {
                    c.inputs.as_ref().and_then(create_before_destroy) == Some(true)
                }
                _ => false,
            };
            let m = members
                .entry(c.address.as_str())
                .or_insert((first + rank, false));
            m.1 |= create_first;
            slots.member[i] = Some(m.0);
        }
        // Every member has at least one node (it is in the batches because of one).
        let mut by_rank: Vec<(usize, bool)> = members.into_values().collect();
        by_rank.sort_unstable();
        slots.pool.resize(first + order.len(), unavailable);
        for (id, launches_first) in by_rank {
            slots.pool[id] = if launches_first { surge } else { unavailable };
        }
    }
    slots
}

impl Ctx {
    /// The rollout `address` is a member of.
    pub(super) fn rollout_of(&self, address: &str) -> Option<&Rollout> {
        self.rollouts
            .iter()
            .find(|r| r.members().any(|m| m.address == address))
    }

    /// UpdateInstance with `sourceDetails` (module doc), then the gate when in a rollout.
    pub(super) async fn boot_volume_replace(&self, c: &Change) -> Result<(), NodeError> {
        let id =
            c.id.clone()
                .ok_or_else(|| self.invalid(c, "boot volume replacement without an id"))?;
        let mut body = self.resolve_text(&c.address, c.request.as_ref()).await?;
        // The primary VNIC's settings go to the VNIC (UpdateVnic) once the volume is replaced,
        // as for any update (`actions::update`).
        let vnic = body
            .as_object_mut()
            .and_then(|m| m.remove(crate::plan::diff::VNIC_UPDATE));
        // The new volume's performance and key, changed in place once it is there.
        let volume = body
            .as_object_mut()
            .and_then(|m| m.remove(crate::plan::diff::BOOT_VOLUME_UPDATE));
        let mut inputs = match &c.inputs {
            Some(i) => self
                .resolve_text(&c.address, Some(i))
                .await?
                .as_object()
                .cloned(),
            None => None,
        };
        // The boot volume settings this plan changes are recorded once the volume has them
        // (`update_boot_volume`); until then a plan compares with the new launch's.
        if let (Some(m), Some(v)) = (inputs.as_mut(), volume.as_ref().and_then(Value::as_object)) {
            for (k, oci, ..) in crate::plan::from_manifest::BOOT_VOLUME_UPDATABLE {
                if v.contains_key(*oci) {
                    m.remove(*k);
                }
            }
        }
        let image = body["sourceDetails"]["imageId"]
            .as_str()
            .map(str::to_string);
        let size = body["sourceDetails"]["bootVolumeSizeInGBs"].as_u64();
        let mut rest = body.clone();
        if let Some(m) = rest.as_object_mut() {
            m.remove("sourceDetails");
        }
        let (etag, seen) = self.if_match(c).await?;
        let sent = self
            .guarded(
                c,
                &id,
                etag,
                seen,
                |live| {
                    replaced(live, image.as_deref(), size)
                        && crate::plan::diff::update_applied(live, &rest)
                },
                |etag| {
                    let (body, id) = (body.clone(), id.clone());
                    async move {
                        let d: UpdateInstanceDetails = serde_json::from_value(body)
                            .map_err(|e| super::actions::decode_error("UpdateInstance", e))?;
                        self.at(&id)
                            .update_instance(&id, &d, &MutationOptions::if_match(etag.as_deref()))
                            .await
                            .map(|r| (to_json(r.body), r.opc_work_request_id))
                    }
                },
            )
            .await?;
        self.progress.step(&label(c), "replacing the boot volume");
        let wr = match sent {
            Sent::Answered((_, Some(wr))) => Some(wr),
            // A lost answer: the newest UpdateInstance work request of the instance.
            _ => {
                let compartment = self
                    .read(c, &id)
                    .await
                    .map_err(|e| self.oci(&c.address, e))?
                    .0["compartmentId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.at(&id)
                    .list_work_requests(&compartment, Some(&id))
                    .await
                    .map_err(|e| self.oci(&c.address, e))?
                    .into_iter()
                    .filter(|w| w.operation_type == "UpdateInstance")
                    .max_by(|a, b| a.time_accepted.cmp(&b.time_accepted))
                    .map(|w| w.id)
            }
        };
        if let Some(wr) = wr {
            self.at(&id)
                .wait_for_work_request(&wr, &WaitOptions::new(self.timeouts.work_request))
                .await
                .map_err(|e| self.oci(&c.address, e))?;
        }
        let (now, etag) = self
            .read(c, &id)
            .await
            .map_err(|e| self.oci(&c.address, e))?;
        self.store_read(c, &id, now, etag, inputs).await?;
        self.mark_network_stale(&c.address);
        if let Some(details) = vnic {
            self.update_primary_vnic(c, &id, details).await?;
        }
        if let Some(details) = volume {
            self.update_boot_volume(c, &id, details).await?;
        }
        if self.rollout_of(&c.address).is_some() {
            self.gate(c, &id).await?;
        }
        Ok(())
    }

    /// The health gate of the rollout member `c` whose instance is `id` (module doc).
    pub(super) async fn gate(&self, c: &Change, id: &str) -> Result<(), NodeError> {
        let Some(r) = self.rollout_of(&c.address) else {
            return Ok(());
        };
        let (fleet, g) = (r.fleet.clone(), r.gate.clone());
        // `on_failure = "rollback"` on the way forward: where each member returns.
        let previous: Vec<(String, String)> =
            match r.on_failure == "rollback" && r.rollback_to.is_none() {
                true => r
                    .members()
                    .filter_map(|m| Some((m.address.clone(), m.previous.clone()?)))
                    .collect(),
                false => Vec::new(),
            };
        self.rollout_step(&fleet, 0, 1);
        let result = self.gate_inner(c, id, &g).await;
        match &result {
            Ok(()) => self.rollout_step(&fleet, 1, -1),
            Err(_) => self.rollout_step(&fleet, 0, -1),
        }
        let failed = match &result {
            Ok(()) => None,
            Err(e) => Some(e.to_string()),
        };
        let (image, marked_failed) = {
            let st = self.state.lock().await;
            let rec = st.resources.get(&c.address);
            (
                rec.and_then(|r| r.attributes.top_str("imageId")),
                rec.is_some_and(|r| r.inputs.contains_key("rollout_failed")),
            )
        };
        // The first failure starts the rollback; a member of the batch in flight that finishes
        // after it is marked too (see `plan::rollback`).
        let marking = !previous.is_empty() && {
            let mut back = self.rolling_back.lock().expect("rolling back");
            if failed.is_some() {
                back.insert(fleet.clone());
            }
            back.contains(&fleet)
        };
        // A member that passed, was not marked failed before and marks nothing: its record
        // stays as it is, and a commit would only cost the slot's time.
        if failed.is_none() && !marking && !marked_failed {
            return result;
        }
        let mut touched = vec![c.address.clone()];
        if marking {
            touched.extend(previous.iter().map(|(a, _)| a.clone()));
        }
        self.record_at(&c.address, &touched, |st| {
            if marking {
                mark_moved(st, &c.address, &previous);
            }
            if let Some(rec) = st.resources.get_mut(&c.address) {
                let inputs = std::sync::Arc::make_mut(&mut rec.inputs);
                match &failed {
                    Some(why) => {
                        inputs.insert(
                            "rollout_failed".into(),
                            json!({ "image": image, "why": why }),
                        );
                    }
                    None => {
                        inputs.remove("rollout_failed");
                    }
                }
            }
        })
        .await?;
        result
    }

    /// A create-first member that failed its gate in a rollout with `on_failure = "rollback"`:
    /// its predecessor `old` (deposed, never touched) is the member again and the failed `new`
    /// goes. The swap is one commit (`new` deposed, so it stays tracked until it is gone);
    /// the terminate is If-Match'ed with the version kiln recorded of `new`.
    pub(super) async fn give_back(
        &self,
        c: &Change,
        old: &str,
        new: &str,
    ) -> Result<(), NodeError> {
        let Some(r) = self.rollout_of(&c.address) else {
            return Ok(());
        };
        if r.on_failure != "rollback" || r.rollback_to.is_some() {
            return Ok(());
        }
        self.progress.step(
            &label(c),
            &format!("rolling back: {old} is the member again"),
        );
        let (body, etag) = self
            .read(c, old)
            .await
            .map_err(|e| self.oci(&c.address, e))?;
        let (new_etag, seen) = self.recorded_version(c).await?;
        let (old, new) = (old.to_string(), new.to_string());
        self.record(&c.address, |st| {
            let Some(rec) = st.resources.get_mut(&c.address) else {
                return;
            };
            if rec.id.as_deref() != Some(new.as_str()) {
                return;
            }
            rec.deposed.retain(|d| d.id != old);
            rec.deposed.push(crate::state::Deposed {
                id: new.clone(),
                etag: rec.etag.clone(),
                compartment: rec.compartment.clone(),
                since: chrono::Utc::now(),
                version: None,
            });
            rec.id = Some(old.clone());
            rec.etag = etag;
            rec.compartment = body["compartmentId"].as_str().map(str::to_string);
            rec.attributes = body.into();
            rec.network = None;
            let inputs = std::sync::Arc::make_mut(&mut rec.inputs);
            inputs.remove(MARK);
            inputs.remove("rollout_failed");
            rec.updated_at = chrono::Utc::now();
        })
        .await?;
        self.mark_network_stale(&c.address);
        self.progress
            .step(&label(c), &format!("rolling back: destroying {new}"));
        self.destroy(c, &new, new_etag, seen).await
    }

    /// Count a member on the progress line: `moved` healthy on the new image, `checking` in the
    /// gate (added to what is there).
    fn rollout_step(&self, fleet: &str, moved: usize, checking: i64) {
        let Some(r) = self.rollouts.iter().find(|r| r.fleet == fleet) else {
            return;
        };
        let line = {
            let mut counts = self.rollout_counts.lock().expect("rollout counts");
            let entry = counts
                .entry(fleet.to_string())
                .or_insert((r.size.saturating_sub(r.members().count()), 0));
            entry.0 += moved;
            entry.1 = (entry.1 as i64 + checking).max(0) as usize;
            format!(
                "{}/{} on the new image, {} in health check",
                entry.0, r.size, entry.1
            )
        };
        self.progress.step(&format!("rollout {fleet}"), &line);
    }

    async fn gate_inner(&self, c: &Change, id: &str, g: &Gate) -> Result<(), NodeError> {
        let l = label(c);
        // The create's wait has just seen the new instance RUNNING: that read is the gate's.
        let seen = self.seen_running.lock().expect("seen running").remove(id);
        if g.stopped && seen.is_some() {
            return Ok(());
        }
        if g.stopped {
            // A fleet declared STOPPED: launched is all a member can be (module doc).
            self.progress
                .step(&l, "waiting for it to launch (health gate)");
            self.wait_for(
                c,
                id,
                &["RUNNING", "STOPPED"],
                &["TERMINATING", "TERMINATED"],
                WaitOptions::new(self.timeouts.instance).at_once(),
            )
            .await
            .map_err(|e| self.oci(&c.address, e))?;
            return Ok(());
        }
        let running = match seen {
            Some(body) => body,
            None => {
                self.progress.step(&l, "waiting for RUNNING (health gate)");
                self.wait_for(
                    c,
                    id,
                    &["RUNNING"],
                    &["STOPPED", "TERMINATING", "TERMINATED"],
                    // At once: a member found launched (a resumed or restarted one) is most
                    // often RUNNING already.
                    WaitOptions::new(self.timeouts.instance).at_once(),
                )
                .await
                .map_err(|e| self.oci(&c.address, e))?
                .body
            }
        };
        if g.command.is_empty() && g.min_healthy_ms == 0 {
            return Ok(());
        }
        let env = self.member_env(c, id, &running).await?;
        if !g.command.is_empty() {
            self.progress.step(&l, "health check");
            self.check_until(c, g, &env).await?;
        }
        if g.min_healthy_ms > 0 {
            self.progress
                .step(&l, "healthy: waiting for min_healthy_time");
            tokio::time::sleep(Duration::from_millis(g.min_healthy_ms)).await;
            let (now, _) = self
                .read(c, id)
                .await
                .map_err(|e| self.oci(&c.address, e))?;
            let state = now["lifecycleState"].as_str().unwrap_or_default();
            if state != "RUNNING" {
                return Err(NodeError::Unhealthy {
                    address: c.address.clone(),
                    check: "RUNNING".into(),
                    output: format!("the instance was {state} at the end of `min_healthy_time`"),
                });
            }
            if !g.command.is_empty() {
                let (ok, out) = run_check(g, &env).await;
                if !ok {
                    return Err(unhealthy(
                        c,
                        g,
                        out,
                        "again at the end of `min_healthy_time`",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Run the check every `interval` until it passes or `timeout` passed.
    async fn check_until(
        &self,
        c: &Change,
        g: &Gate,
        env: &[(String, String)],
    ) -> Result<(), NodeError> {
        let start = Instant::now();
        let timeout = Duration::from_millis(g.timeout_ms);
        let mut tries = 0;
        loop {
            tries += 1;
            let (ok, out) = run_check(g, env).await;
            if ok {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(unhealthy(
                    c,
                    g,
                    out,
                    &format!(
                        "{tries} tries in {}",
                        super::progress::human(start.elapsed())
                    ),
                ));
            }
            self.progress.step(
                &label(c),
                &format!("health check failed ({tries} tries), trying again"),
            );
            tokio::time::sleep(Duration::from_millis(g.interval_ms)).await;
        }
    }

    /// The check's environment: the member's address, OCID, addresses, hostname, region.
    async fn member_env(
        &self,
        c: &Change,
        id: &str,
        body: &Value,
    ) -> Result<Vec<(String, String)>, NodeError> {
        let compartment = body["compartmentId"].as_str().unwrap_or_default();
        let attachments = self
            .at(id)
            .list_vnic_attachments(compartment, Some(id))
            .await
            .map_err(|e| self.oci(&c.address, e))?;
        let mut private_ip = String::new();
        let mut public_ip = String::new();
        let mut hostname = String::new();
        for a in attachments
            .iter()
            .filter(|a| a.lifecycle_state == "ATTACHED")
        {
            let Some(vnic_id) = a.vnic_id.as_deref() else {
                continue;
            };
            let v = self
                .at(id)
                .get_vnic(vnic_id)
                .await
                .map_err(|e| self.oci(&c.address, e))?
                .body;
            if v.is_primary != Some(false) {
                private_ip = v.private_ip.unwrap_or_default();
                public_ip = v.public_ip.unwrap_or_default();
                hostname = v.hostname_label.unwrap_or_default();
                break;
            }
        }
        Ok(vec![
            ("KILN_ADDRESS".into(), c.address.clone()),
            ("KILN_INSTANCE_ID".into(), id.to_string()),
            ("KILN_PRIVATE_IP".into(), private_ip),
            ("KILN_PUBLIC_IP".into(), public_ip),
            ("KILN_HOSTNAME".into(), hostname),
            (
                "KILN_REGION".into(),
                crate::region::from_ocid(id).unwrap_or_default().to_string(),
            ),
        ])
    }
}

/// Mark, for `on_failure = "rollback"`, `failed` and every member of `previous` that this rollout
/// moved off its previous image (module doc of [`crate::plan::rollback`]).
fn mark_moved(st: &mut crate::state::State, failed: &str, previous: &[(String, String)]) {
    for (address, image) in previous {
        let Some(rec) = st.resources.get_mut(address) else {
            continue;
        };
        let attributes = rec.attributes.parse();
        let runs = rec.id.as_ref().and(image_of_record(&attributes));
        if address == failed || runs != Some(image.as_str()) {
            std::sync::Arc::make_mut(&mut rec.inputs)
                .insert(MARK.into(), json!({ "image": image }));
        }
    }
}

fn unhealthy(c: &Change, g: &Gate, output: String, how: &str) -> NodeError {
    NodeError::Unhealthy {
        address: c.address.clone(),
        check: format!("`{}` ({how})", g.command.join(" ")),
        output,
    }
}

/// Run the check once, without a shell, in the manifest directory: whether it exited 0, and the
/// last lines of its output. Every line goes to the log.
async fn run_check(g: &Gate, env: &[(String, String)]) -> (bool, String) {
    let dir = Path::new(&g.dir);
    let program = Path::new(&g.command[0]);
    // `./healthy.sh` is the manifest directory's, whatever kiln's own working directory is.
    let program = if program.is_relative() && g.command[0].contains('/') {
        dir.join(program)
    } else {
        program.to_path_buf()
    };
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&g.command[1..])
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let timeout = Duration::from_millis(g.timeout_ms.max(1000));
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            return (
                false,
                format!("`{}` could not be started: {e}", program.display()),
            )
        }
        Err(_) => return (false, "the check did not exit within its timeout".into()),
    };
    let mut tail: VecDeque<String> = VecDeque::new();
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        tracing::info!(target: "kiln::health", "{}: {line}", g.command.join(" "));
        tail.push_back(line.to_string());
        if tail.len() > TAIL {
            tail.pop_front();
        }
    }
    let mut text: Vec<String> = tail.into_iter().collect();
    text.push(match out.status.code() {
        Some(code) => format!("(exit status {code})"),
        None => "(killed by a signal)".into(),
    });
    (out.status.success(), text.join("\n"))
}
