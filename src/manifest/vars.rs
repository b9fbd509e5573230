//! `${vars.NAME}` substitution over the merged tree, before keys and types are checked: a
//! whole-string reference keeps the variable's type, one inside a string is formatted into it;
//! `${count.…}` / `${each.…}` are left for the fleet expansion.

use std::collections::BTreeMap;

use super::diagnostic::{At, Problem};
use super::tree::{entries, get, Node, Value};
use super::Loader;
use crate::suggest::did_you_mean;

impl Loader {
    pub(super) fn substitute_vars(&mut self, root: &mut Node) {
        let vars: BTreeMap<String, Node> = match &root.value {
            Value::Table(t) => get(t, "vars")
                .and_then(entries)
                .map(|v| v.iter().map(|(k, e)| (k.clone(), e.node.clone())).collect())
                .unwrap_or_default(),
            _ => return,
        };
        let mut problems = Vec::new();
        fn walk(
            node: &mut Node,
            vars: &BTreeMap<String, Node>,
            problems: &mut Vec<Problem>,
            in_vars: bool,
        ) {
            match &mut node.value {
                Value::Table(t) => {
                    for (k, e) in t.iter_mut() {
                        walk(&mut e.node, vars, problems, in_vars || k == "vars");
                    }
                }
                Value::Array(a) => a.iter_mut().for_each(|n| walk(n, vars, problems, in_vars)),
                Value::Str(s) if !in_vars && s.contains("${") => {
                    // A whole-string reference keeps the variable's type.
                    if let Some(name) = s
                        .strip_prefix("${vars.")
                        .and_then(|r| r.strip_suffix('}'))
                        .filter(|n| !n.contains('}'))
                    {
                        match vars.get(name) {
                            Some(v) => node.value = v.value.clone(),
                            None => problems.push(unknown_var(name, &node.at, vars)),
                        }
                        return;
                    }
                    let mut out = String::new();
                    let mut rest = s.as_str();
                    while let Some(start) = rest.find("${") {
                        out.push_str(&rest[..start]);
                        let Some(end) = rest[start..].find('}') else {
                            out.push_str(&rest[start..]);
                            rest = "";
                            break;
                        };
                        let inner = &rest[start + 2..start + end];
                        if inner.starts_with("count.") || inner.starts_with("each.") {
                            // A fleet member's index or key: substituted when the fleet expands.
                            out.push_str(&rest[start..start + end + 1]);
                            rest = &rest[start + end + 1..];
                            continue;
                        }
                        match inner
                            .strip_prefix("vars.")
                            .and_then(|n| vars.get(n).map(|v| (n, v)))
                        {
                            Some((_, v)) => out.push_str(&match &v.value {
                                Value::Str(x) => x.clone(),
                                Value::Int(i) => i.to_string(),
                                Value::Float(f) => f.to_string(),
                                Value::Bool(b) => b.to_string(),
                                other => other.type_name().to_string(),
                            }),
                            None => {
                                problems.push(unknown_var(
                                    inner.strip_prefix("vars.").unwrap_or(inner),
                                    &node.at,
                                    vars,
                                ));
                                out.push_str(&rest[start..start + end + 1]);
                            }
                        }
                        rest = &rest[start + end + 1..];
                    }
                    out.push_str(rest);
                    *s = out;
                }
                _ => {}
            }
        }
        fn unknown_var(name: &str, at: &At, vars: &BTreeMap<String, Node>) -> Problem {
            let p = Problem::error("unknown_var", format!("`${{vars.{name}}}` is not defined"))
                .at(at, "used here");
            match did_you_mean(name, vars.keys().map(String::as_str)) {
                Some(s) => p.help(format!("did you mean `${{vars.{s}}}`?")),
                None => p.help(format!("define it in `[vars]`: `{name} = \"...\"`")),
            }
        }
        walk(root, &vars, &mut problems, false);
        self.problems.extend(problems);
    }
}
