//! The emulator's request bodies on the wire: the signature over the headers is checked before
//! any of the body is read, and a body is capped per service (413 beyond the cap). These talk
//! raw HTTP/1.1 over TCP, so a test can declare a body it never sends.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use kiln::emulator::{BodyLimits, RunningEmulator};
use kiln::oci::signer::{self, RequestParts};

use crate::support;

/// How long an answer may take. The server answers these requests at once; without the fixes it
/// would wait for a body that never comes, and this bound turns that hang into a failure.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);

const GIB: u64 = 1 << 30;

fn put_object_path(emu: &RunningEmulator) -> String {
    let f = emu.fixtures();
    format!("/n/{}/b/{}/o/big.json", f.namespace, f.bucket)
}

/// The request line and headers, signed by kiln's signer over `body` (PutObject without the body
/// headers, as Oracle's SDK signs it), plus `extra` headers.
fn signed_head(
    emu: &RunningEmulator,
    method: &str,
    path: &str,
    body: &[u8],
    exclude_body: bool,
    extra: &[(&str, String)],
) -> String {
    let host = emu.addr().to_string();
    let signed = signer::sign(
        &support::signing_key(),
        &RequestParts {
            method,
            path_and_query: path,
            host: &host,
            date: &signer::http_date_now(),
            body,
            content_type: "application/json",
            exclude_body,
        },
    );
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n");
    for (k, v) in signed.headers.iter().map(|(k, v)| (*k, v.clone())) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

fn unsigned_head(
    emu: &RunningEmulator,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", emu.addr());
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Parse `HTTP/1.1 STATUS …` + headers + a body of `content-length` bytes out of `buf`, once it
/// is all there.
fn parse_response(buf: &[u8]) -> Option<(u16, Value)> {
    let text = String::from_utf8_lossy(buf);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    (rest.len() >= len).then(|| {
        (
            status,
            serde_json::from_str(&rest[..len]).unwrap_or(Value::Null),
        )
    })
}

/// Read until a whole response is in, the connection ends, or [`ANSWER_WITHIN`] passes.
async fn read_response(rd: &mut (impl AsyncReadExt + Unpin)) -> (u16, Value) {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(r) = parse_response(&buf) {
                return Some(r);
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return parse_response(&buf),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(ANSWER_WITHIN, read)
        .await
        .expect("the emulator answers without waiting for the body")
        .expect("a whole HTTP response")
}

/// Send `head` and the first bytes of the body, never the rest, and read the answer.
async fn exchange(emu: &RunningEmulator, head: &str, body_prefix: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(emu.addr()).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body_prefix).await.unwrap();
    read_response(&mut s).await
}

#[tokio::test]
async fn an_oversized_declared_body_is_413_before_the_body_is_sent() {
    let emu = support::start(support::config(0.0)).await;
    let limits = BodyLimits::default();

    // Compute: a correctly signed launch whose signed length is one byte over the cap.
    let body = vec![b' '; limits.compute + 1];
    let head = signed_head(&emu, "POST", "/20160918/instances", &body, false, &[]);
    let (status, reply) = exchange(&emu, &head, &body[..16]).await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["code"], "RequestEntityTooLarge");

    // Object Storage: a signed PutObject declaring 1 GiB, of which 16 bytes are sent.
    let path = put_object_path(&emu);
    let head = signed_head(
        &emu,
        "PUT",
        &path,
        b"",
        true,
        &[("content-length", GIB.to_string())],
    );
    let (status, reply) = exchange(&emu, &head, &[b'{'; 16]).await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["code"], "RequestEntityTooLarge");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("67108864 bytes"),
        "{reply}"
    );

    // Nothing was stored, and the emulator still serves.
    let os = kiln::oci::object_storage::ObjectStorage::new(support::client(&emu));
    let f = emu.fixtures();
    assert!(os
        .get_object(&f.namespace, &f.bucket, "big.json")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn an_unauthenticated_large_body_is_401_before_the_body_is_read() {
    let emu = support::start(support::config(0.0)).await;
    let gib = GIB.to_string();
    let path = put_object_path(&emu);
    let forged = "Signature version=\"1\",headers=\"date (request-target) host\",keyId=\"ocid1.tenancy.oc1..aaaatest/ocid1.user.oc1..aaaatest/f7:f0:c3:be:cc:84:ea:6c:21:0a:72:40:37:bb:0d:ed\",algorithm=\"rsa-sha256\",signature=\"AAAA\"";
    let date = signer::http_date_now();
    let cases = [
        (
            "unsigned launch",
            unsigned_head(
                &emu,
                "POST",
                "/20160918/instances",
                &[("content-length", &gib)],
            ),
        ),
        (
            "unsigned PutObject",
            unsigned_head(&emu, "PUT", &path, &[("content-length", &gib)]),
        ),
        (
            "forged signature on a chunked PutObject",
            unsigned_head(
                &emu,
                "PUT",
                &path,
                &[
                    ("transfer-encoding", "chunked"),
                    ("date", &date),
                    ("authorization", forged),
                ],
            ),
        ),
    ];
    for (name, head) in cases {
        let (status, reply) = exchange(&emu, &head, b"10\r\n{{{{{{{{").await;
        assert_eq!(status, 401, "{name}: {reply}");
        assert_eq!(reply["code"], "NotAuthenticated", "{name}");
    }
}

#[tokio::test]
async fn a_chunked_body_is_read_only_up_to_the_cap() {
    let emu = support::start(kiln::emulator::EmulatorConfig {
        body_limits: BodyLimits {
            compute: 64 * 1024,
            object_storage: 64 * 1024,
        },
        ..support::config(0.0)
    })
    .await;
    let path = put_object_path(&emu);
    let head = signed_head(
        &emu,
        "PUT",
        &path,
        b"",
        true,
        &[("transfer-encoding", "chunked".to_string())],
    );

    // A chunked body under the cap is stored.
    let mut small = Vec::new();
    small.extend_from_slice(b"2\r\n{}\r\n0\r\n\r\n");
    let (status, reply) = exchange(&emu, &head, &small).await;
    assert_eq!(status, 200, "{reply}");

    // An endless one is cut off at the cap: the answer comes while the client is still sending.
    let s = TcpStream::connect(emu.addr()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        while wr.write_all(chunk.as_bytes()).await.is_ok() {}
    });
    let (status, reply) = read_response(&mut rd).await;
    writer.abort();
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["code"], "RequestEntityTooLarge");
}
