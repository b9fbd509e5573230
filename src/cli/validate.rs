//! `kiln validate [DIR] [--env E]`: check a manifest without contacting OCI.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::manifest;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest directory (holds `kiln.toml`).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Environment: merges `envs/<ENV>.toml` over `kiln.toml`.
    #[arg(long)]
    pub env: Option<String>,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    match manifest::load(&args.dir, args.env.as_deref()) {
        Ok(m) => {
            for w in m.warnings {
                eprintln!("{:?}", miette::Report::new(w));
            }
            println!(
                "{} is valid: {} instance{}, {} image{} (env {})",
                args.dir.join("kiln.toml").display(),
                m.instances.len(),
                if m.instances.len() == 1 { "" } else { "s" },
                m.images.len(),
                if m.images.len() == 1 { "" } else { "s" },
                m.env
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            Ok(ExitCode::FAILURE)
        }
    }
}
