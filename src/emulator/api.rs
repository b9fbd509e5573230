//! The OCI API surface (Compute, Block Volume, Networking, Identity and Work Requests under
//! `/20160918`): the handler context and the helpers every handler shares (replies, errors, body
//! fields, If-Match, work requests, retry tokens). The routes are in [`super::routes`]; the
//! handlers live with their resource family: [`super::instances`], [`super::images`],
//! [`super::volumes`], [`super::network`], [`super::identity`], [`super::shapes`],
//! [`super::work_requests`]. Everything works on the emulator's own JSON shapes (camelCase, as
//! Oracle's SDK models).

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::{json, Map, Value};

use super::identity;
use super::store::{rfc3339, Record, Replay, WorkRequestRec, World};
use super::{Fixtures, Timings};

/// A response before it is put on the wire.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, k: &str, v: impl Into<String>) -> Reply {
        self.headers.push((k.to_string(), v.into()));
        self
    }
}

/// An OCI error reply: `{"code","message"}`.
pub fn error(status: u16, code: &str, message: impl Into<String>) -> Reply {
    Reply::json(status, &json!({ "code": code, "message": message.into() }))
}

pub type Result<T> = std::result::Result<T, Reply>;

/// If-Match: a mismatch is 412 `NoEtagMatch`; `*` matches any version.
pub fn etag_matches(if_match: &Option<String>, rec: &Record) -> Result<()> {
    match if_match {
        Some(m) if m != "*" && m != &rec.etag() => Err(error(
            412,
            "NoEtagMatch",
            format!("The resource's etag does not match the If-Match value `{m}`"),
        )),
        _ => Ok(()),
    }
}

/// Everything a handler needs.
pub struct Ctx<'a> {
    pub world: &'a mut World,
    pub fixtures: &'a Fixtures,
    pub platform: &'a [Record],
    pub timings: &'a Timings,
    pub now: DateTime<Utc>,
    pub region_code: &'a str,
    pub key_id: &'a str,
    pub if_match: Option<String>,
    pub retry_token: Option<String>,
    /// Host capacity (`--capacity`), checked by LaunchInstance.
    pub capacity: &'a [super::limits::CapacityRule],
    /// Set by handlers that changed the world (persistence).
    pub mutated: bool,
}

pub fn new_ocid(kind: &str, region_code: &str) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let tail: String = (0..60)
        .map(|_| (b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)]) as char)
        .collect();
    format!("ocid1.{kind}.oc1.{region_code}.{tail}")
}

/// The `limit` query parameter: 1..1000, `default` when absent.
pub fn page_limit(query: &[(String, String)], default: usize) -> Result<usize> {
    match q(query, "limit") {
        None => Ok(default),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(error(
                400,
                "InvalidParameter",
                format!("`limit` `{l}` must be between 1 and 1000"),
            )),
        },
    }
}

pub fn q<'a>(query: &'a [(String, String)], k: &str) -> Option<&'a str> {
    query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

pub fn required_query<'a>(query: &'a [(String, String)], k: &str) -> Result<&'a str> {
    q(query, k).ok_or_else(|| {
        error(
            400,
            "MissingParameter",
            format!("query parameter `{k}` is required"),
        )
    })
}

pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(error(
            400,
            "CannotParseRequest",
            "the request body must be a JSON object",
        )),
        Err(e) => Err(error(
            400,
            "CannotParseRequest",
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}

pub fn str_field<'a>(m: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(error(
            400,
            "InvalidParameter",
            format!("`{k}` must be a string"),
        )),
    }
}

pub fn required<'a>(m: &'a Map<String, Value>, k: &str) -> Result<&'a str> {
    str_field(m, k)?.ok_or_else(|| error(400, "MissingParameter", format!("`{k}` is required")))
}

/// `ocid1.<kind>.<realm>.<region>.<unique>`, unique part non-empty.
pub fn well_formed_ocid(s: &str, kinds: &[&str]) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 5
        && parts[0] == "ocid1"
        && kinds.contains(&parts[1])
        && parts[2].starts_with("oc")
        && !parts[parts.len() - 1].is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

pub fn string_map(m: &Map<String, Value>, k: &str) -> Result<Option<Map<String, Value>>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) if o.values().all(Value::is_string) => Ok(Some(o.clone())),
        Some(_) => Err(error(
            400,
            "InvalidParameter",
            format!("`{k}` must be an object of strings"),
        )),
    }
}

