//! Manifest diagnostics: one fixture per problem in `tests/fixtures/invalid/`, each rendered
//! without colour at 80 columns and snapshotted (the span is part of the snapshot); the schema
//! copy in the repo matches `kiln schema`; no input makes the parser panic.

use std::path::{Path, PathBuf};

use kiln::manifest::{self, diagnostic::render_plain};
use proptest::prelude::*;

fn invalid_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid")
}

/// Load a fixture: `NAME.toml` is copied to a temp dir as `kiln.toml`; a folder is used as is,
/// with env `prod` when it has `envs/prod.toml`.
///
/// Paths are relative to the package root (the test's working directory) and of a fixed length,
/// so the 80-column wrapping of the rendered text is the same in every clone and on every machine.
fn render(name: &str) -> String {
    let path = Path::new("tests/fixtures/invalid").join(name);
    let (_tmp, rel) = relative_tempdir();
    let (dir, env) = if path.is_dir() {
        let env = path.join("envs/prod.toml").exists().then_some("prod");
        (path.clone(), env)
    } else {
        std::fs::copy(&path, rel.join("kiln.toml")).unwrap();
        (rel, None)
    };
    render_loaded(&dir, manifest::load(&dir, env))
}

/// A temporary folder under `target/`, and its path relative to here (tempfile makes it
/// absolute), so that rendered paths have the same length everywhere.
fn relative_tempdir() -> (tempfile::TempDir, PathBuf) {
    std::fs::create_dir_all("target").unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("fixture")
        .tempdir_in("target")
        .unwrap();
    let cwd = std::env::current_dir().unwrap();
    let rel = tmp.path().strip_prefix(&cwd).unwrap().to_path_buf();
    (tmp, rel)
}

/// What a load says, rendered without colour at 80 columns, with `dir` as `[DIR]`.
fn render_loaded(
    dir: &Path,
    loaded: Result<manifest::Manifest, manifest::ManifestError>,
) -> String {
    let text = match loaded {
        Ok(m) => {
            let mut out = String::from("(valid)\n");
            for w in &m.warnings {
                out.push_str(&render_plain(w, 80));
            }
            out
        }
        Err(e) => e.render_plain(80),
    };
    text.replace(&dir.display().to_string(), "[DIR]")
}

const DEFAULTS: &str = "[defaults]\ncompartment = \"ocid1.compartment.oc1..aaaa\"\navailability_domain = \"kIdk:US-ASHBURN-AD-1\"\nshape = \"VM.Standard.E4.Flex\"\nsubnet = \"ocid1.subnet.oc1.iad.aaaa\"\nsource = { image = \"ocid1.image.oc1.iad.aaaa\" }\n\n";

/// Load `dir` on another thread and fail if that takes longer than a reading-free load can: a
/// loader that opened a FIFO would wait for a writer forever.
fn load_within_bounds(dir: &Path) -> Result<manifest::Manifest, manifest::ManifestError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let d = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(manifest::load(&d, None));
    });
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("the manifest loads without waiting on a side file")
}

