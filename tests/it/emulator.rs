//! The emulator on the wire: signatures, errors, etags, retry tokens, lifecycles, pagination,
//! persistence, faults.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use kiln::emulator::{
    self,
    auth::{RequestHead, SignedRequest},
    TrustedKey,
};
use kiln::oci::signer::{self, RequestParts};
use kiln::oci::MutationOptions;

use crate::support::{self, COMPARTMENT};

/// A raw request, signed by kiln's signer and then optionally tampered with.
struct Raw {
    method: &'static str,
    path_and_query: String,
    body: Vec<u8>,
    key: kiln::oci::keys::SigningKey,
    date: String,
}

impl Raw {
    fn new(method: &'static str, pq: &str, body: &[u8]) -> Raw {
        Raw {
            method,
            path_and_query: pq.into(),
            body: body.to_vec(),
            key: support::signing_key(),
            date: signer::http_date_now(),
        }
    }

    /// Sign, then let `tamper` change (headers, path, body) before sending.
    async fn send(
        &self,
        emu: &emulator::RunningEmulator,
        tamper: impl FnOnce(&mut Vec<(String, String)>, &mut String, &mut Vec<u8>),
    ) -> (u16, Value) {
        let host = emu.addr().to_string();
        let signed = signer::sign(
            &self.key,
            &RequestParts {
                method: self.method,
                path_and_query: &self.path_and_query,
                host: &host,
                date: &self.date,
                body: &self.body,
                content_type: "application/json",
                exclude_body: false,
            },
        );
        let mut headers: Vec<(String, String)> = signed
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let mut pq = self.path_and_query.clone();
        let mut body = self.body.clone();
        tamper(&mut headers, &mut pq, &mut body);
        let mut req = reqwest::Client::new()
            .request(self.method.parse().unwrap(), format!("{}{pq}", emu.url()));
        for (k, v) in headers {
            if k != "content-length" {
                req = req.header(k, v);
            }
        }
        if matches!(self.method, "POST" | "PUT") {
            req = req.body(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        assert!(
            resp.headers().contains_key("opc-request-id"),
            "every response carries opc-request-id"
        );
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn oracle_sdk_signing_vectors_verify_and_any_tampering_fails() {
    let dir = support::fixtures_dir().join("signing");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("signing-vectors.json")).unwrap())
            .unwrap();
    let now: DateTime<Utc> = httpdate::parse_http_date("Mon, 23 Nov 2026 00:00:00 GMT")
        .unwrap()
        .into();
    for v in doc["vectors"].as_array().unwrap() {
        let id = v["id"].as_str().unwrap();
        // Trust the vector's key under the vector's keyId (session tokens too).
        let public = kiln::oci::keys::load_private_key(
            &dir.join(v["key_file"].as_str().unwrap()),
            v["key_passphrase"].as_str(),
        )
        .unwrap()
        .to_public_key();
        let keys = vec![TrustedKey {
            key_id: v["key_id"].as_str().unwrap().into(),
            public_key: public,
        }];
        let headers: Vec<(String, String)> = v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_ascii_lowercase(),
                    h[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let body = v["body_base64"]
            .as_str()
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
            .unwrap_or_default();
        let target = v["request_target"].as_str().unwrap().to_string();
        let method = v["method"].as_str().unwrap();
        let check = |headers: &[(String, String)], target: &str, body: &[u8], method: &str| {
            let lookup = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            emulator::verify_request_at(
                &keys,
                &SignedRequest {
                    head: RequestHead {
                        method,
                        target,
                        header: &lookup,
                        body_signed: true,
                    },
                    body,
                },
                now,
            )
        };
        check(&headers, &target, &body, method).unwrap_or_else(|e| panic!("{id}: {e}"));
        // Altering any signed part fails.
        let signed: Vec<&str> = v["signed_headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        for (i, (name, _)) in headers.iter().enumerate() {
            if signed.contains(&name.as_str()) {
                let mut h = headers.clone();
                h[i].1.push('x');
                assert!(
                    check(&h, &target, &body, method).is_err(),
                    "{id}: altered {name} still verifies"
                );
            }
        }
        assert!(
            check(&headers, &format!("{target}x"), &body, method).is_err(),
            "{id}: altered target"
        );
        assert!(
            check(
                &headers,
                &target,
                &body,
                if method == "GET" { "DELETE" } else { "GET" }
            )
            .is_err(),
            "{id}: altered method"
        );
        if !body.is_empty() {
            let mut b = body.clone();
            b[0] ^= 1;
            assert!(
                check(&headers, &target, &b, method).is_err(),
                "{id}: altered body"
            );
        }
        // A day later the same request is refused (±5 minutes).
        let lookup = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let later = now + chrono::Duration::minutes(6);
        assert!(
            emulator::verify_request_at(
                &keys,
                &SignedRequest {
                    head: RequestHead {
                        method,
                        target: &target,
                        header: &lookup,
                        body_signed: true,
                    },
                    body: &body,
                },
                later
            )
            .is_err(),
            "{id}: skew"
        );
    }
}

#[tokio::test]
async fn every_signature_failure_mode_is_401_not_authenticated() {
    let emu = support::start(support::config(0.0)).await;
    let list = format!("/20160918/instances?compartmentId={COMPARTMENT}");
    let body = serde_json::to_vec(&json!({"displayName": "x"})).unwrap();

    let (s, _) = Raw::new("GET", &list, b"").send(&emu, |_, _, _| {}).await;
    assert_eq!(s, 200, "an untampered request passes");

    /// Changes the headers, the request target or the body after signing.
    type Tamper = Box<dyn FnOnce(&mut Vec<(String, String)>, &mut String, &mut Vec<u8>)>;
    let cases: Vec<(&str, Raw, Tamper)> = vec![
        (
            "tampered body",
            Raw::new("POST", "/20160918/instances", &body),
            Box::new(|_, _, b: &mut Vec<u8>| b[2] = b'X'),
        ),
        (
            "altered query",
            Raw::new("GET", &list, b""),
            Box::new(|_, pq: &mut String, _| pq.push_str("&limit=5")),
        ),
        (
            "skewed date",
            {
                let mut r = Raw::new("GET", &list, b"");
                r.date = httpdate::fmt_http_date(
                    std::time::SystemTime::now() - std::time::Duration::from_secs(600),
                );
                r
            },
            Box::new(|_, _, _| {}),
        ),
        (
            // Regression: the window used to check `x-date` whenever present, signed or not.
            "a stale signed date with a fresh unsigned x-date",
            {
                let mut r = Raw::new("GET", &list, b"");
                r.date = httpdate::fmt_http_date(
                    std::time::SystemTime::now() - std::time::Duration::from_secs(600),
                );
                r
            },
            Box::new(|h: &mut Vec<(String, String)>, _, _| {
                h.push(("x-date".into(), signer::http_date_now()))
            }),
        ),
        (
            "wrong key",
            {
                let mut r = Raw::new("GET", &list, b"");
                r.key.key = support::other_key().key;
                r
            },
            Box::new(|_, _, _| {}),
        ),
        (
            "unknown keyId",
            Raw {
                key: support::other_key(),
                ..Raw::new("GET", &list, b"")
            },
            Box::new(|_, _, _| {}),
        ),
        (
            "missing signed header",
            Raw::new("POST", "/20160918/instances", &body),
            Box::new(|h: &mut Vec<(String, String)>, _, _| {
                for (k, v) in h.iter_mut() {
                    if k == "authorization" {
                        *v = v.replace(" x-content-sha256", "");
                    }
                }
            }),
        ),
        (
            "no authorization",
            Raw::new("GET", &list, b""),
            Box::new(|h: &mut Vec<(String, String)>, _, _| h.retain(|(k, _)| k != "authorization")),
        ),
    ];
    for (name, raw, tamper) in cases {
        let (status, body) = raw.send(&emu, tamper).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["code"], "NotAuthenticated", "{name}");
    }
    // Parameters in any order (the Go SDK's order) are accepted.
    let (s, _) = Raw::new("GET", &list, b"")
        .send(&emu, |h, _, _| {
            for (k, v) in h.iter_mut() {
                if k == "authorization" {
                    let inner = v.strip_prefix("Signature ").unwrap().to_string();
                    let mut parts: Vec<&str> = inner.split(",").collect();
                    parts.reverse();
                    *v = format!("Signature {}", parts.join(","));
                }
            }
        })
        .await;
    assert_eq!(s, 200, "parameters in another order");
    // Unsigned emulator endpoints.
    let stats: Value = reqwest::get(format!("{}/_emulator/stats", emu.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stats["total"].as_u64().unwrap() >= 9);
    assert!(stats["ListInstances"].as_u64().unwrap() >= 6);
}

#[tokio::test]
async fn bad_input_gets_the_oci_error_that_names_the_field() {
    let emu = support::start(support::config(0.0)).await;
    let c = support::client(&emu);
    let mut d = support::launch_details(&emu, "x");
    d.shape = Some("VM.Imaginary".into());
    let e = c
        .launch_instance(&d, &MutationOptions::default())
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (Some(400), "InvalidParameter"));
    assert!(e.message.contains("VM.Imaginary"));
    assert!(e.opc_request_id.is_some());

    let mut d = support::launch_details(&emu, "x");
    d.create_vnic_details.as_mut().unwrap().subnet_id = "ocid1.subnet.oc1.iad.nope".into();
    let e = c
        .launch_instance(&d, &MutationOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, "RelatedResourceNotAuthorizedOrNotFound");

    let mut d = support::launch_details(&emu, "x");
    d.shape_config.as_mut().unwrap().ocpus = Some(100.0);
    assert_eq!(
        c.launch_instance(&d, &MutationOptions::default())
            .await
            .unwrap_err()
            .code,
        "InvalidParameter"
    );

    let mut d = support::launch_details(&emu, "x");
    d.source_details = Some(kiln::oci::models::InstanceSourceDetails::Image {
        image_id: "ocid1.image.oc1.iad.unknown".into(),
        boot_volume_size_in_gbs: None,
        boot_volume_vpus_per_gb: None,
        kms_key_id: None,
    });
    assert_eq!(
        c.launch_instance(&d, &MutationOptions::default())
            .await
            .unwrap_err()
            .code,
        "RelatedResourceNotAuthorizedOrNotFound"
    );

    let e = c
        .get_instance("ocid1.instance.oc1.iad.doesnotexist")
        .await
        .unwrap_err();
    assert_eq!(
        (e.status, e.code.as_str()),
        (Some(404), "NotAuthorizedOrNotFound")
    );
    assert!(e.is_not_found());

    let e = c
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: "not-an-ocid".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameter");
    let e = c
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: COMPARTMENT.into(),
            limit: Some(5000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message.contains("`limit`"), "{e}");

    // Immutable metadata.
    let i = c
        .launch_instance(
            &support::launch_details(&emu, "m"),
            &MutationOptions::default(),
        )
        .await
        .unwrap()
        .body;
    let upd: kiln::oci::models::UpdateInstanceDetails =
        serde_json::from_value(json!({"metadata": {"ssh_authorized_keys": "other"}})).unwrap();
    let e = c
        .update_instance(&i.id, &upd, &MutationOptions::default())
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (Some(400), "InvalidParameter"));
    assert!(e.message.contains("ssh_authorized_keys"));
    // Invalid transition: STOP while PROVISIONING.
    let emu2 = support::start(support::config(10.0)).await;
    let c2 = support::client(&emu2);
    let i2 = c2
        .launch_instance(
            &support::launch_details(&emu2, "slow"),
            &MutationOptions::default(),
        )
        .await
        .unwrap()
        .body;
    let mut c2_no_retry = kiln::oci::ClientOptions::new(emu2.url());
    c2_no_retry.retry = kiln::oci::RetryPolicy::none();
    let c2 = kiln::oci::Client::new(support::signing_key(), c2_no_retry);
    let e = c2
        .instance_action(
            &i2.id,
            kiln::oci::models::InstanceAction::Stop,
            None,
            &MutationOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (Some(409), "IncorrectState"));
    // Unknown route.
    let r = reqwest::get(format!("{}/20160918/volumes", emu.url()))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test]
async fn etags_change_on_every_mutation_and_if_match_guards_writes() {
    let emu = support::start(support::config(0.002)).await;
    let c = support::client(&emu);
    let launched = c
        .launch_instance(
            &support::launch_details(&emu, "e"),
            &MutationOptions::default(),
        )
        .await
        .unwrap();
    let id = launched.body.id.clone();
    let e0 = launched.etag.clone().unwrap();
    assert!(launched.opc_work_request_id.is_some());
    let running = c
        .wait_for_instance(&id, &["RUNNING"], &support::wait(10))
        .await
        .unwrap();
    let e1 = running.etag.unwrap();
    assert_ne!(e0, e1, "a lifecycle transition changes the etag");

    let upd: kiln::oci::models::UpdateInstanceDetails =
        serde_json::from_value(json!({"displayName": "renamed"})).unwrap();
    let e = c
        .update_instance(&id, &upd, &MutationOptions::if_match(Some(&e0)))
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (Some(412), "NoEtagMatch"));
    assert!(e.is_precondition_failed());
    assert_eq!(e.attempts, 1, "412 is never retried");
    assert_eq!(
        c.get_instance(&id)
            .await
            .unwrap()
            .body
            .display_name
            .as_deref(),
        Some("e"),
        "nothing was overwritten"
    );

