//! Names instead of OCIDs: `compartment = { path = "prod/app" }` (from the tenancy root down),
//! `subnet = { lookup = { vcn = "prod", display_name = "app" } }` and, in `nsg_ids`,
//! `{ lookup = { vcn = "prod", display_name = "web" } }` — read here with their spans, checked
//! as far as the manifest alone can tell. They are resolved at plan time, with list calls, by
//! `plan::lookup` (this module sends nothing); until then the spec's field holds a placeholder
//! ([`is_placeholder`]) that is never sent: a plan resolves every lookup before it diffs.
//!
//! A VCN is looked up in the lookup's own `compartment` (an OCID or `{ path = ... }`) when it
//! names one, else in the resource's compartment; its subnet or network security group is
//! looked up in that same compartment, in that VCN.
//!
//! [`Spans`] keeps where the values a plan checks against OCI's lists were written (`shape`,
//! `availability_domain`, `fault_domain`, `source.image`, `subnet`), so a miss is a diagnostic
//! at its span.

use indexmap::IndexMap;

use super::diagnostic::{At, Problem};
use super::tree::{entries, get, str_of, Entry, Node, Value};
use std::collections::BTreeSet;

use super::{Address, Loader, Manifest, ManifestError};

/// A compartment named by its path of names from the tenancy root (`prod/app`).
#[derive(Clone, Debug, PartialEq)]
pub struct CompartmentPath {
    pub segments: Vec<String>,
    pub at: At,
}

impl CompartmentPath {
    pub fn path(&self) -> String {
        self.segments.join("/")
    }
}

/// Where a network lookup looks: a compartment OCID or path (`None` in [`NetworkLookup`]: the
/// resource's compartment).
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    Ocid(String),
    Path(CompartmentPath),
}

/// `{ lookup = { vcn = "...", display_name = "...", compartment = ... } }`: a subnet or a
/// network security group by its display name in a VCN named by its display name.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkLookup {
    pub vcn: String,
    pub display_name: String,
    pub compartment: Option<Scope>,
    pub at: At,
}

impl NetworkLookup {
    /// As the plan shows it: `lookup vcn "prod" / "app"`.
    pub fn describe(&self) -> String {
        let mut s = format!("lookup vcn {:?} / {:?}", self.vcn, self.display_name);
        if let Some(Scope::Path(p)) = &self.compartment {
            s.push_str(&format!(" in {:?}", p.path()));
        }
        s
    }
}

/// The lookups of one resource, by field.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lookups {
    pub compartment: Option<CompartmentPath>,
    pub subnet: Option<NetworkLookup>,
    /// Index into `nsg_ids`, and the lookup that fills it.
    pub nsgs: Vec<(usize, NetworkLookup)>,
}

impl Lookups {
    pub fn is_empty(&self) -> bool {
        self.compartment.is_none() && self.subnet.is_none() && self.nsgs.is_empty()
    }
}

/// Where the values a plan checks against OCI were written (`None`: not set; from a
/// `placement`: the table's). Where a value was written is not what the manifest means: two
/// specs that differ only in spans are equal.
#[derive(Clone, Debug, Default)]
pub struct Spans {
    pub shape: Option<At>,
    pub availability_domain: Option<At>,
    pub fault_domain: Option<At>,
    pub image: Option<At>,
    pub subnet: Option<At>,
}

impl PartialEq for Spans {
    fn eq(&self, _: &Spans) -> bool {
        true
    }
}

/// Whether `id` is the placeholder of an unresolved lookup (never an OCID).
pub fn is_placeholder(id: &str) -> bool {
    id.starts_with('(')
}

fn placeholder(what: &str) -> String {
    format!("({what})")
}

impl Loader {
    /// `compartment` of the table or `[defaults]`: an OCID, or `{ path = "a/b" }` (then a
    /// placeholder and the path).
    pub(super) fn compartment_of(
        &mut self,
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
        address: &Address,
        table_at: &At,
    ) -> Option<(String, Option<CompartmentPath>)> {
        match Self::field(t, defaults, "compartment") {
            Some(
                n @ Node {
                    value: Value::Table(_),
                    ..
                },
            ) => {
                let p = self.compartment_path(n, "compartment")?;
                Some((placeholder(&format!("path {}", p.path())), Some(p)))
            }
            Some(_) => {
                let (s, at) = self.required_str(t, defaults, "compartment", address, table_at)?;
                self.ocid(s, at, "compartment", &["compartment", "tenancy"])
                    .map(|id| (id, None))
            }
            None => self
                .required_str(t, defaults, "compartment", address, table_at)
                .map(|_| (String::new(), None)),
        }
    }

    /// `{ path = "a/b" }`.
    fn compartment_path(&mut self, n: &Node, field: &str) -> Option<CompartmentPath> {
        let t = entries(n)?;
        let Some((path, at)) = str_of(get(t, "path")) else {
            self.problem(
                Problem::error("missing_field", format!("`{field}` as a table needs `path`"))
                    .at(&n.at, "no `path`")
                    .help("e.g. `compartment = { path = \"prod/app\" }` (names from the tenancy root down), or give its OCID"),
            );
            return None;
        };
        let segments: Vec<String> = path.split('/').map(str::to_string).collect();
        if segments.iter().any(|s| s.trim().is_empty()) {
            self.problem(
                Problem::error(
                    "invalid_value",
                    format!("`{field}.path` `{path}` has an empty name"),
                )
                .at(at, "expected `name/name/…`")
                .help("names of compartments from the tenancy root down, separated by `/`, e.g. `prod/app`"),
            );
            return None;
        }
        Some(CompartmentPath {
            segments,
            at: at.clone(),
        })
    }