#[cfg(unix)]
#[test]
fn oversized_side_files_and_fifos_are_refused_without_reading_them() {
    let (_tmp, dir) = relative_tempdir();
    std::fs::write(
        dir.join("kiln.toml"),
        format!("{DEFAULTS}[instance.web]\nuser_data_file = \"cloud-init.yaml\"\nssh_authorized_keys_file = \"keys.fifo\"\n"),
    )
    .unwrap();
    let limit = manifest::USER_DATA_FILE_LIMIT as usize;
    std::fs::write(dir.join("cloud-init.yaml"), "#".repeat(limit + 1)).unwrap();
    let fifo = std::ffi::CString::new(dir.join("keys.fifo").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let rendered = render_loaded(&dir, load_within_bounds(&dir));
    insta::assert_snapshot!(rendered);

    // At the limit, the file is used.
    std::fs::write(dir.join("cloud-init.yaml"), "#".repeat(limit)).unwrap();
    std::fs::write(dir.join("keys.pub"), "ssh-ed25519 AAAA test\n").unwrap();
    let text = std::fs::read_to_string(dir.join("kiln.toml")).unwrap();
    std::fs::write(dir.join("kiln.toml"), text.replace("keys.fifo", "keys.pub")).unwrap();
    let m = load_within_bounds(&dir).unwrap_or_else(|e| panic!("{}", e.render_plain(80)));
    assert_eq!(
        m.instances["web"].metadata["user_data"].len(),
        limit / 3 * 4
    );
}

#[test]
fn every_invalid_fixture_is_reported_with_its_span() {
    let mut names: Vec<String> = std::fs::read_dir(invalid_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 18, "{names:?}");
    for name in names {
        let rendered = render(&name);
        let snap = name.trim_end_matches(".toml").to_string();
        insta::assert_snapshot!(snap, rendered);
    }
}

#[test]
fn all_problems_are_reported_in_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        invalid_dir().join("many_problems.toml"),
        tmp.path().join("kiln.toml"),
    )
    .unwrap();
    let e = manifest::load(tmp.path(), None).unwrap_err();
    assert!(e.errors() >= 6, "{}", e.render_plain(80));
}

/// A fleet whose `count` is invalid is still checked (its other problems are reported in the same
/// run, see `fleet_invalid_count_and_sizes.toml`), but what refers to its members is not judged:
/// they are unknown until the count is fixed.
#[test]
fn an_invalid_count_adds_no_problem_about_references_to_its_members() {
    let (_tmp, dir) = relative_tempdir();
    std::fs::write(
        dir.join("kiln.toml"),
        format!("{DEFAULTS}[instance.web]\ncount = -1\n\n[image.golden]\nfrom_instance = \"instance.web[3]\"\n"),
    )
    .unwrap();
    let e = manifest::load(&dir, None).unwrap_err();
    assert_eq!(e.errors(), 1, "{}", e.render_plain(80));
    assert!(e.render_plain(80).contains("`count` is -1"));
}

#[test]
fn the_checked_in_schema_is_what_kiln_schema_prints() {
    let repo = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/kiln.schema.json"),
    )
    .unwrap();
    let now = serde_json::to_string_pretty(&manifest::schema::json_schema()).unwrap();
    assert_eq!(
        repo.trim_end(),
        now.trim_end(),
        "run `cargo run -- schema > schema/kiln.schema.json`"
    );
}

/// Regression: miette printed whole source lines (a diagnostic as large as the file) and panicked
/// on a label more than 65,535 columns into a line.
#[test]
fn a_very_long_line_renders_a_bounded_diagnostic_without_panicking() {
    let pad = "a".repeat(100_000);
    let cases = [
        // A syntax error 1 MB into one line.
        (
            "long_line_syntax",
            format!(
                "[instance.web]\ndisplay_name = \"{}\" = oops\n",
                "a".repeat(1_000_000)
            ),
        ),
        // A 200k-character string value with an error in it.
        (
            "long_line_value",
            format!("{DEFAULTS}[instance.web]\ndisplay_name = \"{pad}${{vars.nope}}{pad}\"\n"),
        ),
        // An error whose message quotes a 200k-character name.
        (
            "long_line_message",
            format!("{DEFAULTS}[instance.web]\ndisplay_name = \"${{vars.{pad}{pad}}}\"\n"),
        ),
    ];
    for (name, text) in cases {
        let e = manifest::load_str(Path::new("."), &text).unwrap_err();
        let rendered = e.render_plain(80);
        assert!(rendered.len() < 10_000, "{name}: {} bytes", rendered.len());
        if name != "long_line_message" {
            insta::assert_snapshot!(name, rendered);
        }
    }
}