    let ok = c
        .update_instance(&id, &upd, &MutationOptions::if_match(Some(&e1)))
        .await
        .unwrap();
    assert_ne!(ok.etag.as_deref(), Some(e1.as_str()));
    assert_eq!(ok.body.display_name.as_deref(), Some("renamed"));
    // Terminate with a stale etag is refused too.
    let e = c
        .terminate_instance(&id, None, None, &MutationOptions::if_match(Some(&e1)))
        .await
        .unwrap_err();
    assert!(e.is_precondition_failed());
}

#[tokio::test]
async fn retry_tokens_replay_the_first_response_and_refuse_a_different_body() {
    let emu = support::start(support::config(0.0)).await;
    let c = support::client(&emu);
    let opts = MutationOptions {
        if_match: None,
        retry_token: Some("kiln-test-token-1".into()),
    };
    let a = c
        .launch_instance(&support::launch_details(&emu, "t"), &opts)
        .await
        .unwrap();
    let b = c
        .launch_instance(&support::launch_details(&emu, "t"), &opts)
        .await
        .unwrap();
    assert_eq!(a.body.id, b.body.id);
    assert_eq!(a.etag, b.etag);
    assert_ne!(a.opc_request_id, b.opc_request_id);
    let all = c
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "no second instance");
    let e = c
        .launch_instance(&support::launch_details(&emu, "different"), &opts)
        .await
        .unwrap_err();
    assert_eq!(
        (e.status, e.code.as_str()),
        (Some(409), "InvalidatedRetryToken")
    );
}

