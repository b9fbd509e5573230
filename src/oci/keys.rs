//! API signing keys: PKCS#1 and PKCS#8 PEM, encrypted PKCS#8 with a pass phrase, the trailing
//! `OCI_API_KEY` label that `oci setup keys` appends, and OCI key fingerprints. Key and session
//! token files are read only if they are regular files within [`KEY_FILE_LIMIT`] and
//! [`SECURITY_TOKEN_LIMIT`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use md5::{Digest, Md5};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::{RsaPrivateKey, RsaPublicKey};

use super::config::{ConfigError, Profile};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum KeyError {
    #[error("cannot read `{path}`: {source}")]
    #[diagnostic(code(kiln::oci::key_unreadable))]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` holds no PEM private key (expected `-----BEGIN RSA PRIVATE KEY-----`, `-----BEGIN PRIVATE KEY-----` or `-----BEGIN ENCRYPTED PRIVATE KEY-----`)")]
    #[diagnostic(
        code(kiln::oci::key_not_pem),
        help("`key_file` must be the private key, not the public one")
    )]
    NotPem { path: PathBuf },
    #[error("`{path}` is an OpenSSL-encrypted PKCS#1 key, which kiln cannot read")]
    #[diagnostic(
        code(kiln::oci::key_legacy_encrypted),
        help("convert it to encrypted PKCS#8 (same pass phrase): `openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD.pem -out NEW.pem` and point `key_file` at NEW.pem")
    )]
    LegacyEncrypted { path: PathBuf },
    #[error("`{path}` is encrypted and no `pass_phrase` is configured")]
    #[diagnostic(
        code(kiln::oci::key_pass_phrase_missing),
        help("add `pass_phrase = ...` to the profile")
    )]
    PassPhraseMissing { path: PathBuf },
    #[error("the `pass_phrase` does not decrypt `{path}`")]
    #[diagnostic(
        code(kiln::oci::key_pass_phrase_wrong),
        help("check `pass_phrase` in the profile")
    )]
    PassPhraseWrong { path: PathBuf },
    #[error("`{path}` is not a valid RSA private key: {reason}")]
    #[diagnostic(code(kiln::oci::key_invalid))]
    Invalid { path: PathBuf, reason: String },
    #[error("`{path}` may be written by anyone: kiln does not sign with a key others can replace")]
    #[diagnostic(
        code(kiln::oci::key_world_writable),
        help("`chmod 600 {shown}` makes it yours alone (then check that it is still your key)")
    )]
    WorldWritable { path: PathBuf, shown: String },
}

/// The largest key file kiln reads (a 4096-bit RSA key in PEM is about 3.3 KB).
pub const KEY_FILE_LIMIT: u64 = 1024 * 1024;

/// The largest `security_token_file` kiln reads (a session token is a JWT of a few KB).
pub const SECURITY_TOKEN_LIMIT: u64 = 1024 * 1024;

/// The first PEM block of `text` (anything after its END line, such as `OCI_API_KEY`, is ignored).
fn pem_block(text: &str) -> Option<(String, &str)> {
    let start = text.find("-----BEGIN ")?;
    let label_end = text[start + 11..].find("-----")? + start + 11;
    let label = &text[start + 11..label_end];
    let end_marker = format!("-----END {label}-----");
    let end = text[start..].find(&end_marker)? + start + end_marker.len();
    Some((text[start..end].to_string(), &text[start + 11..label_end]))
}

/// Load an RSA private key from a PEM file.
pub fn load_private_key(path: &Path, pass_phrase: Option<&str>) -> Result<RsaPrivateKey, KeyError> {
    if super::perms::world_writable(path) {
        return Err(KeyError::WorldWritable {
            path: path.to_path_buf(),
            shown: path.display().to_string(),
        });
    }
    let text = crate::small_file::read_to_string(path, KEY_FILE_LIMIT).map_err(|e| {
        KeyError::Unreadable {
            path: path.to_path_buf(),
            source: e.into(),
        }
    })?;
    parse_private_key(path, &text, pass_phrase)
}

pub fn parse_private_key(
    path: &Path,
    text: &str,
    pass_phrase: Option<&str>,
) -> Result<RsaPrivateKey, KeyError> {
    let (pem, label) = pem_block(text).ok_or_else(|| KeyError::NotPem {
        path: path.to_path_buf(),
    })?;
    let invalid = |e: &dyn std::fmt::Display| KeyError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    match label {
        "RSA PRIVATE KEY" => {
            if pem.contains("Proc-Type: 4,ENCRYPTED") {
                return Err(KeyError::LegacyEncrypted {
                    path: path.to_path_buf(),
                });
            }
            RsaPrivateKey::from_pkcs1_pem(&pem).map_err(|e| invalid(&e))
        }
        "PRIVATE KEY" => RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| invalid(&e)),
        "ENCRYPTED PRIVATE KEY" => {
            let pass = pass_phrase.ok_or_else(|| KeyError::PassPhraseMissing {
                path: path.to_path_buf(),
            })?;
            RsaPrivateKey::from_pkcs8_encrypted_pem(&pem, pass.as_bytes()).map_err(|_| {
                KeyError::PassPhraseWrong {
                    path: path.to_path_buf(),
                }
            })
        }
        _ => Err(KeyError::NotPem {
            path: path.to_path_buf(),
        }),
    }
}

