//! The emulator's auth service verifies an instance certificate's chain as OCI's does before it
//! trades it for a token: every issuer is a CA (BasicConstraints CA:true) allowed to sign
//! certificates (KeyUsage keyCertSign), path lengths hold, every certificate — the trusted root
//! included — is valid on the emulator's clock, and the leaf names its tenancy and instance.
//! Each refusal is driven through kiln's own instance principal (`InstancePrincipal::new`, a
//! metadata server serving the chain), and each was accepted before the chain was verified.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use kiln::emulator::{EmulatorConfig, RunningEmulator};
use kiln::oci::auth::instance::{Endpoints, InstancePrincipal};
use kiln::oci::auth::Credentials;
use kiln::oci::net::Network;
use kiln::oci::Client;
use rsa::pkcs8::LineEnding;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use sha2::Sha256;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::certificate::TbsCertificate;
use x509_cert::der::asn1::{BitString, OctetString};
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::{Encode, EncodePem};
use x509_cert::ext::pkix::{KeyUsage, KeyUsages};
use x509_cert::name::Name;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use crate::auth::{
    federating, fixture_key, imds_serving, list, metadata_server, new_key, options, pki, serial,
    spki, stat,
};
use crate::support::{self, COMPARTMENT, TENANCY};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const INSTANCE: &str = "ocid1.instance.oc1.iad.aaaaaaaakilnchain";
const OTHER_INSTANCE: &str = "ocid1.instance.oc1.iad.aaaaaaaakilnforged";

/// A certificate authority of a test: its key, name and certificate.
struct Ca {
    key: RsaPrivateKey,
    name: Name,
    cert: Certificate,
}

fn sign_with(key: &RsaPrivateKey) -> rsa::pkcs1v15::SigningKey<Sha256> {
    rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone())
}

/// A validity from `now + from` to `now + to` (either may be in the past).
fn validity(from: i64, to: i64) -> Validity {
    let at = |secs: i64| {
        let t = if secs < 0 {
            SystemTime::now() - Duration::from_secs(secs.unsigned_abs())
        } else {
            SystemTime::now() + Duration::from_secs(secs as u64)
        };
        Time::try_from(t).unwrap()
    };
    Validity {
        not_before: at(from),
        not_after: at(to),
    }
}

fn root(cn: &str, valid: Validity) -> Ca {
    let key = new_key();
    let name = Name::from_str(&format!("CN={cn},O=kiln tests")).unwrap();
    let cert = CertificateBuilder::new(
        Profile::Root,
        serial(),
        valid,
        name.clone(),
        spki(&key),
        &sign_with(&key),
    )
    .unwrap()
    .build::<rsa::pkcs1v15::Signature>()
    .unwrap();
    Ca { key, name, cert }
}

fn sub_ca(issuer: &Ca, cn: &str, path_len: Option<u8>) -> Ca {
    let key = new_key();
    let name = Name::from_str(&format!("CN={cn},O=kiln tests")).unwrap();
    let cert = CertificateBuilder::new(
        Profile::SubCA {
            issuer: issuer.name.clone(),
            path_len_constraint: path_len,
        },
        serial(),
        Validity::from_now(10 * DAY).unwrap(),
        name.clone(),
        spki(&key),
        &sign_with(&issuer.key),
    )
    .unwrap()
    .build::<rsa::pkcs1v15::Signature>()
    .unwrap();
    Ca { key, name, cert }
}

/// The test binary's intermediate CA (pathLenConstraint 0, under the root the emulator trusts).
fn test_intermediate() -> Ca {
    let pki = pki();
    Ca {
        key: pki.inter_key.clone(),
        name: pki.inter_name.clone(),
        cert: pem_cert(&pki.inter_pem),
    }
}

fn pem_cert(pem: &str) -> Certificate {
    use x509_cert::der::DecodePem;
    Certificate::from_pem(pem.as_bytes()).unwrap()
}

/// The subject of an instance certificate as OCI writes it.
fn instance_subject(instance: &str) -> String {
    format!(
        "CN={instance},OU=opc-certtype:instance,OU=opc-compartment:{COMPARTMENT},OU=opc-instance:{instance},OU=opc-tenant:{TENANCY}"
    )
}

