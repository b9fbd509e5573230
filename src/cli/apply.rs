//! `kiln apply [PATH]` and `kiln destroy [DIR]`: plan (or load a saved plan), confirm, execute.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use miette::{miette, IntoDiagnostic};

use crate::apply::execute::{self, ApplyOptions, Timeouts};
use crate::apply::progress::Progress;
use crate::apply::walk::StopFlag;
use crate::oci::watch::WaitReads;
use crate::plan::refresh::{make_plan, PlanOptions};
use crate::plan::render;
use crate::plan::saved::SavedPlan;
use crate::plan::Plan;
use crate::state::{LockInfo, State};

use super::session::{self, Common};
use super::signals::{Interrupts, INTERRUPTED};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A manifest directory (plan, show, confirm, apply) or a plan file saved by `kiln plan --out`.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Write what OCI says into the state (accepting drift, dropping what is gone) and change
    /// nothing in OCI.
    #[arg(long, conflicts_with = "replace")]
    pub refresh_only: bool,
    #[command(flatten)]
    pub opts: ApplyArgs,
}

#[derive(Debug, clap::Args)]
pub struct DestroyArgs {
    /// Manifest directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub opts: ApplyArgs,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ApplyArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    #[arg(long)]
    pub env: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[arg(long, default_value = "0s", value_parser = session::parse_duration)]
    pub lock_timeout: std::time::Duration,
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    #[arg(long)]
    pub profile: Option<String>,
    /// How to authenticate: api_key, security_token, resource_principal or instance_principal
    /// (default: `OCI_CLI_AUTH`, then the manifest's `auth`, then the profile's).
    #[arg(long, value_name = "METHOD", value_parser = session::parse_auth)]
    pub auth: Option<crate::oci::auth::AuthMethod>,
    /// Actions run at once (default 10).
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// Only this resource (and what it depends on; for destroy, what depends on it); a fleet
    /// name means all its members; repeatable.
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Everything except this resource (and what depends on it; for destroy, what it depends
    /// on); a fleet name means all its members; repeatable.
    #[arg(long = "exclude", value_name = "ADDR")]
    pub excludes: Vec<String>,
    /// Replace this resource even if nothing changed; repeatable.
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Wait at most this long for an instance state (default 20m).
    #[arg(long, default_value = "20m", value_parser = session::parse_duration)]
    pub instance_timeout: std::time::Duration,
    /// Wait at most this long for an image to become AVAILABLE (default 2h).
    #[arg(long, default_value = "2h", value_parser = session::parse_duration)]
    pub image_timeout: std::time::Duration,
    /// How waits read what they wait for: `list` — the waits of one compartment share one
    /// listing per poll round (a lone wait reads with a Get); `get` — every wait reads its
    /// resource with its own Get each round, as per-resource tools do (more API calls; for
    /// comparison, or an API that lists slowly).
    #[arg(long, value_enum, default_value = "list")]
    pub wait_reads: WaitReadsArg,
}

/// `--wait-reads`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitReadsArg {
    List,
    Get,
}

impl From<WaitReadsArg> for WaitReads {
    fn from(a: WaitReadsArg) -> WaitReads {
        match a {
            WaitReadsArg::List => WaitReads::List,
            WaitReadsArg::Get => WaitReads::Get,
        }
    }
}

impl ApplyArgs {
    fn common(&self, dir: PathBuf) -> Common {
        Common {
            dir,
            env: self.env.clone(),
            state_dir: self.state_dir.clone(),
            lock_timeout: self.lock_timeout,
            config_file: self.config_file.clone(),
            profile: self.profile.clone(),
            auth: self.auth,
            parallelism: self.parallelism,
        }
    }
}

/// Ask for `yes` on the terminal. The question is read on a thread of its own, so an interrupt
/// (`stop`) cancels it at once.
async fn confirm(what: &str, auto_approve: bool, stop: &StopFlag) -> miette::Result<bool> {
    if auto_approve {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(miette!(
            help = "pass `--auto-approve` to apply without a prompt (e.g. in CI)",
            "refusing to {what} without confirmation: standard input is not a terminal"
        ));
    }
    print!("\nDo you want to {what}? Only `yes` is accepted: ");
    std::io::stdout().flush().into_diagnostic()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    tokio::select! {
        line = rx => Ok(line.into_diagnostic()?.into_diagnostic()?.trim() == "yes"),
        _ = stop.stopped() => Ok(false),
    }
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    if args.path.is_file() {
        if args.refresh_only {
            return Err(miette!(
                help = "save a refresh-only plan with `kiln plan --refresh-only --out FILE`",
                "`--refresh-only` is for a manifest directory; a saved plan is applied as it was made"
            ));
        }
        let saved = SavedPlan::read(&args.path)?;
        let mut opts = args.opts.clone();
        if opts.env.is_none() && saved.plan.env != "default" {
            opts.env = Some(saved.plan.env.clone());
        }
        return execute_cmd(
            opts.common(saved.manifest_dir.clone()),
            &opts,
            Mode::Saved(Box::new(saved.plan)),
        );
    }
    let mode = if args.refresh_only {
        Mode::RefreshOnly
    } else {
        Mode::Apply
    };
    execute_cmd(args.opts.common(args.path.clone()), &args.opts, mode)
}

