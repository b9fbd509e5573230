//! Names instead of OCIDs (issue 26): `compartment = { path }`, `subnet` / `nsg_ids`
//! `{ lookup }` resolved at plan time with list calls, shown in the plan with their OCIDs, and
//! what OCI would refuse at launch (a typo'd shape, availability or fault domain, image or
//! subnet OCID) caught at plan time at its span.

use serde_json::Value;

use crate::support::{self, calls_between, scrub, Project};

const PROD_APP: &str = "ocid1.compartment.oc1..aaaaaaaakilnemulatorprodapp";

/// A manifest of its own (no OCID for the compartment, subnet or NSGs).
fn write(p: &Project, body: &str) {
    let f = p.emu.fixtures();
    let text = format!(
        "[provider]\nendpoint = \"{}\"\nconfig_file = \"{}\"\n\n[defaults]\ncompartment = {{ path = \"prod/app\" }}\navailability_domain = \"{}\"\nshape = \"VM.Standard.E4.Flex\"\nshape_config = {{ ocpus = 1, memory_in_gbs = 16 }}\nsubnet = {{ lookup = {{ vcn = \"kiln-emulator-vcn\", display_name = \"kiln-emulator-public\", compartment = {{ path = \"kiln-emulator\" }} }} }}\nsource = {{ image = \"{}\" }}\n\n{body}",
        p.emu.url(),
        p.config.display(),
        f.availability_domains[0],
        f.platform_images[0].id
    );
    std::fs::write(p.path().join("kiln.toml"), text).unwrap();
}