fn arb_toml() -> impl Strategy<Value = String> {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/golden-image/kiln.toml"),
    )
    .unwrap();
    let pieces = prop::collection::vec(
        prop_oneof![
            Just("[instance.x]\n".to_string()),
            Just("[image.y]\nfrom_instance = \"instance.x\"\n".to_string()),
            Just("source = { image = \"image.y\" }\n".to_string()),
            Just("shape_config = { ocpus = -1 }\n".to_string()),
            Just("${vars.".to_string()),
            Just("\"".to_string()),
            Just("[[instance]]\n".to_string()),
            "[a-z_.]{1,12} = [0-9\"a-z{}\\[\\] ,=.]{0,20}\n",
            "\\PC{0,30}",
        ],
        0..12,
    );
    (pieces, any::<usize>(), any::<bool>()).prop_map(move |(ps, at, keep_base)| {
        let mut s = if keep_base {
            base.clone()
        } else {
            String::new()
        };
        let cut = if s.is_empty() { 0 } else { at % s.len() };
        let cut = (0..=cut)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        s.insert_str(cut, &ps.concat());
        s
    })
}

proptest! {
    // The default is modest for debug test runs; CI raises it (KILN_FUZZ_CASES).
    #![proptest_config(ProptestConfig::with_cases(std::env::var("KILN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000)))]
    #[test]
    fn the_parser_never_panics(text in arb_toml()) {
        match manifest::load_str(Path::new(env!("CARGO_MANIFEST_DIR")), &text) {
            Ok(_) => {}
            Err(e) => { let _ = e.render_plain(80); }
        }
    }
}

#[test]
fn rollout_is_read_from_the_table_inline_or_defaults_and_an_env_file_changes_it() {
    use kiln::manifest::rollout::{Amount, OnFailure, ReplaceMethod, Rollout};
    use std::time::Duration;
    let base = "[defaults]\ncompartment = \"ocid1.compartment.oc1..aaaa\"\navailability_domain = \"kIdk:US-ASHBURN-AD-1\"\nshape = \"VM.Standard.E4.Flex\"\nsubnet = \"ocid1.subnet.oc1.iad.aaaa\"\nsource = { image = \"ocid1.image.oc1.iad.aaaa\" }\n";
    let load = |text: &str, env: Option<(&str, &str)>| {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("kiln.toml"), text).unwrap();
        if let Some((name, body)) = env {
            std::fs::create_dir(tmp.path().join("envs")).unwrap();
            std::fs::write(tmp.path().join(format!("envs/{name}.toml")), body).unwrap();
        }
        manifest::load(tmp.path(), env.map(|e| e.0))
            .unwrap_or_else(|e| panic!("{}", e.render_plain(80)))
    };
    let table = load(&format!("{base}\n[instance.web]\ncount = 2\nreplace_method = \"boot_volume\"\n\n[instance.web.rollout]\nmax_surge = \"25%\"\nmax_unavailable = 1\nmin_healthy_time = \"30s\"\nhealth_check = {{ command = [\"./healthy.sh\", \"-q\"], interval = \"2s\" }}\non_failure = \"rollback\"\n"), None);
    let inline = load(&format!("{base}\n[instance.web]\ncount = 2\nreplace_method = \"boot_volume\"\nrollout = {{ max_surge = \"25%\", max_unavailable = 1, min_healthy_time = \"30s\", health_check = {{ command = [\"./healthy.sh\", \"-q\"], interval = \"2s\" }}, on_failure = \"rollback\" }}\n"), None);
    let want = Rollout {
        max_surge: Amount::Percent(25),
        max_unavailable: Amount::Count(1),
        min_healthy_time: Duration::from_secs(30),
        health_check: Some(kiln::manifest::rollout::HealthCheck {
            command: vec!["./healthy.sh".into(), "-q".into()],
            timeout: Duration::from_secs(300),
            interval: Duration::from_secs(2),
        }),
        on_failure: OnFailure::Rollback,
    };
    for m in [&table, &inline] {
        for name in ["web[0]", "web[1]"] {
            assert_eq!(m.instances[name].rollout.as_ref(), Some(&want));
            assert_eq!(m.instances[name].replace_method, ReplaceMethod::BootVolume);
        }
    }
    // `[defaults]`: every instance, with the issue's defaults; an env file changes it.
    let defaults = format!("{base}rollout = {{ max_unavailable = 2 }}\n\n[instance.web]\n[instance.db]\nrollout = {{ max_surge = 0, max_unavailable = 1 }}\n");
    let m = load(&defaults, None);
    let web = m.instances["web"].rollout.clone().unwrap();
    assert_eq!(
        (web.max_surge, web.max_unavailable, web.on_failure),
        (Amount::Count(1), Amount::Count(2), OnFailure::Pause)
    );
    assert_eq!(
        m.instances["db"].rollout.as_ref().unwrap().max_surge,
        Amount::Count(0)
    );
    assert_eq!(m.instances["web"].replace_method, ReplaceMethod::Instance);
    let m = load(
        &defaults,
        Some((
            "prod",
            "[instance.web]\nrollout = { max_surge = \"50%\" }\n",
        )),
    );
    assert_eq!(
        m.instances["web"].rollout.as_ref().unwrap().max_surge,
        Amount::Percent(50)
    );
    // Without `rollout`, none.
    let m = load(&format!("{base}\n[instance.web]\n"), None);
    assert_eq!(m.instances["web"].rollout, None);
}

