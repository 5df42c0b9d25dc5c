//! Every file xtask writes goes through [`write_via`] (norma-io's atomic writer): the content is
//! produced in a temporary file next to the destination, flushed to disk, and renamed over the
//! final name. A reader (or a run that is killed half-way) sees either the old file or the new
//! one, never a partial one, and a failed write leaves the old file as it was.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use norma_io::{AtomicFile, TempName, WriteError};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Wraps an I/O error with the path it concerns.
pub fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `path` atomically (norma-io's [`AtomicFile`]): `produce` writes the content to the
/// temporary path it is given, in `path`'s folder and ending in `path`'s file name (plotters
/// picks the image format from the extension); then the temporary file is flushed to disk and
/// renamed to `path`. On any failure the temporary file is removed and `path` is untouched.
/// Only a regular file is ever replaced: a symbolic link is followed (the file it points to is
/// replaced, the link stays), and a directory or a device is refused.
pub fn write_via(
    path: &Path,
    produce: impl FnOnce(&Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let suffix = format!(
        "-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let name = TempName {
        prefix: ".tmp-",
        suffix: &suffix,
    };
    let file = AtomicFile::create_named(path, name).map_err(|e| write_error(path, e))?;
    produce(file.path())?;
    file.commit().map_err(|e| write_error(path, e))
}

/// A failed atomic write of `path` as xtask reports it: refusing to replace a directory or a
/// device is a usage error, the rest an I/O error on `path`.
fn write_error(path: &Path, error: WriteError) -> Error {
    match error {
        WriteError::Io { source, .. } => io_error(path)(source),
        refused @ WriteError::NotAFile { .. } => Error::Usage(refused.to_string()),
    }
}

/// Writes `bytes` to `path` atomically (see [`write_via`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_via(path, |tmp| {
        fs::File::create(tmp)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(io_error(path))
    })
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), Error> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| io_error(path)(std::io::Error::other(e)))?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// The largest JSON file a run keeps: its config.json, progress.json and metrics.json stay far
/// below (a 100-epoch sweep's metrics are ~1 MB).
const MAX_JSON_BYTES: u64 = 64 << 20;

/// Reads all of `path` when it is a regular file of at most `limit` bytes (norma-io's
/// `read_limited`): a FIFO, a device or a huge file in a run folder is refused in one line
/// before anything is read, instead of hanging or filling memory.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    norma_io::read_limited(path, limit).map_err(|e| match e {
        norma_io::ReadError::Io { source, .. } => io_error(path)(source),
        refused => Error::Usage(refused.to_string()),
    })
}

/// Reads JSON written by [`write_json`]; a missing file or bad content names `path`.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, Error> {
    let bytes = read_limited(path, MAX_JSON_BYTES)?;
    serde_json::from_slice(&bytes).map_err(|e| io_error(path)(std::io::Error::other(e)))
}

/// Checks, before any work, that a file can be written at `path` given by `flag`: it is a
/// regular file or does not exist yet, and its folder exists.
pub fn check_output_file(flag: &str, path: &Path) -> Result<(), Error> {
    let shown = path.display();
    if path.as_os_str().is_empty() {
        return Err(Error::Usage(format!("{flag} needs a file name")));
    }
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(Error::Usage(format!(
                "{flag} {shown} is a directory; give a file name"
            )))
        }
        Ok(meta) if !meta.is_file() => {
            return Err(Error::Usage(format!(
                "{flag} {shown} is not a regular file; give a file name"
            )))
        }
        _ => {}
    }
    if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
        return Err(Error::Usage(format!(
            "{flag} {shown} ends with /, which names a folder; give a file name"
        )));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Error::Usage(format!(
            "{flag} {shown}: the folder {} does not exist",
            parent.display()
        )));
    }
    // Where the file will really be written (through a link, maybe dangling), tried now
    // rather than after the work: a probe file next to it, removed at once.
    norma_io::AtomicFile::create(path).map(drop).map_err(|e| {
        let why = write_refusal(&e);
        match fs::read_link(path) {
            Ok(target) => Error::Usage(format!(
                "{flag} {shown} is a link to {}, which cannot be written: {why}",
                target.display()
            )),
            Err(_) => Error::Usage(format!("{flag} {shown} cannot be written: {why}")),
        }
    })
}

/// Why a probe write ([`norma_io::AtomicFile::create`]) was refused, in the words of the
/// system ("permission denied") without the probe's own temporary name, which means nothing to
/// the user.
pub fn write_refusal(e: &norma_io::WriteError) -> String {
    match e {
        norma_io::WriteError::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => "its folder does not exist".into(),
            kind => std::io::Error::from(kind).to_string(),
        },
        other => other.to_string(),
    }
}

/// Checks that `path` given by `flag` is an existing regular file to read.
pub fn check_input_file(flag: &str, path: &Path) -> Result<(), Error> {
    let shown = path.display();
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) if meta.is_dir() => Err(Error::Usage(format!(
            "{flag} {shown} is a directory, not a file"
        ))),
        Ok(_) => Err(Error::Usage(format!(
            "{flag} {shown} is not a regular file"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::Usage(format!("{flag} {shown}: no such file")))
        }
        Err(e) => Err(Error::Usage(format!("{flag} {shown}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        fs::write(&path, "old").unwrap();
        let result = write_via(&path, |tmp| {
            fs::write(tmp, "half").unwrap();
            Err(Error::Plot("drawing failed".into()))
        });
        assert!(result.is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_write_replaces_the_file_and_keeps_its_extension_while_producing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        write_via(&path, |tmp| {
            assert_eq!(tmp.extension().unwrap(), "png");
            assert_eq!(tmp.parent(), path.parent());
            fs::write(tmp, "new").map_err(io_error(tmp))
        })
        .unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_directory_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(dir.path(), b"x").unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        assert!(dir.path().is_dir());
    }

    #[cfg(unix)]
    #[test]
    fn a_link_is_followed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("real.txt");
        let link = dir.path().join("link.txt");
        fs::write(&file, "old").unwrap();
        std::os::unix::fs::symlink(&file, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&file).unwrap(), "new");
        let err = write_atomic(Path::new("/dev/null"), b"x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn output_and_input_checks_name_the_flag_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let err = |r: Result<(), Error>| r.unwrap_err().to_string();
        assert!(err(check_output_file("--predictions", d)).contains("--predictions"));
        assert!(err(check_output_file("--predictions", d)).contains("is a directory"));
        let orphan = d.join("missing/p.txt");
        assert!(err(check_output_file("--predictions", &orphan)).contains("does not exist"));
        check_output_file("--predictions", &d.join("p.txt")).unwrap();
        assert_eq!(
            std::fs::read_dir(d).unwrap().count(),
            0,
            "the probe is removed"
        );
        let slash = d.join("p.txt/");
        assert!(err(check_output_file("--predictions", &slash)).contains("ends with /"));
        // A dangling link fails now, not after the work (the writer does not create the
        // file a link points to).
        let link = d.join("link.txt");
        for target in [d.join("missing/p.txt"), d.join("later.txt")] {
            std::os::unix::fs::symlink(&target, &link).unwrap();
            let e = err(check_output_file("--predictions", &link));
            assert!(
                e.contains("is a link to") && e.contains("cannot be written"),
                "{e}"
            );
            std::fs::remove_file(&link).unwrap();
        }
        assert!(err(check_input_file("--weights", d)).contains("is a directory, not a file"));
        assert!(err(check_input_file("--weights", &d.join("w"))).contains("no such file"));
    }
}
