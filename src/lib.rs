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
//!                                   opc-retry-token, waiters) ── commits state after every action
//! ```
//!
//! | module | owns | reads / writes on disk |
//! |---|---|---|
//! | [`manifest`] | TOML → typed manifest with spans; miette diagnostics; environments | reads `kiln.toml`, `envs/<env>.toml`, `user_data_file`s |
//! | [`state`] | versioned state format (pending creates, deposed objects), a loader that refuses what it cannot trust, atomic compare-and-swap saves, an apply's commit journal (folded at its end), backup, lock; local file or Object Storage (lock object) | reads/writes `state/<env>.json`, `.journal`, `.backup`, `.lock` (or the same as objects, without a journal) |
//! | [`plan`] | refresh from OCI, per-attribute diff, drift, action DAG, `--target`/`--exclude`, refresh-only, rendering | writes saved plans (`--out`) |
//! | [`apply`] | DAG executor: creates never made twice, If-Match'ed mutations that re-read after a refusal, replacements that depose; waits that share listings; network facts of what it made, read in bulk after; progress | commits state after every action (a journal append) |
//! | [`oci`] | config file, keys, request signer, HTTP with retries, typed Compute API, the Object Storage subset, regions | reads `~/.oci/config` and key files |
//! | [`emulator`] | an OCI API server on hyper (Compute, boot volumes, the networking and identity Compute users touch, work requests, an Object Storage subset), strict about every field, with signatures, etags, retry tokens, lifecycles, keyset pages, faults; one file per resource family | reads an OCI config for trusted keys; `--data` file |
//! | [`output`] | what `kiln output` prints: ids, IPs, hostnames, sizes, as text, JSON or one bare value — a view of the state, no network | reads the state (through [`state`]) |
//! | [`cli`] | one thin file per subcommand, calling into the stages above | — |
//! | [`small_file`] | a leaf both `manifest` and `oci` use: read a regular file of at most N bytes, refusing FIFOs, devices and directories | — |
//! | [`env_name`] | a leaf `manifest` and `state` use: what an environment name may be (it becomes a file name) | — |
//! | [`failpoint`] | a leaf every I/O boundary crosses: named points where the crash-safety tests inject faults (compiled in only with the `failpoints` feature) | — |
//!
//! Dependencies run one way: `cli → apply → plan → {manifest, state} → oci`, and
//! `cli → output → state`. The `oci` client knows
//! nothing of manifests, plans or state; the `manifest` module sends nothing to OCI; the `emulator`
//! uses nothing of manifest, state, plan or apply (it only shares the OCI config-file parser).

pub mod apply;
pub mod cli;
pub mod emulator;
pub mod env_name;
pub mod failpoint;
pub mod manifest;
pub mod oci;
pub mod output;
pub mod plan;
pub mod small_file;
pub mod state;
