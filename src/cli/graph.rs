//! `kiln graph`: the resource graph as Graphviz DOT — every resource, what uses what, and the
//! planned actions of each (also when nothing changes); `--actions`: the plan's action DAG.

use std::process::ExitCode;

use miette::IntoDiagnostic;

use crate::plan::refresh::{make_plan, PlanOptions};
use crate::state::LockInfo;

use super::args::{Common, Dir, LockWait, Parallelism, Verbosity};
use super::out;
use super::session;

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
        let s = session::open(
            &args.dir.checked()?,
            &args.common,
            args.parallelism.parallelism,
        )
        .await?;
        let lock = s
            .store
            .lock(LockInfo::new("graph"), args.lock.lock_timeout)
            .await?;
        let state = s.store.load().await?;
        let opts = PlanOptions {
            refresh: true,
            parallelism: s.parallelism,
            endpoint: s.endpoint.clone(),
            ..Default::default()
        };
        let plan = make_plan(&s.manifest, state.as_ref(), Some(&s.clients), &opts).await?;
        lock.release().await?;
        let dag = if args.actions {
            plan.graph()
        } else {
            let resources: Vec<String> = s.manifest.resources().map(|a| a.to_string()).collect();
            let edges: Vec<(String, String)> = s
                .manifest
                .edges()
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            plan.resource_graph(&resources, &edges)
        };
        out::print(&dag.to_dot())?;
        Ok(ExitCode::SUCCESS)
    })
}
