//! The local file store: `state/<env>.json`, written atomically (temp file, fsync, rename, fsync of
//! the directory), mode 0600, the previous version kept as `<env>.json.backup`. One writer at a
//! time: an OS lock on `<env>.json.lock` plus a lock record inside it (who, host, pid, operation,
//! since) so a waiting kiln can name the holder. The OS releases the lock when a process dies, so a
//! record without a live OS lock is stale and is taken over with a warning. The lock file is never
//! removed while kiln runs (only by `force-unlock --force`), and a lock taken on a file that was
//! removed meanwhile is dropped and taken again on the file that is there. Every write — a save,
//! a journal append, a fold — compares the stored lineage and serial (or the journal's identity)
//! with the ones this process read or wrote and writes in one step under the folder's write gate
//! ([`super::gate`]), which `force-unlock` never breaks: a broken state lock can make a write fail
//! but never roll the state back or lose an acknowledged commit. An apply appends its commits to
//! `<env>.json.journal` and folds them in at the end ([`super::journal`]); loading reads the state
//! and the journal as one snapshot (the gate shared) and folds a journal left by a kiln that died.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::format::serialise_to;
use super::gate::{self, Gate};
use super::journal::{self, FileId};
use super::{parse, LockInfo, State, StateError};

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
        match std::fs::File::open(&path) {
            Ok(file) => match journal::read(std::io::BufReader::with_capacity(1 << 16, file)) {
                Ok(parsed) => Ok(Some(parsed)),
                Err(journal::ReadError::Untrusted(reason)) => Err(StateError::Journal {
                    path: shown(&path),
                    reason,
                }),
                Err(journal::ReadError::Io(source)) => Err(StateError::Read {
                    path: shown(&path),
                    source,
                }),
            },
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

    /// The folder the state is in (its write gate: [`super::gate`]).
    fn folder(&self) -> &Path {
        journal::folder(&self.path)
    }

    fn gate(&self) -> Result<Gate, StateError> {
        gate::exclusive(self.folder()).map_err(|source| StateError::Write {
            path: shown(&self.path),
            source,
        })
    }

    /// The lineage and serial of the stored state, for compare-and-swap (`None`: no state).
    pub(super) fn version(&self) -> Result<Option<(String, u64)>, StateError> {
        let _gate = self.shared_gate()?;
        self.version_unlocked()
    }

    fn shared_gate(&self) -> Result<Option<Gate>, StateError> {
        gate::shared(self.folder()).map_err(|source| StateError::Read {
            path: shown(&self.path),
            source,
        })
    }

    /// [`LocalStore::version`], the gate held by the caller.
    fn version_unlocked(&self) -> Result<Option<(String, u64)>, StateError> {
        if self.has_journal() {
            return Ok(self.load_unlocked()?.map(|s| (s.lineage, s.serial)));
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

    /// The state, with its journal folded in (refusing one that cannot be trusted): one
    /// snapshot — the state file and the journal are read under the shared gate, so no write
    /// (a fold, an append) falls between the two reads.
    pub(super) fn load(&self) -> Result<Option<State>, StateError> {
        let _gate = self.shared_gate()?;
        self.load_unlocked()
    }

    /// [`LocalStore::load`], the gate held by the caller.
    fn load_unlocked(&self) -> Result<Option<State>, StateError> {
        Ok(self.read_unlocked()?.0)
    }

    /// The state with the journal folded in, and whether the journal changed anything (the
    /// state file as it is holds less). One state in memory, the journal read line by line: the
    /// fold at the end of a large apply is its peak of memory (BENCHMARKS.md, section 6).
    fn read_unlocked(&self) -> Result<(Option<State>, bool), StateError> {
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
            None => Ok((state, false)),
            Some(j) => {
                if j.torn {
                    tracing::warn!(
                        "{}: the last commit of a kiln that died while writing it was never acknowledged; it is left out",
                        shown(&self.journal_path())
                    );
                }
                let journal_path = self.journal_path();
                let (folded, changed) =
                    journal::fold(state, j).map_err(|reason| StateError::Journal {
                        path: shown(&journal_path),
                        reason,
                    })?;
                Ok((folded, changed))
            }
        }
    }

    /// A compare-and-swap refusal: (`lineage`, `serial`) was expected, `found` is stored.
    fn refusal(&self, lineage: &str, serial: u64, found: Option<(String, u64)>) -> StateError {
        let (found_lineage, found_serial) = found.unwrap_or_else(|| ("(no state)".into(), 0));
        StateError::Conflict {
            path: shown(&self.path),
            lineage: lineage.to_string(),
            serial,
            found_lineage,
            found_serial,
        }
    }

    /// A compare-and-swap refusal, naming what is stored now as well as it can be read.
    pub(super) fn conflict(&self, lineage: &str, serial: u64) -> StateError {
        match self.version() {
            Ok(found) => self.refusal(lineage, serial, found),
            Err(_) => self.refusal(lineage, serial, Some(("(unreadable)".into(), 0))),
        }
    }

    /// Compare-and-swap: write `next` whole if the stored state (its journal folded in) is still
    /// (`lineage`, `serial`) — serial 0: no state, or that one — comparing and writing in one
    /// step under the gate. A journal beside it is removed: `next` holds it.
    pub(super) fn save(&self, lineage: &str, serial: u64, next: &State) -> Result<(), StateError> {
        let _gate = self.gate()?;
        let stored = self.version_unlocked()?;
        if !super::is_version(stored.as_ref(), lineage, serial) {
            return Err(self.refusal(lineage, serial, stored));
        }
        self.write_unlocked(next)
    }

    /// Fold the journal into the state file if the stored state (its journal folded in) is still
    /// (`lineage`, `serial`), in one step under the gate: what is written is what is read under
    /// the gate — the state file with the journal folded in — never a state held in memory, so a
    /// commit appended before the gate was taken is folded with the rest. A journal the state
    /// already holds (or with no commit) is only removed. Returns the state as stored.
    pub(super) fn fold(&self, lineage: &str, serial: u64) -> Result<Option<State>, StateError> {
        let _gate = self.gate()?;
        let (folded, changed) = self.read_unlocked()?;
        let stored = folded.as_ref().map(|s| (s.lineage.clone(), s.serial));
        if !super::is_version(stored.as_ref(), lineage, serial) {
            return Err(self.refusal(lineage, serial, stored));
        }
        if !self.has_journal() {
            return Ok(folded);
        }
        match &folded {
            Some(f) if changed => self.write_unlocked(f)?,
            _ => self.remove_journal(),
        }
        Ok(folded)
    }

    /// Fold this kiln's own journal (`writer`), whose appends made `state` of the state file: if
    /// nobody else wrote the journal or the state since ([`journal::Writer::untouched`], under
    /// the gate), the fold is `state` itself and is written without reading anything back — one
    /// state in memory at the end of a large apply, not two (BENCHMARKS.md section 6); debug
    /// builds read the fold back and compare. Otherwise (another kiln took the state over) this
    /// is [`LocalStore::fold`]: what is stored now, read under the gate. Returns what it wrote:
    /// `None` when that is `state`.
    pub(super) fn fold_own(
        &self,
        writer: &journal::Writer,
        state: &State,
    ) -> Result<Option<Option<State>>, StateError> {
        {
            let _gate = self.gate()?;
            if writer.untouched() {
                #[cfg(debug_assertions)]
                {
                    let (folded, _) = self.read_unlocked()?;
                    assert_eq!(
                        folded.as_ref(),
                        Some(state),
                        "the journal does not fold to the state in memory: a change was recorded without its address"
                    );
                }
                self.write_unlocked(state)?;
                return Ok(None);
            }
        }
        self.fold(&state.lineage, state.serial).map(Some)
    }

    /// Start the journal with its first commit (`first`, extending `lineage` at `serial`): a
    /// compare-and-swap under the gate — the stored state must be that one, with no journal.
    pub(super) fn start_journal(
        &self,
        lineage: &str,
        serial: u64,
        first: &journal::Entry,
    ) -> Result<journal::Writer, journal::WriteError> {
        journal::Writer::create(
            &self.journal_path(),
            &self.path,
            lineage,
            serial,
            first,
            || {
                let stored = self.version_unlocked()?;
                if !super::is_version(stored.as_ref(), lineage, serial) || self.has_journal() {
                    return Err(journal::WriteError::Moved(
                        "the state moved since it was read".into(),
                    ));
                }
                Ok(self.state_id()?)
            },
        )
    }

    /// Write `state` as it is (`kiln state migrate`'s destination), under the gate.
    pub(super) fn write(&self, state: &State) -> Result<(), StateError> {
        let _gate = self.gate()?;
        self.write_unlocked(state)
    }

    /// Atomic write; the current file, if any, becomes `<env>.json.backup` first. A journal
    /// beside it is removed after: `state` holds it (it was loaded with it folded in). The
    /// caller holds the gate.
    fn write_unlocked(&self, state: &State) -> Result<(), StateError> {
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
        serialise_to(state, std::io::BufWriter::new(tmp.as_file_mut())).map_err(err)?;
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
        self.remove_journal();
        Ok(())
    }

    /// Remove a journal the state file holds. Left behind, it would only be ignored as folded
    /// (its last serial is the state's, or below it); the next write tries again.
    fn remove_journal(&self) {
        match std::fs::remove_file(self.journal_path()) {
            Ok(()) => {
                if let Ok(d) = File::open(self.folder()) {
                    let _ = d.sync_all();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "cannot remove the folded journal {}: {e}",
                shown(&self.journal_path())
            ),
        }
    }
}
