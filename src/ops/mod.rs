//! One flow per verb: what each command does from start to end — open the manifest, connect, lock,
//! load, plan, execute, save, release, on every exit path — returning plain data (a plan, a
//! report, a list) for the caller to print. The CLI (`crate::cli`) only parses arguments, asks for
//! confirmation and prints; the fault-enumeration suite and the simulation call these same
//! functions, so the flow they prove is the flow users run (cargo keeps its commands over
//! `ops::*` the same way).
//!
//! | module | verbs |
//! |---|---|
//! | [`session`] | opening a manifest directory: the manifest, a client per region (the embedded emulator for `endpoint = "emulator"`), the state store |
//! | [`plan`] | `plan`, `graph` |
//! | [`apply`] | `apply`, `apply --refresh-only`, `apply PLANFILE`, `destroy` — prepared (locked and planned), confirmed by the caller, executed |
//! | [`import`] | `import`: one instance (`ADDR OCID`), or a compartment's instances and custom images (`--compartment`) |
//! | [`fmt`] | `fmt`: the manifest files formatted, or listed with `--check` |
//! | `rollback` | `on_failure = "rollback"`: the second pass of an apply whose rollout failed, moving the fleet back |
//! | [`policy`] | the policy check `plan` and `apply` share (`--policy`, `[policy] dirs`) |
//! | [`show`] | `show PLANFILE`: a saved plan read for its views |
//! | [`state`] | `state list/show/rm/mv/migrate`, `force-unlock`, and the state `output` reads |
//!
//! Errors are `miette` reports: this is the library's edge, and every stage's error is a
//! diagnostic already.

pub mod apply;
pub mod fmt;
pub mod import;
pub mod plan;
pub mod policy;
mod rollback;
pub mod session;
pub mod show;
pub mod state;

pub use session::{Open, Session};
