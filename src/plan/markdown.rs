//! A plan as a pull-request comment (`kiln plan --format markdown`, `kiln show --format markdown
//! FILE`): a summary line, a table of the changes (address, action, reason), the drift, what the
//! policies said, and the text plan folded in a `<details>` block — cut to GitHub's comment limit
//! (65,536 characters) with a note saying so. Rendered from the one [`Plan`], like the others.

use std::fmt::Write;

use super::render::{self, Style};
use super::{counted_alone, Plan};
use crate::policy::Report;

/// GitHub's limit on the body of an issue or pull-request comment, in characters.
pub const COMMENT_LIMIT: usize = 65_536;

/// A table cell: pipes escaped, one line.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// The comment: at most [`COMMENT_LIMIT`] characters.
pub fn markdown(plan: &Plan, policy: Option<&Report>) -> String {
    let mut head = String::new();
    let s = &plan.summary;
    let _ = writeln!(
        head,
        "### kiln plan{} · env `{}`\n",
        if plan.refresh_only {
            " (refresh only)"
        } else {
            ""
        },
        plan.env
    );
    let denied = policy.is_some_and(Report::is_denied);
    let versions_only = !plan.retain.is_empty() || !plan.forget_deposed.is_empty();
    if plan.changes.is_empty() && plan.drift.is_empty() && plan.moved.is_empty() {
        let _ = match versions_only {
            // As the text plan says it: the apply still writes the state.
            true => writeln!(
                head,
                "**No changes in OCI.** Applying records these image versions in the state:\n"
            ),
            false => writeln!(
                head,
                "**No changes.** The infrastructure matches the manifest.\n"
            ),
        };
    } else {
        let _ = writeln!(
            head,
            "**Plan: {} to create, {} to update, {} to replace, {} to move, {} to start, {} to stop, {} to destroy.**{}{}\n",
            s.create,
            s.update,
            s.replace,
            s.move_,
            s.start,
            s.stop,
            s.delete,
            match s.drifted {
                0 => String::new(),
                n => format!(" {n} drifted."),
            },
            if denied { " **Denied by policy.**" } else { "" }
        );
    }
    if !plan.changes.is_empty() || !plan.moved.is_empty() {
        let _ = writeln!(head, "| address | action | reason |\n|---|---|---|");
        for (from, to) in &plan.moved {
            let _ = writeln!(head, "| `{}` | moved | from `{}` |", cell(to), cell(from));
        }
        for c in plan
            .changes
            .iter()
            .filter(|c| counted_alone(c, &plan.changes))
        {
            let address = match c.deposed {
                true => format!("{} (previous version)", c.address),
                false => c.address.clone(),
            };
            let _ = writeln!(
                head,
                "| `{}` | {} {} | {} |",
                cell(&address),
                c.action.symbol(),
                c.action.as_str(),
                cell(&c.reason)
            );
        }
        head.push('\n');
    }
    if versions_only {
        for note in render::version_notes(plan, |s| format!("`{}`", cell(s))) {
            let _ = writeln!(head, "- {note}");
        }
        head.push('\n');
    }
    if !plan.drift.is_empty() {
        let _ = writeln!(head, "#### Drift: changed outside kiln\n");
        for d in &plan.drift {
            match &d.gone {
                Some(why) => {
                    let _ = writeln!(head, "- `{}` is gone: {}", d.address, cell(why));
                }
                None => {
                    for a in &d.attributes {
                        let _ = writeln!(
                            head,
                            "- `{}` `{}`: `{}` (state) → `{}` (live)",
                            d.address,
                            a.path,
                            cell(&value(&a.before)),
                            cell(&value(&a.after))
                        );
                    }
                }
            }
        }
        head.push('\n');
    }
    if let Some(r) = policy {
        let _ = writeln!(
            head,
            "#### Policies: {} file{}, {} denied, {} warning{}\n",
            r.files.len(),
            if r.files.len() == 1 { "" } else { "s" },
            r.denied().count(),
            r.warnings().count(),
            if r.warnings().count() == 1 { "" } else { "s" },
        );
        for f in r.denied() {
            let _ = writeln!(
                head,
                "- ❌ **deny** `{}` ({}): {}",
                f.file.display(),
                f.rule,
                cell(&f.msg)
            );
        }
        for f in r.warnings() {
            let _ = writeln!(
                head,
                "- ⚠️ warn `{}` ({}): {}",
                f.file.display(),
                f.rule,
                cell(&f.msg)
            );
        }
        if r.findings.is_empty() {
            let _ = writeln!(head, "- ✅ every policy passed");
        }
        head.push('\n');
    }
    let text = render::text(plan, Style::default()).replace("```", "ʼʼʼ");
    let open = "<details><summary>Text plan</summary>\n\n```text\n";
    let close = "```\n\n</details>\n";
    let whole = format!("{head}{open}{text}{close}");
    if whole.chars().count() <= COMMENT_LIMIT {
        return whole;
    }
    let note = format!(
        "\n_The text plan was cut: the whole comment would be {} characters, more than GitHub's {COMMENT_LIMIT}; run `kiln plan` (or `kiln show PLANFILE`) for all of it._\n",
        whole.chars().count()
    );
    // Room for the note, the fold and a few lines of slack; the table itself is cut when it alone
    // would not fit.
    let fixed = open.len() + close.len() + note.chars().count() + 16;
    let head = match head.chars().count() + fixed > COMMENT_LIMIT {
        true => format!("{}…\n\n", lines_within(&head, COMMENT_LIMIT - fixed - 4)),
        false => head,
    };
    let room = COMMENT_LIMIT.saturating_sub(head.chars().count() + fixed);
    format!("{head}{open}{}…\n{close}{note}", lines_within(&text, room))
}

