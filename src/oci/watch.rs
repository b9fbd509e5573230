//! List-based waiting: when several resources of one compartment are waited for at once, one
//! paginated ListInstances / ListImages per poll round serves all of them, instead of one
//! GetInstance / GetImage per waiter per round — the read storm that makes large applies hit 429s.
//!
//! Each waiter keeps its own pacing ([`WaitOptions::interval`]: at most ~10 % late; ~5 % while it
//! shares listings — a look then costs a listing of the compartment, not a read per waiter, and
//! from two waiters on, half the pause costs no more reads than each polling alone). When it is
//! time to look, it asks the compartment's [`Watch`] for a listing that started after it asked
//! (in the second half of its pause): a listing in flight or done that started since serves it;
//! otherwise it takes the next one. One listing runs at a time per watch, and every waiter that
//! asks while it runs shares the next, so rounds never outnumber what the slowest pace of any
//! one waiter asks for, and never pile up (a waiter due meanwhile is at most one listing late:
//! "~10 % plus one round trip"). A lone waiter reads with a Get, as before: a listing costs at
//! least as much as a Get, and the Get carries the etag.
//!
//! A listing walks the compartment newest first and stops at the page that showed every
//! resource waited for when it started: resources being created are the newest, so a round of
//! launches costs one small page however large the compartment is. Its first page is sized for
//! the waiters (twice their number, at least 50) or for how far the watch's last listing had to
//! walk (and a quarter more), whichever is larger; later pages are the largest (1,000).
//!
//! Listings carry each resource's whole JSON (as a Get does) but no etag. A wait that ends on a
//! listing returns that body without an etag — no Get at the end — and the caller records it so:
//! a later mutation of the resource in the same apply reads it once first
//! (`apply::execute::Ctx::recorded_version`), so every If-Match still names a version kiln read.
//! A waiter whose resource reached a failed state by the listing, or is missing from it (not
//! visible yet, moved out of the compartment, purged), reads it with a Get, which knows.
//!
//! **Rides.** A waiter in its pause looks at every shared listing that finishes meanwhile (one
//! started after its wait began): another waiter's look shows its resource too, at no cost, so
//! while several wait, each notices its transition within a listing of it, not a pause. Only a
//! listing that shows the resource in an awaited state ends the pause early; anything else waits
//! for the waiter's own look, which reads it with a Get when the listing lacks it.
//!
//! **Learned durations.** A waiter's first looks are the cheap ones to lose: a launch takes about
//! as long as the launches before it in the same apply. The watches of an apply ([`Watches`])
//! keep, per (kind, awaited states), the shortest time a resource was still seen on its way
//! ([`Learned`]: a lower bound of the transition's length, from the look that last saw it
//! pending); a later waiter for the same states makes its first look then instead of at once.
//! A transition at least as long as the quickest one seen is noticed no later than before; a
//! quicker one at most by the difference. Waits that end at their first look (already there)
//! teach nothing. At 100 launches on 10 slots this took the reads from ~2.5 to under 1 per launch
//! (BENCHMARKS.md, section 3).
//!
//! [`WaitReads::Get`] turns sharing off (`kiln apply --wait-reads get`): every waiter reads with
//! its own Get each round, the way per-resource tools poll — for comparison (BENCHMARKS.md).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{FutureExt, Shared};
use serde_json::Value;

use super::client::{Client, Response};
use super::compute::{ListImages, ListInstances};
use super::error::{ErrorKind, OciError};
use super::wait::WaitOptions;

/// What is waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Instance,
    Image,
}

/// How waits read the resources they wait for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WaitReads {
    /// Waits of one compartment share one listing per poll round (a lone waiter Gets).
    #[default]
    List,
    /// Every waiter reads its resource with its own Get each round (the per-resource way).
    Get,
}

/// id → the resource's JSON, from one listing.
type Listing = Arc<HashMap<String, Value>>;
type Pending = Shared<Pin<Box<dyn Future<Output = Result<Listing, OciError>> + Send>>>;

/// The smallest first page of a listing.
const FIRST_PAGE_MIN: u32 = 50;
/// OCI's largest page.
const PAGE_MAX: u32 = 1000;
/// The most a waiter that shares listings is late, relative to how long it waited.
const SHARED_LATENESS: f64 = 0.05;

#[derive(Default)]
struct Inner {
    /// The ids waited for now (with how many waiters each).
    wanted: HashMap<String, usize>,
    /// Waiters registered now.
    waiters: usize,
    /// The newest listing started, when it started, and its result (once done).
    latest: Option<(Instant, Pending)>,
}

