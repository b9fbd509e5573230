//! What changes an instance after its launch: UpdateInstance (a shape change on a running
//! instance reboots it; `sourceDetails` replaces the boot volume, in [`super::boot_replace`]),
//! TerminateInstance, InstanceAction, and ChangeInstanceCompartment / ChangeImageCompartment
//! (MOVING until the work request succeeds).

use serde_json::{json, Map, Value};

use super::api::{
    error, etag_matches, not_found, parse_body, q, required, str_field, string_map, Ctx, Reply,
    Result,
};
use super::boot_replace;
use super::details::{self};
use super::instances::{check_fault_domain, given_shape_config};
use super::shapes::{self};
use super::store::{Coll, Record, Step};
use super::volumes;

fn merge_object(rec: &mut Record, b: &Map<String, Value>, k: &str) {
    if let Some(Value::Object(given)) = b.get(k) {
        let mut cur = rec
            .body
            .get(k)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (kk, v) in given {
            if !v.is_null() {
                cur.insert(kk.clone(), v.clone());
            }
        }
        rec.body.insert(k.into(), Value::Object(cur));
    }
}

pub fn update(ctx: &mut Ctx<'_>, id: &str, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    details::check(&b, details::UPDATE_INSTANCE, "", "UpdateInstanceDetails")?;
    let given_cfg = given_shape_config(&b, "UpdateInstanceShapeConfigDetails")?;
    let defined = ctx.defined_tags(&b)?;
    let rec = ctx.instance(id)?.clone();
    ctx.check_etag(&rec)?;
    boot_replace::not_busy(ctx, &rec)?;
    if matches!(rec.state(), "TERMINATING" | "TERMINATED") {
        return Err(error(
            409,
            "IncorrectState",
            format!("instance `{id}` is {}", rec.state()),
        ));
    }
    let replacement = match boot_replace::given(&b) {
        Some(src) => Some(boot_replace::check(ctx, &rec, src)?),
        None => None,
    };
    let mut rec = rec;
    if let Some(meta) = string_map(&b, "metadata")? {
        let old = rec
            .body
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for k in ["ssh_authorized_keys", "user_data"] {
            if old.get(k) != meta.get(k) {
                return Err(error(
                    400,
                    "InvalidParameter",
                    format!("metadata `{k}` cannot be changed after launch"),
                ));
            }
        }
        rec.body.insert("metadata".into(), Value::Object(meta));
    }
    if let Some(s) = str_field(&b, "displayName")? {
        rec.body.insert("displayName".into(), json!(s));
    }
    if let Some(t) = string_map(&b, "freeformTags")? {
        rec.body.insert("freeformTags".into(), Value::Object(t));
    }
    if let Some(t) = defined {
        rec.body.insert("definedTags".into(), Value::Object(t));
    }
    if let Some(fd) = str_field(&b, "faultDomain")? {
        check_fault_domain(fd)?;
        rec.body.insert("faultDomain".into(), json!(fd));
    }
    match str_field(&b, "capacityReservationId")? {
        Some("") => {
            rec.body.insert("capacityReservationId".into(), Value::Null);
        }
        Some(r) => {
            super::related::capacity_reservation(ctx, r, rec.str("availabilityDomain"))?;
            if rec
                .body
                .get("preemptibleInstanceConfig")
                .is_some_and(|p| !p.is_null())
            {
                return Err(error(
                    400,
                    "InvalidParameter",
                    "preemptible capacity cannot be used with a capacity reservation",
                ));
            }
            rec.body.insert("capacityReservationId".into(), json!(r));
        }
        None => {}
    }
    for k in [
        "securityAttributes",
        "extendedMetadata",
        "isAIEnterpriseEnabled",
    ] {
        if let Some(v) = b.get(k).filter(|v| !v.is_null()) {
            rec.body.insert(k.into(), v.clone());
        }
    }
    for k in [
        "agentConfig",
        "instanceOptions",
        "availabilityConfig",
        "launchOptions",
    ] {
        merge_object(&mut rec, &b, k);
    }
    let mut reboot = false;
    if b.contains_key("shape") || given_cfg.is_some() {
        let old_shape = shapes::known(rec.str("shape"))?;
        let shape = match str_field(&b, "shape")? {
            Some(s) => shapes::known(s)?,
            None => old_shape,
        };
        if shape.arch != old_shape.arch {
            return Err(error(
                400,
                "InvalidParameter",
                format!(
                    "shape `{}` cannot run this instance's {} image (it is {})",
                    shape.name,
                    old_shape.arch.image_arch(),
                    shape.arch.image_arch()
                ),
            ));
        }
        // What is left out keeps its current value (on a flexible shape).
        let cfg = match (shape.flex, given_cfg) {
            (None, _) => given_cfg.cloned(),
            (Some(_), given) => {
                let cur = rec.body.get("shapeConfig").and_then(Value::as_object);
                let mut m = Map::new();
                if old_shape.flex.is_some() {
                    for k in ["ocpus", "memoryInGBs", "baselineOcpuUtilization"] {
                        if let Some(v) = cur.and_then(|c| c.get(k)).filter(|v| !v.is_null()) {
                            m.insert(k.into(), v.clone());
                        }
                    }
                }
                if let Some(g) = given {
                    if g.contains_key("vcpus") && !g.contains_key("ocpus") {
                        m.remove("ocpus");
                    }
                    m.extend(g.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                Some(m)
            }
        };
        let new_cfg = shapes::instance_config(shape, cfg.as_ref())?;
        let old_cfg = rec.body.get("shapeConfig").cloned().unwrap_or(Value::Null);
        let resized = shape.name != old_shape.name
            || new_cfg["ocpus"] != old_cfg["ocpus"]
            || new_cfg["memoryInGBs"] != old_cfg["memoryInGBs"];
        if resized {
            match rec.state() {
                "RUNNING" => reboot = true,
                "STOPPED" => {}
                s => {
                    return Err(error(
                        409,
                        "IncorrectState",
                        format!("instance `{id}` is {s}: its shape can change when it is RUNNING or STOPPED"),
                    ))
                }
            }
        }
        if reboot && q_constraint(&b) == Some("AVOID_DOWNTIME") {
            return Err(error(
                400,
                "InvalidParameter",
                format!("changing the shape of running instance `{id}` needs a reboot, which `updateOperationConstraint` AVOID_DOWNTIME forbids"),
            ));
        }
        rec.body.insert("shape".into(), json!(shape.name));
        rec.body.insert("shapeConfig".into(), new_cfg);
    }
    let replacing = replacement.is_some();
    let done = if let Some(r) = replacement {
        // The replacement stops and starts the instance: a reboot for a new shape is part of it.
        boot_replace::start(ctx, &mut rec, r)
    } else if reboot {
        let t = ctx.timings.clone();
        let (starting, running) = (ctx.after(t.stop), ctx.after(t.stop + t.start));
        rec.transition(
            "STOPPING",
            vec![
                Step {
                    at: starting,
                    state: "STARTING".into(),
                },
                Step {
                    at: running,
                    state: "RUNNING".into(),
                },
            ],
        );
        running
    } else {
        rec.touch();
        ctx.now
    };
    let compartment = rec.str("compartmentId").to_string();
    let wr = ctx.work_request(
        "UpdateInstance",
        &compartment,
        "instance",
        id,
        "UPDATED",
        done,
    );
    if replacing {
        rec.meta.insert("replacingWorkRequest".into(), json!(wr));
    }
    let reply = Ctx::reply_record(&rec, 200).header("opc-work-request-id", wr);
    ctx.world.instances.insert(id.to_string(), rec);
    ctx.world.schedule(Coll::Instance, id);
    ctx.mutated = true;
    Ok(reply)
}

fn q_constraint(b: &Map<String, Value>) -> Option<&str> {
    b.get("updateOperationConstraint").and_then(Value::as_str)
}

pub fn terminate(ctx: &mut Ctx<'_>, id: &str, query: &[(String, String)]) -> Result<Reply> {
    let flag = |k: &str| -> Result<Option<bool>> {
        match q(query, k) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(error(
                400,
                "InvalidParameter",
                format!("`{k}` `{v}` must be true or false"),
            )),
        }
    };
    let preserve = flag("preserveBootVolume")?.unwrap_or(false);
    flag("preserveDataVolumesCreatedAtLaunch")?;
    if let Some(r) = q(query, "recycleLevel") {
        if r != "FULL_RECYCLE" {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`recycleLevel` `{r}` must be FULL_RECYCLE"),
            ));
        }
    }
    let rec = ctx.instance(id)?.clone();
    ctx.check_etag(&rec)?;
    match rec.state() {
        "TERMINATED" => return Err(not_found("instance", id)),
        "TERMINATING" => {
            return Err(error(
                409,
                "IncorrectState",
                format!("instance `{id}` is already TERMINATING"),
            ))
        }
        _ => {}
    }
    let done = ctx.after(ctx.timings.terminate);
    let compartment = rec.str("compartmentId").to_string();
    volumes::on_terminate(ctx, id, preserve, done);
    let rec = ctx.instance(id)?;
    rec.transition(
        "TERMINATING",
        vec![Step {
            at: done,
            state: "TERMINATED".into(),
        }],
    );
    ctx.world.schedule(Coll::Instance, id);
    let wr = ctx.work_request(
        "TerminateInstance",
        &compartment,
        "instance",
        id,
        "DELETED",
        done,
    );
    ctx.mutated = true;
    Ok(Reply::empty(204).header("opc-work-request-id", wr))
}

