//! Apply: execute a plan's DAG against OCI.

pub mod execute;
pub mod progress;
pub mod walk;
