//! The server: [`start`] binds the listener and runs the accept loop (hyper, HTTP/1.1 keep-alive),
//! [`RunningEmulator`] is the handle tests and `kiln emulator` hold (its URL, stats, snapshots,
//! tokens, stop), and each request is wrapped on its way out: the `opc-request-id` composed, the
//! outcome counted in the stats, the request logged (`-v`), a dropped connection made a reset.
//! What happens to a request in between is the [`super::pipeline`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};

use super::pipeline::{process, save_world};
use super::store::Record;
use super::{api, limits, object_storage, tokens};
use super::{EmulatorConfig, EmulatorError, Fixtures, Principal, Timings, Verifier, World};

/// What every request of one emulator shares.
pub(super) struct Shared {
    pub(super) config: EmulatorConfig,
    pub(super) verifier: Verifier,
    pub(super) issuer: Arc<tokens::Issuer>,
    pub(super) instance_cas: Vec<x509_cert::Certificate>,
    pub(super) fixtures: Fixtures,
    pub(super) platform: Vec<Record>,
    pub(super) timings: Timings,
    pub(super) world: Mutex<World>,
    /// Set (under the `world` lock) by [`RunningEmulator::stop`]: no change is made after it.
    pub(super) stopped: std::sync::atomic::AtomicBool,
    pub(super) stats: Mutex<BTreeMap<String, u64>>,
    pub(super) rng: Mutex<rand::rngs::StdRng>,
    pub(super) rate_limiter: limits::RateLimiter,
}

/// One instance as [`RunningEmulator::instance_states`] shows it.
#[derive(Clone, Debug)]
pub struct InstanceState {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
}

/// A running emulator.
pub struct RunningEmulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Bumped by [`RunningEmulator::restart`]: every connection open then is dropped.
    restarts: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningEmulator {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn fixtures(&self) -> Fixtures {
        self.shared.fixtures.clone()
    }

    /// The registry of the regions served with this one: give it to another region's
    /// [`super::EmulatorConfig::peers`] for CopyObject to reach it.
    pub fn peers(&self) -> super::peers::Peers {
        self.shared.config.peers.clone()
    }

    /// Request counts per operation, and `total`.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        self.shared.stats.lock().expect("stats lock").clone()
    }

    /// A copy of everything the emulator holds, settled to now: the independent observer tests
    /// check kiln against, and a point to rewind to with [`RunningEmulator::restore`].
    pub fn snapshot(&self) -> World {
        let mut world = self.shared.world.lock().expect("world lock");
        world.settle(Utc::now());
        world.clone()
    }

    /// Every instance's id, display name, image and lifecycle state, settled to now: a light
    /// observer for tests that sample the emulator while kiln runs (a
    /// [`RunningEmulator::snapshot`] copies everything, and holds the world's lock meanwhile).
    pub fn instance_states(&self) -> Vec<InstanceState> {
        let mut world = self.shared.world.lock().expect("world lock");
        world.settle(Utc::now());
        world
            .instances
            .values()
            .map(|r| InstanceState {
                id: r.id().to_string(),
                name: r.str("displayName").to_string(),
                image: r.str("imageId").to_string(),
                state: r.state().to_string(),
            })
            .collect()
    }

    /// Replace everything the emulator holds with `world` (a [`RunningEmulator::snapshot`]).
    pub fn restore(&self, mut world: World) {
        world.rebuild_index();
        let mut held = self.shared.world.lock().expect("world lock");
        *held = world;
        save_world(&self.shared, &held);
    }

    /// A security token as OCI hands one out through flows the emulator does not serve — the
    /// browser login of `oci session authenticate` (a [`Principal::Session`]) or the runtime of a
    /// resource principal (its RPST) — bound to `public_key`, valid for `lifetime` from the token
    /// clock's now. Requests signed with the private half and `keyId="ST$<token>"` are accepted.
    pub fn issue_token(
        &self,
        principal: &Principal,
        public_key: &rsa::RsaPublicKey,
        lifetime: Duration,
    ) -> String {
        self.shared.issuer.issue(principal, public_key, lifetime)
    }

    /// [`RunningEmulator::issue_token`] with its times given: issued at `iat` (which may lie in
    /// the past, as a token that has been in use for a while), expiring at `exp`.
    pub fn issue_token_between(
        &self,
        principal: &Principal,
        public_key: &rsa::RsaPublicKey,
        iat: DateTime<Utc>,
        exp: DateTime<Utc>,
    ) -> String {
        self.shared
            .issuer
            .issue_between(principal, public_key, iat, exp)
    }

    /// Move the token clock forward (tokens expire on it; nothing else does).
    pub fn advance_token_clock(&self, by: Duration) {
        self.shared.issuer.advance(by);
    }

    /// The token clock's now.
    pub fn token_clock(&self) -> DateTime<Utc> {
        self.shared.issuer.now()
    }

    /// Stop serving, without waiting for the server's task: once this returns, no change is
    /// made and none is being saved (later requests are answered 503 until the connections
    /// close), so the data file may be handed to another emulator.
    pub fn stop(&self) {
        let _world = self.shared.world.lock().expect("world lock");
        self.shared
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.shutdown.send(true);
    }

    /// What a restart of the emulator's process does to its clients, on the same address: every
    /// open connection is dropped (a request in flight gets no answer, whether or not its change
    /// was made), and the world is what its data file holds — everything it holds goes through
    /// the data file's form and back (retry tokens and work requests included). The request
    /// counts ([`RunningEmulator::stats`]) and rate limits go on: they are the observer's and
    /// the tenancy's, not the process's. Used by the simulation's "emulator restart" fault.
    pub fn restart(&self) {
        self.restarts.send_modify(|n| *n += 1);
        let mut held = self.shared.world.lock().expect("world lock");
        let text = serde_json::to_vec(&*held).expect("the world serialises");
        let mut world: World = serde_json::from_slice(&text).expect("the world reads back");
        world.rebuild_index();
        *held = world;
    }

    /// Stop serving (connections in flight are dropped).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Start an emulator on `config.listen`.
pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
    let mut fixtures = Fixtures::new(&config.region)?;
    let tenancies: Vec<String> = config
        .trusted_keys
        .iter()
        .filter_map(|k| k.key_id.split('/').next())
        .filter(|t| api::well_formed_ocid(t, &["tenancy"]))
        .map(str::to_string)
        .collect();
    fixtures.add_compartments(&tenancies, &config.compartments);
    let mut world = match &config.data_file {
        Some(p) => World::load(p).map_err(EmulatorError::Data)?,
        None => World::default(),
    };
    object_storage::seed(&mut world, &fixtures);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| EmulatorError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| EmulatorError::Listen {
            addr: config.listen,
            source,
        })?;
    let rng = match config.seed {
        Some(s) => rand::rngs::StdRng::seed_from_u64(s),
        None => rand::rngs::StdRng::from_entropy(),
    };
    let mut instance_cas = Vec::new();
    for pem in &config.trusted_instance_cas {
        use x509_cert::der::DecodePem;
        instance_cas.push(
            x509_cert::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| EmulatorError::InstanceCa(e.to_string()))?,
        );
    }
    let issuer = Arc::new(tokens::Issuer::new(config.token_lifetime));
    let shared = Arc::new(Shared {
        verifier: Verifier::with_issuer(&config.trusted_keys, issuer.clone()),
        issuer,
        instance_cas,
        platform: fixtures.platform_records(),
        timings: Timings::scaled(config.time_scale),
        fixtures,
        world: Mutex::new(world),
        stopped: std::sync::atomic::AtomicBool::new(false),
        stats: Mutex::new(BTreeMap::new()),
        rng: Mutex::new(rng),
        rate_limiter: limits::RateLimiter::new(config.rate_limits.clone()),
        config,
    });
    shared.config.peers.register(&shared.config.region, &shared);
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let (restarts, restarted) = tokio::sync::watch::channel(0u64);
    let s = shared.clone();
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = rx.changed() => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let s = s.clone();
            let mut rx2 = rx.clone();
            let mut restarted = restarted.clone();
            restarted.mark_unchanged();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let service = hyper::service::service_fn(move |req| {
                    let s = s.clone();
                    async move { serve(s, req).await }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(io, service);
                tokio::select! {
                    _ = conn => {}
                    _ = rx2.changed() => {}
                    _ = restarted.changed() => {}
                }
            });
        }
    });
    Ok(RunningEmulator {
        addr,
        shared,
        shutdown: tx,
        restarts,
        task,
    })
}

