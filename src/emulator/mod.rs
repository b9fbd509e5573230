//! An OCI Compute API emulator (`kiln emulator`, and embedded for `endpoint = "emulator"`).
//!
//! It speaks the real wire protocol (API version 20160918: paths, camelCase JSON, headers, error
//! bodies) strictly enough that Oracle's own `oci` CLI works against it with `--endpoint`, and it is
//! the stand-in for OCI in every kiln test and benchmark. It is independent of the client in
//! [`crate::oci`]: its own signature verifier ([`auth`]) and its own JSON shapes ([`api`]), so a
//! mistake on one side cannot be mirrored on the other (it shares only the OCI config-file parser,
//! to load trusted keys).
//!
//! It is served with hyper directly rather than axum: one handler routes every path (the raw
//! request target is needed for signature checks anyway), and the `--fault-reset` fault needs to
//! drop the connection itself, which a router cannot.
//!
//! ## What it models
//! - **Compute** ([`instances`], [`images`], [`shapes`]): LaunchInstance, Get/List/Update/
//!   TerminateInstance, InstanceAction, ChangeInstanceCompartment; Create/Get/List/Update/
//!   DeleteImage, ChangeImageCompartment; ListShapes. Every field of Oracle's SDK `Instance` and
//!   `Image` models is in every response (null or empty where OCI would say so).
//! - **Block Volume** ([`volumes`]): a launch from an image makes a boot volume and attaches it;
//!   Get/List/DeleteBootVolume, Get/ListBootVolumeAttachments.
//! - **Networking** ([`network`]): one VCN with a public and a private /18 subnet and one network
//!   security group per region; the primary VNIC of every launch, its attachment and its primary
//!   private IP; ListPrivateIps (by VNIC or subnet), ListIpv6s (none: the subnets have no IPv6
//!   prefix); the ephemeral public IP of each VNIC that has one: ListPublicIps (AD scope; REGION
//!   scope lists reserved IPs and those of NAT gateways, none here), GetPublicIp,
//!   GetPublicIpByPrivateIpId.
//! - **Identity** ([`identity`], Identity API paths under the same `/20160918`):
//!   ListAvailabilityDomains, ListFaultDomains, Get/ListCompartments, tag namespaces and tags.
//! - **Work requests** ([`work_requests`]): Get, List, errors and logs, for every mutation.
//! - **Object Storage** ([`object_storage`]), for remote state and image files to import.
//! - **The embedded emulator** ([`embedded`]): `endpoint = "emulator"`, one emulated cloud per
//!   state directory however many kiln runs use it at once (one serves, the others attach).
//! - Fixtures ([`fixtures`]) are per region (`Fixtures::new(region)`); compartments and tag
//!   namespaces are the same in every region, as OCI's identity is global.
//!
//! ## Behaviour, and the choices made where OCI's documentation is silent
//! - Principals ([`tokens`], [`federation`]): a `keyId` of `ST$<token>` is accepted for a token the
//!   emulator issued (RS256 with its own key) that has not expired on its token clock, when the
//!   request is signed with the token's `jwk` key; the auth service's `POST /v1/x509` (instance
//!   certificates chained to a trusted CA, the chain path-validated by [`cert_chain`]) and
//!   `POST /v1/authentication/refresh` are served on the emulator's own URL, and tests mint
//!   session tokens and RPSTs with [`RunningEmulator::issue_token`].
//! - Every request except `/_emulator/*` must carry a valid signature (see [`auth`]); failures are
//!   401 `NotAuthenticated` with the reason in the message (no secret is ever echoed). The
//!   signature over the headers is checked before any of the body is read; the body is then read
//!   up to a cap per service (1 MiB for Compute, 64 MiB for Object Storage: 413
//!   `RequestEntityTooLarge` beyond it, see [`body`]) and checked against the signed hash.
//! - Every response has an `opc-request-id`: the client's own id followed by two server parts when
//!   the client sent one (as OCI composes it), else three `/`-separated 32-hex parts.
//! - **No silent drops** ([`details`]): a request body is checked field by field against the
//!   SDK's details type. A modelled field is type-checked, kept and returned (LaunchInstance's
//!   `agentConfig`, `instanceOptions`, `availabilityConfig`, `launchOptions`, `platformConfig`,
//!   `preemptibleInstanceConfig`, `securityAttributes`, `ipxeScript`, `extendedMetadata`; the VNIC
//!   details `privateIp`, `hostnameLabel`, `displayName`, `skipSourceDestCheck`, `nsgIds`, tags —
//!   GetVnic returns them). A field of the type that is not modelled (dedicated hosts, capacity
//!   reservations, VLANs, KMS keys, launch volume attachments, dense-I/O shape options, …) or no
//!   field of it at all is 400 `InvalidParameter` naming it.
//! - Etags change on every mutation of a resource, lifecycle transitions included (a resource's
//!   version counter is hashed); If-Match mismatches on Update/Terminate/Action/ChangeCompartment/
//!   UpdateImage/DeleteImage/DeleteBootVolume are 412 `NoEtagMatch`. `If-Match: *` matches
//!   anything.
//! - `opc-retry-token` on POST/PUT: the same token with the same operation, target and body within
//!   24 h replays the first response (status, body, etag; a new opc-request-id); the same token with
//!   a different operation or body is 409 `InvalidatedRetryToken` (no documented code exists).
//!   Only successful (2xx) responses are remembered, as OCI does not hold failures against a token.
//! - Status codes: TerminateInstance, DeleteImage and DeleteBootVolume answer 204;
//!   ChangeInstanceCompartment and ChangeImageCompartment 202 with no body.
//! - Lifecycles run on the wall clock × `--time-scale` and are evaluated lazily on every request
//!   (so they survive `--data` restarts), for the records that have a step due ([`store::Index`]:
//!   a request costs what it touches, not the size of the world). At time-scale 1.0: launch → RUNNING 60 s (its boot
//!   volume AVAILABLE after 30 s), stop 30 s, start 30 s, terminate 45 s, image capture 8 min (a
//!   RUNNING source is CREATING_IMAGE and comes back RUNNING, a STOPPED one comes back STOPPED),
//!   image import 10 min, a compartment move 5 s, one capture per instance at a time plus a 20 min
//!   cooldown after each capture (409 `IncorrectState`). STOP on a STOPPED instance and START on a
//!   RUNNING one are accepted as no-ops (200).
//! - A move puts the record in the target compartment at once; an instance is MOVING until the
//!   move's work request succeeds, then back in the state it had (an image has no MOVING state and
//!   stays AVAILABLE). Only RUNNING/STOPPED instances and AVAILABLE images move (409 otherwise).
//!   The instance's VNIC and boot volume attachments move with it; the VNIC and the volume stay.
//! - UpdateInstance: a new shape, or new OCPUs or memory, on a RUNNING instance reboots it
//!   (STOPPING → STARTING → RUNNING over stop + start time; the work request finishes then);
//!   `updateOperationConstraint: AVOID_DOWNTIME` then is 400. `shapeConfig` takes only
//!   UpdateInstanceShapeConfigDetails fields: a server-set field of InstanceShapeConfig
//!   (`processorDescription`, `gpus`, …) is 400. Left-out shape config values keep their current
//!   values. `ssh_authorized_keys` and `user_data` in metadata cannot change (400).
//! - Launch validation: unknown AD or shape → 400 `InvalidParameter`; flexible shapes take OCPUs
//!   and memory within the shape's ranges (ListShapes shows them) and the shape's defaults for
//!   what is left out (1 OCPU, the default GB per OCPU); a fixed shape refuses a `shapeConfig`; an
//!   image of the other architecture (x86 on `VM.Standard.A1.Flex`, Arm elsewhere) → 400; an
//!   unknown subnet, image, boot volume or NSG → 400 `RelatedResourceNotAuthorizedOrNotFound`; an
//!   image that is not AVAILABLE → 409 `IncorrectState`; a public IP in the private subnet → 400;
//!   a private IP or hostname label already used in the subnet → 409 `Conflict`.
//! - Boot volumes: a boot volume that is attached (or not AVAILABLE) cannot boot a new instance
//!   (409), nor one in another availability domain (400). Terminating detaches the volume and,
//!   unless `preserveBootVolume=true`, deletes it (TERMINATING → TERMINATED). The instance's
//!   `sourceDetails` names the boot volume size (47 GB by default).
//! - Compartments are fixtures: the tenancy root of every trusted key, `kiln-emulator`, `dev`,
//!   `prod`, and any given with `--compartment`. A well-formed OCID of any other is 404
//!   `NotAuthorizedOrNotFound` wherever a compartment is named; a malformed one is 400.
//! - Defined tags: namespaces `Oracle-Tags` (CreatedBy, CreatedOn) and `Operations` (CostCenter,
//!   Environment, Owner, Project); a namespace or key that does not exist is 400 (names match
//!   case-insensitively). OCI adds `Oracle-Tags` on create.
//! - Terminated instances stay listable as TERMINATED (their attachments read DETACHED, their
//!   private IPs are released); deleted images are DELETED on Get and leave ListImages. ListImages
//!   lists platform images first (for any compartment), then the compartment's custom images;
//!   `shape` keeps the images that shape can boot. `limit` is 1..1000 (default 100).
//! - Page tokens are keysets, not offsets ([`list`]): a list walked while resources are created or
//!   deleted never repeats an item and never skips one that existed throughout.
//! - CreateImage from Object Storage imports only an object that exists in the emulator's own
//!   namespace (the seeded `images` bucket): any other is accepted (200, IMPORTING) and then fails —
//!   the work request ends FAILED with an error, and the image is DELETED.
//! - Work request statuses are the SDK model's: ACCEPTED (at the instant it is made), IN_PROGRESS,
//!   SUCCEEDED, FAILED; never CANCELING or CANCELED (there is no CancelWorkRequest).
//! - The seeded network is visible from every compartment.
//! - Limits ([`limits`]): `--rate-limit OPERATION=RATE[:BURST]` answers 429 `TooManyRequests`
//!   beyond a token bucket per tenancy and operation; `--capacity SHAPE@AD[/FD]=N` makes a launch
//!   beyond the room of a shape in a place fail as OCI does (500 `InternalError`, "Out of host
//!   capacity."), creating nothing.
//! - Faults: per request, after authentication and before any change, a seeded RNG draws a dropped
//!   connection (`--fault-reset`), a 429 `TooManyRequests` (`--fault-429`) or a 500
//!   `InternalServerError` / 503 `ServiceUnavailable` (`--fault-5xx`). Faulted requests change
//!   nothing and are counted in the stats like any other. `--fault-reset-after` drops the
//!   connection *after* a mutating request (POST/PUT/DELETE) took effect, so the client cannot
//!   tell whether it did: the case retry tokens and read-back checks exist for.
//! - Object Storage (for remote state) is served by the same server under `/n/…`: see
//!   [`object_storage`] for its subset and choices. PutObject is verified as Oracle's SDK signs it:
//!   without the body headers.
//! - `GET /_emulator/stats`: request counts per OCI operation name and `total`; `errors.<Op>` for
//!   answers of 400 and above; `unknown_route` and `unknown_route.<METHOD> <path>` (OCIDs elided)
//!   for requests to paths the emulator does not serve, so a client's unserved calls show; injected
//!   faults as `fault.reset`, `fault.429`, `fault.5xx`, `fault.reset_after`; answers of the rate
//!   limits ([`limits`]) as `throttled` and `throttled.<Op>`. `GET
//!   /_emulator/fixtures`: the seeded ids. Neither needs a signature.
//! - `kiln emulator -v` logs every request at info level (method, path, status, duration,
//!   operation, opc-request-id) — never a header's value, so never the Authorization header.
//!
//! ## Where it knowingly differs from OCI
//! - One region per server (`kiln emulator --region a --region b` runs one server per region,
//!   each a world of its own on its own port, as OCI's regions share nothing but identity); a
//!   taken hostname label is refused at once with 409 `Conflict`, where OCI accepts the launch
//!   and fails its work request (`vcn-error`: "Hostname … is already used in subnet"). One VCN, two subnets, no IPv6, no secondary VNICs, no block volumes
//!   besides boot volumes, no dedicated hosts, capacity reservations, cluster placement groups,
//!   instance configurations or pools (their fields are refused, see above).
//! - Security attributes (ZPR) are kept and returned as given; their namespaces are not checked.
//! - Auto-assigned public IPs come from 203.0.113.0/21 (documentation space). An ephemeral public
//!   IP is derived from its VNIC when read (its OCID is the VNIC's with `publicip`), not a record
//!   of its own: no reserved public IPs, no public IP pools, no Create/Update/DeletePublicIp.
//! - Error messages are the emulator's own; codes and statuses follow OCI's documented ones.
//! - Images captured from an instance are of its architecture; imported ones are x86.
//! - Lifecycle durations are fixed (× the time scale), never random.

