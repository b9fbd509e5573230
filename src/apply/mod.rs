//! Apply: execute a plan's DAG against OCI.
//!
//! - [`execute`]: the executor — the walk of the plan, the report;
//! - `ctx` (private): what every action shares — clients per region, group-committed state saves,
//!   the If-Match to send, waits; `actions` (private): one arm per action, replacements;
//! - `create` (private): creates that are never made twice (pending creates, adoption);
//! - `image_copy` (private): an image's copy in another region, export → copy → import;
//! - `placement` (private): capacity fallback, a create tried place after place under `placement`;
//! - `guard` (private): If-Match'ed mutations that re-read instead of guessing after a refusal;
//! - `boot_volume` (private): an instance's boot volume performance and Vault key, changed in
//!   place (UpdateBootVolume, UpdateBootVolumeKmsKey) with the volume's own If-Match;
//! - `image_caps` (private): an image's shape compatibility entries and capability schema,
//!   brought to the manifest in place once it is AVAILABLE;
//! - `network` (private): the primary VNIC's addresses of the instances apply made or moved, read
//!   in bulk after the actions, for `kiln output`;
//! - [`walk`]: the generic DAG walk; [`progress`]: what the user sees while it runs.

mod actions;
mod boot_volume;
mod create;
mod ctx;
pub mod execute;
mod guard;
mod image_caps;
mod image_copy;
mod network;
mod placement;
pub mod progress;
mod rollout;
pub mod walk;
