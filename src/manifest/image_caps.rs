//! `shapes` and `capabilities` of an `[image.NAME]` (issue 24): the shapes the image may be
//! launched on (OCI's image shape compatibility entries, a flexible shape with an optional
//! `ocpus` / `memory_in_gbs` range) and the capabilities it pins (its capability schema, one value
//! per named capability of OCI's global image capability schema). Here they are read with their
//! spans; the values are checked against the global schema at plan time (`plan::image_checks`),
//! which reads OCI's descriptors.

use indexmap::IndexMap;

use super::diagnostic::{At, Problem};
use super::tree::{entries, get, num_of, str_of, Entry, Node, Value};
use super::Loader;

/// One shape an image is compatible with.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageShape {
    pub shape: String,
    /// `ocpus = { min, max }` (flexible shapes).
    pub ocpus: Option<(Option<u64>, Option<u64>)>,
    /// `memory_in_gbs = { min, max }` (flexible shapes).
    pub memory_in_gbs: Option<(Option<u64>, Option<u64>)>,
    pub at: At,
}

/// One capability an image pins: its name, value (string, integer or boolean) and spans.
#[derive(Clone, Debug, PartialEq)]
pub struct Capability {
    pub name: String,
    pub value: serde_json::Value,
    pub key_at: At,
    pub at: At,
}

impl Loader {
    /// `shapes` (`None` when absent: the image keeps what OCI gives it).
    pub(super) fn image_shapes(&mut self, t: &IndexMap<String, Entry>) -> Option<Vec<ImageShape>> {
        let Node {
            value: Value::Array(items),
            ..
        } = get(t, "shapes")?
        else {
            return None;
        };
        let mut out: Vec<ImageShape> = Vec::new();
        for n in items {
            let entry = match (&n.value, entries(n)) {
                (Value::Str(s), _) => Some(ImageShape {
                    shape: s.clone(),
                    ocpus: None,
                    memory_in_gbs: None,
                    at: n.at.clone(),
                }),
                (_, Some(e)) => match str_of(get(e, "shape")) {
                    Some((s, _)) => Some(ImageShape {
                        shape: s.to_string(),
                        ocpus: self.range(e, "ocpus"),
                        memory_in_gbs: self.range(e, "memory_in_gbs"),
                        at: n.at.clone(),
                    }),
                    None => {
                        self.problem(
                            Problem::error("missing_field", "a `shapes` table needs `shape`")
                                .at(&n.at, "no `shape`")
                                .help("`{ shape = \"VM.Standard.E5.Flex\", ocpus = { min = 1, max = 8 } }`"),
                        );
                        None
                    }
                },
                // Any other type is reported by the key check.
                _ => None,
            };
            let Some(entry) = entry else { continue };
            if out.iter().any(|s| s.shape == entry.shape) {
                self.problem(
                    Problem::error(
                        "duplicate_shape",
                        format!("`shapes` names `{}` twice", entry.shape),
                    )
                    .at(&entry.at, "again here")
                    .help(format!("keep one entry for `{}`", entry.shape)),
                );
                continue;
            }
            out.push(entry);
        }
        Some(out)
    }

    /// `{ min, max }` at `key` of a `shapes` table: non-negative integers, `min <= max`.
    fn range(
        &mut self,
        e: &IndexMap<String, Entry>,
        key: &str,
    ) -> Option<(Option<u64>, Option<u64>)> {
        let r = get(e, key)?;
        let t = entries(r)?;
        let mut bound = |k: &str| -> Option<u64> {
            let (v, at) = num_of(get(t, k))?;
            if v < 1.0 || v.fract() != 0.0 {
                self.problem(
                    Problem::error(
                        "invalid_range",
                        format!("`{key}.{k}` must be a whole number of at least 1, not {v}"),
                    )
                    .at(at, "not a positive integer"),
                );
                return None;
            }
            Some(v as u64)
        };
        let (min, max) = (bound("min"), bound("max"));
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                self.problem(
                    Problem::error(
                        "invalid_range",
                        format!("`{key}` has `min` {lo} greater than `max` {hi}"),
                    )
                    .at(&r.at, "empty range")
                    .help("swap them"),
                );
            }
        }
        Some((min, max))
    }

    /// `capabilities` (`None` when absent: the image has no capability schema of kiln's).
    pub(super) fn image_capabilities(
        &mut self,
        t: &IndexMap<String, Entry>,
    ) -> Option<Vec<Capability>> {
        let caps = entries(get(t, "capabilities")?)?;
        let mut out = Vec::new();
        for (name, e) in caps {
            let value = match &e.node.value {
                Value::Str(s) => serde_json::json!(s),
                Value::Int(i) => serde_json::json!(i),
                Value::Bool(b) => serde_json::json!(b),
                // Anything else is reported by the key check (`Vars`: scalars only).
                _ => continue,
            };
            out.push(Capability {
                name: name.clone(),
                value,
                key_at: e.key_at.clone(),
                at: e.node.at.clone(),
            });
        }
        Some(out)
    }
}
