//! Manifests: `kiln.toml` (+ `envs/<env>.toml`) → a typed, validated [`Manifest`].
//!
//! Every mistake is caught here, before anything is sent to OCI, all at once: each problem is a
//! miette diagnostic pointing at the span of the file it is in ([`diagnostic`]). The stages:
//! [`tree`] parses each file with toml_edit keeping spans and deep-merges the environment file
//! over the base; `${vars.NAME}` strings are substituted; [`schema`] (the one table of keys) checks
//! keys and types; then each resource is resolved with `[defaults]` applied and checked
//! (OCIDs and their kinds, regions, availability domains, shape configs, references, cycles).
//! Side files (`user_data_file`, `ssh_authorized_keys_file`) are read only if they are regular
//! files within [`USER_DATA_FILE_LIMIT`] and [`SSH_KEYS_FILE_LIMIT`]; anything else is a
//! diagnostic on the field, and a FIFO or a device is never opened for reading.
//! This module sends nothing to OCI.

pub mod diagnostic;
pub mod edit;
pub mod excerpt;
mod fleet;
pub mod schema;
pub mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use indexmap::IndexMap;

use diagnostic::{did_you_mean, At, Sources};
pub use diagnostic::{ManifestError, Problem};
use schema::{Field, Ty};
use tree::{Entry, Node, Value};

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
    pub availability_domain: String,
    pub fault_domain: Option<String>,
    pub shape: String,
    pub shape_config: Option<ShapeConfig>,
    pub subnet: String,
    pub assign_public_ip: Option<bool>,
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
}

/// One `[image.NAME]` with defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSpec {
    pub address: Address,
    /// The region it lives in (`None`: the provider's).
    pub region: Option<String>,
    pub display_name: String,
    pub compartment: String,
    pub source: ImageSource,
    pub launch_mode: Option<String>,
    pub operating_system: Option<String>,
    pub operating_system_version: Option<String>,
    pub freeform_tags: Tags,
    pub defined_tags: DefinedTags,
    pub restart_source: bool,
    pub prevent_destroy: bool,
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
    /// Warnings (e.g. duplicate display names): shown, not fatal.
    pub warnings: Vec<Problem>,
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
            .collect()
    }

    /// Every compartment a resource names.
    pub fn compartments(&self) -> BTreeSet<String> {
        self.instances
            .values()
            .map(|i| i.compartment.clone())
            .chain(self.images.values().map(|i| i.compartment.clone()))
            .collect()
    }

    /// Dependency edges `(dependent, dependency)`.
    pub fn edges(&self) -> Vec<(Address, Address)> {
        let mut out = Vec::new();
        for i in self.instances.values() {
            if let InstanceSource::Image(Ref::Resource(a)) = &i.source {
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
    };
    let what = dir.join("kiln.toml").display().to_string();
    let manifest = loader.run(env);
    let Loader {
        sources, problems, ..
    } = loader;
    let problems: Vec<Problem> = problems.into_iter().map(|p| p.attach(&sources)).collect();
    match manifest {
        Some(mut m) if problems.iter().all(|p| !p.is_error()) => {
            m.warnings = problems;
            Ok(m)
        }
        _ => Err(ManifestError { what, problems }),
    }
}

struct Loader {
    dir: PathBuf,
    sources: Sources,
    problems: Vec<Problem>,
    /// `kiln.toml` given in memory instead of read from `dir`.
    base_text: Option<String>,
}

fn entries(node: &Node) -> Option<&IndexMap<String, Entry>> {
    match &node.value {
        Value::Table(t) => Some(t),
        _ => None,
    }
}

fn get<'a>(table: &'a IndexMap<String, Entry>, key: &str) -> Option<&'a Node> {
    table.get(key).map(|e| &e.node)
}

fn str_of(node: Option<&Node>) -> Option<(&str, &At)> {
    match node {
        Some(Node {
            value: Value::Str(s),
            at,
        }) => Some((s.as_str(), at)),
        _ => None,
    }
}

fn bool_of(node: Option<&Node>) -> Option<bool> {
    match node {
        Some(Node {
            value: Value::Bool(b),
            ..
        }) => Some(*b),
        _ => None,
    }
}

fn num_of(node: Option<&Node>) -> Option<(f64, &At)> {
    match node {
        Some(Node {
            value: Value::Int(i),
            at,
        }) => Some((*i as f64, at)),
        Some(Node {
            value: Value::Float(f),
            at,
        }) => Some((*f, at)),
        _ => None,
    }
}

