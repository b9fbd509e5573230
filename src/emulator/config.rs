//! How an emulator is run ([`EmulatorConfig`], from `kiln emulator`'s flags or the embedded
//! emulator), the lifecycle durations it derives from the time scale ([`Timings`]), and what can
//! stop it from starting ([`EmulatorError`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{limits, tokens, BodyLimits, TrustedKey};

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
    /// The regions served together, which CopyObject reaches ([`super::peers`]); share one
    /// registry between the configs of emulators started together.
    pub peers: super::peers::Peers,
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
            peers: super::peers::Peers::new(),
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
    /// ExportImage (the image EXPORTING, the object written at its end).
    pub export: Duration,
    /// CopyObject to another region.
    pub copy: Duration,
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
            export: s(300.0),
            copy: s(120.0),
            cooldown: s(1200.0),
            move_: s(5.0),
        }
    }
}
