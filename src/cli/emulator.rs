//! `kiln emulator`: run the OCI Compute emulator until Ctrl-C, or (`--fixtures`) print the ids it
//! serves — compartments, availability and fault domains, the VCN and subnets, images, shapes —
//! and exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use miette::{IntoDiagnostic, WrapErr};

use crate::emulator::{self, EmulatorConfig, TrustedKey};
use crate::oci::config::ConfigFile;
use crate::oci::keys;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on; `127.0.0.1:0` picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// OCI config file whose profiles' API keys are trusted.
    #[arg(long, value_name = "FILE", required_unless_present = "fixtures")]
    pub oci_config: Option<PathBuf>,
    /// Print the ids the emulator serves in each `--region` (compartments, availability and
    /// fault domains, VCN, subnets, images, shapes) — what a manifest names — and exit. With
    /// `--oci-config`, the tenancies of its trusted keys are among the compartments.
    #[arg(long)]
    pub fixtures: bool,
    /// With `--fixtures`: as JSON (one object per region).
    #[arg(long, requires = "fixtures")]
    pub json: bool,
    /// Profiles to trust (repeatable; DEFAULT when none).
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Persist everything to FILE (atomically, on every change); in memory without it.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Lifecycle durations × F (1.0 realistic, 0 instant).
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub time_scale: f64,
    /// Milliseconds added to every response.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub latency_ms: u64,
    /// Probability (0..1) of a 429 TooManyRequests per request.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fault_429: f64,
    /// Probability (0..1) of a 500/503 per request.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fault_5xx: f64,
    /// Probability (0..1) of a dropped connection per request.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fault_reset: f64,
    /// Probability (0..1) of a dropped connection after a change was made (the client cannot
    /// tell whether its request took effect).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fault_reset_after: f64,
    /// Seed for repeatable faults.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Region the emulator serves; repeat it to serve several, each a world of its own on its own
    /// port (the first on `--listen`, the next ones on the following ports, or free ports with
    /// port 0; with `--data FILE`, region N > 1 keeps its data in `FILE.<region>`).
    #[arg(long = "region", default_value = "us-ashburn-1")]
    pub regions: Vec<String>,
    /// A compartment OCID to know besides the tenancy roots of the trusted keys and the named
    /// fixtures (repeatable); any other compartment is 404, as on OCI.
    #[arg(long = "compartment", value_name = "OCID")]
    pub compartments: Vec<String>,
    /// A CA certificate (PEM file) whose instance certificates may federate at `/v1/x509` for
    /// instance principals (repeatable)
    #[arg(long = "trust-instance-ca", value_name = "FILE")]
    pub instance_cas: Vec<PathBuf>,
    /// Lifetime of the security tokens the emulator issues (federation, session refresh)
    #[arg(long, value_name = "DURATION", default_value = "20m", value_parser = super::args::parse_duration)]
    pub token_lifetime: Duration,
    /// A request rate per tenancy and operation, `OPERATION=RATE[:BURST]` (per second; `*` for
    /// every operation; repeatable): beyond it, 429 `TooManyRequests`
    #[arg(long = "rate-limit", value_name = "OPERATION=RATE[:BURST]")]
    pub rate_limits: Vec<emulator::limits::RateLimit>,
    /// Room for N instances of SHAPE (or a shape family like `VM.Standard.A1`; `*` for all) in an
    /// availability domain (name or suffix like `AD-1`), or one of its fault domains
    /// (`SHAPE@AD/FAULT-DOMAIN-2=N`); repeatable: a launch beyond it fails with 500 `InternalError`
    /// "Out of host capacity." as on OCI
    #[arg(long = "capacity", value_name = "SHAPE@AD[/FD]=N")]
    pub capacity: Vec<emulator::limits::CapacityRule>,
    #[command(flatten)]
    pub verbosity: super::args::Verbosity,
}

/// The API keys of `profiles` (DEFAULT when empty) in an OCI config file.
pub fn trusted_keys(
    config: &std::path::Path,
    profiles: &[String],
) -> miette::Result<Vec<TrustedKey>> {
    let file = ConfigFile::load(config)?;
    let names = if profiles.is_empty() {
        vec!["DEFAULT".to_string()]
    } else {
        profiles.to_vec()
    };
    names
        .iter()
        .map(|name| {
            let profile = file.profile(name)?;
            let key = keys::load_signing_key(&profile)?;
            Ok(TrustedKey {
                key_id: key.key_id.clone(),
                public_key: key.key.to_public_key(),
            })
        })
        .collect()
}

