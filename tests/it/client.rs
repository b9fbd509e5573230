//! The OCI client against the emulator: config → signed requests, errors, waits.

use std::time::Duration;

use kiln::oci::config::ConfigFile;
use kiln::oci::{keys, Client, ClientOptions, MutationOptions};

use crate::support::{self, COMPARTMENT};

#[tokio::test]
async fn a_profile_from_a_config_file_talks_to_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::write(
        &cfg,
        format!(
            "[DEFAULT]\nuser={}\ntenancy={}\nregion=iad\n\n[enc]\nkey_file={}\nfingerprint=22:69:e2:d2:e4:22:0b:27:02:62:30:5b:2b:3f:df:73\npass_phrase=kiln-test-pass\n",
            support::USER,
            support::TENANCY,
            support::key_path("pkcs8-encrypted.pem").display()
        ),
    )
    .unwrap();
    let profile = ConfigFile::load(&cfg).unwrap().profile("enc").unwrap();
    let key = keys::load_signing_key(&profile).unwrap();
    let mut ecfg = support::config(0.0);
    ecfg.trusted_keys = vec![kiln::emulator::TrustedKey {
        key_id: key.key_id.clone(),
        public_key: key.key.to_public_key(),
    }];
    let emu = support::start(ecfg).await;
    let client = Client::new(key, ClientOptions::new(emu.url()));
    let launched = client
        .launch_instance(
            &support::launch_details(&emu, "cfg"),
            &MutationOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(launched.body.region, "iad");
    // An untrusted key is a 401 with the OCI error shape, not retried.
    let other = support::client_with(&emu, support::other_key());
    let e = other.get_instance(&launched.body.id).await.unwrap_err();
    assert_eq!(
        (e.status, e.code.as_str(), e.attempts),
        (Some(401), "NotAuthenticated", 1)
    );
    let shown = e.to_string();
    assert!(
        shown.starts_with("`GetInstance` on `ocid1.instance.oc1.iad."),
        "{shown}"
    );
    assert!(
        shown.contains("401 NotAuthenticated") && shown.contains("opc-request-id"),
        "{shown}"
    );
}

#[tokio::test]
async fn retries_give_up_within_bounds_and_connection_errors_are_transport_errors() {
    let mut opts = ClientOptions::new("http://127.0.0.1:9"); // discard port: nothing listens
    opts.retry = kiln::oci::RetryPolicy {
        max_attempts: 3,
        max_elapsed: Duration::from_secs(5),
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    let c = Client::new(support::signing_key(), opts);
    let e = c
        .get_instance("ocid1.instance.oc1.iad.x")
        .await
        .unwrap_err();
    assert_eq!(e.kind, kiln::oci::ErrorKind::Transport);
    assert_eq!(e.attempts, 3);

    // A permanent 5xx: bounded attempts.
    let mut cfg = support::config(0.0);
    cfg.fault_5xx = 1.0;
    let emu = support::start(cfg).await;
    let c = support::client(&emu);
    let e = c
        .list_instances(&kiln::oci::compute::ListInstances {
            compartment_id: COMPARTMENT.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.attempts, 8);
    assert!(matches!(e.status, Some(500 | 503)));
    assert_eq!(emu.stats()["ListInstances"], 8);
}

#[tokio::test]
async fn list_pages_stream_one_page_at_a_time() {
    use futures::StreamExt;
    let emu = support::start(support::config(0.0)).await;
    let c = support::client(&emu);
    for n in 0..5 {
        c.launch_instance(
            &support::launch_details(&emu, &format!("s{n}")),
            &MutationOptions::default(),
        )
        .await
        .unwrap();
    }
    let req = kiln::oci::compute::ListInstances {
        compartment_id: COMPARTMENT.into(),
        limit: Some(2),
        ..Default::default()
    };
    let pages: Vec<usize> = c
        .list_instances_pages(&req)
        .map(|p| p.unwrap().len())
        .collect()
        .await;
    assert_eq!(pages, vec![2, 2, 1]);
    assert_eq!(emu.stats()["ListInstances"], 3);
}
