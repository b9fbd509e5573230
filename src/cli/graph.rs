//! `kiln graph`: the plan's DAG as Graphviz DOT.

use std::process::ExitCode;

use miette::IntoDiagnostic;

use crate::plan::refresh::{make_plan, PlanOptions};
use crate::state::LockInfo;

use super::session::{self, Common};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        let s = session::open(&args.common).await?;
        let lock = s
            .store
            .lock(LockInfo::new("graph"), args.common.lock_timeout)
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
        print!("{}", plan.graph().to_dot());
        Ok(ExitCode::SUCCESS)
    })
}