/// OCI's key fingerprint: MD5 of the DER SubjectPublicKeyInfo, lowercase hex pairs joined by `:`.
pub fn fingerprint(key: &RsaPublicKey) -> String {
    let der = key
        .to_public_key_der()
        .expect("an RSA public key always encodes");
    let digest = Md5::digest(der.as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// How requests are signed: the private key and the `keyId` of the Authorization header.
#[derive(Clone)]
pub struct SigningKey {
    pub key: RsaPrivateKey,
    /// `tenancy/user/fingerprint`, or `ST$<token>` for a session token.
    pub key_id: String,
    /// The same key for ring's RSA (made on first use; `None` when ring refuses it — it signs
    /// with keys of 2,048 to 8,192 bits): about four times the signatures per second of the `rsa`
    /// crate, byte for byte the same (PKCS#1 v1.5 is deterministic). BENCHMARKS.md, scenario 5.
    fast: Arc<OnceLock<Option<ring::signature::RsaKeyPair>>>,
}

impl SigningKey {
    pub fn new(key: RsaPrivateKey, key_id: impl Into<String>) -> SigningKey {
        SigningKey {
            key,
            key_id: key_id.into(),
            fast: Arc::default(),
        }
    }

    /// The RSASSA-PKCS1-v1_5 SHA-256 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let fast = self.fast.get_or_init(|| {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            let der = self.key.to_pkcs1_der().ok()?;
            ring::signature::RsaKeyPair::from_der(der.as_bytes()).ok()
        });
        match fast {
            Some(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    message,
                    &mut sig,
                )
                .expect("an RSA key pair ring accepted signs");
                sig
            }
            None => self.sign_with_rsa_crate(message),
        }
    }

    /// The same signature with the `rsa` crate (keys ring refuses; and the benchmark).
    pub fn sign_with_rsa_crate(&self, message: &[u8]) -> Vec<u8> {
        use rsa::signature::{SignatureEncoding, Signer};
        rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(self.key.clone())
            .sign(message)
            .to_vec()
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key; the keyId of a session token is a credential too.
        let shown = if self.key_id.starts_with("ST$") {
            "ST$***"
        } else {
            &self.key_id
        };
        f.debug_struct("SigningKey")
            .field("key_id", &shown)
            .finish_non_exhaustive()
    }
}

/// The profile's API key (`--auth api_key`): its `security_token_file`, if any, is not used (as
/// Oracle's CLI does without `--auth security_token`), so the profile needs a `user`.
pub fn load_api_key(profile: &Profile) -> Result<SigningKey, ConfigError> {
    if profile.user.is_none() {
        return Err(ConfigError::KeyMissing {
            path: profile.config_path.clone(),
            profile: profile.name.clone(),
            key: "user",
        });
    }
    let mut p = profile.clone();
    p.security_token_file = None;
    load_signing_key(&p)
}

