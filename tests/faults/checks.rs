//! The invariants every scenario is held to after each faulted apply and its convergence, against
//! the emulators' own records: [`invariants`] over what [`expect`] says is declared; [`converge`]
//! and [`final_plan_is_empty`] after the next apply.

use super::*;

/// What a run may do to each address of v1, from its own state.
pub(crate) struct Expect {
    /// Addresses v2 declares, and the display name each has.
    pub(crate) declared: BTreeMap<String, String>,
    /// OCIDs of v1 that v2 keeps (neither replaced nor destroyed): they must stay live.
    pub(crate) kept: BTreeMap<String, String>,
}

pub(crate) fn expect(v1: &State, v2_addresses: &BTreeSet<String>) -> Expect {
    let replaced = |a: &str| {
        a.starts_with("instance.cbd")
            || a.starts_with("instance.dbc")
            || a == "image.base"
            || a == "instance.onbase"
    };
    let kept = v1
        .resources
        .iter()
        .filter(|(a, _)| v2_addresses.contains(*a) && !replaced(a))
        .map(|(a, r)| (a.clone(), r.id.clone().expect("v1 applied")))
        .collect();
    let declared = v2_addresses
        .iter()
        .map(|a| (a.clone(), a.split_once('.').unwrap().1.to_string()))
        .collect();
    Expect { declared, kept }
}

/// Live resources in the emulators' own records (one world per region): (id, display name,
/// kiln-address tag).
pub(crate) fn live(worlds: &[World]) -> Vec<(String, String, Option<String>)> {
    let gone = ["TERMINATING", "TERMINATED", "DELETED"];
    worlds
        .iter()
        .flat_map(|w| w.instances.values().chain(w.images.values()))
        .filter(|r| !gone.contains(&r.state()))
        .filter(|r| r.body["displayName"] != NEWER_IMAGE)
        .map(|r| {
            (
                r.id().to_string(),
                r.body["displayName"].as_str().unwrap_or("").to_string(),
                r.body["freeformTags"]["kiln-address"]
                    .as_str()
                    .map(str::to_string),
            )
        })
        .collect()
}

