//! `kiln plan --json=terraform` and `kiln show`: the plan in the shape of Terraform's JSON plan
//! (what conftest, Checkov and PR tools read), for every kind of action kiln plans.

use serde_json::{json, Value};

use crate::support::{self, scrub, Project};

fn parse(out: &support::Out) -> Value {
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// The `resource_changes[]` entry of `address` (without a `deposed` key).
fn change<'a>(doc: &'a Value, address: &str) -> &'a Value {
    doc["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == address && c.get("deposed").is_none())
        .unwrap_or_else(|| panic!("no change of {address} in {doc:#}"))
}

fn actions(doc: &Value, address: &str) -> Value {
    change(doc, address)["change"]["actions"].clone()
}

const FIRST: &str = "[instance.web]\nfreeform_tags = { role = \"web\" }\n\n[instance.db]\n\n[instance.old]\n\n[instance.app]\ncount = 2\n\n[instance.batch]\n\n[instance.cold]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_json_has_every_action_kind_in_terraforms_shape() {
    let p = Project::new(support::config(0.002)).await;
    let f = p.emu.fixtures();
    p.write(FIRST);
    // From an empty state: creates, with what is known only after apply marked unknown.
    let created = parse(&p.kiln(&["plan", "--json=terraform"]).await);
    assert_eq!(created["format_version"], "1.2");
    assert!(created["terraform_version"].is_string());
    let web = change(&created, "oci_core_instance.web");
    assert_eq!(web["type"], "oci_core_instance");
    assert_eq!(web["name"], "web");
    assert_eq!(web["mode"], "managed");
    assert_eq!(web["provider_name"], "registry.terraform.io/oracle/oci");
    assert_eq!(web["change"]["actions"], json!(["create"]));
    assert_eq!(web["change"]["before"], Value::Null);
    let after = &web["change"]["after"];
    assert_eq!(after["display_name"], "web");
    assert_eq!(after["compartment_id"], support::COMPARTMENT);
    assert_eq!(after["freeform_tags"]["role"], "web");
    assert_eq!(
        after["shape_config"],
        json!([{ "memory_in_gbs": 16.0, "ocpus": 1.0 }])
    );
    assert_eq!(after["source_details"][0]["source_type"], "image");
    assert_eq!(
        after["source_details"][0]["source_id"],
        f.platform_images[0].id
    );
    assert_eq!(
        after["create_vnic_details"][0]["subnet_id"],
        f.public_subnet_id
    );
    assert_eq!(web["change"]["after_unknown"]["id"], json!(true));
    let app1 = change(&created, "oci_core_instance.app[1]");
    assert_eq!((&app1["name"], &app1["index"]), (&json!("app"), &json!(1)));
    // planned_values holds every resource that will exist; the configuration one per resource
    // (a fleet once).
    let planned = created["planned_values"]["root_module"]["resources"]
        .as_array()
        .unwrap();
    assert_eq!(planned.len(), 7, "{created:#}");
    let config: Vec<&Value> = created["configuration"]["root_module"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["address"])
        .collect();
    assert_eq!(config.len(), 6, "{config:?}");
    assert!(config.contains(&&json!("oci_core_instance.app")));
    assert_eq!(
        created["configuration"]["provider_config"]["oci"]["full_name"],
        "registry.terraform.io/oracle/oci"
    );
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);

    // Drift: a tag changed outside kiln.
    let c = p.client();
    let web_id = p.state()["resources"]["instance.web"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let upd: kiln::oci::models::UpdateInstanceDetails =
        serde_json::from_value(json!({ "freeformTags": { "role": "changed" } })).unwrap();
    c.update_instance(&web_id, &upd, &kiln::oci::MutationOptions::default())
        .await
        .unwrap();

    // Every other kind: update (web: tag), replace (db: availability domain), delete (old:
    // gone from the manifest; app[1]: the fleet shrank), stop (batch), moved (cold → frozen),
    // no-op (app[0]).
    p.write(&format!(
        "[instance.web]\nfreeform_tags = {{ role = \"web\", tier = \"1\" }}\n\n[instance.db]\navailability_domain = \"{}\"\n\n[instance.app]\ncount = 1\n\n[instance.batch]\nstate = \"STOPPED\"\n\n[instance.frozen]\ndisplay_name = \"cold\"\n\n[[moved]]\nfrom = \"instance.cold\"\nto = \"instance.frozen\"\n",
        f.availability_domains[1]
    ));
    let doc = parse(&p.kiln(&["plan", "--json=terraform"]).await);
    let web = change(&doc, "oci_core_instance.web");
    assert_eq!(web["change"]["actions"], json!(["update"]));
    assert_eq!(web["change"]["before"]["freeform_tags"]["role"], "changed");
    assert_eq!(web["change"]["after"]["freeform_tags"]["role"], "web");
    assert_eq!(web["change"]["after"]["freeform_tags"]["tier"], "1");
    assert_eq!(web["change"]["before"]["id"], web_id.as_str());
    let db = change(&doc, "oci_core_instance.db");
    assert_eq!(db["change"]["actions"], json!(["delete", "create"]));
    assert_eq!(db["action_reason"], "replace_because_cannot_update");
    assert_eq!(
        db["change"]["replace_paths"],
        json!([["availability_domain"]])
    );
    assert_eq!(
        db["change"]["after"]["availability_domain"],
        f.availability_domains[1]
    );
    let old = change(&doc, "oci_core_instance.old");
    assert_eq!(old["change"]["actions"], json!(["delete"]));
    assert_eq!(old["change"]["after"], Value::Null);
    assert_eq!(old["action_reason"], "delete_because_no_resource_config");
    assert_eq!(
        change(&doc, "oci_core_instance.app[1]")["action_reason"],
        "delete_because_count_index"
    );
    let batch = change(&doc, "oci_core_instance.batch");
    assert_eq!(batch["change"]["actions"], json!(["update"]));
    assert_eq!(batch["change"]["before"]["state"], "RUNNING");
    assert_eq!(batch["change"]["after"]["state"], "STOPPED");
    let frozen = change(&doc, "oci_core_instance.frozen");
    assert_eq!(frozen["previous_address"], "oci_core_instance.cold");
    // The rename updates its `kiln-address` tag: an update, not a no-op.
    assert_eq!(frozen["change"]["actions"], json!(["update"]));
    assert_eq!(
        frozen["change"]["after"]["freeform_tags"]["kiln-address"],
        "instance.frozen"
    );
    assert_eq!(actions(&doc, "oci_core_instance.app[0]"), json!(["no-op"]));
    // Drift: the state's record before, the live read after.
    let drift = doc["resource_drift"].as_array().unwrap();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0]["address"], "oci_core_instance.web");
    assert_eq!(drift[0]["change"]["before"]["freeform_tags"]["role"], "web");
    assert_eq!(
        drift[0]["change"]["after"]["freeform_tags"]["role"],
        "changed"
    );
    // prior_state: what exists now, in the provider's attributes.
    let prior = doc["prior_state"]["values"]["root_module"]["resources"]
        .as_array()
        .unwrap();
    assert_eq!(prior.len(), 7);
    assert!(prior.iter().all(|r| r["values"]["id"].is_string()));
    // Deleted resources are not in planned_values.
    let planned: Vec<&Value> = doc["planned_values"]["root_module"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["address"])
        .collect();
    assert!(!planned.contains(&&json!("oci_core_instance.old")));
    assert!(planned.contains(&&json!("oci_core_instance.db")));

    // A saved plan shows the same, as kiln's JSON, as text and as Terraform's.
    let saved = p.kiln(&["plan", "--out", "next.plan"]).await;
    assert_eq!(saved.code, 0, "{saved:?}");
    let shown = parse(&p.kiln(&["show", "--json=terraform", "next.plan"]).await);
    assert_eq!(shown["resource_changes"], doc["resource_changes"]);
    let kiln_json = parse(&p.kiln(&["show", "--json", "next.plan"]).await);
    assert_eq!(kiln_json["summary"]["replace"], 1);
    assert!(kiln_json.get("observed").is_none(), "{kiln_json:#}");
    let text = p.kiln(&["show", "next.plan"]).await;
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.contains("-/+ instance.db"), "{text:?}");
    // `--json DIR` still reads DIR (the format needs its `=`).
    let dir = p.path().display().to_string();
    let other_dir = p.kiln(&["plan", "--json", &dir]).await;
    assert_eq!(parse(&other_dir)["summary"]["replace"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_json_of_an_image_and_a_create_before_destroy_replacement() {
    let p = Project::new(support::config(0.002)).await;
    p.write("[instance.builder]\n\n[image.golden]\nfrom_instance = \"instance.builder\"\nlaunch_mode = \"PARAVIRTUALIZED\"\n\n[instance.web]\nsource = { image = \"image.golden\" }\n");
    let doc = parse(&p.kiln(&["plan", "--json=terraform"]).await);
    let golden = change(&doc, "oci_core_image.golden");
    assert_eq!(golden["type"], "oci_core_image");
    assert_eq!(golden["change"]["actions"], json!(["create"]));
    assert_eq!(golden["change"]["after"]["launch_mode"], "PARAVIRTUALIZED");
    // The builder's id and the image's are known only after apply.
    assert_eq!(
        golden["change"]["after_unknown"]["instance_id"],
        json!(true)
    );
    let web = change(&doc, "oci_core_instance.web");
    assert_eq!(
        web["change"]["after_unknown"]["source_details"],
        json!([{ "source_id": true }])
    );
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    // An image's replacement makes the new image first.
    p.write("[instance.builder]\n\n[image.golden]\nfrom_instance = \"instance.builder\"\nlaunch_mode = \"NATIVE\"\n\n[instance.web]\nsource = { image = \"image.golden\" }\n");
    let doc = parse(&p.kiln(&["plan", "--json=terraform"]).await);
    assert_eq!(
        actions(&doc, "oci_core_image.golden"),
        json!(["create", "delete"]),
        "{doc:#}"
    );
    // `before` is the live image (times, ids): checked, not snapshotted.
    let mut golden = change(&doc, "oci_core_image.golden").clone();
    assert_eq!(golden["change"]["before"]["launch_mode"], "PARAVIRTUALIZED");
    assert_eq!(golden["change"]["before"]["state"], "AVAILABLE");
    golden["change"]["before"] = json!("(the live image)");
    insta::assert_snapshot!(
        "terraform_json_image_replacement",
        scrub(&serde_json::to_string_pretty(&golden).unwrap(), Some(&p))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markdown_plan_for_a_pull_request_comment() {
    let p = Project::new(support::config(0.002)).await;
    p.write("[instance.web]\nfreeform_tags = { role = \"web\" }\n\n[instance.db]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let web_id = p.state()["resources"]["instance.web"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let upd: kiln::oci::models::UpdateInstanceDetails =
        serde_json::from_value(json!({ "freeformTags": { "role": "changed" } })).unwrap();
    p.client()
        .update_instance(&web_id, &upd, &kiln::oci::MutationOptions::default())
        .await
        .unwrap();
    let dir = p.path().join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("tags.rego"),
        "package main\n\nimport rego.v1\n\nwarn contains msg if {\n  some rc in input.resource_changes\n  \"create\" in rc.change.actions\n  not rc.change.after.freeform_tags.owner\n  msg := sprintf(\"%s has no | owner tag\", [rc.address])\n}\n",
    )
    .unwrap();
    p.write("[instance.web]\nfreeform_tags = { role = \"web\" }\n\n[instance.api]\n");
    let md = p
        .kiln(&["plan", "--format", "markdown", "--policy", "policies"])
        .await;
    assert_eq!(md.code, 0, "{md:?}");
    insta::assert_snapshot!("plan_markdown", scrub(&md.stdout, Some(&p)));
    // The same from a saved plan.
    assert_eq!(p.kiln(&["plan", "--out", "pr.plan"]).await.code, 0);
    let shown = p
        .kiln(&[
            "show", "--format", "markdown", "--policy", "policies", "pr.plan",
        ])
        .await;
    assert_eq!(shown.stdout, md.stdout, "{shown:?}");
}
