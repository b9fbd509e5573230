//! What ties resources together and to OCI: OCIDs of the right kind, `instance.X` / `image.X`
//! references (dangling ones, fleets named where a member is meant, references across regions),
//! dependency cycles (through the leaf [`crate::dag`]), and `[[moved]]`.

use std::collections::{BTreeMap, BTreeSet};

use super::diagnostic::{At, Problem};
use super::tree::{entries, get, str_of, Node, Value};
use super::{fleet, Address, ImageSpec, InstanceSpec, Loader, Moved, Provider, Ref, ResourceKind};
use crate::suggest::did_you_mean;

impl Loader {
    /// A string that must be an OCID of one of `kinds`; `None` (with a problem) otherwise.
    pub(super) fn ocid(&mut self, s: &str, at: &At, field: &str, kinds: &[&str]) -> Option<String> {
        match ocid_kind(s) {
            Some(k) if kinds.contains(&k) => Some(s.to_string()),
            Some(k) => {
                self.problem(
                    Problem::error(
                        "wrong_ocid_kind",
                        format!(
                            "`{field}` needs {} OCID, but this is {} OCID",
                            article(kinds[0]),
                            article(k)
                        ),
                    )
                    .at(at, format!("{} OCID", article(k)))
                    .help(format!("use an `ocid1.{}.…` id here", kinds[0])),
                );
                None
            }
            None => {
                self.problem(
                    Problem::error("malformed_ocid", format!("`{field}`: `{s}` is not an OCID"))
                        .at(at, "not an OCID")
                        .help(format!(
                            "OCIDs look like `ocid1.{}.oc1.<region>.<unique id>`",
                            kinds[0]
                        )),
                );
                None
            }
        }
    }

    /// A string that is an `instance.X`/`image.X` reference or an OCID.
    pub(super) fn reference(
        &mut self,
        s: &str,
        at: &At,
        field: &str,
        kind: ResourceKind,
        ocid_kinds: &[&str],
    ) -> Option<Ref> {
        if s.starts_with("ocid1.") {
            return self.ocid(s, at, field, ocid_kinds).map(Ref::Ocid);
        }
        match s.parse::<Address>() {
            Ok(a) if a.kind == kind => Some(Ref::Resource(a)),
            Ok(a) => {
                self.problem(
                    Problem::error(
                        "wrong_reference_kind",
                        format!(
                            "`{field}` must refer to an {} (`{}.NAME`), not `{a}`",
                            kind.as_str(),
                            kind.as_str()
                        ),
                    )
                    .at(at, format!("{} reference", article(a.kind.as_str())))
                    .help(format!(
                        "use `{}.NAME` or an `ocid1.{}.…` id",
                        kind.as_str(),
                        ocid_kinds[0]
                    )),
                );
                None
            }
            Err(_) => {
                self.problem(
                    Problem::error(
                        "malformed_ocid",
                        format!(
                            "`{field}`: `{s}` is neither an OCID nor a `{}.NAME` reference",
                            kind.as_str()
                        ),
                    )
                    .at(at, "not an id")
                    .help(format!(
                        "use `{}.NAME` for a resource of this manifest, or an `ocid1.{}.…` id",
                        kind.as_str(),
                        ocid_kinds[0]
                    )),
                );
                None
            }
        }
    }

