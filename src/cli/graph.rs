//! `kiln graph`: the resource graph as Graphviz DOT — every resource, what uses what, and the
//! planned actions of each (also when nothing changes); `--actions`: the plan's action DAG.

use std::process::ExitCode;

use miette::IntoDiagnostic;

use crate::ops;

use super::args::{Common, Dir, LockWait, Parallelism, Verbosity};
use super::out;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub dir: Dir,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub lock: LockWait,
    #[command(flatten)]
    pub parallelism: Parallelism,
    #[command(flatten)]
    pub verbosity: Verbosity,
    /// Print the plan's action DAG instead (one node per action, in the order apply runs them)
    #[arg(long)]
    pub actions: bool,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        let dir = args.dir.checked()?;
        let s = super::open(&dir, &args.common, args.parallelism.parallelism).await?;
        let dag = ops::plan::graph(&s, args.actions, args.lock.lock_timeout).await?;
        out::print(&dag.to_dot())?;
        Ok(ExitCode::SUCCESS)
    })
}
