//! One desired resource's nodes, decided in order: create (not in state, never created, or gone
//! from OCI); replace (an attribute that cannot change in place differs, or `--replace`) — both
//! refused for an adopted image, which kiln cannot make; move and update; start or stop after
//! them; and its drift (state vs live, for what the manifest manages, an instance's power state
//! included: [`power_drift`]).

use serde_json::Value;

use super::super::desired::{DesiredResource, DesiredValue, Lookup, Power};
use super::super::diff::{self, Resolved};
use super::super::from_manifest::ADDRESS_TAG;
use super::super::{Action, AttrChange, AttrClass, Change, Drift, Kind};
use super::{instance_running, BuildError, Graph, LiveRead};

/// The power state an instance's lifecycle state stands for: a transition counts as the state it
/// is heading to (PROVISIONING and STARTING are RUNNING, STOPPING is STOPPED — what a plan made
/// now would see once it settles, and what a start or stop kiln sent leads to). `None` for states
/// that say nothing of power: CREATING_IMAGE and MOVING (the instance comes back as it was),
/// and the gone ones (reported as gone, not as drift).
fn power_of(lifecycle: &str) -> Option<&'static str> {
    match lifecycle {
        "RUNNING" | "STARTING" | "PROVISIONING" => Some("RUNNING"),
        "STOPPED" | "STOPPING" => Some("STOPPED"),
        _ => None,
    }
}

/// Drift of an instance's power state (the manifest's `state`): the state recorded it settled
/// in one power state and OCI reports the other (or a transition to it) — someone started or
/// stopped it. A state recorded mid-transition (an update of the shape reboots the instance and
/// kiln records the answer, STOPPING) says nothing of where it ended: not compared. Shown as
/// the lifecycle states recorded and read.
fn power_drift(recorded: Option<&str>, live: Option<&str>) -> Option<AttrChange> {
    let (recorded, live) = (recorded?, live?);
    if !matches!(recorded, "RUNNING" | "STOPPED") {
        return None;
    }
    let (was, now) = (power_of(recorded)?, power_of(live)?);
    (was != now).then(|| AttrChange {
        path: "state".into(),
        before: Value::String(recorded.into()),
        after: Value::String(live.into()),
        forces_replacement: false,
        why: None,
    })
}

/// A resource's reads, parsed ([`Graph::read`]).
struct Read {
    live: Value,
    drift: Vec<AttrChange>,
    /// Tagged with the address it was renamed from (an accepted rename, [`super::super::tags`]):
    /// that address and the live freeform tags, to retag it.
    renamed: Option<(String, Value)>,
}

