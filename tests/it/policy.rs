//! `--policy DIR` and `[policy] dirs`: Rego policies (conftest's conventions, old and new syntax)
//! evaluated against the Terraform-shaped plan; a denial fails `plan` and stops `apply` before it
//! asks, a saved plan is checked again when applied, a syntax error names its file and line.

use std::path::Path;

use crate::support::{self, Project};

/// Old (v0) syntax, as conftest policies were written before OPA 1.0.
const PROTECTED_V0: &str = r#"package main

deny[msg] {
  rc := input.resource_changes[_]
  rc.type == "oci_core_instance"
  rc.change.actions[_] == "delete"
  rc.change.before.freeform_tags.protected == "true"
  msg := sprintf("%s is protected", [rc.address])
}
"#;

/// New (v1) syntax; a warning only.
const OWNER_V1: &str = r#"package main

warn contains msg if {
  some rc in input.resource_changes
  "create" in rc.change.actions
  not rc.change.after.freeform_tags.owner
  msg := sprintf("%s has no owner tag", [rc.address])
}
"#;

fn policy(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_denial_fails_plan_and_stops_apply_and_a_saved_plan_is_checked_again() {
    let p = Project::new(support::config(0.002)).await;
    let dir = p.path().join("policies");
    policy(&dir, "protected.rego", PROTECTED_V0);
    policy(&dir, "owner.rego", OWNER_V1);
    p.write("[instance.keep]\nfreeform_tags = { protected = \"true\" }\n\n[instance.spare]\n");
    // Creates: warnings only, the plan passes.
    let plan = p.kiln(&["plan", "--policy", "policies"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout
            .contains("WARN  policies/owner.rego (warn): oci_core_instance.keep has no owner tag"),
        "{plan:?}"
    );
    assert!(
        plan.stdout
            .contains("Policies: 2 files checked, 0 denied, 2 warnings."),
        "{plan:?}"
    );
    let apply = p
        .kiln(&["apply", "--auto-approve", "--policy", "policies"])
        .await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let keep = p.state()["resources"]["instance.keep"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Deleting the protected instance: plan exits 1 naming the file and the message.
    p.write("[instance.spare]\n");
    let plan = p.kiln(&["plan", "--policy", "policies"]).await;
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(
        plan.stdout
            .contains("DENY  policies/protected.rego (deny): oci_core_instance.keep is protected"),
        "{plan:?}"
    );
    assert!(plan.stderr.contains("kiln::policy::denied"), "{plan:?}");
    // JSON stays JSON on stdout; the findings go to stderr.
    let json = p
        .kiln(&["plan", "--json=terraform", "--policy", "policies"])
        .await;
    assert_eq!(json.code, 1, "{json:?}");
    serde_json::from_str::<serde_json::Value>(&json.stdout).unwrap();
    assert!(json.stderr.contains("is protected"), "{json:?}");
    // apply refuses before it asks (no `--auto-approve`, no terminal: it would fail asking).
    let apply = p.kiln(&["apply", "--policy", "policies"]).await;
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(apply.stderr.contains("denied this plan"), "{apply:?}");
    assert!(!apply.stderr.contains("--auto-approve"), "{apply:?}");
    let apply = p
        .kiln(&["apply", "--auto-approve", "--policy", "policies"])
        .await;
    assert_eq!(apply.code, 1, "{apply:?}");
    let live = p.client().get_instance(&keep).await.unwrap().body;
    assert_eq!(live.lifecycle_state, "RUNNING", "not deleted");

    // A plan saved without the policy is checked again when applied with it in the manifest.
    let saved = p.kiln(&["plan", "--out", "delete.plan"]).await;
    assert_eq!(saved.code, 0, "{saved:?}");
    p.write("[policy]\ndirs = [\"policies\"]\n\n[instance.spare]\n");
    let apply = p.kiln(&["apply", "delete.plan"]).await;
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(apply.stdout.contains("is protected"), "{apply:?}");
    let live = p.client().get_instance(&keep).await.unwrap().body;
    assert_eq!(live.lifecycle_state, "RUNNING", "not deleted");
    // Without the policy, the same plan applies.
    p.write("[instance.spare]\n");
    let apply = p.kiln(&["apply", "delete.plan"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_syntax_error_names_its_file_and_line() {
    let p = Project::new(support::config(0.002)).await;
    let dir = p.path().join("policies");
    policy(
        &dir,
        "broken.rego",
        "package main\n\ndeny contains msg if {\n  msg := \"x\"\n  input.a ==\n}\n",
    );
    p.write("[instance.web]\n");
    let plan = p.kiln(&["plan", "--policy", "policies"]).await;
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(plan.stderr.contains("kiln::policy::syntax"), "{plan:?}");
    assert!(
        plan.stderr.contains("policies/broken.rego:6:"),
        "file and line: {plan:?}"
    );
    // Nothing was locked or planned.
    assert!(plan.stdout.is_empty(), "{plan:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_policies_deny_untagged_creates_and_many_replacements() {
    let p = Project::new(support::config(0.002)).await;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies");
    let examples = examples.to_str().unwrap();
    p.write("[instance.web]\ncount = 6\n");
    let plan = p.kiln(&["plan", "--policy", examples]).await;
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(
        plan.stdout
            .contains("oci_core_instance.web[0] is created without a `cost-center` tag"),
        "{plan:?}"
    );
    p.write("[instance.web]\ncount = 6\nfreeform_tags = { cost-center = \"42\" }\n");
    let tagged = p.kiln(&["plan", "--policy", examples]).await;
    assert!(
        !tagged.stdout.contains("without a `cost-center` tag"),
        "{tagged:?}"
    );
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    // Six replacements (a new availability domain) are more than five.
    let f = p.emu.fixtures();
    p.write(&format!(
        "[instance.web]\ncount = 6\nfreeform_tags = {{ cost-center = \"42\" }}\navailability_domain = \"{}\"\n",
        f.availability_domains[1]
    ));
    let plan = p.kiln(&["plan", "--policy", examples]).await;
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(
        plan.stdout
            .contains("6 resources would be replaced (at most 5 per apply)"),
        "{plan:?}"
    );
}
