//! Views of a [`Plan`]: terraform-like text and JSON. Both come from the same structure.

use std::fmt::Write;

use serde_json::Value;

use super::{Action, AttrChange, Plan};

/// Colours for the human view: on only for a terminal without `NO_COLOR` (the caller decides).
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn action(&self, action: Action, text: &str) -> String {
        let code = match action {
            Action::Create => "32",
            Action::Update | Action::Move | Action::Start | Action::Stop => "33",
            Action::Replace | Action::Delete => "31",
        };
        self.paint(code, text)
    }
}

/// The plan as JSON (`kiln plan --json`): the plan's own fields, without the resources it
/// observed for the other views ([`Plan::observed`]).
pub fn json(plan: &Plan) -> String {
    let mut v = serde_json::to_value(plan).expect("a plan always serialises");
    if let Value::Object(m) = &mut v {
        m.remove("observed");
    }
    serde_json::to_string_pretty(&v).expect("a plan always serialises")
}

fn headline(action: Action) -> &'static str {
    match action {
        Action::Create => "will be created",
        Action::Update => "will be updated in place",
        Action::Replace => "must be replaced",
        Action::Move => "will be moved to another compartment",
        Action::Start => "will be started",
        Action::Stop => "will be stopped",
        Action::Delete => "will be destroyed",
    }
}

/// A JSON value the way the plan shows it: strings quoted, `null` as `(none)`.
fn show(v: &Value) -> String {
    match v {
        Value::Null => "(none)".to_string(),
        other => other.to_string(),
    }
}

/// `user_data` is sent base64-encoded; the plan shows the cloud-init text it stands for (when it
/// decodes to UTF-8 text), so a change reads as a line diff.
fn decoded(path: &str, v: &Value) -> Value {
    use base64::Engine;
    if path != "metadata.user_data" {
        return v.clone();
    }
    let text = v
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .and_then(|b| String::from_utf8(b).ok());
    match text {
        Some(t) => Value::String(t),
        None => v.clone(),
    }
}

fn attr_line(out: &mut String, style: Style, action: Action, a: &AttrChange, width: usize) {
    let (before, after) = (decoded(&a.path, &a.before), decoded(&a.path, &a.after));
    let multi_line = |v: &Value| v.as_str().is_some_and(|s| s.contains('\n'));
    let sym = if action == Action::Create { "+" } else { "~" };
    let replacement = || {
        let why = a
            .why
            .as_deref()
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        format!(
            "  {}",
            style.paint("31", &format!("# forces replacement{why}"))
        )
    };
    if multi_line(&before) || multi_line(&after) {
        let (before, after) = (before.as_str().unwrap_or(""), after.as_str().unwrap_or(""));
        let _ = writeln!(
            out,
            "      {} {:<width$} = <<-{}",
            style.action(action, sym),
            a.path,
            if a.forces_replacement {
                replacement()
            } else {
                String::new()
            }
        );
        let diff = similar::TextDiff::from_lines(before, after);
        for line in diff.unified_diff().context_radius(2).to_string().lines() {
            let _ = writeln!(out, "          {line}");
        }
    } else if action == Action::Create {
        let _ = writeln!(
            out,
            "      {} {:<width$} = {}",
            style.action(action, sym),
            a.path,
            show(&after)
        );
    } else {
        let _ = write!(
            out,
            "      {} {:<width$} = {} -> {}",
            style.action(action, sym),
            a.path,
            show(&before),
            show(&after)
        );
        if a.forces_replacement {
            out.push_str(&replacement());
        }
        out.push('\n');
    }
}

