//! `kiln output`: what the state knows of each resource, recorded by apply (the primary VNIC read
//! after a create), printed without contacting OCI.

use serde_json::Value;

use crate::support::{self, calls_between, scrub, Project, COMPARTMENT};

/// The primary VNIC of `instance`, as the emulator serves it to any client.
async fn vnic_of(p: &Project, instance: &str) -> kiln::oci::models::Vnic {
    let c = p.client();
    let attachments = c
        .list_vnic_attachments(COMPARTMENT, Some(instance))
        .await
        .unwrap();
    assert_eq!(attachments.len(), 1, "{attachments:?}");
    let id = attachments[0].vnic_id.clone().unwrap();
    c.get_vnic(&id).await.unwrap().body
}

fn id_of(p: &Project, address: &str) -> String {
    p.state()["resources"][address]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `web` in the public subnet (a public IP), `db` in the private one (none).
fn two(p: &Project) -> String {
    format!(
        "[instance.web]\n\n[instance.db]\nsubnet = \"{}\"\n",
        p.emu.fixtures().private_subnet_id
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_json_carries_the_ips_of_the_emulators_vnics_and_needs_no_network() {
    let p = Project::new(support::config(0.002)).await;
    p.write(&two(&p));
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    // Bulk: one list for the compartment, one GetVnic per new instance.
    let stats = p.emu.stats();
    assert_eq!(stats.get("ListVnicAttachments"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("GetVnic"), Some(&2), "{stats:?}");

    let web = vnic_of(&p, &id_of(&p, "instance.web")).await;
    let db = vnic_of(&p, &id_of(&p, "instance.db")).await;

    let before = p.emu.stats();
    let out = p.kiln(&["output", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let j: Value = serde_json::from_str(&out.stdout).unwrap();
    for (address, vnic) in [("instance.web", &web), ("instance.db", &db)] {
        let id = id_of(&p, address);
        let o = &j[address];
        assert_eq!(o["id"], id.as_str());
        assert_eq!(o["region"], "us-ashburn-1");
        assert_eq!(o["compartment"], COMPARTMENT);
        assert_eq!(o["state"], "RUNNING");
        assert_eq!(o["private_ip"].as_str(), vnic.private_ip.as_deref(), "{o}");
        assert_eq!(o["public_ip"].as_str(), vnic.public_ip.as_deref(), "{o}");
        assert_eq!(
            o["hostname"].as_str(),
            vnic.hostname_label.as_deref(),
            "{o}"
        );
    }
    assert!(j["instance.web"]["public_ip"].is_string(), "{j}");
    assert!(j["instance.db"]["public_ip"].is_null(), "{j}");
    assert_eq!(j["instance.db"]["hostname"], "db");

    // One value, bare, for scripts.
    let ip = p.kiln(&["output", "instance.web.private_ip"]).await;
    assert_eq!(ip.code, 0, "{ip:?}");
    assert_eq!(
        ip.stdout,
        format!("{}\n", web.private_ip.as_deref().unwrap())
    );
    let none = p.kiln(&["output", "instance.db.public_ip"]).await;
    assert_eq!((none.code, none.stdout.as_str()), (0, "\n"), "{none:?}");
    let none = p.kiln(&["output", "--json", "instance.db.public_ip"]).await;
    assert_eq!(none.stdout, "null\n", "{none:?}");

    // The text view, IPs replaced by their roles.
    let text = p.kiln(&["output"]).await;
    assert_eq!(text.code, 0, "{text:?}");
    let shown = text
        .stdout
        .replace(web.private_ip.as_deref().unwrap(), "[WEB PRIVATE IP]")
        .replace(web.public_ip.as_deref().unwrap(), "[WEB PUBLIC IP]")
        .replace(db.private_ip.as_deref().unwrap(), "[DB PRIVATE IP]");
    insta::assert_snapshot!("output_text", scrub(&shown, Some(&p)));

    // None of that asked OCI anything.
    assert_eq!(calls_between(&before, &p.emu.stats()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_address_or_attribute_says_what_was_meant() {
    let p = Project::new(support::config(0.002)).await;
    p.write("[instance.web]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let attr = p.kiln(&["output", "instance.web.public_pi"]).await;
    assert_eq!(attr.code, 1, "{attr:?}");
    insta::assert_snapshot!("output_unknown_attribute", scrub(&attr.stderr, Some(&p)));
    let addr = p.kiln(&["output", "instance.wbe.public_ip"]).await;
    assert_eq!(addr.code, 1, "{addr:?}");
    assert!(
        addr.stderr
            .contains("`instance.wbe` is not a resource in the state")
            && addr.stderr.contains("did you mean `instance.web`?"),
        "{addr:?}"
    );
    let two = p.kiln(&["output", "instance.web.id", "image.x.id"]).await;
    assert_eq!(two.code, 1, "{two:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_without_network_facts_gets_them_from_the_next_apply() {
    let p = Project::new(support::config(0.002)).await;
    p.write(&two(&p));
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    // A state written before kiln recorded network facts.
    let path = p.path().join("state/default.json");
    let mut st = p.state();
    for r in st["resources"].as_object_mut().unwrap().values_mut() {
        r.as_object_mut().unwrap().remove("network");
    }
    std::fs::write(&path, serde_json::to_vec(&st).unwrap()).unwrap();

    let missing = p.kiln(&["output", "instance.web.private_ip"]).await;
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains("kiln apply --refresh-only"),
        "{missing:?}"
    );
    let plan = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 0, "reading facts is not a change: {plan:?}");
    assert!(
        plan.stdout
            .contains("no network facts (IPs, hostname) of instance.db, instance.web"),
        "{plan:?}"
    );
    let before = p.emu.stats();
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let calls = calls_between(&before, &p.emu.stats());
    assert!(
        calls
            .iter()
            .all(|c| c.starts_with("List") || c.starts_with("Get")),
        "reads only: {calls:?}"
    );
    let web = vnic_of(&p, &id_of(&p, "instance.web")).await;
    let ip = p.kiln(&["output", "instance.web.private_ip"]).await;
    assert_eq!(
        ip.stdout,
        format!("{}\n", web.private_ip.unwrap()),
        "{ip:?}"
    );
    let plan = p.kiln(&["plan"]).await;
    assert!(!plan.stdout.contains("network facts"), "{plan:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_vnic_read_neither_fails_nor_repeats_the_create() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    // Every GetVnic refused: the create stands, the apply says what is missing and exits 1.
    let out = p
        .kiln_faulted(
            "oci.request.GetVnic=return(status(404))",
            &["apply", "--auto-approve"],
        )
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("1 created"), "{out:?}");
    assert!(
        out.stderr
            .contains("read the network of instance.web failed"),
        "{out:?}"
    );
    assert_eq!(p.live_instances().await.len(), 1);
    let id = id_of(&p, "instance.web");
    assert!(p.state()["resources"]["instance.web"]
        .get("network")
        .is_none());
    // A kiln that dies while listing the attachments: the create is recorded already.
    p.write("[instance.web]\n[instance.db]\n");
    let out = p
        .kiln_faulted(
            "oci.request.ListVnicAttachments=return(abort)",
            &["apply", "--auto-approve"],
        )
        .await;
    assert_ne!(out.code, 0, "{out:?}");
    assert_eq!(p.live_instances().await.len(), 2);
    // The next apply creates nothing and reads both.
    p.write("[instance.web]\n[instance.db]\n");
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("No changes.")
            && out.stdout.contains("Apply complete: 0 created, 0 updated"),
        "{out:?}"
    );
    assert_eq!(p.live_instances().await.len(), 2);
    assert_eq!(id_of(&p, "instance.web"), id);
    let vnic = vnic_of(&p, &id).await;
    assert_eq!(
        p.state()["resources"]["instance.web"]["network"]["private_ip"].as_str(),
        vnic.private_ip.as_deref()
    );
    assert!(p.state()["resources"]["instance.db"]["network"]["vnic_id"].is_string());
}