/// The whole lines of `text` that fit in `room` characters.
fn lines_within(text: &str, room: usize) -> String {
    let mut cut: String = text.chars().take(room).collect();
    if cut.len() < text.len() {
        match cut.rfind('\n') {
            Some(i) => cut.truncate(i + 1),
            None => cut.clear(),
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Change, Kind, Summary};

    fn plan_of(n: usize) -> Plan {
        let changes: Vec<Change> = (0..n)
            .map(|i| Change {
                address: format!("instance.web[{i}]"),
                kind: Kind::Instance,
                region: None,
                action: Action::Create,
                reason: "not in the state | new".into(),
                attributes: vec![],
                id: None,
                etag: None,
                request: None,
                inputs: None,
                depends_on: vec![],
                deposed: false,
                pending: false,
                observed: None,
            })
            .collect();
        Plan {
            format_version: "1".into(),
            env: "default".into(),
            endpoint: "emulator".into(),
            regions: vec![],
            state_lineage: None,
            state_serial: 0,
            summary: Summary::of(&changes, &[]),
            changes,
            drift: vec![],
            forget: vec![],
            forget_deposed: vec![],
            retain: vec![],
            envs: vec![],
            moved: vec![],
            warnings: vec![],
            refresh_only: false,
            refresh: vec![],
            read_network: vec![],
            observed: vec![],
            rollouts: vec![],
            locked_by: None,
            partial: None,
            lookups: Vec::new(),
        }
    }

    #[test]
    fn a_small_plan_is_whole_and_a_huge_one_is_cut_to_the_comment_limit() {
        let small = markdown(&plan_of(2), None);
        assert!(small.contains("| `instance.web[1]` | + create | not in the state \\| new |"));
        assert!(small.contains("<details><summary>Text plan</summary>"));
        assert!(!small.contains("was cut"));
        for n in [1_500, 5_000] {
            let big = markdown(&plan_of(n), None);
            assert!(big.chars().count() <= COMMENT_LIMIT, "{n}: {}", big.len());
            assert!(big.contains("The text plan was cut"), "{n}");
            assert!(big.contains("**Plan: "), "{n}");
        }
    }

    #[test]
    fn a_plan_that_only_records_image_versions_says_so() {
        let mut plan = plan_of(0);
        assert!(markdown(&plan, None).contains("**No changes.**"));
        plan.retain.push(crate::plan::versions::Retain {
            address: "image.golden".into(),
            id: "ocid1.image.oc1.iad.old".into(),
            version: 3,
        });
        plan.forget_deposed
            .push(("image.golden".into(), "ocid1.image.oc1.iad.gone".into()));
        let md = markdown(&plan, None);
        assert!(!md.contains("**No changes.**"), "{md}");
        assert!(
            md.contains("**No changes in OCI.** Applying records"),
            "{md}"
        );
        assert!(md.contains("- `image.golden` version 3 (`ocid1.image.oc1.iad.old`) is kept"));
        assert!(md.contains("- `image.golden` previous version `ocid1.image.oc1.iad.gone` is gone"));
    }
}