/// Every invariant, checked against the emulators' records (one world per region); `Err` lists
/// the violations.
pub(crate) fn invariants(
    worlds: &[World],
    state: &State,
    exp: &Expect,
    last_serial: u64,
    converged: bool,
) -> Result<(), String> {
    let mut bad = Vec::new();
    if state.serial < last_serial {
        bad.push(format!(
            "the serial went back from {last_serial} to {}",
            state.serial
        ));
    }
    let live = live(worlds);
    let live_ids: BTreeSet<&str> = live.iter().map(|(id, _, _)| id.as_str()).collect();
    // Never twice.
    let mut per_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, name, _) in &live {
        *per_name.entry(name.as_str()).or_default() += 1;
    }
    for (name, n) in &per_name {
        let address = exp
            .declared
            .iter()
            .find(|(_, d)| d.as_str() == *name)
            .map(|(a, _)| a.as_str());
        let deposed = address
            .and_then(|a| state.resources.get(a))
            .map(|r| r.deposed.len())
            .unwrap_or(0);
        let (allowed, why) = match (address, converged) {
            (Some(_), true) => (1, "declared once"),
            (Some(_), false) => (1 + deposed, "declared once (plus what is deposed)"),
            (None, true) => (0, "not declared"),
            // Not declared (destroyed by this run) but possibly not destroyed yet.
            (None, false) => (1, "destroyed or about to be"),
        };
        if *n > allowed {
            bad.push(format!("`{name}` is live {n} times ({why})"));
        }
    }
    // Never lost: every live resource kiln made is in the state (its object, deposed, or the
    // resource of a pending create sent under its tag — the record may have been renamed since);
    // once converged, each is the object of the address it is tagged with (renames retagged).
    for (id, name, tag) in &live {
        let Some(address) = tag else {
            bad.push(format!("{id} (`{name}`) has no kiln-address tag"));
            continue;
        };
        let holder = state
            .resources
            .iter()
            .find(|(_, r)| {
                r.id.as_deref() == Some(id.as_str()) || r.deposed.iter().any(|d| &d.id == id)
            })
            .map(|(a, _)| a.as_str());
        let pending = state.resources.iter().any(|(a, r)| {
            r.pending_create
                .as_ref()
                .is_some_and(|p| a == address || p.sent_address().as_deref() == Some(address))
        });
        match holder {
            None if pending && !converged => {}
            None => bad.push(format!("{id} (`{address}`) is live but not in the state")),
            Some(a) if converged && a != address => bad.push(format!(
                "{id} is recorded at `{a}` but tagged `{address}` (not retagged)"
            )),
            Some(_) => {}
        }
    }
    // Nothing declared destroyed.
    for (address, id) in &exp.kept {
        if !live_ids.contains(id.as_str()) {
            bad.push(format!(
                "{id} (`{address}`, declared and kept) was destroyed"
            ));
        }
        if converged && state.resources.get(address).and_then(|r| r.id.as_deref()) != Some(id) {
            bad.push(format!("`{address}` no longer records {id}"));
        }
    }
    // Network facts, when recorded, are the instance's own primary VNIC's; once converged, every
    // live instance has them.
    for (address, r) in &state.resources {
        let Some(id) = r.id.as_deref().filter(|id| live_ids.contains(id)) else {
            continue;
        };
        let vnic = worlds.iter().find_map(|w| {
            w.vnic_attachments
                .values()
                .find(|a| a["instanceId"] == id)
                .and_then(|a| w.vnics.get(a["vnicId"].as_str().unwrap_or("")))
        });
        match (&r.network, vnic) {
            (Some(n), Some(v)) => {
                if v["id"] != n.vnic_id.as_str()
                    || v["privateIp"].as_str() != n.private_ip.as_deref()
                    || v["publicIp"].as_str() != n.public_ip.as_deref()
                {
                    bad.push(format!(
                        "`{address}` records the network {n:?}, the emulator has {v}"
                    ));
                }
            }
            (Some(n), None) => bad.push(format!(
                "`{address}` records the network {n:?}, the emulator has no VNIC for {id}"
            )),
            (None, _) if converged && id.starts_with("ocid1.instance.") => {
                bad.push(format!("`{address}` ({id}) has no network facts"))
            }
            (None, _) => {}
        }
    }
    if converged {
        for (address, r) in &state.resources {
            if !r.deposed.is_empty() || r.pending_create.is_some() {
                bad.push(format!(
                    "`{address}` still has deposed objects or a pending create"
                ));
            }
            if r.id.as_deref().is_some_and(|id| !live_ids.contains(id)) {
                bad.push(format!("`{address}` records {:?}, which is not live", r.id));
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("\n  "))
    }
}

/// The next apply after a fault: it succeeds, keeps the invariants (the serial grows from
/// `since`) and leaves an empty plan.
pub(crate) async fn converge(s: &Scenario, since: u64) -> Result<(), String> {
    let again = apply(s.project.path(), &s.store(), &s.clients()).await?;
    if !again.ok() {
        return Err(format!("the next apply failed:\n{}", report_errors(&again)));
    }
    let st2 = s.state().await?;
    invariants(&[s.project.emu.snapshot()], &st2, &s.expect, since, true)
        .map_err(|v| format!("after the next apply:\n  {v}"))?;
    let p = plan(s.project.path(), &s.store(), &s.clients()).await?;
    final_plan_is_empty(&p)
}

/// The plan after convergence changes, forgets and reads nothing, and sees no drift.
pub(crate) fn final_plan_is_empty(p: &kiln::plan::Plan) -> Result<(), String> {
    if !p.changes.is_empty()
        || !p.drift.is_empty()
        || !p.forget.is_empty()
        || !p.forget_deposed.is_empty()
        || !p.read_network.is_empty()
    {
        return Err(format!(
            "the final plan is not empty:\n{}",
            kiln::plan::render::text(p, kiln::plan::render::Style::default())
        ));
    }
    Ok(())
}
