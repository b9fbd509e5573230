//! What every OCI-facing verb opens first: the manifest, the state store, and a client per region
//! for the provider's endpoint — starting the embedded emulator for `endpoint = "emulator"`.

use miette::miette;
use std::path::{Path, PathBuf};

use crate::emulator;
use crate::emulator::embedded::{EmbeddedCloud, Limits};
use crate::manifest::{self, Backend, Endpoint, Manifest};
use crate::oci::auth::{self, AuthMethod, Credentials};
use crate::oci::config::{self as oci_config, ConfigFile};
use crate::oci::net::Network;
use crate::oci::object_storage::ObjectStorage;
use crate::oci::{keys, perms, Client, ClientOptions, Clients};
use crate::region;
use crate::state::{RemoteStore, StateStore};

use crate::plan::refresh::PlanOptions;

/// The embedded emulator's lifecycle time scale (`KILN_EMULATOR_TIME_SCALE` overrides it).
pub const EMBEDDED_TIME_SCALE: f64 = 0.02;

/// How to open a manifest directory: the environment, where its local state lives, and how to
/// reach OCI (the flags `--env`, `--state-dir`, `--config-file`, `--profile`, `--auth` and
/// `--parallelism` carry these).
#[derive(Clone, Default)]
pub struct Open {
    pub env: Option<String>,
    /// Folder of the local state files (default: `DIR/state`).
    pub state_dir: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub profile: Option<String>,
    pub auth: Option<AuthMethod>,
    /// Actions and reads at once (default: the manifest's `parallelism`, else 10).
    pub parallelism: Option<usize>,
    /// Where to say what the user should know while a verb waits (the CLI: stderr), e.g. that
    /// the embedded emulator this run serves waits for another run attached to it.
    pub notice: Option<Notice>,
}

/// A line for the user, said while a verb runs.
pub type Notice = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// An opened manifest directory: what every verb that plans or applies works on.
pub struct Session {
    /// The manifest (its `warnings` are for the caller to show).
    pub manifest: Manifest,
    pub store: StateStore,
    /// A client per region (see [`connect`]).
    pub clients: Clients,
    /// For the plan header.
    pub endpoint: String,
    pub parallelism: usize,
    /// The embedded emulator, kept while the session is (see [`EmbeddedCloud`]'s drop).
    _embedded: Option<EmbeddedCloud>,
}

impl Session {
    /// Snapshots of the other environments' states the manifest takes images from
    /// (`source = { image, env }`): read beside this one's, without their locks.
    pub async fn env_states(&self) -> miette::Result<crate::plan::versions::EnvStates> {
        let mut out = crate::plan::versions::EnvStates::new();
        for env in crate::plan::versions::envs_read(&self.manifest) {
            let state = match self.store.sibling(&self.manifest.env, &env)? {
                Some(store) => store.load().await?,
                None => None,
            };
            out.insert(env, state);
        }
        Ok(out)
    }

    /// A session over parts made elsewhere (the fault suite's and the simulation's own clients
    /// and stores): the same flows, with no provider to connect to.
    pub fn from_parts(
        manifest: Manifest,
        store: StateStore,
        clients: Clients,
        endpoint: &str,
        parallelism: usize,
    ) -> Session {
        Session {
            manifest,
            store,
            clients,
            endpoint: endpoint.to_string(),
            parallelism: parallelism.max(1),
            _embedded: None,
        }
    }

    /// The plan options every verb starts from: refresh, this session's parallelism and endpoint.
    pub fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            refresh: true,
            parallelism: self.parallelism,
            endpoint: self.endpoint.clone(),
            ..PlanOptions::default()
        }
    }
}

