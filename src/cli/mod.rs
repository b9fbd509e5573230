//! The command line: clap definitions and dispatch. One thin file per subcommand; each calls
//! into the library and turns its result into output and an exit code.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod apply;
mod completions;
mod emulator;
mod graph;
mod import;
mod output;
mod plan;
mod schema;
mod session;
mod signals;
mod state;
mod validate;

/// Declarative plan/apply for Oracle Cloud Infrastructure Compute.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    /// Log every OCI request (method, path, status, duration, opc-request-id); repeat for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change, and what drifted.
    Plan(plan::Args),
    /// Apply a manifest directory (after a confirmation) or a saved plan file.
    Apply(apply::Args),
    /// Destroy everything the state manages.
    Destroy(apply::DestroyArgs),
    /// Adopt an existing instance: add its table to kiln.toml and record it in state.
    Import(import::Args),
    /// Print what the state knows of each resource (ids, IPs, hostnames), or one value.
    Output(output::Args),
    /// Print the plan's dependency graph as Graphviz DOT.
    Graph(graph::Args),
    /// Inspect and edit the state.
    #[command(subcommand)]
    State(state::StateCommand),
    /// Remove a state lock left by a kiln that is gone.
    ForceUnlock(state::ForceUnlockArgs),
    /// Check a manifest (and an environment) without contacting OCI.
    Validate(validate::Args),
    /// Print the JSON Schema of kiln.toml.
    Schema,
    /// Run the OCI Compute API emulator (for tests, demos and benchmarks).
    Emulator(emulator::Args),
    /// Print shell completions (bash, zsh, fish, ...).
    Completions(completions::Args),
}

/// Entry point used by `src/main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    crate::failpoint::setup_from_env();
    let result = match cli.command {
        Command::Plan(args) => plan::run(args),
        Command::Apply(args) => apply::run(args),
        Command::Destroy(args) => apply::destroy(args),
        Command::Output(args) => output::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Import(args) => import::run(args),
        Command::State(cmd) => state::run(cmd),
        Command::ForceUnlock(args) => state::force_unlock(args),
        Command::Validate(args) => validate::run(args),
        Command::Schema => schema::run(),
        Command::Emulator(args) => emulator::run(args, cli.verbose),
        Command::Completions(args) => Ok(completions::run(args, &mut Cli::command())),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::FAILURE
        }
    }
}

/// Logging goes to stderr. `-v` shows the request log (debug level of `kiln::oci`; `kiln emulator`'s
/// own request log at info level of `kiln::emulator`), `-vv` everything
/// at debug level; `RUST_LOG` overrides both.
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "warn,kiln::oci=debug,kiln::emulator=info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
