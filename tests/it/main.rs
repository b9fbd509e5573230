//! kiln's integration tests: one binary, shared support, real emulator on loopback.

// Tests and benchmarks print their own logs and tables (the printing door is the CLI's).
#![allow(clippy::disallowed_macros)]

mod support;

mod auth;
mod benches;
mod boot_replace;
mod checkov;
mod cli;
mod client;
mod crash;
mod emulator;
mod emulator_fidelity;
mod emulator_fixtures;
mod examples;
mod federation_chains;
mod fleets;
mod fmt;
mod fuzz;
mod import;
mod launch;
mod limits;
mod lookups;
mod manifest;
mod never_twice;
mod object_storage;
mod oci_cli;
mod oci_sdk;
mod output;
mod paths;
mod pending_creates;
mod placement;
mod plan_apply;
mod plan_beside;
mod policy;
mod refresh_exclude;
mod regions;
mod remote_lock;
mod remote_state;
mod request_limits;
mod rollout;
mod shared_emulator;
mod state;
mod takeover;
mod tfplan;
mod waiting;
