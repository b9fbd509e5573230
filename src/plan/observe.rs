//! What a plan saw of every resource — the state's record and the live read — kept in the plan
//! ([`super::Plan::observed`]) for the views of whole resources (`--json=terraform`, policies,
//! markdown, saved plans), when asked for ([`super::refresh::PlanOptions::observe`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::state::State;

use super::build::{LiveRead, Prior};
use super::desired::DesiredResource;
use super::Kind;

/// Every resource of the manifest and the (selected) state as this plan saw it.
pub(super) fn observe(
    state: Option<&State>,
    prior: &BTreeMap<String, Prior>,
    desired: &[DesiredResource],
    live: &HashMap<String, LiveRead>,
) -> Vec<super::Observed> {
    let declared: BTreeMap<&str, Kind> = desired
        .iter()
        .map(|d| (d.address.as_str(), d.kind))
        .collect();
    let addresses: BTreeSet<&str> = declared
        .keys()
        .copied()
        .chain(prior.keys().map(String::as_str))
        .collect();
    addresses
        .into_iter()
        .map(|a| {
            let p = prior.get(a);
            let recorded = state.and_then(|s| s.resources.get(a));
            let id = p.and_then(|p| p.id.clone());
            super::Observed {
                address: a.to_string(),
                kind: declared
                    .get(a)
                    .copied()
                    .or(p.and_then(|p| p.kind))
                    .unwrap_or(Kind::Instance),
                declared: declared.contains_key(a),
                live: id
                    .as_ref()
                    .and_then(|id| live.get(id))
                    .filter(|l| !l.is_gone())
                    .map(|l| l.body.parse()),
                state: p.filter(|p| p.id.is_some()).map(|p| p.attributes.parse()),
                inputs: p.map(|p| (*p.inputs).clone()).unwrap_or_default(),
                network: recorded.and_then(|r| r.network.clone()),
                id,
            }
        })
        .collect()
}
