//! What every OCI-facing command sets up: the manifest, the state store, and a client for the
//! provider's endpoint — starting the embedded emulator for `endpoint = "emulator"`.

use miette::{miette, IntoDiagnostic, WrapErr};
use std::path::{Path, PathBuf};

use crate::emulator::{self, EmulatorConfig, RunningEmulator};
use crate::manifest::{self, Backend, Endpoint, Manifest};
use crate::oci::auth::{self, AuthMethod, Credentials};
use crate::oci::config::{self as oci_config, ConfigFile};
use crate::oci::net::Network;
use crate::oci::object_storage::ObjectStorage;
use crate::oci::{keys, perms, Client, ClientOptions, Clients};
use crate::region;
use crate::state::{RemoteStore, StateStore};

use super::args::Common;
use super::out;

/// The embedded emulator's lifecycle time scale (`KILN_EMULATOR_TIME_SCALE` overrides it).
pub const EMBEDDED_TIME_SCALE: f64 = 0.02;

pub struct Session {
    pub manifest: Manifest,
    pub store: StateStore,
    /// A client per region (see [`connect`]).
    pub clients: Clients,
    /// For the plan header.
    pub endpoint: String,
    pub parallelism: usize,
    /// Kept alive for the command's duration.
    pub _emulators: Vec<RunningEmulator>,
}

/// Load the manifest in `dir` (which must be a directory), printing its warnings.
pub fn load_manifest(dir: &Path, env: Option<&str>) -> miette::Result<Manifest> {
    super::args::manifest_dir(dir)?;
    let m = manifest::load(dir, env)?;
    for w in &m.warnings {
        out::diagnostic(w);
    }
    Ok(m)
}

/// `--state-dir`, else `<manifest dir>/state` (local state files and the embedded emulator's data).
pub fn state_dir(dir: &Path, state_dir: Option<&Path>) -> PathBuf {
    state_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("state"))
}

/// The embedded emulator: a key pair and data kept under `<state dir>/.emulator/`, one emulator
/// per region (each OCI region is a world of its own: its ADs, subnets, images and resources).
/// The first region's data is `data.json`, another's `data-<region>.json`.
struct Embedded {
    emulators: Vec<RunningEmulator>,
    clients: Clients,
    desc: String,
}

