//! `~/.oci/config`-style files: INI profiles with `[DEFAULT]` inheritance, as Oracle's SDKs read
//! them (`configparser` semantics: `=` or `:` delimiters, `#`/`;` comments, case-insensitive keys).
//!
//! Which file: `--config-file`, then `OCI_CLI_CONFIG_FILE`, then `OCI_CONFIG_FILE`, then
//! `~/.oci/config`. Which profile: `--profile`, then `OCI_CLI_PROFILE`, then `DEFAULT`.
//! Every error names the file, the profile and the key. The file is read only if it is a regular
//! file of at most [`CONFIG_FILE_LIMIT`] bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A value that must never be printed (a pass phrase).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ConfigError {
    #[error("cannot read the OCI config file `{path}`: {source}")]
    #[diagnostic(
        code(kiln::oci::config_unreadable),
        help("create one with `oci setup config`, or point kiln at another file with `--config-file` or `OCI_CLI_CONFIG_FILE`")
    )]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` line {line}: {reason}")]
    #[diagnostic(
        code(kiln::oci::config_syntax),
        help("each line is `[PROFILE]`, `key = value`, or a `#` comment")
    )]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("profile `{profile}` not found in `{path}` (profiles: {available})")]
    #[diagnostic(
        code(kiln::oci::profile_missing),
        help("choose one with `--profile` or `OCI_CLI_PROFILE`")
    )]
    ProfileMissing {
        path: PathBuf,
        profile: String,
        available: String,
    },
    #[error("profile `{profile}` in `{path}` has no `{key}`")]
    #[diagnostic(
        code(kiln::oci::config_key_missing),
        help("add `{key} = ...` to `[{profile}]` (or to `[DEFAULT]`)")
    )]
    KeyMissing {
        path: PathBuf,
        profile: String,
        key: &'static str,
    },
    #[error("profile `{profile}` in `{path}`: `{key}` is invalid: {reason}")]
    #[diagnostic(code(kiln::oci::config_key_invalid))]
    KeyInvalid {
        path: PathBuf,
        profile: String,
        key: &'static str,
        reason: String,
    },
    #[error("profile `{profile}` in `{path}`: the key file `{key_file}` could not be used")]
    #[diagnostic(code(kiln::oci::key_file))]
    Key {
        path: PathBuf,
        profile: String,
        key_file: PathBuf,
        #[source]
        #[diagnostic_source]
        source: super::keys::KeyError,
    },
    #[error("profile `{profile}` in `{path}`: `fingerprint` {configured} does not match the key in `{key_file}` (its fingerprint is {actual})")]
    #[diagnostic(
        code(kiln::oci::fingerprint_mismatch),
        help("set `fingerprint = {actual}` if that key is the one uploaded to OCI, or point `key_file` at the right key")
    )]
    FingerprintMismatch {
        path: PathBuf,
        profile: String,
        key_file: PathBuf,
        configured: String,
        actual: String,
    },
    #[error(
        "profile `{profile}` in `{path}`: cannot read `security_token_file` `{file}`: {source}"
    )]
    #[diagnostic(
        code(kiln::oci::security_token),
        help("refresh the session with `oci session authenticate` or `oci session refresh`")
    )]
    SecurityToken {
        path: PathBuf,
        profile: String,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The largest OCI config file kiln reads (real ones are a few hundred bytes per profile).
pub const CONFIG_FILE_LIMIT: u64 = 1024 * 1024;

/// One parsed config file.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    path: PathBuf,
    defaults: BTreeMap<String, String>,
    sections: Vec<(String, BTreeMap<String, String>)>,
}

