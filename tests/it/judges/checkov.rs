//! Judges of kiln's Terraform-shaped plan JSON: Checkov (`checkov -f plan.json --framework
//! terraform_plan`, installed in `.venv-checkov/` from `.ci/requirements-checkov.txt`: the README's
//! test command and `.ci/run` do) gives CKV_OCI_4
//! (in-transit encryption of the boot volume) and CKV_OCI_5 (legacy IMDS endpoints off) the same
//! verdicts on a kiln plan as on the equivalent Terraform plan — failing without the settings,
//! passing with them — and a conftest-style Rego policy run by `kiln plan --policy` agrees.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::support::{self, Project};

/// Two instances: one hardened, one not.
const MANIFEST: &str = "[instance.hardened]\ninstance_options = { are_legacy_imds_endpoints_disabled = true }\nlaunch_options = { is_pv_encryption_in_transit_enabled = true }\n\n[instance.plain]\n";

/// Checkov's binary: `KILN_CHECKOV`, else the README's virtual environment (`.venv-checkov/`,
/// its own: Checkov's pinned dependencies must not meet those of Oracle's CLI and SDK), else
/// `checkov` on PATH.
fn checkov() -> String {
    if let Ok(c) = std::env::var("KILN_CHECKOV") {
        return c;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-checkov/bin/checkov");
    match venv.is_file() {
        true => venv.display().to_string(),
        false => "checkov".into(),
    }
}

/// `(check, resource, passed)` of CKV_OCI_4 and CKV_OCI_5 on a plan file.
fn verdicts(plan: &Path) -> BTreeSet<(String, String, bool)> {
    let out = Command::new(checkov())
        .args(["-f", plan.to_str().unwrap()])
        .args(["--framework", "terraform_plan"])
        .args(["--check", "CKV_OCI_4,CKV_OCI_5"])
        .args(["--skip-download", "-o", "json"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run Checkov (`{}`): {e}; the README's test command installs it (`python3 -m venv .venv-checkov && .venv-checkov/bin/pip install -r .ci/requirements-checkov.txt`)", checkov())
        });
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "Checkov printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut v = BTreeSet::new();
    for (key, passed) in [("passed_checks", true), ("failed_checks", false)] {
        for c in doc["results"][key].as_array().into_iter().flatten() {
            v.insert((
                c["check_id"].as_str().unwrap().to_string(),
                c["resource"].as_str().unwrap().to_string(),
                passed,
            ));
        }
    }
    v
}

fn expected() -> BTreeSet<(String, String, bool)> {
    [
        ("CKV_OCI_4", "oci_core_instance.hardened", true),
        ("CKV_OCI_5", "oci_core_instance.hardened", true),
        ("CKV_OCI_4", "oci_core_instance.plain", false),
        ("CKV_OCI_5", "oci_core_instance.plain", false),
    ]
    .into_iter()
    .map(|(c, r, p)| (c.to_string(), r.to_string(), p))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs checkov (the README's test command installs it in .venv-checkov)"]
async fn checkov_judges_a_kiln_plan_as_the_equivalent_terraform_plan() {
    let p = Project::new(support::config(0.002)).await;
    p.write(MANIFEST);
    let plan = p.kiln(&["plan", "--json=terraform"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    let file = p.path().join("plan.json");
    std::fs::write(&file, &plan.stdout).unwrap();
    let reference = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/terraform/plan-hardened-and-plain.json");
    assert_eq!(verdicts(&reference), expected(), "the Terraform plan");
    assert_eq!(verdicts(&file), expected(), "kiln's plan");
}

/// A conftest-style policy written against Terraform plans gives the same verdicts on kiln's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rego_policy_judges_a_kiln_plan_as_checkov_does() {
    let p = Project::new(support::config(0.002)).await;
    p.write(MANIFEST);
    let dir = p.path().join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("oci.rego"),
        r#"package main

import rego.v1

deny contains sprintf("CKV_OCI_4 %s", [rc.address]) if {
  some rc in input.resource_changes
  rc.type == "oci_core_instance"
  not rc.change.after.launch_options[0].is_pv_encryption_in_transit_enabled
}

deny contains sprintf("CKV_OCI_5 %s", [rc.address]) if {
  some rc in input.resource_changes
  rc.type == "oci_core_instance"
  not rc.change.after.instance_options[0].are_legacy_imds_endpoints_disabled
}
"#,
    )
    .unwrap();
    let plan = p.kiln(&["plan", "--policy", "policies"]).await;
    assert_eq!(plan.code, 1, "{plan:?}");
    let denied: BTreeSet<&str> = plan
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("DENY  policies/oci.rego (deny): "))
        .collect();
    let failed: BTreeSet<String> = expected()
        .into_iter()
        .filter(|(_, _, passed)| !passed)
        .map(|(c, r, _)| format!("{c} {r}"))
        .collect();
    assert_eq!(
        denied,
        failed.iter().map(String::as_str).collect(),
        "{plan:?}"
    );
    // Applied, the settings round-trip: a clean plan, and the same verdicts from the live read.
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let again = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    let doc: serde_json::Value =
        serde_json::from_str(&p.kiln(&["plan", "--json=terraform"]).await.stdout).unwrap();
    let hardened = doc["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "oci_core_instance.hardened")
        .unwrap();
    assert_eq!(hardened["change"]["actions"], serde_json::json!(["no-op"]));
    assert_eq!(
        hardened["change"]["after"]["instance_options"][0]["are_legacy_imds_endpoints_disabled"],
        true
    );
    assert_eq!(
        hardened["change"]["after"]["launch_options"][0]["is_pv_encryption_in_transit_enabled"],
        true
    );
}
