//! The OCI client: kiln's only way to OCI, real or emulated.
//!
//! - [`config`]: `~/.oci/config` profiles; [`keys`]: private keys and fingerprints; [`perms`]:
//!   who else may read them;
//! - [`auth`]: the four ways to authenticate (API key, session token, resource and instance
//!   principals) and renewing their tokens; [`net`]: proxies and a CA bundle;
//! - [`signer`]: draft-cavage `Signature` Authorization exactly as Oracle's Python SDK builds it;
//! - [`call`]: one request before it is signed, and the answer's headers;
//! - [`client`]: HTTP with retries, timeouts, response headers surfaced (the retry policy and
//!   its notices in `retry`); [`error`]: OCI errors;
//! - [`budget`]: rate limits, an adaptive budget per operation family that every call shares;
//! - [`models`]: the Compute wire models; [`compute`]: typed operations; [`wait`]: waiters;
//! - [`image_caps`]: an image's shape compatibility entries and capability schema, the global
//!   image capability schema;
//! - [`block`]: an instance's boot volume (find, read, UpdateBootVolume, UpdateBootVolumeKmsKey);
//! - [`catalog`]: the listings plan-time lookups and checks read (compartments, availability and
//!   fault domains, shapes, VCNs, subnets, network security groups), every page;
//! - [`object_storage`]: the Object Storage subset behind remote state;
//! - [`image_copy`]: what copies an image to another region (ExportImage, CreateBucket,
//!   CopyObject and its work request).
//!
//! Region ids, codes, realms and endpoints are the leaf [`crate::region`], shared with `manifest`.
//!
//! This module knows nothing of manifests, plans or state.

pub mod auth;
pub mod block;
pub mod budget;
pub mod call;
pub mod catalog;
pub mod client;
pub mod compute;
pub mod config;
pub mod error;
pub mod image_caps;
pub mod image_copy;
pub mod keys;
pub mod models;
pub mod net;
pub mod object_storage;
pub mod perms;
pub mod regional;
mod retry;
pub mod signer;
pub mod wait;
pub mod watch;

pub use budget::Budgets;
pub use client::{Client, ClientOptions, MutationOptions, Response, RetryPolicy};
pub use error::{ErrorKind, OciError};
pub use regional::Clients;
