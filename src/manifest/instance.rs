//! `[instance.NAME]` → an [`InstanceSpec`] with `[defaults]` applied: availability and fault
//! domains (given, or planned from `placement`, see [`super::placement`]), shape and shape config, subnet, source, metadata with `user_data_file` and
//! `ssh_authorized_keys_file`, power state, boot volume size, the launch settings
//! ([`super::launch`]), lifecycle flags (`replace_method`
//! and `rollout` are read by [`super::rollout`]).

use base64::Engine;
use indexmap::IndexMap;

use super::diagnostic::{At, Problem};
use super::placement::Domains;
use super::tree::{bool_of, entries, get, num_of, str_map, str_of, Entry, Node, Value};
use super::{
    Address, InstanceSource, InstanceSpec, Loader, PowerState, Ref, ResourceKind, ShapeConfig,
    SSH_KEYS_FILE_LIMIT, USER_DATA_FILE_LIMIT,
};

/// `<prefix>:<REGION>-AD-<n>`.
pub(super) fn is_availability_domain(ad: &str) -> bool {
    ad.split_once(':').is_some_and(|(prefix, name)| {
        !prefix.is_empty()
            && name.to_ascii_uppercase().contains("-AD-")
            && name
                .rsplit("-AD-")
                .next()
                .is_some_and(|n| n.parse::<u8>().is_ok())
    })
}

/// The launch settings set in the instance's table (a key at a time), else in `[defaults]`;
/// their types were checked with the keys.
fn launch_settings(
    t: &IndexMap<String, Entry>,
    defaults: &IndexMap<String, Entry>,
) -> std::collections::BTreeMap<
    &'static str,
    std::collections::BTreeMap<&'static str, serde_json::Value>,
> {
    let mut out = std::collections::BTreeMap::new();
    for s in super::launch::SETTINGS {
        let mut keys = std::collections::BTreeMap::new();
        for (field, _, _) in s.keys() {
            let own = get(t, s.name)
                .and_then(entries)
                .and_then(|e| get(e, field.name));
            let default = get(defaults, s.name)
                .and_then(entries)
                .and_then(|e| get(e, field.name));
            if let Some(n) = own.or(default) {
                keys.insert(field.name, super::tree::to_json(n));
            }
        }
        if !keys.is_empty() {
            out.insert(s.name, keys);
        }
    }
    out
}

