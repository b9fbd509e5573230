//! Identity and network fixtures: domains, compartments and tag namespaces; private IPs, IPv6,
//! subnets by VCN, ephemeral public IPs — every field.

use super::*;

use serde_json::{json, Value};

use crate::support::{self, emulator, qs, Api, COMPARTMENT, OTHER_COMPARTMENT};

#[tokio::test]
async fn identity_serves_domains_compartments_and_tag_namespaces_and_refuses_unknown_ones() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let f = emu.fixtures();
    let tenancy = support::TENANCY;
    let ads = api
        .ok(&format!(
            "/availabilityDomains?{}",
            qs(&[("compartmentId", tenancy)])
        ))
        .await;
    let names: Vec<&str> = ads
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(
        names,
        f.availability_domains
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert!(ads[0]["id"]
        .as_str()
        .unwrap()
        .starts_with("ocid1.availabilitydomain."));
    let fds = api
        .ok(&format!(
            "/faultDomains?{}",
            qs(&[
                ("compartmentId", tenancy),
                ("availabilityDomain", &f.availability_domains[0])
            ])
        ))
        .await;
    assert_eq!(fds.as_array().unwrap().len(), 3);
    assert_eq!(
        fds[0]["availabilityDomain"],
        json!(f.availability_domains[0])
    );

    // Compartments: the tenancy root, the named ones, the test's; an unknown one is 404.
    let c = api.ok(&format!("/compartments/{COMPARTMENT}")).await;
    assert_eq!(
        (c["lifecycleState"].as_str(), c["compartmentId"].as_str()),
        (Some("ACTIVE"), Some(tenancy))
    );
    let children = api
        .ok(&format!(
            "/compartments?{}",
            qs(&[("compartmentId", tenancy)])
        ))
        .await;
    let ids: Vec<&str> = children
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(
        ids.contains(&COMPARTMENT) && ids.contains(&f.compartment_id.as_str()),
        "{ids:?}"
    );
    let unknown = "ocid1.compartment.oc1..aaaaaaaanosuchcompartment";
    for pq in [
        format!("/compartments/{unknown}"),
        format!("/instances?{}", qs(&[("compartmentId", unknown)])),
        format!("/images?{}", qs(&[("compartmentId", unknown)])),
    ] {
        let a = api.get(&pq).await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (404, Some("NotAuthorizedOrNotFound")),
            "{pq}: {a:?}"
        );
    }
    let a = api
        .post(
            "/instances",
            &api.launch_body("x", json!({"compartmentId": unknown})),
        )
        .await;
    assert_eq!(a.status, 404, "{a:?}");

    // Tag namespaces; defined tags outside them are 400.
    let namespaces = api
        .ok(&format!(
            "/tagNamespaces?{}",
            qs(&[("compartmentId", tenancy)])
        ))
        .await;
    let ops = namespaces
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "Operations")
        .unwrap();
    let tags = api
        .ok(&format!(
            "/tagNamespaces/{}/tags",
            ops["id"].as_str().unwrap()
        ))
        .await;
    assert!(tags
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "CostCenter"));
    for (tags, needle) in [
        (json!({"NoSuchNamespace": {"x": "1"}}), "NoSuchNamespace"),
        (json!({"Operations": {"NoSuchKey": "1"}}), "NoSuchKey"),
    ] {
        let a = api
            .post(
                "/instances",
                &api.launch_body("t", json!({"definedTags": tags})),
            )
            .await;
        assert_eq!(a.status, 400, "{a:?}");
        assert!(
            a.body["message"].as_str().unwrap().contains(needle),
            "{a:?}"
        );
    }
    let ok = api
        .launch(
            "t",
            json!({"definedTags": {"operations": {"costcenter": "7"}}}),
        )
        .await;
    let id = ok["id"].as_str().unwrap();
    let a = api
        .put(
            &format!("/instances/{id}"),
            &json!({"definedTags": {"Operations": {"Nope": "1"}}}),
        )
        .await;
    assert_eq!(a.status, 400, "{a:?}");
}