/// The shortest time a resource was still seen on its way to some states, per (kind, states):
/// shared by the watches of one apply (module doc, "Learned durations").
#[derive(Clone, Default)]
pub struct Learned(Arc<Mutex<HashMap<(Kind, String), Duration>>>);

impl Learned {
    /// When a new waiter for `states` should first look (zero until something was learned).
    fn due(&self, kind: Kind, states: &str) -> Duration {
        self.0
            .lock()
            .expect("learned")
            .get(&(kind, states.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// A resource was still on its way to `states` `pending` after its wait began.
    fn record(&self, kind: Kind, states: &str, pending: Duration) {
        let mut m = self.0.lock().expect("learned");
        let e = m.entry((kind, states.to_string())).or_insert(pending);
        *e = (*e).min(pending);
    }
}

/// The waits on one (client, compartment, kind).
pub struct Watch {
    client: Client,
    learned: Learned,
    compartment: String,
    kind: Kind,
    reads: WaitReads,
    inner: Mutex<Inner>,
    /// Held while a listing runs: one at a time.
    slot: tokio::sync::Mutex<()>,
    /// How far the last listing walked (items, newest first) before it had seen every resource
    /// waited for: the next listing's first page covers that much, so that waiting for old
    /// resources (the predecessors a rollout terminates) costs one page, not a small one first.
    walked: Arc<std::sync::atomic::AtomicU32>,
    /// The last listing finished, and when it started: a waiter in its pause looks at each
    /// (module doc, "Rides").
    finished: tokio::sync::watch::Sender<Option<(Instant, Listing)>>,
}

/// A registered waiter (unregisters on drop).
struct Waiter<'a> {
    watch: &'a Watch,
    id: String,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut inner = self.watch.inner.lock().expect("watch");
        inner.waiters -= 1;
        if let Some(n) = inner.wanted.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                inner.wanted.remove(&self.id);
            }
        }
    }
}

/// A read without an etag (from a listing).
fn listed(body: Value) -> Response<Value> {
    Response {
        body,
        status: 200,
        etag: None,
        opc_request_id: None,
        opc_work_request_id: None,
        opc_next_page: None,
    }
}

