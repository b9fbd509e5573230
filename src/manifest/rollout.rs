//! `replace_method` and `rollout` of an `[instance.NAME]` (or of `[defaults]`): how a change of
//! source reaches a live instance, and how a fleet's members move onto it a few at a time.
//!
//! `max_surge` and `max_unavailable` are a count or a percentage of the fleet's size; a
//! percentage is resolved when the plan knows the size ([`Rollout::limits`]), rounded as
//! Kubernetes rounds a Deployment's (`k8s.io/kubernetes/pkg/controller/deployment/util`,
//! `ResolveFenceposts`: surge up, unavailable down, and both resolving to zero makes
//! unavailable 1). Both given as zero is an error at their span, as Kubernetes' validation
//! refuses it ("may not be 0 when `maxSurge` is 0").

use std::collections::BTreeMap;
use std::time::Duration;

use indexmap::IndexMap;

use super::diagnostic::{At, Problem};
use super::tree::{entries, get, str_of, Entry, Node, Value};
use super::Loader;

/// How a change of `source` reaches a live instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplaceMethod {
    /// Terminate and launch again (a new OCID, new addresses).
    #[default]
    Instance,
    /// OCI's boot volume replacement (UpdateInstance with `sourceDetails`): the OCID, VNIC, IPs
    /// and hostname stay.
    BootVolume,
}

impl ReplaceMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplaceMethod::Instance => "instance",
            ReplaceMethod::BootVolume => "boot_volume",
        }
    }
}

/// A count of members, or a percentage of the fleet's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amount {
    Count(u64),
    Percent(u64),
}

impl Amount {
    fn is_zero(self) -> bool {
        matches!(self, Amount::Count(0) | Amount::Percent(0))
    }

    /// Of `size` members, rounded up or down.
    pub fn of(self, size: u64, round_up: bool) -> u64 {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) if round_up => (size * p).div_ceil(100),
            Amount::Percent(p) => size * p / 100,
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// `on_failure`: what a member failing its gate does to the rest of the rollout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Stop: no new batch; what moved stays moved, the failed member stays (marked).
    #[default]
    Pause,
    /// Stop, then move the members already moved back onto the previous image.
    Rollback,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Pause => "pause",
            OnFailure::Rollback => "rollback",
        }
    }
}

/// `health_check = { command = [...], timeout = "5m", interval = "10s" }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// Program and arguments, run in the manifest directory without a shell.
    pub command: Vec<String>,
    /// How long the check may keep failing before the member is unhealthy (default 5m).
    pub timeout: Duration,
    /// Between two tries (default 10s).
    pub interval: Duration,
}

/// `rollout`: the limits and the gate of a fleet's move onto a new source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    pub max_surge: Amount,
    pub max_unavailable: Amount,
    pub min_healthy_time: Duration,
    pub health_check: Option<HealthCheck>,
    pub on_failure: OnFailure,
}

impl Default for Rollout {
    /// The defaults when `rollout` is present.
    fn default() -> Self {
        Rollout {
            max_surge: Amount::Count(1),
            max_unavailable: Amount::Count(0),
            min_healthy_time: Duration::ZERO,
            health_check: None,
            on_failure: OnFailure::Pause,
        }
    }
}

impl Rollout {
    /// `(surge, unavailable)` for a fleet of `size`: surge rounded up, unavailable down, and
    /// unavailable 1 when both come to zero (Kubernetes' `ResolveFenceposts`).
    pub fn limits(&self, size: u64) -> (u64, u64) {
        let surge = self.max_surge.of(size, true);
        let unavailable = self.max_unavailable.of(size, false);
        if surge == 0 && unavailable == 0 {
            (0, 1)
        } else {
            (surge, unavailable)
        }
    }
}

/// `"30s"`, `"5m"`, `"1h30m"`, `"500ms"`, `"0s"` → a duration.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let d = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            _ => return None,
        };
        total = total.checked_add(d)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

impl Loader {
    /// Push `p` unless the same problem is already there (every member of a fleet reads the
    /// fleet's one table: one mistake, one diagnostic).
    fn problem_once(&mut self, p: Problem) {
        let dup = self
            .problems
            .iter()
            .any(|q| q.code == p.code && q.message == p.message && q.at == p.at);
        if !dup {
            self.problem(p);
        }
    }

    pub(super) fn replace_method(
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
    ) -> ReplaceMethod {
        // The value is checked against its enum by the key table.
        match str_of(Self::field(t, defaults, "replace_method")) {
            Some(("boot_volume", _)) => ReplaceMethod::BootVolume,
            _ => ReplaceMethod::Instance,
        }
    }

