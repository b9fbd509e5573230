//! Rate limits as a property of the client: an adaptive budget per operation family (one per
//! [`super::Client`], so per region), shared by everything that calls the operation — the
//! executor's mutations and the waits' reads alike.
//!
//! OCI throttles per tenancy and operation and publishes no rates; its 429 `TooManyRequests`
//! carries no `Retry-After` that Oracle's SDKs read (research/oci-wire.md §8,
//! research/oci-cli-wire.md). Against a server that grants R requests a second, a budget of
//! requests *in flight* does not bound the rate when answers are fast, so each family has two
//! controls, both adapted to 429s:
//! - a **pace** (a send rate, unlimited until the first 429): after a 429, the rate becomes 0.9 ×
//!   the rate of successes measured over the last second — which, once a server's burst is
//!   spent, is the rate it grants — or half the pace when fewer succeeded; then it grows by
//!   [`INCREASE_PER_SECOND`] requests a second (each success adds `INCREASE_PER_SECOND / pace`),
//!   additive increase, multiplicative decrease, so it settles just under the granted rate and
//!   probes it again every few seconds;
//! - an **in-flight limit**, halved after a 429 (never below 1), +1 per `limit` successes, never
//!   above `--parallelism` (the ceiling, [`Budgets::set_ceiling`]).
//!
//! One decrease per family per reaction: a 429 to a request sent before the last decrease says
//! nothing new. A `Retry-After` (when a server sends one) holds the whole family until then. A
//! throttled request is retried through the same budget (the client waits for its turn instead of
//! a blind backoff). Families are OCI operation names: a wait's `ListInstances` and a refresh's
//! share one budget, as they share OCI's limit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Additive increase of the pace, in requests per second, per second.
pub const INCREASE_PER_SECOND: f64 = 0.5;
/// The slowest pace (one request every 4 s).
const MIN_RATE: f64 = 0.25;
/// Window for the measured rate of successes.
const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Family {
    /// Requests a second; `None` until the first 429.
    rate: Option<f64>,
    /// The earliest time the next request may go.
    next_at: Instant,
    limit: f64,
    in_flight: usize,
    /// When the last decrease happened.
    decreased_at: Option<Instant>,
    /// Times of recent successes (for the measured rate).
    successes: VecDeque<Instant>,
    throttled: u64,
}

impl Family {
    fn new(ceiling: usize) -> Family {
        Family {
            rate: None,
            next_at: Instant::now(),
            limit: ceiling as f64,
            in_flight: 0,
            decreased_at: None,
            successes: VecDeque::new(),
            throttled: 0,
        }
    }
}

#[derive(Debug)]
struct Inner {
    ceiling: usize,
    adaptive: bool,
    families: HashMap<&'static str, Family>,
}

/// The budgets of one client (clones share them).
#[derive(Clone, Debug)]
pub struct Budgets {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<tokio::sync::Notify>,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets::new(64, true)
    }
}

/// A request's place in its family's budget: given back when the answer came.
pub struct Ticket {
    family: &'static str,
    sent_at: Instant,
    budgets: Budgets,
    done: bool,
}

/// What became of a request, for its budget.
pub enum Outcome {
    Success,
    /// 429, with the server's `Retry-After` if it sent one.
    Throttled(Option<Duration>),
    /// Anything else (no signal about the rate).
    Other,
}