fn lifecycle(body: &Value) -> &str {
    body.get("lifecycleState")
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl Watch {
    pub fn new(client: Client, compartment: impl Into<String>, kind: Kind) -> Watch {
        Watch::with_reads(client, compartment, kind, WaitReads::List)
    }

    pub fn with_reads(
        client: Client,
        compartment: impl Into<String>,
        kind: Kind,
        reads: WaitReads,
    ) -> Watch {
        Watch::learning(client, compartment, kind, reads, Learned::default())
    }

    fn learning(
        client: Client,
        compartment: impl Into<String>,
        kind: Kind,
        reads: WaitReads,
        learned: Learned,
    ) -> Watch {
        Watch {
            client,
            learned,
            compartment: compartment.into(),
            kind,
            reads,
            inner: Mutex::new(Inner::default()),
            slot: tokio::sync::Mutex::new(()),
            walked: Arc::default(),
            finished: tokio::sync::watch::channel(None).0,
        }
    }

    /// One listing, newest first, until every id in `wanted` was seen (or the last page).
    fn list(
        &self,
        wanted: HashSet<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Listing, OciError>> + Send>> {
        let client = self.client.clone();
        let compartment = self.compartment.clone();
        let kind = self.kind;
        let walked = self.walked.clone();
        Box::pin(async move {
            use std::sync::atomic::Ordering::Relaxed;
            let mut found: HashMap<String, Value> = HashMap::new();
            let mut missing = wanted.len();
            let mut page: Option<String> = None;
            let last = walked.load(Relaxed);
            let mut limit = (wanted.len() as u32)
                .saturating_mul(2)
                .max(last.saturating_add(last / 4))
                .clamp(FIRST_PAGE_MIN, PAGE_MAX);
            let mut seen = 0u32;
            loop {
                let (items, next): (Vec<(String, Value)>, Option<String>) = match kind {
                    Kind::Instance => {
                        let req = ListInstances {
                            compartment_id: compartment.clone(),
                            sort_by: Some("TIMECREATED".into()),
                            sort_order: Some("DESC".into()),
                            limit: Some(limit),
                            ..Default::default()
                        };
                        let r = client.list_instances_page(&req, page.as_deref()).await?;
                        let items = r
                            .body
                            .into_iter()
                            .map(|i| (i.id.clone(), serde_json::to_value(i).expect("serialises")))
                            .collect();
                        (items, r.opc_next_page)
                    }
                    Kind::Image => {
                        let req = ListImages {
                            compartment_id: compartment.clone(),
                            sort_by: Some("TIMECREATED".into()),
                            sort_order: Some("DESC".into()),
                            limit: Some(limit),
                            ..Default::default()
                        };
                        let r = client.list_images_page(&req, page.as_deref()).await?;
                        let items = r
                            .body
                            .into_iter()
                            .map(|i| (i.id.clone(), serde_json::to_value(i).expect("serialises")))
                            .collect();
                        (items, r.opc_next_page)
                    }
                };
                for (id, body) in items {
                    if missing > 0 {
                        seen += 1;
                    }
                    if wanted.contains(&id) && !found.contains_key(&id) {
                        missing -= 1;
                    }
                    found.insert(id, body);
                }
                match next {
                    Some(p) if missing > 0 => page = Some(p),
                    _ => break,
                }
                limit = PAGE_MAX;
            }
            walked.store(seen, Relaxed);
            Ok(Arc::new(found))
        })
    }

    /// The newest listing if it started at or after `asked`.
    fn fresh(&self, asked: Instant) -> Option<Pending> {
        match &self.inner.lock().expect("watch").latest {
            Some((started, p)) if *started >= asked => Some(p.clone()),
            _ => None,
        }
    }

    /// A listing started at or after `asked`: one in flight or done since, or the next one (one
    /// runs at a time; whoever asks while it runs shares the next).
    async fn listing(&self, asked: Instant) -> Result<Listing, OciError> {
        if let Some(p) = self.fresh(asked) {
            return p.await;
        }
        let slot = self.slot.lock().await;
        if let Some(p) = self.fresh(asked) {
            drop(slot);
            return p.await;
        }
        let (started, p) = {
            let mut inner = self.inner.lock().expect("watch");
            let wanted: HashSet<String> = inner.wanted.keys().cloned().collect();
            let p = self.list(wanted).shared();
            let started = Instant::now();
            inner.latest = Some((started, p.clone()));
            (started, p)
        };
        let r = p.await;
        if let Ok(listing) = &r {
            self.finished.send_replace(Some((started, listing.clone())));
        }
        drop(slot);
        r
    }

    /// Sleep `pause`, unless a listing that started since `start` finishes meanwhile and shows
    /// `id` in one of `states`: then that body (module doc, "Rides").
    async fn pause_or_ride(
        &self,
        finished: &mut tokio::sync::watch::Receiver<Option<(Instant, Listing)>>,
        pause: Duration,
        id: &str,
        states: &[&str],
        start: Instant,
    ) -> Option<Value> {
        let sleep = tokio::time::sleep(pause);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return None,
                changed = finished.changed() => {
                    if changed.is_err() {
                        (&mut sleep).await;
                        return None;
                    }
                    let Some((started, listing)) = finished.borrow_and_update().clone() else {
                        continue;
                    };
                    // A listing from before the wait began may show the state it leaves.
                    if started < start {
                        continue;
                    }
                    if let Some(body) = listing.get(id) {
                        if states.contains(&lifecycle(body)) {
                            return Some(body.clone());
                        }
                    }
                }
            }
        }
    }

    /// Whether waits read by listings now: several waiters of one compartment, in list mode.
    fn shares(&self) -> bool {
        self.reads == WaitReads::List
            && !self.compartment.is_empty()
            && self.inner.lock().expect("watch").waiters > 1
    }

    /// `id` from a shared listing that started at or after `since`, when others wait too;
    /// `None`: ask a Get (a lone waiter, reads by Get, or a listing without it).
    async fn listed(&self, id: &str, since: Instant) -> Result<Option<Value>, OciError> {
        if self.shares() {
            let listing = self.listing(since).await?;
            if let Some(body) = listing.get(id) {
                return Ok(Some(body.clone()));
            }
        }
        Ok(None)
    }

    async fn get(&self, id: &str) -> Result<Response<Value>, OciError> {
        match self.kind {
            Kind::Instance => self
                .client
                .get_instance(id)
                .await
                .map(|r| r.map(|b| serde_json::to_value(b).expect("serialises"))),
            Kind::Image => self
                .client
                .get_image(id)
                .await
                .map(|r| r.map(|b| serde_json::to_value(b).expect("serialises"))),
        }
    }

    /// Wait until `id` is in one of `states`; the final read — from a Get, with its etag, or from
    /// a listing, without one. `failed` states end the wait with an error.
    pub async fn wait(
        &self,
        id: &str,
        states: &[&str],
        failed: &[&str],
        opts: &WaitOptions,
    ) -> Result<Response<Value>, OciError> {
        {
            let mut inner = self.inner.lock().expect("watch");
            inner.waiters += 1;
            *inner.wanted.entry(id.to_string()).or_default() += 1;
        }
        let _waiter = Waiter {
            watch: self,
            id: id.to_string(),
        };
        let operation = match self.kind {
            Kind::Instance => "GetInstance",
            Kind::Image => "GetImage",
        };
        let what = states.join(" or ");
        let start = Instant::now();
        // The first look when the quickest such transition of this apply was still under way.
        let due = match opts.at_once {
            true => Duration::ZERO,
            false => self.learned.due(self.kind, &what).min(opts.timeout),
        };
        if !due.is_zero() {
            tokio::time::sleep(due).await;
        }
        let mut finished = self.finished.subscribe();
        let mut last = Instant::now();
        // The last look that saw the resource still on its way (time since `start`).
        let mut pending: Option<Duration> = None;
        let learn = |pending: Option<Duration>| {
            if let Some(p) = pending {
                self.learned.record(self.kind, &what, p);
            }
        };
        loop {
            // A listing that started in the second half of this waiter's pause is fresh enough:
            // it is seen at most half a pause later than its own Get would have been.
            let now = Instant::now();
            let since = last + (now - last) / 2;
            last = now;
            let seen = match self.listed(id, since).await? {
                Some(body) if states.contains(&lifecycle(&body)) => {
                    learn(pending);
                    return Ok(listed(body));
                }
                // The listing says it is still on its way: keep waiting without a Get.
                Some(body) if !failed.contains(&lifecycle(&body)) => lifecycle(&body).to_string(),
                // Failed by the listing, or not in it: a Get says for sure.
                _ => {
                    let r = self.get(id).await?;
                    let s = lifecycle(&r.body).to_string();
                    if states.contains(&s.as_str()) {
                        learn(pending);
                        return Ok(r);
                    }
                    if failed.contains(&s.as_str()) {
                        return Err(OciError {
                            kind: ErrorKind::Conflict,
                            operation,
                            resource: Some(id.to_string()),
                            status: None,
                            code: "UnexpectedState".into(),
                            message: format!("reached {s} while waiting for {what}"),
                            opc_request_id: None,
                            attempts: 1,
                            help: None,
                        });
                    }
                    s
                }
            };
            // Still on its way as of `since` at least (a shared listing started no earlier).
            pending = Some(since.saturating_duration_since(start));
            let waited = start.elapsed();
            if waited >= opts.timeout {
                return Err(OciError {
                    kind: ErrorKind::Timeout,
                    operation,
                    resource: Some(id.to_string()),
                    status: None,
                    code: "WaitTimeout".into(),
                    message: format!(
                        "still {seen} after {}s waiting for {what}",
                        opts.timeout.as_secs()
                    ),
                    opc_request_id: None,
                    attempts: 1,
                    help: Some("raise the wait timeout (see `kiln apply --help`) or look at the resource in the console".into()),
                });
            }
            let pause = self.pause(opts, waited).min(opts.timeout - waited);
            if !self.shares() {
                tokio::time::sleep(pause).await;
            } else if let Some(body) = self
                .pause_or_ride(&mut finished, pause, id, states, start)
                .await
            {
                learn(pending);
                return Ok(listed(body));
            }
        }
    }

    /// The pause before a waiter's next look: its own pacing, tightened while it shares listings
    /// ([`SHARED_LATENESS`]) — one listing serves every waiter of the compartment, so looking
    /// more often costs listings of the compartment, not reads per waiter.
    fn pause(&self, opts: &WaitOptions, waited: std::time::Duration) -> std::time::Duration {
        if self.shares() {
            WaitOptions {
                lateness: opts.lateness.min(SHARED_LATENESS),
                ..opts.clone()
            }
            .interval(waited)
        } else {
            opts.interval(waited)
        }
    }
}

/// The watches of an apply, one per (endpoint, compartment, kind), made on first use.
#[derive(Default)]
pub struct Watches {
    reads: WaitReads,
    learned: Learned,
    by_key: Mutex<HashMap<(String, String, Kind), Arc<Watch>>>,
}

impl Watches {
    pub fn new(reads: WaitReads) -> Watches {
        Watches {
            reads,
            learned: Learned::default(),
            by_key: Mutex::default(),
        }
    }

    pub fn get(&self, client: &Client, compartment: &str, kind: Kind) -> Arc<Watch> {
        let key = (client.endpoint().to_string(), compartment.to_string(), kind);
        self.by_key
            .lock()
            .expect("watches")
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Watch::learning(
                    client.clone(),
                    compartment,
                    kind,
                    self.reads,
                    self.learned.clone(),
                ))
            })
            .clone()
    }
}