#[tokio::test]
async fn private_ips_ipv6_and_subnets_by_vcn_are_served() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let f = emu.fixtures();
    let i = api.launch("ips", json!({})).await;
    let id = i["id"].as_str().unwrap();
    let atts = api
        .ok(&format!(
            "/vnicAttachments?{}",
            qs(&[("compartmentId", COMPARTMENT), ("instanceId", id)])
        ))
        .await;
    let vnic_id = atts[0]["vnicId"].as_str().unwrap();
    let vnic = api.ok(&format!("/vnics/{vnic_id}")).await;
    let ips = api
        .ok(&format!("/privateIps?{}", qs(&[("vnicId", vnic_id)])))
        .await;
    assert_eq!(ips.as_array().unwrap().len(), 1, "{ips}");
    assert_eq!(
        (ips[0]["ipAddress"].clone(), ips[0]["isPrimary"].as_bool()),
        (vnic["privateIp"].clone(), Some(true))
    );
    let by_subnet = api
        .ok(&format!(
            "/privateIps?{}",
            qs(&[
                ("subnetId", &f.public_subnet_id),
                ("ipAddress", vnic["privateIp"].as_str().unwrap())
            ])
        ))
        .await;
    assert_eq!(by_subnet[0]["vnicId"], json!(vnic_id));
    assert_eq!(api.get("/privateIps").await.status, 400);
    assert_eq!(
        api.ok(&format!("/ipv6?{}", qs(&[("vnicId", vnic_id)])))
            .await,
        json!([])
    );
    assert_eq!(
        api.get(&format!(
            "/ipv6?{}",
            qs(&[("vnicId", "ocid1.vnic.oc1.iad.nope")])
        ))
        .await
        .status,
        404
    );

    let subnets = |vcn: &str| qs(&[("compartmentId", COMPARTMENT), ("vcnId", vcn)]);
    assert_eq!(
        api.ok(&format!("/subnets?{}", subnets(&f.vcn_id)))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        api.ok(&format!("/subnets?{}", subnets("ocid1.vcn.oc1.iad.other")))
            .await,
        json!([])
    );
}

