//! The state verbs: `state list|show|rm|mv|migrate`, `force-unlock` and `output` — each opens the
//! state (the manifest's `[backend]`, or the local file), locks it when it writes, and returns
//! what it found or did.

use std::path::{Path, PathBuf};
use std::time::Duration;

use miette::{miette, IntoDiagnostic};

use crate::emulator::embedded::EmbeddedCloud;
use crate::manifest::{Backend, Problem};
use crate::state::{LockInfo, State, StateError, StateStore, Unlocked};

use super::session::{self, Open};

/// The stores a state verb works on; keeps the embedded emulator alive.
pub struct Stores {
    /// The manifest's store (its `[backend]`, or the local file).
    pub store: StateStore,
    /// The local file store.
    pub local: StateStore,
    /// The manifest's warnings (for the caller to show).
    pub warnings: Vec<Problem>,
    /// The manifest directory.
    dir: PathBuf,
    _embedded: Option<EmbeddedCloud>,
}

impl Stores {
    /// The stores of the manifest in `dir` (which must exist): its `[backend]` when it has a
    /// `kiln.toml`, and the local file.
    pub async fn open(dir: &Path, o: &Open) -> miette::Result<Stores> {
        session::manifest_dir(dir)?;
        let manifest = match dir.join("kiln.toml").exists() {
            true => Some(session::load_manifest(dir, o.env.as_deref())?),
            false => None,
        };
        let state_dir = o.state_dir.as_deref();
        let local = match &manifest {
            Some(m) => StateStore::local(&m.dir, state_dir, &m.env)?,
            None => StateStore::local(dir, state_dir, o.env.as_deref().unwrap_or("default"))?,
        };
        let (store, embedded) = match &manifest {
            Some(m) if m.backend != Backend::Local => {
                let conn = session::connect(m, dir, o).await?;
                let store = session::state_store(m, state_dir, &conn)?;
                (store, conn.embedded)
            }
            _ => (local.clone(), None),
        };
        Ok(Stores {
            store,
            local,
            warnings: manifest.map(|m| m.warnings).unwrap_or_default(),
            dir: dir.to_path_buf(),
            _embedded: embedded,
        })
    }

    /// Whether the manifest keeps its state in a remote `[backend]`.
    pub fn remote(&self) -> bool {
        matches!(self.store, StateStore::Remote(_))
    }

    /// The state as it is (no lock: a reader), empty when there is none.
    pub async fn read(&self) -> miette::Result<State> {
        Ok(self.store.load().await?.unwrap_or_default())
    }
}

/// One line of `kiln state list`.
pub struct Listed {
    pub address: String,
    pub id: Option<String>,
    /// A create was sent (or about to be) whose outcome is not recorded yet.
    pub pending: bool,
}

/// `kiln state list`.
pub async fn list(stores: &Stores) -> miette::Result<Vec<Listed>> {
    let state = stores.read().await?;
    Ok(state
        .resources
        .iter()
        .map(|(a, r)| Listed {
            address: a.clone(),
            id: r.id.clone(),
            pending: r.pending_create.is_some(),
        })
        .collect())
}

/// `kiln state show ADDR`: the record as JSON.
pub async fn show(stores: &Stores, address: &str) -> miette::Result<serde_json::Value> {
    let state = stores.read().await?;
    let r = state.resources.get(address).ok_or_else(|| {
        miette!(
            help = "see `kiln state list`",
            "`{address}` is not in the state"
        )
    })?;
    // (through a value: the recorded attributes are kept as compact text)
    serde_json::to_value(r).into_diagnostic()
}

/// Lock, load (a state must exist), change, save, release: the shape of every state edit. The
/// lock is released on every path (by its drop when `edit` refuses).
async fn edit(
    store: &StateStore,
    operation: &str,
    lock_timeout: Duration,
    edit: impl FnOnce(&mut State) -> miette::Result<()>,
) -> miette::Result<()> {
    let lock = store.lock(LockInfo::new(operation), lock_timeout).await?;
    let mut state = store
        .load()
        .await?
        .ok_or_else(|| miette!("there is no state at `{}`", store.describe()))?;
    edit(&mut state)?;
    store.save(&lock, &mut state).await?;
    Ok(lock.release().await?)
}

/// `kiln state rm ADDR...`: forget resources (they stay in OCI). All or nothing.
pub async fn rm(
    stores: &Stores,
    addresses: &[String],
    lock_timeout: Duration,
) -> miette::Result<()> {
    edit(&stores.store, "state rm", lock_timeout, |state| {
        for a in addresses {
            if state.resources.remove(a).is_none() {
                return Err(miette!(
                    help = "see `kiln state list`",
                    "`{a}` is not in the state; nothing was changed"
                ));
            }
        }
        Ok(())
    })
    .await
}

/// `kiln state mv FROM TO`: rename an address.
pub async fn mv(
    stores: &Stores,
    from: &str,
    to: &str,
    lock_timeout: Duration,
) -> miette::Result<()> {
    edit(&stores.store, "state mv", lock_timeout, |state| {
        if state.resources.contains_key(to) {
            return Err(miette!(
                "`{to}` is already in the state; nothing was changed"
            ));
        }
        if from.split('.').next() != to.split('.').next() {
            return Err(miette!(
                "`{from}` and `{to}` are different kinds; nothing was changed"
            ));
        }
        let r = state.resources.remove(from).ok_or_else(|| {
            miette!(
                help = "see `kiln state list`",
                "`{from}` is not in the state"
            )
        })?;
        // The pending create, deposed objects and the address its resources are tagged with go
        // with it (the next plan retags them).
        state.resources.insert(to.to_string(), r.renamed(from, to));
        Ok(())
    })
    .await
}

/// Which way `kiln state migrate` copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ToBackend,
    ToLocal,
}

/// What `kiln state migrate` did.
pub struct Migrated {
    pub from: String,
    pub to: String,
    /// The state copied; `None` when the destination already held the same version.
    pub copied: Option<State>,
}

/// `kiln state migrate --to-backend|--to-local`.
pub async fn migrate(
    stores: &Stores,
    direction: Direction,
    lock_timeout: Duration,
) -> miette::Result<Migrated> {
    if !stores.remote() {
        return Err(miette!(
            help = "add `[backend] kind = \"object_storage\"` with `namespace` and `bucket` to kiln.toml first",
            "`{}` has no remote `[backend]` to migrate to or from",
            stores.dir.join("kiln.toml").display()
        ));
    }
    let (from, to) = match direction {
        Direction::ToBackend => (&stores.local, &stores.store),
        Direction::ToLocal => (&stores.store, &stores.local),
    };
    Ok(Migrated {
        from: from.describe(),
        to: to.describe(),
        copied: copy(from, to, lock_timeout).await?,
    })
}

/// Copy `from` to `to` with lineage and serial kept, both locked. Refuses when `to` holds another
/// lineage or a newer serial; `None` when `to` already holds the same version.
pub async fn copy(
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

/// `kiln force-unlock [LOCK_ID]`: the lock removed, with its holder (`None`: there was no
/// lock).
pub async fn force_unlock(
    stores: &Stores,
    lock_id: Option<&str>,
    force: bool,
) -> miette::Result<Option<Unlocked>> {
    Ok(stores.store.force_unlock(lock_id, force).await?)
}
