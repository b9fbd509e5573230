//! Appending to the journal: an open journal this kiln writes ([`Writer`]), each line durable
//! before its commit is acknowledged, each append a compare-and-swap.
//!
//! Every append checks that the journal at the path is still the file this kiln opened, at the
//! length it left it, and that the state file is still the one it checked when it opened the
//! journal (device, inode, length, modification time), and writes — all under the folder's
//! write gate ([`crate::state::gate`]), which every fold and whole save takes too. Anyone who took the
//! state over meanwhile (after `kiln force-unlock --force`) folds or replaces the journal, or
//! rewrites the state, under that gate: this kiln's append then lands wholly before (and is
//! folded with the rest: a fold writes what it reads under the gate, not what its kiln holds in
//! memory) or is refused, never acknowledged into a journal nobody will read. The first append
//! compares the stored version and creates the journal under the gate the same way.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{line, Entry, Header, JOURNAL_VERSION};
use crate::failpoint;
use crate::state::gate;
use crate::state::StateError;

/// Which file a path is, and its version (compare-and-swap without reading it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::state) struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        #[cfg(unix)]
        let (dev, ino) = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let (dev, ino) = (0, 0);
        FileId {
            dev,
            ino,
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }

    /// The file at `path` now (`None`: there is none).
    pub fn at(path: &Path) -> std::io::Result<Option<FileId>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(FileId::of(&m))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn same_file(&self, other: &FileId) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// Why an append did not happen.
#[derive(Debug)]
pub(in crate::state) enum WriteError {
    Io(std::io::Error),
    /// Someone else wrote the state or the journal since this kiln opened it.
    Moved(String),
    /// The stored state could not be read to compare it.
    State(Box<StateError>),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e)
    }
}

impl From<StateError> for WriteError {
    fn from(e: StateError) -> Self {
        WriteError::State(Box::new(e))
    }
}

/// An open journal that this kiln appends to.
pub(in crate::state) struct Writer {
    path: PathBuf,
    state_path: PathBuf,
    file: File,
    /// Bytes of every acknowledged line.
    good: u64,
    /// The state file when the journal was opened.
    state_id: Option<FileId>,
    /// A write failed and the file could not be cut back to `good`: nothing more is appended.
    poisoned: bool,
}

