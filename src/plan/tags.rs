//! The `kiln-address` tag: every resource kiln creates carries its address
//! ([`super::from_manifest::ADDRESS_TAG`]), so a plan can tell when the state names the wrong
//! resource for an address.
//!
//! A recorded OCID (an address's object or a deposed one) whose resource is tagged with another
//! address is refused — the plan names both and plans nothing, so it never destroys or replaces
//! a resource the state mistook for another (two addresses' OCIDs swapped by hand or by `kiln
//! state mv`) — unless the state was renamed on purpose and nothing else claims the old name:
//! - the record was renamed from the tag's address by a `[[moved]]` or `kiln state mv`
//!   ([`crate::state::ResourceState::renamed_from`]), or the manifest's `[[moved]]` says so;
//! - and the tag's address is neither declared by the manifest nor recorded in the state.
//!
//! Then the plan updates the tag to the new address ([`retag`]). A resource without the tag
//! (imported) is never refused. `--refresh-only` and `kiln destroy` refuse too: the check runs
//! on every plan that reads OCI.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::manifest::Manifest;
use crate::state::State;

use super::build::{LiveRead, Prior};
use super::from_manifest::ADDRESS_TAG;

/// One recorded OCID whose resource is tagged with another address.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("`{address}` records {id}, which is tagged `{ADDRESS_TAG} = {tagged}`")]
#[diagnostic(code(kiln::plan::address_tag))]
pub struct Mismatch {
    pub address: String,
    pub id: String,
    pub tagged: String,
}

/// The tag of a live read, if it has one.
pub fn tag_of(read: &LiveRead) -> Option<String> {
    read.body.str_at(&["freeformTags", ADDRESS_TAG])
}

/// Every recorded OCID in `prior` whose live resource is tagged with another address and is not
/// an accepted rename (module doc).
pub fn mismatches(
    manifest: &Manifest,
    state: Option<&State>,
    prior: &BTreeMap<String, Prior>,
    live: &HashMap<String, LiveRead>,
) -> Vec<Mismatch> {
    let declared: BTreeSet<String> = manifest.resources().map(|a| a.to_string()).collect();
    let recorded = |a: &str| state.is_some_and(|s| s.resources.contains_key(a));
    let renamed_from = |a: &str| {
        state
            .and_then(|s| s.resources.get(a))
            .and_then(|r| r.renamed_from.clone())
    };
    let mut out = Vec::new();
    for (address, p) in prior {
        for id in p.id.iter().chain(&p.deposed) {
            let Some(tagged) = live.get(id).filter(|l| !l.is_gone()).and_then(tag_of) else {
                continue;
            };
            if tagged == *address {
                continue;
            }
            let intended = renamed_from(address).as_deref() == Some(tagged.as_str())
                || manifest
                    .moved
                    .iter()
                    .any(|m| m.from.to_string() == tagged && m.to.to_string() == *address);
            let unclaimed = !declared.contains(&tagged) && !recorded(&tagged);
            if !(intended && unclaimed) {
                out.push(Mismatch {
                    address: address.clone(),
                    id: id.clone(),
                    tagged,
                });
            }
        }
    }
    out
}

/// The update of an accepted rename: the resource's freeform tags as they are (`live`: the
/// map, or `null`), with the address tag set to `address`.
pub fn retag(live: &Value, address: &str) -> Value {
    let mut tags = live.as_object().cloned().unwrap_or_default();
    tags.insert(ADDRESS_TAG.into(), Value::String(address.into()));
    Value::Object(tags)
}
