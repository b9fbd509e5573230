//! `kiln fmt [DIR] [--check]`: key order of the manifest reference, aligned `=`, comments kept;
//! `--check` lists what is not formatted and exits 1.

use crate::support::run_kiln;

#[tokio::test]
async fn fmt_orders_and_aligns_keys_keeps_comments_and_check_fails_until_formatted() {
    let dir = tempfile::tempdir().unwrap();
    let kiln_toml = "[provider]\nendpoint = \"emulator\"\nregion=\"iad\"\n\n# the web tier\n[instance.web]\nshape = \"VM.Standard.E4.Flex\" # flexible\n# named after the tier\ndisplay_name=\"web\"\ncount = 2\ncompartment = \"ocid1.compartment.oc1..aaaaaaaakilnemulatorcompartment\"\navailability_domain = \"kIdk:US-ASHBURN-AD-1\"\nsubnet = \"ocid1.subnet.oc1.iad.aaaaaaaabf78f8c07126cd21d35f38bd609ac56d661468d8fd30b3badd46\"\nsource = { image_lookup = { os = \"Oracle Linux\", version = \"9\" } }\n";
    std::fs::write(dir.path().join("kiln.toml"), kiln_toml).unwrap();
    std::fs::create_dir(dir.path().join("envs")).unwrap();
    std::fs::write(
        dir.path().join("envs/prod.toml"),
        "[instance.web]\ncount = 3\n",
    )
    .unwrap();
    let check = run_kiln(dir.path(), &["fmt", "--check"]).await;
    assert_eq!(check.code, 1, "{check:?}");
    assert!(check.stdout.contains("kiln.toml"), "{check:?}");
    assert!(
        !check.stdout.contains("prod.toml"),
        "already formatted: {check:?}"
    );
    assert!(
        check.stderr.contains("1 file is not formatted"),
        "{check:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kiln.toml")).unwrap(),
        kiln_toml,
        "--check changes nothing"
    );
    let fmt = run_kiln(dir.path(), &["fmt"]).await;
    assert_eq!(fmt.code, 0, "{fmt:?}");
    let formatted = std::fs::read_to_string(dir.path().join("kiln.toml")).unwrap();
    insta::assert_snapshot!("fmt_kiln_toml", formatted);
    assert!(formatted.contains("# named after the tier\ndisplay_name"));
    assert!(formatted.contains("region   = \"iad\""), "{formatted}");
    let again = run_kiln(dir.path(), &["fmt", "--check"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.is_empty(), "{again:?}");
    let valid = run_kiln(dir.path(), &["validate"]).await;
    assert_eq!(valid.code, 0, "{valid:?}");
}
