//! `kiln state list|show|rm|mv|migrate` and `kiln force-unlock`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::{miette, IntoDiagnostic};

use crate::ops::{self, state::Direction, state::Stores};

use super::args::{is_address, Common, Dir, LockWait, Verbosity};
use super::out;

/// Which state: the manifest's `[backend]` when `DIR/kiln.toml` exists, else `state/<env>.json`.
#[derive(Clone, Debug, clap::Args)]
pub struct StateArgs {
    #[command(flatten)]
    pub dir: Dir,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

impl StateArgs {
    pub async fn stores(&self) -> miette::Result<Stores> {
        stores(&self.dir.checked()?, &self.common).await
    }
}

/// The stores of the manifest in `dir`, showing the manifest's warnings.
pub async fn stores(dir: &Path, common: &Common) -> miette::Result<Stores> {
    let stores = Stores::open(dir, &common.open(None)).await?;
    for w in &stores.warnings {
        out::diagnostic(w);
    }
    Ok(stores)
}

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Every address in state, with its OCID.
    List {
        #[command(flatten)]
        at: StateArgs,
    },
    /// One resource's record as JSON.
    Show {
        /// The resource's address, e.g. `instance.web` or `'instance.web[0]'`
        #[arg(value_name = "ADDR")]
        address: String,
        #[command(flatten)]
        at: StateArgs,
    },
    /// Forget resources (they stay in OCI).
    #[command(override_usage = "kiln state rm [OPTIONS] <ADDR>... [DIR]")]
    Rm {
        /// The addresses to forget, then the manifest directory (a last argument that is not an
        /// address) [default: .]
        #[arg(value_name = "ADDR", required = true, num_args = 1..)]
        args: Vec<String>,
        #[arg(long = "dir", value_name = "DIR", hide = true)]
        dir_flag: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        lock: LockWait,
        #[command(flatten)]
        verbosity: Verbosity,
    },
    /// Rename an address (after renaming a table in the manifest).
    Mv {
        /// The address in the state now
        #[arg(value_name = "FROM")]
        from: String,
        /// The address it gets
        #[arg(value_name = "TO")]
        to: String,
        #[command(flatten)]
        at: StateArgs,
        #[command(flatten)]
        lock: LockWait,
    },
    /// Move the state between the local file and the manifest's `[backend]`, keeping its lineage
    /// and serial.
    Migrate {
        /// Copy `state/<env>.json` to the `[backend]` of kiln.toml
        #[arg(
            long,
            required_unless_present = "to_local",
            conflicts_with = "to_local"
        )]
        to_backend: bool,
        /// Copy the `[backend]` state to `state/<env>.json`
        #[arg(long)]
        to_local: bool,
        #[command(flatten)]
        at: StateArgs,
        #[command(flatten)]
        lock: LockWait,
    },
}

