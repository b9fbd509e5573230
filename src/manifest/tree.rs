//! The raw manifest: TOML parsed with toml_edit (spans kept) into a small tree whose every node
//! knows its file and byte span, and the deep merge of `envs/<env>.toml` over `kiln.toml`
//! (tables merge, values replace).

use std::collections::BTreeMap;
use std::ops::Range;

use indexmap::IndexMap;

use super::diagnostic::{At, FileId, Problem};
use super::DefinedTags;

/// One value and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub at: At,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Table(IndexMap<String, Entry>),
    Array(Vec<Node>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Dates and times: valid TOML, never valid in a manifest.
    Other(String),
}

/// A table entry: the key's span and the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key_at: At,
    pub node: Node,
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Table(_) => "a table",
            Value::Array(_) => "an array",
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Other(_) => "a date/time",
        }
    }
}

fn span(s: Option<Range<usize>>) -> Range<usize> {
    s.unwrap_or(0..0)
}

fn from_value(file: FileId, v: &toml_edit::Value) -> Node {
    let at = At {
        file,
        span: span(v.span()),
    };
    let value = match v {
        toml_edit::Value::String(s) => Value::Str(s.value().clone()),
        toml_edit::Value::Integer(i) => Value::Int(*i.value()),
        toml_edit::Value::Float(f) => Value::Float(*f.value()),
        toml_edit::Value::Boolean(b) => Value::Bool(*b.value()),
        toml_edit::Value::Datetime(d) => Value::Other(d.value().to_string()),
        toml_edit::Value::Array(a) => Value::Array(a.iter().map(|x| from_value(file, x)).collect()),
        toml_edit::Value::InlineTable(t) => Value::Table(
            t.iter()
                .map(|(k, x)| {
                    let key = t.key(k).expect("key of an entry");
                    (
                        k.to_string(),
                        Entry {
                            key_at: At {
                                file,
                                span: span(key.span()),
                            },
                            node: from_value(file, x),
                        },
                    )
                })
                .collect(),
        ),
    };
    Node { at, value }
}

fn from_item(file: FileId, item: &toml_edit::Item, fallback: Range<usize>) -> Node {
    match item {
        toml_edit::Item::Value(v) => from_value(file, v),
        toml_edit::Item::Table(t) => from_table(file, t),
        toml_edit::Item::ArrayOfTables(a) => Node {
            at: At {
                file,
                span: span(a.span()).clone(),
            },
            value: Value::Array(a.iter().map(|t| from_table(file, t)).collect()),
        },
        toml_edit::Item::None => Node {
            at: At {
                file,
                span: fallback,
            },
            value: Value::Other("nothing".into()),
        },
    }
}

fn from_table(file: FileId, t: &toml_edit::Table) -> Node {
    let entries = t
        .iter()
        .map(|(k, item)| {
            let key = t.key(k).expect("key of an entry");
            let key_span = span(key.span());
            (
                k.to_string(),
                Entry {
                    key_at: At {
                        file,
                        span: key_span.clone(),
                    },
                    node: from_item(file, item, key_span),
                },
            )
        })
        .collect();
    Node {
        at: At {
            file,
            span: span(t.span()),
        },
        value: Value::Table(entries),
    }
}

/// Parse one file; a syntax error is a problem pointing at it.
pub fn parse(file: FileId, text: &str) -> Result<Node, Problem> {
    match toml_edit::ImDocument::parse(text) {
        Ok(doc) => Ok(from_table(file, doc.as_table())),
        Err(e) => {
            let at = At {
                file,
                span: e.span().unwrap_or(0..0),
            };
            Err(
                Problem::error("syntax", format!("invalid TOML: {}", e.message()))
                    .at(&at, "here")
                    .help("see https://toml.io for the syntax"),
            )
        }
    }
}

/// Deep-merge `over` onto `base`: tables merge, everything else replaces.
pub fn merge(base: &mut Node, over: Node) {
    match (&mut base.value, over.value) {
        (Value::Table(b), Value::Table(o)) => {
            for (k, entry) in o {
                match b.get_mut(&k) {
                    Some(existing)
                        if matches!(existing.node.value, Value::Table(_))
                            && matches!(entry.node.value, Value::Table(_)) =>
                    {
                        merge(&mut existing.node, entry.node);
                    }
                    _ => {
                        b.insert(k, entry);
                    }
                }
            }
        }
        (_, v) => {
            base.value = v;
            base.at = over.at;
        }
    }
}

// Reading typed values out of the tree (a missing or mistyped value is `None`: the key and
// type checks report it).

pub fn entries(node: &Node) -> Option<&IndexMap<String, Entry>> {
    match &node.value {
        Value::Table(t) => Some(t),
        _ => None,
    }
}

pub fn get<'a>(table: &'a IndexMap<String, Entry>, key: &str) -> Option<&'a Node> {
    table.get(key).map(|e| &e.node)
}

pub fn str_of(node: Option<&Node>) -> Option<(&str, &At)> {
    match node {
        Some(Node {
            value: Value::Str(s),
            at,
        }) => Some((s.as_str(), at)),
        _ => None,
    }
}

pub fn bool_of(node: Option<&Node>) -> Option<bool> {
    match node {
        Some(Node {
            value: Value::Bool(b),
            ..
        }) => Some(*b),
        _ => None,
    }
}

pub fn num_of(node: Option<&Node>) -> Option<(f64, &At)> {
    match node {
        Some(Node {
            value: Value::Int(i),
            at,
        }) => Some((*i as f64, at)),
        Some(Node {
            value: Value::Float(f),
            at,
        }) => Some((*f, at)),
        _ => None,
    }
}

pub fn str_map(node: Option<&Node>) -> BTreeMap<String, String> {
    node.and_then(entries)
        .map(|t| {
            t.iter()
                .filter_map(|(k, e)| str_of(Some(&e.node)).map(|(v, _)| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn to_json(node: &Node) -> serde_json::Value {
    match &node.value {
        Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, e)| (k.clone(), to_json(&e.node)))
                .collect(),
        ),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Str(s) => serde_json::json!(s),
        Value::Int(i) => serde_json::json!(i),
        Value::Float(f) => serde_json::json!(f),
        Value::Bool(b) => serde_json::json!(b),
        Value::Other(o) => serde_json::json!(o),
    }
}

pub fn nested_map(node: Option<&Node>) -> DefinedTags {
    node.and_then(entries)
        .map(|t| {
            t.iter()
                .filter_map(|(ns, e)| {
                    entries(&e.node).map(|inner| {
                        (
                            ns.clone(),
                            inner
                                .iter()
                                .map(|(k, v)| (k.clone(), to_json(&v.node)))
                                .collect(),
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}
