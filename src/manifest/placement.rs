//! `placement = { availability_domains = [...], fault_domains = "spread" | [...] | "any" }`: where
//! the members of an instance table go, decided when each is created (like `image_lookup`).
//!
//! Member `i` (its `count` index, or its position among the sorted `for_each` keys; 0 for a plain
//! table) goes to availability domain `i mod #ADs`; with `"spread"` the members of one AD go to its
//! fault domains in turn (`(i div #ADs) mod 3`), with a list to those fault domains in turn, with
//! `"any"` (the default) OCI chooses. A `count` index never changes, so scaling up adds members
//! without moving any and scaling down removes the highest without moving the rest. Once made,
//! a member stays where it landed: the plan does not compare its domains ([`super::InstanceSpec`]
//! marks them ignored), so capacity fallback (the apply's) never churns.
//!
//! `placement` may sit on an instance table or in `[defaults]` (and so in an environment file);
//! on one table it conflicts with `availability_domain`/`fault_domain`. A table's own key wins
//! over `[defaults]`: a table with `availability_domain` ignores a default `placement`, and a
//! table with `placement` ignores a default `availability_domain`/`fault_domain`.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::diagnostic::{At, Problem};
use super::tree::{get, str_of, Entry, Node, Value};
use super::Loader;

/// The fault domains of every availability domain (OCI has three per AD).
pub const FAULT_DOMAINS: &[&str] = &["FAULT-DOMAIN-1", "FAULT-DOMAIN-2", "FAULT-DOMAIN-3"];

/// How a member's fault domain is chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultDomains {
    /// The fault domains of the AD in turn.
    Spread,
    /// These, in turn.
    List(Vec<String>),
    /// None is sent: OCI chooses.
    Any,
}

/// A table's `placement`, with the member it is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub availability_domains: Vec<String>,
    pub fault_domains: FaultDomains,
    /// The member's index among the fleet's members (0 for a plain table).
    pub index: usize,
}

impl Placement {
    /// Where the member is planned: its AD and, unless `any`, its FD.
    pub fn assigned(&self) -> (String, Option<String>) {
        let n = self.availability_domains.len().max(1);
        let ad = self.availability_domains[self.index % n].clone();
        let turn = self.index / n;
        let fd = match &self.fault_domains {
            FaultDomains::Spread => Some(FAULT_DOMAINS[turn % FAULT_DOMAINS.len()].to_string()),
            FaultDomains::List(l) => Some(l[turn % l.len()].clone()),
            FaultDomains::Any => None,
        };
        (ad, fd)
    }

    /// Every place to try, in order, when the one before has no capacity: the planned place, the
    /// next fault domains of its AD (`spread` or a list; with `any` OCI already tried them all),
    /// then the next ADs of the list, wrapping round, each from its first fault domain in the
    /// member's turn.
    pub fn fallback(&self) -> Vec<(String, Option<String>)> {
        let n = self.availability_domains.len().max(1);
        let turn = self.index / n;
        let fds: Vec<Option<String>> = match &self.fault_domains {
            FaultDomains::Spread => (0..FAULT_DOMAINS.len())
                .map(|k| Some(FAULT_DOMAINS[(turn + k) % FAULT_DOMAINS.len()].to_string()))
                .collect(),
            FaultDomains::List(l) => (0..l.len())
                .map(|k| Some(l[(turn + k) % l.len()].clone()))
                .collect(),
            FaultDomains::Any => vec![None],
        };
        let mut out = Vec::new();
        for a in 0..n {
            let ad = &self.availability_domains[(self.index + a) % n];
            for fd in &fds {
                out.push((ad.clone(), fd.clone()));
            }
        }
        out
    }
}

/// What decides a table's domains.
pub(super) enum Domains {
    /// `availability_domain` (and maybe `fault_domain`), given.
    Explicit,
    Placement(Placement),
}