const NSG_WEB: &str = "nsg_ids = [{ lookup = { vcn = \"kiln-emulator-vcn\", display_name = \"web\", compartment = { path = \"kiln-emulator\" } } }]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_resolve_apply_and_a_second_plan_is_clean_and_cheap() {
    let p = Project::new(support::config(0.002)).await;
    let f = p.emu.fixtures();
    write(&p, &format!("[instance.web]\ncount = 3\n{NSG_WEB}\n"));
    let plan = p.kiln(&["plan"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    // The resolved OCIDs, next to their lookups.
    for line in [
        format!("compartment = path \"prod/app\" → {PROD_APP}"),
        format!(
            "subnet = lookup vcn \"kiln-emulator-vcn\" / \"kiln-emulator-public\" in \"kiln-emulator\" → {}",
            f.public_subnet_id
        ),
        format!(
            "nsg_ids = lookup vcn \"kiln-emulator-vcn\" / \"web\" in \"kiln-emulator\" → {}",
            f.nsg_id
        ),
    ] {
        assert!(plan.stdout.contains(&line), "{line}\n{}", plan.stdout);
    }
    insta::assert_snapshot!("lookups_plan", scrub(&plan.stdout, Some(&p)));

    // The Terraform-shaped plan carries the resolved OCIDs.
    let tf = p.kiln(&["plan", "--json=terraform"]).await;
    assert_eq!(tf.code, 0, "{tf:?}");
    let doc: Value = serde_json::from_str(&tf.stdout).unwrap();
    let web = doc["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "oci_core_instance.web[0]")
        .unwrap_or_else(|| panic!("{}", tf.stdout));
    let after = &web["change"]["after"];
    assert_eq!(after["compartment_id"], PROD_APP);
    assert_eq!(
        after["create_vnic_details"][0]["subnet_id"],
        f.public_subnet_id
    );
    assert_eq!(
        after["create_vnic_details"][0]["nsg_ids"],
        serde_json::json!([f.nsg_id])
    );

    let apply = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    // OCI has them where the lookups pointed, and the state records the OCIDs.
    let live = p
        .client()
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: PROD_APP.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(live.len(), 3);
    let state = std::fs::read_to_string(p.path().join("state/default.json")).unwrap();
    assert!(state.contains(&f.public_subnet_id) && state.contains(PROD_APP));
    assert!(
        !state.contains("(lookup") && !state.contains("(path"),
        "{state}"
    );

    // A second plan: no change, the lookups listed once each whatever the fleet's size, and no
    // per-instance check (nothing changes, so nothing is checked).
    let before = p.emu.stats();
    let again = p.kiln(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    let calls = calls_between(&before, &p.emu.stats());
    for op in [
        "ListShapes",
        "ListAvailabilityDomains",
        "ListFaultDomains",
        "GetSubnet",
        "GetImage",
        "GetInstance",
    ] {
        assert!(
            !calls.iter().any(|c| c.starts_with(&format!("{op}×"))),
            "{op} in {calls:?}"
        );
    }
    for op in ["ListVcns×1", "ListSubnets×1", "ListNetworkSecurityGroups×1"] {
        assert!(calls.iter().any(|c| c == op), "{op} not in {calls:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_that_finds_none_or_several_is_an_error_at_its_span() {
    let p = Project::new(support::config(0.002)).await;
    write(
        &p,
        "[instance.a]\ncompartment = { path = \"prod/apq\" }\n\n[instance.b]\nsubnet = { lookup = { vcn = \"kiln-emulator-vcn\", display_name = \"kiln-emulator-pubic\", compartment = { path = \"kiln-emulator\" } } }\n\n[instance.c]\nnsg_ids = [{ lookup = { vcn = \"kiln-emulator-vcn\", display_name = \"app\", compartment = { path = \"kiln-emulator\" } } }]\n\n[instance.d]\nsubnet = { lookup = { vcn = \"prod-vcn\", display_name = \"app\", compartment = { path = \"kiln-emulator\" } } }\n",
    );
    let before = p.emu.stats();
    let plan = p.kiln(&["plan"]).await;
    let calls = calls_between(&before, &p.emu.stats());
    assert!(
        !calls.iter().any(|c| c.starts_with("LaunchInstance")),
        "{calls:?}"
    );
    // The same exit as a manifest the loader refuses.
    std::fs::write(p.path().join("kiln.toml"), "[instance.x]\nshape = 1\n").unwrap();
    let invalid = p.kiln(&["plan"]).await;
    assert_eq!(plan.code, invalid.code, "{plan:?}");
    assert_ne!(plan.code, 0);
    insta::assert_snapshot!("lookups_none_or_several", scrub(&plan.stderr, Some(&p)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typos_oci_would_refuse_at_launch_are_caught_at_plan_time() {
    let p = Project::new(support::config(0.002)).await;
    let f = p.emu.fixtures();
    // One character off each.
    let typo = |id: &str| {
        let mut s = id.to_string();
        let last = s.pop().unwrap();
        s.push(if last == '0' { '1' } else { '0' });
        s
    };
    write(
        &p,
        &format!(
            "[instance.shape]\nshape = \"VM.Standard.E4.Flx\"\n\n[instance.ad]\navailability_domain = \"kIdk:US-ASHBURN-AD-4\"\n\n[instance.fd]\nfault_domain = \"FAULT-DOMAIN-4\"\n\n[instance.image]\nsource = {{ image = \"{}\" }}\n\n[instance.subnet]\ncompartment = \"{}\"\nsubnet = \"{}\"\n\n[instance.fine]\n",
            typo(&f.platform_images[0].id),
            support::COMPARTMENT,
            typo(&f.public_subnet_id),
        ),
    );
    let before = p.emu.stats();
    let plan = p.kiln(&["plan"]).await;
    let calls = calls_between(&before, &p.emu.stats());
    assert!(
        !calls.iter().any(|c| c.starts_with("LaunchInstance")),
        "{calls:?}"
    );
    assert_ne!(plan.code, 0, "{plan:?}");
    // The did-you-means name the real ones (the snapshot scrubs OCIDs; the text is wrapped at
    // 80 columns, so compared without whitespace).
    let flat: String = plan.stderr.split_whitespace().collect();
    for id in [
        f.platform_images[0].id.as_str(),
        f.public_subnet_id.as_str(),
        "VM.Standard.E4.Flex",
        "kIdk:US-ASHBURN-AD-3",
        "FAULT-DOMAIN-3",
    ] {
        assert!(
            flat.contains(&format!("didyoumean`{id}`?")),
            "{id}\n{}",
            plan.stderr
        );
    }
    insta::assert_snapshot!("lookups_plan_time_checks", scrub(&plan.stderr, Some(&p)));
    // Fixed, it plans.
    write(&p, "[instance.fine]\n");
    let ok = p.kiln(&["plan"]).await;
    assert_eq!(ok.code, 0, "{ok:?}");
}