/// The human view (`kiln plan`).
pub fn text(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kiln plan{} · env {} · endpoint: {}",
        if plan.refresh_only {
            " (refresh only)"
        } else {
            ""
        },
        plan.env,
        plan.endpoint
    );
    if !plan.regions.is_empty() {
        let _ = writeln!(out, "regions: {}", plan.regions.join(", "));
    }
    if let Some(h) = &plan.locked_by {
        let _ = writeln!(
            out,
            "{} the state is locked by {}: a `kiln {}` is running (or died holding it); this plan reads the state as it recorded it so far (serial {})",
            style.paint("33", "Note:"),
            h.describe(),
            h.operation,
            plan.state_serial
        );
    }
    for e in &plan.envs {
        let _ = match e.serial {
            Some(serial) => writeln!(
                out,
                "images from environment `{}`: its state at serial {serial} (a snapshot, not locked)",
                e.env
            ),
            None => writeln!(out, "images from environment `{}`: it has no state", e.env),
        };
    }
    if let Some(p) = &plan.partial {
        let _ = writeln!(
            out,
            "{} partial plan ({}): only what it selects is planned; the summary says what was left out",
            style.paint("33", "Warning:"),
            selectors(p)
        );
    }
    out.push('\n');

    if !plan.lookups.is_empty() {
        let _ = writeln!(out, "{}", style.paint("1", "Looked up by name"));
        for l in &plan.lookups {
            let _ = writeln!(
                out,
                "  {} = {} → {}  ({})",
                l.field,
                l.lookup,
                l.id,
                l.addresses.join(", ")
            );
        }
        out.push('\n');
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "{} {w}", style.paint("33", "Warning:"));
    }
    if !plan.warnings.is_empty() {
        out.push('\n');
    }
    for note in version_notes(plan, str::to_string) {
        let _ = writeln!(out, "  {note}");
    }
    if !plan.retain.is_empty() || !plan.forget_deposed.is_empty() {
        out.push('\n');
    }
    if !plan.moved.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            style.paint(
                "1",
                "Moved in the manifest (the state follows; nothing changes in OCI)"
            )
        );
        for (from, to) in &plan.moved {
            let _ = writeln!(out, "  # {from} has moved to {to}");
        }
        out.push('\n');
    }

    if !plan.drift.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            style.paint("1", "Drift: changed outside kiln since the last apply")
        );
        for d in &plan.drift {
            match &d.gone {
                Some(why) => {
                    let _ = writeln!(out, "  ! {} is gone: {why}", d.address);
                }
                None => {
                    let _ = writeln!(out, "  ! {}", d.address);
                    let width = d.attributes.iter().map(|a| a.path.len()).max().unwrap_or(0);
                    for a in &d.attributes {
                        let _ = writeln!(
                            out,
                            "      ~ {:<width$} = {} (state) -> {} (live)",
                            a.path,
                            show(&decoded(&a.path, &a.before)),
                            show(&decoded(&a.path, &a.after))
                        );
                    }
                }
            }
        }
        out.push('\n');
    }

    if plan.refresh_only {
        if plan.drift.is_empty() {
            let _ = writeln!(out, "No drift. The state matches OCI.");
        } else {
            let gone = match plan.drift.iter().filter(|d| d.gone.is_some()).count() {
                0 => String::new(),
                n => format!(" ({n} gone)"),
            };
            let _ = writeln!(
                out,
                "Refresh only: {} drifted{gone}. `kiln apply --refresh-only` writes what OCI says\ninto the state (accepting the drift) and changes nothing in OCI.",
                plan.drift.len()
            );
        }
        partial_note(&mut out, plan);
        network_note(&mut out, plan);
        return out;
    }

    if plan.changes.is_empty() && !plan.moved.is_empty() {
        let _ = writeln!(
            out,
            "Plan: {} to rename in the state, nothing to change in OCI.",
            plan.moved.len()
        );
        partial_note(&mut out, plan);
        return out;
    }
    if plan.changes.is_empty() {
        match plan.partial {
            Some(_) => {
                let _ = writeln!(out, "No changes in what this plan selects.");
            }
            None if !plan.retain.is_empty() || !plan.forget_deposed.is_empty() => {
                let _ = writeln!(
                    out,
                    "No changes in OCI. Applying records the image versions above in the state."
                );
            }
            None => {
                let _ = writeln!(out, "No changes. The infrastructure matches the manifest.");
            }
        }
        partial_note(&mut out, plan);
        network_note(&mut out, plan);
        return out;
    }

    let _ = writeln!(out, "kiln will perform these actions:");
    for c in &plan.changes {
        out.push('\n');
        let shown = if c.deposed {
            format!("{} (previous version)", c.address)
        } else {
            c.address.clone()
        };
        let _ = writeln!(out, "  # {shown} {} ({})", headline(c.action), c.reason);
        let sym = style.action(c.action, c.action.symbol());
        let _ = writeln!(out, "  {sym} {shown}");
        let width = c.attributes.iter().map(|a| a.path.len()).max().unwrap_or(0);
        for a in &c.attributes {
            attr_line(&mut out, style, c.action, a, width);
        }
    }
    for r in &plan.rollouts {
        rollout_block(&mut out, style, r);
    }
    out.push('\n');
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "Plan: {} to create, {} to update, {} to replace, {} to move, {} to start, {} to stop, {} to destroy.",
        s.create,
        s.update,
        s.replace,
        // Compartment moves and `[[moved]]` renames, as the apply's summary counts them.
        s.move_ + plan.moved.len(),
        s.start,
        s.stop,
        s.delete
    );
    partial_note(&mut out, plan);
    network_note(&mut out, plan);
    out
}