impl Loader {
    /// Which of `placement` or `availability_domain`/`fault_domain` applies to a table (module
    /// doc), with the conflict on one table reported at the span.
    pub(super) fn domains(
        &mut self,
        address: &super::Address,
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
        index: usize,
    ) -> Option<Domains> {
        for table in [t, defaults] {
            let placement = get(table, "placement");
            let explicit = get(table, "availability_domain").or_else(|| get(table, "fault_domain"));
            match (placement, explicit) {
                (Some(p), Some(e)) => {
                    let key = if get(table, "availability_domain").is_some() {
                        "availability_domain"
                    } else {
                        "fault_domain"
                    };
                    let whose = if std::ptr::eq(table, defaults) {
                        "`[defaults]`".to_string()
                    } else {
                        // The table, not each member of a fleet.
                        let a = address.to_string();
                        format!("`{}`", a.split('[').next().unwrap_or(&a))
                    };
                    self.once(
                        Problem::error(
                            "placement_conflict",
                            format!("{whose} sets both `placement` and `{key}`"),
                        )
                        .at(&p.at, "placement here")
                        .also(&e.at, format!("`{key}` here"))
                        .help("keep one: `placement` spreads the members and falls back when a domain is full; `availability_domain`/`fault_domain` pin them"),
                    );
                    return None;
                }
                (Some(p), None) => return self.placement(p, index).map(Domains::Placement),
                (None, Some(_)) => return Some(Domains::Explicit),
                (None, None) => {}
            }
        }
        Some(Domains::Explicit)
    }

    /// Report `p` unless the same problem is already reported: a fleet's members (and every
    /// table under `[defaults]`) share the `placement` they are checked against.
    fn once(&mut self, p: Problem) {
        let key = |q: &Problem| (q.code, q.message.clone(), format!("{:?}", q.at));
        let k = key(&p);
        if !self.problems.iter().any(|q| key(q) == k) {
            self.problems.push(p);
        }
    }