#[tokio::test]
async fn pagination_lists_every_page_in_order() {
    let emu = support::start(support::config(0.0)).await;
    let c = support::client(&emu);
    for n in 0..7 {
        c.launch_instance(
            &support::launch_details(&emu, &format!("p{n}")),
            &MutationOptions::default(),
        )
        .await
        .unwrap();
    }
    let req = kiln::oci::compute::ListInstances {
        compartment_id: COMPARTMENT.into(),
        limit: Some(3),
        sort_by: Some("DISPLAYNAME".into()),
        ..Default::default()
    };
    let first = c.list_instances_page(&req, None).await.unwrap();
    assert_eq!(first.body.len(), 3);
    let token = first.opc_next_page.clone().unwrap();
    let second = c.list_instances_page(&req, Some(&token)).await.unwrap();
    let third = c
        .list_instances_page(&req, second.opc_next_page.as_deref())
        .await
        .unwrap();
    assert_eq!(third.body.len(), 1);
    assert!(third.opc_next_page.is_none());
    let names: Vec<String> = first
        .body
        .iter()
        .chain(&second.body)
        .chain(&third.body)
        .map(|i| i.display_name.clone().unwrap())
        .collect();
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    let all = c
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: COMPARTMENT.into(),
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 7);
    // Filters.
    let one = c
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: COMPARTMENT.into(),
            display_name: Some("p3".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    let other = c
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: support::OTHER_COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(other.is_empty());
}