/// `-v` (`kiln emulator -v`) logs every request: method, path, status, duration and
/// opc-request-id, never a header's value.
pub fn run(args: Args) -> miette::Result<ExitCode> {
    let verbose = args.verbosity.verbose;
    if let Some(bad) = args
        .compartments
        .iter()
        .find(|c| !emulator::api::well_formed_ocid(c, &["compartment", "tenancy"]))
    {
        miette::bail!("`--compartment` `{bad}` is not a compartment OCID");
    }
    for (flag, p) in [
        ("--fault-429", args.fault_429),
        ("--fault-5xx", args.fault_5xx),
        ("--fault-reset", args.fault_reset),
        ("--fault-reset-after", args.fault_reset_after),
    ] {
        if !(0.0..=1.0).contains(&p) {
            miette::bail!("`{flag}` must be a probability between 0 and 1, not {p}");
        }
    }
    if args.time_scale < 0.0 {
        miette::bail!("`--time-scale` must be 0 or more");
    }
    let trusted = match &args.oci_config {
        Some(config) => trusted_keys(config, &args.profiles)?,
        None => Vec::new(),
    };
    let mut instance_cas = Vec::new();
    for f in &args.instance_cas {
        instance_cas.push(
            crate::small_file::read_to_string(f, 1024 * 1024)
                .into_diagnostic()
                .wrap_err_with(|| format!("reading `--trust-instance-ca` `{}`", f.display()))?,
        );
    }
    let mut configs = Vec::new();
    // One registry for the regions served together: a CopyObject reaches any of them.
    let peers = emulator::peers::Peers::new();
    for (i, region) in args.regions.iter().enumerate() {
        let region = crate::region::resolve(region).unwrap_or(region);
        let mut listen = args.listen;
        if listen.port() != 0 {
            listen.set_port(listen.port() + i as u16);
        }
        configs.push(EmulatorConfig {
            listen,
            trusted_keys: trusted.clone(),
            data_file: args.data.as_ref().map(|d| match i {
                0 => d.clone(),
                _ => {
                    let mut p = d.clone().into_os_string();
                    p.push(format!(".{region}"));
                    PathBuf::from(p)
                }
            }),
            time_scale: args.time_scale,
            latency: Duration::from_millis(args.latency_ms),
            fault_429: args.fault_429,
            fault_5xx: args.fault_5xx,
            fault_reset: args.fault_reset,
            fault_reset_after: args.fault_reset_after,
            seed: args.seed.map(|s| s + i as u64),
            region: region.to_string(),
            body_limits: emulator::BodyLimits::default(),
            compartments: args.compartments.clone(),
            log_requests: verbose > 0,
            trusted_instance_cas: instance_cas.clone(),
            token_lifetime: args.token_lifetime,
            rate_limits: args.rate_limits.clone(),
            capacity: args.capacity.clone(),
            peers: peers.clone(),
        });
    }
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    if args.fixtures {
        return rt.block_on(print_fixtures(configs, args.json));
    }
    rt.block_on(async {
        let mut running = Vec::new();
        for config in configs {
            running.push(emulator::start(config).await?);
        }
        use std::fmt::Write;
        let mut out = String::new();
        for r in &running {
            let f = r.fixtures();
            writeln!(out, "listening on {}", r.url()).into_diagnostic()?;
            writeln!(
                out,
                "region {} · availability domains {}",
                f.region,
                f.availability_domains.join(", ")
            )
            .into_diagnostic()?;
            writeln!(out, "compartment {}", f.compartment_id).into_diagnostic()?;
            for c in &f.compartments {
                writeln!(out, "known compartment {} ({})", c.id, c.name).into_diagnostic()?;
            }
            writeln!(out, "vcn {}", f.vcn_id).into_diagnostic()?;
            writeln!(out, "public subnet {}", f.public_subnet_id).into_diagnostic()?;
            writeln!(out, "private subnet {}", f.private_subnet_id).into_diagnostic()?;
            for i in &f.platform_images {
                writeln!(
                    out,
                    "image {} {} {}",
                    i.id, i.operating_system, i.operating_system_version
                )
                .into_diagnostic()?;
            }
        }
        super::out::print(&out)?;
        tokio::signal::ctrl_c()
            .await
            .into_diagnostic()
            .wrap_err("waiting for Ctrl-C")?;
        for r in running {
            r.shutdown().await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `--fixtures`: start each region's emulator on a free loopback port, in memory, read the ids it
/// serves from it, stop it, and print them — so what is printed is what a running emulator
/// serves, not a copy.
async fn print_fixtures(configs: Vec<EmulatorConfig>, json: bool) -> miette::Result<ExitCode> {
    let mut all = Vec::new();
    for mut config in configs {
        config.listen = "127.0.0.1:0".parse().expect("a loopback address");
        config.data_file = None;
        config.log_requests = false;
        let running = emulator::start(config).await?;
        all.push(running.fixtures());
        running.shutdown().await;
    }
    let text = match json {
        true => format!(
            "{}\n",
            serde_json::to_string_pretty(&all).expect("fixtures serialise")
        ),
        false => all
            .iter()
            .map(|f| f.listing())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    super::out::print(&text)?;
    Ok(ExitCode::SUCCESS)
}
