//! `kiln output [DIR] [ADDRESS[.ATTRIBUTE]] [--env E] [--json]`: what the state knows of each
//! resource (ids, IPs, hostnames, …), read without contacting OCI ([`crate::output`]).

use std::path::PathBuf;
use std::process::ExitCode;

use miette::{miette, IntoDiagnostic};

use super::args::{is_address, Common, Verbosity};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest directory [default: .], and/or one `ADDRESS` or `ADDRESS.ATTRIBUTE` (e.g.
    /// `instance.web.public_ip`, `'instance.web[0].private_ip'`) to print alone. An argument
    /// that starts with `instance.` or `image.` is an address (write `./instance.x` for such a
    /// directory).
    #[arg(value_name = "DIR|ADDRESS[.ATTRIBUTE]", num_args = 0..=2)]
    pub args: Vec<String>,
    /// Print JSON: one object keyed by address (or, for one attribute, its JSON value)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let (queries, dirs): (Vec<&String>, Vec<&String>) =
        args.args.iter().partition(|a| is_address(a));
    if queries.len() > 1 || dirs.len() > 1 {
        return Err(miette!(
            help = "`kiln output [DIR] [ADDRESS[.ATTRIBUTE]]`, e.g. `kiln output infra instance.web.public_ip`",
            "give at most one directory and one address"
        ));
    }
    let dir = dirs
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    super::args::manifest_dir(&dir)?;
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        let state = super::state::stores(&dir, &args.common)
            .await?
            .read()
            .await?;
        let text = match queries.first() {
            Some(q) => crate::output::query(&state, q)?.render(args.json),
            None if args.json => format!(
                "{}\n",
                serde_json::to_string_pretty(&crate::output::json(&state)).into_diagnostic()?
            ),
            None => crate::output::text(&state),
        };
        super::out::print(&text)?;
        Ok(ExitCode::SUCCESS)
    })
}
