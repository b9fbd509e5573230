//! The command line as a user meets it: one vocabulary across subcommands (help texts, DIR),
//! errors that say what to pass, diagnostics that end with their summary, saved plans that apply
//! from anywhere, output to a closed pipe, colour only on a terminal, the resource graph, decoded
//! `user_data` diffs, why an action waits, and Ctrl-C on a terminal.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use crate::support::{self, run_kiln, run_kiln_env, scrub, Project};

const SUBCOMMANDS: &[&[&str]] = &[
    &["plan"],
    &["apply"],
    &["destroy"],
    &["import"],
    &["output"],
    &["graph"],
    &["state", "list"],
    &["state", "show"],
    &["state", "rm"],
    &["state", "mv"],
    &["state", "migrate"],
    &["force-unlock"],
    &["validate"],
    &["fmt"],
    &["show"],
    &["schema"],
    &["emulator"],
    &["completions"],
];

/// `kiln SUBCOMMAND --help`, at 100 columns.
async fn help(sub: &[&str]) -> String {
    let mut args: Vec<&str> = sub.to_vec();
    args.push("--help");
    let out = run_kiln_env(Path::new("."), &args, &[("COLUMNS", "100")]).await;
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout
}

/// The help text of `flag` in a help page, whitespace folded (`None`: not offered).
fn flag_help(page: &str, flag: &str) -> Option<String> {
    let lines: Vec<&str> = page.lines().collect();
    let i = lines.iter().position(|l| {
        let t = l.trim_start();
        t.starts_with(&format!("{flag} ")) || t.starts_with(&format!("-v, {flag}"))
    })?;
    let first = lines[i].trim_start();
    let mut text = first
        .split_once("  ")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_default();
    for l in &lines[i + 1..] {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('-') || l.len() - t.len() < 10 {
            break;
        }
        text.push(' ');
        text.push_str(t);
    }
    Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_speaks_one_vocabulary() {
    let mut pages = String::new();
    let mut texts: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for sub in SUBCOMMANDS {
        let page = help(sub).await;
        let name = sub.join(" ");
        for flag in [
            "--env",
            "--state-dir",
            "--lock-timeout",
            "--config-file",
            "--profile",
            "--auth",
            "--parallelism",
            "--verbose",
        ] {
            // The emulator's `--profile` names the profiles it trusts: another option.
            if name == "emulator" && flag == "--profile" {
                continue;
            }
            if let Some(t) = flag_help(&page, flag) {
                texts.entry(flag).or_default().insert(name.clone(), t);
            }
        }
        // Commands that contact nothing offer no `-v`.
        let contacts_nothing =
            ["validate", "fmt", "show", "schema", "completions"].contains(&name.as_str());
        assert_eq!(
            page.contains("--verbose"),
            !contacts_nothing,
            "{name}:\n{page}"
        );
        // A default is shown once.
        for l in page.lines() {
            assert!(
                l.matches("[default:").count() <= 1 && !l.contains("(default"),
                "{name}: {l}"
            );
        }
        // Every positional argument is described.
        if let Some(args) = page.split("Arguments:\n").nth(1) {
            for l in args.split("\n\n").next().unwrap().lines() {
                let t = l.trim_start();
                if t.starts_with('<') || t.starts_with('[') {
                    let described = t
                        .split_once("  ")
                        .is_some_and(|(_, d)| !d.trim().is_empty());
                    assert!(described, "{name}: {l}");
                }
            }
        }
        pages.push_str(&format!("===== kiln {name} --help\n{page}\n"));
    }
    for (flag, by_command) in &texts {
        let distinct: std::collections::BTreeSet<&String> = by_command.values().collect();
        assert_eq!(
            distinct.len(),
            1,
            "{flag} reads differently: {by_command:#?}"
        );
    }
    // Every command that reads a state takes these, with the same text.
    for flag in [
        "--env",
        "--state-dir",
        "--config-file",
        "--profile",
        "--auth",
    ] {
        for sub in [
            "plan",
            "apply",
            "destroy",
            "import",
            "output",
            "graph",
            "state list",
            "state show",
            "state rm",
            "state mv",
            "state migrate",
            "force-unlock",
        ] {
            assert!(texts[flag].contains_key(sub), "{sub} lacks {flag}");
        }
    }
    assert!(
        !help(&["destroy"]).await.contains("--replace"),
        "destroy offers no --replace"
    );
    insta::assert_snapshot!("help", pages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_directory_is_named_one_way_and_a_wrong_one_is_an_error() {
    let p = Project::new(support::config(0.002)).await;
    p.write("[instance.web]\n");
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let elsewhere = tempfile::tempdir().unwrap();
    let dir = p.path().to_str().unwrap();
    let id = p.state()["resources"]["instance.web"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // DIR is positional, as for plan and apply; `--dir` still works.
    for args in [
        vec!["state", "list", dir],
        vec!["state", "list", "--dir", dir],
    ] {
        let out = run_kiln(elsewhere.path(), &args).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains(&id), "{out:?}");
    }
    let show = run_kiln(elsewhere.path(), &["state", "show", "instance.web", dir]).await;
    assert!(show.stdout.contains(&id), "{show:?}");
    let unlock = run_kiln(elsewhere.path(), &["force-unlock", dir]).await;
    assert_eq!(unlock.code, 0, "{unlock:?}");
    assert!(unlock.stdout.contains("was not locked"), "{unlock:?}");
    let mv = run_kiln(
        elsewhere.path(),
        &["state", "mv", "instance.web", "instance.front", dir],
    )
    .await;
    assert_eq!(mv.code, 0, "{mv:?}");
    let rm = run_kiln(elsewhere.path(), &["state", "rm", "instance.front", dir]).await;
    assert_eq!(rm.code, 0, "{rm:?}");
    assert!(p.state()["resources"].as_object().unwrap().is_empty());

    // A directory that does not exist is an error, not an empty listing.
    let mut errors = String::new();
    for args in [
        &["state", "list", "/nonexistent"][..],
        &["plan", "/nonexistent"],
        &["output", "/nonexistent"],
        &["force-unlock", "--dir", "/nonexistent"],
    ] {
        let out = run_kiln(elsewhere.path(), args).await;
        assert_eq!(out.code, 1, "{out:?}");
        errors.push_str(&format!("$ kiln {}\n{}", args.join(" "), out.stderr));
    }
    // A manifest file is not a directory (nor a saved plan): pass the directory.
    for args in [&["apply", "kiln.toml"][..], &["plan", "kiln.toml"]] {
        let out = p.kiln(args).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("pass the directory"), "{out:?}");
        errors.push_str(&format!("$ kiln {}\n{}", args.join(" "), out.stderr));
    }
    insta::assert_snapshot!("wrong_directories", errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_end_with_a_summary_naming_the_files_the_problems_are_in() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("kiln.toml"),
        "[defaults]\ncompartment = \"ocid1.compartment.oc1..aaaa\"\navailability_domain = \"kIdk:US-ASHBURN-AD-1\"\nshape = \"VM.Standard.E4.Flex\"\nsubnet = \"ocid1.subnet.oc1.iad.aaaa\"\nsource = { image = \"ocid1.image.oc1.iad.aaaa\" }\n\n[instance.web]\n",
    )
    .unwrap();
    std::fs::create_dir(d.path().join("envs")).unwrap();
    std::fs::write(
        d.path().join("envs/production.toml"),
        "[instance.web]\nshape = 3\nstate = \"PAUSED\"\n",
    )
    .unwrap();
    let out = run_kiln(d.path(), &["validate", "--env", "production"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let summary = out.stderr.find("2 problems in").expect("a summary");
    let last_problem = out.stderr.rfind("kiln::manifest::invalid_value").unwrap();
    assert!(last_problem < summary, "the summary comes last: {out:?}");
    // The same from a command that goes on to contact OCI.
    let plan = run_kiln(d.path(), &["plan", "--env", "production"]).await;
    assert_eq!(plan.stderr, out.stderr);
    let empty = tempfile::tempdir().unwrap();
    let missing = run_kiln(empty.path(), &["validate"]).await;
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains("no `kiln.toml` in `.`"),
        "{missing:?}"
    );
    assert!(!missing.stderr.contains("os error"), "{missing:?}");
    insta::assert_snapshot!(
        "diagnostics_summary_last",
        format!(
            "{}\n$ kiln validate (no kiln.toml)\n{}",
            out.stderr, missing.stderr
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_plan_applies_from_any_directory() {
    let p = Project::new(support::config(0.002)).await;
    p.write("[instance.web]\n");
    let plan = p.kiln(&["plan", "--out", "web.plan", "."]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    let elsewhere = tempfile::tempdir().unwrap();
    let file = p.path().join("web.plan");
    let apply = run_kiln(elsewhere.path(), &["apply", file.to_str().unwrap()]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stdout.contains("1 created"), "{apply:?}");
    assert!(p.state()["resources"]["instance.web"]["id"].is_string());
    assert!(!elsewhere.path().join("state").exists());
}

/// Run kiln with stdout (and, with `both`, stderr) writing into a pipe nobody reads any more.
fn kiln_into_closed_pipe(cwd: &Path, args: &[&str], both: bool) -> (i32, String) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two descriptors this function then owns.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here.
    let (read, write) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(read);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env("KILN_EMULATOR_TIME_SCALE", "0.002")
        .stdin(Stdio::null())
        .stdout(Stdio::from(write.try_clone().unwrap()));
    if both {
        cmd.stderr(Stdio::from(write));
        let out = cmd.output().unwrap();
        (out.status.code().unwrap_or(-1), String::new())
    } else {
        drop(write);
        cmd.stderr(Stdio::piped());
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_into_a_closed_pipe_ends_quietly() {
    let p = Project::new(support::config(0.002)).await;
    p.write("[instance.web]\n");
    let dir = p.path().to_path_buf();
    // An apply whose reader went away still applies, and says nothing about it.
    let (code, stderr) = tokio::task::spawn_blocking(move || {
        kiln_into_closed_pipe(&dir, &["apply", "--auto-approve"], false)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert!(p.state()["resources"]["instance.web"]["id"].is_string());
    for args in [
        &["plan", "--json"][..],
        &["plan"],
        &["graph"],
        &["state", "list"],
        &["state", "show", "instance.web"],
        &["output", "--json"],
        &["validate"],
        &["schema"],
        &["completions", "bash"],
        &["--help"],
    ] {
        let dir = p.path().to_path_buf();
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (code, stderr) = tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            kiln_into_closed_pipe(&dir, &a, false)
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "kiln {args:?}: {stderr}");
        assert!(
            stderr.is_empty() || !stderr.contains("panicked"),
            "kiln {args:?}: {stderr}"
        );
        assert!(!stderr.contains("Broken pipe"), "kiln {args:?}: {stderr}");
        // Both streams closed: still no panic (its exit code would be 101).
        let dir = p.path().to_path_buf();
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (code, _) = tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            kiln_into_closed_pipe(&dir, &a, true)
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "kiln {args:?} with stderr closed too");
    }
    // An error still exits 1 (not 101), quietly.
    let dir = p.path().to_path_buf();
    let (code, _) = tokio::task::spawn_blocking(move || {
        kiln_into_closed_pipe(&dir, &["state", "show", "instance.nope"], true)
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_colour_codes_off_a_terminal_even_in_verbose_logs_and_warnings() {
    let p = Project::new(support::config(0.002)).await;
    // Two instances with one display name: a warning.
    p.write("[instance.web]\n\n[instance.other]\ndisplay_name = \"web\"\n");
    for args in [
        &["apply", "--auto-approve", "-vv"][..],
        &["plan", "-v"],
        // The place `-v` had before it moved onto the subcommands (kept for scripts).
        &["-v", "plan"],
        &["validate"],
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .current_dir(p.path())
            .env_remove("NO_COLOR")
            .env("KILN_EMULATOR_TIME_SCALE", "0.002")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains("duplicate_display_name"),
            "{args:?}: {stderr}"
        );
        if args[0] != "validate" {
            assert!(stderr.contains("opc_request_id"), "{args:?}: {stderr}");
        }
        assert!(!stdout.contains('\x1b'), "{args:?}: {stdout:?}");
        assert!(!stderr.contains('\x1b'), "{args:?}: {stderr:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_shows_every_resource_also_when_nothing_changes() {
    let p = Project::new(support::config(0.002)).await;
    p.write(
        "[instance.builder]\n\n[image.golden]\nfrom_instance = \"instance.builder\"\n\n[instance.web]\nsource = { image = \"image.golden\" }\n",
    );
    let planned = p.kiln(&["graph"]).await;
    assert_eq!(planned.code, 0, "{planned:?}");
    insta::assert_snapshot!("resource_graph_planned", planned.stdout);
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    let settled = p.kiln(&["graph"]).await;
    assert_eq!(settled.code, 0, "{settled:?}");
    insta::assert_snapshot!("resource_graph_no_changes", settled.stdout);
    let actions = p.kiln(&["graph", "--actions"]).await;
    assert_eq!(
        actions.stdout,
        "digraph kiln {\n  rankdir = LR;\n  node [shape = box];\n}\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_data_change_is_shown_as_a_diff_of_its_text() {
    let p = Project::new(support::config(0.002)).await;
    std::fs::write(
        p.path().join("init.sh"),
        "#!/bin/sh\necho start\nsystemctl enable nginx\necho done\n",
    )
    .unwrap();
    p.write("[instance.web]\nuser_data_file = \"init.sh\"\n");
    let create = p.kiln(&["plan"]).await;
    assert!(
        create.stdout.contains("+systemctl enable nginx"),
        "{create:?}"
    );
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    std::fs::write(
        p.path().join("init.sh"),
        "#!/bin/sh\necho start\nsystemctl enable caddy\necho done\n",
    )
    .unwrap();
    let plan = p.kiln(&["plan"]).await;
    assert_eq!(plan.code, 0, "{plan:?}");
    let shown = scrub(&plan.stdout, Some(&p));
    assert!(
        shown.contains("-systemctl enable nginx") && shown.contains("+systemctl enable caddy"),
        "{shown}"
    );
    assert!(!shown.contains("IyEv"), "no base64: {shown}");
    let diff: String = shown
        .lines()
        .skip_while(|l| !l.contains("metadata.user_data"))
        .take(10)
        .map(|l| format!("{l}\n"))
        .collect();
    insta::assert_snapshot!("user_data_diff", diff);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_says_why_an_action_waits() {
    let p = Project::new(support::config(0.002)).await;
    p.write("[instance.web]\n");
    let out = p
        .kiln_faulted(
            "oci.request.LaunchInstance=1*return(status(429))",
            &["apply", "--auto-approve"],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("create instance.web: retrying after 429 TooManyRequests"))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(line.contains("next attempt in"), "{line}");
    assert_eq!(p.live_instances().await.len(), 1);
}

/// Issue 27: a retry line cut OCI's reason ("retrying after 409 IncorrectState (instance
/// `ocid1…3t…)"). The second capture of an instance within the emulator's cooldown is refused
/// with 409 `IncorrectState` and a reason naming the instance: the line shows all of it, the
/// OCID shortened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_line_shows_the_whole_reason() {
    let p = Project::new(support::config(0.002)).await;
    let golden = "[instance.builder]\n\n[image.golden]\nfrom_instance = \"instance.builder\"\n";
    p.write(golden);
    assert_eq!(p.kiln(&["apply", "--auto-approve"]).await.code, 0);
    p.write(&format!(
        "{golden}\n[image.second]\nfrom_instance = \"instance.builder\"\n"
    ));
    let out = p.kiln(&["apply", "--auto-approve"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let builder = p.state()["resources"]["instance.builder"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let short = format!("ocid1.instance.…{}", &builder[builder.len() - 6..]);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("retrying after 409 IncorrectState"))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(
        line.contains(&format!(
            "(instance `{short}` was captured recently: the next image can be made after "
        )) && line.contains("), next attempt in"),
        "{line}"
    );
}

/// A pseudo-terminal pair: (master, slave).
fn open_pty() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors this function then owns; the other arguments may be
    // null.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty");
    // SAFETY: both were just opened and are owned here.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_a_terminal_leaves_no_echo_in_the_live_lines_and_the_terminal_as_it_was() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    // Slow enough that an action is in flight when the Ctrl-C comes.
    let p = Project::new(support::config(0.05)).await;
    p.write("[instance.web]\n\n[instance.db]\n\n[instance.cache]\n");
    let (mut master, slave) = open_pty();
    let slave_fd = slave.as_raw_fd();
    let echoctl = |fd: i32| {
        // SAFETY: tcgetattr on a descriptor this test owns.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(fd, &mut t), 0);
            t.c_lflag & libc::ECHOCTL != 0
        }
    };
    assert!(echoctl(slave_fd), "a terminal echoes ^C by default");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    // One action at a time: the Ctrl-C leaves some not started.
    cmd.args(["apply", "--auto-approve", "--parallelism", "1"])
        .current_dir(p.path())
        .env_remove("NO_COLOR")
        .env("KILN_EMULATOR_TIME_SCALE", "0.002")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    // SAFETY: setsid and TIOCSCTTY only, between fork and exec: the pty becomes kiln's
    // controlling terminal, so Ctrl-C typed on it is SIGINT to kiln, as in a shell.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    // Only kiln and `slave` hold the terminal now: the reader sees its end when kiln is gone.
    drop(cmd);
    let screen = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let mut typed = false;
        loop {
            let n = match master.read(&mut buf) {
                Ok(0) | Err(_) => break, // EIO: kiln and every copy of the slave are gone
                Ok(n) => n,
            };
            seen.extend_from_slice(&buf[..n]);
            // A live line is up: type Ctrl-C into the terminal.
            if !typed && String::from_utf8_lossy(&seen).contains(": waiting for") {
                master.write_all(b"\x03").unwrap();
                typed = true;
            }
        }
        (seen, typed)
    });
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    // The terminal is as kiln found it.
    assert!(echoctl(slave_fd), "ECHOCTL restored");
    drop(slave);
    let (seen, typed) = screen.await.unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(typed, "no live line came up: {text}");
    assert_eq!(status.code(), Some(130), "{text}");
    let after = &text[text.find("Interrupted").expect("the notice")..];
    // The echo of ^C would wrap the padded live line and freeze a copy of it above the notice.
    assert!(!text.contains("^C"), "{text:?}");
    assert!(after.contains("Apply incomplete"), "{text}");
}

/// Every file under `dir` ending in `.rs`, recursively.
fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, found);
        } else if p.extension().is_some_and(|x| x == "rs") {
            found.push(p);
        }
    }
}

/// The one printing door, checked without clippy (which enforces the same through `clippy.toml`
/// and the `deny` in `src/lib.rs`): no print macro anywhere in `src/` but `cli/out.rs`, and stdout
/// or stderr taken directly only where an `allow` of the lint says why.
#[test]
fn nothing_prints_outside_the_printing_door() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut offences = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        if rel == "src/cli/out.rs" {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        let code: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        for m in ["println!(", "print!(", "eprintln!(", "eprint!(", "dbg!("] {
            if code.iter().any(|l| l.contains(m)) {
                offences.push(format!("{rel}: `{m}`"));
            }
        }
        let direct = code
            .iter()
            .any(|l| l.contains("io::stdout") || l.contains("io::stderr"));
        if direct && !text.contains("allow(clippy::disallowed_methods)") {
            offences.push(format!("{rel}: stdout/stderr taken directly"));
        }
    }
    assert!(files.len() > 50, "the sources were found");
    assert!(
        offences.is_empty(),
        "print through `cli::out`: {offences:#?}"
    );
}