fn str_map(node: Option<&Node>) -> BTreeMap<String, String> {
    node.and_then(entries)
        .map(|t| {
            t.iter()
                .filter_map(|(k, e)| str_of(Some(&e.node)).map(|(v, _)| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn to_json(node: &Node) -> serde_json::Value {
    match &node.value {
        Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, e)| (k.clone(), to_json(&e.node)))
                .collect(),
        ),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Str(s) => serde_json::json!(s),
        Value::Int(i) => serde_json::json!(i),
        Value::Float(f) => serde_json::json!(f),
        Value::Bool(b) => serde_json::json!(b),
        Value::Other(o) => serde_json::json!(o),
    }
}

fn nested_map(node: Option<&Node>) -> DefinedTags {
    node.and_then(entries)
        .map(|t| {
            t.iter()
                .filter_map(|(ns, e)| {
                    entries(&e.node).map(|inner| {
                        (
                            ns.clone(),
                            inner
                                .iter()
                                .map(|(k, v)| (k.clone(), to_json(&v.node)))
                                .collect(),
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// OCID kinds accepted where an id is expected.
fn ocid_kind(s: &str) -> Option<&str> {
    let parts: Vec<&str> = s.split('.').collect();
    (parts.len() >= 5
        && parts[0] == "ocid1"
        && parts[2].starts_with("oc")
        && !parts[parts.len() - 1].is_empty())
    .then(|| parts[1])
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

    fn substitute_vars(&mut self, root: &mut Node) {
        let vars: BTreeMap<String, Node> = match &root.value {
            Value::Table(t) => get(t, "vars")
                .and_then(entries)
                .map(|v| v.iter().map(|(k, e)| (k.clone(), e.node.clone())).collect())
                .unwrap_or_default(),
            _ => return,
        };
        let mut problems = Vec::new();
        fn walk(
            node: &mut Node,
            vars: &BTreeMap<String, Node>,
            problems: &mut Vec<Problem>,
            in_vars: bool,
        ) {
            match &mut node.value {
                Value::Table(t) => {
                    for (k, e) in t.iter_mut() {
                        walk(&mut e.node, vars, problems, in_vars || k == "vars");
                    }
                }
                Value::Array(a) => a.iter_mut().for_each(|n| walk(n, vars, problems, in_vars)),
                Value::Str(s) if !in_vars && s.contains("${") => {
                    // A whole-string reference keeps the variable's type.
                    if let Some(name) = s
                        .strip_prefix("${vars.")
                        .and_then(|r| r.strip_suffix('}'))
                        .filter(|n| !n.contains('}'))
                    {
                        match vars.get(name) {
                            Some(v) => node.value = v.value.clone(),
                            None => problems.push(unknown_var(name, &node.at, vars)),
                        }
                        return;
                    }
                    let mut out = String::new();
                    let mut rest = s.as_str();
                    while let Some(start) = rest.find("${") {
                        out.push_str(&rest[..start]);
                        let Some(end) = rest[start..].find('}') else {
                            out.push_str(&rest[start..]);
                            rest = "";
                            break;
                        };
                        let inner = &rest[start + 2..start + end];
                        if inner.starts_with("count.") || inner.starts_with("each.") {
                            // A fleet member's index or key: substituted when the fleet expands.
                            out.push_str(&rest[start..start + end + 1]);
                            rest = &rest[start + end + 1..];
                            continue;
                        }
                        match inner
                            .strip_prefix("vars.")
                            .and_then(|n| vars.get(n).map(|v| (n, v)))
                        {
                            Some((_, v)) => out.push_str(&match &v.value {
                                Value::Str(x) => x.clone(),
                                Value::Int(i) => i.to_string(),
                                Value::Float(f) => f.to_string(),
                                Value::Bool(b) => b.to_string(),
                                other => other.type_name().to_string(),
                            }),
                            None => {
                                problems.push(unknown_var(
                                    inner.strip_prefix("vars.").unwrap_or(inner),
                                    &node.at,
                                    vars,
                                ));
                                out.push_str(&rest[start..start + end + 1]);
                            }
                        }
                        rest = &rest[start + end + 1..];
                    }
                    out.push_str(rest);
                    *s = out;
                }
                _ => {}
            }
        }
        fn unknown_var(name: &str, at: &At, vars: &BTreeMap<String, Node>) -> Problem {
            let p = Problem::error("unknown_var", format!("`${{vars.{name}}}` is not defined"))
                .at(at, "used here");
            match did_you_mean(name, vars.keys().map(String::as_str)) {
                Some(s) => p.help(format!("did you mean `${{vars.{s}}}`?")),
                None => p.help(format!("define it in `[vars]`: `{name} = \"...\"`")),
            }
        }
        walk(root, &vars, &mut problems, false);
        self.problems.extend(problems);
    }

    /// Keys and types against the schema table.
    fn check_table(&mut self, node: &Node, fields: &[Field], path: &str) {
        let Some(t) = entries(node) else { return };
        for (k, e) in t {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match fields.iter().find(|f| f.name == k) {
                Some(f) => self.check_value(&e.node, f.ty, &here),
                None => {
                    let what = if path.is_empty() { "table" } else { "key" };
                    let mut p = Problem::error("unknown_key", format!("unknown {what} `{here}`"))
                        .at(&e.key_at, format!("not a known {what}"));
                    p = match did_you_mean(k, fields.iter().map(|f| f.name)) {
                        Some(s) => p.help(format!("did you mean `{s}`?")),
                        None => p.help(format!(
                            "known here: {}",
                            fields
                                .iter()
                                .map(|f| format!("`{}`", f.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    };
                    self.problem(p);
                }
            }
        }
    }

    fn wrong_type(&mut self, node: &Node, path: &str, expected: &str) {
        self.problem(
            Problem::error(
                "wrong_type",
                format!(
                    "`{path}` must be {expected}, not {}",
                    node.value.type_name()
                ),
            )
            .at(&node.at, format!("{} here", node.value.type_name()))
            .help(format!("write `{path}` as {expected}")),
        );
    }

    fn check_value(&mut self, node: &Node, ty: Ty, path: &str) {
        match (ty, &node.value) {
            (Ty::Str, Value::Str(_))
            | (Ty::Int, Value::Int(_))
            | (Ty::Num, Value::Int(_) | Value::Float(_))
            | (Ty::Bool, Value::Bool(_)) => {}
            (Ty::Str, _) => self.wrong_type(node, path, "a string"),
            (Ty::Int, _) => self.wrong_type(node, path, "an integer"),
            (Ty::Num, _) => self.wrong_type(node, path, "a number"),
            (Ty::Bool, _) => self.wrong_type(node, path, "a boolean (`true` or `false`)"),
            (Ty::Enum(values), Value::Str(s)) => {
                if !values.contains(&s.as_str()) {
                    let mut p = Problem::error(
                        "invalid_value",
                        format!(
                            "`{path}` must be one of {}",
                            values
                                .iter()
                                .map(|v| format!("`{v}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                    .at(&node.at, format!("`{s}` is not allowed"));
                    if let Some(m) = did_you_mean(&s.to_ascii_uppercase(), values.iter().copied()) {
                        p = p.help(format!("did you mean `{m}`?"));
                    }
                    self.problem(p);
                }
            }
            (Ty::Enum(_), _) => self.wrong_type(node, path, "a string"),
            (Ty::StrMap, Value::Table(t)) => {
                for (k, e) in t {
                    if !matches!(e.node.value, Value::Str(_)) {
                        self.wrong_type(&e.node, &format!("{path}.{k}"), "a string");
                    }
                }
            }
            (Ty::NestedMap, Value::Table(t)) => {
                for (k, e) in t {
                    if !matches!(e.node.value, Value::Table(_)) {
                        self.wrong_type(
                            &e.node,
                            &format!("{path}.{k}"),
                            "a table of tag keys and values",
                        );
                    }
                }
            }
            (Ty::StrMap | Ty::NestedMap, _) => self.wrong_type(node, path, "a table"),
            (Ty::StrList, Value::Array(a)) => {
                for (i, n) in a.iter().enumerate() {
                    if !matches!(n.value, Value::Str(_)) {
                        self.wrong_type(n, &format!("{path}[{i}]"), "a string");
                    }
                }
            }
            (Ty::StrList, _) => self.wrong_type(node, path, "an array of strings"),
            (Ty::Table(fields), Value::Table(_)) => self.check_table(node, fields, path),
            (Ty::Table(_), _) => self.wrong_type(node, path, "a table"),
            (Ty::Named(fields), Value::Table(t)) => {
                for (name, e) in t {
                    let here = format!("{path}.{name}");
                    if !valid_name(name) {
                        self.problem(
                            Problem::error(
                                "invalid_name",
                                format!(
                                    "`{here}`: resource names use letters, digits, `_` and `-`"
                                ),
                            )
                            .at(&e.key_at, "invalid name")
                            .help("rename the table"),
                        );
                    }
                    match &e.node.value {
                        Value::Table(_) => self.check_table(&e.node, fields, &here),
                        _ => self.wrong_type(&e.node, &here, &format!("a table (`[{here}]`)")),
                    }
                }
            }
            (Ty::Named(_), _) => self.wrong_type(node, path, "a table of named tables"),
            (Ty::TableArray(fields), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let here = format!("{path}[{i}]");
                    match &item.value {
                        Value::Table(_) => self.check_table(item, fields, &here),
                        _ => self.wrong_type(item, &here, &format!("a table (`[[{path}]]`)")),
                    }
                }
            }
            (Ty::TableArray(_), _) => {
                self.wrong_type(node, path, &format!("an array of tables (`[[{path}]]`)"))
            }
            (Ty::Vars, Value::Table(t)) => {
                for (k, e) in t {
                    if matches!(
                        e.node.value,
                        Value::Table(_) | Value::Array(_) | Value::Other(_)
                    ) {
                        self.wrong_type(
                            &e.node,
                            &format!("vars.{k}"),
                            "a string, number or boolean",
                        );
                    }
                }
            }
            (Ty::Vars, _) => self.wrong_type(node, path, "a table"),
        }
    }

    /// A string that must be an OCID of one of `kinds`; `None` (with a problem) otherwise.
    fn ocid(&mut self, s: &str, at: &At, field: &str, kinds: &[&str]) -> Option<String> {
        match ocid_kind(s) {
            Some(k) if kinds.contains(&k) => Some(s.to_string()),
            Some(k) => {
                self.problem(
                    Problem::error(
                        "wrong_ocid_kind",
                        format!(
                            "`{field}` needs {} OCID, but this is {} OCID",
                            article(kinds[0]),
                            article(k)
                        ),
                    )
                    .at(at, format!("{} OCID", article(k)))
                    .help(format!("use an `ocid1.{}.…` id here", kinds[0])),
                );
                None
            }
            None => {
                self.problem(
                    Problem::error("malformed_ocid", format!("`{field}`: `{s}` is not an OCID"))
                        .at(at, "not an OCID")
                        .help(format!(
                            "OCIDs look like `ocid1.{}.oc1.<region>.<unique id>`",
                            kinds[0]
                        )),
                );
                None
            }
        }
    }

    /// A string that is an `instance.X`/`image.X` reference or an OCID.
    fn reference(
        &mut self,
        s: &str,
        at: &At,
        field: &str,
        kind: ResourceKind,
        ocid_kinds: &[&str],
    ) -> Option<Ref> {
        if s.starts_with("ocid1.") {
            return self.ocid(s, at, field, ocid_kinds).map(Ref::Ocid);
        }
        match s.parse::<Address>() {
            Ok(a) if a.kind == kind => Some(Ref::Resource(a)),
            Ok(a) => {
                self.problem(
                    Problem::error(
                        "wrong_reference_kind",
                        format!(
                            "`{field}` must refer to an {} (`{}.NAME`), not `{a}`",
                            kind.as_str(),
                            kind.as_str()
                        ),
                    )
                    .at(at, format!("{} reference", article(a.kind.as_str())))
                    .help(format!(
                        "use `{}.NAME` or an `ocid1.{}.…` id",
                        kind.as_str(),
                        ocid_kinds[0]
                    )),
                );
                None
            }
            Err(_) => {
                self.problem(
                    Problem::error(
                        "malformed_ocid",
                        format!(
                            "`{field}`: `{s}` is neither an OCID nor a `{}.NAME` reference",
                            kind.as_str()
                        ),
                    )
                    .at(at, "not an id")
                    .help(format!(
                        "use `{}.NAME` for a resource of this manifest, or an `ocid1.{}.…` id",
                        kind.as_str(),
                        ocid_kinds[0]
                    )),
                );
                None
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

        let mut instances = BTreeMap::new();
        let mut ref_sites: Vec<(Address, Address, At)> = Vec::new();
        for (name, e) in &instances_t {
            let Ok(address) = format!("instance.{name}").parse::<Address>() else {
                continue;
            };
            let Some(t) = entries(&e.node) else { continue };
            if let Some(spec) = self.instance(address, t, &defaults, &e.key_at, &mut ref_sites) {
                instances.insert(name.clone(), spec);
            }
        }
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
            ) {
                images.insert(name.clone(), spec);
            }
        }

        // Dangling references.
        for (from, to, at) in &ref_sites {
            let exists = match to.kind {
                ResourceKind::Instance => instance_names.contains(&to.name),
                ResourceKind::Image => image_names.contains(&to.name),
            };
            if !exists {
                let (names, x) = match to.kind {
                    ResourceKind::Instance => (&instance_names, &instances_x),
                    ResourceKind::Image => (&image_names, &images_x),
                };
                let kind = to.kind.as_str();
                let p = if let (false, Some(members)) = (to.is_member(), x.fleets.get(&to.name)) {
                    Problem::error(
                        "fleet_reference",
                        format!(
                            "`{from}` refers to `{to}`, a fleet of {} members",
                            members.len()
                        ),
                    )
                    .at(at, "a fleet, not one resource")
                    .help(match members.first() {
                        Some(m) => format!("refer to one member, e.g. `{kind}.{m}`"),
                        None => format!(
                            "`{to}` has no members here (`count = 0` or an empty `for_each`)"
                        ),
                    })
                } else if x.disabled.contains(to.fleet()) {
                    Problem::error(
                        "disabled_reference",
                        format!("`{from}` refers to `{to}`, which is `enabled = false` here"),
                    )
                    .at(at, "disabled")
                    .help(format!(
                        "enable `{kind}.{}` in this environment, or refer to something else",
                        to.fleet()
                    ))
                } else if let (true, Some(members)) = (to.is_member(), x.fleets.get(to.fleet())) {
                    Problem::error(
                        "dangling_reference",
                        format!(
                            "`{from}` refers to `{to}`, which is not a member of `{kind}.{}`",
                            to.fleet()
                        ),
                    )
                    .at(at, "no such member")
                    .help(match (members.first(), members.last()) {
                        (Some(a), Some(b)) => {
                            format!("its members are `{kind}.{a}` … `{kind}.{b}`")
                        }
                        _ => format!("`{kind}.{}` has no members here", to.fleet()),
                    })
                } else {
                    let p = Problem::error(
                        "dangling_reference",
                        format!("`{from}` refers to `{to}`, which this manifest does not declare"),
                    )
                    .at(at, "no such resource");
                    match did_you_mean(&to.name, names.iter().map(String::as_str)) {
                        Some(s) => p.help(format!("did you mean `{kind}.{s}`?")),
                        None => p.help(format!("declare `[{to}]`, or use an OCID")),
                    }
                };
                self.problem(p);
            }
        }
        if get(&defaults, "region").is_some() {
            self.region(&defaults);
        }
        self.cross_region(&ref_sites, &provider, &instances, &images);
        self.cycles(&ref_sites);
        self.duplicate_names(&instances, &images, &instances_t, &images_t);
        let moved = self.moved(get(top, "moved"), &instance_names, &image_names);
        Some(Manifest {
            dir: self.dir.clone(),
            env: env.to_string(),
            provider,
            backend,
            instances,
            images,
            moved,
            warnings: Vec::new(),
        })
    }

    /// A reference from one region to another: impossible in OCI (an image is regional; it is
    /// exported and imported, not launched across regions).
    fn cross_region(
        &mut self,
        refs: &[(Address, Address, At)],
        provider: &Provider,
        instances: &BTreeMap<String, InstanceSpec>,
        images: &BTreeMap<String, ImageSpec>,
    ) {
        let region_of = |a: &Address| -> Option<Option<&str>> {
            let r = match a.kind {
                ResourceKind::Instance => instances.get(&a.name)?.region.as_deref(),
                ResourceKind::Image => images.get(&a.name)?.region.as_deref(),
            };
            Some(r.or(provider.region.as_deref()))
        };
        for (from, to, at) in refs {
            let (Some(rf), Some(rt)) = (region_of(from), region_of(to)) else {
                continue;
            };
            if rf != rt {
                let name = |r: Option<&str>| r.unwrap_or("the provider's region").to_string();
                self.problem(
                    Problem::error(
                        "cross_region_reference",
                        format!(
                            "`{from}` ({}) refers to `{to}` ({}): resources cannot be used across regions",
                            name(rf),
                            name(rt)
                        ),
                    )
                    .at(at, "in another region")
                    .help("put both in one region (an image is regional: export it and import it in the other region)"),
                );
            }
        }
    }

    /// `[[moved]]` tables: both addresses valid and of one kind, `to` declared, `from` not.
    fn moved(
        &mut self,
        node: Option<&Node>,
        instance_names: &BTreeSet<String>,
        image_names: &BTreeSet<String>,
    ) -> Vec<Moved> {
        let Some(Value::Array(items)) = node.map(|n| &n.value) else {
            return Vec::new();
        };
        let declared = |a: &Address| match a.kind {
            ResourceKind::Instance => instance_names.contains(&a.name),
            ResourceKind::Image => image_names.contains(&a.name),
        };
        let mut out = Vec::new();
        for item in items {
            let Some(t) = entries(item) else { continue };
            let parse = |key: &str, this: &mut Self| -> Option<(Address, At)> {
                let Some((v, at)) = str_of(get(t, key)) else {
                    this.problem(
                        Problem::error("missing_field", format!("`[[moved]]` needs `{key}`"))
                            .at(&item.at, format!("`{key}` missing"))
                            .help("`from = \"instance.OLD\"`, `to = \"instance.NEW\"`"),
                    );
                    return None;
                };
                match v.parse::<Address>() {
                    Ok(a) => Some((a, at.clone())),
                    Err(e) => {
                        this.problem(Problem::error("invalid_address", e).at(at, "not an address"));
                        None
                    }
                }
            };
            let (Some((from, from_at)), Some((to, to_at))) =
                (parse("from", self), parse("to", self))
            else {
                continue;
            };
            if from.kind != to.kind {
                self.problem(
                    Problem::error(
                        "moved_kind",
                        format!("`{from}` cannot move to `{to}`: a move keeps the kind"),
                    )
                    .at(&to_at, "another kind"),
                );
                continue;
            }
            if !declared(&to) {
                self.problem(
                    Problem::error(
                        "moved_to_undeclared",
                        format!("`[[moved]]` to `{to}`, which this manifest does not declare"),
                    )
                    .at(&to_at, "not declared")
                    .help(format!(
                        "declare `[{}.{}]`, or fix the address",
                        to.kind.as_str(),
                        to.fleet()
                    )),
                );
                continue;
            }
            if declared(&from) {
                self.problem(
                    Problem::error(
                        "moved_from_declared",
                        format!("`[[moved]]` from `{from}`, which this manifest still declares"),
                    )
                    .at(&from_at, "still declared")
                    .help("a move renames: remove the old table, or remove this `[[moved]]`"),
                );
                continue;
            }
            out.push(Moved { from, to });
        }
        out
    }

    fn backend(&mut self, t: &IndexMap<String, Entry>, table_at: Option<&At>) -> Backend {
        let kind = str_of(get(t, "kind")).map(|(k, _)| k);
        if kind != Some("object_storage") {
            // `kind = "local"`, or a missing/invalid kind (the key table reports those).
            if kind.is_none() {
                if let Some(at) = table_at {
                    self.problem(
                        Problem::error("missing_field", "`[backend]` has no `kind`")
                            .at(at, "`kind` missing")
                            .help("set `kind = \"object_storage\"` (or `\"local\"`, the default)"),
                    );
                }
            }
            return Backend::Local;
        }
        let required = |key: &str, this: &mut Self| match str_of(get(t, key)) {
            Some((v, at)) if v.trim().is_empty() => {
                this.problem(
                    Problem::error("invalid_value", format!("`backend.{key}` is empty"))
                        .at(at, "empty"),
                );
                None
            }
            Some((v, _)) => Some(v.to_string()),
            None => {
                if let Some(at) = table_at {
                    this.problem(
                        Problem::error(
                            "missing_field",
                            format!("an `object_storage` backend needs `{key}`"),
                        )
                        .at(at, format!("`{key}` missing"))
                        .help(format!(
                            "set `{key}` in `[backend]` (`oci os ns get` prints your namespace)"
                        )),
                    );
                }
                None
            }
        };
        let namespace = required("namespace", self);
        let bucket = required("bucket", self);
        let region = self.region(t);
        let endpoint = self.endpoint(t, "backend.endpoint");
        match (namespace, bucket) {
            (Some(namespace), Some(bucket)) => Backend::ObjectStorage(ObjectStorageBackend {
                namespace,
                bucket,
                prefix: str_of(get(t, "prefix"))
                    .map(|(p, _)| p.to_string())
                    .unwrap_or_default(),
                region,
                endpoint,
            }),
            _ => Backend::Local,
        }
    }

    /// A resource's `region`, else `[defaults]`' (unknown regions are reported where written;
    /// `[defaults]`' once, by `build`).
    fn resource_region(
        &mut self,
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
    ) -> Option<String> {
        if get(t, "region").is_some() {
            self.region(t)
        } else {
            str_of(get(defaults, "region"))
                .and_then(|(r, _)| crate::oci::region::resolve(r).ok())
                .map(str::to_string)
        }
    }

    fn region(&mut self, t: &IndexMap<String, Entry>) -> Option<String> {
        str_of(get(t, "region")).and_then(|(r, at)| match crate::oci::region::resolve(r) {
            Ok(id) => Some(id.to_string()),
            Err(_) => {
                let p = Problem::error("unknown_region", format!("unknown region `{r}`"))
                    .at(at, "not a region");
                let p = match did_you_mean(&r.to_ascii_lowercase(), crate::oci::region::all_ids()) {
                    Some(s) => p.help(format!("did you mean `{s}`?")),
                    None => p.help(
                        "use a region id such as `us-ashburn-1` or a 3-letter code such as `iad`",
                    ),
                };
                self.problem(p);
                None
            }
        })
    }

    /// `emulator` or an http(s) URL; `None` when absent (or invalid, which is reported).
    fn endpoint(&mut self, t: &IndexMap<String, Entry>, field: &str) -> Option<Endpoint> {
        self.endpoint_value(get(t, "endpoint"), field)
    }

    fn endpoint_value(&mut self, node: Option<&Node>, field: &str) -> Option<Endpoint> {
        let example = if field.starts_with("backend") {
            "https://objectstorage.us-ashburn-1.oraclecloud.com"
        } else {
            "https://iaas.us-ashburn-1.oraclecloud.com"
        };
        match str_of(node) {
            None => None,
            Some(("emulator", _)) => Some(Endpoint::Emulator),
            Some((u, at)) => match url::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => Some(Endpoint::Url(url)),
                _ => {
                    self.problem(
                        Problem::error("invalid_endpoint", format!("`{field}` `{u}` is not a URL"))
                            .at(at, "not a URL")
                            .help(format!("use `emulator` or a URL like `{example}`")),
                    );
                    None
                }
            },
        }
    }

    fn provider(&mut self, t: &IndexMap<String, Entry>) -> Provider {
        let region = self.region(t);
        let endpoint = self
            .endpoint(t, "provider.endpoint")
            .unwrap_or(Endpoint::Default);
        let parallelism = match get(t, "parallelism") {
            Some(Node {
                value: Value::Int(n),
                at,
            }) => {
                if (1..=256).contains(n) {
                    Some(*n as usize)
                } else {
                    self.problem(
                        Problem::error(
                            "invalid_value",
                            "`provider.parallelism` must be between 1 and 256",
                        )
                        .at(at, "out of range"),
                    );
                    None
                }
            }
            _ => None,
        };
        let mut endpoints = BTreeMap::new();
        if let Some(m) = get(t, "endpoints").and_then(entries) {
            for (region, e) in m {
                let Ok(id) = crate::oci::region::resolve(region) else {
                    self.problem(
                        Problem::error("unknown_region", format!("unknown region `{region}`"))
                            .at(&e.key_at, "not a region")
                            .help("use a region id such as `us-ashburn-1` or a 3-letter code such as `iad`"),
                    );
                    continue;
                };
                if let Some(ep) =
                    self.endpoint_value(Some(&e.node), &format!("provider.endpoints.{region}"))
                {
                    endpoints.insert(id.to_string(), ep);
                }
            }
        }
        Provider {
            endpoints,
            profile: str_of(get(t, "profile")).map(|(s, _)| s.to_string()),
            config_file: str_of(get(t, "config_file")).map(|(s, _)| PathBuf::from(s)),
            region,
            endpoint,
            parallelism,
            auth: str_of(get(t, "auth")).map(|(s, _)| s.to_string()),
            ca_bundle: str_of(get(t, "ca_bundle")).map(|(s, _)| self.dir.join(s)),
        }
    }

    /// The value of `key` in the resource table, else in `[defaults]`.
    fn field<'a>(
        t: &'a IndexMap<String, Entry>,
        defaults: &'a IndexMap<String, Entry>,
        key: &str,
    ) -> Option<&'a Node> {
        get(t, key).or_else(|| get(defaults, key))
    }

    fn required_str<'a>(
        &mut self,
        t: &'a IndexMap<String, Entry>,
        defaults: &'a IndexMap<String, Entry>,
        key: &str,
        address: &Address,
        table_at: &At,
    ) -> Option<(&'a str, &'a At)> {
        match Self::field(t, defaults, key) {
            Some(n) => str_of(Some(n)),
            None => {
                self.problem(
                    Problem::error("missing_field", format!("`{address}` has no `{key}`"))
                        .at(table_at, format!("`{key}` missing"))
                        .help(format!("set `{key}` in `[{address}]` or in `[defaults]`")),
                );
                None
            }
        }
    }

    fn merged_tags(
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
    ) -> (Tags, DefinedTags) {
        let mut free = str_map(get(defaults, "freeform_tags"));
        free.extend(str_map(get(t, "freeform_tags")));
        let mut defined = nested_map(get(defaults, "defined_tags"));
        for (ns, m) in nested_map(get(t, "defined_tags")) {
            defined.entry(ns).or_default().extend(m);
        }
        (free, defined)
    }

    /// A side file named by `field`, read only if it is a regular file of at most `limit` bytes.
    fn read_file(&mut self, rel: &str, at: &At, field: &str, limit: u64) -> Option<String> {
        use crate::small_file::ReadError;
        let path = self.dir.join(rel);
        match crate::small_file::read(&path, limit) {
            Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            Err(ReadError::TooLarge { limit }) => {
                let help = if field == "user_data_file" {
                    "OCI takes at most 32,000 bytes of instance metadata and `user_data` is base64 (4 bytes for every 3): keep the file within 24000 bytes, e.g. gzip it (cloud-init reads gzip)".to_string()
                } else {
                    format!("`{field}` holds public keys only: keep it within {limit} bytes")
                };
                self.problem(
                    Problem::error(
                        "file_too_large",
                        format!(
                            "`{field}`: `{}` is larger than {limit} bytes",
                            path.display()
                        ),
                    )
                    .at(at, "too large")
                    .help(help),
                );
                None
            }
            Err(e @ ReadError::NotRegular(_)) => {
                self.problem(
                    Problem::error(
                        "unreadable_file",
                        format!("`{field}`: cannot read `{}`: {e}", path.display()),
                    )
                    .at(at, "not a regular file")
                    .help(format!("point `{field}` at a regular file")),
                );
                None
            }
            Err(ReadError::Io(e)) => {
                self.problem(
                    Problem::error(
                        "unreadable_file",
                        format!("`{field}`: cannot read `{}`: {e}", path.display()),
                    )
                    .at(at, "cannot be read")
                    .help("paths are relative to the manifest's directory"),
                );
                None
            }
        }
    }

    fn instance(
        &mut self,
        address: Address,
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
        table_at: &At,
        refs: &mut Vec<(Address, Address, At)>,
    ) -> Option<InstanceSpec> {
        let before = self.problems.iter().filter(|p| p.is_error()).count();
        let compartment = self
            .required_str(t, defaults, "compartment", &address, table_at)
            .and_then(|(s, at)| self.ocid(s, at, "compartment", &["compartment", "tenancy"]));
        let ad = self
            .required_str(t, defaults, "availability_domain", &address, table_at)
            .map(|(s, at)| (s.to_string(), at.clone()));
        if let Some((ad, at)) = &ad {
            let ok = ad.split_once(':').is_some_and(|(prefix, name)| {
                !prefix.is_empty()
                    && name.to_ascii_uppercase().contains("-AD-")
                    && name
                        .rsplit("-AD-")
                        .next()
                        .is_some_and(|n| n.parse::<u8>().is_ok())
            });
            if !ok {
                self.problem(
                    Problem::error("invalid_availability_domain", format!("`availability_domain` `{ad}` is not an availability domain name"))
                        .at(at, "expected `<prefix>:<REGION>-AD-<n>`")
                        .help("copy it from the console or `oci iam availability-domain list`, e.g. `kIdk:US-ASHBURN-AD-1`"),
                );
            }
        }
        let fault_domain = str_of(Self::field(t, defaults, "fault_domain")).map(|(s, at)| {
            if !s.starts_with("FAULT-DOMAIN-") {
                self.problem(
                    Problem::error(
                        "invalid_value",
                        format!("`fault_domain` `{s}` is not a fault domain"),
                    )
                    .at(at, "expected `FAULT-DOMAIN-<n>`")
                    .help("use `FAULT-DOMAIN-1`, `FAULT-DOMAIN-2` or `FAULT-DOMAIN-3`"),
                );
            }
            s.to_string()
        });
        let shape = self
            .required_str(t, defaults, "shape", &address, table_at)
            .map(|(s, _)| s.to_string());
        let shape_config = Self::field(t, defaults, "shape_config").and_then(entries).map(|c| {
            let mut sc = ShapeConfig::default();
            for (key, max) in [("ocpus", 512.0), ("memory_in_gbs", 4096.0), ("vcpus", 1024.0)] {
                if let Some((n, at)) = num_of(get(c, key)) {
                    if !(n > 0.0 && n <= max) {
                        self.problem(
                            Problem::error("invalid_shape_config", format!("`shape_config.{key}` must be more than 0 and at most {max}, not {n}"))
                                .at(at, "out of range")
                                .help("see the shape's limits in the OCI documentation"),
                        );
                    }
                    match key {
                        "ocpus" => sc.ocpus = Some(n),
                        "memory_in_gbs" => sc.memory_in_gbs = Some(n),
                        _ => sc.vcpus = Some(n as u64),
                    }
                }
            }
            if let (Some(o), Some(m), Some((_, at))) = (sc.ocpus, sc.memory_in_gbs, num_of(get(c, "memory_in_gbs"))) {
                if o > 0.0 && (m / o > 64.0 || m < o) {
                    self.problem(
                        Problem::error("invalid_shape_config", format!("`shape_config.memory_in_gbs` {m} is not between 1 and 64 GB per OCPU ({o} OCPUs)"))
                            .at(at, "out of ratio")
                            .help(format!("use between {o} and {} GB", o * 64.0)),
                    );
                }
            }
            sc.baseline_ocpu_utilization = str_of(get(c, "baseline_ocpu_utilization")).map(|(s, _)| s.to_string());
            sc
        });
        let subnet = self
            .required_str(t, defaults, "subnet", &address, table_at)
            .and_then(|(s, at)| self.ocid(s, at, "subnet", &["subnet"]));
        let source = match Self::field(t, defaults, "source") {
            None => {
                self.problem(
                    Problem::error("missing_field", format!("`{address}` has no `source`"))
                        .at(table_at, "`source` missing")
                        .help("add `source = { image = \"...\" }`, `{ boot_volume = \"...\" }` or `{ image_lookup = { os = \"Oracle Linux\", version = \"9\" } }`"),
                );
                None
            }
            Some(n) => self.instance_source(&address, n, refs),
        };
        let mut metadata = str_map(get(defaults, "metadata"));
        metadata.extend(str_map(get(t, "metadata")));
        if let Some((file, at)) = str_of(get(t, "user_data_file")) {
            if let Some(text) = self.read_file(file, at, "user_data_file", USER_DATA_FILE_LIMIT) {
                metadata.insert(
                    "user_data".into(),
                    base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
                );
            }
        }
        if let Some((file, at)) = str_of(Self::field(t, defaults, "ssh_authorized_keys_file")) {
            if let Some(text) =
                self.read_file(file, at, "ssh_authorized_keys_file", SSH_KEYS_FILE_LIMIT)
            {
                metadata.insert("ssh_authorized_keys".into(), text.trim_end().to_string());
            }
        }
        let (freeform_tags, defined_tags) = Self::merged_tags(t, defaults);
        let state = match str_of(get(t, "state")) {
            Some(("STOPPED", _)) => PowerState::Stopped,
            _ => PowerState::Running,
        };
        let ignore_changes: Vec<String> = match get(t, "ignore_changes") {
            Some(Node {
                value: Value::Array(a),
                ..
            }) => a
                .iter()
                .filter_map(|n| str_of(Some(n)).map(|(s, _)| s.to_string()))
                .collect(),
            _ => Vec::new(),
        };
        let boot_volume_size_in_gbs = match Self::field(t, defaults, "boot_volume_size_in_gbs") {
            Some(Node {
                value: Value::Int(n),
                at,
            }) => {
                if !(50..=32768).contains(n) {
                    self.problem(
                        Problem::error(
                            "invalid_value",
                            format!(
                                "`boot_volume_size_in_gbs` must be between 50 and 32768, not {n}"
                            ),
                        )
                        .at(at, "out of range"),
                    );
                }
                Some(*n as u64)
            }
            _ => None,
        };
        if self.problems.iter().filter(|p| p.is_error()).count() > before {
            return None;
        }
        Some(InstanceSpec {
            region: self.resource_region(t, defaults),
            display_name: str_of(get(t, "display_name"))
                .map(|(s, _)| s.to_string())
                .unwrap_or_else(|| address.name.clone()),
            address,
            compartment: compartment?,
            availability_domain: ad?.0,
            fault_domain,
            shape: shape?,
            shape_config,
            subnet: subnet?,
            assign_public_ip: bool_of(Self::field(t, defaults, "assign_public_ip")),
            source: source?,
            boot_volume_size_in_gbs,
            metadata,
            freeform_tags,
            defined_tags,
            state,
            preserve_boot_volume: bool_of(Self::field(t, defaults, "preserve_boot_volume"))
                .unwrap_or(false),
            ignore_changes,
            prevent_destroy: bool_of(get(t, "prevent_destroy")).unwrap_or(false),
            create_before_destroy: bool_of(get(t, "create_before_destroy")).unwrap_or(false),
        })
    }

    fn instance_source(
        &mut self,
        address: &Address,
        n: &Node,
        refs: &mut Vec<(Address, Address, At)>,
    ) -> Option<InstanceSource> {
        let t = entries(n)?;
        if t.len() != 1 {
            self.problem(
                Problem::error("invalid_source", format!("`{address}` `source` must have exactly one of `image`, `boot_volume`, `image_lookup`"))
                    .at(&n.at, format!("{} given", t.len()))
                    .help("keep one of them"),
            );
            return None;
        }
        if let Some((s, at)) = str_of(get(t, "image")) {
            let r = self.reference(s, at, "source.image", ResourceKind::Image, &["image"])?;
            if let Ref::Resource(a) = &r {
                refs.push((address.clone(), a.clone(), at.clone()));
            }
            return Some(InstanceSource::Image(r));
        }
        if let Some((s, at)) = str_of(get(t, "boot_volume")) {
            return self
                .ocid(s, at, "source.boot_volume", &["bootvolume"])
                .map(InstanceSource::BootVolume);
        }
        if let Some(l) = get(t, "image_lookup").and_then(entries) {
            let os = str_of(get(l, "os")).map(|(s, _)| s.to_string());
            let version = str_of(get(l, "version")).map(|(s, _)| s.to_string());
            if os.is_none() || version.is_none() {
                self.problem(
                    Problem::error(
                        "missing_field",
                        "`source.image_lookup` needs `os` and `version`",
                    )
                    .at(&n.at, "incomplete lookup")
                    .help("e.g. `image_lookup = { os = \"Oracle Linux\", version = \"9\" }`"),
                );
                return None;
            }
            return Some(InstanceSource::ImageLookup {
                os: os?,
                version: version?,
                shape: str_of(get(l, "shape")).map(|(s, _)| s.to_string()),
            });
        }
        None
    }

    fn image(
        &mut self,
        address: Address,
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
        table_at: &At,
        refs: &mut Vec<(Address, Address, At)>,
        instances: &IndexMap<String, Entry>,
    ) -> Option<ImageSpec> {
        let before = self.problems.iter().filter(|p| p.is_error()).count();
        let compartment = self
            .required_str(t, defaults, "compartment", &address, table_at)
            .and_then(|(s, at)| self.ocid(s, at, "compartment", &["compartment", "tenancy"]));
        let source = match (
            str_of(get(t, "from_instance")),
            get(t, "source").and_then(entries),
        ) {
            (Some(_), Some(_)) => {
                self.problem(
                    Problem::error(
                        "invalid_source",
                        format!("`{address}` has both `from_instance` and `source`"),
                    )
                    .at(table_at, "both given")
                    .help("keep one of them"),
                );
                None
            }
            (None, None) => {
                self.problem(
                    Problem::error("missing_field", format!("`{address}` has neither `from_instance` nor `source`"))
                        .at(table_at, "no source")
                        .help("add `from_instance = \"instance.NAME\"` or `source = { object_storage = { namespace, bucket, object } }`"),
                );
                None
            }
            (Some((s, at)), None) => match s.parse::<Address>() {
                Ok(a) if a.kind == ResourceKind::Instance => {
                    refs.push((address.clone(), a.clone(), at.clone()));
                    // The source must be stoppable by kiln: it must not ignore its power state.
                    if let Some(src) = instances.get(&a.name).and_then(|e| entries(&e.node)) {
                        let ignores_state = matches!(get(src, "ignore_changes"), Some(Node { value: Value::Array(x), .. }) if x.iter().any(|n| str_of(Some(n)).is_some_and(|(s, _)| s == "state")));
                        if ignores_state {
                            self.problem(
                                Problem::error("uncapturable_source", format!("`{address}` is captured from `{a}`, which kiln cannot stop: it has `ignore_changes = [\"state\"]`"))
                                    .at(at, "source cannot be stopped")
                                    .help(format!("remove `state` from `{a}`'s `ignore_changes`, or capture another instance")),
                            );
                        }
                    }
                    Some(ImageSource::FromInstance(a))
                }
                _ => {
                    self.problem(
                        Problem::error("wrong_reference_kind", format!("`{address}` `from_instance` must be `instance.NAME`, not `{s}`"))
                            .at(at, "not an instance reference")
                            .help("images are captured from an instance of this manifest: `from_instance = \"instance.builder\"`"),
                    );
                    None
                }
            },
            (None, Some(s)) => {
                if let Some(o) = get(s, "object_storage").and_then(entries) {
                    match (
                        str_of(get(o, "namespace")),
                        str_of(get(o, "bucket")),
                        str_of(get(o, "object")),
                    ) {
                        (Some((n, _)), Some((b, _)), Some((ob, _))) => {
                            Some(ImageSource::ObjectStorage {
                                namespace: n.into(),
                                bucket: b.into(),
                                object: ob.into(),
                            })
                        }
                        _ => {
                            self.problem(Problem::error("missing_field", "`source.object_storage` needs `namespace`, `bucket` and `object`").at(table_at, "incomplete source"));
                            None
                        }
                    }
                } else if let Some((u, _)) = str_of(get(s, "uri")) {
                    Some(ImageSource::Uri(u.into()))
                } else {
                    self.problem(
                        Problem::error(
                            "invalid_source",
                            format!("`{address}` `source` needs `object_storage` or `uri`"),
                        )
                        .at(table_at, "empty source"),
                    );
                    None
                }
            }
        };
        let (freeform_tags, defined_tags) = Self::merged_tags(t, defaults);
        if self.problems.iter().filter(|p| p.is_error()).count() > before {
            return None;
        }
        Some(ImageSpec {
            region: self.resource_region(t, defaults),
            display_name: str_of(get(t, "display_name"))
                .map(|(s, _)| s.to_string())
                .unwrap_or_else(|| address.name.clone()),
            address,
            compartment: compartment?,
            source: source?,
            launch_mode: str_of(get(t, "launch_mode")).map(|(s, _)| s.to_string()),
            operating_system: str_of(get(t, "operating_system")).map(|(s, _)| s.to_string()),
            operating_system_version: str_of(get(t, "operating_system_version"))
                .map(|(s, _)| s.to_string()),
            freeform_tags,
            defined_tags,
            restart_source: bool_of(get(t, "restart_source")).unwrap_or(true),
            prevent_destroy: bool_of(get(t, "prevent_destroy")).unwrap_or(false),
        })
    }

    /// A dependency cycle is one problem naming every member.
    fn cycles(&mut self, refs: &[(Address, Address, At)]) {
        let mut dag = crate::plan::graph::Dag::new();
        let mut ids: BTreeMap<&Address, _> = BTreeMap::new();
        for (a, b, _) in refs {
            for x in [a, b] {
                if !ids.contains_key(x) {
                    ids.insert(x, dag.add_node(x.to_string()));
                }
            }
        }
        for (a, b, _) in refs {
            dag.add_edge(ids[b], ids[a]);
        }
        // Strongly connected components with more than one member (or a self-edge) are cycles.
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (addr, &id) in &ids {
            if seen.contains(&addr.to_string()) {
                continue;
            }
            let down = dag.all_dependents(id);
            if !down.contains(&id) {
                continue;
            }
            let members: Vec<String> = down
                .iter()
                .filter(|&&n| dag.all_dependents(n).contains(&id))
                .map(|&n| dag.node(n).clone())
                .collect();
            seen.extend(members.iter().cloned());
            let sites: Vec<&(Address, Address, At)> = refs
                .iter()
                .filter(|(a, b, _)| {
                    members.contains(&a.to_string()) && members.contains(&b.to_string())
                })
                .collect();
            let Some(first) = sites.first() else { continue };
            let mut p = Problem::error("dependency_cycle", format!("dependency cycle: {}", members.join(" → ")))
                .at(&first.2, format!("`{}` needs `{}`", first.0, first.1))
                .help("break the cycle: an image cannot be the source of the instance it is captured from");
            for (a, b, at) in sites.iter().skip(1) {
                p = p.also(at, format!("`{a}` needs `{b}`"));
            }
            self.problem(p);
        }
    }

    fn duplicate_names(
        &mut self,
        instances: &BTreeMap<String, InstanceSpec>,
        images: &BTreeMap<String, ImageSpec>,
        instances_t: &IndexMap<String, Entry>,
        images_t: &IndexMap<String, Entry>,
    ) {
        let mut seen: BTreeMap<(&'static str, String, String), String> = BTreeMap::new();
        let mut list: Vec<(&'static str, &String, &str, &str, At)> = Vec::new();
        for (name, i) in instances {
            list.push((
                "instance",
                name,
                &i.display_name,
                &i.compartment,
                instances_t[name].key_at.clone(),
            ));
        }
        for (name, i) in images {
            list.push((
                "image",
                name,
                &i.display_name,
                &i.compartment,
                images_t[name].key_at.clone(),
            ));
        }
        for (kind, name, display, compartment, at) in list {
            let key = (kind, compartment.to_string(), display.to_string());
            match seen.get(&key) {
                Some(first) => {
                    let p = Problem::warning("duplicate_display_name", format!("`{kind}.{name}` and `{kind}.{first}` have the same display name `{display}` in one compartment"))
                        .at(&at, "same display name")
                        .help("OCI allows it, but people and scripts that find resources by name will be confused; give each its own `display_name`");
                    self.problems.push(p);
                }
                None => {
                    seen.insert(key, name.clone());
                }
            }
        }
    }
}

fn article(word: &str) -> String {
    let vowel = word.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} `{word}`", if vowel { "an" } else { "a" })
}
