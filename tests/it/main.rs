//! kiln's integration tests: one binary, shared support, real emulator on loopback.

// Tests and benchmarks print their own logs and tables (the printing door is the CLI's).
#![allow(clippy::disallowed_macros)]

mod support;

mod auth;
mod benches;
mod boot_replace;
mod cli;
mod client;
mod crash;
mod emulator;
mod examples;
mod fleets;
mod fmt;
mod fuzz;
mod image_copies;
mod image_estate;
mod image_shapes;
mod image_versions;
mod import;
mod import_bulk;
mod judges;
mod launch;
mod launch_extras;
mod lookups;
mod manifest;
mod output;
mod paths;
mod placement;
mod plan_apply;
mod plan_beside;
mod policy;
mod refresh_exclude;
mod regions;
mod rollout;
mod state;
mod tfplan;
mod waiting;