/// A dropped connection (the `--fault-reset` fault): hyper closes the connection without answering.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for Reset {}

type Body = http_body_util::Full<Bytes>;

fn request_id() -> String {
    let mut rng = rand::thread_rng();
    (0..3)
        .map(|_| {
            (0..16)
                .map(|_| format!("{:02X}", rng.gen::<u8>()))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn serve(
    shared: Arc<Shared>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Body>, Reset> {
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_string();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let opc_request_id = response_request_id(
        parts
            .headers
            .get("opc-request-id")
            .and_then(|v| v.to_str().ok()),
    );
    let mut op = None;
    let reply = process(&shared, &method, &target, &parts.headers, body, &mut op).await;
    count_outcome(
        &shared,
        &method,
        &target,
        op,
        reply.as_ref().map(|r| r.status),
    );
    if shared.config.log_requests {
        let path = target.split('?').next().unwrap_or("/");
        let status = reply
            .as_ref()
            .map(|r| r.status.to_string())
            .unwrap_or_else(|| "dropped".into());
        tracing::info!(target: "kiln::emulator", "{method} {path} {status} {}ms {} opc-request-id={opc_request_id}", started.elapsed().as_millis(), op.unwrap_or("-"));
    }
    let Some(reply) = reply else {
        return Err(Reset);
    };
    let mut builder = hyper::Response::builder()
        .status(reply.status)
        .header("opc-request-id", &opc_request_id);
    if !reply.body.is_empty() && !reply.headers.iter().any(|(k, _)| k == "content-type") {
        builder = builder.header("content-type", "application/json");
    }
    for (k, v) in &reply.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    Ok(builder
        .body(Body::new(Bytes::from(reply.body)))
        .expect("valid response"))
}

/// The response's `opc-request-id`: the client's own id when it sent one (printable, at most 128
/// characters), followed by two server parts — as OCI composes it — or three server parts.
fn response_request_id(client: Option<&str>) -> String {
    let server = request_id();
    match client
        .filter(|c| !c.is_empty() && c.len() <= 128 && c.bytes().all(|b| b.is_ascii_graphic()))
    {
        Some(c) => {
            let tail = server.split_once('/').map(|(_, t)| t).unwrap_or("");
            format!("{c}/{tail}")
        }
        None => server,
    }
}

/// Stats after a request: `errors.<Operation>` for answers of 400 and above, and
/// `unknown_route` (with `unknown_route.<METHOD> <path>`, OCIDs elided) for paths the emulator
/// does not serve.
fn count_outcome(
    shared: &Shared,
    method: &str,
    target: &str,
    op: Option<&'static str>,
    status: Option<u16>,
) {
    let path = target.split('?').next().unwrap_or("/");
    if path.starts_with("/_emulator/") {
        return;
    }
    let mut stats = shared.stats.lock().expect("stats lock");
    match op {
        Some(op) => {
            if status.is_some_and(|s| s >= 400) {
                *stats.entry(format!("errors.{op}")).or_default() += 1;
            }
        }
        None => {
            let shape: Vec<&str> = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with("ocid1.") {
                        "{id}"
                    } else {
                        seg
                    }
                })
                .collect();
            *stats.entry("unknown_route".into()).or_default() += 1;
            *stats
                .entry(format!("unknown_route.{method} {}", shape.join("/")))
                .or_default() += 1;
        }
    }
}