/// Load the profile's key, check it matches the configured fingerprint, and build the keyId (a
/// session token's `ST$<token>` when the profile names a `security_token_file`).
pub fn load_signing_key(profile: &Profile) -> Result<SigningKey, ConfigError> {
    let key = load_private_key(
        &profile.key_file,
        profile.pass_phrase.as_ref().map(|p| p.expose()),
    )
    .map_err(|source| ConfigError::Key {
        path: profile.config_path.clone(),
        profile: profile.name.clone(),
        key_file: profile.key_file.clone(),
        source,
    })?;
    let actual = fingerprint(&key.to_public_key());
    if let Some(token_file) = &profile.security_token_file {
        let token =
            crate::small_file::read_to_string(token_file, SECURITY_TOKEN_LIMIT).map_err(|e| {
                ConfigError::SecurityToken {
                    path: profile.config_path.clone(),
                    profile: profile.name.clone(),
                    file: token_file.clone(),
                    source: e.into(),
                }
            })?;
        return Ok(SigningKey::new(key, format!("ST${}", token.trim())));
    }
    if actual != profile.fingerprint {
        return Err(ConfigError::FingerprintMismatch {
            path: profile.config_path.clone(),
            profile: profile.name.clone(),
            key_file: profile.key_file.clone(),
            configured: profile.fingerprint.clone(),
            actual,
        });
    }
    let user = profile.user.as_deref().unwrap_or_default();
    Ok(SigningKey::new(
        key,
        format!("{}/{}/{}", profile.tenancy, user, profile.fingerprint),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/signing/keys")
            .join(name)
    }

    #[test]
    fn loads_every_key_format_and_computes_oci_fingerprints() {
        let cases = [
            (
                "pkcs1.pem",
                None,
                "f7:f0:c3:be:cc:84:ea:6c:21:0a:72:40:37:bb:0d:ed",
            ),
            (
                "pkcs8.pem",
                None,
                "ca:f8:ba:ea:d3:cc:7a:a2:d3:8b:92:48:41:1c:f0:94",
            ),
            (
                "pkcs8-labelled.pem",
                None,
                "ca:f8:ba:ea:d3:cc:7a:a2:d3:8b:92:48:41:1c:f0:94",
            ),
            (
                "pkcs8-encrypted.pem",
                Some("kiln-test-pass"),
                "22:69:e2:d2:e4:22:0b:27:02:62:30:5b:2b:3f:df:73",
            ),
        ];
        for (file, pass, fp) in cases {
            let k = load_private_key(&fixture(file), pass).unwrap();
            assert_eq!(fingerprint(&k.to_public_key()), fp, "{file}");
        }
    }

    #[test]
    fn key_errors_say_what_to_do() {
        let enc = fixture("pkcs8-encrypted.pem");
        assert!(matches!(
            load_private_key(&enc, None),
            Err(KeyError::PassPhraseMissing { .. })
        ));
        assert!(matches!(
            load_private_key(&enc, Some("nope")),
            Err(KeyError::PassPhraseWrong { .. })
        ));
        assert!(matches!(
            load_private_key(&fixture("pkcs8.pub.pem"), None),
            Err(KeyError::NotPem { .. })
        ));
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let e = parse_private_key(Path::new("/k.pem"), legacy, Some("x")).unwrap_err();
        assert!(matches!(e, KeyError::LegacyEncrypted { .. }));
        let help = miette::Diagnostic::help(&e).unwrap().to_string();
        assert!(help.contains("openssl pkcs8 -topk8"), "{help}");
    }

    #[test]
    fn config_key_and_token_files_must_be_small_regular_files() {
        use super::super::config::ConfigFile;
        let dir = tempfile::tempdir().unwrap();
        let e = ConfigFile::load(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read the OCI config file `/dev/zero`: it is a character device, not a regular file"
        );
        let big = dir.path().join("config");
        std::fs::write(&big, "#".repeat(1024 * 1024 + 1)).unwrap();
        assert_eq!(
            ConfigFile::load(&big).unwrap_err().to_string(),
            format!(
                "cannot read the OCI config file `{}`: it is larger than the limit of 1048576 bytes",
                big.display()
            )
        );
        let e = load_private_key(dir.path(), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot read `{}`: it is a directory, not a regular file",
                dir.path().display()
            )
        );
        let cfg = dir.path().join("token-config");
        std::fs::write(
            &cfg,
            format!(
                "[DEFAULT]\ntenancy=ocid1.tenancy.oc1..aaaatest\nkey_file={}\nfingerprint=f7:f0:c3:be:cc:84:ea:6c:21:0a:72:40:37:bb:0d:ed\nsecurity_token_file=/dev/zero\n",
                fixture("pkcs1.pem").display()
            ),
        )
        .unwrap();
        let profile = ConfigFile::load(&cfg).unwrap().profile("DEFAULT").unwrap();
        let e = load_signing_key(&profile).unwrap_err().to_string();
        assert!(
            e.ends_with("cannot read `security_token_file` `/dev/zero`: it is a character device, not a regular file"),
            "{e}"
        );
    }

    #[test]
    fn signing_key_checks_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(
            &cfg,
            format!(
                "[DEFAULT]\nuser=ocid1.user.oc1..aaaatest\ntenancy=ocid1.tenancy.oc1..aaaatest\nkey_file={}\nfingerprint=f7:f0:c3:be:cc:84:ea:6c:21:0a:72:40:37:bb:0d:ed\n[wrong]\nfingerprint=00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00\n",
                fixture("pkcs1.pem").display()
            ),
        )
        .unwrap();
        let file = super::super::config::ConfigFile::load(&cfg).unwrap();
        let k = load_signing_key(&file.profile("DEFAULT").unwrap()).unwrap();
        assert_eq!(k.key_id, "ocid1.tenancy.oc1..aaaatest/ocid1.user.oc1..aaaatest/f7:f0:c3:be:cc:84:ea:6c:21:0a:72:40:37:bb:0d:ed");
        let e = load_signing_key(&file.profile("wrong").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match the key"), "{e}");
    }
}
