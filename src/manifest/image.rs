//! `[image.NAME]` → an [`ImageSpec`]: captured from an instance of the manifest (which kiln must
//! be able to stop), imported from Object Storage or a URI, or adopted (made outside kiln,
//! `source = { adopted = OCID }`, written by `kiln import --compartment`).

use indexmap::IndexMap;

use super::diagnostic::{At, Problem};
use super::tree::{bool_of, entries, get, str_of, Entry, Node, Value};
use super::{Address, ImageSource, ImageSpec, Loader, ResourceKind};

impl Loader {
    // One caller (the loader's walk over `[image.*]` tables), which holds each of these apart.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn image(
        &mut self,
        address: Address,
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
        table_at: &At,
        refs: &mut Vec<(Address, Address, At)>,
        instances: &IndexMap<String, Entry>,
        provider_region: Option<&str>,
    ) -> Option<ImageSpec> {
        let before = self.problems.iter().filter(|p| p.is_error()).count();
        let compartment = self.compartment_of(t, defaults, &address, table_at);
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
                } else if let Some((id, at)) = str_of(get(s, "adopted")) {
                    self.ocid(id, at, "source.adopted", &["image"])
                        .map(ImageSource::Adopted)
                } else {
                    self.problem(
                        Problem::error(
                            "invalid_source",
                            format!(
                                "`{address}` `source` needs `object_storage`, `uri` or `adopted`"
                            ),
                        )
                        .at(table_at, "empty source"),
                    );
                    None
                }
            }
        };
        let (freeform_tags, defined_tags) = Self::merged_tags(t, defaults);
        let region = self.resource_region(t, defaults);
        let copies = self.image_copies(&address, t, table_at, region.as_deref(), provider_region);
        let keep = self.image_keep(&address, t);
        let shapes = self.image_shapes(t);
        let capabilities = self.image_capabilities(t);
        if self.problems.iter().filter(|p| p.is_error()).count() > before {
            return None;
        }
        Some(ImageSpec {
            region,
            copies,
            display_name: str_of(get(t, "display_name"))
                .map(|(s, _)| s.to_string())
                .unwrap_or_else(|| address.name.clone()),
            address,
            compartment: compartment.as_ref()?.0.clone(),
            compartment_lookup: compartment?.1,
            source: source?,
            launch_mode: str_of(get(t, "launch_mode")).map(|(s, _)| s.to_string()),
            operating_system: str_of(get(t, "operating_system")).map(|(s, _)| s.to_string()),
            operating_system_version: str_of(get(t, "operating_system_version"))
                .map(|(s, _)| s.to_string()),
            freeform_tags,
            defined_tags,
            restart_source: bool_of(get(t, "restart_source")).unwrap_or(true),
            prevent_destroy: bool_of(get(t, "prevent_destroy")).unwrap_or(false),
            keep,
            shapes,
            capabilities,
        })
    }
}
