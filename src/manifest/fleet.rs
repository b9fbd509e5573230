//! Fleets: `count`, `for_each` and `enabled` turn one `[instance.NAME]` or `[image.NAME]` table
//! into the resources it declares.
//!
//! - `count = N` declares the members `NAME[0]` … `NAME[N-1]`; `for_each = ["a", "b"]` declares
//!   `NAME["a"]`, `NAME["b"]`. In every string of the table, `${count.index}` / `${each.key}` is
//!   replaced by the member's index / key, and a member's default `display_name` is
//!   `NAME-<index>` / `NAME-<key>`.
//! - `enabled = false` declares nothing (an environment file may switch a resource off, or size a
//!   fleet differently).
//!
//! Expansion runs on the merged tree (after the environment file and `${vars.…}`), before the
//! resources are built, so every later check — references, cycles, duplicate names — sees the
//! members with the spans of the table that declared them.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;

use super::diagnostic::Problem;
use super::tree::{entries, get, Entry, Node, Value};
use super::valid_key;

/// At most this many members per fleet.
pub const MAX_MEMBERS: i64 = 10_000;

/// The tables of one kind after expansion, and what the diagnostics need to know about the rest.
#[derive(Default)]
pub struct Expanded {
    /// Member (or plain) name → its table.
    pub tables: IndexMap<String, Entry>,
    /// Fleet name → its members' names, in order.
    pub fleets: BTreeMap<String, Vec<String>>,
    /// Tables switched off with `enabled = false`.
    pub disabled: BTreeSet<String>,
    /// Member name → its placement index: its `count` index, or its position among the sorted
    /// `for_each` keys (see `placement`); plain tables are not listed (index 0).
    pub index: BTreeMap<String, usize>,
    /// Fleets whose `count` is invalid (out of range or not an integer): their table is still
    /// checked once, as member `[0]`, so that every other problem in it is reported in the same
    /// run; references to them are not judged (their members are unknown).
    pub unknown_size: BTreeSet<String>,
}

/// Expand the `[KIND.NAME]` tables (`kind` is `instance` or `image`, for messages).
pub fn expand(
    kind: &str,
    tables: &IndexMap<String, Entry>,
    problems: &mut Vec<Problem>,
) -> Expanded {
    let mut out = Expanded::default();
    for (name, e) in tables {
        let Some(t) = entries(&e.node) else {
            out.tables.insert(name.clone(), e.clone());
            continue;
        };
        if get(t, "enabled").is_some_and(|n| n.value == Value::Bool(false)) {
            out.disabled.insert(name.clone());
            continue;
        }
        let count = get(t, "count");
        let for_each = get(t, "for_each");
        let members: Vec<(String, String, &str)> = match (count, for_each) {
            (Some(_), Some(f)) => {
                problems.push(
                    Problem::error(
                        "count_and_for_each",
                        format!("`{kind}.{name}` sets both `count` and `for_each`"),
                    )
                    .at(&f.at, "one or the other")
                    .help("`count = N` makes members [0]..[N-1]; `for_each = [\"a\", …]` makes members [\"a\"], …"),
                );
                continue;
            }
            (Some(c), None) => match &c.value {
                &Value::Int(n) if (0..=MAX_MEMBERS).contains(&n) => (0..n)
                    .map(|i| (format!("{name}[{i}]"), i.to_string(), "count.index"))
                    .collect(),
                invalid => {
                    // A wrong type is reported by the key table.
                    if let Value::Int(n) = invalid {
                        problems.push(
                            Problem::error(
                                "invalid_count",
                                format!("`{kind}.{name}`: `count` is {n}"),
                            )
                            .at(&c.at, format!("0 to {MAX_MEMBERS}"))
                            .help("use `count = 0` for no member, or `enabled = false`"),
                        );
                    }
                    // Check the rest of the table anyway (as member 0), so that its other
                    // problems are reported now, not after this one is fixed.
                    out.unknown_size.insert(name.clone());
                    let mut m = e.clone();
                    strip(&mut m.node);
                    substitute(&mut m.node, "count.index", "0");
                    out.tables.insert(format!("{name}[0]"), m);
                    continue;
                }
            },
            (None, Some(f)) => {
                let Value::Array(items) = &f.value else {
                    continue;
                };
                let mut keys = Vec::new();
                let mut seen: BTreeMap<&str, &Node> = BTreeMap::new();
                for item in items {
                    let Value::Str(k) = &item.value else { continue };
                    if let Some(first) = seen.insert(k, item) {
                        problems.push(
                            Problem::error(
                                "duplicate_key",
                                format!("`{kind}.{name}`: `for_each` lists `{k}` twice"),
                            )
                            .at(&item.at, "again")
                            .also(&first.at, "first here")
                            .help("each key makes one member; list it once"),
                        );
                        continue;
                    }
                    if !valid_key(k) {
                        problems.push(
                            Problem::error(
                                "invalid_key",
                                format!("`{kind}.{name}`: `{k}` cannot be a `for_each` key"),
                            )
                            .at(&item.at, "not a key")
                            .help("keys are non-empty and have no quotes, backslashes or brackets"),
                        );
                        continue;
                    }
                    keys.push((format!("{name}[\"{k}\"]"), k.clone(), "each.key"));
                }
                keys
            }
            (None, None) => {
                let mut plain = e.clone();
                strip(&mut plain.node);
                if let Some(p) = stray_placeholder(&plain.node, kind, name) {
                    problems.push(p);
                }
                out.tables.insert(name.clone(), plain);
                continue;
            }
        };
        let mut sorted: Vec<&str> = members.iter().map(|(m, _, _)| m.as_str()).collect();
        if count.is_none() {
            sorted.sort_unstable();
        }
        for (i, m) in sorted.iter().enumerate() {
            out.index.insert(m.to_string(), i);
        }
        let mut names = Vec::with_capacity(members.len());
        let mut template = e.clone();
        strip(&mut template.node);
        // Without a placeholder, every member is the table itself (a fleet of 1,000 is then
        // 1,000 copies, not 1,000 walks of substitution and checks).
        let placeholders = any_str(&template.node, &|s| s.contains("${"));
        for (member, index, var) in members {
            let mut m = template.clone();
            if placeholders {
                let other = if var == "count.index" {
                    "each.key"
                } else {
                    "count.index"
                };
                substitute(&mut m.node, var, &index);
                if let Some(p) = stray(&m.node, other, kind, name) {
                    problems.push(p);
                }
            }
            if let Value::Table(t) = &mut m.node.value {
                if !t.contains_key("display_name") {
                    t.insert(
                        "display_name".into(),
                        Entry {
                            key_at: e.key_at.clone(),
                            node: Node {
                                at: e.key_at.clone(),
                                value: Value::Str(format!("{name}-{index}")),
                            },
                        },
                    );
                }
            }
            names.push(member.clone());
            out.tables.insert(member, m);
        }
        out.fleets.insert(name.clone(), names);
    }
    out
}

