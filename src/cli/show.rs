//! `kiln show FILE`: a saved plan (`kiln plan --out FILE`) as text, kiln's JSON or Terraform's
//! JSON plan — what `kiln apply FILE` would do, without contacting anything.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::ops;

use super::args::JsonFormat;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A plan file saved by `kiln plan --out FILE`
    #[arg(value_name = "PLANFILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub json: JsonFormat,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let saved = ops::show::show(&args.file)?;
    super::plan::print_plan(&saved.plan, args.json.json)?;
    Ok(ExitCode::SUCCESS)
}
