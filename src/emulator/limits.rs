//! What the emulator's cloud cannot give: request rates (`--rate-limit OPERATION=RATE[:BURST]`, a
//! token bucket per tenancy and operation, 429 beyond it) and host capacity (`--capacity
//! SHAPE@AD[/FD]=N`, instances of a shape an availability domain or fault domain can hold; a launch
//! beyond it fails as OCI fails it).
//!
//! ## How OCI answers, and where that was read
//! - **Throttling**: 429 with the body `{"code": "TooManyRequests", "message": …}`; the messages
//!   seen from Compute are "Too many requests for the user" / "…for the tenant", and Oracle's
//!   `usingapi.htm` shows "User-rate limit exceeded." (research/oci-wire.md §7). OCI publishes no
//!   rates and documents no `Retry-After` on these answers; Oracle's SDKs never read one
//!   (research/oci-cli-wire.md: the Python SDK "has no code for it"), so the emulator sends none —
//!   a client must find the rate itself. Only `opc-request-id` and `content-type` come with it.
//! - **Capacity**: `500 InternalError` with the message "Out of host capacity." (Terraform's
//!   provider relays it verbatim, e.g. jpetazzo/ampernetacle#23, #54). Oracle's own controllers
//!   match exactly that: the Cluster API provider (oracle/cluster-api-provider-oci PR#473,
//!   `cloud/ociutil/ociutil.go` `IsOutOfHostCapacity`) requires status 500 and the message to
//!   contain "out of host capacity" case-insensitively; Karpenter's provider
//!   (oracle/karpenter-provider-oci PR#36, `pkg/oci/errors.go` `IsOutOfHostCapacity`) matches the
//!   message containing "Out of host capacity". The launch creates nothing (no instance, volume,
//!   VNIC or work request), so a retry with a new token elsewhere cannot make a second instance.
//!
//! ## Choices
//! - A bucket starts full (`BURST` tokens, `RATE` by default) and refills at `RATE` per second of
//!   wall time; one request takes one token. `*` limits every operation, each on its own bucket.
//!   Buckets are per tenancy (the first part of the signing key's id). The check runs after
//!   authentication and before anything else (a throttled request changes nothing), and its answers
//!   count in `/_emulator/stats` as `throttled` and `throttled.<Operation>`.
//! - `SHAPE` is a shape (`VM.Standard.A1.Flex`) or a family prefix (`VM.Standard.A1` or
//!   `VM.Standard`: any shape whose name continues with `.`), `*` for all. `AD` is an availability
//!   domain's full name or its suffix (`AD-1`); `FD` a fault domain (`FAULT-DOMAIN-2`). Instances
//!   count until they are TERMINATED (a TERMINATING one still holds its host), in every
//!   compartment (hosts are the region's). A launch without a fault domain goes to the first fault
//!   domain with room, as OCI chooses one for it; it fails only when none has room.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::api::{error, Reply};
use super::store::World;

/// One `--rate-limit OPERATION=RATE[:BURST]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimit {
    /// An OCI operation name (`LaunchInstance`) or `*`.
    pub operation: String,
    /// Tokens per second.
    pub rate: f64,
    /// Bucket size.
    pub burst: f64,
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (op, spec) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not OPERATION=RATE[:BURST]"))?;
        let op = op.trim();
        if op.is_empty() || !(op == "*" || op.chars().all(|c| c.is_ascii_alphanumeric())) {
            return Err(format!(
                "`{op}` is not an operation name (like `LaunchInstance`) or `*`"
            ));
        }
        let (rate, burst) = match spec.split_once(':') {
            Some((r, b)) => (r, Some(b)),
            None => (spec, None),
        };
        let rate: f64 = rate
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r > 0.0)
            .ok_or_else(|| format!("the rate in `{s}` must be a number above 0"))?;
        let burst = match burst {
            Some(b) => b
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|b| b.is_finite() && *b >= 1.0)
                .ok_or_else(|| format!("the burst in `{s}` must be a number of at least 1"))?,
            None => rate.max(1.0),
        };
        Ok(RateLimit {
            operation: op.to_string(),
            rate,
            burst,
        })
    }
}

/// One `--capacity SHAPE@AD[/FD]=N`.
#[derive(Clone, Debug, PartialEq)]
pub struct CapacityRule {
    /// A shape, a family prefix, or `*`.
    pub shape: String,
    /// An availability domain's name or suffix (`AD-1`).
    pub availability_domain: String,
    pub fault_domain: Option<String>,
    /// How many instances fit.
    pub instances: u64,
}

impl std::str::FromStr for CapacityRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not SHAPE@AD[/FD]=N");
        let (place, n) = s.rsplit_once('=').ok_or_else(bad)?;
        let instances: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("the count in `{s}` must be a whole number"))?;
        let (shape, where_) = place.split_once('@').ok_or_else(bad)?;
        let (ad, fd) = match where_.split_once('/') {
            Some((a, f)) => (a, Some(f.trim().to_string())),
            None => (where_, None),
        };
        if shape.trim().is_empty() || ad.trim().is_empty() || fd.as_deref() == Some("") {
            return Err(bad());
        }
        Ok(CapacityRule {
            shape: shape.trim().to_string(),
            availability_domain: ad.trim().to_string(),
            fault_domain: fd,
            instances,
        })
    }
}

