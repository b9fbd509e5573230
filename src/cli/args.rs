//! The arguments several subcommands share, each defined once (and flattened into the
//! subcommands with `#[command(flatten)]`), so its name, help text and default read the same on
//! every subcommand that takes it. Defaults clap cannot show (computed ones) are written in the
//! help in clap's own `[default: …]` form, once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::oci::auth::AuthMethod;
use crate::ops::Open;

/// `[DIR]`: the manifest directory, a positional argument like `kiln plan [DIR]`'s.
#[derive(Clone, Debug, clap::Args)]
pub struct Dir {
    /// Manifest directory: the one holding `kiln.toml`
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// The former spelling of `DIR`, kept for scripts.
    #[arg(long = "dir", value_name = "DIR", hide = true, conflicts_with = "dir")]
    dir_flag: Option<PathBuf>,
}

impl Dir {
    pub fn new(dir: PathBuf) -> Dir {
        Dir {
            dir,
            dir_flag: None,
        }
    }

    /// The directory as given (not checked).
    pub fn path(&self) -> &Path {
        self.dir_flag.as_deref().unwrap_or(&self.dir)
    }

    /// The directory, which must exist and be a directory.
    pub fn checked(&self) -> miette::Result<PathBuf> {
        manifest_dir(self.path())?;
        Ok(self.path().to_path_buf())
    }
}

pub use crate::ops::session::manifest_dir;

/// `--env`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Env {
    /// Environment: `envs/<ENV>.toml` merged over `kiln.toml`, with a state of its own
    /// (`state/<ENV>.json`, or its object in the `[backend]`)
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
}

/// Which environment, where its state is, and how to reach OCI: `--env`, `--state-dir`,
/// `--config-file`, `--profile`, `--auth`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Common {
    #[command(flatten)]
    pub env: Env,
    /// Folder of the local state files [default: DIR/state]
    #[arg(long, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
    /// OCI config file [default: `OCI_CLI_CONFIG_FILE`, else `OCI_CONFIG_FILE`, else
    /// `~/.oci/config`]
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// OCI config profile [default: `OCI_CLI_PROFILE`, else `DEFAULT`]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// How to authenticate: `api_key`, `security_token`, `resource_principal` or
    /// `instance_principal` [default: `OCI_CLI_AUTH`, else the manifest's `auth`, else the
    /// profile's: `security_token` with a `security_token_file`, else `api_key`]
    #[arg(long, value_name = "METHOD", value_parser = parse_auth)]
    pub auth: Option<AuthMethod>,
}

impl Common {
    pub fn env(&self) -> Option<&str> {
        self.env.env.as_deref()
    }

    /// How to open the manifest directory (`parallelism`: `--parallelism`, where the command has it).
    pub fn open(&self, parallelism: Option<usize>) -> Open {
        Open {
            env: self.env.env.clone(),
            state_dir: self.state_dir.clone(),
            config_file: self.config_file.clone(),
            profile: self.profile.clone(),
            auth: self.auth,
            parallelism,
        }
    }
}

/// `--lock-timeout`, for the commands that lock the state.
#[derive(Clone, Debug, clap::Args)]
pub struct LockWait {
    /// How long to wait for another kiln holding the state lock, e.g. `30s`, `5m`
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
}

impl Default for LockWait {
    fn default() -> Self {
        LockWait {
            lock_timeout: Duration::ZERO,
        }
    }
}

/// `--parallelism`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Parallelism {
    /// Actions (and reads) run at once [default: the manifest's `parallelism`, else 10]
    #[arg(long, value_name = "N")]
    pub parallelism: Option<usize>,
}

/// `-v`, for the commands that contact something (OCI, the emulator, a remote state).
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct Verbosity {
    /// Log every OCI request (method, path, status, duration, opc-request-id); `-vv` logs
    /// everything
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `--auth`: one of Oracle's CLI names.
pub fn parse_auth(s: &str) -> Result<AuthMethod, String> {
    s.parse()
}

/// `30s`, `5m`, `1h`, `250ms` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like `30s` or `5m`"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Whether a command-line argument is a resource address rather than a directory.
pub fn is_address(arg: &str) -> bool {
    arg.starts_with("instance.") || arg.starts_with("image.")
}
