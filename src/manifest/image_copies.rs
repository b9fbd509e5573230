//! `regions`, `export` and `keep_exports` on `[image.NAME]` → [`ImageCopies`]: the regions the
//! image is copied to besides its own (OCI has no CopyImage: kiln exports it to `export`'s
//! bucket, copies the object to the bucket of the same name in each region and imports it
//! there; see `apply::image_copy`).

use indexmap::IndexMap;

use super::diagnostic::{At, Problem};
use super::tree::{bool_of, entries, get, str_of, Entry, Node, Value};
use super::{Address, Loader};

/// Where an image's copies come from and go.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageCopies {
    /// Region ids (resolved), in the order written; never the image's own region.
    pub regions: Vec<String>,
    /// The Object Storage namespace and bucket exports go to (the image's region), and the
    /// bucket of the same name in each target region. Required with `regions`.
    pub export: Option<ExportTo>,
    /// Keep the exported objects after every import is AVAILABLE (default: delete them).
    pub keep_exports: bool,
}

/// `export = { namespace, bucket }`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportTo {
    pub namespace: String,
    pub bucket: String,
}

impl ImageCopies {
    /// The state address of the copy in `region`: `image.NAME@<region id>`.
    pub fn address(image: &str, region: &str) -> String {
        format!("{image}@{region}")
    }
}

impl Loader {
    /// The copies `t` declares for `address`, whose own region is `own` (`None`: the
    /// provider's, `provider`).
    pub(super) fn image_copies(
        &mut self,
        address: &Address,
        t: &IndexMap<String, Entry>,
        table_at: &At,
        own: Option<&str>,
        provider: Option<&str>,
    ) -> ImageCopies {
        let mut regions = Vec::new();
        if let Some(Node {
            value: Value::Array(items),
            ..
        }) = get(t, "regions")
        {
            for item in items {
                let Some((r, at)) = str_of(Some(item)) else {
                    continue;
                };
                match crate::region::resolve(r) {
                    Err(_) => self.problem(
                        Problem::error("unknown_region", format!("unknown region `{r}` in `{address}` `regions`"))
                            .at(at, "not a region")
                            .help("use a region id such as `us-phoenix-1` or a 3-letter code such as `phx`"),
                    ),
                    Ok(id) if Some(id) == own.or(provider) => self.problem(
                        Problem::error("copy_to_own_region", format!("`{address}` lives in `{id}`: it is not copied to its own region"))
                            .at(at, "the image's own region")
                            .help("list only the other regions the image is used in"),
                    ),
                    Ok(id) if regions.iter().any(|x: &String| x == id) => self.problem(
                        Problem::error("duplicate_region", format!("`{id}` is listed twice in `{address}` `regions`"))
                            .at(at, "listed again")
                            .help("list each region once"),
                    ),
                    Ok(id) => regions.push(id.to_string()),
                }
            }
        }
        let export = match get(t, "export").and_then(entries) {
            Some(e) => match (str_of(get(e, "namespace")), str_of(get(e, "bucket"))) {
                (Some((n, _)), Some((b, _))) => Some(ExportTo {
                    namespace: n.to_string(),
                    bucket: b.to_string(),
                }),
                _ => {
                    let at = get(t, "export").map(|n| &n.at).unwrap_or(table_at);
                    self.problem(
                        Problem::error(
                            "missing_field",
                            format!("`{address}` `export` needs `namespace` and `bucket`"),
                        )
                        .at(at, "incomplete")
                        .help("`export = { namespace = \"NAMESPACE\", bucket = \"BUCKET\" }`"),
                    );
                    None
                }
            },
            None => None,
        };
        if !regions.is_empty() && export.is_none() && get(t, "export").is_none() {
            let at = get(t, "regions").map(|n| &n.at).unwrap_or(table_at);
            self.problem(
                Problem::error("missing_field", format!("`{address}` is copied to other regions but has no `export`"))
                    .at(at, "copied through Object Storage")
                    .help("add `export = { namespace = \"NAMESPACE\", bucket = \"BUCKET\" }`: the bucket in the image's region, and one of the same name in each region of `regions`"),
            );
        }
        ImageCopies {
            regions,
            export,
            keep_exports: bool_of(get(t, "keep_exports")).unwrap_or(false),
        }
    }
}
