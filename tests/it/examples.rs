//! Every example validates (with each of its environments) and applies on the embedded emulator;
//! a second plan of each shows no changes.

use std::path::{Path, PathBuf};

use crate::support::run_kiln;

fn examples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kiln.toml").exists())
        .collect();
    dirs.sort();
    dirs
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "state" {
            continue;
        }
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(name));
        } else {
            std::fs::copy(e.path(), to.join(name)).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_validates_applies_and_then_plans_nothing() {
    let all = examples();
    assert!(all.len() >= 3, "{all:?}");
    for ex in all {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&ex, tmp.path());
        let mut envs = vec![None];
        if let Ok(d) = std::fs::read_dir(tmp.path().join("envs")) {
            envs.extend(
                d.map(|e| {
                    e.unwrap()
                        .path()
                        .file_stem()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                })
                .map(Some),
            );
        }
        for env in envs {
            let mut args: Vec<String> = vec![];
            if let Some(e) = &env {
                args.extend(["--env".to_string(), e.clone()]);
            }
            let with = |cmd: &[&str]| {
                let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
                a.extend(args.iter().cloned());
                a
            };
            let run = |a: Vec<String>| {
                let dir = tmp.path().to_path_buf();
                async move { run_kiln(&dir, &a.iter().map(String::as_str).collect::<Vec<_>>()).await }
            };
            let v = run(with(&["validate"])).await;
            assert_eq!(v.code, 0, "{} {env:?}: {v:?}", ex.display());
            assert!(v.stdout.contains("is valid"), "{v:?}");
            let a = run(with(&["apply", "--auto-approve"])).await;
            assert_eq!(a.code, 0, "{} {env:?}: {a:?}", ex.display());
            let p = run(with(&["plan", "--detailed-exitcode"])).await;
            assert_eq!(p.code, 0, "{} {env:?}: {p:?}", ex.display());
        }
    }
}