/// The folder `path` is in: where its gate is ([`gate`]).
pub(in crate::state) fn folder(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn sync_dir(path: &Path) {
    if let Ok(d) = File::open(folder(path)) {
        let _ = d.sync_all();
    }
}

impl Writer {
    /// Start the journal at `path` extending (`lineage`, `base_serial`) with its first entry, in
    /// one compare-and-swap: under the gate, `check` compares the stored state with (`lineage`,
    /// `base_serial`) and returns the state file's identity; then the header and the entry are
    /// written in one write, fsynced, the folder fsynced. There must be no journal at `path`.
    pub fn create(
        path: &Path,
        state_path: &Path,
        lineage: &str,
        base_serial: u64,
        first: &Entry,
        check: impl FnOnce() -> Result<Option<FileId>, WriteError>,
    ) -> Result<Writer, WriteError> {
        let header = Header {
            kiln_journal: JOURNAL_VERSION,
            lineage: lineage.to_string(),
            base_serial,
        };
        let mut bytes = line(&serde_json::to_vec(&header).expect("header serialises"));
        bytes.extend(line(&serde_json::to_vec(first).expect("entry serialises")));
        if let Some(fault) = failpoint::cross(failpoint::STATE_JOURNAL) {
            if fault == failpoint::Fault::Abort {
                // The process dies in the middle of the write.
                if let Ok(mut f) = OpenOptions::new().write(true).create_new(true).open(path) {
                    let _ = f.write_all(&bytes[..bytes.len() / 2]);
                }
            }
            return Err(failpoint::io_error(failpoint::STATE_JOURNAL, fault).into());
        }
        let gate = gate::exclusive(folder(path))?;
        let state_id = check()?;
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = match opts.open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(WriteError::Moved("another kiln started a journal".into()))
            }
            Err(e) => return Err(e.into()),
        };
        let written = file.write_all(&bytes).and_then(|_| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(path);
            return Err(e.into());
        }
        sync_dir(path);
        drop(gate);
        let mut w = Writer {
            path: path.to_path_buf(),
            state_path: state_path.to_path_buf(),
            file,
            good: bytes.len() as u64,
            state_id,
            poisoned: false,
        };
        w.crossed(failpoint::STATE_JOURNALED, &bytes, 0)?;
        Ok(w)
    }

    /// Whether nobody but this kiln wrote the journal or the state since it opened the journal
    /// (called under the gate): then the state file with the journal folded in is exactly what
    /// this kiln's acknowledged appends made of it.
    pub fn untouched(&self) -> bool {
        !self.poisoned && self.check().is_ok()
    }

    /// Whether the journal and the state are still the ones this kiln wrote (called under the
    /// gate).
    fn check(&self) -> Result<(), WriteError> {
        let ours = FileId::of(&self.file.metadata()?);
        match FileId::at(&self.path)? {
            Some(now) if now.same_file(&ours) && now.len == self.good => {}
            Some(now) if now.same_file(&ours) => {
                return Err(WriteError::Moved(format!(
                    "the journal is {} bytes long, this kiln left it at {}",
                    now.len, self.good
                )))
            }
            _ => {
                return Err(WriteError::Moved(
                    "the journal was folded or replaced by another kiln".into(),
                ))
            }
        }
        if FileId::at(&self.state_path)? != self.state_id {
            return Err(WriteError::Moved(
                "the state file was written by another kiln".into(),
            ));
        }
        Ok(())
    }

    /// Append `entry` and make it durable, in one compare-and-swap: under the gate, the journal
    /// and the state must still be the ones this kiln wrote ([`Writer::check`]) — a kiln that
    /// took the state over folds or replaces them under the same gate, so this append lands
    /// wholly before that (and is folded with the rest) or is refused.
    pub fn append(&mut self, entry: &Entry) -> Result<(), WriteError> {
        if self.poisoned {
            return Err(WriteError::Io(std::io::Error::other(
                "an earlier write to the journal failed and could not be undone",
            )));
        }
        let bytes = line(&serde_json::to_vec(entry).expect("entry serialises"));
        let at = self.good;
        if let Some(fault) = failpoint::cross(failpoint::STATE_JOURNAL) {
            if fault == failpoint::Fault::Abort {
                // The process dies in the middle of the write: half a line stays.
                let _ = self.file.seek(SeekFrom::Start(at));
                let _ = self.file.write_all(&bytes[..bytes.len() / 2]);
            }
            return Err(failpoint::io_error(failpoint::STATE_JOURNAL, fault).into());
        }
        let gate = gate::exclusive(folder(&self.path))?;
        self.check()?;
        let written = self
            .file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.write_all(&bytes))
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // Cut the file back so that no later line follows a torn one.
            if self
                .file
                .set_len(at)
                .and_then(|_| self.file.sync_data())
                .is_err()
            {
                self.poisoned = true;
            }
            return Err(e.into());
        }
        drop(gate);
        self.good = at + bytes.len() as u64;
        self.crossed(failpoint::STATE_JOURNALED, &bytes, at)
    }

    /// Cross `point` after `bytes` were written at `at`: an injected fault there is a write that
    /// landed but was reported failed; it is read back, as a real one would be.
    fn crossed(&mut self, point: &'static str, bytes: &[u8], at: u64) -> Result<(), WriteError> {
        let Some(fault) = failpoint::cross(point) else {
            return Ok(());
        };
        let err = failpoint::io_error(point, fault);
        if failpoint::aborted() {
            return Err(err.into());
        }
        let mut back = vec![0; bytes.len()];
        let landed = self
            .file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.read_exact(&mut back))
            .is_ok()
            && back == bytes;
        if landed {
            Ok(())
        } else {
            Err(err.into())
        }
    }
}
