//! Other tools judge kiln: Oracle's `oci` CLI ([`oci_cli`]) and Python SDK ([`oci_sdk`]) read the
//! emulator's wire format with their own models; Checkov ([`checkov`]) reads kiln's
//! Terraform-shaped plan JSON. Each is `#[ignore]`d with its reason by a plain `cargo test` and
//! run by the README's test command; a missing tool fails it.

mod checkov;
mod oci_cli;
mod oci_sdk;