    /// `{ lookup = { vcn, display_name, compartment? } }` (the check stage allowed no other key).
    pub(super) fn network_lookup(&mut self, n: &Node, field: &str) -> Option<NetworkLookup> {
        let Some(l) = entries(n).and_then(|t| get(t, "lookup")) else {
            self.problem(
                Problem::error("missing_field", format!("`{field}` as a table needs `lookup`"))
                    .at(&n.at, "no `lookup`")
                    .help(format!("e.g. `{field} = {{ lookup = {{ vcn = \"prod\", display_name = \"app\" }} }}`, or give its OCID")),
            );
            return None;
        };
        let t = entries(l)?;
        let vcn = str_of(get(t, "vcn")).map(|(s, _)| s.to_string());
        let name = str_of(get(t, "display_name")).map(|(s, _)| s.to_string());
        let (Some(vcn), Some(display_name)) = (vcn, name) else {
            self.problem(
                Problem::error(
                    "missing_field",
                    format!("`{field}.lookup` needs `vcn` and `display_name`"),
                )
                .at(&l.at, "incomplete lookup")
                .help("e.g. `lookup = { vcn = \"prod\", display_name = \"app\" }` (display names, as the console shows them)"),
            );
            return None;
        };
        let compartment = match get(t, "compartment") {
            None => None,
            Some(
                c @ Node {
                    value: Value::Table(_),
                    ..
                },
            ) => Some(Scope::Path(
                self.compartment_path(c, &format!("{field}.lookup.compartment"))?,
            )),
            Some(c) => {
                let (s, at) = str_of(Some(c))?;
                Some(Scope::Ocid(self.ocid(
                    s,
                    at,
                    &format!("{field}.lookup.compartment"),
                    &["compartment", "tenancy"],
                )?))
            }
        };
        Some(NetworkLookup {
            vcn,
            display_name,
            compartment,
            at: n.at.clone(),
        })
    }

    /// `subnet` of the table or `[defaults]`: an OCID or a lookup (then a placeholder).
    pub(super) fn subnet_of(
        &mut self,
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
        address: &Address,
        table_at: &At,
    ) -> Option<(String, Option<NetworkLookup>)> {
        match Self::field(t, defaults, "subnet") {
            Some(
                n @ Node {
                    value: Value::Table(_),
                    ..
                },
            ) => {
                let l = self.network_lookup(n, "subnet")?;
                Some((placeholder(&l.describe()), Some(l)))
            }
            _ => {
                let (s, at) = self.required_str(t, defaults, "subnet", address, table_at)?;
                self.ocid(s, at, "subnet", &["subnet"]).map(|id| (id, None))
            }
        }
    }

    /// One entry of `nsg_ids`: an OCID or a lookup (then a placeholder).
    pub(super) fn nsg_of(&mut self, n: &Node) -> Option<(String, Option<NetworkLookup>)> {
        match &n.value {
            Value::Table(_) => {
                let l = self.network_lookup(n, "nsg_ids")?;
                Some((placeholder(&l.describe()), Some(l)))
            }
            _ => {
                let (s, at) = str_of(Some(n))?;
                self.ocid(s, at, "nsg_ids", &["networksecuritygroup"])
                    .map(|id| (id, None))
            }
        }
    }

    /// Where `shape`, `availability_domain`, `fault_domain`, `source.image` and `subnet` were
    /// written, for the plan's checks.
    pub(super) fn spans(
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
        placed_at: Option<&At>,
    ) -> Spans {
        let at = |key: &str| Self::field(t, defaults, key).map(|n| n.at.clone());
        Spans {
            shape: at("shape"),
            availability_domain: placed_at.cloned().or_else(|| at("availability_domain")),
            fault_domain: placed_at.cloned().or_else(|| at("fault_domain")),
            image: Self::field(t, defaults, "source")
                .and_then(entries)
                .and_then(|s| get(s, "image"))
                .map(|n| n.at.clone()),
            subnet: at("subnet"),
        }
    }
}

impl Manifest {
    /// Whether a resource names something by name, to be resolved by the plan.
    pub fn has_lookups(&self) -> bool {
        self.instances.values().any(|i| !i.lookups.is_empty())
            || self.images.values().any(|i| i.compartment_lookup.is_some())
    }

    /// The same manifest (warnings aside, already shown): for the plan to resolve lookups in.
    pub fn copy(&self) -> Manifest {
        Manifest {
            dir: self.dir.clone(),
            env: self.env.clone(),
            provider: self.provider.clone(),
            backend: self.backend.clone(),
            instances: self.instances.clone(),
            images: self.images.clone(),
            moved: self.moved.clone(),
            policy_dirs: self.policy_dirs.clone(),
            warnings: Vec::new(),
            sources: self.sources.clone(),
        }
    }

    /// Problems found after loading (by the plan, against OCI), as the loader reports its own:
    /// at their spans, all at once.
    pub fn problems(&self, problems: Vec<Problem>) -> ManifestError {
        let files: BTreeSet<usize> = problems
            .iter()
            .filter_map(|p| p.at.as_ref().map(|at| at.file))
            .collect();
        ManifestError {
            dir: self.dir.clone(),
            files: files
                .into_iter()
                .map(|id| self.sources.name(id).to_string())
                .collect(),
            missing: false,
            live: true,
            problems: problems
                .into_iter()
                .map(|p| p.attach(&self.sources))
                .collect(),
        }
    }
}
