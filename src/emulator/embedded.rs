//! The embedded emulator (`endpoint = "emulator"`) as ONE emulated cloud per state directory,
//! however many kiln runs use it at once.
//!
//! Its data lives under `<state dir>/.emulator/` (`data.json` for the home region, which
//! `region` records the first time; `data-<region>.json` for the others). Were every run to load
//! those files into an emulator of its own, two runs at once would see two clouds, and the last
//! to write would win the files. So one run serves and the others attach, arbitrated by `flock`s
//! on three files there (a lock dies with its process, so a `kill -9` leaves none behind):
//!
//! - `starting.lock`, exclusive while a run decides whether to serve or attach (and while it
//!   makes the key pair or starts serving), so that `serving.json` is complete when read;
//! - `serve.lock`, exclusive for as long as a run serves; it writes the URLs of its emulators
//!   (every region the emulator knows, so that any manifest finds its regions) to `serving.json`;
//! - `clients.lock`, shared by every run attached to the server. A run takes it shared *before*
//!   looking at `serve.lock`; the server, when its own command is done, takes it exclusive —
//!   waiting for the attached runs to finish — then stops its emulators, removes `serving.json`
//!   and releases `serve.lock`. A run that gets `clients.lock` shared and finds `serve.lock` free
//!   serves, from the saved data.
//!
//! The emulator saves its data after every change (temp file, fsync, rename), so a server killed
//! at any point leaves the last acknowledged change on disk and never a torn file; a stale
//! `serving.json` is ignored (it is read only while `serve.lock` is held, and a new server
//! writes its own first). A run needing a compartment the server was not told of waits for
//! that server to finish, then serves. flock works between threads of one process too, when
//! each opens the file itself, so one process can hold several runs (tests do).
//!
//! Nothing of the OCI client is used: the key pair and the OCI config file kiln signs with are
//! written here (the key's fingerprint computed here), and the caller builds its clients from
//! [`EmbeddedCloud::config_file`] and [`EmbeddedCloud::url`].

use std::fs::File;
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;
use md5::{Digest, Md5};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};

use super::{fixtures, EmulatorConfig, EmulatorError, RunningEmulator, TrustedKey};

/// The user and tenancy of the embedded emulator's config file.
pub const USER: &str = "ocid1.user.oc1..aaaaaaaakilnemulator";
pub const TENANCY: &str = "ocid1.tenancy.oc1..aaaaaaaakilnemulator";

const STARTING_LOCK: &str = "starting.lock";
const SERVE_LOCK: &str = "serve.lock";
const CLIENTS_LOCK: &str = "clients.lock";
const SERVING: &str = "serving.json";
const HOME_REGION: &str = "region";

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EmbeddedError {
    #[error("embedded emulator: `{path}`: {source}")]
    #[diagnostic(code(kiln::emulator::embedded))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("embedded emulator: another kiln run serves it (it holds `{path}`), but its `serving.json` cannot be read: {reason}")]
    #[diagnostic(
        code(kiln::emulator::serving),
        help("wait for the other kiln run to finish, or stop it")
    )]
    Serving { path: PathBuf, reason: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Emulator(#[from] EmulatorError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the serving run writes to `serving.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Serving {
    /// The serving process, for messages.
    pid: u32,
    time_scale: f64,
    /// Every compartment the server knows (fixtures, tenancy, the ones its run named).
    compartments: Vec<String>,
    /// `(region, URL)` for every region served.
    urls: Vec<(String, String)>,
}

/// How this run takes part.
enum Role {
    /// It serves: its emulators, and `serve.lock` held.
    Serving {
        emulators: Vec<RunningEmulator>,
        serve: File,
    },
    /// It uses another run's emulators, holding `clients.lock` shared.
    Attached { pid: u32, _clients: File },
    /// Handed over (or never started).
    Done,
}

/// Told what a serving run waits for.
type Notify = Box<dyn Fn(&str) + Send + Sync>;

/// The shared embedded cloud as one kiln run sees it. Dropping it ends the run's part: an
/// attached run lets go of `clients.lock`; a serving run waits for the attached runs to finish
/// ([`EmbeddedCloud::on_wait`] is told), then hands over (see the module docs). In a
/// multi-threaded tokio runtime the wait does not hold up the runtime's other tasks (the
/// emulators serving the attached runs among them).
pub struct EmbeddedCloud {
    home: PathBuf,
    urls: Vec<(String, String)>,
    time_scale: f64,
    role: Role,
    on_wait: Option<Notify>,
}

impl std::fmt::Debug for EmbeddedCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedCloud")
            .field("home", &self.home)
            .field("urls", &self.urls)
            .field("serving", &self.serving())
            .finish_non_exhaustive()
    }
}

