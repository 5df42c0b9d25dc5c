//! [`read_limited`]: reading a whole file that a user named, without trusting it.
//!
//! A path handed to a program can name a FIFO (reading it blocks until someone writes), a
//! device (`/dev/zero` never ends), or a file far larger than anything the reader expects (a
//! sparse 12 GB file takes 12 GB of memory before a parser sees its first byte). Every file
//! norma reads whole goes through here: only a regular file is opened, and only when its size
//! is within a bound the caller derives from what the file can legitimately hold.

use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

/// Why a file was not read, and which.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The operating system refused or failed (missing file, permission, I/O error).
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// The step, worded to stand before the path ("opening", "reading").
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The path is a directory, a FIFO, a socket or a device: nothing was opened.
    #[error("{} is {what}, not a regular file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// `"a directory"` or `"a named pipe, socket or device"`.
        what: &'static str,
    },
    /// The file is larger than anything it could legitimately hold.
    #[error("{} is {size} bytes, more than the {limit} it can hold", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The bound given by the reader.
        limit: u64,
    },
}

impl ReadError {
    /// The path the error concerns.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::Io { path, .. }
            | ReadError::NotAFile { path, .. }
            | ReadError::TooLarge { path, .. } => path,
        }
    }
}

/// Checks that `path` (links followed) is a regular file of at most `limit` bytes, without
/// opening it, and returns its size.
pub fn check_regular(path: &Path, limit: u64) -> Result<u64, ReadError> {
    let meta = fs::metadata(path).map_err(|source| ReadError::Io {
        action: "opening",
        path: path.to_path_buf(),
        source,
    })?;
    check_meta(path, &meta, limit)
}

fn check_meta(path: &Path, meta: &fs::Metadata, limit: u64) -> Result<u64, ReadError> {
    if meta.is_dir() {
        return Err(ReadError::NotAFile {
            path: path.to_path_buf(),
            what: "a directory",
        });
    }
    if !meta.is_file() {
        return Err(ReadError::NotAFile {
            path: path.to_path_buf(),
            what: "a named pipe, socket or device",
        });
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit,
        });
    }
    Ok(meta.len())
}

/// Reads all of `path` when it is a regular file of at most `limit` bytes.
///
/// The type and size are checked before the file is opened (so a FIFO is never opened and
/// cannot block) and again on the open handle (so a file swapped in between is caught too); at
/// most `limit` bytes are ever read, even from a file that grows meanwhile.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    check_regular(path, limit)?;
    let io = |action| {
        move |source| ReadError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let file = File::open(path).map_err(io("opening"))?;
    let size = check_meta(path, &file.metadata().map_err(io("opening"))?, limit)?;
    let mut bytes = Vec::with_capacity(size as usize);
    // One byte past the limit tells a file that grew from one that fits exactly.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io("reading"))?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_regular_file_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        fs::write(&path, b"12345").unwrap();
        assert_eq!(read_limited(&path, 5).unwrap(), b"12345");
        assert_eq!(check_regular(&path, 5).unwrap(), 5);
    }

    #[test]
    fn a_file_over_the_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        // A sparse file: 1 TB long, no disk used; refused from its size alone.
        File::create(&path).unwrap().set_len(1 << 40).unwrap();
        let err = read_limited(&path, 1 << 20).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { size, .. } if size == 1 << 40));
        assert!(err
            .to_string()
            .ends_with("is 1099511627776 bytes, more than the 1048576 it can hold"));
    }

    #[test]
    fn devices_fifos_and_directories_are_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_limited(Path::new("/dev/zero"), 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/zero is a named pipe, socket or device, not a regular file"
        );
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(matches!(
            read_limited(&link, 100),
            Err(ReadError::NotAFile { .. })
        ));
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo failed");
        // Opening a FIFO for reading would block until a writer comes: this returns.
        assert!(matches!(
            read_limited(&fifo, 100),
            Err(ReadError::NotAFile { .. })
        ));
        let err = read_limited(dir.path(), 100).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("is a directory, not a regular file"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let err = read_limited(Path::new("/no/such/file"), 100).unwrap_err();
        assert_eq!(err.path(), Path::new("/no/such/file"));
        assert!(
            err.to_string().starts_with("opening /no/such/file: "),
            "{err}"
        );
    }
}
