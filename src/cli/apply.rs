//! `kiln apply [PATH]` and `kiln destroy [DIR]`: plan (or load a saved plan), confirm, execute.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use miette::{miette, IntoDiagnostic};

use crate::apply::execute::Timeouts;
use crate::apply::progress::Progress;
use crate::apply::walk::StopFlag;
use crate::oci::watch::WaitReads;
use crate::ops::{
    self,
    apply::{ApplyRequest, Kind},
};
use crate::plan::render;
use crate::plan::saved::SavedPlan;

use super::args::{manifest_dir, parse_duration, Common, Dir, LockWait, Parallelism, Verbosity};
use super::out;
use super::signals::{Interrupts, INTERRUPTED};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest directory (plan, show, confirm, apply), or a plan file saved by `kiln plan --out`
    #[arg(value_name = "DIR|PLANFILE", default_value = ".")]
    pub path: PathBuf,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub lock: LockWait,
    #[command(flatten)]
    pub parallelism: Parallelism,
    #[command(flatten)]
    pub run: RunArgs,
    /// Replace this resource even if nothing changed; repeatable
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Write what OCI says into the state (accepting drift, dropping what is gone) and change
    /// nothing in OCI
    #[arg(long, conflicts_with = "replace")]
    pub refresh_only: bool,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

#[derive(Debug, clap::Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub dir: Dir,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub lock: LockWait,
    #[command(flatten)]
    pub parallelism: Parallelism,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// What apply and destroy share.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Do not ask for confirmation
    #[arg(long)]
    pub auto_approve: bool,
    /// Only this resource (and what it depends on; for destroy, what depends on it); a fleet
    /// name means all its members; repeatable
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Everything except this resource (and what depends on it; for destroy, what it depends
    /// on); a fleet name means all its members; repeatable
    #[arg(long = "exclude", value_name = "ADDR")]
    pub excludes: Vec<String>,
    /// Wait at most this long for an instance to reach a state
    #[arg(long, value_name = "DURATION", default_value = "20m", value_parser = parse_duration)]
    pub instance_timeout: std::time::Duration,
    /// Wait at most this long for an image to become AVAILABLE
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = parse_duration)]
    pub image_timeout: std::time::Duration,
    /// How waits read what they wait for: `list` — the waits of one compartment share one
    /// listing per poll round (a lone wait reads with a Get); `get` — every wait reads its
    /// resource with its own Get each round, as per-resource tools do (more API calls; for
    /// comparison, or an API that lists slowly).
    #[arg(long, value_enum, default_value = "list")]
    pub wait_reads: WaitReadsArg,
    #[command(flatten)]
    pub policy: super::plan::PolicyArgs,
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

/// One run's settings, whichever command it came from.
struct Run<'a> {
    dir: PathBuf,
    common: Common,
    lock: &'a LockWait,
    parallelism: Option<usize>,
    run: &'a RunArgs,
    replace: &'a [String],
}

