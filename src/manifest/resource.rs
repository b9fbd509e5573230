//! What `[instance.NAME]` and `[image.NAME]` share: a field from the table or `[defaults]`,
//! required fields, merged tags, side files read within a size limit, and the warning about two
//! resources with one display name.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use super::diagnostic::{At, Problem};
use super::tree::{get, nested_map, str_map, str_of, Entry, Node};
use super::{Address, DefinedTags, ImageSpec, InstanceSpec, Loader, Tags};

impl Loader {
    /// The value of `key` in the resource table, else in `[defaults]`.
    pub(super) fn field<'a>(
        t: &'a IndexMap<String, Entry>,
        defaults: &'a IndexMap<String, Entry>,
        key: &str,
    ) -> Option<&'a Node> {
        get(t, key).or_else(|| get(defaults, key))
    }

    pub(super) fn required_str<'a>(
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

    pub(super) fn merged_tags(
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
    pub(super) fn read_file(
        &mut self,
        rel: &str,
        at: &At,
        field: &str,
        limit: u64,
    ) -> Option<String> {
        use crate::small_file::ReadError;
        let path = crate::home::resolve(&self.dir, rel);
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

    pub(super) fn duplicate_names(
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