pub fn destroy(args: DestroyArgs) -> miette::Result<ExitCode> {
    execute_cmd(
        args.opts.common(args.dir.clone()),
        &args.opts,
        Mode::Destroy,
    )
}

enum Mode {
    Apply,
    /// `kiln apply --refresh-only`.
    RefreshOnly,
    Destroy,
    Saved(Box<Plan>),
}

fn execute_cmd(common: Common, opts: &ApplyArgs, mode: Mode) -> miette::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        // Before the lock: no signal may find a lock it cannot release.
        let interrupts = Interrupts::install();
        let stop = interrupts.stop.clone();
        let s = session::open(&common).await?;
        let operation = if matches!(mode, Mode::Destroy) {
            "destroy"
        } else {
            "apply"
        };
        let lock = s
            .store
            .lock(LockInfo::new(operation), common.lock_timeout)
            .await?;
        interrupts.hold(&lock);
        let state = s.store.load().await?;
        let plan = match mode {
            Mode::Saved(plan) => {
                SavedPlan::new(&common.dir, (*plan).clone()).check_state(
                    state.as_ref().map(|s| s.lineage.as_str()),
                    state.as_ref().map(|s| s.serial).unwrap_or(0),
                )?;
                *plan
            }
            Mode::Apply | Mode::RefreshOnly | Mode::Destroy => {
                let refresh_only = matches!(mode, Mode::RefreshOnly);
                let popts = PlanOptions {
                    refresh: true,
                    targets: opts.targets.clone(),
                    excludes: opts.excludes.clone(),
                    refresh_only,
                    destroy: matches!(mode, Mode::Destroy),
                    replace: opts.replace.iter().cloned().collect(),
                    parallelism: s.parallelism,
                    endpoint: s.endpoint.clone(),
                };
                let plan = make_plan(&s.manifest, state.as_ref(), Some(&s.clients), &popts).await?;
                print!("{}", render::text(&plan, super::plan::style()));
                if plan.is_noop() {
                    lock.release().await?;
                    return Ok(ExitCode::SUCCESS);
                }
                let what = match mode {
                    Mode::Destroy => "destroy these resources",
                    Mode::RefreshOnly => "write what OCI says into the state",
                    _ => "perform these actions",
                };
                // A refresh-only apply asks before it accepts drift (or forgets what is gone).
                let ask = !plan.changes.is_empty()
                    || (refresh_only && !(plan.drift.is_empty() && plan.forget.is_empty()));
                if ask && !confirm(what, opts.auto_approve, &stop).await? {
                    lock.release().await?;
                    println!("\nApply cancelled.");
                    return Ok(if interrupts.interrupted() {
                        ExitCode::from(INTERRUPTED)
                    } else {
                        ExitCode::FAILURE
                    });
                }
                plan
            }
        };
        let state = state.unwrap_or_else(State::new);
        let progress = Arc::new(Progress::for_stderr());
        interrupts.report_to(progress.clone());
        let aopts = ApplyOptions {
            parallelism: s.parallelism,
            timeouts: Timeouts {
                instance: opts.instance_timeout,
                image: opts.image_timeout,
                terminate: opts.instance_timeout,
                ..Timeouts::default()
            },
            wait_reads: opts.wait_reads.into(),
        };
        let (_state, report) = execute::apply(
            &plan,
            s.clients.clone(),
            s.store.clone(),
            lock,
            state,
            &aopts,
            &stop,
            progress,
        )
        .await;
        for (label, e) in &report.failed {
            eprintln!("\n✗ {label} failed:\n{e}");
        }
        for w in &report.warnings {
            eprintln!("\nwarning: {w}");
        }
        for (label, because) in &report.skipped {
            eprintln!("- {label} skipped: `{because}` failed");
        }
        println!("\n{}", report.summary_line());
        Ok(if interrupts.interrupted() {
            ExitCode::from(INTERRUPTED)
        } else if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}
