//! `kiln emulator --fixtures`: the ids a manifest names (compartments, availability domains,
//! subnets, images, shapes), printed without running a server — and they are the ids a running
//! emulator of that region serves, read back through the API, not from its own listing.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use kiln::oci::client::Call;

use crate::support::{self, run_kiln, COMPARTMENT, TENANCY};

#[tokio::test]
async fn emulator_fixtures_lists_the_ids_of_each_region() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_kiln(
        dir.path(),
        &[
            "emulator",
            "--fixtures",
            "--region",
            "iad",
            "--region",
            "fra",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    insta::assert_snapshot!("emulator_fixtures", out.stdout);
}

async fn get(
    client: &kiln::oci::Client,
    op: &'static str,
    path: &str,
    q: &[(&'static str, &str)],
) -> Value {
    let mut call = Call::new(op, Method::GET, path.to_string());
    for (k, v) in q {
        call = call.query(k, Some(*v));
    }
    client.send_json::<Value>(call).await.unwrap().body
}

#[tokio::test]
async fn the_printed_fixtures_are_what_the_emulator_serves() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_kiln(dir.path(), &["emulator", "--fixtures", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let printed: Value = serde_json::from_str(&out.stdout).unwrap();
    let f = &printed[0];
    let strings = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };

    let emu = support::start(support::config(0.0)).await;
    let c = support::client(&emu);
    assert_eq!(f["region"], "us-ashburn-1");

    let ads = get(
        &c,
        "ListAvailabilityDomains",
        "/availabilityDomains",
        &[("compartmentId", TENANCY)],
    )
    .await;
    let served: BTreeSet<String> = ads
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(served, strings(&f["availability_domains"]));

    let fds = get(
        &c,
        "ListFaultDomains",
        "/faultDomains",
        &[
            ("compartmentId", TENANCY),
            ("availabilityDomain", served.iter().next().unwrap()),
        ],
    )
    .await;
    let served: BTreeSet<String> = fds
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(served, strings(&f["fault_domains"]));

    // Every named compartment is known (an unknown one is 404), and usable: the subnets and
    // images below are listed in the default one.
    for comp in f["compartments"].as_array().unwrap() {
        let id = comp["id"].as_str().unwrap();
        if comp["parent"].is_null() {
            continue; // the tenancy root of the trusted keys differs from this printout's
        }
        let got = get(&c, "GetCompartment", &format!("/compartments/{id}"), &[]).await;
        assert_eq!(got["id"], id);
    }
    let default = f["compartment_id"].as_str().unwrap();

    let vcn = f["vcn_id"].as_str().unwrap();
    assert!(c
        .list_vcns(default)
        .await
        .unwrap()
        .iter()
        .any(|v| v.id == vcn));
    let subnets: BTreeSet<String> = c
        .list_subnets(default, Some(vcn))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let printed_subnets: BTreeSet<String> = [&f["public_subnet_id"], &f["private_subnet_id"]]
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(subnets, printed_subnets);

    let images: BTreeSet<String> = c
        .list_images(&kiln::oci::compute::ListImages {
            compartment_id: COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    for i in f["platform_images"].as_array().unwrap() {
        assert!(images.contains(i["id"].as_str().unwrap()), "{i}");
    }

    let shapes = get(
        &c,
        "ListShapes",
        "/shapes",
        &[("compartmentId", COMPARTMENT)],
    )
    .await;
    let served: BTreeSet<String> = shapes
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["shape"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(served, strings(&f["shapes"]));
}
