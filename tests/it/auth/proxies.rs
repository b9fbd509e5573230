//! Proxies: `HTTP(S)_PROXY` carries every request unless `NO_PROXY` says otherwise; HTTPS through
//! a CONNECT proxy to an endpoint trusted by a CA bundle.

use super::*;

use std::sync::atomic::Ordering;

use crate::support::{self, Project};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_carries_every_request_unless_no_proxy_says_otherwise() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    let (proxy, log) = proxy_server().await;
    let proxy_url = format!("http://{proxy}");
    let out = support::run_kiln_env(
        p.path(),
        &["apply", "--auto-approve"],
        &[("HTTP_PROXY", proxy_url.as_str())],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let through = log.forwarded.load(Ordering::SeqCst);
    assert!(through > 0);
    assert_eq!(
        through,
        stat(&p.emu, "total"),
        "every request went through the proxy"
    );
    let out = support::run_kiln_env(
        p.path(),
        &["plan", "--detailed-exitcode"],
        &[
            ("http_proxy", proxy_url.as_str()),
            ("NO_PROXY", "127.0.0.1"),
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        log.forwarded.load(Ordering::SeqCst),
        through,
        "NO_PROXY bypassed it"
    );
    assert!(stat(&p.emu, "total") > through);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_through_a_connect_proxy_to_an_endpoint_trusted_by_a_ca_bundle() {
    let p = Project::new(support::config(0.0)).await;
    let (tls, sessions) = tls_forwarder(p.emu.addr()).await;
    let endpoint = format!("https://{tls}");
    let header = p.header().replace(
        &format!("endpoint = \"{}\"", p.emu.url()),
        &format!("endpoint = \"{endpoint}\""),
    );
    write_manifest(&p, &header, "[instance.web]\n");
    let root = p.path().join("corporate-root.pem");
    std::fs::write(&root, &pki().root_pem).unwrap();

    // The built-in roots do not know the test CA: refused at once, not retried for minutes.
    let out = support::run_kiln(p.path(), &["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("certificate"), "{out:?}");
    assert!(!out.stderr.contains("after 2 attempts"), "{out:?}");

    // OCI_DEFAULT_CERTS_PATH, through an HTTPS_PROXY: a CONNECT tunnel, TLS inside it.
    let (proxy, log) = proxy_server().await;
    let (root_s, proxy_url) = (root.display().to_string(), format!("http://{proxy}"));
    let out = support::run_kiln_env(
        p.path(),
        &["apply", "--auto-approve"],
        &[
            ("OCI_DEFAULT_CERTS_PATH", root_s.as_str()),
            ("HTTPS_PROXY", proxy_url.as_str()),
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let connects = log.connects.lock().unwrap().clone();
    assert!(!connects.is_empty());
    assert!(
        connects.iter().all(|c| *c == tls.to_string()),
        "{connects:?}"
    );
    assert_eq!(log.forwarded.load(Ordering::SeqCst), 0);
    assert!(sessions.load(Ordering::SeqCst) >= connects.len() as u64);
    assert_eq!(p.live_instances().await.len(), 1);

    // `[provider] ca_bundle`, relative to the manifest directory, direct.
    write_manifest(
        &p,
        &header.replacen(
            "[provider]\n",
            "[provider]\nca_bundle = \"corporate-root.pem\"\n",
            1,
        ),
        "[instance.web]\n",
    );
    let before = connects.len();
    let sessions_before = sessions.load(Ordering::SeqCst);
    let out = support::run_kiln(p.path(), &["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(log.connects.lock().unwrap().len(), before);
    assert!(
        sessions.load(Ordering::SeqCst) > sessions_before,
        "the plan read over TLS"
    );
}
