//! `fmt`: canonical formatting of a manifest directory's `kiln.toml` and `envs/*.toml`
//! ([`crate::manifest::format`]), written atomically — or, with `check`, only listed.

use std::path::{Path, PathBuf};

use miette::{miette, IntoDiagnostic};

use crate::manifest::format::format;

/// The files of `dir` that `kiln fmt` formats: `kiln.toml`, then `envs/*.toml` by name.
fn files(dir: &Path) -> miette::Result<Vec<PathBuf>> {
    let mut out = vec![dir.join("kiln.toml")];
    if let Ok(entries) = std::fs::read_dir(dir.join("envs")) {
        let mut envs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        envs.sort();
        out.extend(envs);
    }
    Ok(out)
}

/// Format the manifest files of `dir`; with `check`, change nothing. Returns the files that were
/// (or would be) changed.
pub fn fmt(dir: &Path, check: bool) -> miette::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    for path in files(dir)? {
        let text = std::fs::read_to_string(&path)
            .into_diagnostic()
            .map_err(|e| miette!("cannot read `{}`: {e}", path.display()))?;
        let formatted = format(&text).map_err(|e| {
            miette!(
                help = "run `kiln validate` and fix it first",
                "`{}` is not valid TOML: {e}",
                path.display()
            )
        })?;
        if formatted == text {
            continue;
        }
        if !check {
            let parent = path.parent().unwrap_or(Path::new("."));
            let write = || -> std::io::Result<()> {
                let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
                std::io::Write::write_all(&mut tmp, formatted.as_bytes())?;
                tmp.as_file().sync_all()?;
                tmp.persist(&path).map_err(|e| e.error)?;
                Ok(())
            };
            write()
                .into_diagnostic()
                .map_err(|e| miette!("cannot write `{}`: {e}", path.display()))?;
        }
        changed.push(path);
    }
    Ok(changed)
}
