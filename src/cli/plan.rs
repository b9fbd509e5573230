//! `kiln plan`: what would change, and what drifted.

use std::path::PathBuf;
use std::process::ExitCode;

use miette::IntoDiagnostic;

use crate::plan::refresh::{make_plan, PlanOptions};
use crate::plan::render::{self, Style};
use crate::plan::saved::SavedPlan;
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
    /// Read live state from OCI first (`--refresh=false` plans from state alone).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub refresh: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Save the plan to FILE, for `kiln apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when nothing changes, 1 on error, 2 when there are changes or drift (with
    /// `--refresh-only`: when there is drift). A `--target`/`--exclude` plan exits 2 also for
    /// changes or drift it found outside its selection; excluded resources are not read.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Only this resource (and what it depends on); a fleet name means all its members; repeatable.
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Everything except this resource (and what depends on it); a fleet name means all its
    /// members; repeatable.
    #[arg(long = "exclude", value_name = "ADDR")]
    pub excludes: Vec<String>,
    /// Show only drift (what changed outside kiln); plan no change.
    #[arg(long, conflicts_with = "replace")]
    pub refresh_only: bool,
    /// Plan a replacement of this resource; repeatable.
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<String>,
}

/// Colour on a terminal without `NO_COLOR`.
pub fn style() -> Style {
    Style {
        colour: out::stdout_colour(),
    }
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    if args.refresh_only && !args.refresh {
        return Err(miette::miette!(
            help = "drop `--refresh=false`: a refresh-only plan is the live reads",
            "`--refresh-only` reads OCI; it cannot be combined with `--refresh=false`"
        ));
    }
    rt.block_on(async {
        let dir = args.dir.checked()?;
        let s = session::open(&dir, &args.common, args.parallelism.parallelism).await?;
        let lock = s
            .store
            .lock(LockInfo::new("plan"), args.lock.lock_timeout)
            .await?;
        let state = s.store.load().await?;
        let opts = PlanOptions {
            refresh: args.refresh,
            targets: args.targets.clone(),
            excludes: args.excludes.clone(),
            refresh_only: args.refresh_only,
            destroy: false,
            replace: args.replace.iter().cloned().collect(),
            parallelism: s.parallelism,
            endpoint: s.endpoint.clone(),
        };
        let plan = make_plan(&s.manifest, state.as_ref(), Some(&s.clients), &opts).await?;
        lock.release().await?;
        if args.json {
            out::println(&render::json(&plan))?;
        } else {
            out::print(&render::text(&plan, style()))?;
        }
        if let Some(out) = &args.out {
            SavedPlan::new(&dir, plan.clone()).write(out)?;
            if !args.json {
                out::println(&format!(
                    "\nSaved the plan to {}: apply exactly it with `kiln apply {}`",
                    out.display(),
                    out.display()
                ))?;
            }
        }
        Ok(if args.detailed_exitcode && plan.pending() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        })
    })
}
