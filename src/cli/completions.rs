//! `kiln completions SHELL`: shell completion scripts via clap_complete.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to generate completions for.
    pub shell: clap_complete::Shell,
}

pub fn run(args: Args, cmd: &mut clap::Command) -> miette::Result<ExitCode> {
    // Generated in memory, then written through the door that takes a closed pipe quietly.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, cmd, "kiln", &mut script);
    super::out::print(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}
