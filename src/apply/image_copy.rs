//! The create of an image's copy in another region (`image.NAME@<region>`, see
//! [`crate::plan::image_copies`]): OCI has no CopyImage, so the copy is made in three steps, each
//! awaiting its work request — ExportImage of the image (format `OCI`, to `export`'s bucket in
//! the image's region), CopyObject to the bucket of the same name in the copy's region (made
//! when missing), and CreateImage from that object there.
//!
//! Crash safety: only the last step makes a resource, and it is an ordinary create
//! ([`super::create`]: a pending create with its retry token and request recorded before it is
//! sent, an orphan found by its `kiln-address` tag adopted). The steps before it make only
//! objects whose names are fixed by the image they copy (`kiln-<name>-<the image's OCID
//! suffix>.oci`), so a step killed and run again finds or overwrites its own object, never makes a
//! second image: an export already in the destination bucket is not copied again, an export
//! already in the home bucket is not made again, and an export in flight (the image EXPORTING)
//! is awaited. Copies of one image in one apply share one export (a lock per image). Once a
//! copy is AVAILABLE its object in the destination bucket is deleted, and the home export once
//! no other copy of the image in this apply still needs it — unless `keep_exports`. An export
//! left by an apply that died before that stays in the bucket (README, "Limits").

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::oci::image_copy::{CopyObjectDetails, ExportImageToObject};
use crate::oci::object_storage::ObjectStorage;
use crate::oci::{Client, MutationOptions, OciError};
use crate::plan::image_copies::COPY_KEY;
use crate::plan::Change;

use super::ctx::{label, Ctx};
use super::execute::NodeError;

/// Per copied image (its OCID): the lock its export is made under, and the copies of it in
/// flight in this apply.
#[derive(Default)]
pub(super) struct Exports(tokio::sync::Mutex<HashMap<String, Arc<Shared>>>);

#[derive(Default)]
struct Shared {
    lock: tokio::sync::Mutex<()>,
    in_flight: std::sync::atomic::AtomicUsize,
}

/// What a copy's create body (`$copy`, resolved) says.
struct Plan {
    image: String,
    namespace: String,
    bucket: String,
    keep: bool,
    /// The copy's compartment (a bucket made in the copy's region goes there when the home
    /// bucket's is unknown).
    compartment: String,
}

/// Whether `body` is a copy's create body.
pub(super) fn is_copy(body: &Value) -> bool {
    body.pointer(&format!("/imageSourceDetails/{COPY_KEY}"))
        .is_some()
}

/// The object an image's export is written to.
fn object_name(address: &str, image: &str) -> String {
    let name: String = address
        .split('@')
        .next()
        .unwrap_or(address)
        .trim_start_matches("image.")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let tail = &image[image.len().saturating_sub(12)..];
    format!("kiln-{name}-{tail}.oci")
}

/// The Object Storage client of `region`, beside its Compute client: the same endpoint when
/// it is not OCI's own (the emulator serves both), else `objectstorage.<region>`.
fn object_storage(client: &Client, region: &str) -> ObjectStorage {
    let endpoint = client.endpoint().trim_end_matches('/');
    if endpoint == crate::region::compute_endpoint(region).trim_end_matches('/') {
        ObjectStorage::new(client.with_endpoint(&crate::region::object_storage_endpoint(region)))
    } else {
        ObjectStorage::new(client.clone())
    }
}

impl Ctx {
    /// Export → copy → import (module doc); the import's id once it is AVAILABLE.
    pub(super) async fn create_copy(&self, c: &Change, body: Value) -> Result<String, NodeError> {
        let spec = body
            .pointer(&format!("/imageSourceDetails/{COPY_KEY}"))
            .cloned()
            .unwrap_or(Value::Null);
        let text = |k: &str| spec.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(image), Some(namespace), Some(bucket)) =
            (text("image"), text("namespace"), text("bucket"))
        else {
            return Err(self.invalid(c, "the copy's request names no image, namespace or bucket"));
        };
        let plan = Plan {
            image,
            namespace,
            bucket,
            keep: spec
                .get("keepExports")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            compartment: body
                .get("compartmentId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        };
        let region = c
            .region
            .clone()
            .unwrap_or_else(|| self.clients.default_region().to_string());
        let object = object_name(&c.address, &plan.image);
        // The request the import sends: fixed by the image it copies, so a resumed create finds
        // its stored request equal to it.
        let mut import = body.clone();
        let mut source = json!({
            "sourceType": "objectStorageTuple",
            "namespaceName": plan.namespace,
            "bucketName": plan.bucket,
            "objectName": object,
        });
        for k in ["operatingSystem", "operatingSystemVersion"] {
            if let Some(v) = body.pointer(&format!("/imageSourceDetails/{k}")) {
                source[k] = v.clone();
            }
        }
        import["imageSourceDetails"] = source;
        let shared = {
            let mut map = self.exports.0.lock().await;
            map.entry(plan.image.clone()).or_default().clone()
        };
        shared
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let result = self
            .copy_then_import(c, &plan, &region, &object, import, &shared)
            .await;
        let last = shared
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1;
        let id = result?;
        if !plan.keep {
            let home = self
                .home_storage(&plan.image)
                .map_err(|e| self.oci(&c.address, e))?;
            let there = self
                .storage_in(&region)
                .map_err(|e| self.oci(&c.address, e))?;
            there
                .delete_object(&plan.namespace, &plan.bucket, &object, None)
                .await
                .map_err(|e| self.oci(&c.address, e))?;
            if last {
                let _held = shared.lock.lock().await;
                if shared.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    home.delete_object(&plan.namespace, &plan.bucket, &object, None)
                        .await
                        .map_err(|e| self.oci(&c.address, e))?;
                }
            }
        }
        Ok(id)
    }