/// Every private IP of a subnet, and the ephemeral public IPs of a compartment's private IPs per
/// AD (ListPublicIps, strict about `scope`, its AD and the compartment): one per VNIC with a public
/// IP, naming its primary private IP; paged; GetPublicIp and GetPublicIpByPrivateIpId agree; a
/// terminated instance's are gone.
#[tokio::test]
async fn private_ips_by_subnet_and_ephemeral_public_ips_are_listed_with_every_field() {
    let emu = emulator().await;
    let api = Api::new(&emu);
    let f = emu.fixtures();
    let ad = f.availability_domains[0].as_str();
    let no_public = json!({"subnetId": f.public_subnet_id, "assignPublicIp": false});
    let mut vnics = Vec::new();
    for (name, patch) in [
        ("pub-a", json!({})),
        ("pub-b", json!({})),
        ("nopub", json!({"createVnicDetails": no_public})),
        (
            "other-ad",
            json!({"availabilityDomain": f.availability_domains[1]}),
        ),
    ] {
        let i = api.launch(name, patch).await;
        let id = i["id"].as_str().unwrap();
        let atts = api
            .ok(&format!(
                "/vnicAttachments?{}",
                qs(&[("compartmentId", COMPARTMENT), ("instanceId", id)])
            ))
            .await;
        let vnic = atts[0]["vnicId"].as_str().unwrap();
        vnics.push((id.to_string(), api.ok(&format!("/vnics/{vnic}")).await));
    }
    // ListPrivateIps by subnet: all four, every field, one page at a time.
    let mut listed = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut q = vec![("subnetId", f.public_subnet_id.as_str()), ("limit", "3")];
        if let Some(p) = &page {
            q.push(("page", p));
        }
        let a = api.get(&format!("/privateIps?{}", qs(&q))).await;
        assert_eq!(a.status, 200, "{a:?}");
        listed.extend(a.body.as_array().unwrap().iter().cloned());
        match a.header("opc-next-page") {
            Some(p) => page = Some(p.to_string()),
            None => break,
        }
    }
    assert_eq!(listed.len(), 4, "{listed:?}");
    for p in &listed {
        assert!(
            missing(p, PRIVATE_IP_FIELDS).is_empty(),
            "missing {:?}",
            missing(p, PRIVATE_IP_FIELDS)
        );
        let (_, v) = vnics.iter().find(|(_, v)| v["id"] == p["vnicId"]).unwrap();
        assert_eq!(
            (&p["ipAddress"], &p["hostnameLabel"], &p["isPrimary"]),
            (&v["privateIp"], &v["hostnameLabel"], &json!(true))
        );
    }
    let private_of =
        |vnic: &Value| listed.iter().find(|p| p["vnicId"] == vnic["id"]).unwrap()["id"].clone();

    let public = |pairs: &[(&str, &str)]| format!("/publicIps?{}", qs(pairs));
    let ad_scope = [
        ("scope", "AVAILABILITY_DOMAIN"),
        ("compartmentId", COMPARTMENT),
        ("availabilityDomain", ad),
        ("lifetime", "EPHEMERAL"),
    ];
    let ips = api.ok(&public(&ad_scope)).await;
    let ips = ips.as_array().unwrap();
    // The two in AD 1 with a public IP; not the one without, not the one in AD 2.
    assert_eq!(ips.len(), 2, "{ips:?}");
    for ip in ips {
        assert!(
            missing(ip, PUBLIC_IP_FIELDS).is_empty(),
            "missing {:?}",
            missing(ip, PUBLIC_IP_FIELDS)
        );
        let (_, v) = vnics[..2]
            .iter()
            .find(|(_, v)| v["publicIp"] == ip["ipAddress"])
            .unwrap_or_else(|| panic!("{ip} is the public IP of pub-a or pub-b"));
        assert_eq!(ip["privateIpId"], private_of(v), "{ip}");
        assert_eq!(ip["assignedEntityId"], private_of(v), "{ip}");
        for (k, want) in [
            ("assignedEntityType", json!("PRIVATE_IP")),
            ("scope", json!("AVAILABILITY_DOMAIN")),
            ("lifetime", json!("EPHEMERAL")),
            ("lifecycleState", json!("ASSIGNED")),
            ("availabilityDomain", json!(ad)),
            ("compartmentId", json!(COMPARTMENT)),
        ] {
            assert_eq!(ip[k], want, "{k}: {ip}");
        }
        let id = ip["id"].as_str().unwrap();
        assert!(id.starts_with("ocid1.publicip.oc1.iad."), "{id}");
        assert_eq!(&api.ok(&format!("/publicIps/{id}")).await, ip);
        let by_private = api
            .post(
                "/publicIps/actions/getByPrivateIpId",
                &json!({"privateIpId": private_of(v)}),
            )
            .await;
        assert_eq!((by_private.status, &by_private.body), (200, ip));
    }
    // Stable: the same ids on the next read; paged.
    let first = api
        .get(&public(&[&ad_scope[..], &[("limit", "1")]].concat()))
        .await;
    assert_eq!(first.body, json!([ips[0]]));
    let next = first.header("opc-next-page").unwrap().to_string();
    let second = api
        .ok(&public(
            &[&ad_scope[..], &[("limit", "1"), ("page", &next)]].concat(),
        ))
        .await;
    assert_eq!(second, json!([ips[1]]));
    // A private IP without a public IP has none.
    let none = api
        .post(
            "/publicIps/actions/getByPrivateIpId",
            &json!({"privateIpId": private_of(&vnics[2].1)}),
        )
        .await;
    assert_eq!(none.status, 404, "{none:?}");
    let unknown_field = api
        .post(
            "/publicIps/actions/getByPrivateIpId",
            &json!({"privateIpId": private_of(&vnics[2].1), "publicIpId": "x"}),
        )
        .await;
    assert_eq!(unknown_field.status, 400, "{unknown_field:?}");
    // The other AD has its own; REGION scope (reserved IPs, NAT gateways) has none here, nor has
    // RESERVED.
    let other = api
        .ok(&public(&[
            ("scope", "AVAILABILITY_DOMAIN"),
            ("compartmentId", COMPARTMENT),
            ("availabilityDomain", &f.availability_domains[1]),
        ]))
        .await;
    assert_eq!(other[0]["ipAddress"], vnics[3].1["publicIp"]);
    let region = public(&[("scope", "REGION"), ("compartmentId", COMPARTMENT)]);
    assert_eq!(api.ok(&region).await, json!([]));
    let reserved = [&ad_scope[..3], &[("lifetime", "RESERVED")]].concat();
    assert_eq!(api.ok(&public(&reserved)).await, json!([]));
    assert_eq!(
        api.ok(&public(&[
            ("scope", "AVAILABILITY_DOMAIN"),
            ("compartmentId", OTHER_COMPARTMENT),
            ("availabilityDomain", ad)
        ]))
        .await,
        json!([])
    );
    // Strict: scope required and spelled right, an AD with AD scope only, a known compartment.
    for (pairs, status) in [
        (vec![("compartmentId", COMPARTMENT)], 400),
        (vec![("scope", "AD"), ("compartmentId", COMPARTMENT)], 400),
        (
            vec![
                ("scope", "AVAILABILITY_DOMAIN"),
                ("compartmentId", COMPARTMENT),
            ],
            400,
        ),
        (
            vec![
                ("scope", "REGION"),
                ("compartmentId", COMPARTMENT),
                ("availabilityDomain", ad),
            ],
            400,
        ),
        (
            vec![
                ("scope", "AVAILABILITY_DOMAIN"),
                ("compartmentId", COMPARTMENT),
                ("availabilityDomain", "nope:AD-9"),
            ],
            400,
        ),
        (
            vec![
                ("scope", "REGION"),
                ("compartmentId", COMPARTMENT),
                ("lifetime", "FOREVER"),
            ],
            400,
        ),
        (vec![("scope", "REGION")], 400),
        (
            vec![
                ("scope", "REGION"),
                ("compartmentId", "ocid1.compartment.oc1..unknown"),
            ],
            404,
        ),
        (
            vec![
                ("scope", "REGION"),
                ("compartmentId", COMPARTMENT),
                ("limit", "0"),
            ],
            400,
        ),
    ] {
        let a = api.get(&public(&pairs)).await;
        assert_eq!(a.status, status, "{pairs:?}: {a:?}");
    }
    assert_eq!(
        api.get("/publicIps/ocid1.publicip.oc1.iad.nope")
            .await
            .status,
        404
    );
    // Terminated: its private and public IPs are released.
    let (gone, v) = &vnics[0];
    assert_eq!(api.delete(&format!("/instances/{gone}")).await.status, 204);
    support::fast_forward(&emu);
    let ips = api.ok(&public(&ad_scope)).await;
    assert_eq!(ips.as_array().unwrap().len(), 1, "{ips}");
    assert_eq!(ips[0]["ipAddress"], vnics[1].1["publicIp"]);
    let id = v["id"]
        .as_str()
        .unwrap()
        .replacen("ocid1.vnic.", "ocid1.publicip.", 1);
    assert_eq!(api.get(&format!("/publicIps/{id}")).await.status, 404);
    let by_subnet = api
        .ok(&format!(
            "/privateIps?{}",
            qs(&[("subnetId", f.public_subnet_id.as_str())])
        ))
        .await;
    assert_eq!(by_subnet.as_array().unwrap().len(), 3, "{by_subnet}");
    let stats = emu.stats();
    for op in ["ListPublicIps", "GetPublicIp", "GetPublicIpByPrivateIpId"] {
        assert!(stats.get(op).copied().unwrap_or(0) > 0, "{op}: {stats:?}");
    }
}
