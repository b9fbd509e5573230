//! Work requests (GetWorkRequest, ListWorkRequests, ListWorkRequestErrors,
//! ListWorkRequestLogs). A work request's status follows its resource's timeline
//! ([`super::store::WorkRequestRec::to_json`]): `ACCEPTED` at the instant it is made,
//! `IN_PROGRESS` until it finishes, then `SUCCEEDED` or `FAILED` — the values of the SDK's
//! WorkRequest model and the states `oci ... --wait-for-state` accepts. `CANCELING` and
//! `CANCELED` are never reached: the emulator has no CancelWorkRequest.

use serde_json::{json, Value};

use super::api::{error, not_found, q, required_query, Ctx, Reply, Result};
use super::list::{self, Key};
use super::store::rfc3339;

pub fn get(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    ctx.world
        .work_requests
        .get(id)
        .map(|w| Reply::json(200, &w.to_json(ctx.now)))
        .ok_or_else(|| not_found("work request", id))
}

/// ListWorkRequests: compartmentId required, resourceId filters; newest first.
pub fn list(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    ctx.check_compartment(compartment, "compartmentId")?;
    let resource = q(query, "resourceId");
    let items: Vec<(Key, Value)> = ctx
        .world
        .work_requests
        .values()
        .filter(|w| w.compartment_id == compartment)
        .filter(|w| resource.is_none_or(|r| w.resources.iter().any(|x| x["identifier"] == r)))
        .map(|w| w.to_json(ctx.now))
        .map(|v| (Key::of(0, &v, "timeAccepted"), v))
        .collect();
    list::page(items, true, query)
}

/// `sortOrder` of the errors and logs lists (by timestamp; ASC by default).
fn desc(query: &[(String, String)]) -> Result<bool> {
    match q(query, "sortOrder") {
        None => Ok(false),
        Some(o) if o.eq_ignore_ascii_case("ASC") => Ok(false),
        Some(o) if o.eq_ignore_ascii_case("DESC") => Ok(true),
        Some(o) => Err(error(
            400,
            "InvalidParameter",
            format!("`sortOrder` `{o}` must be ASC or DESC"),
        )),
    }
}

pub fn errors(ctx: &mut Ctx<'_>, id: &str, query: &[(String, String)]) -> Result<Reply> {
    let w = ctx
        .world
        .work_requests
        .get(id)
        .ok_or_else(|| not_found("work request", id))?;
    let items: Vec<(Key, Value)> = w
        .failed
        .iter()
        .filter(|_| ctx.now >= w.finishes)
        .enumerate()
        .map(|(i, m)| {
            let v =
                json!({ "code": "InternalError", "message": m, "timestamp": rfc3339(w.finishes) });
            (Key::new(0, rfc3339(w.finishes), format!("{i}")), v)
        })
        .collect();
    let desc = desc(query)?;
    list::page(items, desc, query)
}

/// ListWorkRequestLogs: what happened so far — accepted, started, and how it ended.
pub fn logs(ctx: &mut Ctx<'_>, id: &str, query: &[(String, String)]) -> Result<Reply> {
    let w = ctx
        .world
        .work_requests
        .get(id)
        .ok_or_else(|| not_found("work request", id))?;
    let what = w
        .resources
        .first()
        .map(|r| {
            format!(
                "{} {}",
                r["entityType"].as_str().unwrap_or("resource"),
                r["identifier"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_default();
    let mut entries = vec![(
        w.accepted,
        format!("{} accepted for {what}", w.operation_type),
    )];
    if ctx.now > w.accepted || ctx.now >= w.finishes {
        entries.push((w.accepted, format!("{} started", w.operation_type)));
    }
    if ctx.now >= w.finishes {
        entries.push(match &w.failed {
            Some(m) => (w.finishes, format!("{} failed: {m}", w.operation_type)),
            None => (w.finishes, format!("{} succeeded", w.operation_type)),
        });
    }
    let items: Vec<(Key, Value)> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (t, m))| {
            (
                Key::new(0, rfc3339(t), format!("{i:02}")),
                json!({ "message": m, "timestamp": rfc3339(t) }),
            )
        })
        .collect();
    let desc = desc(query)?;
    list::page(items, desc, query)
}
