//! Manifests: `kiln.toml` (+ `envs/<env>.toml`) → a typed, validated [`Manifest`].
//!
//! Every mistake is caught here, before anything is sent to OCI, all at once: each problem is a
//! miette diagnostic pointing at the span of the file it is in ([`diagnostic`]). This file holds
//! the model (what a valid manifest is) and the loader's order of stages; each stage is a file:
//! - [`tree`] parses each file with toml_edit keeping spans, deep-merges the environment file over
//!   the base, and reads typed values back out;
//! - `vars`: `${vars.NAME}` substitution; `check`: keys and types against [`schema`], the one
//!   table of keys; `fleet`: `count` / `for_each` / `enabled`;
//! - `provider`: `[provider]` and `[backend]` (regions, endpoints); `instance` and `image`: each
//!   resource resolved with `[defaults]` applied (`resource`: what both kinds share, side files;
//!   [`image_copies`]: an image's copies in other regions;
//!   [`image_caps`]: an image's `shapes` and `capabilities`);
//!   [`placement`]: a fleet's members spread over availability and fault domains;
//! - [`lookup`]: names instead of OCIDs (`compartment = { path }`, `subnet`/`nsg_ids`
//!   `{ lookup }`), kept with their spans for the plan to resolve, and the spans of the values
//!   the plan checks against OCI (shape, domains, image, subnet);
//! - `references`: OCIDs and their kinds, references (dangling, across regions), cycles,
//!   `[[moved]]`; [`rollout`]: `replace_method` and `rollout` (limits, health check);
//! - [`versions`]: an image's `keep`, and the `version` / `env` pins of an instance's `source`
//!   (resolved by the plan against the states).
//!
//! Side files (`user_data_file`, `ssh_authorized_keys_file`) are read only if they are regular
//! files within [`USER_DATA_FILE_LIMIT`] and [`SSH_KEYS_FILE_LIMIT`]; anything else is a
//! diagnostic on the field, and a FIFO or a device is never opened for reading.
//! This module sends nothing to OCI, and uses neither `plan` nor `oci`: the region catalogue and
//! the DAG it borrows are the leaves [`crate::region`] and [`crate::dag`].

mod check;
pub mod diagnostic;
pub mod edit;
pub mod excerpt;
mod fleet;
pub mod format;
mod image;
pub mod image_caps;
pub mod image_copies;
mod instance;
pub mod launch;
pub mod lookup;
pub mod placement;
mod provider;
mod references;
mod resource;
pub mod rollout;
pub mod schema;
pub mod tree;
mod vars;
pub mod versions;
pub mod vnic;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use indexmap::IndexMap;

use crate::suggest::did_you_mean;
use diagnostic::{At, Sources};
pub use diagnostic::{ManifestError, Problem};
pub use placement::{FaultDomains, Placement};
use tree::{entries, get, str_of, Node};

/// The largest `user_data_file`, in bytes. OCI takes at most 32,000 bytes of instance metadata
/// (`metadata` and `extendedMetadata` together) and `user_data` is sent base64-encoded, 4 bytes for
/// every 3, so a larger file could never be launched.
pub const USER_DATA_FILE_LIMIT: u64 = 24_000;

/// The largest `ssh_authorized_keys_file`, in bytes (a 4096-bit RSA public key is about 750).
pub const SSH_KEYS_FILE_LIMIT: u64 = 16 * 1024;

/// `instance` or `image`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Instance,
    Image,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Instance => "instance",
            ResourceKind::Image => "image",
        }
    }
}

/// `[[moved]] from = "instance.web" to = "instance.web[0]"`: the state of `from` becomes `to`'s.
#[derive(Clone, Debug, PartialEq)]
pub struct Moved {
    pub from: Address,
    pub to: Address,
}

/// A resource address: `instance.web`, `image.golden`, or a fleet member `instance.web[0]`,
/// `instance.web["a"]`. `name` is everything after the kind, member index included.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub kind: ResourceKind,
    pub name: String,
}

