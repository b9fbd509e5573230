//! kiln's integration tests: one binary, shared support, real emulator on loopback.

mod support;

mod auth;
mod benches;
mod cli;
mod client;
mod crash;
mod emulator;
mod emulator_fidelity;
mod emulator_fixtures;
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
mod paths;
mod plan_apply;
mod refresh_exclude;
mod regions;
mod remote_state;
mod request_limits;
mod state;
mod waiting;
