//! The request pipeline: everything between a request's arrival and its reply, in order — the
//! `/_emulator/*` test routes, the auth service, the route ([`super::routes`]), the signature
//! over the headers, the capped body and its signed hash, rate limits, injected faults, the
//! lazy lifecycle step (`settle`), `opc-retry-token` replays, the handler, persistence (`--data`)
//! and the `--fault-reset-after` fault. A change is made only past every check before the
//! handler, so a refused or faulted request changes nothing.

use chrono::Utc;
use rand::Rng;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::routes::{self, Handler, Service};
use super::server::Shared;
use super::{api, auth, body, federation, object_storage, store, World};

fn query_pairs(target: &str) -> Vec<(String, String)> {
    match target.split_once('?') {
        Some((_, q)) => url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect(),
        None => Vec::new(),
    }
}

/// The whole pipeline for one request; `None` = drop the connection. The body is read only once
/// the headers are authentic, and only up to the service's cap ([`body`]).
pub(super) async fn process(
    shared: &Shared,
    method: &str,
    target: &str,
    headers: &hyper::HeaderMap,
    incoming: hyper::body::Incoming,
    seen_op: &mut Option<&'static str>,
) -> Option<api::Reply> {
    let path = target.split('?').next().unwrap_or("/");
    if let Some(rest) = path.strip_prefix("/_emulator/") {
        return Some(match (method, rest) {
            ("GET", "stats") => {
                let stats = shared.stats.lock().expect("stats lock").clone();
                api::Reply::json(200, &json!(stats))
            }
            ("GET", "fixtures") => api::Reply::json(
                200,
                &serde_json::to_value(&shared.fixtures).expect("fixtures serialise"),
            ),
            _ => api::error(404, "NotFound", format!("no emulator route `{rest}`")),
        });
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // The auth service: federation and session refresh, with their own authentication.
    if path.starts_with("/v1/") {
        let Some(op) = federation::operation(method, path) else {
            return Some(api::error(
                404,
                "NotFound",
                format!("no such route `{method} {path}`"),
            ));
        };
        *seen_op = Some(op);
        {
            let mut stats = shared.stats.lock().expect("stats lock");
            *stats.entry(op.to_string()).or_default() += 1;
            *stats.entry("total".into()).or_default() += 1;
        }
        let head = auth::RequestHead {
            method,
            target,
            header: &header,
            body_signed: true,
        };
        return federation::handle(shared, op, &head, incoming).await;
    }
    let query = query_pairs(target);
    // Compute lives under the API version; Object Storage under `/n` (no version).
    let (rel, service) = if let Some(rel) = path
        .strip_prefix("/20160918/")
        .or_else(|| path.strip_prefix("/20160918"))
    {
        (rel, Service::Compute)
    } else if path == "/n" || path.starts_with("/n/") {
        (&path[2..], Service::Objects)
    } else if let Some(rel) = path
        .strip_prefix("/workRequests")
        .filter(|r| r.is_empty() || r.starts_with('/'))
    {
        // Object Storage's work requests live at the root of its endpoint.
        (rel, Service::ObjectWorkRequests)
    } else {
        return Some(api::error(
            404,
            "NotFound",
            format!("no such route `{path}` (the Compute API lives under /20160918, Object Storage under /n)"),
        ));
    };
    let decoded: Vec<String> = rel
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let Some(route) = routes::find(service, method, &segs, &query) else {
        return Some(api::error(
            404,
            "NotFound",
            format!("no such route `{method} {path}`"),
        ));
    };
    let op = route.operation;
    *seen_op = Some(op);
    {
        let mut stats = shared.stats.lock().expect("stats lock");
        *stats.entry(op.to_string()).or_default() += 1;
        *stats.entry("total".into()).or_default() += 1;
    }
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    let not_authenticated = |reason: String| {
        tracing::debug!(target: "kiln::emulator", %method, %path, %reason, "401");
        api::error(401, "NotAuthenticated", format!("The required information to complete authentication was not provided or was incorrect: {reason}"))
    };
    let head = auth::RequestHead {
        method,
        target,
        header: &header,
        // Oracle's SDK signs PutObject without the body headers.
        body_signed: op != "PutObject",
    };
    let verified = match shared.verifier.verify_head_at(&head, Utc::now()) {
        Ok(v) => v,
        Err(reason) => return Some(not_authenticated(reason)),
    };
    let (limit, service) = match service {
        Service::Objects | Service::ObjectWorkRequests => {
            (shared.config.body_limits.object_storage, "Object Storage")
        }
        Service::Compute => (shared.config.body_limits.compute, "Compute"),
    };
    let declared = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let body = match body::read_capped(incoming, declared, limit).await {
        Ok(b) => b,
        Err(body::BodyError::TooLarge { limit }) => {
            return Some(api::error(
                413,
                "RequestEntityTooLarge",
                format!("The request body is larger than the {limit} bytes the emulator accepts for a {service} request"),
            ))
        }
        Err(body::BodyError::Broken) => return None,
    };
    let body = &body[..];
    let key_id = match verified.check_body(body) {
        Ok(k) => k,
        Err(reason) => return Some(not_authenticated(reason)),
    };
    let now = Utc::now();
    // Rate limits, then faults: decided before anything changes.
    if let Some(reply) = shared.rate_limiter.check(&key_id, op) {
        let mut stats = shared.stats.lock().expect("stats lock");
        *stats.entry("throttled".into()).or_default() += 1;
        *stats.entry(format!("throttled.{op}")).or_default() += 1;
        return Some(reply);
    }
    let cfg = &shared.config;
    if cfg.fault_reset + cfg.fault_429 + cfg.fault_5xx > 0.0 {
        let (draw, which): (f64, bool) = {
            let mut rng = shared.rng.lock().expect("rng lock");
            (rng.gen(), rng.gen())
        };
        if draw < cfg.fault_reset {
            count_fault(shared, "reset");
            return None;
        }
        if draw < cfg.fault_reset + cfg.fault_429 {
            count_fault(shared, "429");
            return Some(
                api::error(429, "TooManyRequests", "Too many requests for the user")
                    .header("retry-after", "0"),
            );
        }
        if draw < cfg.fault_reset + cfg.fault_429 + cfg.fault_5xx {
            count_fault(shared, "5xx");
            return Some(if which {
                api::error(500, "InternalServerError", "Internal error (injected)")
            } else {
                api::error(503, "ServiceUnavailable", "Service unavailable (injected)")
            });
        }
    }
    let mut world = shared.world.lock().expect("world lock");
    if shared.stopped.load(std::sync::atomic::Ordering::SeqCst) {
        return Some(api::error(
            503,
            "ServiceUnavailable",
            "The emulator is shutting down",
        ));
    }
    let handle = match route.handler {
        Handler::Compute(handle) => handle,
        Handler::Objects(handle) => {
            let req = object_storage::Request {
                segs: &segs,
                query: &query,
                header: &header,
                body,
                now,
                peers: &shared.config.peers,
                copy_time: shared.timings.copy,
            };
            let (reply, mutated) =
                handle(&mut world, &shared.fixtures, &req).unwrap_or_else(|e| (e, false));
            if mutated {
                save_world(shared, &world);
            }
            let outbox = std::mem::take(&mut world.outbox);
            drop(world);
            hand_over(shared, outbox);
            return reset_after(shared, method, reply);
        }
    };
    let retry_token = header("opc-retry-token").filter(|_| matches!(method, "POST" | "PUT"));
    let body_sha = hex::encode(Sha256::digest(body));
    world.settle(now);
    if let Some(token) = &retry_token {
        if token.is_empty() || token.len() > 64 {
            return Some(api::error(
                400,
                "InvalidParameter",
                "`opc-retry-token` must be 1 to 64 characters",
            ));
        }
        // A token older than its lifetime is forgotten (purged hourly by `settle`).
        if world
            .retry_tokens
            .get(token)
            .is_some_and(|prev| now - prev.at >= store::retry_token_lifetime())
        {
            world.retry_tokens.remove(token);
        }
        if let Some(prev) = world.retry_tokens.get(token) {
            if prev.operation == op && prev.target == target && prev.body_sha256 == body_sha {
                return Some(api::Reply {
                    status: prev.status,
                    headers: prev.headers.clone(),
                    body: prev.body.clone().into_bytes(),
                });
            }
            return Some(api::error(
                409,
                "InvalidatedRetryToken",
                format!(
                    "opc-retry-token `{token}` was already used for a different request ({} {})",
                    prev.operation, prev.target
                ),
            ));
        }
    }
    let mut ctx = api::Ctx {
        world: &mut world,
        fixtures: &shared.fixtures,
        platform: &shared.platform,
        timings: &shared.timings,
        now,
        region_code: &shared.fixtures.region_code,
        key_id: &key_id,
        if_match: header("if-match"),
        retry_token: retry_token.clone(),
        capacity: &shared.config.capacity,
        mutated: false,
    };
    let args = routes::Args {
        segs: &segs,
        query: &query,
        body,
    };
    let reply = handle(&mut ctx, &args).unwrap_or_else(|e| e);
    let mutated = ctx.mutated;
    if let Some(token) = &retry_token {
        if (200..300).contains(&reply.status) {
            api::remember(&mut world, token, op, target, &body_sha, now, &reply);
        }
    }
    if mutated || retry_token.is_some() {
        save_world(shared, &world);
    }
    reset_after(shared, method, reply)
}

/// Copies to other regions ([`super::peers`]), handed over with no world lock held; a refused
/// one fails its work request here.
fn hand_over(shared: &Shared, outbox: Vec<super::peers::Delivery>) {
    for d in outbox {
        let wr = d.work_request.clone();
        if let Err(why) = super::peers::deliver(&shared.config.peers, d) {
            let mut world = shared.world.lock().expect("world lock");
            super::object_copy::fail(&mut world, &wr, why);
            save_world(shared, &world);
        }
    }
}

/// The `--fault-reset-after` fault: the change is made, the answer is lost.
fn reset_after(shared: &Shared, method: &str, reply: api::Reply) -> Option<api::Reply> {
    let p = shared.config.fault_reset_after;
    if p > 0.0 && matches!(method, "POST" | "PUT" | "DELETE") {
        let draw: f64 = shared.rng.lock().expect("rng lock").gen();
        if draw < p {
            count_fault(shared, "reset_after");
            return None;
        }
    }
    Some(reply)
}

/// Injected faults are counted in the stats as `fault.KIND`.
fn count_fault(shared: &Shared, kind: &str) {
    *shared
        .stats
        .lock()
        .expect("stats lock")
        .entry(format!("fault.{kind}"))
        .or_default() += 1;
}

/// Persist the world when `--data` is set (atomically; a failure is logged, the reply stands).
pub(super) fn save_world(shared: &Shared, world: &World) {
    if let Some(path) = &shared.config.data_file {
        if let Err(e) = world.save(path) {
            tracing::error!(target: "kiln::emulator", "cannot save emulator data to {}: {e}", path.display());
        }
    }
}
