//! Reading the small side files kiln is pointed at (user data, SSH keys, the OCI config, API keys,
//! session tokens): a regular file of at most a given size, or a clear refusal. A FIFO, a device
//! such as `/dev/zero`, a socket or a directory is refused without being read, and no more than
//! the limit (plus one byte, to tell) is ever read. A leaf: it knows nothing of kiln.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("it is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
}

impl From<ReadError> for io::Error {
    fn from(e: ReadError) -> io::Error {
        match e {
            ReadError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidInput, other),
        }
    }
}

/// The contents of the regular file at `path` (symlinks followed), if it holds at most `limit`
/// bytes.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    // Look before opening: opening a FIFO for reading would wait for a writer.
    check_regular(&std::fs::metadata(path)?.file_type())?;
    let file = open(path)?;
    // And look again at what was opened, in case the path changed in between.
    check_regular(&file.metadata()?.file_type())?;
    let mut out = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(out)
}

/// [`read`], as UTF-8.
pub fn read_to_string(path: &Path, limit: u64) -> Result<String, ReadError> {
    String::from_utf8(read(path, limit)?).map_err(|_| {
        ReadError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

#[cfg(unix)]
fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking, so that a FIFO swapped in after the first look cannot hang the open.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

fn check_regular(t: &std::fs::FileType) -> Result<(), ReadError> {
    if t.is_file() {
        return Ok(());
    }
    if t.is_dir() {
        return Err(ReadError::NotRegular("a directory"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Err(ReadError::NotRegular("a FIFO"));
        }
        if t.is_char_device() {
            return Err(ReadError::NotRegular("a character device"));
        }
        if t.is_block_device() {
            return Err(ReadError::NotRegular("a block device"));
        }
        if t.is_socket() {
            return Err(ReadError::NotRegular("a socket"));
        }
    }
    Err(ReadError::NotRegular("an unusual kind of file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_file_up_to_the_limit_and_refuses_one_byte_more() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read(&p, 5).unwrap(), b"12345");
        let e = read(&p, 4).unwrap_err();
        assert_eq!(e.to_string(), "it is larger than the limit of 4 bytes");
        assert!(matches!(
            read(&dir.path().join("nope"), 5),
            Err(ReadError::Io(_))
        ));
    }

    #[test]
    fn refuses_directories_devices_and_fifos_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let e = read(dir.path(), 10).unwrap_err();
        assert_eq!(e.to_string(), "it is a directory, not a regular file");
        #[cfg(unix)]
        {
            let e = read(Path::new("/dev/zero"), 10).unwrap_err();
            assert_eq!(
                e.to_string(),
                "it is a character device, not a regular file"
            );
            let fifo = dir.path().join("fifo");
            let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            let e = read(&fifo, 10).unwrap_err();
            assert_eq!(e.to_string(), "it is a FIFO, not a regular file");
        }
    }
}
