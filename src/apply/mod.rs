//! Apply: execute a plan's DAG against OCI.
//!
//! - [`execute`]: the executor — one arm per action, group-committed state saves, replacements;
//! - `create` (private): creates that are never made twice (pending creates, adoption);
//! - `guard` (private): If-Match'ed mutations that re-read instead of guessing after a refusal;
//! - [`walk`]: the generic DAG walk; [`progress`]: what the user sees while it runs.

mod create;
pub mod execute;
mod guard;
pub mod progress;
pub mod walk;