#[tokio::test]
async fn lifecycles_run_on_the_scaled_clock_and_terminated_instances_stay_listed() {
    let emu = support::start(support::config(0.002)).await;
    let c = support::client(&emu);
    let i = c
        .launch_instance(
            &support::launch_details(&emu, "life"),
            &MutationOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(i.body.lifecycle_state, "PROVISIONING");
    let r = c
        .wait_for_instance(&i.body.id, &["RUNNING"], &support::wait(10))
        .await
        .unwrap();
    let s = c
        .instance_action(
            &i.body.id,
            kiln::oci::models::InstanceAction::Stop,
            None,
            &MutationOptions::if_match(r.etag.as_deref()),
        )
        .await
        .unwrap();
    assert_eq!(s.body.lifecycle_state, "STOPPING");
    c.wait_for_instance(&i.body.id, &["STOPPED"], &support::wait(10))
        .await
        .unwrap();
    c.instance_action(
        &i.body.id,
        kiln::oci::models::InstanceAction::Start,
        None,
        &MutationOptions::default(),
    )
    .await
    .unwrap();
    c.wait_for_instance(&i.body.id, &["RUNNING"], &support::wait(10))
        .await
        .unwrap();
    let details = kiln::oci::models::InstancePowerActionDetails::SoftReset {
        allow_dense_reboot_migration: Some(true),
    };
    c.instance_action(
        &i.body.id,
        kiln::oci::models::InstanceAction::SoftReset,
        Some(&details),
        &MutationOptions::default(),
    )
    .await
    .unwrap();
    c.wait_for_instance(&i.body.id, &["RUNNING"], &support::wait(10))
        .await
        .unwrap();
    let t = c
        .terminate_instance(&i.body.id, Some(true), None, &MutationOptions::default())
        .await
        .unwrap();
    let wr = t.opc_work_request_id.unwrap();
    let done = c
        .wait_for_work_request(&wr, &support::wait(10))
        .await
        .unwrap();
    assert_eq!(done.body.percent_complete, 100.0);
    assert_eq!(done.body.resources[0].identifier, i.body.id);
    let listed = c
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed[0].lifecycle_state, "TERMINATED");
    let wrs = c
        .list_work_requests(COMPARTMENT, Some(&i.body.id))
        .await
        .unwrap();
    assert!(
        wrs.len() >= 4,
        "launch, actions and terminate are work requests: {}",
        wrs.len()
    );
}