/// One profile with `[DEFAULT]` applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    /// The file it came from (for messages).
    pub config_path: PathBuf,
    pub user: Option<String>,
    pub tenancy: String,
    pub fingerprint: String,
    pub key_file: PathBuf,
    pub region: Option<String>,
    pub pass_phrase: Option<Secret>,
    pub security_token_file: Option<PathBuf>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = crate::small_file::read_to_string(path, CONFIG_FILE_LIMIT).map_err(|e| {
            ConfigError::Unreadable {
                path: path.to_path_buf(),
                source: e.into(),
            }
        })?;
        ConfigFile::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        let mut defaults = BTreeMap::new();
        let mut sections: Vec<(String, BTreeMap<String, String>)> = Vec::new();
        let mut current: Option<usize> = None; // None = before any section, Some(usize::MAX) = DEFAULT
        let mut last_key: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let err = |reason: &str| ConfigError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                reason: reason.into(),
            };
            // configparser continuation lines: indented text continues the previous value.
            if line.starts_with([' ', '\t']) && last_key.is_some() && current.is_some() {
                let key = last_key.clone().expect("checked");
                let map = match current {
                    Some(usize::MAX) => &mut defaults,
                    Some(n) => &mut sections[n].1,
                    None => unreachable!(),
                };
                if let Some(v) = map.get_mut(&key) {
                    v.push('\n');
                    v.push_str(trimmed);
                }
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or_else(|| err("a section header must end with `]`"))?
                    .trim();
                if name.is_empty() {
                    return Err(err("empty section name"));
                }
                if name == "DEFAULT" {
                    current = Some(usize::MAX);
                } else if let Some(n) = sections.iter().position(|(s, _)| s == name) {
                    current = Some(n);
                } else {
                    sections.push((name.to_string(), BTreeMap::new()));
                    current = Some(sections.len() - 1);
                }
                last_key = None;
                continue;
            }
            let at = trimmed
                .find(['=', ':'])
                .ok_or_else(|| err("expected `key = value`"))?;
            let key = trimmed[..at].trim().to_ascii_lowercase();
            let value = trimmed[at + 1..].trim().to_string();
            if key.is_empty() {
                return Err(err("empty key"));
            }
            let map = match current {
                Some(usize::MAX) => &mut defaults,
                Some(n) => &mut sections[n].1,
                None => return Err(err("a key before any `[PROFILE]` header")),
            };
            map.insert(key.clone(), value);
            last_key = Some(key);
        }
        Ok(ConfigFile {
            path: path.to_path_buf(),
            defaults,
            sections,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Profile names in file order (`DEFAULT` first when it exists).
    pub fn profile_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if !self.defaults.is_empty() {
            names.push("DEFAULT".to_string());
        }
        names.extend(self.sections.iter().map(|(n, _)| n.clone()));
        names
    }

    /// The profile's raw values with `[DEFAULT]` applied.
    fn values(&self, name: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut values = self.defaults.clone();
        if name != "DEFAULT" {
            let (_, own) = self
                .sections
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| ConfigError::ProfileMissing {
                    path: self.path.clone(),
                    profile: name.to_string(),
                    available: self.profile_names().join(", "),
                })?;
            values.extend(own.clone());
        } else if self.defaults.is_empty() {
            return Err(ConfigError::ProfileMissing {
                path: self.path.clone(),
                profile: name.to_string(),
                available: self.profile_names().join(", "),
            });
        }
        Ok(values)
    }

    pub fn profile(&self, name: &str) -> Result<Profile, ConfigError> {
        let values = self.values(name)?;
        let path = &self.path;
        let missing = |key: &'static str| ConfigError::KeyMissing {
            path: path.clone(),
            profile: name.to_string(),
            key,
        };
        let get = |key: &str| values.get(key).filter(|v| !v.is_empty()).cloned();
        if values.contains_key("key_content") {
            return Err(ConfigError::KeyInvalid {
                path: path.clone(),
                profile: name.to_string(),
                key: "key_content",
                reason: "`key_content` is not allowed in a config file; use `key_file`".into(),
            });
        }
        let security_token_file = get("security_token_file").map(|f| expand(&f, path));
        let user = get("user");
        if user.is_none() && security_token_file.is_none() {
            return Err(missing("user"));
        }
        let tenancy = get("tenancy").ok_or_else(|| missing("tenancy"))?;
        for (key, v) in [("tenancy", Some(&tenancy)), ("user", user.as_ref())] {
            if let Some(v) = v {
                if !v.starts_with("ocid1.") {
                    return Err(ConfigError::KeyInvalid {
                        path: path.clone(),
                        profile: name.to_string(),
                        key: if key == "user" { "user" } else { "tenancy" },
                        reason: format!("`{v}` is not an OCID (`ocid1.…`)"),
                    });
                }
            }
        }
        let fingerprint = get("fingerprint")
            .ok_or_else(|| missing("fingerprint"))?
            .to_ascii_lowercase();
        if !is_fingerprint(&fingerprint) {
            return Err(ConfigError::KeyInvalid {
                path: path.clone(),
                profile: name.to_string(),
                key: "fingerprint",
                reason: format!("`{fingerprint}` is not 16 colon-separated hex pairs (aa:bb:…)"),
            });
        }
        let key_file = expand(&get("key_file").ok_or_else(|| missing("key_file"))?, path);
        Ok(Profile {
            name: name.to_string(),
            config_path: path.clone(),
            user,
            tenancy,
            fingerprint,
            key_file,
            region: get("region"),
            pass_phrase: get("pass_phrase")
                .or_else(|| get("passphrase"))
                .map(Secret::new),
            security_token_file,
        })
    }
}