pub fn action(
    ctx: &mut Ctx<'_>,
    id: &str,
    query: &[(String, String)],
    body: &[u8],
) -> Result<Reply> {
    let act = q(query, "action").unwrap_or("");
    if !body.is_empty() {
        let b = parse_body(body)?;
        let t = b.get("actionType").and_then(Value::as_str).ok_or_else(|| {
            error(
                400,
                "InvalidParameter",
                "`actionType` is required in InstancePowerActionDetails",
            )
        })?;
        let ok = matches!(
            (t, act),
            ("reset", "RESET") | ("softreset", "SOFTRESET") | ("rebootMigrate", "REBOOTMIGRATE")
        );
        if !ok {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`actionType` `{t}` does not go with action `{act}`"),
            ));
        }
    }
    let t = ctx.timings.clone();
    let rec = ctx.instance(id)?.clone();
    ctx.check_etag(&rec)?;
    boot_replace::not_busy(ctx, &rec)?;
    let state = rec.state().to_string();
    let at = |d: std::time::Duration| ctx.after(d);
    let (now_state, steps): (&str, Vec<Step>) = match (act, state.as_str()) {
        ("STOP" | "SOFTSTOP", "STOPPED") | ("START", "RUNNING") => return Ok(Ctx::reply_record(&rec, 200)),
        ("STOP", "RUNNING") => ("STOPPING", vec![Step { at: at(t.stop), state: "STOPPED".into() }]),
        ("SOFTSTOP", "RUNNING") => ("STOPPING", vec![Step { at: at(t.stop * 3 / 2), state: "STOPPED".into() }]),
        ("START", "STOPPED") => ("STARTING", vec![Step { at: at(t.start), state: "RUNNING".into() }]),
        ("RESET" | "SOFTRESET" | "DIAGNOSTICREBOOT" | "REBOOTMIGRATE", "RUNNING") => ("STOPPING", vec![Step { at: at(t.stop), state: "STARTING".into() }, Step { at: at(t.stop + t.start), state: "RUNNING".into() }]),
        ("SENDDIAGNOSTICINTERRUPT", "RUNNING") => ("RUNNING", vec![]),
        ("STOP" | "START" | "SOFTSTOP" | "RESET" | "SOFTRESET" | "SENDDIAGNOSTICINTERRUPT" | "DIAGNOSTICREBOOT" | "REBOOTMIGRATE", s) => {
            return Err(error(409, "IncorrectState", format!("instance `{id}` is {s}: action {act} is not possible now")))
        }
        ("", _) => return Err(error(400, "MissingParameter", "query parameter `action` is required")),
        (other, _) => return Err(error(400, "InvalidParameter", format!("`action` `{other}` is not one of STOP, START, SOFTSTOP, RESET, SOFTRESET, SENDDIAGNOSTICINTERRUPT, DIAGNOSTICREBOOT, REBOOTMIGRATE"))),
    };
    let done = steps.last().map(|s| s.at).unwrap_or(ctx.now);
    let compartment = rec.str("compartmentId").to_string();
    let rec = ctx.instance(id)?;
    rec.transition(now_state, steps);
    let reply = Ctx::reply_record(rec, 200);
    ctx.world.schedule(Coll::Instance, id);
    let wr = ctx.work_request(
        "InstanceAction",
        &compartment,
        "instance",
        id,
        "UPDATED",
        done,
    );
    ctx.mutated = true;
    Ok(reply.header("opc-work-request-id", wr))
}

