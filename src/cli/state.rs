//! `kiln state list|show|rm|mv|migrate` and `kiln force-unlock`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use miette::{miette, IntoDiagnostic};

use crate::emulator::RunningEmulator;
use crate::manifest::Backend;
use crate::state::{LockInfo, State, StateError, StateStore};

use super::args::{is_address, Common, Dir, LockWait, Verbosity};
use super::out;
use super::session;

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

/// The stores a state command works on; keeps the embedded emulator alive.
pub struct Stores {
    /// The manifest's store (its `[backend]`, or the local file).
    pub store: StateStore,
    /// The local file store.
    pub local: StateStore,
    _emulators: Vec<RunningEmulator>,
}

impl Stores {
    /// Whether the manifest keeps its state in a remote `[backend]`.
    pub fn remote(&self) -> bool {
        matches!(self.store, StateStore::Remote(_))
    }
}

impl StateArgs {
    pub async fn stores(&self) -> miette::Result<Stores> {
        stores(&self.dir.checked()?, &self.common).await
    }
}

/// The stores of the manifest in `dir` (which must exist): its `[backend]` when it has a
/// `kiln.toml`, and the local file.
pub async fn stores(dir: &Path, common: &Common) -> miette::Result<Stores> {
    let manifest = match dir.join("kiln.toml").exists() {
        true => Some(session::load_manifest(dir, common.env())?),
        false => None,
    };
    let state_dir = common.state_dir.as_deref();
    let local = match &manifest {
        Some(m) => StateStore::local(&m.dir, state_dir, &m.env)?,
        None => StateStore::local(dir, state_dir, common.env().unwrap_or("default"))?,
    };
    let (store, emulator) = match &manifest {
        Some(m) if m.backend != Backend::Local => {
            let conn = session::connect(
                m,
                &session::state_dir(dir, state_dir),
                common.config_file.as_deref(),
                common.profile.as_deref(),
                common.auth,
            )
            .await?;
            let store = session::state_store(m, state_dir, &conn)?;
            (store, conn.emulators)
        }
        _ => (local.clone(), Vec::new()),
    };
    Ok(Stores {
        store,
        local,
        _emulators: emulator,
    })
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
                let stores = at.stores().await?;
                let store = &stores.store;
                let state = store.load().await?.unwrap_or_default();
                for (addr, r) in &state.resources {
                    let pending = if r.pending_create.is_some() {
                        " (create pending)"
                    } else {
                        ""
                    };
                    out::println(&format!("{addr}\t{}{pending}", r.id.as_deref().unwrap_or("-")))?;
                }
                Ok(ExitCode::SUCCESS)
            }
            StateCommand::Show { address, at } => {
                let stores = at.stores().await?;
                let store = &stores.store;
                let state = store.load().await?.unwrap_or_default();
                let r = state.resources.get(&address).ok_or_else(|| {
                    miette!(
                        help = "see `kiln state list`",
                        "`{address}` is not in the state"
                    )
                })?;
                // (through a value: the recorded attributes are kept as compact text)
                let v = serde_json::to_value(r).into_diagnostic()?;
                out::println(&serde_json::to_string_pretty(&v).into_diagnostic()?)?;
                Ok(ExitCode::SUCCESS)
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
                let store = &stores.store;
                let lock = store
                    .lock(LockInfo::new("state rm"), lock.lock_timeout)
                    .await?;
                let mut state = store
                    .load()
                    .await?
                    .ok_or_else(|| miette!("there is no state at `{}`", store.describe()))?;
                for a in &addresses {
                    if state.resources.remove(a).is_none() {
                        return Err(miette!(
                            help = "see `kiln state list`",
                            "`{a}` is not in the state; nothing was changed"
                        ));
                    }
                }
                store.save(&lock, &mut state).await?;
                lock.release().await?;
                out::println(&format!(
                    "Removed {} from the state (the resources stay in OCI)",
                    addresses.join(", ")
                ))?;
                Ok(ExitCode::SUCCESS)
            }
            StateCommand::Mv { from, to, at, lock } => {
                let stores = at.stores().await?;
                let store = &stores.store;
                let lock = store
                    .lock(LockInfo::new("state mv"), lock.lock_timeout)
                    .await?;
                let mut state = store
                    .load()
                    .await?
                    .ok_or_else(|| miette!("there is no state at `{}`", store.describe()))?;
                if state.resources.contains_key(&to) {
                    return Err(miette!(
                        "`{to}` is already in the state; nothing was changed"
                    ));
                }
                let (kf, kt) = (from.split('.').next(), to.split('.').next());
                if kf != kt {
                    return Err(miette!(
                        "`{from}` and `{to}` are different kinds; nothing was changed"
                    ));
                }
                let r = state.resources.remove(&from).ok_or_else(|| {
                    miette!(
                        help = "see `kiln state list`",
                        "`{from}` is not in the state"
                    )
                })?;
                state.resources.insert(to.clone(), r);
                store.save(&lock, &mut state).await?;
                lock.release().await?;
                out::println(&format!("Moved {from} to {to}"))?;
                Ok(ExitCode::SUCCESS)
            }
            StateCommand::Migrate {
                to_backend,
                at,
                lock,
                ..
            } => {
                let stores = at.stores().await?;
                if !stores.remote() {
                    return Err(miette!(
                        help = "add `[backend] kind = \"object_storage\"` with `namespace` and `bucket` to kiln.toml first",
                        "`{}` has no remote `[backend]` to migrate to or from",
                        at.dir.path().join("kiln.toml").display()
                    ));
                }
                let (from, to) = if to_backend {
                    (&stores.local, &stores.store)
                } else {
                    (&stores.store, &stores.local)
                };
                let moved = migrate(from, to, lock.lock_timeout).await?;
                match moved {
                    Some(s) => out::println(&format!(
                        "Copied the state (lineage {}, serial {}, {} resources) from {} to {}",
                        s.lineage,
                        s.serial,
                        s.resources.len(),
                        from.describe(),
                        to.describe()
                    ))?,
                    None => out::println(&format!(
                        "{} already holds this state (same lineage and serial); nothing to copy",
                        to.describe()
                    ))?,
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// Copy `from` to `to` with lineage and serial kept, both locked. Refuses when `to` holds another
/// lineage or a newer serial; `None` when `to` already holds the same version.
pub async fn migrate(
    from: &StateStore,
    to: &StateStore,
    lock_timeout: Duration,
) -> miette::Result<Option<State>> {
    let from_lock = from
        .lock(LockInfo::new("state migrate"), lock_timeout)
        .await?;
    let to_lock = to
        .lock(LockInfo::new("state migrate"), lock_timeout)
        .await?;
    let state = from.load().await?.ok_or_else(|| StateError::Migrate {
        reason: format!("there is no state at `{}`", from.describe()),
    })?;
    let refuse = |reason: String| StateError::Migrate { reason };
    let result = match to.load().await? {
        Some(existing) if existing.lineage != state.lineage => Err(refuse(format!(
            "`{}` already holds a different state (lineage {}, serial {}) than `{}` (lineage {}, serial {})",
            to.describe(),
            existing.lineage,
            existing.serial,
            from.describe(),
            state.lineage,
            state.serial
        ))),
        Some(existing) if existing.serial > state.serial => Err(refuse(format!(
            "`{}` is newer (serial {}) than `{}` (serial {})",
            to.describe(),
            existing.serial,
            from.describe(),
            state.serial
        ))),
        Some(existing) if existing.serial == state.serial => {
            if existing == state {
                Ok(None)
            } else {
                Err(refuse(format!(
                    "`{}` and `{}` both have serial {} but differ",
                    to.describe(),
                    from.describe(),
                    state.serial
                )))
            }
        }
        _ => {
            to.write_exact(&to_lock, &state).await?;
            Ok(Some(state))
        }
    };
    to_lock.release().await?;
    from_lock.release().await?;
    Ok(result?)
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
        let store = &stores.store;
        match store.force_unlock(lock_id.as_deref(), args.force).await? {
            Some(u) => out::println(&match u.stopped_renewing {
                Some(t) => format!(
                    "Removed the lock held by {}: the holder stopped renewing its lease at {}",
                    u.holder.describe(),
                    t.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => format!("Removed the lock held by {}", u.holder.describe()),
            })?,
            None => out::println(&format!("{} was not locked", store.describe()))?,
        }
        Ok(ExitCode::SUCCESS)
    })
}
