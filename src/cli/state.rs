//! `kiln state list|show|rm|mv` and `kiln force-unlock`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use miette::{miette, IntoDiagnostic};

use crate::state::{LockInfo, StateStore};

/// Which state file.
#[derive(Clone, Debug, clap::Args)]
pub struct StateArgs {
    /// Manifest directory.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    #[arg(long)]
    pub env: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[arg(long, default_value = "0s", value_parser = super::session::parse_duration)]
    pub lock_timeout: Duration,
}

impl StateArgs {
    pub fn store(&self) -> StateStore {
        StateStore::local(
            &self.dir,
            self.state_dir.as_deref(),
            self.env.as_deref().unwrap_or("default"),
        )
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
}

#[derive(Debug, clap::Args)]
pub struct ForceUnlockArgs {
    /// Only remove the lock with this id.
    pub lock_id: Option<String>,
    #[command(flatten)]
    pub at: StateArgs,
}

pub fn run(cmd: StateCommand) -> miette::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        match cmd {
            StateCommand::List { at } => {
                let state = at.store().load().await?.unwrap_or_default();
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
                let state = at.store().load().await?.unwrap_or_default();
                let r = state.resources.get(&address).ok_or_else(|| {
                    miette!(
                        help = "see `kiln state list`",
                        "`{address}` is not in the state"
                    )
                })?;
                println!("{}", serde_json::to_string_pretty(r).into_diagnostic()?);
                Ok(ExitCode::SUCCESS)
            }
            StateCommand::Rm { addresses, at } => {
                let store = at.store();
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
                println!(
                    "Removed {} from the state (the resources stay in OCI)",
                    addresses.join(", ")
                );
                Ok(ExitCode::SUCCESS)
            }
            StateCommand::Mv { from, to, at } => {
                let store = at.store();
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
                println!("Moved {from} to {to}");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

pub fn force_unlock(args: ForceUnlockArgs) -> miette::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        let store = args.at.store();
        match store.force_unlock(args.lock_id.as_deref()).await? {
            Some(h) => println!("Removed the lock held by {}", h.describe()),
            None => println!("{} was not locked", store.describe()),
        }
        Ok(ExitCode::SUCCESS)
    })
}