/// An end-entity certificate (BasicConstraints CA:false) for `key`, signed by `issuer`.
fn leaf(
    issuer_name: &Name,
    issuer_key: &RsaPrivateKey,
    subject: &str,
    key: &RsaPrivateKey,
) -> Certificate {
    CertificateBuilder::new(
        Profile::Leaf {
            issuer: issuer_name.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        serial(),
        Validity::from_now(10 * DAY).unwrap(),
        Name::from_str(subject).unwrap(),
        spki(key),
        &sign_with(issuer_key),
    )
    .unwrap()
    .build::<rsa::pkcs1v15::Signature>()
    .unwrap()
}

/// `cert` edited, then signed again by `issuer_key` (the builder cannot leave out an extension).
fn resign(
    mut cert: Certificate,
    issuer_key: &RsaPrivateKey,
    edit: impl FnOnce(&mut TbsCertificate),
) -> Certificate {
    edit(&mut cert.tbs_certificate);
    let tbs = cert.tbs_certificate.to_der().unwrap();
    let signature = sign_with(issuer_key).sign(&tbs);
    cert.signature = BitString::from_bytes(&signature.to_bytes()).unwrap();
    cert
}

fn pem(certs: &[&Certificate]) -> String {
    certs
        .iter()
        .map(|c| c.to_pem(LineEnding::LF).unwrap())
        .collect()
}

/// An emulator trusting the test root and `extra` roots for instance certificates.
async fn emulator(extra: &[&Ca]) -> RunningEmulator {
    let mut config: EmulatorConfig = federating(HOUR);
    for ca in extra {
        config
            .trusted_instance_cas
            .push(ca.cert.to_pem(LineEnding::LF).unwrap());
    }
    support::start(config).await
}

/// Federate as an instance whose metadata service serves `leaf` (for `key`) and
/// `intermediates`; on success, list instances with the token to prove it works.
async fn federate(
    emu: &RunningEmulator,
    key: &RsaPrivateKey,
    leaf: &Certificate,
    intermediates: &[&Certificate],
) -> Result<(), String> {
    let imds = imds_serving(key, pem(&[leaf]));
    imds.lock().unwrap().intermediate = pem(intermediates);
    let endpoints = Endpoints {
        metadata: metadata_server(imds).await,
        auth_override: Some(emu.url()),
    };
    let ip = InstancePrincipal::new(endpoints, &Network::default())
        .await
        .map_err(|e| e.to_string())?;
    let client = Client::with_credentials(Credentials::instance(ip), options(&emu.url()));
    client
        .list_instances(&list())
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[track_caller]
fn assert_refused(result: Result<(), String>, reason: &str) {
    match result {
        Ok(()) => panic!("federated and listed instances; expected a refusal naming `{reason}`"),
        Err(e) => {
            assert!(e.contains("401 NotAuthenticated"), "{e}");
            assert!(e.contains(reason), "`{reason}` not in: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_certificate_cannot_sign_a_certificate_for_another_instance() {
    let emu = emulator(&[]).await;
    let inter = test_intermediate();
    // A genuine instance certificate (CA:false) and its key, as any instance can read them.
    let genuine_key = fixture_key("pkcs8.pem", None);
    let genuine = leaf(
        &inter.name,
        &inter.key,
        &instance_subject(INSTANCE),
        &genuine_key,
    );
    federate(&emu, &genuine_key, &genuine, &[&inter.cert])
        .await
        .expect("the genuine certificate federates");
    // It signs a certificate naming another instance.
    let forged_key = fixture_key("pkcs8-encrypted.pem", Some("kiln-test-pass"));
    let forged = leaf(
        &genuine.tbs_certificate.subject,
        &genuine_key,
        &instance_subject(OTHER_INSTANCE),
        &forged_key,
    );
    assert_refused(
        federate(&emu, &forged_key, &forged, &[&genuine, &inter.cert]).await,
        "is not a CA",
    );
    assert_eq!(stat(&emu, "X509Federation"), 2);
    assert_eq!(stat(&emu, "errors.X509Federation"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_without_key_cert_sign_cannot_sign() {
    let emu = emulator(&[]).await;
    let pki = pki();
    let root = Ca {
        key: pki.root_key.clone(),
        name: pki.root_name.clone(),
        cert: pem_cert(&pki.root_pem),
    };
    // A CA (CA:true) whose key usage is only digitalSignature.
    let mut ca = sub_ca(&root, "kiln test CA without keyCertSign", None);
    ca.cert = resign(ca.cert, &root.key, |tbs| {
        let ext = tbs
            .extensions
            .as_mut()
            .unwrap()
            .iter_mut()
            .find(|e| e.extn_id == KeyUsage::OID)
            .unwrap();
        ext.extn_value = OctetString::new(
            KeyUsage(KeyUsages::DigitalSignature.into())
                .to_der()
                .unwrap(),
        )
        .unwrap();
    });
    let key = fixture_key("pkcs8.pem", None);
    let cert = leaf(&ca.name, &ca.key, &instance_subject(INSTANCE), &key);
    assert_refused(
        federate(&emu, &key, &cert, &[&ca.cert]).await,
        "keyCertSign",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_longer_than_an_issuers_path_len_constraint_is_refused() {
    let emu = emulator(&[]).await;
    // The test intermediate allows no CA below it (pathLenConstraint 0).
    let inter = test_intermediate();
    let below = sub_ca(&inter, "kiln test CA below a pathLen 0", None);
    let key = fixture_key("pkcs8.pem", None);
    let cert = leaf(&below.name, &below.key, &instance_subject(INSTANCE), &key);
    assert_refused(
        federate(&emu, &key, &cert, &[&below.cert, &inter.cert]).await,
        "pathLenConstraint",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_not_yet_valid_trusted_root_is_refused() {
    // One root valid from an hour ago for two hours; one valid only from tomorrow.
    let expiring = root("kiln test root expiring", validity(-3600, 2 * 3600));
    let future = root(
        "kiln test root of tomorrow",
        validity(24 * 3600, 30 * 24 * 3600),
    );
    let emu = emulator(&[&expiring, &future]).await;
    let key = fixture_key("pkcs8.pem", None);

    let early_ca = sub_ca(&future, "kiln test CA under tomorrow's root", Some(0));
    let early = leaf(
        &early_ca.name,
        &early_ca.key,
        &instance_subject(INSTANCE),
        &key,
    );
    assert_refused(
        federate(&emu, &key, &early, &[&early_ca.cert]).await,
        "not valid",
    );

    let ca = sub_ca(&expiring, "kiln test CA under an expiring root", Some(0));
    let cert = leaf(&ca.name, &ca.key, &instance_subject(INSTANCE), &key);
    federate(&emu, &key, &cert, &[&ca.cert])
        .await
        .expect("valid now");
    // Three hours later (on the emulator's clock) the root has expired; the rest has not.
    emu.advance_token_clock(3 * HOUR);
    assert_refused(federate(&emu, &key, &cert, &[&ca.cert]).await, "not valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proper_chain_is_accepted_and_its_leaf_must_name_the_instance() {
    let emu = emulator(&[]).await;
    let pki = pki();
    let root = Ca {
        key: pki.root_key.clone(),
        name: pki.root_name.clone(),
        cert: pem_cert(&pki.root_pem),
    };
    // Two intermediates, each within its issuer's path length.
    let upper = sub_ca(&root, "kiln test upper CA", Some(1));
    let lower = sub_ca(&upper, "kiln test lower CA", Some(0));
    let key = fixture_key("pkcs8.pem", None);
    let cert = leaf(&lower.name, &lower.key, &instance_subject(INSTANCE), &key);
    federate(&emu, &key, &cert, &[&lower.cert, &upper.cert])
        .await
        .expect("a proper chain federates");

    // The same chain, but the leaf names a tenancy and no instance.
    let nameless = leaf(
        &lower.name,
        &lower.key,
        &format!("CN=somebody,OU=opc-tenant:{TENANCY}"),
        &key,
    );
    assert_refused(
        federate(&emu, &key, &nameless, &[&lower.cert, &upper.cert]).await,
        "names no instance",
    );
}