/// `30s`, `5m`, `1h30m`, `500ms`: as the manifest writes durations.
fn dur(ms: u64) -> String {
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, 0) => format!("{h}h{m}m"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// One fleet's rollout: members, batches, limits, gate, and per member the method and why.
fn rollout_block(out: &mut String, style: Style, r: &super::rollout::Rollout) {
    let members = r.members().count();
    let check = if r.gate.stopped {
        "healthy = launched (the fleet is declared STOPPED: no health check)".to_string()
    } else if r.gate.command.is_empty() {
        "healthy = RUNNING".to_string()
    } else {
        format!(
            "healthy = RUNNING, then `{}` (every {}, for at most {})",
            r.gate.command.join(" "),
            dur(r.gate.interval_ms),
            dur(r.gate.timeout_ms),
        )
    };
    out.push('\n');
    if let Some(image) = &r.rollback_to {
        let _ = writeln!(
            out,
            "  {} {}: a rollout failed its health gate (`on_failure = \"rollback\"`): {members} members go back onto {image}, a failure on the way back pauses",
            style.paint("1", "rollback"),
            r.fleet,
        );
    }
    let _ = writeln!(
        out,
        "  {} {}: {members} of {} members in {} batches (max_surge {} = {}, max_unavailable {} = {}; on failure: {})",
        style.paint("1", "rollout"),
        r.fleet,
        r.size,
        r.batches.len(),
        r.max_surge,
        r.surge,
        r.max_unavailable,
        r.unavailable,
        r.on_failure,
    );
    let _ = writeln!(
        out,
        "      {check}{}",
        if r.gate.min_healthy_ms > 0 {
            format!(", then still so after {}", dur(r.gate.min_healthy_ms))
        } else {
            String::new()
        }
    );
    for (k, b) in r.batches.iter().enumerate() {
        for m in b {
            let _ = writeln!(
                out,
                "      batch {}: {} — {}",
                k + 1,
                m.address,
                m.method.describe()
            );
        }
    }
}

/// `--target instance.web, --exclude image.golden`.
fn selectors(p: &super::Partial) -> String {
    p.targets
        .iter()
        .map(|t| format!("--target {t}"))
        .chain(p.excludes.iter().map(|x| format!("--exclude {x}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a partial plan left out, under its summary (see [`super::Partial`]).
pub fn partial_summary(p: &super::Partial) -> String {
    let plural = |n: usize, one: &str, many: &str| match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    };
    let mut outside = Vec::new();
    if p.changes_outside > 0 {
        outside.push(plural(p.changes_outside, "change", "changes"));
    }
    if p.drifted_outside > 0 {
        outside.push(plural(
            p.drifted_outside,
            "drifted resource",
            "drifted resources",
        ));
    }
    let mut text = match outside.is_empty() {
        true => "nothing outside the selection is pending".to_string(),
        false => format!(
            "{} outside the selection {} not in this plan",
            outside.join(" and "),
            if p.changes_outside + p.drifted_outside == 1 {
                "is"
            } else {
                "are"
            }
        ),
    };
    if p.not_read > 0 {
        text.push_str(&format!(
            "; {} left out by `--exclude` {} not read (what {} need is not known)",
            plural(p.not_read, "resource", "resources"),
            if p.not_read == 1 { "was" } else { "were" },
            if p.not_read == 1 {
                "it may"
            } else {
                "they may"
            },
        ));
    }
    format!("Partial plan ({}): {text}.", selectors(p))
}

fn partial_note(out: &mut String, plan: &Plan) {
    if let Some(p) = &plan.partial {
        let _ = writeln!(out, "{}", partial_summary(p));
    }
}

/// Which instances' network facts apply reads without a change (none: nothing is said).
/// What an apply of `plan` records of image versions without changing OCI, a sentence each,
/// with addresses and OCIDs shown by `code`.
pub(super) fn version_notes(
    plan: &Plan,
    code: fn(&str) -> String,
) -> impl Iterator<Item = String> + '_ {
    let retained = plan.retain.iter().map(move |r| {
        format!(
            "{} version {} ({}) is kept as a retained version (`keep`)",
            code(&r.address),
            r.version,
            code(&r.id)
        )
    });
    let gone = plan.forget_deposed.iter().map(move |(address, id)| {
        format!(
            "{} previous version {} is gone from OCI: dropped from the state",
            code(address),
            code(id)
        )
    });
    retained.chain(gone)
}

fn network_note(out: &mut String, plan: &Plan) {
    if plan.read_network.is_empty() || plan.refresh_only {
        return;
    }
    let _ = writeln!(
        out,
        "\nThe state has no network facts (IPs, hostname) of {}: apply reads them, changing nothing in OCI.",
        plan.read_network.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Change, Drift, Kind, Summary};
    use serde_json::json;

    #[test]
    fn text_view_shows_symbols_reasons_and_multiline_diffs() {
        let changes = vec![
            Change {
                address: "instance.web".into(),
                kind: Kind::Instance,
                region: None,
                action: Action::Replace,
                reason: "availability_domain cannot change".into(),
                attributes: vec![
                    AttrChange {
                        path: "availability_domain".into(),
                        before: json!("kIdk:US-ASHBURN-AD-1"),
                        after: json!("kIdk:US-ASHBURN-AD-2"),
                        forces_replacement: true,
                        why: Some("an instance cannot change availability domain".into()),
                    },
                    AttrChange {
                        path: "metadata.user_data".into(),
                        // As OCI holds it: base64 (of `#!/bin/sh\necho a\n`, `…b\n`).
                        before: json!("IyEvYmluL3NoCmVjaG8gYQo="),
                        after: json!("IyEvYmluL3NoCmVjaG8gYgo="),
                        forces_replacement: true,
                        why: None,
                    },
                ],
                id: Some("ocid1.instance.oc1.iad.a".into()),
                etag: Some("e1".into()),
                request: None,
                inputs: None,
                depends_on: vec![],
                deposed: false,
                observed: None,
                pending: false,
            },
            Change {
                address: "instance.db".into(),
                kind: Kind::Instance,
                region: None,
                action: Action::Stop,
                reason: "desired state is STOPPED".into(),
                attributes: vec![],
                id: None,
                etag: None,
                request: None,
                inputs: None,
                depends_on: vec![],
                deposed: false,
                observed: None,
                pending: false,
            },
        ];
        let drift = vec![Drift {
            address: "instance.web".into(),
            attributes: vec![AttrChange {
                path: "display_name".into(),
                before: json!("web"),
                after: json!("renamed"),
                forces_replacement: false,
                why: None,
            }],
            gone: None,
        }];
        let plan = Plan {
            format_version: "1".into(),
            env: "default".into(),
            endpoint: "https://iaas.us-ashburn-1.oraclecloud.com".into(),
            regions: vec![],
            state_lineage: None,
            state_serial: 0,
            summary: Summary::of(&changes, &drift),
            forget: vec![],
            forget_deposed: vec![],
            retain: vec![],
            envs: vec![],
            moved: vec![],
            warnings: vec![],
            changes,
            drift,
            refresh_only: false,
            refresh: vec![],
            read_network: vec![],
            observed: vec![],
            rollouts: vec![],
            locked_by: None,
            partial: None,
            lookups: Vec::new(),
        };
        let t = text(&plan, Style::default());
        assert!(t.contains("-/+ instance.web"), "{t}");
        assert!(
            t.contains("# forces replacement (an instance cannot change availability domain)"),
            "{t}"
        );
        // `user_data` is shown decoded, as a line diff, not base64.
        assert!(t.contains("-echo a"), "{t}");
        assert!(t.contains("+echo b"), "{t}");
        assert!(t.contains(" #!/bin/sh"), "{t}");
        assert!(!t.contains("IyEv"), "{t}");
        assert!(
            t.contains("~ display_name = \"web\" (state) -> \"renamed\" (live)"),
            "{t}"
        );
        assert!(t.contains("Plan: 0 to create, 0 to update, 1 to replace, 0 to move, 0 to start, 1 to stop, 0 to destroy."), "{t}");
        let j: Value = serde_json::from_str(&json(&plan)).unwrap();
        assert_eq!(
            j["changes"][0]["attributes"][0]["forces_replacement"],
            json!(true)
        );
        assert_eq!(j["summary"]["stop"], json!(1));
    }
}