/// ChangeInstanceCompartment / ChangeImageCompartment: 202 with a work request. The record is in
/// the target compartment at once; an instance is MOVING until the work request succeeds, then
/// back in the state it had (an image has no MOVING state: it stays AVAILABLE).
pub fn change_compartment(ctx: &mut Ctx<'_>, kind: &str, id: &str, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    details::check(
        &b,
        &[details::F("compartmentId", details::Kind::Str)],
        "",
        "ChangeCompartmentDetails",
    )?;
    let target = required(&b, "compartmentId")?.to_string();
    ctx.check_compartment(&target, "compartmentId")?;
    let done = ctx.after(ctx.timings.move_);
    let if_match = ctx.if_match.clone();
    let rec = match kind {
        "instance" => ctx.world.instances.get_mut(id),
        _ => ctx.world.images.get_mut(id),
    }
    .ok_or_else(|| not_found(kind, id))?;
    etag_matches(&if_match, rec)?;
    let state = rec.state().to_string();
    let movable = match kind {
        "instance" => matches!(state.as_str(), "RUNNING" | "STOPPED"),
        _ => state == "AVAILABLE",
    };
    if !movable {
        return Err(error(
            409,
            "IncorrectState",
            format!(
                "{kind} `{id}` is {state}: it can move when it is {}",
                if kind == "instance" {
                    "RUNNING or STOPPED"
                } else {
                    "AVAILABLE"
                }
            ),
        ));
    }
    rec.body.insert("compartmentId".into(), json!(target));
    if kind == "instance" {
        rec.transition("MOVING", vec![Step { at: done, state }]);
    } else {
        rec.touch();
    }
    let etag = rec.etag();
    let op = if kind == "instance" {
        ctx.world.schedule(Coll::Instance, id);
        ctx.world.file_instance(id);
        volumes::move_attachments(ctx, id, &target);
        "ChangeInstanceCompartment"
    } else {
        "ChangeImageCompartment"
    };
    let wr = ctx.work_request(op, &target, kind, id, "RELATED", done);
    ctx.mutated = true;
    Ok(Reply::empty(202)
        .header("etag", etag)
        .header("opc-work-request-id", wr))
}