impl Budgets {
    /// `ceiling` requests in flight per family at most; `adaptive = false` keeps the ceiling and
    /// no pace (fixed concurrency; 429s only retried with backoff).
    pub fn new(ceiling: usize, adaptive: bool) -> Budgets {
        Budgets {
            inner: Arc::new(Mutex::new(Inner {
                ceiling: ceiling.max(1),
                adaptive,
                families: HashMap::new(),
            })),
            notify: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// `--parallelism`: the most requests of one family in flight.
    pub fn set_ceiling(&self, ceiling: usize) {
        let mut inner = self.inner.lock().expect("budget lock");
        inner.ceiling = ceiling.max(1);
        for f in inner.families.values_mut() {
            f.limit = f.limit.min(ceiling.max(1) as f64);
        }
    }

    pub fn set_adaptive(&self, adaptive: bool) {
        self.inner.lock().expect("budget lock").adaptive = adaptive;
    }

    pub fn adaptive(&self) -> bool {
        self.inner.lock().expect("budget lock").adaptive
    }

    /// Whether any family is paced now (the progress line says kiln is throttled).
    pub fn throttled(&self) -> Vec<(&'static str, f64)> {
        let inner = self.inner.lock().expect("budget lock");
        let mut v: Vec<(&'static str, f64)> = inner
            .families
            .iter()
            .filter_map(|(k, f)| f.rate.map(|r| (*k, r)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Wait for a turn of `family`; the returned ticket must be given back with [`Ticket::done`].
    /// Returns how long it waited.
    pub async fn acquire(&self, family: &'static str) -> (Ticket, Duration) {
        let start = Instant::now();
        loop {
            let notified = self.notify.notified();
            let wait = {
                let mut inner = self.inner.lock().expect("budget lock");
                let ceiling = inner.ceiling;
                let adaptive = inner.adaptive;
                let f = inner
                    .families
                    .entry(family)
                    .or_insert_with(|| Family::new(ceiling));
                let now = Instant::now();
                let limit = if adaptive {
                    (f.limit.floor() as usize).clamp(1, ceiling)
                } else {
                    ceiling
                };
                if f.in_flight >= limit {
                    None
                } else if adaptive && f.next_at > now {
                    Some(f.next_at - now)
                } else {
                    f.in_flight += 1;
                    if let Some(r) = f.rate.filter(|_| adaptive) {
                        f.next_at = f.next_at.max(now) + Duration::from_secs_f64(1.0 / r);
                    }
                    return (
                        Ticket {
                            family,
                            sent_at: now,
                            budgets: self.clone(),
                            done: false,
                        },
                        start.elapsed(),
                    );
                }
            };
            match wait {
                // A slot frees when a ticket is given back.
                None => notified.await,
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = notified => {}
                    }
                }
            }
        }
    }

    fn finish(&self, t: &Ticket, outcome: Outcome) {
        let mut inner = self.inner.lock().expect("budget lock");
        let ceiling = inner.ceiling as f64;
        let adaptive = inner.adaptive;
        let Some(f) = inner.families.get_mut(t.family) else {
            return;
        };
        f.in_flight = f.in_flight.saturating_sub(1);
        let now = Instant::now();
        while f.successes.front().is_some_and(|s| now - *s > WINDOW) {
            f.successes.pop_front();
        }
        match outcome {
            Outcome::Success => {
                f.successes.push_back(now);
                if adaptive {
                    f.limit = (f.limit + 1.0 / f.limit.max(1.0)).min(ceiling);
                    if let Some(r) = &mut f.rate {
                        *r += INCREASE_PER_SECOND / r.max(1.0);
                    }
                }
            }
            Outcome::Throttled(after) => {
                f.throttled += 1;
                if !adaptive {
                    return;
                }
                if let Some(after) = after {
                    f.next_at = f.next_at.max(now + after);
                }
                // One decrease per reaction: this request went out before the last one.
                if f.decreased_at.is_some_and(|d| t.sent_at <= d) {
                    return;
                }
                f.decreased_at = Some(now);
                f.limit = (f.limit / 2.0).max(1.0);
                let measured = f.successes.len() as f64 / WINDOW.as_secs_f64();
                let pace = f.rate.unwrap_or(f64::INFINITY);
                let new = if measured >= 1.0 {
                    (measured * 0.9).min(pace)
                } else {
                    (pace / 2.0).min(measured.max(1.0))
                };
                f.rate = Some(new.max(MIN_RATE));
                // The server's bucket is empty: let it refill one request's worth.
                f.next_at = f
                    .next_at
                    .max(now + Duration::from_secs_f64(1.0 / new.max(MIN_RATE)));
                tracing::info!(
                    target: "kiln::oci",
                    family = t.family,
                    rate = new,
                    in_flight_limit = f.limit,
                    "throttled (429): pacing {} at {new:.1}/s",
                    t.family
                );
            }
            Outcome::Other => {}
        }
        drop(inner);
        self.notify.notify_waiters();
    }

    /// 429s seen per family (all of them, adaptive or not).
    pub fn throttled_counts(&self) -> Vec<(&'static str, u64)> {
        let inner = self.inner.lock().expect("budget lock");
        let mut v: Vec<_> = inner
            .families
            .iter()
            .map(|(k, f)| (*k, f.throttled))
            .collect();
        v.sort();
        v
    }
}

impl Ticket {
    pub fn done(mut self, outcome: Outcome) {
        self.done = true;
        self.budgets.finish(&self, outcome);
    }
}

impl Drop for Ticket {
    /// A request dropped mid-flight (its task was cancelled) gives its slot back.
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            let b = self.budgets.clone();
            b.finish(self, Outcome::Other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_429_paces_the_family_below_its_measured_rate_and_only_once_per_reaction() {
        let b = Budgets::new(4, true);
        let mut tickets = Vec::new();
        for _ in 0..4 {
            tickets.push(b.acquire("LaunchInstance").await.0);
        }
        // Two succeed, two are throttled: one decrease.
        let mut it = tickets.into_iter();
        it.next().unwrap().done(Outcome::Success);
        it.next().unwrap().done(Outcome::Success);
        it.next().unwrap().done(Outcome::Throttled(None));
        it.next().unwrap().done(Outcome::Throttled(None));
        let paced = b.throttled();
        assert_eq!(paced.len(), 1);
        assert!((paced[0].1 - 1.8).abs() < 1e-9, "{paced:?}");
        assert_eq!(b.throttled_counts(), vec![("LaunchInstance", 2)]);
        // Another family is not paced.
        let (t, waited) = b.acquire("ListInstances").await;
        assert!(waited < Duration::from_millis(100));
        t.done(Outcome::Success);
    }

    #[tokio::test]
    async fn without_adaptation_the_ceiling_is_the_only_bound() {
        let b = Budgets::new(2, false);
        let (t1, _) = b.acquire("X").await;
        let (t2, _) = b.acquire("X").await;
        t1.done(Outcome::Throttled(None));
        assert!(b.throttled().is_empty());
        t2.done(Outcome::Success);
    }
}