    /// `rollout` of the table (else of `[defaults]`); `None` when neither sets it.
    pub(super) fn rollout(
        &mut self,
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
    ) -> Option<Rollout> {
        let node = Self::field(t, defaults, "rollout")?;
        // A wrong type is reported by the key table.
        let r = entries(node)?;
        let mut out = Rollout::default();
        let surge = get(r, "max_surge").and_then(|n| self.amount(n, "max_surge"));
        let unavailable = get(r, "max_unavailable").and_then(|n| self.amount(n, "max_unavailable"));
        if let Some((a, _)) = surge {
            out.max_surge = a;
        }
        if let Some((a, _)) = unavailable {
            out.max_unavailable = a;
        }
        if out.max_surge.is_zero() && out.max_unavailable.is_zero() {
            let at = unavailable
                .map(|(_, at)| at)
                .or(surge.map(|(_, at)| at))
                .unwrap_or(&node.at);
            let mut p = Problem::error(
                "rollout_cannot_progress",
                "`rollout.max_surge` and `rollout.max_unavailable` are both zero: no member could ever be replaced",
            )
            .at(at, "both zero")
            .help("allow one new member beside the fleet (`max_surge = 1`) or one member down (`max_unavailable = 1`)");
            if let Some((_, s_at)) =
                surge.filter(|(_, s_at)| Some(*s_at) != unavailable.map(|u| u.1))
            {
                p.also.push((s_at.clone(), "zero here too".into()));
            }
            self.problem_once(p);
        }
        // A member being boot-volume-replaced is down (OCI stops it, swaps the volume, starts
        // it: Oracle's docs, "Replacing a Boot Volume"), so a rollout that may take no member
        // down cannot use it. A percentage that rounds down to zero for a small fleet is caught
        // once the fleet's size is known ([`Loader::rollout_rounding`]).
        if Self::replace_method(t, defaults) == ReplaceMethod::BootVolume
            && out.max_unavailable.is_zero()
            && !out.max_surge.is_zero()
        {
            let (at, label) = match unavailable {
                Some((_, at)) => (at, "no member may be down"),
                None => (&node.at, "`max_unavailable` defaults to 0"),
            };
            let mut p = Problem::error(
                "rollout_boot_volume_needs_unavailable",
                "`replace_method = \"boot_volume\"` takes each member down while its boot volume is replaced, but `rollout.max_unavailable` is 0",
            )
            .at(at, label)
            .help("allow one member down at a time (`max_unavailable = 1`), or replace whole instances (`replace_method = \"instance\"`) to keep every member up");
            if let Some(m) = Self::field(t, defaults, "replace_method") {
                if m.at != *at {
                    p.also
                        .push((m.at.clone(), "boot volume replacement".into()));
                }
            }
            self.problem_once(p);
        }
        if let Some(d) = self.duration(get(r, "min_healthy_time"), "rollout.min_healthy_time") {
            out.min_healthy_time = d;
        }
        if let Some(("rollback", _)) = str_of(get(r, "on_failure")) {
            out.on_failure = OnFailure::Rollback;
        }
        if let Some(h) = get(r, "health_check").and_then(entries) {
            let command: Vec<String> = match get(h, "command") {
                Some(Node {
                    value: Value::Array(a),
                    at,
                }) => {
                    let c: Vec<String> = a
                        .iter()
                        .filter_map(|n| str_of(Some(n)).map(|(s, _)| s.to_string()))
                        .collect();
                    if c.first().is_none_or(|p| p.is_empty()) {
                        self.problem_once(
                            Problem::error(
                                "invalid_value",
                                "`rollout.health_check.command` names no program",
                            )
                            .at(at, "empty")
                            .help("e.g. `command = [\"./healthy.sh\"]` (run in the manifest directory, without a shell)"),
                        );
                    }
                    c
                }
                _ => {
                    let at = &get(r, "health_check").expect("present").at;
                    self.problem_once(
                        Problem::error("missing_field", "`rollout.health_check` has no `command`")
                            .at(at, "`command` missing")
                            .help("e.g. `health_check = { command = [\"./healthy.sh\"] }`"),
                    );
                    Vec::new()
                }
            };
            let timeout = self
                .duration(get(h, "timeout"), "rollout.health_check.timeout")
                .unwrap_or(Duration::from_secs(300));
            let interval = self
                .duration(get(h, "interval"), "rollout.health_check.interval")
                .unwrap_or(Duration::from_secs(10));
            out.health_check = Some(HealthCheck {
                command,
                timeout,
                interval,
            });
        }
        Some(out)
    }