/// `path` as a manifest directory: an error that says what to pass when it is missing, a file
/// (`kiln.toml` itself, most likely), or anything else.
pub fn manifest_dir(path: &Path) -> miette::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) if path.extension().is_some_and(|e| e == "toml") => {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            Err(miette!(
                help = format!("pass the directory that holds it: `{}`", parent.display()),
                "`{}` is a manifest file; kiln takes the manifest's directory",
                path.display()
            ))
        }
        Ok(_) => Err(miette!(
            help = "pass the directory that holds `kiln.toml`",
            "`{}` is not a directory",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(miette!(
            help = "pass the directory that holds `kiln.toml`",
            "there is no directory `{}`",
            path.display()
        )),
        Err(e) => Err(miette!("cannot read `{}`: {e}", path.display())),
    }
}

/// Load the manifest in `dir` (which must be a directory); its warnings stay in it.
pub fn load_manifest(dir: &Path, env: Option<&str>) -> miette::Result<Manifest> {
    manifest_dir(dir)?;
    Ok(manifest::load(dir, env)?)
}

/// `--state-dir`, else `<manifest dir>/state` (local state files and the embedded emulator's data).
pub fn state_dir(dir: &Path, state_dir: Option<&Path>) -> PathBuf {
    state_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("state"))
}

/// The embedded emulator's limits, from `KILN_EMULATOR_RATE_LIMIT` and `KILN_EMULATOR_CAPACITY`
/// (the `kiln emulator` flags' values, separated by commas or spaces).
fn embedded_limits() -> miette::Result<(
    Vec<emulator::limits::RateLimit>,
    Vec<emulator::limits::CapacityRule>,
)> {
    let read = |name: &str| std::env::var(name).unwrap_or_default();
    let rates = emulator::limits::parse_list(&read("KILN_EMULATOR_RATE_LIMIT"))
        .map_err(|e| miette!("`KILN_EMULATOR_RATE_LIMIT`: {e}"))?;
    let capacity = emulator::limits::parse_list(&read("KILN_EMULATOR_CAPACITY"))
        .map_err(|e| miette!("`KILN_EMULATOR_CAPACITY`: {e}"))?;
    Ok((rates, capacity))
}

/// The embedded emulator of `regions`, knowing the `compartments` the manifest names (as an
/// account where they exist would): one emulated cloud per state directory, served by the first
/// of the kiln runs using it at once and attached to by the others ([`EmbeddedCloud`]). Its key
/// pair, data and generated OCI config (absolute paths) are kept under `<state dir>/.emulator/`.
struct Embedded {
    cloud: EmbeddedCloud,
    clients: Clients,
    desc: String,
}