impl Graph<'_, '_> {
    /// Decide `d`'s nodes (in dependency order, so a reference to a resource this plan creates or
    /// replaces is "known after apply").
    /// What the reads of `d` say, parsed: the top-level fields of its live read (or, without a
    /// refresh, of its state) that the manifest manages — every comparison reads those alone —
    /// and its drift. `None`: no object, or not read (it is created). Parsed when the resource's
    /// turn comes, and dropped after it: the plan keeps the text.
    fn read(&self, d: &DesiredResource) -> Option<Read> {
        let inp = self.inp;
        let prior = inp.prior.get(&d.address)?;
        prior.id.as_ref()?;
        let raw = if inp.refreshed {
            &self.live_of(&d.address)?.body
        } else {
            &prior.attributes
        };
        let mut keys: Vec<&str> = d
            .attrs
            .iter()
            .filter_map(|a| match &a.lookup {
                Lookup::Live(p) => p.first().map(String::as_str),
                Lookup::Input(_) => None,
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let live = raw.parse_keys(&keys);
        // The same text as the state's: nothing drifted.
        let drift = if inp.refreshed && raw.text() != prior.attributes.text() {
            let mut drift = diff::drift(d, &prior.attributes.parse_keys(&keys), &live);
            if d.kind == Kind::Instance && !d.ignores("state") {
                drift.extend(power_drift(
                    prior.attributes.top_str("lifecycleState").as_deref(),
                    raw.top_str("lifecycleState").as_deref(),
                ));
            }
            drift
        } else {
            Vec::new()
        };
        // Only a live read can say it was renamed; the tags are in `live` when the manifest
        // manages some, else found in the text.
        let address_tag = match keys.contains(&"freeformTags") {
            _ if !inp.refreshed => None,
            true => live["freeformTags"][ADDRESS_TAG]
                .as_str()
                .map(str::to_string),
            false => raw.str_at(&["freeformTags", ADDRESS_TAG]),
        };
        let renamed = address_tag
            .filter(|t| *t != d.address)
            .map(|t| (t, raw.parse_keys(&["freeformTags"])["freeformTags"].take()));
        Some(Read {
            live,
            drift,
            renamed,
        })
    }

    pub(super) fn resource(&mut self, d: &DesiredResource) -> Result<(), BuildError> {
        let inp = self.inp;
        let empty = LiveRead::new(Default::default(), None);
        let prior = inp.prior.get(&d.address);
        let id = prior.and_then(|p| p.id.clone());
        let state_read;
        let live: Option<&LiveRead> = if inp.refreshed {
            self.live_of(&d.address)
        } else {
            state_read = prior.map(|p| LiveRead::new(p.attributes.clone(), None));
            state_read.as_ref()
        };
        let resolve = |addr: &str| -> Resolved {
            if self.recreated.contains_key(addr) {
                return Resolved::AfterApply(addr.to_string());
            }
            match inp.prior.get(addr).and_then(|p| p.id.clone()) {
                Some(id) => Resolved::Known(Value::String(id)),
                None => Resolved::AfterApply(addr.to_string()),
            }
        };
        let base = Change {
            address: d.address.clone(),
            kind: d.kind,
            region: d.region.clone(),
            action: Action::Create,
            reason: String::new(),
            attributes: Vec::new(),
            id: id.clone(),
            etag: live.and_then(|l| l.etag.clone()),
            request: None,
            inputs: None,
            depends_on: Vec::new(),
            deposed: false,
            observed: None,
            pending: false,
        };

        // 1. create
        let gone = id.is_some() && live.is_none_or(LiveRead::is_gone);
        if id.is_none() || gone {
            if let Some(adopted) = d.adopted() {
                return Err(BuildError::AdoptedImage {
                    address: d.address.clone(),
                    id: adopted.to_string(),
                    doing: match gone {
                        true => "created again (it is gone from OCI)".into(),
                        false => "created (the state does not record it)".into(),
                    },
                });
            }
            if gone {
                self.drift.push(Drift {
                    address: d.address.clone(),
                    attributes: Vec::new(),
                    gone: Some(match live {
                        Some(l) => format!(
                            "{} is {} in OCI",
                            id.as_deref().unwrap_or(""),
                            l.lifecycle()
                        ),
                        None => format!("{} was not found in OCI", id.as_deref().unwrap_or("")),
                    }),
                });
            }
            let attrs: Vec<AttrChange> = d
                .attrs
                .iter()
                .filter(|a| a.class != AttrClass::Power)
                .map(|a| AttrChange {
                    path: a.path.clone(),
                    before: Value::Null,
                    after: match &a.value {
                        DesiredValue::Known(v) => v.clone(),
                        DesiredValue::IdOf(addr) => match resolve(addr) {
                            Resolved::Known(v) => v,
                            Resolved::AfterApply(a) => {
                                Value::String(format!("(id of {a}, known after apply)"))
                            }
                        },
                    },
                    forces_replacement: false,
                    why: None,
                })
                .collect();
            let pending = prior.filter(|p| p.pending_create && !gone);
            // An unfinished create sent to another region than the manifest now gives: what it
            // made is replaced (a resource cannot move to another region).
            let wanted_region = d.region.as_deref().or(inp.default_region);
            let moved_from = pending
                .and_then(|p| p.pending_region.as_deref())
                .filter(|sent| wanted_region.is_some_and(|w| w != *sent));
            let (action, reason) = match (pending, moved_from) {
                (_, Some(sent)) => (
                    Action::Replace,
                    format!(
                        "an earlier create did not finish in {sent}, and the manifest now puts it in {}: what that create made is resolved, then replaced",
                        wanted_region.unwrap_or_default()
                    ),
                ),
                (Some(p), None) if p.pending_stale => (
                    Action::Create,
                    "an earlier create did not finish and its retry token is past its window: kiln looks for what it made before creating anything".to_string(),
                ),
                (Some(_), None) => (
                    Action::Create,
                    "an earlier create did not finish: it is resumed with the same retry token"
                        .to_string(),
                ),
                (None, _) if gone => (
                    Action::Create,
                    "gone from OCI: it is created again".to_string(),
                ),
                (None, _) => (Action::Create, "not in state".to_string()),
            };
            let mut attrs: Vec<AttrChange> = attrs;
            if let (Some(sent), Some(want)) = (moved_from, wanted_region) {
                attrs.insert(
                    0,
                    AttrChange {
                        path: "region".into(),
                        before: Value::String(sent.into()),
                        after: Value::String(want.into()),
                        forces_replacement: true,
                        why: Some("a resource cannot move to another region".into()),
                    },
                );
            }
            let i = self.push(Change {
                action,
                reason,
                attributes: attrs,
                id: None,
                etag: None,
                request: Some(d.create_body.clone()),
                inputs: Some(d.input_values().into()),
                pending: moved_from.is_some(),
                ..base
            });
            self.recreated.insert(d.address.clone(), action);
            if d.power == Some(Power::Stopped) {
                let s = self.push(Change {
                    address: d.address.clone(),
                    kind: d.kind,
                    region: d.region.clone(),
                    action: Action::Stop,
                    reason: "desired state is STOPPED".into(),
                    attributes: Vec::new(),
                    id: None,
                    etag: None,
                    request: None,
                    inputs: None,
                    depends_on: Vec::new(),
                    deposed: false,
                    observed: None,
                    pending: false,
                });
                self.nodes[s].after.push(i);
            }
            return Ok(());
        }
        let live = live.unwrap_or(&empty);
        let prior = prior.expect("an id comes from state");
        let Read {
            live: live_body,
            drift: changed,
            renamed,
        } = self
            .read(d)
            .expect("a resource with an object that was read");

        // 5. drift (reported even when the plan also fixes it)
        if inp.refreshed && !changed.is_empty() {
            self.drift.push(Drift {
                address: d.address.clone(),
                attributes: changed,
                gone: None,
            });
        }

        // 2.-3. attribute changes
        let mut diffs = diff::diff(d, &live_body, &prior.inputs, &resolve);
        // A resource lives in one region: another region is another resource.
        let wanted_region = d.region.as_deref().or(inp.default_region);
        let region_now = id.as_deref().and_then(crate::region::from_ocid);
        if let (Some(want), Some(now)) = (wanted_region, region_now) {
            if want != now {
                diffs.push(diff::AttrDiff {
                    change: AttrChange {
                        path: "region".into(),
                        before: Value::String(now.into()),
                        after: Value::String(want.into()),
                        forces_replacement: true,
                        why: Some("a resource cannot move to another region".into()),
                    },
                    class: AttrClass::Replace,
                });
            }
        }
        // A renamed resource gets the address it has now.
        if let Some((tagged, _)) = &renamed {
            diffs.push(diff::AttrDiff {
                change: AttrChange {
                    path: format!("freeform_tags.{ADDRESS_TAG}"),
                    before: Value::String(tagged.clone()),
                    after: Value::String(d.address.clone()),
                    forces_replacement: false,
                    why: None,
                },
                class: AttrClass::Update,
            });
        }
        let forced = inp.force_replace.contains(&d.address);
        let replace: Vec<_> = diffs
            .iter()
            .filter(|x| x.class == AttrClass::Replace)
            .collect();
        if !replace.is_empty() || forced {
            let mut reason: Vec<String> = replace
                .iter()
                .map(|x| format!("`{}` cannot change in place", x.change.path))
                .collect();
            if forced {
                reason.insert(0, "forced with `--replace`".into());
            }
            if d.prevent_destroy {
                return Err(BuildError::PreventDestroy {
                    address: d.address.clone(),
                });
            }
            if let Some(adopted) = d.adopted() {
                return Err(BuildError::AdoptedImage {
                    address: d.address.clone(),
                    id: adopted.to_string(),
                    doing: format!("replaced ({})", reason.join("; ")),
                });
            }
            self.push(Change {
                action: Action::Replace,
                reason: reason.join("; "),
                attributes: diffs.iter().map(|x| x.change.clone()).collect(),
                request: Some(d.create_body.clone()),
                inputs: Some(d.input_values().into()),
                ..base.clone()
            });
            self.recreated.insert(d.address.clone(), Action::Replace);
            if d.power == Some(Power::Stopped) {
                let r = self.nodes.len() - 1;
                let s = self.push(Change {
                    action: Action::Stop,
                    reason: "desired state is STOPPED".into(),
                    attributes: Vec::new(),
                    id: None,
                    etag: None,
                    ..base.clone()
                });
                self.nodes[s].after.push(r);
            }
            return Ok(());
        }
        let mut own = Vec::new();
        let moves: Vec<_> = diffs
            .iter()
            .filter(|x| x.class == AttrClass::Move)
            .map(|x| x.change.clone())
            .collect();
        if !moves.is_empty() {
            own.push(self.push(Change {
                action: Action::Move,
                reason: "the compartment changed".into(),
                attributes: moves,
                request: Some(serde_json::json!({ "compartmentId": d.compartment }).into()),
                ..base.clone()
            }));
        }
        let updates: Vec<_> = diffs
            .iter()
            .filter(|x| x.class == AttrClass::Update)
            .map(|x| x.change.clone())
            .collect();
        if !updates.is_empty() {
            // An attribute that changes elsewhere than UpdateInstance says where (`why`).
            let names: Vec<_> = updates
                .iter()
                .map(|u| match &u.why {
                    Some(why) => format!("`{}` ({why})", u.path),
                    None => format!("`{}`", u.path),
                })
                .collect();
            let i = self.push(Change {
                action: Action::Update,
                reason: format!("{} changed", names.join(", ")),
                attributes: updates,
                request: Some({
                    let mut body = diff::update_body(d, &live_body, &diffs);
                    if let Some((_, tags)) = &renamed {
                        let now = body.get("freeformTags").unwrap_or(tags).clone();
                        body["freeformTags"] = super::super::tags::retag(&now, &d.address);
                    }
                    body.into()
                }),
                ..base.clone()
            });
            self.nodes[i].after.extend(own.iter().copied());
            own.push(i);
        }

        // 4. power
        if d.kind == Kind::Instance {
            let running = instance_running(live);
            let action = match d.power {
                Some(Power::Running) if !running => {
                    Some((Action::Start, "desired state is RUNNING"))
                }
                Some(Power::Stopped) if running => Some((Action::Stop, "desired state is STOPPED")),
                _ => None,
            };
            if let Some((action, reason)) = action {
                let i = self.push(Change {
                    action,
                    reason: reason.into(),
                    ..base.clone()
                });
                self.nodes[i].after.extend(own.iter().copied());
            }
        }
        Ok(())
    }
}