pub mod api;
pub mod auth;
pub mod body;
pub mod boot_replace;
pub mod cert_chain;
pub mod details;
pub mod embedded;
pub mod federation;
pub mod fixtures;
pub mod identity;
pub mod images;
pub mod instances;
pub mod limits;
pub mod list;
pub mod network;
pub mod object_storage;
pub mod shapes;
pub mod store;
pub mod tokens;
pub mod volumes;
pub mod work_requests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use serde_json::json;
use sha2::{Digest, Sha256};

pub use auth::{TrustedKey, Verifier};
pub use body::BodyLimits;
pub use fixtures::{Compartment, Fixtures, PlatformImage, TagNamespace};
pub use tokens::Principal;

use store::Record;
pub use store::World;

/// How to run an emulator.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    pub trusted_keys: Vec<TrustedKey>,
    /// Persist everything here (atomically, after every change); in memory when `None`.
    pub data_file: Option<PathBuf>,
    /// Lifecycle durations × this (1.0 realistic, 0 instant).
    pub time_scale: f64,
    /// Added to every response.
    pub latency: Duration,
    pub fault_429: f64,
    pub fault_5xx: f64,
    pub fault_reset: f64,
    /// Probability of dropping the connection after a mutating request took effect.
    pub fault_reset_after: f64,
    /// Seed for the fault RNG (repeatable faults).
    pub seed: Option<u64>,
    /// Region id (`us-ashburn-1`).
    pub region: String,
    /// The largest request body per service ([`body`]).
    pub body_limits: BodyLimits,
    /// Compartments known besides the tenancy roots of the trusted keys and the named fixtures
    /// (`--compartment`); any other compartment is 404.
    pub compartments: Vec<String>,
    /// Log every request (method, path, status, duration, opc-request-id; never a header's
    /// secret) at info level under `kiln::emulator` (`kiln emulator -v`).
    pub log_requests: bool,
    /// PEM certificates of the CAs whose instance certificates the federation endpoint
    /// (`/v1/x509`) accepts ([`federation`]).
    pub trusted_instance_cas: Vec<String>,
    /// Lifetime of the security tokens the emulator issues (federation, session refresh).
    pub token_lifetime: Duration,
    /// Request rates per tenancy and operation (`--rate-limit`; [`limits`]).
    pub rate_limits: Vec<limits::RateLimit>,
    /// Host capacity per shape and place (`--capacity`; [`limits`]).
    pub capacity: Vec<limits::CapacityRule>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            trusted_keys: Vec::new(),
            data_file: None,
            time_scale: 1.0,
            latency: Duration::ZERO,
            fault_429: 0.0,
            fault_5xx: 0.0,
            fault_reset: 0.0,
            fault_reset_after: 0.0,
            seed: None,
            region: "us-ashburn-1".into(),
            body_limits: BodyLimits::default(),
            compartments: Vec::new(),
            log_requests: false,
            trusted_instance_cas: Vec::new(),
            token_lifetime: tokens::DEFAULT_TOKEN_LIFETIME,
            rate_limits: Vec::new(),
            capacity: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EmulatorError {
    #[error("cannot listen on {addr}: {source}")]
    #[diagnostic(
        code(kiln::emulator::listen),
        help("pick another port, or `127.0.0.1:0` for a free one")
    )]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the emulator data: {0}")]
    #[diagnostic(
        code(kiln::emulator::data),
        help("move the file away to start from an empty cloud")
    )]
    Data(String),
    #[error("unknown region `{0}` (the emulator knows us-ashburn-1, us-phoenix-1, eu-frankfurt-1, uk-london-1, ap-tokyo-1)")]
    #[diagnostic(code(kiln::emulator::region))]
    Region(String),
    #[error("a trusted instance CA is not a PEM certificate: {0}")]
    #[diagnostic(code(kiln::emulator::instance_ca))]
    InstanceCa(String),
}

