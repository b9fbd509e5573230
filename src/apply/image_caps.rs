//! Applying an image's `shapes` and `capabilities` (issue 24), in place, once the image is
//! AVAILABLE (after its create, or as an update): the compatibility entries that differ from the
//! manifest are added (AddImageShapeCompatibilityEntry, which replaces an entry's ranges) or
//! removed (RemoveImageShapeCompatibilityEntry) — OCI offers no If-Match on either; the
//! capability schema is created from the current global schema version when the image has none
//! (CreateComputeImageCapabilitySchema, with a retry token), or updated when its values differ
//! (UpdateComputeImageCapabilitySchema, If-Match'ed with the etag of kiln's own read).
//!
//! Every step reads what is live first, so a re-run after a crash or a lost answer does only what
//! remains.

use serde_json::{Map, Value};

use crate::oci::call::MutationOptions;
use crate::oci::image_caps::{
    AddShapeEntry, CreateImageSchema, MemoryConstraints, OcpuConstraints,
};
use crate::plan::image_caps::{descriptor, CAPABILITIES_UPDATE, SHAPES_UPDATE};
use crate::plan::Change;

use super::ctx::{label, Ctx};
use super::execute::NodeError;

/// The desired shapes and capabilities a create or update body carries, taken out of it.
pub(super) fn take(body: &mut Value) -> (Option<Value>, Option<Value>) {
    match body.as_object_mut() {
        Some(m) => (m.remove(SHAPES_UPDATE), m.remove(CAPABILITIES_UPDATE)),
        None => (None, None),
    }
}

fn range(v: &Value) -> Option<(Option<u64>, Option<u64>)> {
    v.as_object()
        .map(|_| (v["min"].as_u64(), v["max"].as_u64()))
}

impl Ctx {
    /// Bring the image `id`'s entries and capability schema to `shapes` / `capabilities`.
    pub(super) async fn apply_image_caps(
        &self,
        c: &Change,
        id: &str,
        shapes: Option<Value>,
        capabilities: Option<Value>,
    ) -> Result<(), NodeError> {
        let client = self.at(id);
        let err = |e| self.oci(&c.address, e);
        if let Some(Value::Object(want)) = shapes {
            let live = client.list_image_shapes(id).await.map_err(err)?;
            for e in &live {
                if !want.contains_key(&e.shape) {
                    self.progress
                        .step(&label(c), &format!("removing shape `{}`", e.shape));
                    match client.remove_image_shape(id, &e.shape).await {
                        Ok(_) => {}
                        // Removed already (a lost answer).
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(err(e)),
                    }
                }
            }
            for (shape, v) in &want {
                let ocpus = range(&v["ocpus"]);
                let memory = range(&v["memory_in_gbs"]);
                let details = AddShapeEntry {
                    ocpu_constraints: ocpus.map(|(min, max)| OcpuConstraints { min, max }),
                    memory_constraints: memory.map(|(min_in_gbs, max_in_gbs)| MemoryConstraints {
                        min_in_gbs,
                        max_in_gbs,
                    }),
                };
                let current = live.iter().find(|e| &e.shape == shape);
                let same = current.is_some_and(|e| {
                    e.ocpu_constraints
                        .as_ref()
                        .filter(|c| c.min.is_some() || c.max.is_some())
                        == details.ocpu_constraints.as_ref()
                        && e.memory_constraints
                            .as_ref()
                            .filter(|c| c.min_in_gbs.is_some() || c.max_in_gbs.is_some())
                            == details.memory_constraints.as_ref()
                });
                if same {
                    continue;
                }
                self.progress
                    .step(&label(c), &format!("adding shape `{shape}`"));
                client
                    .add_image_shape(id, shape, &details)
                    .await
                    .map_err(err)?;
            }
        }
        if let Some(Value::Object(want)) = capabilities {
            let data: Map<String, Value> = want
                .iter()
                .map(|(k, v)| (k.clone(), descriptor(v)))
                .collect();
            let image = client.get_image(id).await.map_err(err)?.body;
            let compartment = image.compartment_id.unwrap_or_default();
            match client
                .image_capability_schema(&compartment, id)
                .await
                .map_err(err)?
            {
                Some((schema, _)) if schema.schema_data == data => {}
                Some((schema, etag)) => {
                    self.progress
                        .step(&label(c), "updating the image's capability schema");
                    client
                        .update_image_capability_schema(
                            &schema.id,
                            &data,
                            &MutationOptions::if_match(etag.as_deref()),
                        )
                        .await
                        .map_err(err)?;
                }
                None => {
                    self.progress
                        .step(&label(c), "creating the image's capability schema");
                    let global = client
                        .global_capability_schema()
                        .await
                        .map_err(err)?
                        .and_then(|g| g.current_version_name)
                        .ok_or_else(|| {
                            self.invalid(c, "OCI lists no global image capability schema version")
                        })?;
                    client
                        .create_image_capability_schema(&CreateImageSchema {
                            compartment_id: compartment,
                            compute_global_image_capability_schema_version_name: global,
                            image_id: id.to_string(),
                            display_name: format!("{} capabilities", c.address),
                            schema_data: data,
                        })
                        .await
                        .map_err(err)?;
                }
            }
        }
        Ok(())
    }
}
