//! `kiln state list|show|rm|mv|migrate` and `kiln force-unlock`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use miette::{miette, IntoDiagnostic};

use crate::emulator::RunningEmulator;
use crate::manifest::Backend;
use crate::state::{LockInfo, State, StateError, StateStore};

use super::session;

/// Which state: the manifest's `[backend]` when `DIR/kiln.toml` exists, else `state/<env>.json`.
#[derive(Clone, Debug, clap::Args)]
pub struct StateArgs {
    /// Manifest directory.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    #[arg(long)]
    pub env: Option<String>,
    /// Folder of the local state files (default: `<DIR>/state`).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[arg(long, default_value = "0s", value_parser = session::parse_duration)]
    pub lock_timeout: Duration,
    /// OCI config file, for a remote backend.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// OCI config profile, for a remote backend.
    #[arg(long)]
    pub profile: Option<String>,
    /// How to authenticate, for a remote backend (default: `OCI_CLI_AUTH`, then the manifest's
    /// `auth`, then the profile's).
    #[arg(long, value_name = "METHOD", value_parser = session::parse_auth)]
    pub auth: Option<crate::oci::auth::AuthMethod>,
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
        let manifest = match self.dir.join("kiln.toml").exists() {
            true => Some(session::load_manifest(&self.dir, self.env.as_deref())?),
            false => None,
        };
        let local = match &manifest {
            Some(m) => StateStore::local(&m.dir, self.state_dir.as_deref(), &m.env)?,
            None => StateStore::local(
                &self.dir,
                self.state_dir.as_deref(),
                self.env.as_deref().unwrap_or("default"),
            )?,
        };
        let (store, emulator) = match &manifest {
            Some(m) if m.backend != Backend::Local => {
                let conn = session::connect(
                    m,
                    &session::state_dir(&self.dir, self.state_dir.as_deref()),
                    self.config_file.as_deref(),
                    self.profile.as_deref(),
                    self.auth,
                )
                .await?;
                let store = session::state_store(m, self.state_dir.as_deref(), &conn)?;
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
}

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Every address in state, with its kind and OCID.
    List {
        #[command(flatten)]
        at: StateArgs,
    },
    /// One resource's record as JSON.
    Show {
        address: String,
        #[command(flatten)]
        at: StateArgs,
    },
    /// Forget resources (they stay in OCI).
    Rm {
        #[arg(required = true)]
        addresses: Vec<String>,
        #[command(flatten)]
        at: StateArgs,
    },
    /// Rename an address (after renaming a table in the manifest).
    Mv {
        from: String,
        to: String,
        #[command(flatten)]
        at: StateArgs,
    },
    /// Move the state between the local file and the manifest's `[backend]`, keeping its lineage
    /// and serial.
    Migrate {
        /// Copy `state/<env>.json` to the `[backend]` of kiln.toml.
        #[arg(
            long,
            required_unless_present = "to_local",
            conflicts_with = "to_local"
        )]
        to_backend: bool,
        /// Copy the `[backend]` state to `state/<env>.json`.
        #[arg(long)]
        to_local: bool,
        #[command(flatten)]
        at: StateArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct ForceUnlockArgs {
    /// Only remove the lock with this id.
    pub lock_id: Option<String>,
    /// Remove the lock even though the kiln holding it is still running on this machine (its
    /// later state saves are then refused; they never overwrite).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub at: StateArgs,
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
                    println!("{addr}\t{}{pending}", r.id.as_deref().unwrap_or("-"));
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
                println!("{}", serde_json::to_string_pretty(&v).into_diagnostic()?);
                Ok(ExitCode::SUCCESS)
            }
            StateCommand::Rm { addresses, at } => {
                let stores = at.stores().await?;
                let store = &stores.store;
                let lock = store
                    .lock(LockInfo::new("state rm"), at.lock_timeout)
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
                println!(
                    "Removed {} from the state (the resources stay in OCI)",
                    addresses.join(", ")
                );
                Ok(ExitCode::SUCCESS)
            }
            StateCommand::Mv { from, to, at } => {
                let stores = at.stores().await?;
                let store = &stores.store;
                let lock = store
                    .lock(LockInfo::new("state mv"), at.lock_timeout)
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
                println!("Moved {from} to {to}");
                Ok(ExitCode::SUCCESS)
            }
            StateCommand::Migrate { to_backend, at, .. } => {
                let stores = at.stores().await?;
                if !stores.remote() {
                    return Err(miette!(
                        help = "add `[backend] kind = \"object_storage\"` with `namespace` and `bucket` to kiln.toml first",
                        "`{}` has no remote `[backend]` to migrate to or from",
                        at.dir.join("kiln.toml").display()
                    ));
                }
                let (from, to) = if to_backend {
                    (&stores.local, &stores.store)
                } else {
                    (&stores.store, &stores.local)
                };
                let moved = migrate(from, to, at.lock_timeout).await?;
                match moved {
                    Some(s) => println!(
                        "Copied the state (lineage {}, serial {}, {} resources) from {} to {}",
                        s.lineage,
                        s.serial,
                        s.resources.len(),
                        from.describe(),
                        to.describe()
                    ),
                    None => println!(
                        "{} already holds this state (same lineage and serial); nothing to copy",
                        to.describe()
                    ),
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
        let stores = args.at.stores().await?;
        let store = &stores.store;
        match store
            .force_unlock(args.lock_id.as_deref(), args.force)
            .await?
        {
            Some(h) => println!("Removed the lock held by {}", h.describe()),
            None => println!("{} was not locked", store.describe()),
        }
        Ok(ExitCode::SUCCESS)
    })
}
