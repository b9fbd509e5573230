//! The write gate of the local store: what makes every local state write a compare-and-swap by
//! construction rather than a check followed by a write.
//!
//! The state lock (`<env>.json.lock`) says who may write; `kiln force-unlock --force` breaks it
//! beside a running holder, so it cannot also be what keeps two writers apart. The gate does
//! that: a short OS lock (`flock`) on the folder that holds the state, taken exclusively for the
//! length of one write — read the stored version (state file and journal), compare, write, fsync
//! — and shared while a snapshot of the state and its journal is read. Nothing breaks it: the OS
//! drops it with its process, and it is held for one write at most. So another kiln's write
//! happens wholly before or wholly after each check-and-write, whichever lock each holds, and
//! every reader sees a state file and a journal of the same moment.
//!
//! The folder (not a file in it) is locked: it is never removed or replaced while kiln runs, so
//! two kilns can never lock two different gates; and it needs no file of its own.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a kiln waits for another kiln's write before it gives up (a write holds the gate for
/// the time of one fsync'd write; only a stopped process holds it longer).
const PATIENCE: Duration = Duration::from_secs(60);

/// The gate, held until dropped.
#[derive(Debug)]
pub(super) struct Gate {
    _dir: File,
}

/// Take the gate of `dir` exclusively (a write), creating the folder if needed.
pub(super) fn exclusive(dir: &Path) -> std::io::Result<Gate> {
    std::fs::create_dir_all(dir)?;
    take(dir, true)
}

/// Take the gate of `dir` shared (a read); `None` when there is no such folder (no state).
pub(super) fn shared(dir: &Path) -> std::io::Result<Option<Gate>> {
    match take(dir, false) {
        Ok(g) => Ok(Some(g)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn take(dir: &Path, exclusive: bool) -> std::io::Result<Gate> {
    let file = open(dir)?;
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        let taken = if exclusive {
            fs4::fs_std::FileExt::try_lock_exclusive(&file)
        } else {
            fs4::fs_std::FileExt::try_lock_shared(&file)
        }?;
        if taken {
            return Ok(Gate { _dir: file });
        }
        if start.elapsed() >= PATIENCE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!(
                    "another kiln has been writing the state in `{}` for {} s",
                    dir.display(),
                    PATIENCE.as_secs()
                ),
            ));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

#[cfg(unix)]
fn open(dir: &Path) -> std::io::Result<File> {
    File::open(dir)
}

/// Elsewhere a folder cannot be opened as a file: a file in it stands for it.
#[cfg(not(unix))]
fn open(dir: &Path) -> std::io::Result<File> {
    if !dir.is_dir() {
        return Err(std::io::ErrorKind::NotFound.into());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(".kiln-gate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_excludes_reads_and_writes_and_reads_share() {
        let dir = tempfile::tempdir().unwrap();
        let w = exclusive(dir.path()).unwrap();
        let f = open(dir.path()).unwrap();
        assert!(!fs4::fs_std::FileExt::try_lock_shared(&f).unwrap());
        assert!(!fs4::fs_std::FileExt::try_lock_exclusive(&f).unwrap());
        drop(w);
        let r1 = shared(dir.path()).unwrap().unwrap();
        let _r2 = shared(dir.path()).unwrap().unwrap();
        assert!(!fs4::fs_std::FileExt::try_lock_exclusive(&f).unwrap());
        drop(r1);
        assert!(shared(&dir.path().join("none")).unwrap().is_none());
    }
}
