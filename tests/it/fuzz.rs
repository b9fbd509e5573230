//! Generated requests at the in-process emulator: random methods, paths under `/20160918` and
//! `/n`, query strings, headers (bogus `Authorization` included) and bodies (invalid JSON, deep
//! nesting, random bytes); then correctly signed requests with random bodies and queries to the
//! Compute routes. The emulator must answer every one of them without a 5xx (a panic drops the
//! connection; faults are off, so no 5xx is expected), and still serve a well-formed request
//! afterwards. Bodies are generated small; what the emulator may buffer is capped anyway.
//!
//! Cases per test: `KILN_FUZZ_CASES` (default 200, a few seconds in a debug build).

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use kiln::emulator::RunningEmulator;
use kiln::oci::signer::{self, RequestParts};

use crate::support::{self, COMPARTMENT};

fn runner() -> TestRunner {
    let cases = std::env::var("KILN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // No shrinking: a panic poisons the emulator's state, so every later request fails too
        // and a "smaller" case would be a wrong lead. The case reported is the first that failed.
        max_shrink_iters: 0,
        ..Config::default()
    })
}

/// An answer must come within this; a hang is a failure too.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "instances",
            "images",
            "subnets",
            "vcns",
            "vnics",
            "vnicAttachments",
            "workRequests",
            "errors",
            "actions",
            "changeCompartment",
            "b",
            "o",
            "n",
            "kiln-state",
            "ocid1.instance.oc1.iad.aaaa",
            "ocid1.image.oc1.iad.aaaa",
            "..",
            ".",
            "%00",
            "%ff%fe",
            "%2F",
        ])
        .prop_map(str::to_string),
        "[A-Za-z0-9._~%-]{0,24}",
        "[a-z]{200,2000}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "compartmentId",
            "limit",
            "page",
            "action",
            "availabilityDomain",
            "displayName",
            "lifecycleState",
            "sortBy",
            "sortOrder",
            "instanceId",
            "operatingSystem",
            "prefix",
            "start",
            "end",
            "fields",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z]{1,12}",
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "-1",
            "0",
            "1",
            "1000",
            "1001",
            "99999999999999999999",
            "STOP",
            "START",
            "RESET",
            "SOFTSTOP",
            "nope",
            COMPARTMENT,
            "TIMECREATED",
            "DESC",
        ])
        .prop_map(str::to_string),
        "\\PC{0,40}",
    ];
    prop::collection::vec((key, value), 0..6).prop_map(|pairs| {
        if pairs.is_empty() {
            return String::new();
        }
        let mut s = url::form_urlencoded::Serializer::new(String::from("?"));
        for (k, v) in &pairs {
            s.append_pair(k, v);
        }
        s.finish()
    })
}

