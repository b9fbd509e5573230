//! The files a user points kiln at: `~` is the home directory in every path a manifest or an OCI
//! config names, and credential files others may read are warned about (a key anyone may write
//! is refused) — naming the file and the `chmod` that fixes it, never printing what is in it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{self, key_path, run_kiln_env, Project, PKCS1_FP, TENANCY, USER};

/// `text` with miette's line wrapping undone (words joined by single spaces, the `│` of
/// continuation lines dropped), to find a sentence in it.
fn flat(text: &str) -> String {
    text.split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ")
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A home directory holding an OCI config (`~/.oci/config`, its `key_file` written `~/…`), a
/// cloud-init file and an SSH key, all private to their owner.
fn home_with_files() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let oci = home.path().join(".oci");
    std::fs::create_dir(&oci).unwrap();
    std::fs::copy(key_path("pkcs1.pem"), oci.join("key.pem")).unwrap();
    std::fs::write(
        oci.join("config"),
        format!("[DEFAULT]\nuser={USER}\ntenancy={TENANCY}\nfingerprint={PKCS1_FP}\nkey_file=~/.oci/key.pem\nregion=us-ashburn-1\n"),
    )
    .unwrap();
    std::fs::write(home.path().join("cloud-init.yaml"), "#cloud-config\n").unwrap();
    std::fs::write(home.path().join("keys.pub"), "ssh-ed25519 AAAAC3Nz test\n").unwrap();
    for f in [".oci/config", ".oci/key.pem"] {
        chmod(&home.path().join(f), 0o600);
    }
    home
}

/// `p`'s manifest with the OCI config named `~/.oci/config` and `extra` in `[provider]`.
fn write_manifest(p: &Project, extra: &str, body: &str) {
    let header = p.header().replace(
        &format!("config_file = \"{}\"", p.config.display()),
        &format!("config_file = \"~/.oci/config\"\n{extra}"),
    );
    std::fs::write(p.path().join("kiln.toml"), format!("{header}{body}")).unwrap();
}

/// Issue 27: `~` was not expanded in `ssh_authorized_keys_file`, `user_data_file` or
/// `ca_bundle` (they were taken as `<manifest dir>/~/…`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tilde_is_the_home_directory_in_every_path_a_user_writes() {
    let p = Project::new(support::config(0.0)).await;
    let home = home_with_files();
    let home_s = home.path().display().to_string();
    let env = [("HOME", home_s.as_str())];
    write_manifest(
        &p,
        "",
        "[instance.web]\nuser_data_file = \"~/cloud-init.yaml\"\nssh_authorized_keys_file = \"~/keys.pub\"\n",
    );
    let plan = run_kiln_env(p.path(), &["plan"], &env).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout
            .contains("metadata.ssh_authorized_keys = \"ssh-ed25519 AAAAC3Nz test\"")
            && plan.stdout.contains("#cloud-config"),
        "{plan:?}"
    );

    // The CA bundle is read from the home directory too (this one is not a certificate: the
    // error names where it was looked for).
    std::fs::write(home.path().join("roots.pem"), "not a certificate\n").unwrap();
    write_manifest(&p, "ca_bundle = \"~/roots.pem\"", "[instance.web]\n");
    let plan = run_kiln_env(p.path(), &["plan"], &env).await;
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(
        flat(&plan.stderr).contains(&format!(
            "`{home_s}/roots.pem` (from [provider] ca_bundle) holds no PEM certificate"
        )),
        "{plan:?}"
    );
}

/// Issue 27: a private key or config readable by others was used silently (Oracle's CLI warns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_files_others_can_read_are_warned_about_and_a_key_anyone_can_write_is_refused() {
    let p = Project::new(support::config(0.0)).await;
    let home = home_with_files();
    let home_s = home.path().display().to_string();
    let (config, key) = (
        home.path().join(".oci/config"),
        home.path().join(".oci/key.pem"),
    );
    let env = [
        ("HOME", home_s.as_str()),
        ("OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING", "False"),
    ];
    write_manifest(&p, "", "[instance.web]\n");
    let key_text = std::fs::read_to_string(&key).unwrap();
    let key_line = key_text.lines().nth(1).unwrap();

    // Private to their owner: nothing to say.
    let quiet = run_kiln_env(p.path(), &["plan"], &env).await;
    assert_eq!(quiet.code, 0, "{quiet:?}");
    assert!(!quiet.stderr.contains("too open"), "{quiet:?}");

    chmod(&config, 0o644);
    chmod(&key, 0o640);
    let warned = run_kiln_env(p.path(), &["plan"], &env).await;
    assert_eq!(warned.code, 0, "a warning, not an error: {warned:?}");
    for (file, what) in [
        (&config, "(0644: readable by group and others)"),
        (&key, "(0640: readable by group)"),
    ] {
        let f = file.display();
        let shown = flat(&warned.stderr);
        assert!(
            shown.contains(&format!("permissions on `{f}` are too open {what}"))
                && shown.contains(&format!("`chmod 600 {f}`")),
            "{warned:?}"
        );
    }
    // Oracle's CLI's variable silences it, as it does the CLI's.
    let silenced = run_kiln_env(
        p.path(),
        &["plan"],
        &[
            ("HOME", home_s.as_str()),
            ("OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING", "True"),
        ],
    )
    .await;
    assert!(!silenced.stderr.contains("too open"), "{silenced:?}");

    chmod(&key, 0o666);
    let refused = run_kiln_env(p.path(), &["plan"], &env).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    let k = key.display();
    let shown = flat(&refused.stderr);
    assert!(
        shown.contains(&format!("`{k}` may be written by anyone"))
            && shown.contains(&format!("`chmod 600 {k}`")),
        "{refused:?}"
    );
    for out in [&warned, &refused] {
        assert!(
            !out.stderr.contains(key_line) && !out.stderr.contains("PRIVATE KEY-----"),
            "no key material: {out:?}"
        );
    }
}
