//! The local file store: `state/<env>.json`, written atomically (temp file, fsync, rename, fsync of
//! the directory), mode 0600, the previous version kept as `<env>.json.backup`. One writer at a
//! time: an OS lock on `<env>.json.lock` plus a lock record inside it (who, host, pid, operation,
//! since) so a waiting kiln can name the holder. The OS releases the lock when a process dies, so a
//! record without a live OS lock is stale and is taken over with a warning. The lock file is never
//! removed while kiln runs (only by `force-unlock --force`), and a lock taken on a file that was
//! removed meanwhile is dropped and taken again on the file that is there. Every save compares
//! the stored lineage and serial with the ones this process read or wrote (compare-and-swap), so
//! a broken lock can make a save fail but never roll the state back. An apply appends its commits
//! to `<env>.json.journal` and folds them in at the end ([`super::journal`]); loading folds a
//! journal left by a kiln that died.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::journal::{self, FileId};
use super::{parse, serialise, LockInfo, State, StateError};

/// The local file store.
#[derive(Clone, Debug)]
pub struct LocalStore {
    pub path: PathBuf,
}

/// A held OS lock and its record file.
pub(super) struct FileLock {
    file: File,
}

impl FileLock {
    /// Clear the record, then release the OS lock. The file itself stays: unlinking it would let a
    /// waiter that opened it before hold a lock on a deleted file while a third kiln locks a new one.
    pub(super) fn release(self) {
        let _ = self.file.set_len(0);
        let _ = self.file.sync_all();
        let _ = fs4::fs_std::FileExt::unlock(&self.file);
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Who holds the OS lock on `file`, from its record.
fn holder_of(mut file: File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    serde_json::from_str::<LockInfo>(&text)
        .map(|h| h.describe())
        .unwrap_or_else(|_| "another kiln process".into())
}

/// Whether the open `file` is the file at `path` now.
fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

impl LocalStore {
    fn lock_path(&self) -> PathBuf {
        with_suffix(&self.path, ".lock")
    }

    /// `<env>.json.journal`: the commits of an apply not folded into the state yet
    /// ([`super::journal`]).
    pub(super) fn journal_path(&self) -> PathBuf {
        with_suffix(&self.path, ".journal")
    }

    /// The journal as read (`None`: there is none).
    fn read_journal(&self) -> Result<Option<journal::Parsed>, StateError> {
        let path = self.journal_path();
        match std::fs::read(&path) {
            Ok(bytes) => journal::parse(&bytes)
                .map(Some)
                .map_err(|reason| StateError::Journal {
                    path: shown(&path),
                    reason,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read {
                path: shown(&path),
                source,
            }),
        }
    }

    /// Whether a journal file is there.
    pub(super) fn has_journal(&self) -> bool {
        self.journal_path().exists()
    }

    /// The state file as it is now (for compare-and-swap without reading it).
    pub(super) fn state_id(&self) -> Result<Option<FileId>, StateError> {
        FileId::at(&self.path).map_err(|source| StateError::Read {
            path: shown(&self.path),
            source,
        })
    }

    /// `Ok(Ok(lock))`, or `Ok(Err(holder))` when another process holds the OS lock.
    pub(super) fn try_lock(&self, info: &LockInfo) -> Result<Result<FileLock, String>, StateError> {
        let path = self.lock_path();
        let write_err = |source| StateError::Write {
            path: shown(&path),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let mut file = loop {
            let file = open_lock_file(&path).map_err(write_err)?;
            match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
                Ok(true) => {}
                Ok(false) | Err(_) => return Ok(Err(holder_of(file))),
            }
            // The file may have been removed (`force-unlock --force`) between opening and locking:
            // then this lock is on a file nobody else will open. Lock the one at `path` instead.
            if same_file(&file, &path) {
                break file;
            }
        };
        // The OS lock is ours. A record left here belongs to a process that died holding it
        // (the OS releases flocks on exit): it is stale, and taken over with a warning.
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        if let Ok(stale) = serde_json::from_str::<LockInfo>(&text) {
            tracing::warn!("taking over a stale lock left by {}", stale.describe());
        }
        file.set_len(0).map_err(write_err)?;
        file.rewind().map_err(write_err)?;
        file.write_all(
            serde_json::to_string_pretty(info)
                .expect("lock info serialises")
                .as_bytes(),
        )
        .map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        Ok(Ok(FileLock { file }))
    }

    pub(super) fn lock_holder(&self) -> Option<LockInfo> {
        std::fs::read_to_string(self.lock_path())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    }

    /// `kiln force-unlock`: clear a stale record; refuse while a process holds the OS lock (it is
    /// running) unless `force`, which removes the lock file so the next kiln locks a new one —
    /// the running holder's later saves then fail their compare-and-swap instead of overwriting.
    pub(super) fn force_unlock(&self, force: bool) -> Result<Option<LockInfo>, StateError> {
        let path = self.lock_path();
        let holder = self.lock_holder();
        let write_err = |source| StateError::Write {
            path: shown(&path),
            source,
        };
        let file = match open_lock_file(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(write_err(e)),
        };
        if let Ok(true) = fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            // Nobody holds it: whatever record is there is stale.
            FileLock { file }.release();
            return Ok(holder);
        }
        if !force {
            return Err(StateError::HolderAlive {
                path: shown(&self.path),
                holder: holder
                    .map(|h| h.describe())
                    .unwrap_or_else(|| "another kiln process".into()),
            });
        }
        std::fs::remove_file(&path).map_err(write_err)?;
        Ok(holder)
    }

    /// The lineage and serial of the stored state, for compare-and-swap (`None`: no state).
    pub(super) fn version(&self) -> Result<Option<(String, u64)>, StateError> {
        if self.has_journal() {
            return Ok(self.load()?.map(|s| (s.lineage, s.serial)));
        }
        #[derive(serde::Deserialize)]
        struct Header {
            lineage: String,
            serial: u64,
        }
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice::<Header>(&bytes)
                .map(|h| Some((h.lineage, h.serial)))
                .map_err(|e| StateError::Corrupt {
                    path: shown(&self.path),
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read {
                path: shown(&self.path),
                source,
            }),
        }
    }

    /// Whether the file holds exactly `bytes` (a write whose success was not reported).
    pub(super) fn holds(&self, bytes: &[u8]) -> bool {
        std::fs::read(&self.path).is_ok_and(|b| b == bytes)
    }

    /// The state, with its journal folded in (refusing one that cannot be trusted).
    pub(super) fn load(&self) -> Result<Option<State>, StateError> {
        let state = match std::fs::read_to_string(&self.path) {
            Ok(text) => parse(&shown(&self.path), &text).map(Some)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(StateError::Read {
                    path: shown(&self.path),
                    source,
                })
            }
        };
        match self.read_journal()? {
            None => Ok(state),
            Some(j) => {
                if j.torn {
                    tracing::warn!(
                        "{}: the last commit of a kiln that died while writing it was never acknowledged; it is left out",
                        shown(&self.journal_path())
                    );
                }
                journal::fold(state, j).map_err(|reason| StateError::Journal {
                    path: shown(&self.journal_path()),
                    reason,
                })
            }
        }
    }

    /// Atomic write; the current file, if any, becomes `<env>.json.backup` first. A journal
    /// beside it is removed after: `state` holds it (it was loaded with it folded in).
    pub(super) fn write(&self, state: &State) -> Result<(), StateError> {
        let path = &self.path;
        let err = |source| StateError::Write {
            path: shown(path),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".kiln-state-")
            .tempfile_in(dir)
            .map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(err)?;
        }
        tmp.write_all(&serialise(state)).map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        if path.exists() {
            // Hard-link the old version as the backup so the rename below replaces only `path`.
            let backup = with_suffix(path, ".backup");
            let _ = std::fs::remove_file(&backup);
            std::fs::hard_link(path, &backup)
                .or_else(|_| std::fs::copy(path, &backup).map(|_| ()))
                .map_err(err)?;
        }
        tmp.persist(path).map_err(|e| err(e.error))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        // Left behind, it would only be ignored as folded (its last serial is the state's, or
        // below it); the next write tries again.
        match std::fs::remove_file(self.journal_path()) {
            Ok(()) => {
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "cannot remove the folded journal {}: {e}",
                shown(&self.journal_path())
            ),
        }
        Ok(())
    }
}