/// A JSON value with the emulator's field names, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![
            "VM.Standard.E4.Flex",
            "image",
            "bootVolume",
            "RUNNING",
            COMPARTMENT,
            "ocid1.image.oc1.iad.aaaa",
            "",
        ])
        .prop_map(Value::from),
        "\\PC{0,30}".prop_map(Value::from),
    ];
    let key = prop_oneof![
        prop::sample::select(vec![
            "availabilityDomain",
            "compartmentId",
            "displayName",
            "shape",
            "shapeConfig",
            "ocpus",
            "memoryInGBs",
            "createVnicDetails",
            "subnetId",
            "assignPublicIp",
            "sourceDetails",
            "sourceType",
            "imageId",
            "bootVolumeId",
            "bootVolumeSizeInGBs",
            "metadata",
            "freeformTags",
            "definedTags",
            "instanceId",
            "launchMode",
            "faultDomain",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z]{1,10}",
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A valid LaunchInstance body with one field replaced by something random.
fn near_valid_launch(emu: &RunningEmulator) -> impl Strategy<Value = Vec<u8>> {
    let f = emu.fixtures();
    let base = json!({
        "availabilityDomain": f.availability_domains[0],
        "compartmentId": COMPARTMENT,
        "displayName": "fuzz",
        "shape": "VM.Standard.E4.Flex",
        "shapeConfig": {"ocpus": 1, "memoryInGBs": 16},
        "createVnicDetails": {"subnetId": f.public_subnet_id},
        "sourceDetails": {"sourceType": "image", "imageId": f.platform_images[0].id},
        "metadata": {"ssh_authorized_keys": "ssh-ed25519 AAAA fuzz"}
    });
    let paths: Vec<Vec<&'static str>> = vec![
        vec!["availabilityDomain"],
        vec!["compartmentId"],
        vec!["displayName"],
        vec!["shape"],
        vec!["shapeConfig"],
        vec!["shapeConfig", "ocpus"],
        vec!["shapeConfig", "memoryInGBs"],
        vec!["createVnicDetails"],
        vec!["createVnicDetails", "subnetId"],
        vec!["sourceDetails"],
        vec!["sourceDetails", "sourceType"],
        vec!["sourceDetails", "imageId"],
        vec!["metadata"],
        vec!["freeformTags"],
        vec!["definedTags"],
    ];
    (prop::sample::select(paths), json_value()).prop_map(move |(path, v)| {
        let mut doc = base.clone();
        let mut at = &mut doc;
        for (i, k) in path.iter().enumerate() {
            if i + 1 == path.len() {
                at[*k] = v.clone();
            } else {
                at = &mut at[*k];
            }
        }
        doc.to_string().into_bytes()
    })
}

/// Bodies: empty, invalid JSON, deep nesting, random bytes, random JSON.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        (
            1usize..20_000,
            prop::sample::select(vec!["[", "{\"a\":", "[{\"b\":"])
        )
            .prop_map(|(n, open)| open.repeat(n).into_bytes()),
        (1usize..2_000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        prop::collection::vec(any::<u8>(), 0..2_000),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

fn authorization() -> impl Strategy<Value = String> {
    let key_id = format!(
        "{}/{}/{}",
        support::TENANCY,
        support::USER,
        support::PKCS1_FP
    );
    let param = prop_oneof![
        Just(format!("keyId=\"{key_id}\"")),
        "keyId=\"[ -!#-~]{0,40}\"",
        Just("headers=\"date (request-target) host\"".to_string()),
        "headers=\"[a-z() -]{0,60}\"",
        "signature=\"[A-Za-z0-9+/=]{0,400}\"",
        Just("algorithm=\"rsa-sha256\"".to_string()),
        "algorithm=\"[a-z0-9-]{0,12}\"",
        "version=\"[0-9]{0,2}\"",
        "[ -~]{0,30}",
    ];
    prop_oneof![
        (
            prop::sample::select(vec!["Signature ", "Signature", "Bearer ", ""]),
            prop::collection::vec(param, 0..7)
        )
            .prop_map(|(scheme, ps)| format!("{scheme}{}", ps.join(","))),
        "[ -~]{0,200}",
    ]
}

fn header() -> impl Strategy<Value = (String, String)> {
    let date = prop_oneof![
        Just(signer::http_date_now()),
        Just("Mon, 23 Nov 2026 00:00:00 GMT".to_string()),
        "[ -~]{0,40}",
    ];
    prop_oneof![
        authorization().prop_map(|v| ("authorization".to_string(), v)),
        date.clone().prop_map(|v| ("date".to_string(), v)),
        date.prop_map(|v| ("x-date".to_string(), v)),
        "[ -~]{0,40}".prop_map(|v| ("content-type".to_string(), v)),
        "[ -~]{0,80}".prop_map(|v| ("opc-retry-token".to_string(), v)),
        "[ -~]{0,40}".prop_map(|v| ("if-match".to_string(), v)),
        "[ -~]{0,40}".prop_map(|v| ("if-none-match".to_string(), v)),
        "[ -~]{0,60}".prop_map(|v| ("x-content-sha256".to_string(), v)),
        "[ -~]{0,30}".prop_map(|v| ("content-md5".to_string(), v)),
        ("x-[a-z]{1,10}", "[ -~]{0,50}"),
    ]
}

#[derive(Clone, Debug)]
struct Fuzzed {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A method and a path: most often one of the emulator's routes with a random id (so that the
/// request gets past routing to the signature check), else anything.
fn method_and_path(emu: &RunningEmulator) -> impl Strategy<Value = (String, String)> {
    let f = emu.fixtures();
    let routes: Vec<(&str, String)> = vec![
        ("POST", "/20160918/instances".into()),
        ("GET", "/20160918/instances".into()),
        ("GET", "/20160918/instances/{id}".into()),
        ("PUT", "/20160918/instances/{id}".into()),
        ("DELETE", "/20160918/instances/{id}".into()),
        ("POST", "/20160918/instances/{id}?action=STOP".into()),
        (
            "POST",
            "/20160918/instances/{id}/actions/changeCompartment".into(),
        ),
        ("POST", "/20160918/images".into()),
        ("GET", "/20160918/images".into()),
        ("PUT", "/20160918/images/{id}".into()),
        (
            "POST",
            "/20160918/images/{id}/actions/changeCompartment".into(),
        ),
        ("GET", "/20160918/subnets".into()),
        ("GET", "/20160918/vcns/{id}".into()),
        ("GET", "/20160918/vnicAttachments".into()),
        ("GET", "/20160918/workRequests/{id}/errors".into()),
        ("GET", "/n/".into()),
        ("GET", format!("/n/{}/b/{{id}}", f.namespace)),
        ("GET", format!("/n/{}/b/{}/o", f.namespace, f.bucket)),
        ("PUT", format!("/n/{}/b/{}/o/{{id}}", f.namespace, f.bucket)),
        (
            "HEAD",
            format!("/n/{}/b/{}/o/{{id}}", f.namespace, f.bucket),
        ),
        (
            "DELETE",
            format!("/n/{}/b/{}/o/{{id}}", f.namespace, f.bucket),
        ),
    ];
    let method = prop_oneof![
        prop::sample::select(vec![
            "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"
        ])
        .prop_map(str::to_string),
        "[A-Z]{1,8}",
    ];
    let prefix = prop::sample::select(vec!["/20160918", "/n", "/_emulator", ""]);
    prop_oneof![
        3 => (prop::sample::select(routes), "[A-Za-z0-9._~%-]{1,40}")
            .prop_map(|((method, route), id)| (method.to_string(), route.replace("{id}", &id))),
        1 => (method, prefix, prop::collection::vec(segment(), 0..6))
            .prop_map(|(method, prefix, segs)| (method, format!("{prefix}/{}", segs.join("/")))),
    ]
}

fn request(emu: &RunningEmulator) -> impl Strategy<Value = Fuzzed> {
    (
        method_and_path(emu),
        query(),
        prop::collection::vec(header(), 0..6),
        body(),
    )
        .prop_map(|((method, path), query, headers, body)| {
            // A route's own query (`?action=STOP`) is kept; more pairs follow it.
            let query = match (path.contains('?'), query.strip_prefix('?')) {
                (true, Some(q)) => format!("&{q}"),
                _ => query,
            };
            Fuzzed {
                method,
                target: format!("{path}{query}"),
                headers,
                body,
            }
        })
}

/// Send raw bytes on a new connection and read the whole answer (`Connection: close`): the
/// status, or `None` when the connection ended without one.
async fn exchange(addr: SocketAddr, req: &Fuzzed) -> Option<u16> {
    let mut bytes = format!(
        "{} {} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        req.method,
        req.target,
        req.body.len()
    )
    .into_bytes();
    for (k, v) in &req.headers {
        bytes.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(&req.body);
    let talk = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        // The server may answer (and close) before reading a body it does not want.
        let _ = s.write_all(&bytes).await;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
        let text = String::from_utf8_lossy(&answer);
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    };
    tokio::time::timeout(ANSWER_WITHIN, talk)
        .await
        .expect("the emulator answers")
}

/// A well-formed request still works.
async fn still_serves(emu: &RunningEmulator) {
    support::client(emu)
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .expect("the emulator still serves a well-formed request");
}

#[test]
fn generated_requests_never_panic_the_emulator() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt.block_on(support::start(support::config(0.0)));
    let addr = emu.addr();
    runner()
        .run(&request(&emu), |req| {
            let status = rt.block_on(exchange(addr, &req));
            match status {
                Some(s) if s < 500 => Ok(()),
                other => Err(TestCaseError::fail(format!("answer {other:?}"))),
            }
        })
        .unwrap();
    rt.block_on(still_serves(&emu));
}

/// A signed request: one of the Compute routes, with a random body or query.
#[derive(Clone, Debug)]
struct SignedCase {
    method: &'static str,
    path_and_query: String,
    body: Vec<u8>,
    retry_token: Option<String>,
}

fn signed_case(emu: &RunningEmulator, instance: &str, image: &str) -> BoxedStrategy<SignedCase> {
    let ids = prop::sample::select(vec![
        instance.to_string(),
        image.to_string(),
        "ocid1.instance.oc1.iad.aaaanope".to_string(),
        "x".to_string(),
    ]);
    let with_body = prop::sample::select(vec![
        ("POST", "/20160918/instances"),
        ("PUT", "/20160918/instances/{id}"),
        ("POST", "/20160918/instances/{id}/actions/changeCompartment"),
        ("POST", "/20160918/images"),
        ("PUT", "/20160918/images/{id}"),
        ("POST", "/20160918/images/{id}/actions/changeCompartment"),
    ]);
    let bodies = prop_oneof![body(), near_valid_launch(emu)];
    let retry = prop::option::of("[a-z0-9]{1,70}");
    let posts = (with_body, ids.clone(), bodies, retry.clone()).prop_map(
        |((method, path), id, body, retry_token)| SignedCase {
            method,
            path_and_query: path.replace("{id}", &id),
            body,
            retry_token,
        },
    );
    let actions = (ids.clone(), query(), retry).prop_map(|(id, q, retry_token)| SignedCase {
        method: "POST",
        path_and_query: format!(
            "/20160918/instances/{id}{}",
            if q.is_empty() {
                "?action=STOP".into()
            } else {
                q
            }
        ),
        body: Vec::new(),
        retry_token,
    });
    let reads = (
        prop::sample::select(vec![
            ("GET", "/20160918/instances"),
            ("GET", "/20160918/images"),
            ("GET", "/20160918/subnets"),
            ("GET", "/20160918/vcns"),
            ("GET", "/20160918/vnicAttachments"),
            ("GET", "/20160918/workRequests"),
            ("GET", "/20160918/instances/{id}"),
            ("GET", "/20160918/images/{id}"),
            ("GET", "/20160918/vnics/{id}"),
            ("GET", "/20160918/workRequests/{id}/errors"),
            ("DELETE", "/20160918/images/{id}"),
        ]),
        ids,
        query(),
    )
        .prop_map(|((method, path), id, q)| SignedCase {
            method,
            path_and_query: format!("{}{q}", path.replace("{id}", &id)),
            body: Vec::new(),
            retry_token: None,
        });
    prop_oneof![6 => posts, 1 => actions, 2 => reads].boxed()
}

async fn send_signed(
    http: &reqwest::Client,
    emu: &RunningEmulator,
    case: &SignedCase,
) -> Result<u16, String> {
    let host = emu.addr().to_string();
    let signed = signer::sign(
        &support::signing_key(),
        &RequestParts {
            method: case.method,
            path_and_query: &case.path_and_query,
            host: &host,
            date: &signer::http_date_now(),
            body: &case.body,
            content_type: "application/json",
            exclude_body: false,
        },
    );
    let mut req = http.request(
        case.method.parse().unwrap(),
        format!("{}{}", emu.url(), case.path_and_query),
    );
    for (k, v) in &signed.headers {
        req = req.header(*k, v);
    }
    if let Some(t) = &case.retry_token {
        req = req.header("opc-retry-token", t);
    }
    if matches!(case.method, "POST" | "PUT") {
        req = req.body(case.body.clone());
    }
    let resp = tokio::time::timeout(ANSWER_WITHIN, req.send())
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| format!("connection failed (a panic drops it): {e}"))?;
    Ok(resp.status().as_u16())
}

#[test]
fn signed_requests_with_random_bodies_never_panic_the_emulator() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt.block_on(support::start(support::config(0.0)));
    // Real ids, so that updates and actions reach their handlers.
    let (instance, image) = rt.block_on(async {
        let c = support::client(&emu);
        let i = c
            .launch_instance(
                &support::launch_details(&emu, "fuzz"),
                &kiln::oci::MutationOptions::default(),
            )
            .await
            .unwrap();
        (i.body.id, emu.fixtures().platform_images[0].id.clone())
    });
    let http = reqwest::Client::new();
    runner()
        .run(&signed_case(&emu, &instance, &image), |case| {
            match rt.block_on(send_signed(&http, &emu, &case)) {
                Ok(s) if s < 500 => Ok(()),
                Ok(s) => Err(TestCaseError::fail(format!("status {s}"))),
                Err(e) => Err(TestCaseError::fail(e)),
            }
        })
        .unwrap();
    rt.block_on(still_serves(&emu));
}
