//! Request signing cost: RSA-SHA256 signatures per second with the `rsa` crate (how kiln signed
//! before) and with ring (how it signs now, for keys ring takes), on the 2,048-bit test key, and
//! kiln's whole signer per request (signing string, body hash, signature, header). Both
//! implementations are checked to give the same bytes. Prints a markdown table.
//! `cargo bench --bench signing [-- N]` (N signatures per row, default 2,000).

// Tests and benchmarks print their own logs and tables (the printing door is the CLI's).
#![allow(clippy::disallowed_macros)]

use std::time::Instant;

use kiln::oci::keys::{load_private_key, SigningKey};
use kiln::oci::signer::{sign, RequestParts};

/// The table, measuring `n` signatures per row.
pub fn run(n: usize) -> String {
    let key_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/signing/keys/pkcs1.pem");
    let key = SigningKey::new(
        load_private_key(&key_file, None).expect("the test key loads"),
        "ocid1.tenancy.oc1..aaaatest/ocid1.user.oc1..aaaatest/f7:f0:c3:be:cc:84:ea:6c:21:0a:72:40:37:bb:0d:ed",
    );
    let message = b"date: Mon, 23 Nov 2026 00:00:00 GMT\n(request-target): get /20160918/instances/ocid1.instance.oc1.iad.aaaa\nhost: iaas.us-ashburn-1.oraclecloud.com";
    assert_eq!(
        key.sign(message),
        key.sign_with_rsa_crate(message),
        "ring and the rsa crate sign alike"
    );
    let rate = |f: &dyn Fn()| {
        f(); // warm-up (ring's key pair is made on first use)
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    let rsa_crate = rate(&|| {
        std::hint::black_box(key.sign_with_rsa_crate(message));
    });
    let ring = rate(&|| {
        std::hint::black_box(key.sign(message));
    });
    let body = br#"{"compartmentId":"ocid1.compartment.oc1..aaaa","displayName":"web"}"#;
    let whole = rate(&|| {
        std::hint::black_box(sign(
            &key,
            &RequestParts {
                method: "POST",
                path_and_query: "/20160918/instances",
                host: "iaas.us-ashburn-1.oraclecloud.com",
                date: "Mon, 23 Nov 2026 00:00:00 GMT",
                body,
                content_type: "application/json",
                exclude_body: false,
            },
        ));
    });
    let mut out = String::new();
    out += "| signer (2,048-bit key) | signatures per second | ms per signature |\n";
    out += "|---|---|---|\n";
    for (name, r) in [
        ("rsa crate 0.9 (before)", rsa_crate),
        ("ring 0.17", ring),
        ("kiln's request signer (ring), whole request", whole),
    ] {
        out += &format!("| {name} | {r:.0} | {:.3} |\n", 1000.0 / r);
    }
    out += &format!("\nring ÷ rsa crate: {:.1}×\n", ring / rsa_crate);
    out
}

#[allow(dead_code)]
fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    print!("{}", run(n));
}