/// The README's "Every key, with its default" block (issue 27: it showed
/// `assign_public_ip = false` while instances got public IPs). It is a valid manifest; every key
/// says what its default is (or that it is required); and every value marked `(default)` is what
/// the loader applies when the key is left out: removing that line changes nothing loaded.
#[test]
fn the_readme_reference_block_shows_the_defaults_applied() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let at = readme
        .find("Every key, with its default")
        .expect("the README has the reference block");
    let start = readme[at..].find("```toml\n").unwrap() + at + "```toml\n".len();
    let block = &readme[start..start + readme[start..].find("\n```").unwrap()];

    let (_tmp, dir) = relative_tempdir();
    std::fs::write(dir.join("cloud-init.yaml"), "#cloud-config\n").unwrap();
    std::fs::write(dir.join("keys.pub"), "ssh-ed25519 AAAA t\n").unwrap();
    let load = |text: &str| {
        std::fs::write(dir.join("kiln.toml"), text).unwrap();
        manifest::load(&dir, None).unwrap_or_else(|e| panic!("{}", e.render_plain(100)))
    };
    let full = load(block);

    let mut checked = 0;
    for (i, line) in block.lines().enumerate() {
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if line.starts_with('#') || line.starts_with(' ') || key.is_empty() || key.contains(' ') {
            continue;
        }
        // The key's comment, with the comment lines that continue it.
        let own = line.split_once(" # ").map(|(_, c)| c).unwrap_or("");
        let more: Vec<&str> = block
            .lines()
            .skip(i + 1)
            .take_while(|l| l.starts_with(' ') && l.trim_start().starts_with('#'))
            .collect();
        let comment = format!("{own} {}", more.join(" "));
        assert!(
            ["(default)", "default:", "(default:", "required", "default"]
                .iter()
                .any(|w| comment.contains(w))
                || ["from", "to"].contains(&key),
            "the README does not say what `{key}` defaults to: {line:?}"
        );
        if !own.starts_with("(default)") {
            continue;
        }
        let without: Vec<&str> = block
            .lines()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, l)| l)
            .collect();
        let m = load(&without.join("\n"));
        assert_eq!(m.provider, full.provider, "{line}");
        assert_eq!(
            m.instances, full.instances,
            "leaving out {line:?} changes the instances"
        );
        assert_eq!(
            m.images, full.images,
            "leaving out {line:?} changes the images"
        );
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} defaults checked");
}
