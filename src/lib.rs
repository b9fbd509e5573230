//! # kiln — declarative plan/apply for OCI Compute
//!
//! The map. Data flows one way, top to bottom; each stage is one module:
//!
//! ```text
//!  kiln.toml (+ envs/<env>.toml) ──manifest::load──▶ manifest::Manifest (spans, diagnostics)
//!                                                        │ resolve
//!                                                        ▼
//!  state/<env>.json or an Object Storage object ──state::StateStore::load (lock)──▶ state::State
//!                                                        │
//!  OCI / emulator ──oci::Client (bulk List, Get)──▶ plan::refresh ──▶ plan::diff ──▶ plan::Plan (DAG)
//!                                                        │ render (text / JSON / saved file)
//!                                                        ▼
//!                                   apply::execute (tokio, bounded parallelism, If-Match,
//!                                   opc-retry-token, waiters) ── saves state after every action
//! ```
//!
//! | module | owns | reads / writes on disk |
//! |---|---|---|
//! | [`manifest`] | TOML → typed manifest with spans; miette diagnostics; environments; one file per stage of the loader (vars, keys and types, fleets, provider, instance, image, references) | reads `kiln.toml`, `envs/<env>.toml`, `user_data_file`s |
//! | [`state`] | versioned state format (pending creates, deposed objects), a loader that refuses what it cannot trust, atomic compare-and-swap saves, an apply's commit journal (folded at its end), backup, lock; local file or Object Storage (lock object) | reads/writes `state/<env>.json`, `.journal`, `.backup`, `.lock` (or the same as objects, without a journal) |
//! | [`plan`] | refresh from OCI, per-attribute diff, drift, action DAG (built per resource, capture, delete), `--target`/`--exclude`, refresh-only, rendering | writes saved plans (`--out`) |
//! | [`apply`] | DAG executor (the walk; what actions share; one arm per action): creates never made twice, If-Match'ed mutations that re-read after a refusal, replacements that depose; waits that share listings; network facts of what it made, read in bulk after; progress | commits state after every action (a journal append) |
//! | [`oci`] | config file, keys, request signer, the four auth methods (API key, session token, resource and instance principals) and renewing their tokens, proxies and CA bundle, HTTP with retries, typed Compute API, the Object Storage subset, a client per region | reads `~/.oci/config`, key, token and CA files; writes a refreshed `security_token_file` |
//! | [`emulator`] | an OCI API server on hyper (Compute, boot volumes, the networking and identity Compute users touch, work requests, an Object Storage subset, the auth service's federation and session refresh), strict about every field, with signatures and security tokens, etags, retry tokens, lifecycles, keyset pages, faults; one file per resource family | reads an OCI config for trusted keys; `--data` file |
//! | [`output`] | what `kiln output` prints: ids, IPs, hostnames, sizes, as text, JSON or one bare value — a view of the state, no network | reads the state (through [`state`]) |
//! | [`cli`] | one thin file per subcommand, calling into the stages above; the flags several share defined once (`args`); one door for printing that takes a closed pipe quietly and colours only a terminal (`out`) | — |
//! | [`dag`] | a leaf `manifest` (reference cycles) and `plan` (the action DAG) share: a petgraph wrapper with sorted `Display` and DOT | — |
//! | [`region`] | a leaf `manifest` (validation), `oci` (endpoints) and `plan` share: region ids, 3-letter codes, realms, endpoints, the region of an OCID | — |
//! | [`raw_json`] | a leaf `state`, `plan` and `apply` share: a resource's JSON kept as compact text, parsed when read (a tenth of the memory of a value) | — |
//! | [`small_file`] | a leaf both `manifest` and `oci` use: read a regular file of at most N bytes, refusing FIFOs, devices and directories | — |
//! | [`x509_subject`] | a leaf `oci` (instance principals) and `emulator` (federation) share: the tenancy, instance and common name in an instance certificate's subject, fingerprints as OCI spells them | — |
//! | [`env_name`] | a leaf `manifest` and `state` use: what an environment name may be (it becomes a file name) | — |
//! | [`home`] | a leaf `manifest` and `oci` use: `~` in the paths a user writes (the one place kiln reads `HOME`) | — |
//! | [`failpoint`] | a leaf every I/O boundary crosses: named points where the crash-safety tests inject faults (compiled in only with the `failpoints` feature) | — |
//!
//! Dependencies run one way: `cli → apply → plan → {manifest, state, oci}`, `state → oci` (remote
//! state), and `cli → output → state`; the leaves (`dag`, `region`, `small_file`, `env_name`, `home`, `failpoint`)
//! depend on nothing of kiln. The `oci` client knows nothing of manifests, plans or state; the
//! `manifest` module uses neither `plan` nor `oci` (it borrows only leaves); the `emulator` uses
//! nothing of manifest, state, plan or apply (it only shares the OCI config-file parser).

// Errors carry the operation, resource, status, code, message and opc-request-id by design (an
// OCI error must say where); they are returned once per failed call, never on a hot path, so
// their size is not worth boxing them for.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod cli;
pub mod dag;
pub mod emulator;
pub mod env_name;
pub mod failpoint;
pub mod home;
pub mod manifest;
pub mod oci;
pub mod output;
pub mod plan;
pub mod raw_json;
pub mod region;
pub mod small_file;
pub mod state;
pub mod x509_subject;