impl Loader {
    pub(super) fn instance(
        &mut self,
        address: Address,
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
        table_at: &At,
        refs: &mut Vec<(Address, Address, At)>,
        index: usize,
    ) -> Option<InstanceSpec> {
        let before = self.problems.iter().filter(|p| p.is_error()).count();
        let placement = match self.domains(&address, t, defaults, index) {
            Some(Domains::Placement(p)) => Some(p),
            Some(Domains::Explicit) => None,
            None => return None,
        };
        // A table's own `placement` wins over a default `availability_domain`/`fault_domain`
        // (and the other way round): only the winner's keys are read.
        let explicit_ad = placement.is_none();
        let compartment = self.compartment_of(t, defaults, &address, table_at);
        let ad = match &placement {
            Some(p) => Some((p.assigned().0, table_at.clone())),
            None => self
                .required_str(t, defaults, "availability_domain", &address, table_at)
                .map(|(s, at)| (s.to_string(), at.clone())),
        };
        if let Some((ad, at)) = ad.as_ref().filter(|_| explicit_ad) {
            if !is_availability_domain(ad) {
                self.problem(
                    Problem::error("invalid_availability_domain", format!("`availability_domain` `{ad}` is not an availability domain name"))
                        .at(at, "expected `<prefix>:<REGION>-AD-<n>`")
                        .help("copy it from the console or `oci iam availability-domain list`, e.g. `kIdk:US-ASHBURN-AD-1`"),
                );
            }
        }
        let fault_domain = match &placement {
            Some(p) => p.assigned().1,
            None => self.fault_domain(t, defaults),
        };
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
        let subnet = self.subnet_of(t, defaults, &address, table_at);
        let (vnic, nsg_lookups) = self.primary_vnic(t, defaults);
        let spans = Self::spans(t, defaults, placement.as_ref().map(|_| table_at));
        let mut pin = None;
        let source = match Self::field(t, defaults, "source") {
            None => {
                self.problem(
                    Problem::error("missing_field", format!("`{address}` has no `source`"))
                        .at(table_at, "`source` missing")
                        .help("add `source = { image = \"...\" }`, `{ boot_volume = \"...\" }` or `{ image_lookup = { os = \"Oracle Linux\", version = \"9\" } }`"),
                );
                None
            }
            Some(n) => self.instance_source(&address, n, refs).map(|(s, p)| {
                pin = p;
                s
            }),
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
        let extras = self.launch_extras(
            t,
            defaults,
            super::launch::Context {
                boots_from_volume: matches!(source, Some(InstanceSource::BootVolume(_))),
                shape: shape.as_deref(),
                burstable: shape_config.as_ref().is_some_and(|c| {
                    c.baseline_ocpu_utilization
                        .as_deref()
                        .is_some_and(|b| b != "BASELINE_1_1")
                }),
                stopped: match str_of(get(t, "state")) {
                    Some(("STOPPED", at)) => Some(at),
                    _ => None,
                },
            },
        );
        let replace_method = Self::replace_method(t, defaults);
        let rollout = self.rollout(t, defaults);
        if self.problems.iter().filter(|p| p.is_error()).count() > before {
            return None;
        }
        let (compartment, compartment_lookup) = compartment?;
        let (subnet, subnet_lookup) = subnet?;
        Some(InstanceSpec {
            lookups: super::lookup::Lookups {
                compartment: compartment_lookup,
                subnet: subnet_lookup,
                nsgs: nsg_lookups,
            },
            spans,
            replace_method,
            rollout,
            region: self.resource_region(t, defaults),
            display_name: str_of(get(t, "display_name"))
                .map(|(s, _)| s.to_string())
                .unwrap_or_else(|| address.name.clone()),
            address,
            compartment,
            availability_domain: ad?.0,
            fault_domain,
            placement,
            shape: shape?,
            shape_config,
            subnet,
            assign_public_ip: bool_of(Self::field(t, defaults, "assign_public_ip")),
            vnic,
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
            launch: launch_settings(t, defaults),
            extras,
            pin,
        })
    }

    /// `fault_domain` of the table or `[defaults]`, checked.
    fn fault_domain(
        &mut self,
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
    ) -> Option<String> {
        str_of(Self::field(t, defaults, "fault_domain")).map(|(s, at)| {
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
        })
    }

    pub(super) fn instance_source(
        &mut self,
        address: &Address,
        n: &Node,
        refs: &mut Vec<(Address, Address, At)>,
    ) -> Option<(InstanceSource, Option<super::versions::ImagePin>)> {
        let t = entries(n)?;
        // `version` / `env` pin which image of `image` (see `versions`).
        let pins = ["version", "env"]
            .iter()
            .filter(|k| get(t, k).is_some())
            .count();
        let pinned = get(t, "image").is_some() && pins > 0;
        if t.len() - if pinned { pins } else { 0 } != 1 {
            self.problem(
                Problem::error("invalid_source", format!("`{address}` `source` must have exactly one of `image`, `boot_volume`, `image_lookup`"))
                    .at(&n.at, format!("{} given", t.len()))
                    .help("keep one of them"),
            );
            return None;
        }
        if let Some((s, at)) = str_of(get(t, "image")) {
            let r = self.reference(s, at, "source.image", ResourceKind::Image, &["image"])?;
            let pin = self.image_pin(address, t, matches!(r, Ref::Resource(_)));
            let other_env =
                matches!(&pin, Some(p) if matches!(p.which, super::versions::Pin::Env(_)));
            if pinned && pin.is_none() {
                return None;
            }
            // An image taken from another environment need not be declared in this one.
            if let (Ref::Resource(a), false) = (&r, other_env) {
                refs.push((address.clone(), a.clone(), at.clone()));
            }
            return Some((InstanceSource::Image(r), pin));
        }
        if let Some((s, at)) = str_of(get(t, "boot_volume")) {
            return self
                .ocid(s, at, "source.boot_volume", &["bootvolume"])
                .map(|id| (InstanceSource::BootVolume(id), None));
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
            return Some((
                InstanceSource::ImageLookup {
                    os: os?,
                    version: version?,
                    shape: str_of(get(l, "shape")).map(|(s, _)| s.to_string()),
                },
                None,
            ));
        }
        None
    }
}