/// Drop the fleet keys from a table (they describe the table, not a resource).
fn strip(node: &mut Node) {
    if let Value::Table(t) = &mut node.value {
        for k in ["count", "for_each", "enabled"] {
            t.shift_remove(k);
        }
    }
}

/// Replace `${VAR}` in every string.
fn substitute(node: &mut Node, var: &str, value: &str) {
    let pattern = format!("${{{var}}}");
    match &mut node.value {
        Value::Table(t) => t
            .values_mut()
            .for_each(|e| substitute(&mut e.node, var, value)),
        Value::Array(a) => a.iter_mut().for_each(|n| substitute(n, var, value)),
        Value::Str(s) if s.contains(&pattern) => *s = s.replace(&pattern, value),
        _ => {}
    }
}

/// Whether any string in `node` satisfies `f`.
fn any_str(node: &Node, f: &dyn Fn(&str) -> bool) -> bool {
    match &node.value {
        Value::Table(t) => t.values().any(|e| any_str(&e.node, f)),
        Value::Array(a) => a.iter().any(|n| any_str(n, f)),
        Value::Str(s) => f(s),
        _ => false,
    }
}

/// A `${VAR}` left where it means nothing.
fn stray(node: &Node, var: &str, kind: &str, name: &str) -> Option<Problem> {
    let pattern = format!("${{{var}}}");
    match &node.value {
        Value::Table(t) => t.values().find_map(|e| stray(&e.node, var, kind, name)),
        Value::Array(a) => a.iter().find_map(|n| stray(n, var, kind, name)),
        Value::Str(s) if s.contains(&pattern) => Some(
            Problem::error(
                "fleet_placeholder",
                format!(
                    "`${{{var}}}` in `{kind}.{name}`, which has no `{}`",
                    match var {
                        "count.index" => "count",
                        _ => "for_each",
                    }
                ),
            )
            .at(&node.at, "means nothing here")
            .help(match var {
                "count.index" => "`${count.index}` is for tables with `count = N`",
                _ => "`${each.key}` is for tables with `for_each = [...]`",
            }),
        ),
        _ => None,
    }
}

fn stray_placeholder(node: &Node, kind: &str, name: &str) -> Option<Problem> {
    stray(node, "count.index", kind, name).or_else(|| stray(node, "each.key", kind, name))
}
