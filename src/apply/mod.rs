//! Apply: execute a plan's DAG against OCI.
//!
//! - [`execute`]: the executor — one arm per action, group-committed state saves, replacements;
//! - `create` (private): creates that are never made twice (pending creates, adoption);
//! - `guard` (private): If-Match'ed mutations that re-read instead of guessing after a refusal;
//! - `network` (private): the primary VNIC's addresses of the instances apply made or moved, read
//!   in bulk after the actions, for `kiln output`;
//! - [`walk`]: the generic DAG walk; [`progress`]: what the user sees while it runs.

mod create;
pub mod execute;
mod guard;
mod network;
pub mod progress;
pub mod walk;
