//! The command line: clap definitions and dispatch. One thin file per subcommand; each calls
//! into the library and turns its result into output and an exit code. The arguments several
//! subcommands share are defined once in `args`; everything printed goes through `out`.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod apply;
mod args;
mod completions;
mod emulator;
mod fmt;
mod graph;
mod import;
mod out;
mod output;
mod plan;
mod schema;
mod show;
mod signals;
mod state;
mod validate;

/// Declarative plan/apply for Oracle Cloud Infrastructure Compute.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// `-v` before the subcommand (`kiln -v plan`), as scripts written before `-v` moved onto the
    /// subcommands that contact something still say; not offered in help.
    #[arg(short, long, action = clap::ArgAction::Count, hide = true)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change, and what drifted.
    Plan(plan::Args),
    /// Apply a manifest directory (after a confirmation) or a saved plan file.
    Apply(apply::Args),
    /// Show a saved plan (`kiln plan --out FILE`): text, markdown, kiln's JSON or Terraform's.
    Show(show::Args),
    /// Destroy everything the state manages.
    Destroy(apply::DestroyArgs),
    /// Adopt an existing instance, or every instance and custom image of a compartment: add
    /// their tables to kiln.toml and record them in state.
    #[command(
        override_usage = "kiln import [OPTIONS] <ADDRESS> <OCID> [DIR]\n       kiln import [OPTIONS] --compartment <OCID> [DIR]"
    )]
    Import(import::Args),
    /// Print what the state knows of each resource (ids, IPs, hostnames), or one value.
    Output(output::Args),
    /// Print the resource graph (with the planned actions) as Graphviz DOT.
    Graph(graph::Args),
    /// Inspect and edit the state.
    #[command(subcommand)]
    State(state::StateCommand),
    /// Remove a state lock left by a kiln that is gone.
    ForceUnlock(state::ForceUnlockArgs),
    /// Check a manifest (and an environment) without contacting OCI.
    Validate(validate::Args),
    /// Format kiln.toml and envs/*.toml (key order, aligned `=`, comments kept).
    Fmt(fmt::Args),
    /// Print the JSON Schema of kiln.toml.
    Schema,
    /// Run the OCI Compute API emulator (for tests, demos and benchmarks).
    Emulator(emulator::Args),
    /// Print shell completions (bash, zsh, fish, ...).
    Completions(completions::Args),
}

impl Command {
    /// `-v` given this many times (the commands that contact nothing have no `-v`).
    fn verbose(&self) -> u8 {
        match self {
            Command::Plan(a) => a.verbosity.verbose,
            Command::Apply(a) => a.verbosity.verbose,
            Command::Destroy(a) => a.verbosity.verbose,
            Command::Import(a) => a.verbosity.verbose,
            Command::Output(a) => a.verbosity.verbose,
            Command::Graph(a) => a.verbosity.verbose,
            Command::State(c) => c.verbose(),
            Command::ForceUnlock(a) => a.at.verbosity.verbose,
            Command::Emulator(a) => a.verbosity.verbose,
            Command::Validate(_)
            | Command::Schema
            | Command::Completions(_)
            | Command::Show(_)
            | Command::Fmt(_) => 0,
        }
    }
}

/// Entry point used by `src/main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose.saturating_add(cli.command.verbose());
    init_logging(verbose);
    crate::failpoint::setup_from_env();
    let result = match cli.command {
        Command::Plan(args) => plan::run(args),
        Command::Apply(args) => apply::run(args),
        Command::Show(args) => show::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Destroy(args) => apply::destroy(args),
        Command::Output(args) => output::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Import(args) => import::run(args),
        Command::State(cmd) => state::run(cmd),
        Command::ForceUnlock(args) => state::force_unlock(args),
        Command::Validate(args) => validate::run(args),
        Command::Schema => schema::run(),
        Command::Emulator(args) => emulator::run(args),
        Command::Completions(args) => completions::run(args, &mut Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            out::report(&report);
            ExitCode::FAILURE
        }
    }
}

/// Open the manifest in `dir` for a command, showing the manifest's warnings.
async fn open(
    dir: &std::path::Path,
    common: &args::Common,
    parallelism: Option<usize>,
) -> miette::Result<crate::ops::Session> {
    let s = crate::ops::session::open(dir, &common.open(parallelism)).await?;
    for w in &s.manifest.warnings {
        out::diagnostic(w);
    }
    Ok(s)
}

/// Logging goes to stderr. `-v` shows the request log (debug level of `kiln::oci`; `kiln emulator`'s
/// own request log at info level of `kiln::emulator`; the apply's notes, such as each place found
/// full under `placement`, at info level of `kiln::apply`), `-vv` everything
/// at debug level; `RUST_LOG` overrides both.
// The log writes to stderr itself (tracing's writer, which ignores a closed stderr).
#[allow(clippy::disallowed_methods)]
fn init_logging(verbose: u8) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let default = match verbose {
        0 => "warn",
        1 => "warn,kiln::oci=debug,kiln::emulator=info,kiln::apply=info",
        _ => "debug",
    };
    // `RUST_LOG` as `target=level` directives and a bare default level (what kiln's logs need;
    // one that does not parse is ignored).
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| default.parse().expect("valid default directives"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(out::stderr_colour())
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .try_init();
}
