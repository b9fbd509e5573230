//! Smoke runs of the benchmark scripts at tiny sizes, so they cannot rot (BENCHMARKS.md). They
//! check that each script runs end to end against this build's `kiln` (`KILN=…`, no release
//! build) and that its table says something physically possible — never how fast anything is:
//! timings are not pass/fail.
//!
//! Those that need python3 with Oracle's SDK (`oci`, from `pip install oci-cli`) or, for scenario
//! 4, `pycloudlib` are `#[ignore]`d with that reason: a plain `cargo test` reports them as ignored,
//! never as passed, and the README's test command (`cargo test -- --include-ignored`, what
//! `.ci/run` runs after installing both) runs them, where a missing module is a failure.

use std::path::PathBuf;
use std::process::Command;

/// `cargo bench --bench signing`, compiled here too.
#[path = "../../benches/signing.rs"]
mod signing_bench;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fail, naming what to install, when a Python module is missing.
fn require_python(modules: &[&str]) {
    let missing: Vec<&str> = modules.iter().copied().filter(|m| !python_has(m)).collect();
    assert!(
        missing.is_empty(),
        "python3 cannot import {missing:?}: `pip install oci-cli pycloudlib` (.ci/run does)"
    );
}

/// Run a bench script with this build's kiln; its stdout (the script must succeed).
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .current_dir(root())
        .env("KILN", env!("CARGO_BIN_EXE_kiln"))
        .output()
        .expect("the script runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The data rows of the markdown table in `out`: cells, trimmed.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("|---"))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

fn num(cell: &str) -> f64 {
    cell.trim_end_matches('×')
        .parse()
        .unwrap_or_else(|_| panic!("`{cell}` is not a number"))
}

#[test]
#[ignore = "needs python3 with Oracle's SDK: pip install oci-cli (the README's test command runs it)"]
fn bench_no_change_plan_smoke() {
    require_python(&["oci"]);
    let out = run(Command::new("bash")
        .args(["benches/run.sh", "3"])
        .env("LATENCY_MS", "5"));
    let rows = rows(&out);
    assert_eq!(rows.len(), 1, "one row for N = 3:\n{out}");
    let r = &rows[0];
    assert_eq!(r.len(), 9, "{out}");
    assert_eq!(r[0], "3");
    assert!(num(&r[1]) > 0.0, "{out}");
    // The whole estate in one ListInstances page; the peer reads each instance once.
    assert_eq!(num(&r[3]), 1.0, "kiln API calls:\n{out}");
    assert_eq!(num(&r[6]), 3.0, "peer API calls:\n{out}");
    assert!(num(&r[8]) > 0.0, "{out}");
}

#[test]
fn bench_apply_critical_path_smoke() {
    let out = run(Command::new("bash")
        .arg("benches/apply.sh")
        .env("SMALL", "1"));
    let rows = rows(&out);
    assert_eq!(
        rows.len(),
        3,
        "two DAGs, the first with both kinds of waits:\n{out}"
    );
    assert_eq!(rows[0][0], "3 independent instances", "{out}");
    assert_eq!(rows[0][1], "3 create instance", "{out}");
    assert_eq!(
        rows[1][0], "3 independent instances, --wait-reads get",
        "{out}"
    );
    assert_eq!(rows[1][1], "3 create instance", "{out}");
    assert!(rows[2][0].starts_with("golden image"), "{out}");
    assert_eq!(
        rows[2][1], "1 create image, 2 create instance, 1 start instance, 1 stop instance",
        "{out}"
    );
    for r in &rows {
        let (wall, path, ratio) = (num(&r[3]), num(&r[4]), num(&r[5]));
        // No apply can beat the lifecycle durations it waits through.
        assert!(
            path > 0.0 && wall >= path,
            "wall {wall} < critical path {path}:\n{out}"
        );
        // (each printed rounded: wall and path to 0.005, the ratio to 0.0005)
        let rounding = 0.005 * (ratio + 1.0) + 0.0005 * path + 1e-9;
        assert!(
            (ratio * path - wall).abs() <= rounding,
            "ratio ≠ wall ÷ path:\n{out}"
        );
        assert!(num(&r[6]) > 0.0, "{out}");
    }
    // Launches at 3 and 2 at once on 10 slots: one launch; stop → capture → start ‖ launch.
    let scale = 0.002;
    assert!((num(&rows[0][4]) - 60.0 * scale).abs() < 1e-6, "{out}");
    assert!((num(&rows[1][4]) - 60.0 * scale).abs() < 1e-6, "{out}");
    assert!(
        (num(&rows[2][4]) - (30.0 + 480.0 + 60.0) * scale).abs() < 0.01,
        "{out}"
    );
}

#[test]
#[ignore = "needs python3 with pycloudlib and Oracle's SDK: pip install oci-cli pycloudlib (the README's test command runs it)"]
fn bench_pycloudlib_vs_kiln_smoke() {
    require_python(&["oci", "pycloudlib"]);
    let out = run(Command::new("python3")
        .arg("benches/pycloudlib_vs_kiln.py")
        .env("SMALL", "1"));
    let rows = rows(&out);
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0][0].starts_with("pycloudlib"), "{out}");
    assert!(rows[1][0].starts_with("kiln apply"), "{out}");
    for r in &rows {
        let (wall, path) = (num(&r[2]), num(&r[3]));
        assert!(
            path > 0.0 && wall >= path,
            "wall {wall} < critical path {path}:\n{out}"
        );
    }
    // Each tool launched one instance and captured one image.
    for tool in ["pycloudlib", "kiln"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("- {tool} API calls by operation:")))
            .unwrap_or_else(|| panic!("no call breakdown for {tool}:\n{out}"));
        assert!(line.contains("LaunchInstance 1,"), "{line}");
        assert!(line.contains("CreateImage 1,"), "{line}");
    }
}