/// Lifecycle durations (already scaled).
#[derive(Clone, Debug)]
pub struct Timings {
    pub launch: Duration,
    pub stop: Duration,
    pub start: Duration,
    pub terminate: Duration,
    pub capture: Duration,
    pub import: Duration,
    pub cooldown: Duration,
    pub move_: Duration,
}

impl Timings {
    pub fn scaled(scale: f64) -> Timings {
        let s = |secs: f64| Duration::from_secs_f64((secs * scale.max(0.0)).max(0.0));
        Timings {
            launch: s(60.0),
            stop: s(30.0),
            start: s(30.0),
            terminate: s(45.0),
            capture: s(480.0),
            import: s(600.0),
            cooldown: s(1200.0),
            move_: s(5.0),
        }
    }
}

struct Shared {
    config: EmulatorConfig,
    verifier: Verifier,
    issuer: Arc<tokens::Issuer>,
    instance_cas: Vec<x509_cert::Certificate>,
    fixtures: Fixtures,
    platform: Vec<Record>,
    timings: Timings,
    world: Mutex<World>,
    /// Set (under the `world` lock) by [`RunningEmulator::stop`]: no change is made after it.
    stopped: std::sync::atomic::AtomicBool,
    stats: Mutex<BTreeMap<String, u64>>,
    rng: Mutex<rand::rngs::StdRng>,
    rate_limiter: limits::RateLimiter,
}

