//! `~` in the paths a user writes (`user_data_file`, `ssh_authorized_keys_file`, `config_file`,
//! `ca_bundle` in a manifest; `key_file`, `security_token_file` in an OCI config): the one place
//! kiln reads `HOME`. `~` alone and `~/…` are the home directory, as a shell and Oracle's SDKs
//! (`os.path.expanduser`) read them; `~user/…` is left as written. A leaf: it knows nothing of
//! kiln.

use std::path::{Path, PathBuf};

/// The home directory (`HOME`), when it is set and not empty.
pub fn dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `path` with a leading `~` or `~/` replaced by the home directory (as written without one).
pub fn expand(path: &str) -> PathBuf {
    let rest = match path.strip_prefix('~') {
        Some("") => Some(""),
        Some(r) => r.strip_prefix('/'),
        None => None,
    };
    match (rest, dir()) {
        (Some(""), Some(home)) => home,
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// A path written in a file that lives in `base` (a manifest's directory): `~`-expanded, and
/// taken relative to `base` when it is relative.
pub fn resolve(base: &Path, path: &str) -> PathBuf {
    base.join(expand(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_tilde_is_the_home_directory() {
        let Some(home) = dir() else {
            panic!("HOME is not set: this test cannot run")
        };
        assert_eq!(expand("~/.oci/config"), home.join(".oci/config"));
        assert_eq!(expand("~"), home);
        assert_eq!(expand("~other/x"), PathBuf::from("~other/x"));
        assert_eq!(expand("a/~/b"), PathBuf::from("a/~/b"));
        assert_eq!(resolve(Path::new("/m"), "~/k.pub"), home.join("k.pub"));
        assert_eq!(resolve(Path::new("/m"), "k.pub"), PathBuf::from("/m/k.pub"));
        assert_eq!(resolve(Path::new("/m"), "/abs"), PathBuf::from("/abs"));
    }
}
