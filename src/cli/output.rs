//! `kiln output [DIR] [ADDRESS[.ATTRIBUTE]] [--env E] [--json]`: what the state knows of each
//! resource (ids, IPs, hostnames, …), read without contacting OCI ([`crate::output`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use miette::{miette, IntoDiagnostic};

use super::state::StateArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest directory (default `.`), and/or one `ADDRESS` or `ADDRESS.ATTRIBUTE` (e.g.
    /// `instance.web.public_ip`, `'instance.web[0].private_ip'`) to print alone. An argument
    /// that starts with `instance.` or `image.` is an address (write `./instance.x` for such a
    /// directory).
    #[arg(value_name = "DIR|ADDRESS[.ATTRIBUTE]", num_args = 0..=2)]
    pub args: Vec<String>,
    /// Environment: reads `state/<ENV>.json` (or the `[backend]`'s object for it).
    #[arg(long)]
    pub env: Option<String>,
    /// Print JSON: one object keyed by address (or, for one attribute, its JSON value).
    #[arg(long)]
    pub json: bool,
    /// Folder of the state files (default: `<DIR>/state`).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// OCI config file, for a remote `[backend]`.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// OCI config profile, for a remote `[backend]`.
    #[arg(long)]
    pub profile: Option<String>,
    /// How to authenticate, for a remote `[backend]` (default: `OCI_CLI_AUTH`, then the
    /// manifest's `auth`, then the profile's).
    #[arg(long, value_name = "METHOD", value_parser = super::session::parse_auth)]
    pub auth: Option<crate::oci::auth::AuthMethod>,
}

fn is_address(arg: &str) -> bool {
    arg.starts_with("instance.") || arg.starts_with("image.")
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
    let at = StateArgs {
        dir: dirs
            .first()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".")),
        env: args.env.clone(),
        state_dir: args.state_dir.clone(),
        lock_timeout: Duration::ZERO,
        config_file: args.config_file.clone(),
        profile: args.profile.clone(),
        auth: args.auth,
    };
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        let stores = at.stores().await?;
        let state = stores.store.load().await?.unwrap_or_default();
        let text = match queries.first() {
            Some(q) => crate::output::query(&state, q)?.render(args.json),
            None if args.json => format!(
                "{}\n",
                serde_json::to_string_pretty(&crate::output::json(&state)).into_diagnostic()?
            ),
            None => crate::output::text(&state),
        };
        // Piped into `head`, or a script that stops reading: not an error.
        match std::io::stdout().lock().write_all(text.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).into_diagnostic()?,
            _ => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}