impl Address {
    /// The table's name: `web` for `instance.web[0]`.
    pub fn fleet(&self) -> &str {
        self.name.split('[').next().unwrap_or(&self.name)
    }

    /// Whether this is a member of a fleet (`[0]`, `["a"]`).
    pub fn is_member(&self) -> bool {
        self.name.contains('[')
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.as_str(), self.name)
    }
}

/// Whether `name` is a table name: letters, digits, `_` and `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Whether `key` can be a `for_each` key (it is written `["key"]` in addresses).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && !key.contains(['"', '\\', '[', ']']) && !key.chars().any(char::is_control)
}

impl FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let not_address = || {
            format!(
                "`{s}` is not an address like `instance.NAME`, `image.NAME` or `instance.NAME[0]`"
            )
        };
        let (kind, name) = s.split_once('.').ok_or_else(not_address)?;
        let kind = match kind {
            "instance" => ResourceKind::Instance,
            "image" => ResourceKind::Image,
            _ => return Err(not_address()),
        };
        let (base, index) = match name.find('[') {
            Some(i) => (&name[..i], Some(&name[i..])),
            None => (name, None),
        };
        if !valid_name(base) {
            return Err(format!(
                "`{s}`: a resource name uses letters, digits, `_` and `-`"
            ));
        }
        if let Some(index) = index {
            let inner = index
                .strip_prefix('[')
                .and_then(|x| x.strip_suffix(']'))
                .ok_or_else(not_address)?;
            let ok = (!inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()))
                || inner
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .is_some_and(valid_key);
            if !ok {
                return Err(format!(
                    "`{s}`: a member is `[N]` (count) or `[\"KEY\"]` (for_each)"
                ));
            }
        }
        Ok(Address {
            kind,
            name: name.to_string(),
        })
    }
}

/// Where kiln sends requests.
#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint {
    /// The region's public endpoint.
    Default,
    /// The embedded emulator (`endpoint = "emulator"`).
    Emulator,
    Url(url::Url),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Provider {
    pub profile: Option<String>,
    pub config_file: Option<PathBuf>,
    /// Canonical region id (3-letter codes resolved).
    pub region: Option<String>,
    pub endpoint: Endpoint,
    /// `endpoints = { REGION = URL or "emulator" }`: where each region is reached, over `endpoint`.
    pub endpoints: BTreeMap<String, Endpoint>,
    pub parallelism: Option<usize>,
    /// `auth`: `api_key`, `security_token`, `resource_principal` or `instance_principal`.
    pub auth: Option<String>,
    /// `ca_bundle`, resolved against the manifest directory.
    pub ca_bundle: Option<PathBuf>,
}

/// Where the state lives (`[backend]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Backend {
    /// `state/<env>.json` next to the manifest (the default).
    #[default]
    Local,
    ObjectStorage(ObjectStorageBackend),
}

/// `[backend] kind = "object_storage"`: the state is the object `<prefix><env>.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectStorageBackend {
    pub namespace: String,
    pub bucket: String,
    pub prefix: String,
    /// Canonical region id (default: the provider's).
    pub region: Option<String>,
    /// Default: the provider's endpoint (the emulator serves Object Storage too), else the
    /// region's Object Storage endpoint.
    pub endpoint: Option<Endpoint>,
}

