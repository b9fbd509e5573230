//! `kiln import ADDR OCID [DIR]`: adopt an existing instance — write its `[instance.NAME]` table
//! into kiln.toml (comments and layout kept) and record it in state, so the next plan is empty.

use std::process::ExitCode;

use miette::IntoDiagnostic;

use crate::ops::{self, import::ImportRequest};

use super::args::{Common, Dir, LockWait, Verbosity};
use super::out;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to give it, e.g. `instance.legacy`.
    pub address: String,
    /// The instance's OCID.
    pub ocid: String,
    #[command(flatten)]
    pub dir: Dir,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub lock: LockWait,
    #[command(flatten)]
    pub verbosity: Verbosity,
    /// Print the table instead of writing kiln.toml and the state.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let dir = args.dir.checked()?;
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        let s = super::open(&dir, &args.common, None).await?;
        let req = ImportRequest {
            address: args.address.clone(),
            ocid: args.ocid.clone(),
            dry_run: args.dry_run,
            lock_timeout: args.lock.lock_timeout,
        };
        let done = ops::import::import(&s, &req).await?;
        let (address, ocid) = (&done.address, &args.ocid);
        if !done.written {
            out::println(&done.manifest_text)?;
        } else if done.member {
            out::println(&format!(
                "Imported {ocid} as `{address}` (declared by `[instance.{}]`): recorded it in {}",
                address.fleet(),
                s.store.describe()
            ))?;
        } else {
            out::println(&format!(
                "Imported {ocid} as `{address}`: added `[{address}]` to {} and recorded it in {}",
                dir.join("kiln.toml").display(),
                s.store.describe()
            ))?;
        }
        Ok(ExitCode::SUCCESS)
    })
}