#[test]
fn bench_signing_smoke() {
    let out = signing_bench::run(3);
    let rows = rows(&out);
    assert_eq!(rows.len(), 3, "{out}");
    for r in &rows {
        assert!(num(&r[1]) > 0.0 && num(&r[2]) > 0.0, "{out}");
    }
    assert!(out.contains("ring ÷ rsa crate"), "{out}");
}

#[test]
#[ignore = "needs python3 with Oracle's SDK: pip install oci-cli (the README's test command runs it)"]
fn bench_estate_smoke() {
    require_python(&["oci"]);
    let out = run(Command::new("python3")
        .arg("benches/estate.py")
        .env("SMALL", "1"));
    let rows = rows(&out);
    assert_eq!(rows.len(), 1, "{out}");
    let r = &rows[0];
    assert_eq!(r.len(), 12, "{out}");
    assert_eq!((r[0].as_str(), r[1].as_str()), ("12", "2 × 2"), "{out}");
    // One ListInstances page per (region, compartment); the peer reads each instance once.
    assert_eq!(num(&r[5]), 4.0, "kiln API calls:\n{out}");
    assert_eq!(num(&r[9]), 12.0, "peer API calls:\n{out}");
    assert!(num(&r[2]) > 0.0 && num(&r[6]) > 0.0, "{out}");
    assert!(
        out.contains("kiln plan API calls by operation: ListInstances 4"),
        "{out}"
    );
}

#[test]
fn bench_first_apply_smoke() {
    let out = run(Command::new("python3")
        .arg("benches/first_apply.py")
        .env("SMALL", "1"));
    let rows = rows(&out);
    assert_eq!(rows.len(), 1, "{out}");
    let r = &rows[0];
    assert_eq!(r[0], "6", "{out}");
    let (wall, path, ratio) = (num(&r[1]), num(&r[2]), num(&r[3]));
    // Two rounds of 3 launches on 3 slots, 0.12 s each; no apply beats its lifecycles.
    assert!((path - 0.24).abs() < 1e-6, "{out}");
    assert!(wall >= path, "wall {wall} < critical path {path}:\n{out}");
    assert!(
        (ratio * path - wall).abs() <= 0.005 * (ratio + 1.0) + 0.0005 * path + 1e-9,
        "{out}"
    );
    // Every launch once; calls per launch is calls ÷ N.
    assert!(out.contains("LaunchInstance 6"), "{out}");
    assert!((num(&r[5]) - num(&r[4]) / 6.0).abs() < 0.01, "{out}");
}

#[test]
fn bench_rate_limits_smoke() {
    // The SDK row needs Oracle's SDK; without it the script skips that row (and says so).
    let out = run(Command::new("python3")
        .arg("benches/rate_limits.py")
        .env("SMALL", "1"));
    let rows = rows(&out);
    let runs: Vec<&Vec<String>> = rows.iter().filter(|r| r.len() == 8).collect();
    assert!(runs.len() >= 2, "kiln with and without adaptation:\n{out}");
    for r in &runs {
        // Every launch made, none failed; 429s are a part of the requests.
        assert_eq!(num(&r[6]), 20.0, "launched:\n{out}");
        assert_eq!(num(&r[7]), 0.0, "failed:\n{out}");
        assert!(num(&r[4]) <= num(&r[3]), "{out}");
    }
    // (the fleet table's header is a row of 7 cells too: its data row is the last)
    let fleet = rows.iter().rfind(|r| r.len() == 7).expect("the fleet row");
    assert_eq!(fleet[0], "6/6", "{out}");
    assert_eq!(fleet[1], "2/2/2", "{out}");
    assert_eq!(fleet[2], "all", "every member where the rule says:\n{out}");
}