fn is_fingerprint(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 16
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `~` expands to the home directory; a relative path is taken relative to the working directory,
/// as the SDK does.
fn expand(value: &str, _config: &Path) -> PathBuf {
    crate::home::expand(value)
}

fn home_dir() -> Option<PathBuf> {
    crate::home::dir()
}

/// The config file to use: `--config-file`, `OCI_CLI_CONFIG_FILE`, `OCI_CONFIG_FILE`, `~/.oci/config`.
pub fn resolve_config_path(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> PathBuf {
    if let Some(p) = explicit {
        return expand(&p.to_string_lossy(), p);
    }
    for var in ["OCI_CLI_CONFIG_FILE", "OCI_CONFIG_FILE"] {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            return expand(&v, Path::new(&v));
        }
    }
    home_dir().unwrap_or_default().join(".oci").join("config")
}

/// The profile to use: `--profile`, `OCI_CLI_PROFILE`, `DEFAULT`.
pub fn resolve_profile_name(
    explicit: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> String {
    explicit
        .map(str::to_string)
        .or_else(|| env("OCI_CLI_PROFILE").filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "DEFAULT".to_string())
}

/// The process environment, for the resolvers above.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "f7:f0:c3:be:cc:84:ea:6c:21:0a:72:40:37:bb:0d:ed";

    fn cfg(text: &str) -> ConfigFile {
        ConfigFile::parse(Path::new("/home/u/.oci/config"), text).unwrap()
    }

    #[test]
    fn profiles_inherit_default_and_keys_are_case_insensitive() {
        let c = cfg(&format!(
            "# comment\n[DEFAULT]\ntenancy=ocid1.tenancy.oc1..t\nREGION = us-ashburn-1\nfingerprint={FP}\nkey_file=/k.pem\nuser=ocid1.user.oc1..u\n\n[prod]\nregion: eu-frankfurt-1\npass_phrase = hunter2\n"
        ));
        let p = c.profile("prod").unwrap();
        assert_eq!(p.tenancy, "ocid1.tenancy.oc1..t");
        assert_eq!(p.region.as_deref(), Some("eu-frankfurt-1"));
        assert_eq!(p.pass_phrase.as_ref().unwrap().expose(), "hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
        assert_eq!(
            c.profile("DEFAULT").unwrap().region.as_deref(),
            Some("us-ashburn-1")
        );
        assert_eq!(c.profile_names(), vec!["DEFAULT", "prod"]);
    }

    #[test]
    fn every_error_names_file_profile_and_key() {
        let c = cfg(&format!(
            "[a]\ntenancy=ocid1.tenancy.oc1..t\nfingerprint={FP}\nkey_file=/k\n"
        ));
        let e = c.profile("a").unwrap_err().to_string();
        assert_eq!(e, "profile `a` in `/home/u/.oci/config` has no `user`");
        let e = c.profile("b").unwrap_err().to_string();
        assert!(
            e.contains("profile `b` not found in `/home/u/.oci/config` (profiles: a)"),
            "{e}"
        );
        let c = cfg("[a]\nuser=ocid1.user.oc1..u\ntenancy=ocid1.tenancy.oc1..t\nfingerprint=zz\nkey_file=/k\n");
        assert!(c
            .profile("a")
            .unwrap_err()
            .to_string()
            .contains("`fingerprint` is invalid"));
        let c = cfg(&format!(
            "[a]\nuser=bob\ntenancy=ocid1.tenancy.oc1..t\nfingerprint={FP}\nkey_file=/k\n"
        ));
        assert!(c
            .profile("a")
            .unwrap_err()
            .to_string()
            .contains("`user` is invalid: `bob` is not an OCID"));
        let e = ConfigFile::parse(Path::new("/c"), "key=before\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "`/c` line 1: a key before any `[PROFILE]` header");
        let e = ConfigFile::load(Path::new("/nonexistent/config"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read the OCI config file `/nonexistent/config`"),
            "{e}"
        );
    }

    #[test]
    fn file_and_profile_precedence() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let both = env(&[
            ("OCI_CLI_CONFIG_FILE", "/a"),
            ("OCI_CONFIG_FILE", "/b"),
            ("OCI_CLI_PROFILE", "P"),
        ]);
        assert_eq!(
            resolve_config_path(Some(Path::new("/x")), &both),
            PathBuf::from("/x")
        );
        assert_eq!(resolve_config_path(None, &both), PathBuf::from("/a"));
        assert_eq!(
            resolve_config_path(None, &env(&[("OCI_CONFIG_FILE", "/b")])),
            PathBuf::from("/b")
        );
        assert!(resolve_config_path(None, &env(&[])).ends_with(".oci/config"));
        assert_eq!(resolve_profile_name(Some("X"), &both), "X");
        assert_eq!(resolve_profile_name(None, &both), "P");
        assert_eq!(resolve_profile_name(None, &env(&[])), "DEFAULT");
    }

    #[test]
    fn session_token_profiles_need_no_user() {
        let c = cfg(&format!("[s]\ntenancy=ocid1.tenancy.oc1..t\nfingerprint={FP}\nkey_file=/k\nsecurity_token_file=/tok\n"));
        let p = c.profile("s").unwrap();
        assert_eq!(p.user, None);
        assert_eq!(p.security_token_file, Some(PathBuf::from("/tok")));
    }
}