/// OCI adds these on create; kiln must never see them as a diff.
pub fn oracle_tags(key_id: &str, now: DateTime<Utc>, given: Option<Map<String, Value>>) -> Value {
    let mut tags = given.unwrap_or_default();
    let user = key_id.split('/').nth(1).unwrap_or("unknown");
    tags.insert("Oracle-Tags".into(), json!({ "CreatedBy": format!("oracleidentitycloudservice/{user}"), "CreatedOn": rfc3339(now) }));
    Value::Object(tags)
}

pub fn not_found(what: &str, id: &str) -> Reply {
    error(
        404,
        "NotAuthorizedOrNotFound",
        format!("Authorization failed or requested resource not found: {what} `{id}`"),
    )
}

impl Ctx<'_> {
    pub fn after(&self, d: std::time::Duration) -> DateTime<Utc> {
        self.now + ChronoDuration::from_std(d).unwrap_or_default()
    }

    pub fn check_etag(&self, rec: &Record) -> Result<()> {
        etag_matches(&self.if_match, rec)
    }

    /// A compartment OCID that is well-formed (else 400) and known (else 404, as OCI answers
    /// for a compartment that does not exist or that the caller may not see).
    pub fn check_compartment(&self, id: &str, field: &str) -> Result<()> {
        if !well_formed_ocid(id, &["compartment", "tenancy"]) {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`{field}` `{id}` is not a compartment OCID"),
            ));
        }
        if self.fixtures.compartment(id).is_none() {
            return Err(not_found("compartment", id));
        }
        Ok(())
    }

    /// An availability domain of this region (400 otherwise).
    pub fn check_ad(&self, ad: &str) -> Result<()> {
        if self.fixtures.availability_domains.iter().any(|a| a == ad) {
            return Ok(());
        }
        Err(error(
            400,
            "InvalidParameter",
            format!(
                "`availabilityDomain` `{ad}` is not an availability domain of {} (known: {})",
                self.fixtures.region,
                self.fixtures.availability_domains.join(", ")
            ),
        ))
    }

    /// Defined tags: an object of objects whose namespaces and keys exist (400 otherwise).
    pub fn defined_tags(&self, m: &Map<String, Value>) -> Result<Option<Map<String, Value>>> {
        identity::defined_tags(self.fixtures, m.get("definedTags"), "definedTags")
    }

    /// A work request finishing at `finishes`, for `entity` `id`.
    pub fn work_request(
        &mut self,
        op: &str,
        compartment: &str,
        entity: &str,
        id: &str,
        action: &str,
        finishes: DateTime<Utc>,
    ) -> String {
        let wr_id = new_ocid("workrequest", self.region_code);
        let uri = format!("/20160918/{}s/{id}", entity);
        self.world.work_requests.insert(
            wr_id.clone(),
            WorkRequestRec {
                id: wr_id.clone(),
                operation_type: op.to_string(),
                compartment_id: compartment.to_string(),
                resources: vec![json!({ "actionType": action, "entityType": entity, "identifier": id, "entityUri": uri })],
                accepted: self.now,
                finishes,
                failed: None,
            },
        );
        wr_id
    }

    pub fn instance(&mut self, id: &str) -> Result<&mut Record> {
        self.world
            .instances
            .get_mut(id)
            .ok_or_else(|| not_found("instance", id))
    }

    pub fn image_any(&self, id: &str) -> Option<&Record> {
        self.world
            .images
            .get(id)
            .or_else(|| self.platform.iter().find(|r| r.id() == id))
    }

    pub fn reply_record(rec: &Record, status: u16) -> Reply {
        Reply::json(status, &Value::Object(rec.body.clone())).header("etag", rec.etag())
    }
}

/// Store a replayable response for an `opc-retry-token`.
pub fn remember(
    world: &mut World,
    token: &str,
    op: &str,
    target: &str,
    body_sha256: &str,
    now: DateTime<Utc>,
    reply: &Reply,
) {
    world.retry_tokens.insert(
        token.to_string(),
        Replay {
            operation: op.to_string(),
            target: target.to_string(),
            body_sha256: body_sha256.to_string(),
            at: now,
            status: reply.status,
            headers: reply.headers.clone(),
            body: String::from_utf8_lossy(&reply.body).into_owned(),
        },
    );
}
