//! `kiln completions SHELL`: shell completion scripts via clap_complete.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to generate completions for.
    pub shell: clap_complete::Shell,
}

pub fn run(args: Args, cmd: &mut clap::Command) -> ExitCode {
    clap_complete::generate(args.shell, cmd, "kiln", &mut std::io::stdout());
    ExitCode::SUCCESS
}
