//! Which addresses a plan covers: `--target` and `--exclude`, with OpenTofu's semantics.
//!
//! - `--target X`: X and what X depends on (transitively) — or, for `kiln destroy`, X and what
//!   depends on X (destroying an image takes the instances launched from it, never the instance it
//!   was captured from).
//! - `--exclude X`: everything except X and what depends on X — or, for `kiln destroy`, except X
//!   and what X depends on (what a kept resource uses cannot be destroyed under it).
//!
//! A selector names an address, or a fleet: `instance.web` selects `instance.web` itself and every
//! member `instance.web[0]`, `instance.web["a"]` (addresses are otherwise opaque here). A selector
//! that selects nothing known (the manifest's addresses and the state's) is an error.
//!
//! Targets are applied to the plan's nodes (the plan is computed whole, then cut down); excludes
//! are applied to its inputs (the excluded resources are neither read nor planned, so no node is
//! planned on their behalf — e.g. no stop of a builder for the capture of an excluded image).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::suggest::did_you_mean;

use super::build::Prior;
use super::desired::DesiredResource;
use super::refresh::PlanError;
use super::Change;

/// Whether `selector` selects `address`: the same address, or a member of the fleet it names.
pub fn selects(selector: &str, address: &str) -> bool {
    address
        .strip_prefix(selector)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('['))
}

/// The known addresses `selector` selects (`None`: none).
fn expand<'a>(selector: &str, known: &BTreeSet<&'a str>) -> Option<Vec<&'a str>> {
    let hits: Vec<&str> = known
        .iter()
        .copied()
        .filter(|a| selects(selector, a))
        .collect();
    (!hits.is_empty()).then_some(hits)
}