impl StateCommand {
    pub fn verbose(&self) -> u8 {
        match self {
            StateCommand::List { at }
            | StateCommand::Show { at, .. }
            | StateCommand::Mv { at, .. }
            | StateCommand::Migrate { at, .. } => at.verbosity.verbose,
            StateCommand::Rm { verbosity, .. } => verbosity.verbose,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ForceUnlockArgs {
    /// Only remove the lock with this id (a lone argument that is a directory is the DIR)
    #[arg(value_name = "LOCK_ID")]
    pub lock_id: Option<String>,
    #[command(flatten)]
    pub at: StateArgs,
    /// Remove the lock even though the kiln holding it may still be running (it holds the OS
    /// lock on this machine, or renewed its remote lease recently): its later state saves are
    /// then refused; they never overwrite
    #[arg(long)]
    pub force: bool,
}

/// `kiln state rm ADDR... [DIR]`: the last argument is the directory when it is not an address.
fn rm_args(args: &[String], dir_flag: Option<&Path>) -> miette::Result<(Vec<String>, PathBuf)> {
    let (addresses, dir) = match args.split_last() {
        Some((last, rest)) if !rest.is_empty() && !is_address(last) => {
            if let Some(d) = dir_flag {
                return Err(miette!(
                    "two directories: `{last}` and `--dir {}`",
                    d.display()
                ));
            }
            (rest.to_vec(), PathBuf::from(last))
        }
        _ => (
            args.to_vec(),
            dir_flag
                .map(Path::to_path_buf)
                .unwrap_or_else(|| ".".into()),
        ),
    };
    if let Some(a) = addresses.iter().find(|a| !is_address(a)) {
        return Err(miette!(
            help = "`kiln state rm ADDR... [DIR]`, e.g. `kiln state rm instance.web infra`",
            "`{a}` is not an address (`instance.NAME` or `image.NAME`)"
        ));
    }
    super::args::manifest_dir(&dir)?;
    Ok((addresses, dir))
}

pub fn run(cmd: StateCommand) -> miette::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        match cmd {
            StateCommand::List { at } => {
                for l in ops::state::list(&at.stores().await?).await? {
                    let pending = if l.pending { " (create pending)" } else { "" };
                    let id = l.id.as_deref().unwrap_or("-");
                    out::println(&format!("{}\t{id}{pending}", l.address))?;
                }
            }
            StateCommand::Show { address, at } => {
                let v = ops::state::show(&at.stores().await?, &address).await?;
                out::println(&serde_json::to_string_pretty(&v).into_diagnostic()?)?;
            }
            StateCommand::Rm {
                args,
                dir_flag,
                common,
                lock,
                ..
            } => {
                let (addresses, dir) = rm_args(&args, dir_flag.as_deref())?;
                let stores = stores(&dir, &common).await?;
                ops::state::rm(&stores, &addresses, lock.lock_timeout).await?;
                out::println(&format!(
                    "Removed {} from the state (the resources stay in OCI)",
                    addresses.join(", ")
                ))?;
            }
            StateCommand::Mv { from, to, at, lock } => {
                ops::state::mv(&at.stores().await?, &from, &to, lock.lock_timeout).await?;
                out::println(&format!("Moved {from} to {to}"))?;
            }
            StateCommand::Migrate {
                to_backend,
                at,
                lock,
                ..
            } => {
                let direction = match to_backend {
                    true => Direction::ToBackend,
                    false => Direction::ToLocal,
                };
                let m =
                    ops::state::migrate(&at.stores().await?, direction, lock.lock_timeout).await?;
                match m.copied {
                    Some(s) => out::println(&format!(
                        "Copied the state (lineage {}, serial {}, {} resources) from {} to {}",
                        s.lineage,
                        s.serial,
                        s.resources.len(),
                        m.from,
                        m.to
                    ))?,
                    None => out::println(&format!(
                        "{} already holds this state (same lineage and serial); nothing to copy",
                        m.to
                    ))?,
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn force_unlock(args: ForceUnlockArgs) -> miette::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        let (lock_id, stores) = match (&args.lock_id, args.at.dir.path() == Path::new(".")) {
            // `kiln force-unlock DIR`: a lone argument that is a directory, not a lock id.
            (Some(x), true) if uuid::Uuid::parse_str(x).is_err() && Path::new(x).is_dir() => {
                (None, stores(Path::new(x), &args.at.common).await?)
            }
            _ => (args.lock_id.clone(), args.at.stores().await?),
        };
        match ops::state::force_unlock(&stores, lock_id.as_deref(), args.force).await? {
            Some(u) => out::println(&match u.stopped_renewing {
                Some(t) => format!(
                    "Removed the lock held by {}: the holder stopped renewing its lease at {}",
                    u.holder.describe(),
                    t.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => format!("Removed the lock held by {}", u.holder.describe()),
            })?,
            None => out::println(&format!("{} was not locked", stores.store.describe()))?,
        }
        Ok(ExitCode::SUCCESS)
    })
}
