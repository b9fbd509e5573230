//! Keys and types: every table of the merged tree against [`super::schema`]'s one table of keys
//! (unknown keys with a did-you-mean, wrong types, values outside an enum, resource names).

use super::diagnostic::Problem;
use super::schema::{Field, Ty};
use super::tree::{entries, Node, Value};
use super::{valid_name, Loader};
use crate::suggest::did_you_mean;

impl Loader {
    /// Keys and types against the schema table.
    pub(super) fn check_table(&mut self, node: &Node, fields: &[Field], path: &str) {
        let Some(t) = entries(node) else { return };
        for (k, e) in t {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match fields.iter().find(|f| f.name == k) {
                Some(f) => self.check_value(&e.node, f.ty, &here),
                None => {
                    let what = if path.is_empty() { "table" } else { "key" };
                    let mut p = Problem::error("unknown_key", format!("unknown {what} `{here}`"))
                        .at(&e.key_at, format!("not a known {what}"));
                    p = match did_you_mean(k, fields.iter().map(|f| f.name)) {
                        Some(s) => p.help(format!("did you mean `{s}`?")),
                        None => p.help(format!(
                            "known here: {}",
                            fields
                                .iter()
                                .map(|f| format!("`{}`", f.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    };
                    self.problem(p);
                }
            }
        }
    }

    pub(super) fn wrong_type(&mut self, node: &Node, path: &str, expected: &str) {
        self.problem(
            Problem::error(
                "wrong_type",
                format!(
                    "`{path}` must be {expected}, not {}",
                    node.value.type_name()
                ),
            )
            .at(&node.at, format!("{} here", node.value.type_name()))
            .help(format!("write `{path}` as {expected}")),
        );
    }

    pub(super) fn check_value(&mut self, node: &Node, ty: Ty, path: &str) {
        match (ty, &node.value) {
            (Ty::Str, Value::Str(_))
            | (Ty::Int, Value::Int(_))
            | (Ty::Num, Value::Int(_) | Value::Float(_))
            | (Ty::Bool, Value::Bool(_)) => {}
            (Ty::Str, _) => self.wrong_type(node, path, "a string"),
            (Ty::Int, _) => self.wrong_type(node, path, "an integer"),
            (Ty::Num, _) => self.wrong_type(node, path, "a number"),
            (Ty::Bool, _) => self.wrong_type(node, path, "a boolean (`true` or `false`)"),
            (Ty::Enum(values), Value::Str(s)) => {
                if !values.contains(&s.as_str()) {
                    let mut p = Problem::error(
                        "invalid_value",
                        format!(
                            "`{path}` must be one of {}",
                            values
                                .iter()
                                .map(|v| format!("`{v}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                    .at(&node.at, format!("`{s}` is not allowed"));
                    if let Some(m) = did_you_mean(&s.to_ascii_uppercase(), values.iter().copied()) {
                        p = p.help(format!("did you mean `{m}`?"));
                    }
                    self.problem(p);
                }
            }
            (Ty::Enum(_), _) => self.wrong_type(node, path, "a string"),
            (Ty::EnumOrStrList(values), Value::Str(_)) => {
                self.check_value(node, Ty::Enum(values), path)
            }
            (Ty::EnumOrStrList(_), Value::Array(_)) => self.check_value(node, Ty::StrList, path),
            (Ty::EnumOrStrList(values), _) => self.wrong_type(
                node,
                path,
                &format!(
                    "{} or an array of strings",
                    values
                        .iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            (Ty::StrMap, Value::Table(t)) => {
                for (k, e) in t {
                    if !matches!(e.node.value, Value::Str(_)) {
                        self.wrong_type(&e.node, &format!("{path}.{k}"), "a string");
                    }
                }
            }
            (Ty::EnumMap(values), Value::Table(t)) => {
                for (k, e) in t {
                    self.check_value(&e.node, Ty::Enum(values), &format!("{path}.{k}"));
                }
            }
            (Ty::NestedMap, Value::Table(t)) => {
                for (k, e) in t {
                    if !matches!(e.node.value, Value::Table(_)) {
                        self.wrong_type(
                            &e.node,
                            &format!("{path}.{k}"),
                            "a table of tag keys and values",
                        );
                    }
                }
            }
            (Ty::StrMap | Ty::NestedMap | Ty::EnumMap(_), _) => {
                self.wrong_type(node, path, "a table")
            }
            (Ty::StrList, Value::Array(a)) => {
                for (i, n) in a.iter().enumerate() {
                    if !matches!(n.value, Value::Str(_)) {
                        self.wrong_type(n, &format!("{path}[{i}]"), "a string");
                    }
                }
            }
            (Ty::StrList, _) => self.wrong_type(node, path, "an array of strings"),
            (Ty::StrOrTable(_), Value::Str(_)) => {}
            (Ty::StrOrTable(fields), Value::Table(_)) => self.check_table(node, fields, path),
            (Ty::StrOrTable(_), _) => self.wrong_type(node, path, "a string or a table"),
            (Ty::StrOrTableList(fields), Value::Array(a)) => {
                for (i, n) in a.iter().enumerate() {
                    self.check_value(n, Ty::StrOrTable(fields), &format!("{path}[{i}]"));
                }
            }
            (Ty::StrOrTableList(_), _) => {
                self.wrong_type(node, path, "an array of strings or tables")
            }
            (Ty::Table(fields), Value::Table(_)) => self.check_table(node, fields, path),
            (Ty::Table(_), _) => self.wrong_type(node, path, "a table"),
            (Ty::Named(fields), Value::Table(t)) => {
                for (name, e) in t {
                    let here = format!("{path}.{name}");
                    if !valid_name(name) {
                        self.problem(
                            Problem::error(
                                "invalid_name",
                                format!(
                                    "`{here}`: resource names use letters, digits, `_` and `-`"
                                ),
                            )
                            .at(&e.key_at, "invalid name")
                            .help("rename the table"),
                        );
                    }
                    match &e.node.value {
                        Value::Table(_) => self.check_table(&e.node, fields, &here),
                        _ => self.wrong_type(&e.node, &here, &format!("a table (`[{here}]`)")),
                    }
                }
            }
            (Ty::Named(_), _) => self.wrong_type(node, path, "a table of named tables"),
            (Ty::TableArray(fields), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let here = format!("{path}[{i}]");
                    match &item.value {
                        Value::Table(_) => self.check_table(item, fields, &here),
                        _ => self.wrong_type(item, &here, &format!("a table (`[[{path}]]`)")),
                    }
                }
            }
            (Ty::TableArray(_), _) => {
                self.wrong_type(node, path, &format!("an array of tables (`[[{path}]]`)"))
            }
            (Ty::Vars, Value::Table(t)) => {
                for (k, e) in t {
                    if matches!(
                        e.node.value,
                        Value::Table(_) | Value::Array(_) | Value::Other(_)
                    ) {
                        self.wrong_type(
                            &e.node,
                            &format!("vars.{k}"),
                            "a string, number or boolean",
                        );
                    }
                }
            }
            (Ty::Vars, _) => self.wrong_type(node, path, "a table"),
            // The value (negative, not a percentage) is checked by `rollout`.
            (Ty::CountOrPercent, Value::Int(_) | Value::Str(_)) => {}
            (Ty::CountOrPercent, _) => {
                self.wrong_type(node, path, "a count (`1`) or a percentage (`\"25%\"`)")
            }
            // The value is checked by `versions`.
            (Ty::Version, Value::Int(_) | Value::Str(_)) => {}
            (Ty::Version, _) => self.wrong_type(
                node,
                path,
                "`\"previous\"` or a count of versions back (`1`)",
            ),
        }
    }
}
