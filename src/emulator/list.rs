//! Sorting and keyset pagination for every List operation.
//!
//! A page token names the sort key of the last item it returned, not an offset: the next page is
//! every item that sorts after that key. Items created or deleted between two pages therefore
//! never shift the rest — a list walked while instances are launched or terminated returns each
//! item that existed throughout exactly once (new ones appear only if they sort after the
//! cursor). Tokens are opaque to clients (base64 of the key).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::Value;

use super::api::{error, page_limit, q, Reply, Result};

/// Where an item sorts: a group (ListImages puts platform images before custom ones), the
/// sort value (timeCreated, displayName), and the id to break ties.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub group: u8,
    pub value: String,
    pub id: String,
}

impl Key {
    pub fn new(group: u8, value: impl Into<String>, id: impl Into<String>) -> Key {
        Key {
            group,
            value: value.into(),
            id: id.into(),
        }
    }

    /// The key of `v` by `field` (a string field, `timeCreated` or `displayName`) and `id`.
    pub fn of(group: u8, v: &Value, field: &str) -> Key {
        Key::new(
            group,
            v[field].as_str().unwrap_or(""),
            v["id"].as_str().unwrap_or(""),
        )
    }

    /// [`Key::of`] for a record's JSON object.
    pub fn of_map(group: u8, m: &serde_json::Map<String, Value>, field: &str) -> Key {
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
        Key::new(group, s(field), s("id"))
    }

    fn token(&self) -> String {
        let raw = serde_json::json!([self.group, self.value, self.id]).to_string();
        B64.encode(raw)
    }

    fn from_token(t: &str) -> Option<Key> {
        let raw = B64.decode(t).ok()?;
        let v: Value = serde_json::from_slice(&raw).ok()?;
        Some(Key::new(
            u8::try_from(v.get(0)?.as_u64()?).ok()?,
            v.get(1)?.as_str()?,
            v.get(2)?.as_str()?,
        ))
    }
}

/// `a` before `b` in the list's order: groups ascending, then (value, id) ascending or, with
/// `desc`, descending.
fn order(a: &Key, b: &Key, desc: bool) -> std::cmp::Ordering {
    a.group.cmp(&b.group).then_with(|| {
        let o = (&a.value, &a.id).cmp(&(&b.value, &b.id));
        if desc {
            o.reverse()
        } else {
            o
        }
    })
}

/// The `sortBy` / `sortOrder` query: the field to sort by and whether descending
/// (TIMECREATED: newest first by default; DISPLAYNAME: ascending by default, case-sensitive).
pub fn sort_spec(query: &[(String, String)], default_sort: &str) -> Result<(&'static str, bool)> {
    let (field, default_desc) = match q(query, "sortBy").unwrap_or(default_sort) {
        "TIMECREATED" => ("timeCreated", true),
        "DISPLAYNAME" => ("displayName", false),
        other => {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`sortBy` `{other}` must be TIMECREATED or DISPLAYNAME"),
            ))
        }
    };
    let desc = match q(query, "sortOrder") {
        None => default_desc,
        Some(o) if o.eq_ignore_ascii_case("DESC") => true,
        Some(o) if o.eq_ignore_ascii_case("ASC") => false,
        Some(o) => {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`sortOrder` `{o}` must be ASC or DESC"),
            ))
        }
    };
    Ok((field, desc))
}

/// Sort `items` and answer one page: `limit` 1..1000 (default 100); `page` is a token from the
/// previous response's `opc-next-page`.
pub fn page(items: Vec<(Key, Value)>, desc: bool, query: &[(String, String)]) -> Result<Reply> {
    page_with(items, desc, query, |v| v)
}

/// [`page`] of items that become JSON only if they are on the page (`render`): a page of a large
/// list copies only its own items.
pub fn page_with<T>(
    mut items: Vec<(Key, T)>,
    desc: bool,
    query: &[(String, String)],
    render: impl Fn(T) -> Value,
) -> Result<Reply> {
    let limit = page_limit(query, 100)?;
    items.sort_by(|a, b| order(&a.0, &b.0, desc));
    let start = match q(query, "page") {
        None => 0,
        Some(p) => {
            let after = Key::from_token(p).ok_or_else(|| {
                error(
                    400,
                    "InvalidParameter",
                    format!("`page` `{p}` is not a page token from this list"),
                )
            })?;
            items.partition_point(|(k, _)| order(k, &after, desc) != std::cmp::Ordering::Greater)
        }
    };
    let end = (start + limit).min(items.len());
    let next = (end < items.len()).then(|| items[end - 1].0.token());
    let body: Vec<Value> = items.drain(start..end).map(|(_, v)| render(v)).collect();
    let mut reply = Reply::json(200, &Value::Array(body));
    if let Some(t) = next {
        reply = reply.header("opc-next-page", t);
    }
    Ok(reply)
}

/// Sort by `sortBy`/`sortOrder` (default `default_sort`) and page.
pub fn sorted_page(
    items: Vec<Value>,
    query: &[(String, String)],
    default_sort: &str,
) -> Result<Reply> {
    let (field, desc) = sort_spec(query, default_sort)?;
    let keyed = items
        .into_iter()
        .map(|v| (Key::of(0, &v, field), v))
        .collect();
    page(keyed, desc, query)
}

/// [`state_filter`] for a record's JSON object.
pub fn state_matches(query: &[(String, String)], m: &serde_json::Map<String, Value>) -> bool {
    q(query, "lifecycleState").is_none_or(|s| {
        m.get("lifecycleState")
            .and_then(Value::as_str)
            .is_some_and(|x| x.eq_ignore_ascii_case(s))
    })
}

/// The `lifecycleState` filter (case-insensitive).
pub fn state_filter(query: &[(String, String)], v: &Value) -> bool {
    q(query, "lifecycleState").is_none_or(|s| {
        v["lifecycleState"]
            .as_str()
            .is_some_and(|x| x.eq_ignore_ascii_case(s))
    })
}