    /// References to resources this manifest does not declare: a typo, a fleet named where one
    /// member is meant, a member out of range, a disabled table.
    pub(super) fn dangling(
        &mut self,
        refs: &[(Address, Address, At)],
        instances_x: &fleet::Expanded,
        images_x: &fleet::Expanded,
    ) {
        let instance_names: BTreeSet<String> = instances_x.tables.keys().cloned().collect();
        let image_names: BTreeSet<String> = images_x.tables.keys().cloned().collect();
        let (instance_names, image_names) = (&instance_names, &image_names);
        for (from, to, at) in refs {
            let exists = match to.kind {
                ResourceKind::Instance => instance_names.contains(&to.name),
                ResourceKind::Image => image_names.contains(&to.name),
            };
            let x = match to.kind {
                ResourceKind::Instance => instances_x,
                ResourceKind::Image => images_x,
            };
            if !exists && !x.unknown_size.contains(to.fleet()) {
                let (names, x) = match to.kind {
                    ResourceKind::Instance => (&instance_names, &instances_x),
                    ResourceKind::Image => (&image_names, &images_x),
                };
                let kind = to.kind.as_str();
                let p = if let (false, Some(members)) = (to.is_member(), x.fleets.get(&to.name)) {
                    Problem::error(
                        "fleet_reference",
                        format!(
                            "`{from}` refers to `{to}`, a fleet of {} members",
                            members.len()
                        ),
                    )
                    .at(at, "a fleet, not one resource")
                    .help(match members.first() {
                        Some(m) => format!("refer to one member, e.g. `{kind}.{m}`"),
                        None => format!(
                            "`{to}` has no members here (`count = 0` or an empty `for_each`)"
                        ),
                    })
                } else if x.disabled.contains(to.fleet()) {
                    Problem::error(
                        "disabled_reference",
                        format!("`{from}` refers to `{to}`, which is `enabled = false` here"),
                    )
                    .at(at, "disabled")
                    .help(format!(
                        "enable `{kind}.{}` in this environment, or refer to something else",
                        to.fleet()
                    ))
                } else if let (true, Some(members)) = (to.is_member(), x.fleets.get(to.fleet())) {
                    Problem::error(
                        "dangling_reference",
                        format!(
                            "`{from}` refers to `{to}`, which is not a member of `{kind}.{}`",
                            to.fleet()
                        ),
                    )
                    .at(at, "no such member")
                    .help(match (members.first(), members.last()) {
                        (Some(a), Some(b)) => {
                            format!("its members are `{kind}.{a}` … `{kind}.{b}`")
                        }
                        _ => format!("`{kind}.{}` has no members here", to.fleet()),
                    })
                } else {
                    let p = Problem::error(
                        "dangling_reference",
                        format!("`{from}` refers to `{to}`, which this manifest does not declare"),
                    )
                    .at(at, "no such resource");
                    match did_you_mean(&to.name, names.iter().map(String::as_str)) {
                        Some(s) => p.help(format!("did you mean `{kind}.{s}`?")),
                        None => p.help(format!("declare `[{to}]`, or use an OCID")),
                    }
                };
                self.problem(p);
            }
        }
    }

    /// A reference from one region to another: impossible in OCI (an image is regional; it is
    /// exported and imported, not launched across regions) — unless the image is copied to the
    /// referring resource's region (`regions`), where the reference means that copy.
    pub(super) fn cross_region(
        &mut self,
        refs: &[(Address, Address, At)],
        provider: &Provider,
        instances: &BTreeMap<String, InstanceSpec>,
        images: &BTreeMap<String, ImageSpec>,
    ) {
        let region_of = |a: &Address| -> Option<Option<&str>> {
            let r = match a.kind {
                ResourceKind::Instance => instances.get(&a.name)?.region.as_deref(),
                ResourceKind::Image => images.get(&a.name)?.region.as_deref(),
            };
            Some(r.or(provider.region.as_deref()))
        };
        for (from, to, at) in refs {
            let (Some(rf), Some(rt)) = (region_of(from), region_of(to)) else {
                continue;
            };
            let copied_there = to.kind == ResourceKind::Image
                && images
                    .get(&to.name)
                    .is_some_and(|i| rf.is_some_and(|r| i.copies.regions.iter().any(|c| c == r)));
            if rf != rt && !copied_there {
                let name = |r: Option<&str>| r.unwrap_or("the provider's region").to_string();
                let help = match (to.kind, rf) {
                    (ResourceKind::Image, Some(r)) => format!("add it to `regions`: `{to}` is then copied to {r} (`regions = [\"{r}\"]`), and the reference means that copy"),
                    _ => "put both in one region (an image is regional: export it and import it in the other region)".to_string(),
                };
                self.problem(
                    Problem::error(
                        "cross_region_reference",
                        format!(
                            "`{from}` ({}) refers to `{to}` ({}): resources cannot be used across regions",
                            name(rf),
                            name(rt)
                        ),
                    )
                    .at(at, "in another region")
                    .help(help),
                );
            }
        }
    }