/// The embedded emulator of `regions`, knowing the `compartments` the manifest names (as an
/// account where they exist would).
async fn embedded(
    dir: &Path,
    regions: &[String],
    compartments: &[String],
) -> miette::Result<Embedded> {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let home = dir.join(".emulator");
    std::fs::create_dir_all(&home)
        .into_diagnostic()
        .wrap_err_with(|| format!("creating `{}`", home.display()))?;
    let key_file = home.join("key.pem");
    if !key_file.exists() {
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).into_diagnostic()?;
        let pem = key.to_pkcs8_pem(LineEnding::LF).into_diagnostic()?;
        write_private(&key_file, pem.as_bytes())?;
    }
    let key = keys::load_private_key(&key_file, None)?;
    let fingerprint = keys::fingerprint(&key.to_public_key());
    let config = home.join("config");
    let text = format!(
        "# Written by kiln for its embedded emulator; this key is trusted by that emulator only.\n[DEFAULT]\nuser=ocid1.user.oc1..aaaaaaaakilnemulator\ntenancy=ocid1.tenancy.oc1..aaaaaaaakilnemulator\nfingerprint={fingerprint}\nkey_file={}\nregion={}\n",
        key_file.display(),
        regions[0]
    );
    write_private(&config, text.as_bytes())?;
    let profile = ConfigFile::load(&config)?.profile("DEFAULT")?;
    let signing = keys::load_signing_key(&profile)?;
    let scale = std::env::var("KILN_EMULATOR_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(EMBEDDED_TIME_SCALE);
    let mut emulators = Vec::new();
    let mut clients: Option<Clients> = None;
    let mut urls = Vec::new();
    for (i, region) in regions.iter().enumerate() {
        let data = if i == 0 {
            home.join("data.json")
        } else {
            home.join(format!("data-{region}.json"))
        };
        let running = emulator::start(EmulatorConfig {
            trusted_keys: vec![emulator::TrustedKey {
                key_id: signing.key_id.clone(),
                public_key: signing.key.to_public_key(),
            }],
            data_file: Some(data),
            time_scale: scale,
            region: region.to_string(),
            compartments: compartments.to_vec(),
            ..EmulatorConfig::default()
        })
        .await?;
        let client = Client::new(signing.clone(), ClientOptions::new(running.url()));
        match &mut clients {
            None => clients = Some(Clients::single(region.clone(), client)),
            Some(c) => c.insert(region.clone(), client),
        }
        urls.push(if regions.len() > 1 {
            format!("{region} {}", running.url())
        } else {
            running.url()
        });
        emulators.push(running);
    }
    let desc = format!(
        "embedded emulator at {}, lifecycle times scaled ×{scale}",
        urls.join(", ")
    );
    Ok(Embedded {
        emulators,
        clients: clients.expect("at least one region"),
        desc,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> miette::Result<()> {
    let mut f = tempfile::NamedTempFile::new_in(path.parent().unwrap_or(Path::new(".")))
        .into_diagnostic()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .into_diagnostic()?;
    }
    std::io::Write::write_all(&mut f, bytes).into_diagnostic()?;
    f.persist(path)
        .map_err(|e| miette!("cannot write `{}`: {}", path.display(), e.error))?;
    Ok(())
}

/// The provider's clients, one per region: the embedded emulator's, or the configured endpoints.
pub struct Connection {
    pub clients: Clients,
    /// For the plan header.
    pub endpoint: String,
    /// The provider's region, when known (the backend's default).
    pub region: Option<String>,
    /// Embedded emulators, kept alive for the command's duration.
    pub emulators: Vec<RunningEmulator>,
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
pub async fn connect(
    manifest: &Manifest,
    state_dir: &Path,
    config_file: Option<&Path>,
    profile: Option<&str>,
    auth_flag: Option<AuthMethod>,
) -> miette::Result<Connection> {
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
        let e = embedded(state_dir, &regions, &compartments).await?;
        return Ok(Connection {
            clients: e.clients,
            endpoint: e.desc,
            region: Some(default),
            emulators: e.emulators,
        });
    }
    let env = &oci_config::process_env;
    let network = Network::from_env(env, p.ca_bundle.as_deref())?;
    let chosen = auth::resolve_method(
        auth_flag,
        env,
        p.auth.as_deref().and_then(AuthMethod::parse),
    )?;
    let signer = credentials(chosen.map(|c| c.0), p, config_file, profile, &network).await?;
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
    let mut emulators = Vec::new();
    for (r, ep) in &p.endpoints {
        match ep {
            Endpoint::Url(u) => clients.insert(
                r.clone(),
                base.with_endpoint(u.as_str().trim_end_matches('/')),
            ),
            Endpoint::Default => {
                clients.insert(r.clone(), base.with_endpoint(&region::compute_endpoint(r)))
            }
            Endpoint::Emulator => {
                let e = embedded(state_dir, std::slice::from_ref(r), &compartments).await?;
                for reg in e.clients.regions() {
                    clients.insert(
                        reg,
                        e.clients
                            .for_region(Some(reg))
                            .expect("its own region")
                            .clone(),
                    );
                }
                emulators.extend(e.emulators);
            }
        }
    }
    let desc = match p.endpoints.is_empty() {
        true => format!("{default_url} ({name})"),
        false => format!("{default_url} and per-region endpoints ({name})"),
    };
    Ok(Connection {
        clients,
        endpoint: desc,
        region,
        emulators,
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
                    out::diagnostic(&w);
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
        conn.emulators.first().map(|e| e.url()).ok_or_else(|| {
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

/// Open a session for the manifest in `dir` (`parallelism`: `--parallelism`).
pub async fn open(
    dir: &Path,
    common: &Common,
    parallelism: Option<usize>,
) -> miette::Result<Session> {
    let manifest = load_manifest(dir, common.env())?;
    let parallelism = parallelism
        .or(manifest.provider.parallelism)
        .unwrap_or(10)
        .max(1);
    let conn = connect(
        &manifest,
        &state_dir(dir, common.state_dir.as_deref()),
        common.config_file.as_deref(),
        common.profile.as_deref(),
        common.auth,
    )
    .await?;
    let store = state_store(&manifest, common.state_dir.as_deref(), &conn)?;
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
        _emulators: conn.emulators,
    })
}
