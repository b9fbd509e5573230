//! The regions one process serves, and how an Object Storage copy crosses between them.
//!
//! Each region is its own server and its own world ([`super::World`]), as OCI's regions share
//! nothing but identity. A cross-region CopyObject (`destinationRegion`) needs to reach the
//! destination's world, so the emulators started together (`kiln emulator --region a --region b`,
//! the embedded emulator, a test's second region) share one [`Peers`] registry: region id → the
//! server serving it. A region not in the registry is not served, and CopyObject refuses it as
//! OCI refuses a region the tenancy cannot reach (400 `InvalidParameter`).
//!
//! Deliveries never hold two worlds' locks at once: the CopyObject handler records its work
//! request and leaves a [`Delivery`] in its world's outbox; the pipeline, once it has let go of
//! that world, hands each delivery to the destination ([`deliver`]) and, when the destination
//! refuses it (no such bucket, `If-None-Match`), fails the source's work request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, Utc};

use super::object_storage::ObjectRec;
use super::pipeline::save_world;
use super::server::Shared;

/// The regions served together (cheap to clone: one shared registry).
#[derive(Clone, Default)]
pub struct Peers(Arc<Mutex<BTreeMap<String, Weak<Shared>>>>);

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.regions()).finish()
    }
}

impl Peers {
    /// A registry of its own (the default of every [`super::EmulatorConfig`]).
    pub fn new() -> Peers {
        Peers::default()
    }

    pub(super) fn register(&self, region: &str, shared: &Arc<Shared>) {
        self.0
            .lock()
            .expect("peers lock")
            .insert(region.to_string(), Arc::downgrade(shared));
    }

    fn get(&self, region: &str) -> Option<Arc<Shared>> {
        self.0
            .lock()
            .expect("peers lock")
            .get(region)
            .and_then(Weak::upgrade)
    }

    /// Whether a running server of this registry serves `region`.
    pub fn serves(&self, region: &str) -> bool {
        self.get(region).is_some()
    }

    /// The regions served now.
    pub fn regions(&self) -> Vec<String> {
        let map = self.0.lock().expect("peers lock");
        map.iter()
            .filter(|(_, w)| w.strong_count() > 0)
            .map(|(r, _)| r.clone())
            .collect()
    }
}

/// An object on its way to another region's bucket (a CopyObject's work request `work_request`).
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub work_request: String,
    pub region: String,
    pub namespace: String,
    pub bucket: String,
    pub object: String,
    pub record: ObjectRec,
    /// `destinationObjectIfNoneMatchETag: *`.
    pub if_none_match: bool,
    /// `destinationObjectIfMatchETag`.
    pub if_match: Option<String>,
    pub now: DateTime<Utc>,
}

/// Hand `d` to its region's world (the caller holds no world lock); the refusal's message when
/// the destination does not take it.
pub(super) fn deliver(peers: &Peers, d: Delivery) -> Result<(), String> {
    let Some(peer) = peers.get(&d.region) else {
        return Err(format!("the region `{}` is no longer served", d.region));
    };
    let mut world = peer.world.lock().expect("world lock");
    if peer.stopped.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(format!("the region `{}` is shutting down", d.region));
    }
    if d.namespace != peer.fixtures.namespace {
        return Err(format!(
            "the namespace `{}` does not exist in {}",
            d.namespace, d.region
        ));
    }
    let Some(bucket) = world.buckets.get_mut(&d.bucket) else {
        return Err(format!(
            "the bucket `{}` does not exist in the namespace `{}` in {}",
            d.bucket, d.namespace, d.region
        ));
    };
    let current = bucket.objects.get(&d.object).filter(|o| o.visible(d.now));
    if d.if_none_match && current.is_some() {
        return Err(format!(
            "the object `{}` already exists in `{}` (destinationObjectIfNoneMatchETag: *)",
            d.object, d.bucket
        ));
    }
    if let Some(m) = &d.if_match {
        if current.is_none_or(|o| &o.etag != m) {
            return Err(format!(
                "the destination object `{}` does not have the entity tag `{m}`",
                d.object
            ));
        }
    }
    bucket.objects.insert(d.object, d.record);
    save_world(&peer, &world);
    Ok(())
}
