//! Capacity fallback: a create under `placement` that OCI refuses for lack of host capacity is
//! tried again in the next place of the plan's list (the next fault domain of its availability
//! domain, then the next availability domain, wrapping round; see
//! [`crate::manifest::Placement::fallback`]), each time as a new create with a new retry token.
//!
//! Never twice: each try is one create of [`super::create`], which records it as pending before
//! sending it. OCI's capacity answer (500 `InternalError` "Out of host capacity.") proves the try
//! made nothing — a retry token that had made something is replayed before anything else is
//! checked, as for a 400 — so that create clears its pending record before the next try records
//! its own; a crash between the two leaves either the refused try pending (the next apply resends
//! it with its token, and goes on from that place) or nothing pending (the next apply starts from
//! the planned place). An explicit `availability_domain` has no list and is never moved.

use serde_json::Value;

use crate::plan::from_manifest::PLACEMENT;
use crate::plan::Change;

use super::ctx::{label, Ctx};
use super::execute::NodeError;

/// One place: availability domain and fault domain (`None`: OCI chooses).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Place {
    pub ad: String,
    pub fd: Option<String>,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fd {
            Some(fd) => write!(f, "{}/{fd}", self.ad),
            None => f.write_str(&self.ad),
        }
    }
}

/// Take the places out of a launch body (they are kiln's, not OCI's).
pub(super) fn take_places(body: &mut Value) -> Vec<Place> {
    let Some(Value::Array(list)) = body.as_object_mut().and_then(|m| m.remove(PLACEMENT)) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|p| {
            Some(Place {
                ad: p.get("availabilityDomain")?.as_str()?.to_string(),
                fd: p
                    .get("faultDomain")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect()
}

fn place_of(body: &Value) -> Place {
    Place {
        ad: body
            .get("availabilityDomain")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        fd: body
            .get("faultDomain")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

fn at_place(body: &Value, place: &Place) -> Value {
    let mut b = body.clone();
    if let Some(m) = b.as_object_mut() {
        m.insert("availabilityDomain".into(), Value::String(place.ad.clone()));
        match &place.fd {
            Some(fd) => m.insert("faultDomain".into(), Value::String(fd.clone())),
            None => m.remove("faultDomain"),
        };
    }
    b
}

fn out_of_capacity(e: &NodeError) -> bool {
    matches!(e, NodeError::Oci { source, .. } if source.is_out_of_capacity())
}

impl Ctx {
    /// Create `body` in the first of `places` with room (module doc); `pending` is the place of a
    /// create an earlier apply left pending, where this one goes on.
    pub(super) async fn create_placed(
        &self,
        c: &Change,
        body: Value,
        places: Vec<Place>,
        pending: Option<&Value>,
    ) -> Result<String, NodeError> {
        let start = pending
            .map(place_of)
            .and_then(|p| places.iter().position(|x| *x == p))
            .unwrap_or(0);
        let mut full: Vec<String> = Vec::new();
        for place in &places[start..] {
            if !full.is_empty() {
                self.progress.step(
                    &label(c),
                    &format!("trying {place} (no capacity in {})", full.join(", ")),
                );
            }
            match self.create_once(c, at_place(&body, place)).await {
                Err(e) if out_of_capacity(&e) => {
                    tracing::info!(address = %c.address, place = %place, "out of host capacity; trying the next place");
                    full.push(place.to_string());
                }
                done => return done,
            }
        }
        Err(self.invalid(
            c,
            format!(
                "no capacity for the shape in any place of its `placement`: out of host capacity in {}",
                full.join(", ")
            ),
        ))
    }
}
