//! The emulator on the wire: signatures (Oracle's signing vectors), errors, etags, retry tokens,
//! pagination ([`super::lifecycles`] has lifecycles, images, persistence and faults).

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
pub(super) struct Raw {
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