    fn placement(&mut self, node: &Node, index: usize) -> Option<Placement> {
        let Value::Table(t) = &node.value else {
            return None;
        };
        let ads: Vec<(String, At)> = match get(t, "availability_domains") {
            Some(Node {
                value: Value::Array(a),
                ..
            }) => a
                .iter()
                .filter_map(|n| str_of(Some(n)).map(|(s, at)| (s.to_string(), at.clone())))
                .collect(),
            _ => Vec::new(),
        };
        if ads.is_empty() {
            self.once(
                Problem::error(
                    "invalid_placement",
                    "`placement` needs at least one of `availability_domains`",
                )
                .at(&node.at, "no availability domain")
                .help("e.g. `placement = { availability_domains = [\"kIdk:US-ASHBURN-AD-1\", \"kIdk:US-ASHBURN-AD-2\"], fault_domains = \"spread\" }`"),
            );
            return None;
        }
        let mut ok = true;
        for (i, (ad, at)) in ads.iter().enumerate() {
            if !super::instance::is_availability_domain(ad) {
                self.once(
                    Problem::error("invalid_availability_domain", format!("`placement.availability_domains` `{ad}` is not an availability domain name"))
                        .at(at, "expected `<prefix>:<REGION>-AD-<n>`")
                        .help("copy it from the console or `oci iam availability-domain list`, e.g. `kIdk:US-ASHBURN-AD-1`"),
                );
                ok = false;
            } else if let Some((_, first)) = ads[..i].iter().find(|(a, _)| a == ad) {
                self.once(
                    Problem::error(
                        "invalid_placement",
                        format!("`placement.availability_domains` lists `{ad}` twice"),
                    )
                    .at(at, "again")
                    .also(first, "first here")
                    .help("list each availability domain once"),
                );
                ok = false;
            }
        }
        let fault_domains = match get(t, "fault_domains") {
            None => FaultDomains::Any,
            Some(Node {
                value: Value::Str(s),
                ..
            }) => match s.as_str() {
                "spread" => FaultDomains::Spread,
                // Anything else is reported by the key table (`spread` or `any`).
                _ => FaultDomains::Any,
            },
            Some(
                n @ Node {
                    value: Value::Array(a),
                    ..
                },
            ) => {
                let list: Vec<(String, At)> = a
                    .iter()
                    .filter_map(|n| str_of(Some(n)).map(|(s, at)| (s.to_string(), at.clone())))
                    .collect();
                for (fd, at) in &list {
                    if !FAULT_DOMAINS.contains(&fd.as_str()) {
                        self.once(
                            Problem::error(
                                "invalid_value",
                                format!("`placement.fault_domains` `{fd}` is not a fault domain"),
                            )
                            .at(at, "expected `FAULT-DOMAIN-<n>`")
                            .help("use `FAULT-DOMAIN-1`, `FAULT-DOMAIN-2` or `FAULT-DOMAIN-3`, or `\"spread\"`"),
                        );
                        ok = false;
                    }
                }
                if list.is_empty() {
                    self.once(
                        Problem::error(
                            "invalid_placement",
                            "`placement.fault_domains` is an empty list",
                        )
                        .at(&n.at, "no fault domain")
                        .help("list fault domains, or use `\"spread\"` or `\"any\"`"),
                    );
                    ok = false;
                }
                FaultDomains::List(list.into_iter().map(|(s, _)| s).collect())
            }
            Some(_) => FaultDomains::Any,
        };
        ok.then(|| Placement {
            availability_domains: ads.into_iter().map(|(s, _)| s).collect(),
            fault_domains,
            index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ads: &[&str], fds: FaultDomains, index: usize) -> Placement {
        Placement {
            availability_domains: ads.iter().map(|s| s.to_string()).collect(),
            fault_domains: fds,
            index,
        }
    }

    #[test]
    fn members_go_round_the_ads_then_the_fault_domains_in_turn() {
        let ads = ["a:X-AD-1", "a:X-AD-2", "a:X-AD-3"];
        let got: Vec<(String, Option<String>)> = (0..7)
            .map(|i| p(&ads, FaultDomains::Spread, i).assigned())
            .collect();
        let want = [
            ("a:X-AD-1", "FAULT-DOMAIN-1"),
            ("a:X-AD-2", "FAULT-DOMAIN-1"),
            ("a:X-AD-3", "FAULT-DOMAIN-1"),
            ("a:X-AD-1", "FAULT-DOMAIN-2"),
            ("a:X-AD-2", "FAULT-DOMAIN-2"),
            ("a:X-AD-3", "FAULT-DOMAIN-2"),
            ("a:X-AD-1", "FAULT-DOMAIN-3"),
        ];
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.1.as_deref()), (w.0, Some(w.1)));
        }
        assert_eq!(p(&ads, FaultDomains::Any, 4).assigned().1, None);
    }

    #[test]
    fn fallback_tries_the_next_fault_domains_then_the_next_ads_wrapping() {
        let ads = ["a:X-AD-1", "a:X-AD-2"];
        let f = p(&ads, FaultDomains::Spread, 3).fallback();
        assert_eq!(f.len(), 6);
        assert_eq!(f[0], ("a:X-AD-2".into(), Some("FAULT-DOMAIN-2".into())));
        assert_eq!(f[1], ("a:X-AD-2".into(), Some("FAULT-DOMAIN-3".into())));
        assert_eq!(f[2], ("a:X-AD-2".into(), Some("FAULT-DOMAIN-1".into())));
        assert_eq!(f[3], ("a:X-AD-1".into(), Some("FAULT-DOMAIN-2".into())));
        assert_eq!(f[0], {
            let (a, d) = p(&ads, FaultDomains::Spread, 3).assigned();
            (a, d)
        });
        let any = p(&ads, FaultDomains::Any, 1).fallback();
        assert_eq!(
            any,
            vec![("a:X-AD-2".into(), None), ("a:X-AD-1".into(), None)]
        );
    }
}