/// An id: a literal OCID or another managed resource.
#[derive(Clone, Debug, PartialEq)]
pub enum Ref {
    Ocid(String),
    Resource(Address),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShapeConfig {
    pub ocpus: Option<f64>,
    pub memory_in_gbs: Option<f64>,
    pub vcpus: Option<u64>,
    pub baseline_ocpu_utilization: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum InstanceSource {
    Image(Ref),
    BootVolume(String),
    ImageLookup {
        os: String,
        version: String,
        shape: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    Running,
    Stopped,
}

pub type Tags = BTreeMap<String, String>;
pub type DefinedTags = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

/// One `[instance.NAME]` with defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceSpec {
    pub address: Address,
    /// The region it lives in (`None`: the provider's).
    pub region: Option<String>,
    pub display_name: String,
    pub compartment: String,
    /// Given, or planned from `placement` (where the member goes unless it is full).
    pub availability_domain: String,
    pub fault_domain: Option<String>,
    /// `placement`: the domains are planned from it, decided at create (with capacity fallback)
    /// and never compared afterwards.
    pub placement: Option<Placement>,
    pub shape: String,
    pub shape_config: Option<ShapeConfig>,
    pub subnet: String,
    pub assign_public_ip: Option<bool>,
    /// The primary VNIC's other settings the manifest sets ([`vnic`]).
    pub vnic: vnic::PrimaryVnic,
    pub source: InstanceSource,
    pub boot_volume_size_in_gbs: Option<u64>,
    /// Includes `user_data` (base64 of `user_data_file`) and `ssh_authorized_keys` (file contents).
    pub metadata: BTreeMap<String, String>,
    pub freeform_tags: Tags,
    pub defined_tags: DefinedTags,
    pub state: PowerState,
    pub preserve_boot_volume: bool,
    pub ignore_changes: Vec<String>,
    pub prevent_destroy: bool,
    pub create_before_destroy: bool,
    /// The [`launch::SETTINGS`] the manifest sets (its table, else `[defaults]`'s), by setting
    /// name: each key it sets, by manifest name, as JSON.
    pub launch: BTreeMap<&'static str, BTreeMap<&'static str, serde_json::Value>>,
    /// `preemptible`, `boot_volume_vpus_per_gb`, `kms_key_id`, `capacity_reservation_id`.
    pub extras: launch::Extras,
    /// `replace_method`: how a change of `source` reaches the live instance.
    pub replace_method: rollout::ReplaceMethod,
    /// Names to resolve at plan time (`compartment`, `subnet`, entries of `nsg_ids`): until
    /// then those fields hold placeholders ([`lookup::is_placeholder`]).
    pub lookups: lookup::Lookups,
    /// Where the values a plan checks against OCI were written.
    pub spans: lookup::Spans,
    /// `rollout` (of the table, else of `[defaults]`): `None` replaces as before.
    pub rollout: Option<rollout::Rollout>,
    /// `source = { image = "image.NAME", version | env }`: which image of it to boot
    /// ([`versions`]; resolved at plan time, when `source` becomes that image's OCID).
    pub pin: Option<versions::ImagePin>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ImageSource {
    FromInstance(Address),
    ObjectStorage {
        namespace: String,
        bucket: String,
        object: String,
    },
    Uri(String),
    /// `source = { adopted = "ocid1.image…" }`: a custom image made outside kiln and adopted by
    /// `kiln import --compartment`. Kept as it is: kiln manages its name, tags and operating
    /// system fields, and can delete it, but cannot make it (again): a plan that would create or
    /// replace it is refused.
    Adopted(String),
}

/// One `[image.NAME]` with defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSpec {
    pub address: Address,
    /// The region it lives in (`None`: the provider's).
    pub region: Option<String>,
    pub display_name: String,
    pub compartment: String,
    /// `compartment = { path = ... }`, resolved at plan time (`compartment` is a placeholder
    /// until then).
    pub compartment_lookup: Option<lookup::CompartmentPath>,
    pub source: ImageSource,
    pub launch_mode: Option<String>,
    pub operating_system: Option<String>,
    pub operating_system_version: Option<String>,
    pub freeform_tags: Tags,
    pub defined_tags: DefinedTags,
    pub restart_source: bool,
    pub prevent_destroy: bool,
    /// `regions`, `export`, `keep_exports`: its copies in other regions.
    pub copies: image_copies::ImageCopies,
    /// `keep`: how many versions a rebuild keeps (1: the previous image is deleted).
    pub keep: u64,
    /// `shapes`: the image's shape compatibility entries (`None`: as OCI gives them).
    pub shapes: Option<Vec<image_caps::ImageShape>>,
    /// `capabilities`: its capability schema's pinned values (`None`: no schema of kiln's).
    pub capabilities: Option<Vec<image_caps::Capability>>,
}

/// A valid manifest.
#[derive(Debug)]
pub struct Manifest {
    pub dir: PathBuf,
    /// `default` without `--env`.
    pub env: String,
    pub provider: Provider,
    pub backend: Backend,
    pub instances: BTreeMap<String, InstanceSpec>,
    pub images: BTreeMap<String, ImageSpec>,
    /// `[[moved]]`: addresses renamed in the manifest, in order.
    pub moved: Vec<Moved>,
    /// `[policy] dirs`: directories of Rego policies every plan is checked against, resolved
    /// against the manifest directory.
    pub policy_dirs: Vec<PathBuf>,
    /// Warnings (e.g. duplicate display names): shown, not fatal.
    pub warnings: Vec<Problem>,
    /// The files read, for problems a plan finds at a span (a lookup, a shape OCI lacks).
    pub sources: Sources,
}

impl Manifest {
    /// Every address, instances first, each kind in name order.
    pub fn resources(&self) -> impl Iterator<Item = Address> + '_ {
        self.instances
            .values()
            .map(|i| i.address.clone())
            .chain(self.images.values().map(|i| i.address.clone()))
    }

    /// Every region a resource of this manifest names, with the provider's (when set).
    pub fn regions(&self) -> BTreeSet<String> {
        self.instances
            .values()
            .map(|i| i.region.clone())
            .chain(self.images.values().map(|i| i.region.clone()))
            .chain(std::iter::once(self.provider.region.clone()))
            .flatten()
            .chain(self.images.values().flat_map(|i| i.copies.regions.clone()))
            .collect()
    }

    /// Every compartment a resource names by OCID (a path is resolved by the plan).
    pub fn compartments(&self) -> BTreeSet<String> {
        self.instances
            .values()
            .map(|i| i.compartment.clone())
            .chain(self.images.values().map(|i| i.compartment.clone()))
            .filter(|c| !lookup::is_placeholder(c))
            .collect()
    }

    /// Dependency edges `(dependent, dependency)`.
    pub fn edges(&self) -> Vec<(Address, Address)> {
        let mut out = Vec::new();
        for i in self.instances.values() {
            // An image taken from another environment is not this one's to wait for.
            let other_env = matches!(&i.pin, Some(p) if matches!(p.which, versions::Pin::Env(_)));
            if let (InstanceSource::Image(Ref::Resource(a)), false) = (&i.source, other_env) {
                out.push((i.address.clone(), a.clone()));
            }
        }
        for i in self.images.values() {
            if let ImageSource::FromInstance(a) = &i.source {
                out.push((i.address.clone(), a.clone()));
            }
        }
        out
    }
}

/// Load and validate `dir/kiln.toml`, with `dir/envs/<env>.toml` merged over it.
pub fn load(dir: &Path, env: Option<&str>) -> Result<Manifest, ManifestError> {
    load_with(dir, env, None)
}

/// Validate `text` as the `kiln.toml` of `dir` (files it names are still read from `dir`).
/// Used by fuzzing; `load` is this with the file's contents.
pub fn load_str(dir: &Path, text: &str) -> Result<Manifest, ManifestError> {
    load_with(dir, None, Some(text))
}

fn load_with(dir: &Path, env: Option<&str>, text: Option<&str>) -> Result<Manifest, ManifestError> {
    let mut loader = Loader {
        dir: dir.to_path_buf(),
        sources: Sources::default(),
        problems: Vec::new(),
        base_text: text.map(str::to_string),
        missing: false,
    };
    let manifest = loader.run(env);
    let Loader {
        sources,
        problems,
        missing,
        ..
    } = loader;
    // The files the errors are in, in the order they were read.
    let ids: std::collections::BTreeSet<usize> = problems
        .iter()
        .filter(|p| p.is_error())
        .filter_map(|p| p.at.as_ref().map(|at| at.file))
        .collect();
    let files: Vec<String> = ids
        .into_iter()
        .map(|id| sources.name(id).to_string())
        .collect();
    let problems: Vec<Problem> = problems.into_iter().map(|p| p.attach(&sources)).collect();
    match manifest {
        Some(mut m) if problems.iter().all(|p| !p.is_error()) => {
            m.warnings = problems;
            m.sources = sources;
            Ok(m)
        }
        _ => Err(ManifestError {
            dir: dir.to_path_buf(),
            files,
            missing,
            live: false,
            problems,
        }),
    }
}

struct Loader {
    dir: PathBuf,
    sources: Sources,
    problems: Vec<Problem>,
    /// `kiln.toml` given in memory instead of read from `dir`.
    base_text: Option<String>,
    /// `dir` has no `kiln.toml`.
    missing: bool,
}

impl Loader {
    fn problem(&mut self, p: Problem) {
        self.problems.push(p);
    }

