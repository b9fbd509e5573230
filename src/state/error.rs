//! What can go wrong with a state, its journal, its lock or its store ([`StateError`]): each
//! says what was left intact and what to do next.

use super::FORMAT_VERSION;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    #[error("the state journal `{path}` cannot be trusted: {reason}")]
    #[diagnostic(code(kiln::state::journal), help("nothing was overwritten; the journal holds the commits of an apply that did not finish (one line each: a checksum, then the records it changed), the state file beside it the state before that apply — inspect both (`state/README.md`); what that apply created is named in the journal, and `kiln import` adopts it"))]
    Journal { path: String, reason: String },
    #[error("cannot read the state `{path}`: {source}")]
    #[diagnostic(code(kiln::state::unreadable))]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the state `{path}` is corrupt or truncated: {reason}")]
    #[diagnostic(code(kiln::state::corrupt), help("nothing was overwritten; the previous version is kept next to it as `.backup` — inspect it and copy it over if it is good"))]
    Corrupt { path: String, reason: String },
    #[error(
        "the state `{path}` has format version {found}, this kiln reads version {FORMAT_VERSION}"
    )]
    #[diagnostic(
        code(kiln::state::version),
        help("use the kiln version that wrote it (or a newer one); nothing was overwritten")
    )]
    Version { path: String, found: u32 },
    #[error("cannot write the state `{path}`: {source}")]
    #[diagnostic(
        code(kiln::state::unwritable),
        help("the previous state is intact; fix the problem and run again")
    )]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the state `{path}` is locked by {holder}")]
    #[diagnostic(code(kiln::state::locked), help("wait for it to finish (`--lock-timeout 5m`), or if that process is gone, run `kiln force-unlock`"))]
    Locked { path: String, holder: String },
    #[error("the state `{path}` is locked by {holder}, which is still running")]
    #[diagnostic(
        code(kiln::state::holder_alive),
        help("wait for it to finish; `kiln force-unlock --force` breaks the lock anyway (its later saves are then refused, never overwriting)")
    )]
    HolderAlive { path: String, holder: String },
    #[error("the state `{path}` is locked by {holder}, which renewed its lease: it holds until {until} unless renewed again")]
    #[diagnostic(
        code(kiln::state::lease_held),
        help("the holder renews its lease while it runs: wait for it to finish; if it is gone, its lease runs out by {until} and `kiln force-unlock` then removes it (or the next run takes it over); `kiln force-unlock --force` removes it now (its later saves are then refused, never overwriting)")
    )]
    LeaseHeld {
        path: String,
        holder: String,
        until: String,
    },
    #[error("the state `{path}` is locked by {holder}, whose lock records no lease (a kiln without leases, or an unreadable record): nothing tells whether it still runs")]
    #[diagnostic(
        code(kiln::state::no_lease),
        help("if that kiln is gone, `kiln force-unlock --force` removes the lock (a holder still running then has its later saves refused, never overwriting)")
    )]
    NoLease { path: String, holder: String },
    #[error("the state `{path}` was written by someone else since it was read (lineage {found_lineage} serial {found_serial}, expected lineage {lineage} serial {serial})")]
    #[diagnostic(
        code(kiln::state::conflict),
        help("nothing was overwritten; run the command again")
    )]
    Conflict {
        path: String,
        lineage: String,
        serial: u64,
        found_lineage: String,
        found_serial: u64,
    },
    #[error("cannot use the remote state `{path}`")]
    #[diagnostic(
        code(kiln::state::remote),
        help("the stored state is intact (writes are compare-and-swap); check the backend's namespace, bucket and credentials, then run again")
    )]
    Remote {
        path: String,
        #[source]
        source: crate::oci::OciError,
    },
    #[error("`{env}` is not an environment name")]
    #[diagnostic(
        code(kiln::state::env),
        help("environment names are letters, digits, `-`, `_` and `.`, at most 64 (`envs/<ENV>.toml`, `state/<ENV>.json`)")
    )]
    BadEnv { env: String },
    #[error("cannot migrate the state: {reason}")]
    #[diagnostic(
        code(kiln::state::migrate),
        help("nothing was written; compare the two states with `kiln state list`")
    )]
    Migrate { reason: String },
}