/// Take `name`'s flock (exclusive or shared), waiting for it off the async runtime's threads.
async fn lock(home: &Path, name: &str, exclusive: bool) -> Result<File, EmbeddedError> {
    let path = home.join(name);
    tokio::task::spawn_blocking(move || {
        let file = open_lock(&path)?;
        let taken = match exclusive {
            true => FileExt::lock_exclusive(&file),
            false => FileExt::lock_shared(&file),
        };
        taken.map_err(io(&path))?;
        Ok(file)
    })
    .await
    .expect("the lock wait does not panic")
}

fn open_lock(path: &Path) -> Result<File, EmbeddedError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io(path))
}

/// `bytes` to `path` atomically (temp file, fsync, rename), mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), EmbeddedError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut f = tempfile::NamedTempFile::new_in(dir).map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io(path))?;
    }
    std::io::Write::write_all(&mut f, bytes).map_err(io(path))?;
    f.as_file().sync_all().map_err(io(path))?;
    f.persist(path).map_err(|e| EmbeddedError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// The key pair kiln signs with (made once) and the OCI config file naming it, with absolute
/// paths; the key the emulators trust.
fn key_and_config(home: &Path, region: &str) -> Result<TrustedKey, EmbeddedError> {
    let key_file = home.join("key.pem");
    let key = match std::fs::read_to_string(&key_file) {
        Ok(pem) => <rsa::RsaPrivateKey as DecodePrivateKey>::from_pkcs8_pem(&pem).map_err(|e| {
            EmbeddedError::Io {
                path: key_file.clone(),
                source: std::io::Error::other(format!(
                    "not a PKCS#8 private key (move it away for a new one): {e}"
                )),
            }
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
                .map_err(|e| io(&key_file)(std::io::Error::other(e)))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| io(&key_file)(std::io::Error::other(e)))?;
            write_private(&key_file, pem.as_bytes())?;
            key
        }
        Err(e) => return Err(io(&key_file)(e)),
    };
    let public: rsa::RsaPublicKey = rsa::RsaPrivateKey::to_public_key(&key);
    let der = public
        .to_public_key_der()
        .map_err(|e| io(&key_file)(std::io::Error::other(e)))?;
    let fingerprint = crate::x509_subject::hex_pairs(&Md5::digest(der.as_bytes()));
    let text = format!(
        "# Written by kiln for its embedded emulator; this key is trusted by that emulator only.\n[DEFAULT]\nuser={USER}\ntenancy={TENANCY}\nfingerprint={fingerprint}\nkey_file={}\nregion={region}\n",
        key_file.display(),
    );
    let config = home.join("config");
    if std::fs::read_to_string(&config).ok().as_deref() != Some(text.as_str()) {
        write_private(&config, text.as_bytes())?;
    }
    Ok(TrustedKey {
        key_id: format!("{TENANCY}/{USER}/{fingerprint}"),
        public_key: public,
    })
}

/// The region whose data is `data.json`: recorded the first time (as the first region asked
/// for then), so that manifests with different default regions share one cloud.
fn home_region(home: &Path, first: &str) -> Result<String, EmbeddedError> {
    let path = home.join(HOME_REGION);
    match std::fs::read_to_string(&path) {
        Ok(r) if !r.trim().is_empty() => Ok(r.trim().to_string()),
        Ok(_) => {
            write_private(&path, first.as_bytes())?;
            Ok(first.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_private(&path, first.as_bytes())?;
            Ok(first.to_string())
        }
        Err(e) => Err(io(&path)(e)),
    }
}

/// How the serving run's emulators behave: lifecycle times, and the limits of
/// `kiln emulator --rate-limit` / `--capacity`.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    pub time_scale: f64,
    pub rate_limits: Vec<super::limits::RateLimit>,
    pub capacity: Vec<super::limits::CapacityRule>,
}

impl EmbeddedCloud {
    /// Serve the embedded cloud of `dir` (a state directory), or attach to the run serving it.
    /// `regions`: the regions this run needs, its default first (every region the emulator
    /// knows is served); `compartments`: the compartments it names; `limits`: lifecycle times,
    /// rate limits and capacity, when this run serves.
    pub async fn attach_or_serve(
        dir: &Path,
        regions: &[String],
        compartments: &[String],
        limits: &Limits,
    ) -> Result<EmbeddedCloud, EmbeddedError> {
        let home = dir.join(".emulator");
        std::fs::create_dir_all(&home).map_err(io(&home))?;
        let home = std::fs::canonicalize(&home).map_err(io(&home))?;
        let first = regions
            .first()
            .map(String::as_str)
            .unwrap_or("us-ashburn-1");
        loop {
            let starting = lock(&home, STARTING_LOCK, true).await?;
            let trusted = key_and_config(&home, first)?;
            let clients = lock(&home, CLIENTS_LOCK, false).await?;
            let serve_path = home.join(SERVE_LOCK);
            let serve = open_lock(&serve_path)?;
            if FileExt::try_lock_exclusive(&serve).map_err(io(&serve_path))? {
                // The server never holds `clients.lock` itself: it takes it exclusive at its end.
                drop(clients);
                let cloud =
                    Self::serve(&home, regions, compartments, limits, trusted, serve).await?;
                drop(starting);
                return Ok(cloud);
            }
            drop(serve);
            let serving = read_serving(&home, &serve_path)?;
            let missing = compartments
                .iter()
                .find(|c| !serving.compartments.contains(c));
            if missing.is_none() {
                drop(starting);
                let urls = regions
                    .iter()
                    .map(|r| {
                        let url = serving.urls.iter().find(|(s, _)| s == r).map(|(_, u)| u);
                        match url {
                            Some(u) => Ok((r.clone(), u.clone())),
                            None => Err(EmulatorError::Region(r.clone()).into()),
                        }
                    })
                    .collect::<Result<Vec<_>, EmbeddedError>>()?;
                return Ok(EmbeddedCloud {
                    home,
                    urls,
                    time_scale: serving.time_scale,
                    role: Role::Attached {
                        pid: serving.pid,
                        _clients: clients,
                    },
                    on_wait: None,
                });
            }
            // The server does not know a compartment this run needs: wait for it to finish.
            drop(clients);
            drop(starting);
            tracing::info!(target: "kiln::emulator", pid = serving.pid, "the embedded emulator's server does not know a compartment this run names; waiting for it to finish");
            drop(lock(&home, SERVE_LOCK, false).await?);
        }
    }

    async fn serve(
        home: &Path,
        regions: &[String],
        compartments: &[String],
        limits: &Limits,
        trusted: TrustedKey,
        serve: File,
    ) -> Result<EmbeddedCloud, EmbeddedError> {
        let time_scale = limits.time_scale;
        let first = regions
            .first()
            .map(String::as_str)
            .unwrap_or("us-ashburn-1");
        let home_region = home_region(home, first)?;
        let mut all: Vec<String> = regions.to_vec();
        for r in fixtures::known_regions() {
            if !all.iter().any(|a| a == r) {
                all.push(r.to_string());
            }
        }
        let mut emulators = Vec::new();
        let mut served = Vec::new();
        let peers = super::peers::Peers::new();
        for region in &all {
            let data = match *region == home_region {
                true => home.join("data.json"),
                false => home.join(format!("data-{region}.json")),
            };
            let running = super::start(EmulatorConfig {
                trusted_keys: vec![trusted.clone()],
                data_file: Some(data),
                time_scale,
                region: region.clone(),
                compartments: compartments.to_vec(),
                rate_limits: limits.rate_limits.clone(),
                capacity: limits.capacity.clone(),
                peers: peers.clone(),
                ..EmulatorConfig::default()
            })
            .await?;
            served.push((region.clone(), running.url()));
            emulators.push(running);
        }
        let known = emulators[0].fixtures().compartments;
        let serving = Serving {
            pid: std::process::id(),
            time_scale,
            compartments: known.into_iter().map(|c| c.id).collect(),
            urls: served.clone(),
        };
        write_private(
            &home.join(SERVING),
            &serde_json::to_vec_pretty(&serving).expect("serialises"),
        )?;
        Ok(EmbeddedCloud {
            home: home.to_path_buf(),
            urls: served
                .into_iter()
                .filter(|(r, _)| regions.contains(r))
                .collect(),
            time_scale,
            role: Role::Serving { emulators, serve },
            on_wait: None,
        })
    }

    /// The OCI config file (profile `DEFAULT`) whose key the emulators trust; its `key_file` is
    /// absolute.
    pub fn config_file(&self) -> PathBuf {
        self.home.join("config")
    }

    /// `(region, URL)` for each region asked for, in order.
    pub fn urls(&self) -> &[(String, String)] {
        &self.urls
    }

    /// The URL serving `region`, when it was asked for.
    pub fn url(&self, region: &str) -> Option<&str> {
        self.urls
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, u)| u.as_str())
    }

    /// The lifecycle time scale of the serving run.
    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }

    /// Whether this run serves (else it is attached to another run's emulators).
    pub fn serving(&self) -> bool {
        matches!(self.role, Role::Serving { .. })
    }

    /// The serving process, when this run is attached to another.
    pub fn server_pid(&self) -> Option<u32> {
        match self.role {
            Role::Attached { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// The emulators this run serves (none when attached).
    pub fn emulators(&self) -> &[RunningEmulator] {
        match &self.role {
            Role::Serving { emulators, .. } => emulators,
            _ => &[],
        }
    }

    /// Tell `f` when the serving run, its own work done, waits for attached runs to finish.
    pub fn on_wait(&mut self, f: impl Fn(&str) + Send + Sync + 'static) {
        self.on_wait = Some(Box::new(f));
    }

    /// The serving run's end: wait for the attached runs, stop, hand over. Blocking.
    fn hand_over(&mut self) {
        let Role::Serving { emulators, serve } = std::mem::replace(&mut self.role, Role::Done)
        else {
            self.role = Role::Done;
            return;
        };
        let path = self.home.join(CLIENTS_LOCK);
        let clients = match open_lock(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(target: "kiln::emulator", "{e}");
                return;
            }
        };
        if !FileExt::try_lock_exclusive(&clients).unwrap_or(false) {
            if let Some(f) = &self.on_wait {
                f("waiting for the other kiln runs using the embedded emulator this run serves to finish");
            }
            if let Err(e) = FileExt::lock_exclusive(&clients) {
                tracing::error!(target: "kiln::emulator", "waiting for `{}`: {e}", path.display());
            }
        }
        for e in &emulators {
            e.stop();
        }
        let _ = std::fs::remove_file(self.home.join(SERVING));
        drop(serve);
        drop(clients);
        drop(emulators);
    }
}

fn read_serving(home: &Path, serve_path: &Path) -> Result<Serving, EmbeddedError> {
    let path = home.join(SERVING);
    let text = std::fs::read_to_string(&path).map_err(|e| EmbeddedError::Serving {
        path: serve_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| EmbeddedError::Serving {
        path: serve_path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl Drop for EmbeddedCloud {
    fn drop(&mut self) {
        if !self.serving() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.hand_over())
            }
            _ => self.hand_over(),
        }
    }
}