    fn read(&mut self, rel: &Path) -> Option<(usize, Node)> {
        let path = self.dir.join(rel);
        let given = if rel == Path::new("kiln.toml") {
            self.base_text.take()
        } else {
            None
        };
        let text = match given
            .map(Ok)
            .unwrap_or_else(|| std::fs::read_to_string(&path))
        {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && rel == Path::new("kiln.toml") => {
                self.missing = true;
                self.problem(
                    Problem::error(
                        "missing",
                        format!("no `kiln.toml` in `{}`", self.dir.display()),
                    )
                    .help("run kiln in a directory with a `kiln.toml`, or pass the directory"),
                );
                return None;
            }
            Err(e) => {
                self.problem(
                    Problem::error(
                        "unreadable",
                        format!("cannot read `{}`: {e}", path.display()),
                    )
                    .help("run kiln in a directory with a `kiln.toml`, or pass the directory"),
                );
                return None;
            }
        };
        let id = self.sources.add(rel.display().to_string(), text.clone());
        match tree::parse(id, &text) {
            Ok(n) => Some((id, n)),
            Err(p) => {
                self.problem(p);
                None
            }
        }
    }

    fn run(&mut self, env: Option<&str>) -> Option<Manifest> {
        let (_, mut root) = self.read(Path::new("kiln.toml"))?;
        if let Some(env) = env.filter(|e| !crate::env_name::is_valid(e)) {
            self.problem(
                Problem::error("invalid_env", format!("`{env}` is not an environment name"))
                    .help("environment names are letters, digits, `-`, `_` and `.`, at most 64 (`envs/<ENV>.toml`)"),
            );
            return None;
        }
        if let Some(env) = env {
            let rel = PathBuf::from("envs").join(format!("{env}.toml"));
            if !self.dir.join(&rel).exists() {
                let available: Vec<String> = std::fs::read_dir(self.dir.join("envs"))
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .filter_map(|e| {
                                e.file_name()
                                    .to_str()?
                                    .strip_suffix(".toml")
                                    .map(str::to_string)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let help = if available.is_empty() {
                    "create it, or run without `--env`".to_string()
                } else {
                    format!("environments here: {}", available.join(", "))
                };
                self.problem(
                    Problem::error(
                        "unknown_env",
                        format!("environment `{env}` has no `{}`", rel.display()),
                    )
                    .help(help),
                );
                return None;
            }
            let (_, over) = self.read(&rel)?;
            self.check_overrides(&root, &over);
            tree::merge(&mut root, over);
        }
        self.substitute_vars(&mut root);
        self.check_table(&root, schema::TOP, "");
        self.build(&root, env.unwrap_or("default"))
    }

    /// An environment file may only change resources the base declares.
    fn check_overrides(&mut self, base: &Node, over: &Node) {
        let (Some(b), Some(o)) = (entries(base), entries(over)) else {
            return;
        };
        for kind in ["instance", "image"] {
            let base_names: Vec<&str> = get(b, kind)
                .and_then(entries)
                .map(|t| t.keys().map(String::as_str).collect())
                .unwrap_or_default();
            if let Some(names) = get(o, kind).and_then(entries) {
                for (name, e) in names {
                    if !base_names.contains(&name.as_str()) {
                        let mut p = Problem::error("override_unknown_resource", format!("`{kind}.{name}` is overridden here but `kiln.toml` does not declare it"))
                            .at(&e.key_at, "not in kiln.toml");
                        p = match did_you_mean(name, base_names.iter().copied()) {
                            Some(s) => p.help(format!("did you mean `{kind}.{s}`?")),
                            None => p.help(format!("declare `[{kind}.{name}]` in kiln.toml first; environment files only change what the base declares")),
                        };
                        self.problem(p);
                    }
                }
            }
        }
    }

    fn build(&mut self, root: &Node, env: &str) -> Option<Manifest> {
        let empty = IndexMap::new();
        let top = entries(root).unwrap_or(&empty);
        let provider = self.provider(get(top, "provider").and_then(entries).unwrap_or(&empty));
        let backend = get(top, "backend")
            .and_then(entries)
            .map(|t| self.backend(t, get(top, "backend").map(|n| &n.at)))
            .unwrap_or_default();
        let defaults = get(top, "defaults")
            .and_then(entries)
            .cloned()
            .unwrap_or_default();
        let instances_t = get(top, "instance")
            .and_then(entries)
            .cloned()
            .unwrap_or_default();
        let images_t = get(top, "image")
            .and_then(entries)
            .cloned()
            .unwrap_or_default();
        let mut problems = Vec::new();
        let instances_x = fleet::expand("instance", &instances_t, &mut problems);
        let images_x = fleet::expand("image", &images_t, &mut problems);
        self.problems.extend(problems);
        let instances_t = instances_x.tables.clone();
        let images_t = images_x.tables.clone();
        let instance_names: BTreeSet<String> = instances_t.keys().cloned().collect();
        let image_names: BTreeSet<String> = images_t.keys().cloned().collect();

        // Gathered, then built in one pass: a map built from sorted entries has full nodes (one
        // filled an insert at a time keeps a third of a fleet's specs' room empty).
        let mut instances = Vec::new();
        let mut ref_sites: Vec<(Address, Address, At)> = Vec::new();
        for (name, e) in &instances_t {
            let Ok(address) = format!("instance.{name}").parse::<Address>() else {
                continue;
            };
            let Some(t) = entries(&e.node) else { continue };
            let index = instances_x.index.get(name).copied().unwrap_or(0);
            if let Some(spec) =
                self.instance(address, t, &defaults, &e.key_at, &mut ref_sites, index)
            {
                instances.push((name.clone(), spec));
            }
        }
        let instances: BTreeMap<String, InstanceSpec> = instances.into_iter().collect();
        self.rollout_rounding(&instances, &instances_t, &defaults);
        let mut images = BTreeMap::new();
        for (name, e) in &images_t {
            let Ok(address) = format!("image.{name}").parse::<Address>() else {
                continue;
            };
            let Some(t) = entries(&e.node) else { continue };
            if let Some(spec) = self.image(
                address,
                t,
                &defaults,
                &e.key_at,
                &mut ref_sites,
                &instances_t,
                provider.region.as_deref(),
            ) {
                images.insert(name.clone(), spec);
            }
        }

        self.dangling(&ref_sites, &instances_x, &images_x);
        if get(&defaults, "region").is_some() {
            self.region(&defaults);
        }
        self.cross_region(&ref_sites, &provider, &instances, &images);
        self.pins_within_keep(&instances, &images);
        self.cycles(&ref_sites);
        self.duplicate_names(&instances, &images, &instances_t, &images_t);
        let moved = self.moved(get(top, "moved"), &instance_names, &image_names);
        let policy_dirs = get(top, "policy")
            .and_then(entries)
            .and_then(|t| get(t, "dirs"))
            .map(|n| match &n.value {
                tree::Value::Array(items) => items
                    .iter()
                    .filter_map(|i| str_of(Some(i)))
                    .map(|(d, _)| self.dir.join(d))
                    .collect(),
                _ => Vec::new(),
            })
            .unwrap_or_default();
        Some(Manifest {
            policy_dirs,
            dir: self.dir.clone(),
            env: env.to_string(),
            provider,
            backend,
            instances,
            images,
            moved,
            warnings: Vec::new(),
            sources: Sources::default(),
        })
    }
}
