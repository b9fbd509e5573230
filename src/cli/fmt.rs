//! `kiln fmt [DIR] [--check]`: format `kiln.toml` and `envs/*.toml` (key order of the manifest
//! reference, aligned `=`, comments kept); `--check` changes nothing, lists what it would change
//! and exits 1 if anything (for CI).

use std::process::ExitCode;

use crate::ops;

use super::args::Dir;
use super::out;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub dir: Dir,
    /// Change nothing: list the files that are not formatted and exit 1 if there are any
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let dir = args.dir.checked()?;
    let changed = ops::fmt::fmt(&dir, args.check)?;
    for f in &changed {
        out::println(&f.display().to_string())?;
    }
    Ok(if args.check && !changed.is_empty() {
        out::eprintln(&format!(
            "{} file{} not formatted: run `kiln fmt`",
            changed.len(),
            if changed.len() == 1 { " is" } else { "s are" }
        ));
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
