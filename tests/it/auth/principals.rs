//! Resource principals (inline and from files, re-read after a 401, a missing variable
//! explained) and instance principals (the metadata service, renewal with rotated certificates).

use super::*;

use std::time::Duration;

use kiln::oci::auth::instance::{Endpoints, InstancePrincipal};
use kiln::oci::auth::resource::{ResourcePrincipal, Settings};
use kiln::oci::auth::Credentials;
use kiln::oci::net::Network;
use kiln::oci::{Client, ErrorKind};

use crate::support::{self, key_path, Project, TENANCY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_principal_from_its_environment_drives_plan_and_apply_inline_and_from_files() {
    let p = Project::new(support::config(0.0)).await;
    // Inline: the token and the PEM in the variables themselves; the manifest chooses the method.
    let key = fixture_key("pkcs8.pem", None);
    let rpst = p
        .emu
        .issue_token(&resource_principal(), &key.to_public_key(), HOUR);
    let pem = pem_of(&key);
    write_manifest(
        &p,
        &header_with(&p, "auth = \"resource_principal\"\n"),
        "[instance.web]\n",
    );
    let inline = [
        ("OCI_RESOURCE_PRINCIPAL_VERSION", "2.2"),
        ("OCI_RESOURCE_PRINCIPAL_RPST", rpst.as_str()),
        ("OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM", pem.as_str()),
        ("OCI_RESOURCE_PRINCIPAL_REGION", "iad"),
    ];
    let out = support::run_kiln_env(p.path(), &["apply", "--auto-approve"], &inline).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        created_by(&p, "web").await,
        "oracleidentitycloudservice/ocid1.devopsbuildpipeline.oc1.iad.aaaaaaaakilnbuild",
        "the emulator knew the request came from the resource principal"
    );
    // `-v` logs every request, and nothing secret.
    let out =
        support::run_kiln_env(p.path(), &["plan", "-v", "--detailed-exitcode"], &inline).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("ListInstances 200"), "{out:?}");
    assert_no_secrets(&out.stderr, &[&rpst, &pem[40..100]]);
    assert_no_secrets(&out.stdout, &[&rpst]);

    // Files (absolute paths), an encrypted key with its pass phrase in a file, and the method
    // from OCI_CLI_AUTH over a manifest that names none.
    let key2 = fixture_key("pkcs8-encrypted.pem", Some("kiln-test-pass"));
    let rpst2 = p
        .emu
        .issue_token(&resource_principal(), &key2.to_public_key(), HOUR);
    let secrets = tempfile::tempdir().unwrap();
    let (tf, kf, pf) = (
        secrets.path().join("rpst"),
        secrets.path().join("key.pem"),
        secrets.path().join("passphrase"),
    );
    std::fs::write(&tf, &rpst2).unwrap();
    std::fs::copy(key_path("pkcs8-encrypted.pem"), &kf).unwrap();
    std::fs::write(&pf, "kiln-test-pass").unwrap();
    write_manifest(&p, &p.header(), "[instance.web]\n[instance.db]\n");
    let (t, k, pp) = (
        tf.display().to_string(),
        kf.display().to_string(),
        pf.display().to_string(),
    );
    let files = [
        ("OCI_CLI_AUTH", "resource_principal"),
        ("OCI_RESOURCE_PRINCIPAL_VERSION", "2.2"),
        ("OCI_RESOURCE_PRINCIPAL_RPST", t.as_str()),
        ("OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM", k.as_str()),
        ("OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE", pp.as_str()),
        ("OCI_RESOURCE_PRINCIPAL_REGION", "us-ashburn-1"),
    ];
    let out = support::run_kiln_env(p.path(), &["apply", "--auto-approve"], &files).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(p.live_instances().await.len(), 2);
    // `--auth api_key` on the command line wins over OCI_CLI_AUTH: the profile's API key signs.
    let out = support::run_kiln_env(
        p.path(),
        &["plan", "--detailed-exitcode", "--auth", "api_key"],
        &files,
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("(profile DEFAULT)"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_principal_files_are_read_again_after_a_401_inline_values_are_not() {
    let emu = support::start(support::config(0.0)).await;
    let key = fixture_key("pkcs8.pem", None);
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("rpst");
    std::fs::write(
        &tf,
        emu.issue_token(&resource_principal(), &key.to_public_key(), HOUR),
    )
    .unwrap();
    let env = {
        let t = tf.display().to_string();
        let k = key_path("pkcs8.pem").display().to_string();
        move |v: &str| match v {
            "OCI_RESOURCE_PRINCIPAL_VERSION" => Some("2.2".to_string()),
            "OCI_RESOURCE_PRINCIPAL_RPST" => Some(t.clone()),
            "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM" => Some(k.clone()),
            _ => None,
        }
    };
    let rp = ResourcePrincipal::new(Settings::from_env(&env).unwrap()).unwrap();
    let client = Client::with_credentials(Credentials::resource(rp), options(&emu.url()));
    client.list_instances(&list()).await.unwrap();

    // The runtime replaces the token in its file; the old one expires on the emulator's clock.
    emu.advance_token_clock(2 * HOUR);
    std::fs::write(
        &tf,
        emu.issue_token(&resource_principal(), &key.to_public_key(), HOUR),
    )
    .unwrap();
    client.list_instances(&list()).await.unwrap();
    assert_eq!(stat(&emu, "errors.ListInstances"), 1, "{:?}", emu.stats());
    assert_eq!(stat(&emu, "ListInstances"), 3);

    // Inline, nothing can be read again: the 401 stands, and says what signed.
    let inline = emu.issue_token(&resource_principal(), &key.to_public_key(), HOUR);
    let pem = pem_of(&key);
    let env = move |v: &str| match v {
        "OCI_RESOURCE_PRINCIPAL_VERSION" => Some("2.2".to_string()),
        "OCI_RESOURCE_PRINCIPAL_RPST" => Some(inline.clone()),
        "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM" => Some(pem.clone()),
        _ => None,
    };
    let rp = ResourcePrincipal::new(Settings::from_env(&env).unwrap()).unwrap();
    let client = Client::with_credentials(Credentials::resource(rp), options(&emu.url()));
    client.list_instances(&list()).await.unwrap();
    emu.advance_token_clock(2 * HOUR);
    let e = client.list_instances(&list()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert_eq!(e.status, Some(401));
    assert!(e.message.contains("the security token expired at"), "{e}");
    assert!(
        e.help
            .as_deref()
            .unwrap_or("")
            .contains("auth: resource_principal"),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_resource_principal_variable_is_explained() {
    let p = Project::new(support::config(0.0)).await;
    p.write("[instance.web]\n");
    let out = support::run_kiln_env(
        p.path(),
        &["plan", "--auth", "resource_principal"],
        &[("OCI_RESOURCE_PRINCIPAL_VERSION", "2.2")],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    insta::assert_snapshot!(
        "missing_resource_principal_variable",
        support::scrub(&out.stderr, Some(&p))
    );
    assert_eq!(stat(&p.emu, "total"), 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_principal_through_the_metadata_service_drives_plan_and_apply() {
    let p = Project::new(federating(Duration::from_secs(1200))).await;
    let leaf_key = fixture_key("pkcs8.pem", None);
    let imds = imds_serving(&leaf_key, instance_cert(&leaf_key, HOUR));
    let metadata = metadata_server(imds.clone()).await;
    write_manifest(
        &p,
        &header_with(&p, "auth = \"instance_principal\"\n"),
        "[instance.web]\n",
    );
    let emu_url = p.emu.url();
    let env = [
        ("OCI_METADATA_BASE_URL", metadata.as_str()),
        ("OCI_SDK_AUTH_CLIENT_REGION_URL", emu_url.as_str()),
    ];
    let out = support::run_kiln_env(p.path(), &["apply", "-v", "--auto-approve"], &env).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("auth: instance_principal"), "{out:?}");
    assert_no_secrets(&out.stderr, &[]);
    assert_eq!(stat(&p.emu, "X509Federation"), 1);
    assert_eq!(stat(&p.emu, "errors.X509Federation"), 0);
    assert_eq!(
        created_by(&p, "web").await,
        format!("oracleidentitycloudservice/{INSTANCE}")
    );
    let s = imds.lock().unwrap();
    assert_eq!(
        s.unauthorized, 0,
        "every metadata request said `Bearer Oracle`"
    );
    assert_eq!(s.hits.get("/opc/v2/instance/region"), Some(&1));
    assert_eq!(s.hits.get("/opc/v2/identity/cert.pem"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_instance_token_is_renewed_with_rotated_certificates() {
    let emu = support::start(federating(Duration::from_secs(1200))).await;
    let key1 = fixture_key("pkcs8.pem", None);
    let imds = imds_serving(&key1, instance_cert(&key1, HOUR));
    let endpoints = Endpoints {
        metadata: metadata_server(imds.clone()).await,
        auth_override: Some(emu.url()),
    };
    let ip = InstancePrincipal::new(endpoints, &Network::default())
        .await
        .unwrap();
    assert_eq!(ip.region(), "us-ashburn-1");
    assert_eq!(ip.tenancy(), TENANCY);
    let client = Client::with_credentials(Credentials::instance(ip), options(&emu.url()));
    client.list_instances(&list()).await.unwrap();
    assert_eq!(stat(&emu, "X509Federation"), 1);

    // OCI rotates the instance's certificate and key; two hours later the token and the old
    // certificate have both expired (on the emulator's token clock). The 401 makes kiln read the
    // certificates again and federate with the new ones, then repeat the request once.
    let key2 = fixture_key("pkcs8-encrypted.pem", Some("kiln-test-pass"));
    {
        let mut s = imds.lock().unwrap();
        s.cert = instance_cert(&key2, 24 * HOUR);
        s.key = pem_of(&key2);
    }
    emu.advance_token_clock(2 * HOUR);
    client.list_instances(&list()).await.unwrap();
    assert_eq!(stat(&emu, "errors.ListInstances"), 1, "{:?}", emu.stats());
    assert_eq!(stat(&emu, "X509Federation"), 2);
    assert_eq!(
        stat(&emu, "errors.X509Federation"),
        0,
        "the old certificate was not used again"
    );
    assert_eq!(
        imds.lock().unwrap().hits.get("/opc/v2/identity/cert.pem"),
        Some(&2)
    );

    // A certificate the auth service does not trust: no token, and the 401 names the method.
    {
        let mut s = imds.lock().unwrap();
        s.cert = untrusted_instance_cert(&key1);
        s.key = pem_of(&key1);
    }
    emu.advance_token_clock(2 * HOUR);
    let e = client.list_instances(&list()).await.unwrap_err();
    assert_eq!(e.status, Some(401), "{e}");
    assert!(
        e.help
            .as_deref()
            .unwrap_or("")
            .contains("auth: instance_principal"),
        "{e:?}"
    );
    assert_eq!(stat(&emu, "errors.X509Federation"), 1);
}
