//! Session tokens (`oci session authenticate`): refreshed and written back before they end, and
//! an ended session named in its 401.

use super::*;

use std::time::Duration;

use kiln::emulator::{EmulatorConfig, Principal};
use kiln::oci::auth::Token;

use crate::support::{self, key_path, Project, COMPARTMENT, TENANCY, USER};

/// A session profile as `oci session authenticate` writes it, for the pkcs8 key and `token`.
fn session_project_files(p: &Project, token: &str) -> std::path::PathBuf {
    let token_file = p.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let cfg = p.path().join("session-config");
    std::fs::write(
        &cfg,
        format!(
            "[session]\nfingerprint={}\nkey_file={}\ntenancy={TENANCY}\nregion=us-ashburn-1\nsecurity_token_file={}\n",
            support::PKCS8_FP,
            key_path("pkcs8.pem").display(),
            token_file.display()
        ),
    )
    .unwrap();
    let f = p.emu.fixtures();
    std::fs::write(
        p.path().join("kiln.toml"),
        format!(
            "[provider]\nendpoint = \"{}\"\nconfig_file = \"{}\"\nprofile = \"session\"\n\n[defaults]\ncompartment = \"{COMPARTMENT}\"\navailability_domain = \"{}\"\nshape = \"VM.Standard.E4.Flex\"\nshape_config = {{ ocpus = 1, memory_in_gbs = 16 }}\nsubnet = \"{}\"\nsource = {{ image = \"{}\" }}\n\n[instance.web]\n",
            p.emu.url(),
            cfg.display(),
            f.availability_domains[0],
            f.public_subnet_id,
            f.platform_images[0].id
        ),
    )
    .unwrap();
    token_file
}

fn session(p: &Project, ends_in: Duration) -> Principal {
    Principal::Session {
        tenancy: TENANCY.into(),
        user: USER.into(),
        session_end: p.emu.token_clock() + chrono::Duration::from_std(ends_in).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_token_about_to_expire_is_refreshed_and_written_back() {
    let p = Project::new(EmulatorConfig {
        token_lifetime: HOUR,
        ..support::config(0.0)
    })
    .await;
    let key = fixture_key("pkcs8.pem", None);
    // Issued 59 minutes ago, expiring in 30 seconds: inside the refresh margin.
    let now = p.emu.token_clock();
    let token = p.emu.issue_token_between(
        &session(&p, 10 * HOUR),
        &key.to_public_key(),
        now - chrono::Duration::minutes(59),
        now + chrono::Duration::seconds(30),
    );
    let token_file = session_project_files(&p, &token);
    let emu_url = p.emu.url();
    let out = support::run_kiln_env(
        p.path(),
        &["apply", "-v", "--auto-approve"],
        &[("OCI_SDK_AUTH_CLIENT_REGION_URL", emu_url.as_str())],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("auth: security_token"), "{out:?}");
    assert_eq!(
        stat(&p.emu, "RefreshSecurityToken"),
        1,
        "{:?}",
        p.emu.stats()
    );
    assert_eq!(stat(&p.emu, "errors.RefreshSecurityToken"), 0);
    let fresh = std::fs::read_to_string(&token_file).unwrap();
    assert_ne!(fresh, token, "the refreshed token was written back");
    let (old, new) = (Token::parse(&token).unwrap(), Token::parse(&fresh).unwrap());
    assert!(new.expires_at > old.expires_at + chrono::Duration::minutes(30));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_no_secrets(&out.stderr, &[&token, &fresh]);
    assert_eq!(p.live_instances().await.len(), 1);
    // The next run finds a fresh token and refreshes nothing.
    let out = support::run_kiln_env(
        p.path(),
        &["plan", "--detailed-exitcode"],
        &[("OCI_SDK_AUTH_CLIENT_REGION_URL", emu_url.as_str())],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(stat(&p.emu, "RefreshSecurityToken"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_is_a_401_that_names_the_auth_method() {
    let p = Project::new(EmulatorConfig {
        token_lifetime: HOUR,
        ..support::config(0.0)
    })
    .await;
    let key = fixture_key("pkcs8.pem", None);
    let token = p
        .emu
        .issue_token(&session(&p, 2 * HOUR), &key.to_public_key(), HOUR);
    session_project_files(&p, &token);
    let emu_url = p.emu.url();
    let env = [("OCI_SDK_AUTH_CLIENT_REGION_URL", emu_url.as_str())];
    let out = support::run_kiln_env(p.path(), &["apply", "--auto-approve"], &env).await;
    assert_eq!(out.code, 0, "{out:?}");
    // Three hours on, for the emulator: the token expired, the session ended.
    p.emu.advance_token_clock(3 * HOUR);
    let out = support::run_kiln_env(p.path(), &["plan", "-v"], &env).await;
    assert_eq!(out.code, 1, "{out:?}");
    // As one line, without miette's wrapping.
    let flat = out
        .stderr
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for needle in [
        "401",
        "NotAuthenticated",
        "the security token expired at",
        "auth: security_token",
        "oci session authenticate",
    ] {
        assert!(flat.contains(needle), "`{needle}` missing: {out:?}");
    }
    assert_no_secrets(&out.stderr, &[&token]);
    assert!(
        stat(&p.emu, "errors.RefreshSecurityToken") >= 1,
        "kiln tried to refresh before giving up: {:?}",
        p.emu.stats()
    );
}
