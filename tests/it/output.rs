//! `kiln output`: what the state knows of each resource, recorded by apply (the primary VNIC read
//! after a create), printed without contacting OCI.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::{self, calls_between, scrub, Project, COMPARTMENT, OTHER_COMPARTMENT};

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
    // Two instances in two subnets: one list for the compartment, then one GetVnic each (fewer
    // calls than a list per subnet and per AD).
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

/// The calls of `op` between two stats.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, op: &str) -> u64 {
    after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0)
}

/// `n` instances over two ADs: a third in the public subnet with a public IP, a third there
/// without one (`assign_public_ip = false`), a third in the private subnet.
fn mixed(p: &Project, n: usize, compartment: &str) -> String {
    let f = p.emu.fixtures();
    (0..n)
        .map(|i| {
            let ad = &f.availability_domains[i % 2];
            let net = match i % 3 {
                0 => String::new(),
                1 => "assign_public_ip = false\n".to_string(),
                _ => format!("subnet = \"{}\"\n", f.private_subnet_id),
            };
            format!("[instance.w{i:02}]\ncompartment = \"{compartment}\"\navailability_domain = \"{ad}\"\n{net}\n")
        })
        .collect()
}

/// Every instance's recorded facts are those GetVnic serves for its primary VNIC.
async fn facts_are_the_vnics(p: &Project, n: usize, compartment: &str) {
    let st = p.state();
    let c = p.client();
    for i in 0..n {
        let address = format!("instance.w{i:02}");
        let id = id_of(p, &address);
        let attachments = c
            .list_vnic_attachments(compartment, Some(&id))
            .await
            .unwrap();
        assert_eq!(attachments.len(), 1, "{attachments:?}");
        let vnic_id = attachments[0].vnic_id.clone().unwrap();
        let vnic = c.get_vnic(&vnic_id).await.unwrap().body;
        let net = &st["resources"][&address]["network"];
        assert_eq!(net["vnic_id"].as_str(), Some(vnic_id.as_str()), "{net}");
        assert_eq!(
            net["subnet_id"].as_str(),
            Some(vnic.subnet_id.as_str()),
            "{net}"
        );
        assert_eq!(
            net["private_ip"].as_str(),
            vnic.private_ip.as_deref(),
            "{net}"
        );
        assert_eq!(
            net["public_ip"].as_str(),
            vnic.public_ip.as_deref(),
            "{net}"
        );
        assert_eq!(
            net["hostname_label"].as_str(),
            vnic.hostname_label.as_deref(),
            "{net}"
        );
        assert_eq!(vnic.public_ip.is_some(), i % 3 == 0, "{address}: {vnic:?}");
        assert_eq!(net["hostname_label"], format!("w{i:02}").as_str(), "{net}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_facts_of_many_instances_cost_a_list_per_subnet_and_ad_not_a_read_each() {
    const N: usize = 30;
    let p = Project::new(support::config(0.002)).await;
    p.write(&mixed(&p, N, COMPARTMENT));
    let before = p.emu.stats();
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let after = p.emu.stats();
    assert_eq!(delta(&before, &after, "LaunchInstance"), N as u64);
    // Whatever N: one attachment list for the compartment, one private IP list per subnet (2),
    // one public IP list per (compartment, AD) (2), no GetVnic.
    for (op, n) in [
        ("ListVnicAttachments", 1),
        ("ListPrivateIps", 2),
        ("ListPublicIps", 2),
        ("GetVnic", 0),
    ] {
        assert_eq!(
            delta(&before, &after, op),
            n,
            "{op}: {:?}",
            calls_between(&before, &after)
        );
    }
    facts_are_the_vnics(&p, N, COMPARTMENT).await;

    // A move: the instances change compartment, their VNICs (and public IPs) stay where they
    // were made (their public IPs are listed where their private IPs are); the facts read after
    // it are the same.
    p.write(&mixed(&p, N, OTHER_COMPARTMENT));
    let before = p.emu.stats();
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stdout.contains(&format!("{N} moved")), "{apply:?}");
    let after = p.emu.stats();
    assert_eq!(delta(&before, &after, "GetVnic"), 0, "{after:?}");
    assert_eq!(delta(&before, &after, "ListPublicIps"), 2, "{after:?}");
    facts_are_the_vnics(&p, N, OTHER_COMPARTMENT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_public_ip_list_fails_the_reads_it_was_for_and_the_next_apply_reads_them() {
    const N: usize = 6;
    let p = Project::new(support::config(0.0)).await;
    p.write(&mixed(&p, N, COMPARTMENT));
    let before = p.emu.stats();
    let out = p
        .kiln_faulted(
            "oci.request.ListPublicIps=return(status(404))",
            &["apply", "--auto-approve"],
        )
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains(&format!("{N} created")), "{out:?}");
    for i in 0..N {
        assert!(
            out.stderr
                .contains(&format!("read the network of instance.w{i:02} failed")),
            "{out:?}"
        );
        assert!(p.state()["resources"][&format!("instance.w{i:02}")]
            .get("network")
            .is_none());
    }
    // Neither retried per instance nor read another way.
    let after = p.emu.stats();
    assert_eq!(delta(&before, &after, "GetVnic"), 0, "{after:?}");
    assert_eq!(p.live_instances().await.len(), N);
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Apply complete: 0 created"), "{out:?}");
    assert_eq!(p.live_instances().await.len(), N);
    facts_are_the_vnics(&p, N, COMPARTMENT).await;
}

/// Issue 27: `kiln output instance.api` for a fleet said "`instance` is not a resource in the
/// state". A fleet's name lists its members, as `--target` accepts it; with an attribute, one
/// value per member, in member order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_of_a_fleet_name_lists_its_members() {
    let p = Project::new(support::config(0.002)).await;
    p.write("[instance.api]\ncount = 3\n\n[instance.web]\n");
    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let members = ["instance.api[0]", "instance.api[1]", "instance.api[2]"];

    let fleet = p.kiln(&["output", "instance.api"]).await;
    assert_eq!(fleet.code, 0, "{fleet:?}");
    let mut shown = fleet.stdout.clone();
    for (i, m) in members.iter().enumerate() {
        let ips = p.kiln(&["output", "--json", m]).await;
        let j: Value = serde_json::from_str(&ips.stdout).unwrap();
        for (key, role) in [("private_ip", "PRIVATE"), ("public_ip", "PUBLIC")] {
            shown = shown.replace(j[key].as_str().unwrap(), &format!("[{role} IP {i}]"));
        }
    }
    insta::assert_snapshot!("output_fleet", scrub(&shown, Some(&p)));

    // One value per member, in member order, bare (for a shell loop) or as JSON.
    let ips = p.kiln(&["output", "instance.api.id"]).await;
    assert_eq!(ips.code, 0, "{ips:?}");
    let ids: Vec<String> = members.iter().map(|m| id_of(&p, m)).collect();
    assert_eq!(ips.stdout, format!("{}\n", ids.join("\n")));
    let json = p.kiln(&["output", "--json", "instance.api.id"]).await;
    let j: BTreeMap<String, String> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        j,
        members
            .iter()
            .map(|m| (m.to_string(), id_of(&p, m)))
            .collect::<BTreeMap<_, _>>()
    );

    // A name that is neither a resource nor a fleet is named whole.
    let nope = p.kiln(&["output", "instance.apx"]).await;
    assert_eq!(nope.code, 1, "{nope:?}");
    assert!(
        nope.stderr
            .contains("`instance.apx` is not a resource in the state")
            && nope.stderr.contains("did you mean `instance.api"),
        "{nope:?}"
    );
}
