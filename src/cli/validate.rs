//! `kiln validate [DIR] [--env E]`: check a manifest without contacting OCI.

use std::process::ExitCode;

use crate::manifest;

use super::args::{Dir, Env};
use super::out;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub dir: Dir,
    #[command(flatten)]
    pub env: Env,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let dir = args.dir.checked()?;
    match manifest::load(&dir, args.env.env.as_deref()) {
        Ok(m) => {
            for w in m.warnings {
                out::diagnostic(&w);
            }
            out::println(&format!(
                "{} is valid: {} instance{}, {} image{} (env {})",
                dir.join("kiln.toml").display(),
                m.instances.len(),
                if m.instances.len() == 1 { "" } else { "s" },
                m.images.len(),
                if m.images.len() == 1 { "" } else { "s" },
                m.env
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            out::manifest_error(&e);
            Ok(ExitCode::FAILURE)
        }
    }
}
