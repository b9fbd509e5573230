//! `kiln show FILE`: a saved plan (`kiln plan --out FILE`) as text, markdown, kiln's JSON or
//! Terraform's JSON plan — what `kiln apply FILE` would do, without contacting anything — with
//! what `--policy` directories say of it.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::ops;

use super::args::{JsonFormat, ViewFormat};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A plan file saved by `kiln plan --out FILE`
    #[arg(value_name = "PLANFILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub json: JsonFormat,
    /// `markdown`: a pull-request comment, at most 65,536 characters
    #[arg(long, value_enum, default_value = "text", conflicts_with = "json")]
    pub format: ViewFormat,
    #[command(flatten)]
    pub policy: super::plan::PolicyArgs,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let shown = ops::show::show(&args.file, &args.policy.dirs)?;
    super::plan::print_plan(
        &shown.saved.plan,
        args.json.json,
        args.format,
        shown.policy.as_ref(),
    )?;
    Ok(ExitCode::SUCCESS)
}