    /// One message per mistake: every member of a fleet reads the same table.
    /// A percentage `max_unavailable` that rounds down to 0 for its fleet's size leaves boot
    /// volume replacement (which takes each member down) no member it may take down: refused at
    /// its span, naming the fleet, its size and the rounding. Run once every member is loaded
    /// (`tables` by member name, as `specs`).
    pub(super) fn rollout_rounding(
        &mut self,
        specs: &BTreeMap<String, super::InstanceSpec>,
        tables: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
    ) {
        let mut sizes: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
        for (name, spec) in specs {
            let e = sizes.entry(spec.address.fleet()).or_insert((0, name));
            e.0 += 1;
        }
        for (fleet, (size, member)) in sizes {
            let spec = &specs[member];
            let Some(r) = &spec.rollout else { continue };
            let Amount::Percent(p) = r.max_unavailable else {
                continue;
            };
            if spec.replace_method != ReplaceMethod::BootVolume || p == 0 || r.limits(size).1 > 0 {
                continue;
            }
            let Some(t) = tables.get(member).and_then(|e| entries(&e.node)) else {
                continue;
            };
            let Some(at) = Self::field(t, defaults, "rollout")
                .and_then(entries)
                .and_then(|r| get(r, "max_unavailable"))
                .map(|n| n.at.clone())
            else {
                continue;
            };
            let least = 100u64.div_ceil(size);
            self.problem_once(
                Problem::error(
                    "rollout_unavailable_rounds_to_zero",
                    format!(
                        "`rollout.max_unavailable = \"{p}%\"` of the {size} members of `instance.{fleet}` rounds down to 0, but `replace_method = \"boot_volume\"` takes each member down while its boot volume is replaced"
                    ),
                )
                .at(&at, format!("{p}% of {size} = {:.2}, rounded down to 0", (size * p) as f64 / 100.0))
                .help(format!(
                    "allow one member down (`max_unavailable = 1`, or at least `\"{least}%\"` of {size}), or replace whole instances (`replace_method = \"instance\"`)"
                )),
            );
        }
    }

    fn amount<'a>(&mut self, n: &'a Node, key: &str) -> Option<(Amount, &'a At)> {
        let bad = |what: String| {
            Problem::error("invalid_rollout_limit", format!("`rollout.{key}` {what}"))
        };
        match &n.value {
            Value::Int(i) if *i >= 0 => Some((Amount::Count(*i as u64), &n.at)),
            Value::Int(i) => {
                self.problem_once(
                    bad(format!("is {i}"))
                        .at(&n.at, "negative")
                        .help("a count of members (`1`) or a percentage of the fleet (`\"25%\"`)"),
                );
                None
            }
            Value::Str(s) => {
                match s
                    .strip_suffix('%')
                    .and_then(|p| p.parse::<u64>().ok())
                    .filter(|p| *p <= 100)
                {
                    Some(p) => Some((Amount::Percent(p), &n.at)),
                    None => {
                        self.problem_once(
                        bad(format!("`{s}` is not a percentage"))
                            .at(&n.at, "expected `0%` to `100%`")
                            .help("a count of members (`1`) or a percentage of the fleet (`\"25%\"`)"),
                    );
                        None
                    }
                }
            }
            // A wrong type is reported by the key table.
            _ => None,
        }
    }

    fn duration(&mut self, n: Option<&Node>, path: &str) -> Option<Duration> {
        let (s, at) = str_of(n)?;
        match parse_duration(s) {
            Some(d) => Some(d),
            None => {
                self.problem_once(
                    Problem::error(
                        "invalid_duration",
                        format!("`{path}` `{s}` is not a duration"),
                    )
                    .at(at, "expected e.g. `30s`, `5m`, `1h30m`")
                    .help("a number and a unit: `ms`, `s`, `m` or `h`"),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_kubernetes_rounding() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        let r = |s, u| Rollout {
            max_surge: s,
            max_unavailable: u,
            ..Rollout::default()
        };
        // 25% of 6: surge 1.5 → 2 (up), unavailable 1.5 → 1 (down).
        let q = Amount::Percent(25);
        assert_eq!(r(q, q).limits(6), (2, 1));
        // 10% of 100 → 10; 10% of 5: surge 1, unavailable 0.
        assert_eq!(
            r(Amount::Percent(10), Amount::Count(0)).limits(100),
            (10, 0)
        );
        assert_eq!(
            r(Amount::Percent(10), Amount::Percent(10)).limits(5),
            (1, 0)
        );
        // Both come to zero: one may be down.
        assert_eq!(r(Amount::Percent(0), Amount::Percent(10)).limits(5), (0, 1));
    }
}
