//! The emulator's Object Storage subset through kiln's client: conditional writes, 404s, HEAD,
//! listing with prefix and pages, persistence across restarts.

use kiln::oci::client::Call;
use kiln::oci::object_storage::{ObjectStorage, Precondition};
use reqwest::Method;
use serde_json::Value;

use crate::support;

const NS: &str = "kilnemulator";
const BUCKET: &str = "kiln-state";

async fn put(
    os: &ObjectStorage,
    name: &str,
    body: &[u8],
    precondition: Precondition,
) -> Result<String, kiln::oci::OciError> {
    os.put_object(
        NS,
        BUCKET,
        name,
        body.to_vec(),
        "application/json",
        &precondition,
    )
    .await
}

#[tokio::test]
async fn conditional_writes_reads_deletes_and_missing_things() {
    let emu = support::start(support::config(0.0)).await;
    let os = ObjectStorage::new(support::client(&emu));
    assert_eq!(os.get_namespace().await.unwrap(), NS);
    let b = os.get_bucket(NS, BUCKET).await.unwrap();
    assert_eq!((b.namespace.as_str(), b.name.as_str()), (NS, BUCKET));

    let name = "team a/prod.json";
    assert_eq!(os.get_object(NS, BUCKET, name).await.unwrap(), None);
    assert_eq!(os.head_object(NS, BUCKET, name).await.unwrap(), None);
    let e1 = put(&os, name, b"one", Precondition::IfAbsent)
        .await
        .unwrap();
    let again = put(&os, name, b"two", Precondition::IfAbsent)
        .await
        .unwrap_err();
    assert!(again.is_precondition_failed(), "{again}");
    assert_eq!(again.code, "IfNoneMatchFailed");
    let got = os.get_object(NS, BUCKET, name).await.unwrap().unwrap();
    assert_eq!(
        (got.body.as_slice(), got.etag.as_str()),
        (&b"one"[..], e1.as_str())
    );
    assert_eq!(
        os.head_object(NS, BUCKET, name).await.unwrap(),
        Some(e1.clone())
    );

    // If-Match: a stale etag is refused and changes nothing; the current one wins, with a new etag.
    let stale = put(&os, name, b"x", Precondition::IfMatch("stale".into()))
        .await
        .unwrap_err();
    assert_eq!(
        (stale.status, stale.code.as_str()),
        (Some(412), "IfMatchFailed")
    );
    let e2 = put(&os, name, b"two", Precondition::IfMatch(e1.clone()))
        .await
        .unwrap();
    assert_ne!(e1, e2);
    let lost = put(&os, name, b"three", Precondition::IfMatch(e1.clone()))
        .await
        .unwrap_err();
    assert!(
        lost.is_precondition_failed(),
        "a second writer with the old etag loses"
    );
    assert_eq!(
        os.get_object(NS, BUCKET, name).await.unwrap().unwrap().body,
        b"two"
    );

    // Delete with If-Match.
    let wrong = os
        .delete_object(NS, BUCKET, name, Some(&e1))
        .await
        .unwrap_err();
    assert!(wrong.is_precondition_failed());
    assert!(os.delete_object(NS, BUCKET, name, Some(&e2)).await.unwrap());
    assert!(!os.delete_object(NS, BUCKET, name, None).await.unwrap());

    // A missing bucket or namespace is an error with its code, not "no object".
    let e = os.get_object(NS, "nope", "x").await.unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (Some(404), "BucketNotFound"));
    let e = os.get_bucket("other", BUCKET).await.unwrap_err();
    assert_eq!(e.code, "BucketNotFound");
    let stats = emu.stats();
    for op in [
        "GetNamespace",
        "GetBucket",
        "GetObject",
        "HeadObject",
        "PutObject",
        "DeleteObject",
    ] {
        assert!(
            stats.get(op).copied().unwrap_or(0) > 0,
            "{op} counted: {stats:?}"
        );
    }
}

#[tokio::test]
async fn listing_filters_by_prefix_and_pages() {
    let emu = support::start(support::config(0.0)).await;
    let client = support::client(&emu);
    let os = ObjectStorage::new(client.clone());
    for n in ["a/1.json", "a/2.json", "a/3.json", "b/1.json"] {
        os.put_object(
            NS,
            BUCKET,
            n,
            n.as_bytes().to_vec(),
            "text/plain",
            &Precondition::None,
        )
        .await
        .unwrap();
    }
    let names: Vec<String> = os
        .list_objects(NS, BUCKET, "a/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["a/1.json", "a/2.json", "a/3.json"]);
    let page = |start: Option<&str>| {
        let call = Call::new("ListObjects", Method::GET, format!("/n/{NS}/b/{BUCKET}/o"))
            .unversioned()
            .query("limit", Some(2))
            .query("start", start);
        let client = client.clone();
        async move { client.send_json::<Value>(call).await.unwrap().body }
    };
    let first = page(None).await;
    assert_eq!(first["objects"].as_array().unwrap().len(), 2);
    assert_eq!(
        first["objects"][0],
        serde_json::json!({"name": "a/1.json"}),
        "only names unless `fields`"
    );
    let next = first["nextStartWith"].as_str().unwrap().to_string();
    assert_eq!(next, "a/3.json");
    let second = page(Some(&next)).await;
    assert_eq!(second["objects"][1]["name"], "b/1.json");
    assert!(second.get("nextStartWith").is_none(), "{second}");
}

#[tokio::test]
async fn objects_and_etags_survive_a_restart_with_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || kiln::emulator::EmulatorConfig {
        data_file: Some(dir.path().join("data.json")),
        ..support::config(0.0)
    };
    let emu = support::start(cfg()).await;
    let os = ObjectStorage::new(support::client(&emu));
    let etag = put(&os, "s.json", b"{}", Precondition::IfAbsent)
        .await
        .unwrap();
    emu.shutdown().await;
    let emu = support::start(cfg()).await;
    let os = ObjectStorage::new(support::client(&emu));
    let got = os.get_object(NS, BUCKET, "s.json").await.unwrap().unwrap();
    assert_eq!((got.body.as_slice(), got.etag), (&b"{}"[..], etag));
}
