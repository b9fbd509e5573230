//! `[provider]` and `[backend]`: regions (checked against the leaf [`crate::region`]), endpoints
//! (`emulator` or a URL, per region too), parallelism, the auth method and CA bundle, and where
//! the state lives.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use super::diagnostic::{At, Problem};
use super::tree::{entries, get, str_of, Entry, Node, Value};
use super::{Backend, Endpoint, Loader, ObjectStorageBackend, Provider};
use crate::suggest::did_you_mean;

impl Loader {
    pub(super) fn backend(
        &mut self,
        t: &IndexMap<String, Entry>,
        table_at: Option<&At>,
    ) -> Backend {
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
    pub(super) fn resource_region(
        &mut self,
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
    ) -> Option<String> {
        if get(t, "region").is_some() {
            self.region(t)
        } else {
            str_of(get(defaults, "region"))
                .and_then(|(r, _)| crate::region::resolve(r).ok())
                .map(str::to_string)
        }
    }

    pub(super) fn region(&mut self, t: &IndexMap<String, Entry>) -> Option<String> {
        str_of(get(t, "region")).and_then(|(r, at)| match crate::region::resolve(r) {
            Ok(id) => Some(id.to_string()),
            Err(_) => {
                let p = Problem::error("unknown_region", format!("unknown region `{r}`"))
                    .at(at, "not a region");
                let p = match did_you_mean(&r.to_ascii_lowercase(), crate::region::all_ids()) {
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
    pub(super) fn endpoint(
        &mut self,
        t: &IndexMap<String, Entry>,
        field: &str,
    ) -> Option<Endpoint> {
        self.endpoint_value(get(t, "endpoint"), field)
    }

    pub(super) fn endpoint_value(&mut self, node: Option<&Node>, field: &str) -> Option<Endpoint> {
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

    pub(super) fn provider(&mut self, t: &IndexMap<String, Entry>) -> Provider {
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
                let Ok(id) = crate::region::resolve(region) else {
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
            config_file: str_of(get(t, "config_file")).map(|(s, _)| crate::home::expand(s)),
            region,
            endpoint,
            parallelism,
            auth: str_of(get(t, "auth")).map(|(s, _)| s.to_string()),
            ca_bundle: str_of(get(t, "ca_bundle")).map(|(s, _)| crate::home::resolve(&self.dir, s)),
        }
    }
}