/// Parse a list as the embedded emulator's environment variables hold it: entries separated by
/// commas or white space.
pub fn parse_list<T: std::str::FromStr<Err = String>>(s: &str) -> Result<Vec<T>, String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .map(str::parse)
        .collect()
}

impl CapacityRule {
    fn matches_shape(&self, shape: &str) -> bool {
        self.shape == "*"
            || shape == self.shape
            || shape
                .strip_prefix(self.shape.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    }

    fn matches_ad(&self, ad: &str) -> bool {
        ad == self.availability_domain
            || ad
                .strip_suffix(self.availability_domain.as_str())
                .is_some_and(|head| head.ends_with(':') || head.ends_with('-'))
    }
}

/// The fault domain a launch of `shape` in `ad` gets: `fd` when it has room, or — with no fault
/// domain asked for — the first of `fault_domains` with room; `Err` is OCI's out-of-capacity answer.
pub fn place(
    rules: &[CapacityRule],
    world: &World,
    shape: &str,
    ad: &str,
    fd: Option<&str>,
    fault_domains: &[&str],
) -> Result<String, Reply> {
    let relevant: Vec<&CapacityRule> = rules
        .iter()
        .filter(|r| r.matches_shape(shape) && r.matches_ad(ad))
        .collect();
    let candidates: Vec<&str> = match fd {
        Some(f) => vec![f],
        None => fault_domains.to_vec(),
    };
    if relevant.is_empty() {
        return Ok(candidates[0].to_string());
    }
    // What each rule counts now: live instances of its shape in its AD (and FD).
    let mut used = vec![0u64; relevant.len()];
    let mut per_fd: Vec<HashMap<String, u64>> = vec![HashMap::new(); relevant.len()];
    for rec in world.instances.values() {
        if rec.state() == "TERMINATED" {
            continue;
        }
        let s = rec.body.get("shape").and_then(|v| v.as_str()).unwrap_or("");
        let a = rec
            .body
            .get("availabilityDomain")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let f = rec
            .body
            .get("faultDomain")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        for (i, r) in relevant.iter().enumerate() {
            if r.matches_shape(s) && r.matches_ad(a) {
                used[i] += 1;
                *per_fd[i].entry(f.to_string()).or_default() += 1;
            }
        }
    }
    let room = |f: &str| {
        relevant.iter().enumerate().all(|(i, r)| {
            let n = match &r.fault_domain {
                Some(rf) if rf == f => per_fd[i].get(f).copied().unwrap_or(0),
                Some(_) => return true,
                None => used[i],
            };
            n < r.instances
        })
    };
    candidates
        .into_iter()
        .find(|f| room(f))
        .map(str::to_string)
        .ok_or_else(out_of_host_capacity)
}

/// OCI's answer to a launch no host can take.
pub fn out_of_host_capacity() -> Reply {
    error(500, "InternalError", "Out of host capacity.")
}

/// Token buckets per (tenancy, operation).
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: Vec<RateLimit>,
    buckets: Mutex<HashMap<(String, String), (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(limits: Vec<RateLimit>) -> RateLimiter {
        RateLimiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take a token for `operation` on behalf of `key_id`'s tenancy; `Some` is the 429 to answer.
    pub fn check(&self, key_id: &str, operation: &str) -> Option<Reply> {
        let limit = self
            .limits
            .iter()
            .find(|l| l.operation == operation)
            .or_else(|| self.limits.iter().find(|l| l.operation == "*"))?;
        let tenancy = key_id.split('/').next().unwrap_or(key_id).to_string();
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("bucket lock");
        let (tokens, at) = buckets
            .entry((tenancy, operation.to_string()))
            .or_insert((limit.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * limit.rate).min(limit.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            None
        } else {
            Some(error(
                429,
                "TooManyRequests",
                "Too many requests for the user",
            ))
        }
    }

    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rate_limits_and_capacity() {
        let r: RateLimit = "LaunchInstance=20:5".parse().unwrap();
        assert_eq!((r.rate, r.burst), (20.0, 5.0));
        let r: RateLimit = "*=2".parse().unwrap();
        assert_eq!((r.operation.as_str(), r.burst), ("*", 2.0));
        assert!("Launch=0".parse::<RateLimit>().is_err());
        assert!("=1".parse::<RateLimit>().is_err());
        let c: CapacityRule = "VM.Standard.A1.Flex@kIdk:US-ASHBURN-AD-1/FAULT-DOMAIN-2=3"
            .parse()
            .unwrap();
        assert_eq!(c.availability_domain, "kIdk:US-ASHBURN-AD-1");
        assert_eq!(c.fault_domain.as_deref(), Some("FAULT-DOMAIN-2"));
        assert_eq!(c.instances, 3);
        assert!(c.matches_ad("kIdk:US-ASHBURN-AD-1"));
        let c: CapacityRule = "VM.Standard@AD-2=0".parse().unwrap();
        assert!(c.matches_shape("VM.Standard.E4.Flex") && !c.matches_shape("VM.StandardX"));
        assert!(c.matches_ad("kIdk:US-ASHBURN-AD-2") && !c.matches_ad("kIdk:US-ASHBURN-AD-1"));
        assert!("VM@AD-1".parse::<CapacityRule>().is_err());
        let l: Vec<CapacityRule> = parse_list("*@AD-1=1, *@AD-2=2").unwrap();
        assert_eq!(l.len(), 2);
    }
}