async fn embedded(
    dir: &Path,
    regions: &[String],
    compartments: &[String],
    notice: Option<&Notice>,
) -> miette::Result<Embedded> {
    let scale = std::env::var("KILN_EMULATOR_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(EMBEDDED_TIME_SCALE);
    let (rate_limits, capacity) = embedded_limits()?;
    let limits = Limits {
        time_scale: scale,
        rate_limits,
        capacity,
    };
    let mut cloud = EmbeddedCloud::attach_or_serve(dir, regions, compartments, &limits).await?;
    if let Some(n) = notice {
        let n = n.clone();
        cloud.on_wait(move |text| n(text));
    }
    let profile = ConfigFile::load(&cloud.config_file())?.profile("DEFAULT")?;
    let signing = keys::load_signing_key(&profile)?;
    let mut clients: Option<Clients> = None;
    for (region, url) in cloud.urls() {
        let client = Client::new(signing.clone(), ClientOptions::new(url.clone()));
        match &mut clients {
            None => clients = Some(Clients::single(region.clone(), client)),
            Some(c) => c.insert(region.clone(), client),
        }
    }
    let urls: Vec<String> = cloud
        .urls()
        .iter()
        .map(|(region, url)| match cloud.urls().len() > 1 {
            true => format!("{region} {url}"),
            false => url.clone(),
        })
        .collect();
    let by = match cloud.server_pid() {
        Some(pid) => format!(" (served by kiln process {pid})"),
        None => String::new(),
    };
    let desc = format!(
        "embedded emulator at {}{by}, lifecycle times scaled ×{}",
        urls.join(", "),
        cloud.time_scale()
    );
    Ok(Embedded {
        clients: clients.expect("at least one region"),
        cloud,
        desc,
    })
}

/// The provider's clients, one per region: the embedded emulator's, or the configured endpoints.
pub struct Connection {
    pub clients: Clients,
    /// For the plan header.
    pub endpoint: String,
    /// The provider's region, when known (the backend's default).
    pub region: Option<String>,
    /// The embedded emulator, kept for the command's duration.
    pub embedded: Option<EmbeddedCloud>,
}

impl Connection {
    /// The default region's client (the provider's).
    pub fn client(&self) -> &Client {
        self.clients.default_client()
    }
}

/// Connect to the manifest's provider: a client for every region the manifest names (and, on
/// OCI itself, for every region, so that resources left in a region the manifest no longer names
/// can still be read and destroyed). `endpoint = "emulator"` starts the embedded emulator, one per
/// region; `[provider] endpoints` points single regions elsewhere.
pub async fn connect(manifest: &Manifest, dir: &Path, o: &Open) -> miette::Result<Connection> {
    let state_dir = &state_dir(dir, o.state_dir.as_deref());
    let (config_file, profile, auth_flag) =
        (o.config_file.as_deref(), o.profile.as_deref(), o.auth);
    let p = &manifest.provider;
    let compartments: Vec<String> = manifest.compartments().into_iter().collect();
    let mut regions: Vec<String> = manifest.regions().into_iter().collect();
    regions.extend(
        p.endpoints
            .keys()
            .filter(|r| !regions.contains(r))
            .cloned()
            .collect::<Vec<_>>(),
    );
    if p.endpoint == Endpoint::Emulator {
        let default = p.region.clone().unwrap_or_else(|| "us-ashburn-1".into());
        regions.retain(|r| *r != default);
        regions.insert(0, default.clone());
        let e = embedded(state_dir, &regions, &compartments, o.notice.as_ref()).await?;
        return Ok(Connection {
            clients: e.clients,
            endpoint: e.desc,
            region: Some(default),
            embedded: Some(e.cloud),
        });
    }
    let env = &oci_config::process_env;
    let network = Network::from_env(env, p.ca_bundle.as_deref())?;
    let chosen = auth::resolve_method(
        auth_flag,
        env,
        p.auth.as_deref().and_then(AuthMethod::parse),
    )?;
    let signer = credentials(
        chosen.map(|c| c.0),
        p,
        config_file,
        profile,
        &network,
        o.notice.as_ref(),
    )
    .await?;
    let region = p.region.clone().or(signer.region);
    let (name, path) = (signer.who, signer.config_path);
    tracing::debug!(target: "kiln::oci", auth = %signer.credentials.method(), network = %network.describe(), "connecting");
    let no_region = || match &path {
        Some(path) => miette!(
            help = "set `region` in `[provider]` or in the profile",
            "no region for profile `{name}` in `{}`",
            path.display()
        ),
        None => miette!(
            help = "set `region` in `[provider]`",
            "no region for {name}"
        ),
    };
    let default_url = match &p.endpoint {
        Endpoint::Url(u) => u.to_string().trim_end_matches('/').to_string(),
        _ => region::compute_endpoint(region.as_deref().ok_or_else(no_region)?),
    };
    // With an explicit endpoint and no region, the endpoint is the default region's.
    let default = region.clone().unwrap_or_else(|| "us-ashburn-1".into());
    let mut options = ClientOptions::new(default_url.clone());
    options.network = network;
    let base = Client::with_credentials(signer.credentials, options);
    let mut clients = Clients::single(default.clone(), base.clone());
    if p.endpoint == Endpoint::Default {
        for r in region::all_ids() {
            clients.insert(r, base.with_endpoint(&region::compute_endpoint(r)));
        }
        clients.insert(default.clone(), base.clone());
    }
    let mut emulated = Vec::new();
    for (r, ep) in &p.endpoints {
        match ep {
            Endpoint::Url(u) => clients.insert(
                r.clone(),
                base.with_endpoint(u.as_str().trim_end_matches('/')),
            ),
            Endpoint::Default => {
                clients.insert(r.clone(), base.with_endpoint(&region::compute_endpoint(r)))
            }
            Endpoint::Emulator => emulated.push(r.clone()),
        }
    }
    // One embedded cloud for every region pointed at it (a second in one run would wait for
    // the first to end).
    let mut embedded_cloud = None;
    if !emulated.is_empty() {
        let e = embedded(state_dir, &emulated, &compartments, o.notice.as_ref()).await?;
        for reg in e.clients.regions() {
            clients.insert(
                reg,
                e.clients
                    .for_region(Some(reg))
                    .expect("its own region")
                    .clone(),
            );
        }
        embedded_cloud = Some(e.cloud);
    }
    let desc = match p.endpoints.is_empty() {
        true => format!("{default_url} ({name})"),
        false => format!("{default_url} and per-region endpoints ({name})"),
    };
    Ok(Connection {
        clients,
        endpoint: desc,
        region,
        embedded: embedded_cloud,
    })
}

/// What signs the requests, and what it tells of the region.
struct Signer {
    credentials: Credentials,
    /// The region the principal is in (profile, resource principal environment, instance).
    region: Option<String>,
    /// `profile NAME` (with the method when it is not an API key), or the principal.
    who: String,
    config_path: Option<PathBuf>,
}

/// The credentials of `method` (`None`: the profile's own method). Resource and instance
/// principals need no OCI config file, as with Oracle's CLI.
async fn credentials(
    method: Option<AuthMethod>,
    p: &crate::manifest::Provider,
    config_file: Option<&Path>,
    profile: Option<&str>,
    network: &Network,
    notice: Option<&Notice>,
) -> miette::Result<Signer> {
    let env = &oci_config::process_env;
    match method {
        Some(AuthMethod::ResourcePrincipal) => {
            let settings =
                auth::resource::Settings::from_env(env).map_err(auth::AuthError::from)?;
            let rp =
                auth::resource::ResourcePrincipal::new(settings).map_err(auth::AuthError::from)?;
            Ok(Signer {
                region: rp.region().map(str::to_string),
                credentials: Credentials::resource(rp),
                who: "auth: resource_principal".into(),
                config_path: None,
            })
        }
        Some(AuthMethod::InstancePrincipal) => {
            let ip = auth::instance::InstancePrincipal::new(
                auth::instance::Endpoints::from_env(env),
                network,
            )
            .await
            .map_err(auth::AuthError::from)?;
            Ok(Signer {
                region: Some(ip.region().to_string()),
                credentials: Credentials::instance(ip),
                who: "auth: instance_principal".into(),
                config_path: None,
            })
        }
        Some(AuthMethod::ApiKey) | Some(AuthMethod::SecurityToken) | None => {
            let path =
                oci_config::resolve_config_path(config_file.or(p.config_file.as_deref()), env);
            let name = oci_config::resolve_profile_name(profile.or(p.profile.as_deref()), env);
            let profile = ConfigFile::load(&path)?.profile(&name)?;
            if env("OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING").as_deref() != Some("True") {
                let files = [(&path, "OCI config file"), (&profile.key_file, "API key")];
                for w in files
                    .iter()
                    .filter_map(|(f, what)| perms::too_open(f, what))
                {
                    // A warning, shown as the CLI shows diagnostics; the connection goes on.
                    if let Some(n) = notice {
                        n(&format!("{:?}", miette::Report::new(w)));
                    }
                }
            }
            let region = profile
                .region
                .as_deref()
                .and_then(|r| region::resolve(r).ok())
                .map(str::to_string);
            let method = method.unwrap_or(match profile.security_token_file {
                Some(_) => AuthMethod::SecurityToken,
                None => AuthMethod::ApiKey,
            });
            let (credentials, who) = match method {
                AuthMethod::SecurityToken => {
                    let at = p
                        .region
                        .as_deref()
                        .or(region.as_deref())
                        .unwrap_or("us-ashburn-1");
                    let session = auth::session::SessionToken::new(
                        &profile,
                        &auth::auth_service_url(env, at),
                        network,
                    )?;
                    (
                        Credentials::session(session),
                        format!("profile {name}, auth: security_token"),
                    )
                }
                _ => (
                    Credentials::api_key(keys::load_api_key(&profile)?),
                    format!("profile {name}"),
                ),
            };
            Ok(Signer {
                credentials,
                region,
                who,
                config_path: Some(path),
            })
        }
    }
}

/// Where the manifest's state lives: `[backend]`, else `<state dir>/<env>.json`.
pub fn state_store(
    manifest: &Manifest,
    state_dir: Option<&Path>,
    conn: &Connection,
) -> miette::Result<StateStore> {
    let b = match &manifest.backend {
        Backend::Local => {
            return Ok(StateStore::local(&manifest.dir, state_dir, &manifest.env)?);
        }
        Backend::ObjectStorage(b) => b,
    };
    let emulator_url = || {
        let cloud = conn.embedded.as_ref();
        cloud
            .and_then(|e| e.urls().first().map(|(_, u)| u.clone()))
            .ok_or_else(|| {
                miette!(
                help =
                    "use the backend's own URL, or `endpoint = \"emulator\"` in `[provider]` too",
                "`backend.endpoint = \"emulator\"` needs the embedded emulator as the provider"
            )
            })
    };
    let url = match (&b.endpoint, &manifest.provider.endpoint) {
        (Some(Endpoint::Url(u)), _) => u.to_string().trim_end_matches('/').to_string(),
        (Some(Endpoint::Emulator), _) | (None, Endpoint::Emulator) => emulator_url()?,
        // An emulator (or proxy) URL for the provider serves Object Storage too.
        (None, Endpoint::Url(u)) => u.to_string().trim_end_matches('/').to_string(),
        (Some(Endpoint::Default), _) | (None, Endpoint::Default) => {
            let r = b
                .region
                .clone()
                .or_else(|| conn.region.clone())
                .ok_or_else(|| {
                    miette!(
                        help = "set `region` in `[backend]` or `[provider]`",
                        "no region for the Object Storage backend"
                    )
                })?;
            region::object_storage_endpoint(&r)
        }
    };
    let os = ObjectStorage::new(conn.client().with_endpoint(&url));
    Ok(StateStore::Remote(RemoteStore::new(
        os,
        &b.namespace,
        &b.bucket,
        &b.prefix,
        &manifest.env,
    )))
}

impl Session {
    /// End the session as its process ends: the manifest (a large fleet's members, tens of
    /// MiB in many small allocations) is left to the operating system, which takes it back
    /// with the process at once; everything else (the embedded emulator's hand-over among it)
    /// is dropped as usual. Only for a command about to exit.
    pub fn end_of_process(self) {
        let Session { manifest, .. } = self;
        std::mem::forget(manifest);
    }
}

/// Open the manifest in `dir`: load it, connect to its provider, find its state store.
pub async fn open(dir: &Path, o: &Open) -> miette::Result<Session> {
    let manifest = load_manifest(dir, o.env.as_deref())?;
    let parallelism = o
        .parallelism
        .or(manifest.provider.parallelism)
        .unwrap_or(10)
        .max(1);
    let conn = connect(&manifest, dir, o).await?;
    // `--parallelism` is the ceiling of every operation family's budget (`oci::budget`).
    for region in conn
        .clients
        .regions()
        .map(str::to_string)
        .collect::<Vec<_>>()
    {
        if let Ok(c) = conn.clients.for_region(Some(&region)) {
            c.budgets().set_ceiling(parallelism);
            if std::env::var("KILN_RATE_ADAPT").is_ok_and(|v| v == "off") {
                c.budgets().set_adaptive(false);
            }
        }
    }
    let store = state_store(&manifest, o.state_dir.as_deref(), &conn)?;
    let endpoint = match &store {
        StateStore::Remote(r) => format!("{} · state: {}", conn.endpoint, r.describe()),
        _ => conn.endpoint,
    };
    Ok(Session {
        manifest,
        store,
        clients: conn.clients,
        endpoint,
        parallelism,
        _embedded: conn.embedded,
    })
}