#[tokio::test]
async fn images_capture_list_update_delete_and_compartment_moves() {
    let emu = support::start(support::config(0.001)).await;
    let c = support::client(&emu);
    let i = c
        .launch_instance(
            &support::launch_details(&emu, "builder"),
            &MutationOptions::default(),
        )
        .await
        .unwrap()
        .body;
    c.wait_for_instance(&i.id, &["RUNNING"], &support::wait(10))
        .await
        .unwrap();
    let details: kiln::oci::models::CreateImageDetails = serde_json::from_value(
        json!({"compartmentId": COMPARTMENT, "instanceId": i.id, "displayName": "golden"}),
    )
    .unwrap();
    let img = c
        .create_image(&details, &MutationOptions::default())
        .await
        .unwrap();
    assert_eq!(img.body.lifecycle_state, "PROVISIONING");
    assert_eq!(
        c.get_instance(&i.id).await.unwrap().body.lifecycle_state,
        "CREATING_IMAGE",
        "a running source is taken down for the capture"
    );
    let avail = c
        .wait_for_image(&img.body.id, &["AVAILABLE"], &support::wait(10))
        .await
        .unwrap();
    assert_eq!(avail.body.operating_system, "Oracle Linux");
    c.wait_for_instance(&i.id, &["RUNNING"], &support::wait(10))
        .await
        .unwrap();
    // Cooldown: 20 minutes × 0.001 = 1.2 s after the capture.
    let mut no_retry = kiln::oci::ClientOptions::new(emu.url());
    no_retry.retry = kiln::oci::RetryPolicy::none();
    let strict = kiln::oci::Client::new(support::signing_key(), no_retry);
    let e = strict
        .create_image(&details, &MutationOptions::default())
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (Some(409), "IncorrectState"));
    // Platform images first, then custom.
    let all = c
        .list_images(&kiln::oci::compute::ListImages {
            compartment_id: COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.last().unwrap().id, img.body.id);
    assert!(all[0].compartment_id.is_none());
    let ubuntu = c
        .list_images(&kiln::oci::compute::ListImages {
            compartment_id: COMPARTMENT.into(),
            operating_system: Some("Canonical Ubuntu".into()),
            operating_system_version: Some("24.04".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ubuntu.len(), 3, "two x86 builds and one for Arm");
    // Update with If-Match, then move, then delete.
    let upd: kiln::oci::models::UpdateImageDetails =
        serde_json::from_value(json!({"displayName": "golden-2"})).unwrap();
    let e = c
        .update_image(
            &img.body.id,
            &upd,
            &MutationOptions::if_match(img.etag.as_deref()),
        )
        .await
        .unwrap_err();
    assert!(
        e.is_precondition_failed(),
        "PROVISIONING→AVAILABLE changed the etag"
    );
    let u = c
        .update_image(
            &img.body.id,
            &upd,
            &MutationOptions::if_match(avail.etag.as_deref()),
        )
        .await
        .unwrap();
    assert_eq!(u.body.display_name.as_deref(), Some("golden-2"));
    let other = support::OTHER_COMPARTMENT;
    let moved = c
        .change_image_compartment(
            &img.body.id,
            other,
            &MutationOptions::if_match(u.etag.as_deref()),
        )
        .await
        .unwrap();
    c.wait_for_work_request(
        moved.opc_work_request_id.as_deref().unwrap(),
        &support::wait(10),
    )
    .await
    .unwrap();
    assert_eq!(
        c.get_image(&img.body.id)
            .await
            .unwrap()
            .body
            .compartment_id
            .as_deref(),
        Some(other)
    );
    c.change_instance_compartment(&i.id, other, &MutationOptions::default())
        .await
        .unwrap();
    assert_eq!(
        c.get_instance(&i.id).await.unwrap().body.compartment_id,
        other
    );
    let r = c
        .delete_image(
            &img.body.id,
            &MutationOptions::if_match(moved.etag.as_deref()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        c.get_image(&img.body.id)
            .await
            .unwrap()
            .body
            .lifecycle_state,
        "DELETED"
    );
    // Importing from Object Storage.
    support::put_image_file(&emu, &c, "o.qcow2").await;
    let f = emu.fixtures();
    let import: kiln::oci::models::CreateImageDetails = serde_json::from_value(json!({"compartmentId": COMPARTMENT, "imageSourceDetails": {"sourceType": "objectStorageTuple", "namespaceName": f.namespace, "bucketName": f.image_bucket, "objectName": "o.qcow2", "operatingSystem": "Custom Linux"}})).unwrap();
    let im = c
        .create_image(&import, &MutationOptions::default())
        .await
        .unwrap();
    assert_eq!(im.body.lifecycle_state, "IMPORTING");
    c.wait_for_image(&im.body.id, &["AVAILABLE"], &support::wait(10))
        .await
        .unwrap();
    // Network reads.
    let f = emu.fixtures();
    assert_eq!(
        c.get_subnet(&f.private_subnet_id)
            .await
            .unwrap()
            .body
            .prohibit_public_ip_on_vnic,
        Some(true)
    );
    assert_eq!(
        c.list_subnets(COMPARTMENT, Some(&f.vcn_id))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(c.list_vcns(COMPARTMENT).await.unwrap()[0].id, f.vcn_id);
}

#[tokio::test]
async fn data_persists_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("emulator.json");
    let mut cfg = support::config(0.0);
    cfg.data_file = Some(data.clone());
    let emu = support::start(cfg.clone()).await;
    let c = support::client(&emu);
    let opts = MutationOptions {
        if_match: None,
        retry_token: Some("persisted-token".into()),
    };
    let i = c
        .launch_instance(&support::launch_details(&emu, "keep"), &opts)
        .await
        .unwrap();
    emu.shutdown().await;

    let emu = support::start(cfg).await;
    let c = support::client(&emu);
    let got = c.get_instance(&i.body.id).await.unwrap();
    assert_eq!(got.body.display_name.as_deref(), Some("keep"));
    assert_eq!(got.body.lifecycle_state, "RUNNING");
    let again = c
        .launch_instance(&support::launch_details(&emu, "keep"), &opts)
        .await
        .unwrap();
    assert_eq!(again.body.id, i.body.id, "retry tokens survive the restart");
}

#[tokio::test]
async fn faults_are_injected_and_the_client_converges_without_duplicates() {
    let mut cfg = support::config(0.0);
    cfg.fault_429 = 0.3;
    cfg.fault_5xx = 0.05;
    cfg.fault_reset = 0.02;
    cfg.seed = Some(7);
    let emu = support::start(cfg).await;
    let c = support::client(&emu);
    for n in 0..10 {
        let r = c
            .launch_instance(
                &support::launch_details(&emu, &format!("f{n}")),
                &MutationOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let all = c
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.len(),
        10,
        "retries with one token per launch made no duplicates"
    );
    let stats = emu.stats();
    assert!(
        stats["LaunchInstance"] > 10,
        "some launches were faulted and retried: {stats:?}"
    );
}

#[tokio::test]
async fn a_launch_makes_a_primary_vnic_with_addresses_and_a_hostname() {
    let emu = support::start(support::config(0.0)).await;
    let c = support::client(&emu);
    let f = emu.fixtures();
    let launch = |name: &str, vnic: Value| {
        let mut d = support::launch_details(&emu, name);
        d.create_vnic_details = Some(serde_json::from_value(vnic).unwrap());
        let c = c.clone();
        async move { c.launch_instance(&d, &MutationOptions::default()).await }
    };
    let web = launch("Web Server", json!({"subnetId": f.public_subnet_id}))
        .await
        .unwrap()
        .body;
    let web2 = launch("web server", json!({"subnetId": f.public_subnet_id}))
        .await
        .unwrap()
        .body;
    let db = launch(
        "db",
        json!({"subnetId": f.private_subnet_id, "hostnameLabel": "primary-db"}),
    )
    .await
    .unwrap()
    .body;
    let taken = launch(
        "x",
        json!({"subnetId": f.private_subnet_id, "hostnameLabel": "primary-db"}),
    )
    .await
    .unwrap_err();
    assert_eq!((taken.status, taken.code.as_str()), (Some(409), "Conflict"));
    let quiet = launch(
        "quiet",
        json!({"subnetId": f.private_subnet_id, "assignPrivateDnsRecord": false}),
    )
    .await
    .unwrap()
    .body;
    // One list of the compartment finds every primary attachment.
    let all = c.list_vnic_attachments(COMPARTMENT, None).await.unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    let vnic = |instance: String| {
        let a = all
            .iter()
            .find(|a| a.instance_id == instance)
            .unwrap()
            .clone();
        let c = c.clone();
        async move {
            assert_eq!(
                (a.lifecycle_state.as_str(), a.nic_index),
                ("ATTACHED", Some(0))
            );
            c.get_vnic(a.vnic_id.as_deref().unwrap())
                .await
                .unwrap()
                .body
        }
    };
    let v = vnic(web.id.clone()).await;
    assert_eq!(v.is_primary, Some(true));
    assert_eq!(v.hostname_label.as_deref(), Some("web-server"));
    assert!(v.private_ip.as_deref().unwrap().starts_with("10.0.0."));
    assert!(v.public_ip.as_deref().unwrap().starts_with("203.0.113."));
    assert_eq!(v.extra["displayName"], "Web Server");
    assert!(v.extra["macAddress"].is_string());
    assert_eq!(
        vnic(web2.id.clone()).await.hostname_label.as_deref(),
        Some("web-server-2"),
        "unique in the subnet"
    );
    let d = vnic(db.id.clone()).await;
    assert_eq!(d.hostname_label.as_deref(), Some("primary-db"));
    assert_eq!(d.public_ip, None, "a private subnet has no public IPs");
    assert_eq!(vnic(quiet.id.clone()).await.hostname_label, None);
    // A moved instance takes its attachment along; the VNIC stays.
    let other = "ocid1.compartment.oc1..aaaaaaaaothercompartment";
    c.change_instance_compartment(&db.id, other, &MutationOptions::default())
        .await
        .unwrap();
    let moved = c.list_vnic_attachments(other, None).await.unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].instance_id, db.id);
    let v = c
        .get_vnic(moved[0].vnic_id.as_deref().unwrap())
        .await
        .unwrap()
        .body;
    assert_eq!(v.extra["compartmentId"], COMPARTMENT);
    assert_eq!(
        c.list_vnic_attachments(COMPARTMENT, None)
            .await
            .unwrap()
            .len(),
        3
    );
}