/// A running emulator.
pub struct RunningEmulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: tokio::sync::watch::Sender<bool>,
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
    let (tx, mut rx) = tokio::sync::watch::channel(false);
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
                }
            });
        }
    });
    Ok(RunningEmulator {
        addr,
        shared,
        shutdown: tx,
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

fn query_pairs(target: &str) -> Vec<(String, String)> {
    match target.split_once('?') {
        Some((_, q)) => url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect(),
        None => Vec::new(),
    }
}

/// The whole pipeline for one request; `None` = drop the connection. The body is read only once
/// the headers are authentic, and only up to the service's cap ([`body`]).
async fn process(
    shared: &Shared,
    method: &str,
    target: &str,
    headers: &hyper::HeaderMap,
    incoming: hyper::body::Incoming,
    seen_op: &mut Option<&'static str>,
) -> Option<api::Reply> {
    let path = target.split('?').next().unwrap_or("/");
    if let Some(rest) = path.strip_prefix("/_emulator/") {
        return Some(match (method, rest) {
            ("GET", "stats") => {
                let stats = shared.stats.lock().expect("stats lock").clone();
                api::Reply::json(200, &json!(stats))
            }
            ("GET", "fixtures") => api::Reply::json(
                200,
                &serde_json::to_value(&shared.fixtures).expect("fixtures serialise"),
            ),
            _ => api::error(404, "NotFound", format!("no emulator route `{rest}`")),
        });
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // The auth service: federation and session refresh, with their own authentication.
    if path.starts_with("/v1/") {
        let Some(op) = federation::operation(method, path) else {
            return Some(api::error(
                404,
                "NotFound",
                format!("no such route `{method} {path}`"),
            ));
        };
        *seen_op = Some(op);
        {
            let mut stats = shared.stats.lock().expect("stats lock");
            *stats.entry(op.to_string()).or_default() += 1;
            *stats.entry("total".into()).or_default() += 1;
        }
        let head = auth::RequestHead {
            method,
            target,
            header: &header,
            body_signed: true,
        };
        return federation::handle(shared, op, &head, incoming).await;
    }
    let query = query_pairs(target);
    // Compute lives under the API version; Object Storage under `/n` (no version).
    let (rel, objects) = if let Some(rel) = path
        .strip_prefix("/20160918/")
        .or_else(|| path.strip_prefix("/20160918"))
    {
        (rel, false)
    } else if path == "/n" || path.starts_with("/n/") {
        (&path[2..], true)
    } else {
        return Some(api::error(
            404,
            "NotFound",
            format!("no such route `{path}` (the Compute API lives under /20160918, Object Storage under /n)"),
        ));
    };
    let decoded: Vec<String> = rel
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let op = if objects {
        object_storage::operation(method, &segs)
    } else {
        api::operation(method, &segs, &query)
    };
    let Some(op) = op else {
        return Some(api::error(
            404,
            "NotFound",
            format!("no such route `{method} {path}`"),
        ));
    };
    *seen_op = Some(op);
    {
        let mut stats = shared.stats.lock().expect("stats lock");
        *stats.entry(op.to_string()).or_default() += 1;
        *stats.entry("total".into()).or_default() += 1;
    }
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    let not_authenticated = |reason: String| {
        tracing::debug!(target: "kiln::emulator", %method, %path, %reason, "401");
        api::error(401, "NotAuthenticated", format!("The required information to complete authentication was not provided or was incorrect: {reason}"))
    };
    let head = auth::RequestHead {
        method,
        target,
        header: &header,
        // Oracle's SDK signs PutObject without the body headers.
        body_signed: op != "PutObject",
    };
    let verified = match shared.verifier.verify_head_at(&head, Utc::now()) {
        Ok(v) => v,
        Err(reason) => return Some(not_authenticated(reason)),
    };
    let (limit, service) = if objects {
        (shared.config.body_limits.object_storage, "Object Storage")
    } else {
        (shared.config.body_limits.compute, "Compute")
    };
    let declared = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let body = match body::read_capped(incoming, declared, limit).await {
        Ok(b) => b,
        Err(body::BodyError::TooLarge { limit }) => {
            return Some(api::error(
                413,
                "RequestEntityTooLarge",
                format!("The request body is larger than the {limit} bytes the emulator accepts for a {service} request"),
            ))
        }
        Err(body::BodyError::Broken) => return None,
    };
    let body = &body[..];
    let key_id = match verified.check_body(body) {
        Ok(k) => k,
        Err(reason) => return Some(not_authenticated(reason)),
    };
    let now = Utc::now();
    // Rate limits, then faults: decided before anything changes.
    if let Some(reply) = shared.rate_limiter.check(&key_id, op) {
        let mut stats = shared.stats.lock().expect("stats lock");
        *stats.entry("throttled".into()).or_default() += 1;
        *stats.entry(format!("throttled.{op}")).or_default() += 1;
        return Some(reply);
    }
    let cfg = &shared.config;
    if cfg.fault_reset + cfg.fault_429 + cfg.fault_5xx > 0.0 {
        let (draw, which): (f64, bool) = {
            let mut rng = shared.rng.lock().expect("rng lock");
            (rng.gen(), rng.gen())
        };
        if draw < cfg.fault_reset {
            count_fault(shared, "reset");
            return None;
        }
        if draw < cfg.fault_reset + cfg.fault_429 {
            count_fault(shared, "429");
            return Some(
                api::error(429, "TooManyRequests", "Too many requests for the user")
                    .header("retry-after", "0"),
            );
        }
        if draw < cfg.fault_reset + cfg.fault_429 + cfg.fault_5xx {
            count_fault(shared, "5xx");
            return Some(if which {
                api::error(500, "InternalServerError", "Internal error (injected)")
            } else {
                api::error(503, "ServiceUnavailable", "Service unavailable (injected)")
            });
        }
    }
    let mut world = shared.world.lock().expect("world lock");
    if shared.stopped.load(std::sync::atomic::Ordering::SeqCst) {
        return Some(api::error(
            503,
            "ServiceUnavailable",
            "The emulator is shutting down",
        ));
    }
    if objects {
        let req = object_storage::Request {
            segs: &segs,
            query: &query,
            header: &header,
            body,
            now,
        };
        let (reply, mutated) = object_storage::handle(&mut world, &shared.fixtures, op, &req);
        if mutated {
            save_world(shared, &world);
        }
        return reset_after(shared, method, reply);
    }
    let retry_token = header("opc-retry-token").filter(|_| matches!(method, "POST" | "PUT"));
    let body_sha = hex::encode(Sha256::digest(body));
    world.settle(now);
    if let Some(token) = &retry_token {
        if token.is_empty() || token.len() > 64 {
            return Some(api::error(
                400,
                "InvalidParameter",
                "`opc-retry-token` must be 1 to 64 characters",
            ));
        }
        // A token older than its lifetime is forgotten (purged hourly by `settle`).
        if world
            .retry_tokens
            .get(token)
            .is_some_and(|prev| now - prev.at >= store::retry_token_lifetime())
        {
            world.retry_tokens.remove(token);
        }
        if let Some(prev) = world.retry_tokens.get(token) {
            if prev.operation == op && prev.target == target && prev.body_sha256 == body_sha {
                return Some(api::Reply {
                    status: prev.status,
                    headers: prev.headers.clone(),
                    body: prev.body.clone().into_bytes(),
                });
            }
            return Some(api::error(
                409,
                "InvalidatedRetryToken",
                format!(
                    "opc-retry-token `{token}` was already used for a different request ({} {})",
                    prev.operation, prev.target
                ),
            ));
        }
    }
    let mut ctx = api::Ctx {
        world: &mut world,
        fixtures: &shared.fixtures,
        platform: &shared.platform,
        timings: &shared.timings,
        now,
        region_code: &shared.fixtures.region_code,
        key_id: &key_id,
        if_match: header("if-match"),
        retry_token: retry_token.clone(),
        capacity: &shared.config.capacity,
        mutated: false,
    };
    let reply = api::handle(&mut ctx, op, &segs, &query, body);
    let mutated = ctx.mutated;
    if let Some(token) = &retry_token {
        if (200..300).contains(&reply.status) {
            api::remember(&mut world, token, op, target, &body_sha, now, &reply);
        }
    }
    if mutated || retry_token.is_some() {
        save_world(shared, &world);
    }
    reset_after(shared, method, reply)
}

/// The `--fault-reset-after` fault: the change is made, the answer is lost.
fn reset_after(shared: &Shared, method: &str, reply: api::Reply) -> Option<api::Reply> {
    let p = shared.config.fault_reset_after;
    if p > 0.0 && matches!(method, "POST" | "PUT" | "DELETE") {
        let draw: f64 = shared.rng.lock().expect("rng lock").gen();
        if draw < p {
            count_fault(shared, "reset_after");
            return None;
        }
    }
    Some(reply)
}

/// Injected faults are counted in the stats as `fault.KIND`.
fn count_fault(shared: &Shared, kind: &str) {
    *shared
        .stats
        .lock()
        .expect("stats lock")
        .entry(format!("fault.{kind}"))
        .or_default() += 1;
}

/// Persist the world when `--data` is set (atomically; a failure is logged, the reply stands).
fn save_world(shared: &Shared, world: &World) {
    if let Some(path) = &shared.config.data_file {
        if let Err(e) = world.save(path) {
            tracing::error!(target: "kiln::emulator", "cannot save emulator data to {}: {e}", path.display());
        }
    }
}

/// Verify one request with a pinned clock (for tests of the verifier against fixed vectors).
pub fn verify_request_at(
    keys: &[TrustedKey],
    req: &auth::SignedRequest<'_>,
    now: DateTime<Utc>,
) -> Result<String, String> {
    Verifier::new(keys).verify_at(req, now)
}
