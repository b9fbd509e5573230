//! `kiln plan`: what would change, and what drifted.

use std::path::PathBuf;
use std::process::ExitCode;

use miette::IntoDiagnostic;

use crate::ops::{self, plan::PlanRequest};
use crate::plan::render::{self, Style};
use crate::plan::saved::SavedPlan;
use crate::plan::{markdown, terraform, Plan};
use crate::policy::Report;

use super::args::{
    Common, Dir, JsonFormat, JsonKind, LockWait, Parallelism, Verbosity, ViewFormat,
};
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
    /// Read live state from OCI first (`--refresh=false` plans from state alone).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub refresh: bool,
    #[command(flatten)]
    pub json: JsonFormat,
    /// `markdown`: a pull-request comment (summary, table of changes, drift, policy results,
    /// the text plan folded), at most 65,536 characters
    #[arg(long, value_enum, default_value = "text", conflicts_with = "json")]
    pub format: ViewFormat,
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
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `--policy`, for the commands that check a plan.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct PolicyArgs {
    /// Check the plan against the Rego policies (conftest conventions) in DIR; repeatable, added
    /// to the manifest's `[policy] dirs`. A denial makes `plan` exit 1 and `apply` refuse.
    #[arg(long = "policy", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
}

/// What the policies said, one line per finding (`None`: no policy, nothing said).
pub fn policy_text(report: Option<&Report>) -> Option<String> {
    let r = report?;
    let mut out = String::new();
    for f in r.denied() {
        out.push_str(&format!(
            "DENY  {} ({}): {}\n",
            f.file.display(),
            f.rule,
            f.msg
        ));
    }
    for f in r.warnings() {
        out.push_str(&format!(
            "WARN  {} ({}): {}\n",
            f.file.display(),
            f.rule,
            f.msg
        ));
    }
    let (d, w) = (r.denied().count(), r.warnings().count());
    out.push_str(&format!(
        "Policies: {} file{} checked, {d} denied, {w} warning{}.\n",
        r.files.len(),
        if r.files.len() == 1 { "" } else { "s" },
        if w == 1 { "" } else { "s" },
    ));
    Some(out)
}

/// Print the policy findings: after the text plan, or on stderr beside JSON.
pub fn print_policy(report: Option<&Report>, json: bool) -> miette::Result<()> {
    let Some(text) = policy_text(report) else {
        return Ok(());
    };
    match json {
        true => {
            out::eprintln(text.trim_end());
            Ok(())
        }
        false => out::print(&format!("\n{text}")),
    }
}

/// Colour on a terminal without `NO_COLOR`.
pub fn style() -> Style {
    Style {
        colour: out::stdout_colour(),
    }
}

/// The plan as text, markdown, kiln's JSON or Terraform's, with what the policies said (after
/// the text, inside the markdown, on stderr beside JSON).
pub fn print_plan(
    plan: &Plan,
    json: Option<JsonKind>,
    format: ViewFormat,
    policy: Option<&Report>,
) -> miette::Result<()> {
    match (json, format) {
        (None, ViewFormat::Text) => {
            out::print(&render::text(plan, style()))?;
            print_policy(policy, false)
        }
        (None, ViewFormat::Markdown) => out::print(&markdown::markdown(plan, policy)),
        (Some(kind), _) => {
            out::println(&match kind {
                JsonKind::Kiln => render::json(plan),
                JsonKind::Terraform => terraform::json(plan),
            })?;
            print_policy(policy, true)
        }
    }
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        let dir = args.dir.checked()?;
        let s = super::open(&dir, &args.common, args.parallelism.parallelism).await?;
        let req = PlanRequest {
            refresh: args.refresh,
            refresh_only: args.refresh_only,
            targets: args.targets.clone(),
            excludes: args.excludes.clone(),
            replace: args.replace.iter().cloned().collect(),
            lock_timeout: args.lock.lock_timeout,
            observe: args.out.is_some()
                || args.json.json == Some(JsonKind::Terraform)
                || args.format == ViewFormat::Markdown,
            policy_dirs: args.policy.dirs.clone(),
        };
        let ops::plan::Checked { plan, policy } = ops::plan::plan(&s, &req).await?;
        print_plan(&plan, args.json.json, args.format, policy.as_ref())?;
        if let Some(out) = &args.out {
            SavedPlan::new(&dir, plan.clone()).write(out)?;
            if args.json.json.is_none() && args.format == ViewFormat::Text {
                out::println(&format!(
                    "\nSaved the plan to {}: apply exactly it with `kiln apply {}`",
                    out.display(),
                    out.display()
                ))?;
            }
        }
        if let Err(denied) = ops::policy::enforce(policy.as_ref()) {
            out::diagnostic(&denied);
            return Ok(ExitCode::FAILURE);
        }
        let code = if args.detailed_exitcode && plan.pending() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
        // The process exits now: the plan and the manifest go back to the system with it, not
        // freed one allocation at a time (~5 % of a no-change plan of 10,000 instances).
        std::mem::forget(plan);
        s.end_of_process();
        Ok(code)
    })
}
