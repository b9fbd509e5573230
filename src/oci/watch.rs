//! List-based waiting: when several resources of one compartment are waited for at once, one
//! paginated ListInstances / ListImages per poll round serves all of them, instead of one
//! GetInstance / GetImage per waiter per round — the read storm that makes large applies hit 429s.
//!
//! Each waiter keeps its own pacing ([`WaitOptions::interval`]: at most ~10 % late). When it is
//! time to look, it asks the compartment's [`Watch`] for a listing that started after it asked:
//! a listing in flight that started later serves it; otherwise it starts one, which every waiter
//! asking meanwhile shares. A lone waiter reads with a Get, as before. Listings carry no etags,
//! so once a waiter's resource reached its target, one Get returns it with its etag (the version
//! the next If-Match names): about two calls per launch in all, plus the shared listings.
//!
//! A resource missing from a listing (not visible yet, moved out of the compartment, purged) is
//! read with a Get, which knows.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::{FutureExt, Shared};
use serde_json::Value;

use super::client::{Client, Response};
use super::compute::{ListImages, ListInstances};
use super::error::{ErrorKind, OciError};
use super::models::{Image, Instance};
use super::wait::WaitOptions;

/// What is waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Instance,
    Image,
}

/// id → lifecycle state, from one listing.
type Listing = Arc<HashMap<String, String>>;
type Pending = Shared<Pin<Box<dyn Future<Output = Result<Listing, OciError>> + Send>>>;

#[derive(Default)]
struct Inner {
    /// Waiters registered now.
    waiters: usize,
    /// The newest listing started, when it started, and its result (once done).
    latest: Option<(Instant, Pending)>,
}

/// The waits on one (client, compartment, kind).
pub struct Watch {
    client: Client,
    compartment: String,
    kind: Kind,
    inner: Mutex<Inner>,
}

/// A registered waiter (unregisters on drop).
struct Waiter<'a>(&'a Watch);

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.inner.lock().expect("watch").waiters -= 1;
    }
}

impl Watch {
    pub fn new(client: Client, compartment: impl Into<String>, kind: Kind) -> Watch {
        Watch {
            client,
            compartment: compartment.into(),
            kind,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn list(&self) -> Pin<Box<dyn Future<Output = Result<Listing, OciError>> + Send>> {
        let client = self.client.clone();
        let compartment = self.compartment.clone();
        let kind = self.kind;
        Box::pin(async move {
            let states: HashMap<String, String> = match kind {
                Kind::Instance => client
                    .list_instances(&ListInstances {
                        compartment_id: compartment,
                        limit: Some(1000),
                        ..Default::default()
                    })
                    .await?
                    .into_iter()
                    .map(|i| (i.id, i.lifecycle_state))
                    .collect(),
                Kind::Image => client
                    .list_images(&ListImages {
                        compartment_id: compartment,
                        limit: Some(1000),
                        ..Default::default()
                    })
                    .await?
                    .into_iter()
                    .map(|i| (i.id, i.lifecycle_state))
                    .collect(),
            };
            Ok(Arc::new(states))
        })
    }

    /// A listing started at or after `asked`: one in flight or done since, or a new one.
    async fn listing(&self, asked: Instant) -> Result<Listing, OciError> {
        let pending = {
            let mut inner = self.inner.lock().expect("watch");
            match &inner.latest {
                Some((started, p)) if *started >= asked => p.clone(),
                _ => {
                    let p = self.list().shared();
                    inner.latest = Some((Instant::now(), p.clone()));
                    p
                }
            }
        };
        pending.await
    }

    /// The state of `id` from a shared listing that started at or after `since`, when others wait
    /// too; `None`: ask a Get (a lone waiter, or a listing without it).
    async fn state(&self, id: &str, since: Instant) -> Result<Option<String>, OciError> {
        let shared = !self.compartment.is_empty() && self.inner.lock().expect("watch").waiters > 1;
        if shared {
            let listing = self.listing(since).await?;
            if let Some(s) = listing.get(id) {
                return Ok(Some(s.clone()));
            }
        }
        Ok(None)
    }

    async fn get(&self, id: &str) -> Result<(String, Response<Value>), OciError> {
        match self.kind {
            Kind::Instance => self.client.get_instance(id).await.map(|r| {
                let s = r.body.lifecycle_state.clone();
                (
                    s,
                    r.map(|b: Instance| serde_json::to_value(b).expect("serialises")),
                )
            }),
            Kind::Image => self.client.get_image(id).await.map(|r| {
                let s = r.body.lifecycle_state.clone();
                (
                    s,
                    r.map(|b: Image| serde_json::to_value(b).expect("serialises")),
                )
            }),
        }
    }

    /// Wait until `id` is in one of `states`; the final read (with its etag). `failed` states end
    /// the wait with an error.
    pub async fn wait(
        &self,
        id: &str,
        states: &[&str],
        failed: &[&str],
        opts: &WaitOptions,
    ) -> Result<Response<Value>, OciError> {
        self.inner.lock().expect("watch").waiters += 1;
        let _waiter = Waiter(self);
        let operation = match self.kind {
            Kind::Instance => "GetInstance",
            Kind::Image => "GetImage",
        };
        let what = states.join(" or ");
        let start = Instant::now();
        let mut last = start;
        loop {
            // A listing that started in the second half of this waiter's pause is fresh enough:
            // it is seen at most half a pause later than its own Get would have been.
            let now = Instant::now();
            let since = last + (now - last) / 2;
            last = now;
            let seen = match self.state(id, since).await? {
                // The listing says it is not there yet: keep waiting without a Get.
                Some(s) if !states.contains(&s.as_str()) && !failed.contains(&s.as_str()) => {
                    Some(s)
                }
                // Done or failed by the listing, or not in it: a Get says for sure (and has the etag).
                _ => {
                    let (s, r) = self.get(id).await?;
                    if states.contains(&s.as_str()) {
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
                    Some(s)
                }
            };
            let waited = start.elapsed();
            if waited >= opts.timeout {
                return Err(OciError {
                    kind: ErrorKind::Timeout,
                    operation,
                    resource: Some(id.to_string()),
                    status: None,
                    code: "WaitTimeout".into(),
                    message: format!(
                        "still {} after {}s waiting for {what}",
                        seen.unwrap_or_default(),
                        opts.timeout.as_secs()
                    ),
                    opc_request_id: None,
                    attempts: 1,
                    help: Some("raise the wait timeout (see `kiln apply --help`) or look at the resource in the console".into()),
                });
            }
            tokio::time::sleep(opts.interval(waited).min(opts.timeout - waited)).await;
        }
    }
}

/// The watches of an apply, one per (endpoint, compartment, kind), made on first use.
#[derive(Default)]
pub struct Watches {
    by_key: Mutex<HashMap<(String, String, Kind), Arc<Watch>>>,
}

impl Watches {
    pub fn get(&self, client: &Client, compartment: &str, kind: Kind) -> Arc<Watch> {
        let key = (client.endpoint().to_string(), compartment.to_string(), kind);
        self.by_key
            .lock()
            .expect("watches")
            .entry(key)
            .or_insert_with(|| Arc::new(Watch::new(client.clone(), compartment, kind)))
            .clone()
    }
}
