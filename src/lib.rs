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
//! Each verb's whole flow through these stages (open, lock, load, plan, execute, save, release) is
//! one function in [`ops`]; the command line ([`cli`]) parses, confirms and prints around it.
//!
//! | module | owns | reads / writes on disk |
//! |---|---|---|
//! | [`manifest`] | TOML → typed manifest with spans; miette diagnostics; environments; one file per stage of the loader (vars, keys and types, fleets, provider, instance, placement, image and its copies in other regions, image versions and pins, references); the launch settings table; name lookups (`subnet`/`nsg_ids` by VCN and name, `compartment` by path) kept as written for the plan to resolve; canonical formatting (`kiln fmt`) | reads `kiln.toml`, `envs/<env>.toml`, `user_data_file`s; `fmt` rewrites the first two |
//! | [`state`] | versioned state format (pending creates, deposed objects, an image's retained versions), a loader that refuses what it cannot trust, atomic saves that are compare-and-swap by construction (a write gate the local store's appends, folds and saves take; `If-Match` remotely), an apply's commit journal (folded at its end), backup, lock; local file or Object Storage (a lock object with a lease its holder renews) | reads/writes `state/<env>.json`, `.journal`, `.backup`, `.lock` (or the same as objects, without a journal) |
//! | [`plan`] | name lookups resolved with cached listings and plan-time checks of shape, domains, image and subnet against OCI's lists (`lookup`, `checks`), of an instance's shape against its image's compatible shapes and of an image's capabilities against OCI's global schema (`image_checks`, with `image_caps`: an image's shapes and capabilities diffed key by key); refresh from OCI, per-attribute diff, drift (power state included), action DAG (built per resource, capture, delete — unfinished creates included; an image's copies in other regions as records of their own, `image.NAME@<region>`, which references from those regions mean), the `kiln-address` tag check, `--target`/`--exclude`, refresh-only, rollouts (boot volume replacements, a fleet's replacements with the batches they are run in as slots; `on_failure = "rollback"`: a failed fleet planned back onto its previous image), image versions (`versions`: `kiln-version` numbers, `keep` retention, `version` pins and `env` promotion resolved against this and other environments' states), rendering (text, kiln's JSON, Terraform's JSON plan shape, a markdown PR comment) | writes saved plans (`--out`) |
//! | [`apply`] | DAG executor (the walk, with the slots a rolling fleet's members take; what actions share; one arm per action): creates never made twice (with capacity fallback across a `placement`'s domains; an image's copy made by export → copy → import), If-Match'ed mutations that re-read after a refusal, replacements that depose; an image's shapes and capabilities applied in place; waits that share listings; network facts of what it made, read in bulk after; boot volume replacement and a rollout member's health gate (the check runs in the manifest directory); progress | commits state after every action (a journal append) |
//! | [`oci`] | config file, keys, request signer, the four auth methods (API key, session token, resource and instance principals) and renewing their tokens, proxies and CA bundle, HTTP with retries, an adaptive budget per operation family (rate limits), typed Compute API (an image's shape compatibility entries and capability schema too), the listings plan-time lookups and checks read (`catalog`), the Object Storage subset, what copies an image across regions (ExportImage, CreateBucket, CopyObject and its work request), a client per region | reads `~/.oci/config`, key, token and CA files; writes a refreshed `security_token_file` |
//! | [`emulator`] | an OCI API server on hyper (Compute, boot volumes, the networking and identity Compute users touch, work requests, an Object Storage subset (CreateBucket, CopyObject to a region served with it, ExportImage into it, CreateImage from an export), the auth service's federation (chains path-validated) and session refresh), strict about every field, with signatures and security tokens, etags, retry tokens, lifecycles (boot volume replacement too), keyset pages, faults, rate limits and host capacity; one route table (`routes`) naming and dispatching every operation, one file per resource family (network security groups, the Vault keys and capacity reservations a launch names, images' shape compatibility entries, image capability schemas global and per image); the embedded emulator as one cloud per state directory, served by one kiln run and attached to by the others (`embedded`); a restart (connections dropped, the world through its data file) for the simulation | reads an OCI config for trusted keys; `--data` file; `state/.emulator/` (key pair, config, data, `serve.lock`/`clients.lock`/`starting.lock`, `serving.json`) |
//! | [`output`] | what `kiln output` prints: ids, IPs, hostnames, sizes, as text, JSON or one bare value — a view of the state, no network | reads the state (through [`state`]) |
//! | [`ops`] | one flow per verb (plan, graph, apply, refresh-only, destroy, saved plans, show, import (one instance, or a compartment's instances and custom images), state edits, migrate, force-unlock, the state `output` reads, fmt) and the policy check plan and apply share: open the manifest, connect, lock, load, plan, execute, save, release on every path (a plan reads a snapshot without the lock) — returning data; the CLI, the fault suite and the simulation all run these | through `state` and `manifest`; the embedded emulator's files under `state/.emulator/` |
//! | [`cli`] | one thin file per subcommand over [`ops`]: parse arguments, confirm, print; the flags several share defined once (`args`); one door for printing that takes a closed pipe quietly and colours only a terminal (`out`) | — |
//! | [`dag`] | a leaf `manifest` (reference cycles) and `plan` (the action DAG) share: a petgraph wrapper with sorted `Display` and DOT | — |
//! | [`policy`] | a leaf `ops` uses: Rego policies (conftest's conventions: `package main`, `deny`/`violation`/`warn`, v0 and v1 syntax) evaluated by an embedded engine against a JSON input (the Terraform-shaped plan) | reads `--policy` / `[policy] dirs` `.rego` files |
//! | [`region`] | a leaf `manifest` (validation), `oci` (endpoints) and `plan` share: region ids, 3-letter codes, realms, endpoints, the region of an OCID | — |
//! | [`raw_json`] | a leaf `state`, `plan` and `apply` share: a resource's JSON kept as compact text, parsed when read (a tenth of the memory of a value) | — |
//! | [`small_file`] | a leaf both `manifest` and `oci` use: read a regular file of at most N bytes, refusing FIFOs, devices and directories | — |
//! | [`x509_subject`] | a leaf `oci` (instance principals) and `emulator` (federation) share: the tenancy, instance and common name in an instance certificate's subject, fingerprints as OCI spells them | — |
//! | [`suggest`] | a leaf `manifest` (diagnostics), `plan` (`--target`) and `output` (addresses) share: "did you mean" | — |
//! | [`env_name`] | a leaf `manifest` and `state` use: what an environment name may be (it becomes a file name) | — |
//! | [`home`] | a leaf `manifest` and `oci` use: `~` in the paths a user writes (the one place kiln reads `HOME`) | — |
//! | [`failpoint`] | a leaf every I/O boundary crosses: named points where the crash-safety tests inject faults (compiled in only with the `failpoints` feature) | — |
//!
//! Dependencies run one way: `cli → ops → apply → plan → {manifest, state, oci}`, `state → oci`
//! (remote state), and `cli → output → state`; the leaves (`dag`, `region`, `raw_json`, `small_file`, `x509_subject`, `env_name`, `suggest`, `home`, `failpoint`, `policy`)
//! depend on nothing of kiln. The `oci` client knows nothing of manifests, plans or state; the
//! `manifest` module uses neither `plan` nor `oci` (it borrows only leaves); the `emulator` uses
//! nothing of manifest, state, plan or apply (it only shares the OCI config-file parser).

// Errors carry the operation, resource, status, code, message and opc-request-id by design (an
// OCI error must say where); they are returned once per failed call, never on a hot path, so
// their size is not worth boxing them for.
#![allow(clippy::result_large_err)]
// One door to stdout and stderr (`cli::out`; the lint's list is in `clippy.toml`): a print
// elsewhere is an error, not a warning. `tests/it/cli.rs` checks the same without clippy.
#![deny(clippy::disallowed_macros, clippy::disallowed_methods)]

pub mod apply;
pub mod cli;
pub mod dag;
pub mod emulator;
pub mod env_name;
pub mod failpoint;
pub mod home;
pub mod manifest;
pub mod oci;
pub mod ops;
pub mod output;
pub mod plan;
pub mod policy;
pub mod raw_json;
pub mod region;
pub mod small_file;
pub mod state;
pub mod suggest;
pub mod x509_subject;