/// Check every selector of `--target` and `--exclude`, and every address of `--replace` (one
/// resource: no fleet name).
pub(super) fn check(
    targets: &[String],
    replace: &BTreeSet<String>,
    excludes: &[String],
    known: &BTreeSet<&str>,
) -> Result<(), PlanError> {
    for t in targets {
        if expand(t, known).is_none() {
            return Err(PlanError::UnknownTarget(t.to_string()));
        }
    }
    for r in replace {
        if !known.contains(r.as_str()) {
            return Err(PlanError::UnknownTarget(r.to_string()));
        }
    }
    for x in excludes {
        if expand(x, known).is_none() {
            return Err(PlanError::UnknownExclude {
                address: x.clone(),
                help: match did_you_mean(x, known.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`? (see `kiln state list`)"),
                    None => {
                        "addresses look like `instance.NAME` or `image.NAME`; see `kiln state list`"
                            .into()
                    }
                },
            });
        }
    }
    Ok(())
}

/// The addresses that use `address` (launched from its image, captured from its instance), by
/// the manifest's references and by what the state recorded.
pub(super) fn dependents_of(
    address: &str,
    desired: &[DesiredResource],
    prior: &std::collections::BTreeMap<String, Prior>,
) -> Vec<String> {
    let ids: Vec<&str> = prior
        .get(address)
        .map(|p| p.id.iter().chain(&p.deposed).map(String::as_str).collect())
        .unwrap_or_default();
    let by_manifest = desired
        .iter()
        .filter(|d| d.depends_on.iter().any(|a| a == address))
        .map(|d| d.address.clone());
    let by_state = prior
        .iter()
        .filter(|(_, p)| {
            let (image, source) = uses(p);
            ids.iter()
                .any(|id| image.as_deref() == Some(*id) || source == Some(*id))
        })
        .map(|(a, _)| a.clone());
    by_manifest.chain(by_state).collect()
}

/// The addresses `address` uses (its image, its source instance), by the manifest's references
/// and by what the state recorded.
fn dependencies_of(
    address: &str,
    desired: &[DesiredResource],
    prior: &std::collections::BTreeMap<String, Prior>,
) -> Vec<String> {
    let by_manifest = desired
        .iter()
        .filter(|d| d.address == address)
        .flat_map(|d| d.depends_on.iter().cloned());
    let used: Vec<String> = prior
        .get(address)
        .map(|p| {
            let (image, source) = uses(p);
            image
                .into_iter()
                .chain(source.map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let by_state = prior
        .iter()
        .filter(|(_, p)| {
            p.id.iter()
                .chain(&p.deposed)
                .any(|id| used.iter().any(|u| u == id))
        })
        .map(|(a, _)| a.clone());
    by_manifest.chain(by_state).collect()
}

/// The image an instance was launched from and the instance an image was captured from, as the
/// state recorded them.
fn uses(p: &Prior) -> (Option<String>, Option<&str>) {
    (
        p.attributes.str_at(&["sourceDetails", "imageId"]),
        p.inputs.get("source_instance").and_then(Value::as_str),
    )
}

/// Everything reachable from `start` by `next`, `start` included.
fn closure(start: Vec<String>, next: impl Fn(&str) -> Vec<String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = start;
    while let Some(a) = stack.pop() {
        if seen.insert(a.clone()) {
            stack.extend(next(&a));
        }
    }
    seen
}

/// The addresses `--exclude` leaves out: the excluded ones and what depends on them (for
/// destroy: and what they depend on).
pub(super) fn excluded(
    excludes: &[String],
    known: &BTreeSet<&str>,
    desired: &[DesiredResource],
    prior: &std::collections::BTreeMap<String, Prior>,
    destroy: bool,
) -> BTreeSet<String> {
    let start: Vec<String> = excludes
        .iter()
        .flat_map(|x| expand(x, known).unwrap_or_default())
        .map(str::to_string)
        .collect();
    closure(start, |a| {
        if destroy {
            dependencies_of(a, desired, prior)
        } else {
            dependents_of(a, desired, prior)
        }
    })
}

/// The addresses `--target` keeps (`None`: no target, all): the targets and what they depend on
/// (for destroy: what depends on them).
pub(super) fn targeted(
    targets: &[String],
    known: &BTreeSet<&str>,
    desired: &[DesiredResource],
    prior: &std::collections::BTreeMap<String, Prior>,
    destroy: bool,
) -> Option<BTreeSet<String>> {
    if targets.is_empty() {
        return None;
    }
    let start: Vec<String> = targets
        .iter()
        .flat_map(|t| expand(t, known).unwrap_or_default())
        .map(str::to_string)
        .collect();
    Some(closure(start, |a| {
        if destroy {
            dependents_of(a, desired, prior)
        } else {
            desired
                .iter()
                .filter(|d| d.address == a)
                .flat_map(|d| d.depends_on.iter().cloned())
                .collect()
        }
    }))
}

/// Keep only the nodes of the `keep` addresses, re-indexing the edges.
pub(super) fn keep_changes(changes: Vec<Change>, keep: &BTreeSet<String>) -> Vec<Change> {
    let old_to_new: Vec<Option<usize>> = {
        let mut n = 0;
        changes
            .iter()
            .map(|c| {
                keep.contains(&c.address).then(|| {
                    n += 1;
                    n - 1
                })
            })
            .collect()
    };
    changes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| old_to_new[*i].is_some())
        .map(|(_, mut c)| {
            c.depends_on = c.depends_on.iter().filter_map(|&d| old_to_new[d]).collect();
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_name_selects_its_members_and_nothing_else() {
        for (selector, address, hit) in [
            ("instance.web", "instance.web", true),
            ("instance.web", "instance.web[0]", true),
            ("instance.web", "instance.web[\"a.b\"]", true),
            ("instance.web[0]", "instance.web[0]", true),
            ("instance.web[0]", "instance.web[01]", false),
            ("instance.web", "instance.web2", false),
            ("instance.web", "instance.we", false),
            ("instance.web[0]", "instance.web", false),
        ] {
            assert_eq!(selects(selector, address), hit, "{selector} {address}");
        }
    }
}