    /// `[[moved]]` tables: both addresses valid and of one kind, `to` declared, `from` not.
    pub(super) fn moved(
        &mut self,
        node: Option<&Node>,
        instance_names: &BTreeSet<String>,
        image_names: &BTreeSet<String>,
    ) -> Vec<Moved> {
        let Some(Value::Array(items)) = node.map(|n| &n.value) else {
            return Vec::new();
        };
        let declared = |a: &Address| match a.kind {
            ResourceKind::Instance => instance_names.contains(&a.name),
            ResourceKind::Image => image_names.contains(&a.name),
        };
        let mut out = Vec::new();
        for item in items {
            let Some(t) = entries(item) else { continue };
            let parse = |key: &str, this: &mut Self| -> Option<(Address, At)> {
                let Some((v, at)) = str_of(get(t, key)) else {
                    this.problem(
                        Problem::error("missing_field", format!("`[[moved]]` needs `{key}`"))
                            .at(&item.at, format!("`{key}` missing"))
                            .help("`from = \"instance.OLD\"`, `to = \"instance.NEW\"`"),
                    );
                    return None;
                };
                match v.parse::<Address>() {
                    Ok(a) => Some((a, at.clone())),
                    Err(e) => {
                        this.problem(Problem::error("invalid_address", e).at(at, "not an address"));
                        None
                    }
                }
            };
            let (Some((from, from_at)), Some((to, to_at))) =
                (parse("from", self), parse("to", self))
            else {
                continue;
            };
            if from.kind != to.kind {
                self.problem(
                    Problem::error(
                        "moved_kind",
                        format!("`{from}` cannot move to `{to}`: a move keeps the kind"),
                    )
                    .at(&to_at, "another kind"),
                );
                continue;
            }
            if !declared(&to) {
                self.problem(
                    Problem::error(
                        "moved_to_undeclared",
                        format!("`[[moved]]` to `{to}`, which this manifest does not declare"),
                    )
                    .at(&to_at, "not declared")
                    .help(format!(
                        "declare `[{}.{}]`, or fix the address",
                        to.kind.as_str(),
                        to.fleet()
                    )),
                );
                continue;
            }
            if declared(&from) {
                self.problem(
                    Problem::error(
                        "moved_from_declared",
                        format!("`[[moved]]` from `{from}`, which this manifest still declares"),
                    )
                    .at(&from_at, "still declared")
                    .help("a move renames: remove the old table, or remove this `[[moved]]`"),
                );
                continue;
            }
            out.push(Moved { from, to });
        }
        out
    }

    /// A dependency cycle is one problem naming every member.
    pub(super) fn cycles(&mut self, refs: &[(Address, Address, At)]) {
        let mut dag = crate::dag::Dag::new();
        let mut ids: BTreeMap<&Address, _> = BTreeMap::new();
        for (a, b, _) in refs {
            for x in [a, b] {
                if !ids.contains_key(x) {
                    ids.insert(x, dag.add_node(x.to_string()));
                }
            }
        }
        for (a, b, _) in refs {
            dag.add_edge(ids[b], ids[a]);
        }
        // Strongly connected components with more than one member (or a self-edge) are cycles.
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (addr, &id) in &ids {
            if seen.contains(&addr.to_string()) {
                continue;
            }
            let down = dag.all_dependents(id);
            if !down.contains(&id) {
                continue;
            }
            let members: Vec<String> = down
                .iter()
                .filter(|&&n| dag.all_dependents(n).contains(&id))
                .map(|&n| dag.node(n).clone())
                .collect();
            seen.extend(members.iter().cloned());
            let sites: Vec<&(Address, Address, At)> = refs
                .iter()
                .filter(|(a, b, _)| {
                    members.contains(&a.to_string()) && members.contains(&b.to_string())
                })
                .collect();
            let Some(first) = sites.first() else { continue };
            let mut p = Problem::error("dependency_cycle", format!("dependency cycle: {}", members.join(" → ")))
                .at(&first.2, format!("`{}` needs `{}`", first.0, first.1))
                .help("break the cycle: an image cannot be the source of the instance it is captured from");
            for (a, b, at) in sites.iter().skip(1) {
                p = p.also(at, format!("`{a}` needs `{b}`"));
            }
            self.problem(p);
        }
    }
}

/// OCID kinds accepted where an id is expected.
fn ocid_kind(s: &str) -> Option<&str> {
    let parts: Vec<&str> = s.split('.').collect();
    (parts.len() >= 5
        && parts[0] == "ocid1"
        && parts[2].starts_with("oc")
        && !parts[parts.len() - 1].is_empty())
    .then(|| parts[1])
}

fn article(word: &str) -> String {
    let vowel = word.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} `{word}`", if vowel { "an" } else { "a" })
}