    fn storage_in(&self, region: &str) -> Result<ObjectStorage, OciError> {
        Ok(object_storage(
            self.clients.for_region(Some(region))?,
            region,
        ))
    }

    fn home_storage(&self, image: &str) -> Result<ObjectStorage, OciError> {
        let region = crate::region::from_ocid(image)
            .unwrap_or(self.clients.default_region())
            .to_string();
        self.storage_in(&region)
    }

    async fn copy_then_import(
        &self,
        c: &Change,
        plan: &Plan,
        region: &str,
        object: &str,
        import: Value,
        shared: &Shared,
    ) -> Result<String, NodeError> {
        let pending = self
            .state
            .lock()
            .await
            .resources
            .get(&c.address)
            .is_some_and(|r| r.pending_create.is_some());
        if !pending {
            let oci = |e| self.oci(&c.address, e);
            let there = self.storage_in(region).map_err(oci)?;
            let home = self.home_storage(&plan.image).map_err(oci)?;
            let present = there
                .head_object(&plan.namespace, &plan.bucket, object)
                .await
                .map_err(oci)?;
            if present.is_none() {
                let etag = {
                    let _held = shared.lock.lock().await;
                    self.export(c, plan, object, &home).await?
                };
                self.ensure_bucket(c, plan, &home, &there).await?;
                self.progress
                    .step(&label(c), &format!("copying the export to {region}"));
                let wr = home
                    .copy_object(
                        &plan.namespace,
                        &plan.bucket,
                        &CopyObjectDetails {
                            source_object_name: object.to_string(),
                            destination_region: region.to_string(),
                            destination_namespace: plan.namespace.clone(),
                            destination_bucket: plan.bucket.clone(),
                            destination_object_name: object.to_string(),
                            source_object_if_match_etag: Some(etag),
                        },
                    )
                    .await
                    .map_err(oci)?;
                home.wait_for_copy(&wr, &self.wait(c)).await.map_err(oci)?;
            }
            self.progress
                .step(&label(c), &format!("importing the export in {region}"));
        }
        self.create_once(c, import).await
    }

    /// The image's export in the home bucket (made unless it is there); its etag.
    async fn export(
        &self,
        c: &Change,
        plan: &Plan,
        object: &str,
        home: &ObjectStorage,
    ) -> Result<String, NodeError> {
        let oci = |e| self.oci(&c.address, e);
        if let Some(etag) = home
            .head_object(&plan.namespace, &plan.bucket, object)
            .await
            .map_err(oci)?
        {
            return Ok(etag);
        }
        let client = self.clients.for_id(&plan.image).map_err(oci)?;
        let wait = self.wait(c);
        // An export in flight (an earlier apply killed while it ran) is awaited, not repeated.
        let image = client
            .wait_for_image(&plan.image, &["AVAILABLE"], &wait)
            .await
            .map_err(oci)?;
        if let Some(etag) = home
            .head_object(&plan.namespace, &plan.bucket, object)
            .await
            .map_err(oci)?
        {
            return Ok(etag);
        }
        self.progress.step(
            &label(c),
            &format!("exporting {} to {}/{object}", plan.image, plan.bucket),
        );
        let r = client
            .export_image(
                &plan.image,
                &ExportImageToObject::new(&plan.namespace, &plan.bucket, object),
                &MutationOptions::if_match(image.etag.as_deref()),
            )
            .await
            .map_err(oci)?;
        if let Some(wr) = &r.opc_work_request_id {
            client.wait_for_work_request(wr, &wait).await.map_err(oci)?;
        }
        client
            .wait_for_image(&plan.image, &["AVAILABLE"], &wait)
            .await
            .map_err(oci)?;
        home.head_object(&plan.namespace, &plan.bucket, object)
            .await
            .map_err(oci)?
            .ok_or_else(|| {
                self.invalid(
                    c,
                    format!("the export of {} wrote no object `{object}`", plan.image),
                )
            })
    }

    /// The bucket of `export`'s name in the copy's region (made, in the home bucket's
    /// compartment, when missing).
    async fn ensure_bucket(
        &self,
        c: &Change,
        plan: &Plan,
        home: &ObjectStorage,
        there: &ObjectStorage,
    ) -> Result<(), NodeError> {
        let oci = |e| self.oci(&c.address, e);
        match there.get_bucket(&plan.namespace, &plan.bucket).await {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(404) => {
                let b = home
                    .get_bucket(&plan.namespace, &plan.bucket)
                    .await
                    .map_err(oci)?;
                let compartment = b.compartment_id.unwrap_or_else(|| plan.compartment.clone());
                match there
                    .create_bucket(&plan.namespace, &plan.bucket, &compartment)
                    .await
                {
                    Ok(()) => Ok(()),
                    // Made meanwhile by another copy of this apply.
                    Err(e) if e.status == Some(409) => Ok(()),
                    Err(e) => Err(oci(e)),
                }
            }
            Err(e) => Err(oci(e)),
        }
    }
}
