//! State: the versioned record of what kiln manages, kept like a small database.
//!
//! `state/<env>.json` holds a format version, a lineage fixed at creation, a serial that rises by
//! one with every write, and per resource address its kind, OCID, region, compartment, last etag,
//! last read attributes, the create-time inputs OCI does not return, any pending create (the
//! retry token that makes a crashed create safe to resend), and for instances the network facts of
//! the primary VNIC ([`Network`]: what `kiln output` prints). Writes are atomic (temp file, fsync,
//! rename, fsync of the directory), mode 0600, and keep the previous version as `<env>.json.backup`.
//! An apply records each commit by appending the records it changed to `<env>.json.journal`, and
//! folds the journal into the state at its end ([`journal`], [`Commits`]): a commit costs the
//! size of the change, not of the state.
//! One writer at a time: an OS file lock on `<env>.json.lock` plus a lock record inside it (who,
//! host, pid, operation, since) so a waiting kiln can name the holder. Every write is a
//! compare-and-swap by construction, so a lock broken by `kiln force-unlock --force` can make the
//! old holder's writes fail but never lose or roll back anyone's: the local store compares and
//! writes under a short OS lock on the state folder ([`gate`]), the remote store with `If-Match`.
//! See `state/README.md`.
//!
//! [`StateStore`] is the one seam. Behind it: the local file store ([`local`]), the remote store on
//! OCI Object Storage ([`remote`]: compare-and-swap writes with `If-Match`, a lock object created
//! with `If-None-Match: *`) for teams whose CI runners share one state, and an in-memory store
//! for tests.
//!
//! Where things are: the format ([`State`], [`ResourceState`]) in `format`, its errors
//! ([`StateError`]) in `error`, the store dispatch ([`StateStore`], [`MemoryStore`]) in `store`,
//! the lock handle ([`StateLock`]) in `lock`, an apply's group commits ([`Commits`]) in `commits`,
//! the loader's checks in `check`, and the backends in [`local`] and [`remote`].

mod check;
mod commits;
mod error;
mod format;
mod gate;
pub mod journal;
pub mod local;
mod lock;
pub mod remote;
mod store;

pub use check::address_kind;
/// Parse and check a state document (`path` names it in errors): the loader of every store.
pub use check::parse;
pub use commits::Commits;
pub use error::StateError;
pub(crate) use format::serialise;
pub use format::{
    Deposed, Network, PendingCreate, ResourceKind, ResourceState, Retained, State, FORMAT_VERSION,
    OLDEST_FORMAT_VERSION, TOKEN_LIFETIME_HOURS, VERSION_TAG,
};
pub use local::LocalStore;
pub use lock::{LockInfo, LockReleaser, StateLock};
pub use remote::RemoteStore;
use store::{injected, is_version};
pub use store::{validate_env, MemoryStore, StateStore, Unlocked};

pub use crate::raw_json::RawJson;
