//! kiln's integration tests: one binary, shared support, real emulator on loopback.

// Tests and benchmarks print their own logs and tables (the printing door is the CLI's).
#![allow(clippy::disallowed_macros)]

mod support;

mod auth;
mod benches;
mod cli;
mod client;
mod crash;
mod emulator;
mod emulator_fidelity;
mod examples;
mod fleets;
mod fuzz;
mod import;
mod manifest;
mod never_twice;
mod object_storage;
mod oci_cli;
mod oci_sdk;
mod output;
mod plan_apply;
mod plan_beside;
mod refresh_exclude;
mod regions;
mod remote_lock;
mod remote_state;
mod request_limits;
mod state;
mod takeover;
mod waiting;
