//! Who else may read a credential file: the OCI config file and the API key it names are warned
//! about when their group or others may read or write them, and a key file anyone may write is
//! refused (whoever can write it can make kiln sign with their key).
//!
//! Oracle's CLI warns the same way: `WARNING: Permissions on FILE are too open. To fix this
//! please execute the following command: oci setup repair-file-permissions --file FILE`, for a
//! config or key file with any bit of `0o177` set (it accepts 400 and 600), unless
//! `OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING=True` (oracle/oci-cli,
//! `src/oci_cli/cli_util.py`, `warn_on_invalid_file_permissions`). kiln warns for the group and
//! others bits (`0o077`; an owner's execute bit lets no one else in), honours the same variable,
//! and names the `chmod` that fixes it. Only modes are read: never the file's content.

use std::path::{Path, PathBuf};

/// A credential file its group or others may read or write.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("permissions on `{path}` are too open ({mode:04o}: {who})")]
#[diagnostic(code(kiln::oci::file_permissions), severity(Warning))]
pub struct TooOpen {
    pub path: PathBuf,
    /// What to do about it: the `chmod` that fixes it.
    #[help]
    pub help: String,
    /// The permission bits (`0o644`).
    pub mode: u32,
    /// `readable by group and others`.
    pub who: String,
    /// `OCI config file`, `API key`.
    pub what: &'static str,
}

/// The permission bits of `path` (of what a link points at), where the platform has them.
pub fn mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Whether anyone may write `path`.
pub fn world_writable(path: &Path) -> bool {
    mode(path).is_some_and(|m| m & 0o002 != 0)
}

/// The warning for `path` (a `what`, e.g. `API key`) when its group or others may read or
/// write it.
pub fn too_open(path: &Path, what: &'static str) -> Option<TooOpen> {
    let mode = mode(path)?;
    let mut who = Vec::new();
    for (bits, name) in [(0o070, "group"), (0o007, "others")] {
        if mode & bits != 0 {
            who.push(name);
        }
    }
    if who.is_empty() {
        return None;
    }
    let access = match (mode & 0o044 != 0, mode & 0o022 != 0) {
        (true, true) => "readable and writable",
        (false, true) => "writable",
        _ => "readable",
    };
    Some(TooOpen {
        help: format!(
            "`chmod 600 {}`: only you should be able to read your {what} (Oracle's CLI warns the same; `OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING=True` silences both)",
            path.display()
        ),
        path: path.to_path_buf(),
        mode,
        who: format!("{access} by {}", who.join(" and ")),
        what,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn group_and_others_bits_are_too_open_owner_bits_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key.pem");
        std::fs::write(&f, "x").unwrap();
        let set =
            |m: u32| std::fs::set_permissions(&f, std::fs::Permissions::from_mode(m)).unwrap();
        for ok in [0o600, 0o400, 0o700] {
            set(ok);
            assert!(too_open(&f, "API key").is_none(), "{ok:o}");
            assert!(!world_writable(&f));
        }
        set(0o644);
        let w = too_open(&f, "API key").unwrap();
        assert_eq!(w.who, "readable by group and others");
        assert_eq!(
            w.to_string(),
            format!(
                "permissions on `{}` are too open (0644: readable by group and others)",
                f.display()
            )
        );
        set(0o620);
        assert_eq!(too_open(&f, "API key").unwrap().who, "writable by group");
        set(0o666);
        assert!(world_writable(&f));
        assert_eq!(
            too_open(&f, "API key").unwrap().who,
            "readable and writable by group and others"
        );
    }
}