impl Run<'_> {
    fn request(&self, kind: Kind) -> ApplyRequest {
        let o = self.run;
        ApplyRequest {
            kind,
            targets: o.targets.clone(),
            excludes: o.excludes.clone(),
            replace: self.replace.iter().cloned().collect(),
            lock_timeout: self.lock.lock_timeout,
            timeouts: Timeouts {
                instance: o.instance_timeout,
                image: o.image_timeout,
                terminate: o.instance_timeout,
                ..Timeouts::default()
            },
            wait_reads: o.wait_reads.into(),
            policy_dirs: o.policy.dirs.clone(),
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
    out::print(&format!(
        "\nDo you want to {what}? Only `yes` is accepted: "
    ))?;
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
    let mut common = args.common.clone();
    // A file: a saved plan (a manifest file gets told to pass its directory).
    if args.path.is_file() && args.path.extension().is_none_or(|e| e != "toml") {
        if args.refresh_only {
            return Err(miette!(
                help = "save a refresh-only plan with `kiln plan --refresh-only --out FILE`",
                "`--refresh-only` is for a manifest directory; a saved plan is applied as it was made"
            ));
        }
        let saved = SavedPlan::read(&args.path)?;
        if common.env.env.is_none() && saved.plan.env != "default" {
            common.env.env = Some(saved.plan.env.clone());
        }
        let run = Run {
            dir: saved.manifest_dir.clone(),
            common,
            lock: &args.lock,
            parallelism: args.parallelism.parallelism,
            run: &args.run,
            replace: &args.replace,
        };
        return execute_cmd(run, Kind::Saved(Box::new(saved)));
    }
    manifest_dir(&args.path)?;
    let kind = if args.refresh_only {
        Kind::RefreshOnly
    } else {
        Kind::Apply
    };
    let run = Run {
        dir: args.path.clone(),
        common,
        lock: &args.lock,
        parallelism: args.parallelism.parallelism,
        run: &args.run,
        replace: &args.replace,
    };
    execute_cmd(run, kind)
}

pub fn destroy(args: DestroyArgs) -> miette::Result<ExitCode> {
    let run = Run {
        dir: args.dir.checked()?,
        common: args.common.clone(),
        lock: &args.lock,
        parallelism: args.parallelism.parallelism,
        run: &args.run,
        replace: &[],
    };
    execute_cmd(run, Kind::Destroy)
}

fn execute_cmd(r: Run<'_>, kind: Kind) -> miette::Result<ExitCode> {
    one_malloc_arena();
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        // Before the lock: no signal may find a lock it cannot release.
        let interrupts = Interrupts::install();
        let stop = interrupts.stop.clone();
        let s = super::open(&r.dir, &r.common, r.parallelism).await?;
        let saved = matches!(kind, Kind::Saved(_));
        let prepared =
            ops::apply::prepare(&s, &r.request(kind), |lock| interrupts.hold(lock)).await?;
        if !saved {
            out::print(&render::text(&prepared.plan, super::plan::style()))?;
        }
        super::plan::print_policy(prepared.policy.as_ref(), false)?;
        let prepared = prepared.refuse_if_denied().await?;
        if prepared.is_noop() {
            prepared.cancel().await?;
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(what) = prepared.question() {
            if !confirm(what, r.run.auto_approve, &stop).await? {
                prepared.cancel().await?;
                out::println("\nApply cancelled.")?;
                return Ok(if interrupts.interrupted() {
                    ExitCode::from(INTERRUPTED)
                } else {
                    ExitCode::FAILURE
                });
            }
        }
        let progress = Arc::new(Progress::for_stderr());
        interrupts.report_to(progress.clone());
        let report = prepared.execute(&stop, progress.clone()).await.report;
        progress.clear();
        for (label, e) in &report.failed {
            out::eprintln(&format!("\n✗ {label} failed:\n{e}"));
        }
        for w in &report.warnings {
            out::eprintln(&format!("\nwarning: {w}"));
        }
        for (label, because) in &report.skipped {
            out::eprintln(&format!("- {label} skipped: `{because}` failed"));
        }
        out::println(&format!("\n{}", report.summary_line()))?;
        Ok(if interrupts.interrupted() {
            ExitCode::from(INTERRUPTED)
        } else if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// An apply's allocations share one glibc arena. glibc gives each thread that meets a busy
/// arena one of its own (up to 8 per core); an apply's threads (the runtime's workers, the
/// blocking pool reading pages and writing the journal) then each keep freed memory the others
/// cannot reuse. A first apply of 10,000 launches peaked at 139–156 MiB RSS with the default and
/// 111 MiB with one arena, in the same wall time (BENCHMARKS.md section 6): an apply waits on
/// OCI, its threads seldom allocate at once. Not for `kiln plan`, whose threads parse the state
/// and the listings side by side (one arena made a no-change plan of 10,000 instances 15 %
/// slower). An explicit `MALLOC_ARENA_MAX` is left as it is.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` sets one of the allocator's parameters; no other thread runs yet
        // (the runtime is built after).
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
