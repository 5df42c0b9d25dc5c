//! [`AtomicFile`]: a temporary file next to its destination that becomes the destination on
//! [`AtomicFile::commit`], and disappears if dropped before.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// What went wrong while replacing a file, and with which path.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// An I/O step failed: `action` says which ("creating a temporary file in", "writing",
    /// "renaming a temporary file to"), `path` the folder or file it concerned.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// The step, worded to stand before the path.
        action: &'static str,
        /// The folder, temporary file or destination of that step.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The destination exists and is not a regular file (a directory, a device, a FIFO):
    /// nothing is replaced.
    #[error("{} is {what}; not replacing it", path.display())]
    NotAFile {
        /// The destination as given.
        path: PathBuf,
        /// `"a directory"` or `"not a regular file"`.
        what: &'static str,
    },
}

impl WriteError {
    /// The path the error concerns.
    pub fn path(&self) -> &Path {
        match self {
            WriteError::Io { path, .. } | WriteError::NotAFile { path, .. } => path,
        }
    }
}

/// How a temporary file is named: `<prefix><6 random letters or digits><suffix>`, in the
/// destination's folder. A fixed pattern lets a later run recognise (and remove) what a killed
/// process left; a suffix that keeps the destination's extension lets writers that choose a
/// format by extension (image encoders) write to the temporary path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TempName<'a> {
    /// Starts the name; a leading `.` hides the file from plain `ls`.
    pub prefix: &'a str,
    /// Ends the name.
    pub suffix: &'a str,
}

impl TempName<'static> {
    /// `.norma-XXXXXX.tmp`.
    pub const DEFAULT: TempName<'static> = TempName {
        prefix: ".norma-",
        suffix: ".tmp",
    };
}

/// Random characters in a temporary name (the `tempfile` crate's default, fixed here because
/// patterns that recognise leftovers depend on it).
pub const RANDOM_LEN: usize = 6;

/// A file being written that replaces `destination` when committed.
///
/// Write through [`AtomicFile::file`], or let another writer open [`AtomicFile::path`] (the
/// temporary file exists already; opening it for writing truncates it in place). Then
/// [`AtomicFile::commit`] flushes it to disk and renames it over the destination. Dropped
/// without a commit, the temporary file is deleted and the destination was never touched.
#[derive(Debug)]
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    /// Where the rename goes: the destination, or the file its symbolic link points to.
    target: PathBuf,
}

impl AtomicFile {
    /// Starts replacing `destination`, with a temporary file named [`TempName::DEFAULT`].
    pub fn create(destination: &Path) -> Result<AtomicFile, WriteError> {
        AtomicFile::create_named(destination, TempName::DEFAULT)
    }

    /// Starts replacing `destination`, with a temporary file named after `name`.
    ///
    /// Only a regular file is ever replaced: a symbolic link is followed (the file it points to
    /// is replaced and the link stays), and a directory, a device or a FIFO is refused with
    /// [`WriteError::NotAFile`].
    pub fn create_named(destination: &Path, name: TempName<'_>) -> Result<AtomicFile, WriteError> {
        let target = resolve(destination)?;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(name.prefix)
            .suffix(name.suffix)
            .rand_bytes(RANDOM_LEN)
            .tempfile_in(dir)
            .map_err(|source| WriteError::Io {
                action: "creating a temporary file in",
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(AtomicFile { temp, target })
    }

    /// The temporary file, open for writing.
    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// The temporary file's path (for errors, and for writers that open a path themselves).
    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Writes all of `bytes` to the temporary file.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.temp
            .as_file_mut()
            .write_all(bytes)
            .map_err(|source| self.writing(source))
    }

    /// Flushes the temporary file to disk and renames it over the destination, so that the
    /// name never points at unwritten data.
    pub fn commit(self) -> Result<(), WriteError> {
        if let Err(source) = self.temp.as_file().sync_all() {
            return Err(self.writing(source));
        }
        let target = self.target;
        self.temp
            .persist(&target)
            .map_err(|e| WriteError::Io {
                action: "renaming a temporary file to",
                path: target.clone(),
                source: e.error,
            })
            .map(drop)
    }

    fn writing(&self, source: io::Error) -> WriteError {
        WriteError::Io {
            action: "writing",
            path: self.temp.path().to_path_buf(),
            source,
        }
    }
}

/// Replaces `path` by a file holding `bytes`, atomically (see [`AtomicFile`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// The file a rename onto `destination` must replace: the destination itself, or the file its
/// symbolic link points to (renaming onto the link would replace the link). Anything that
/// exists and is not a regular file is refused.
fn resolve(destination: &Path) -> Result<PathBuf, WriteError> {
    let target = match fs::symlink_metadata(destination) {
        Ok(meta) if meta.file_type().is_symlink() => {
            // A dangling link is refused: the file it names may be meant to exist.
            fs::canonicalize(destination).map_err(|source| WriteError::Io {
                action: "following the symbolic link",
                path: destination.to_path_buf(),
                source,
            })?
        }
        _ => destination.to_path_buf(),
    };
    match fs::metadata(&target) {
        Ok(meta) if meta.is_dir() => Err(WriteError::NotAFile {
            path: destination.to_path_buf(),
            what: "a directory",
        }),
        Ok(meta) if !meta.is_file() => Err(WriteError::NotAFile {
            path: destination.to_path_buf(),
            what: "not a regular file",
        }),
        _ => Ok(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_a_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["a.json"]);
    }

    #[test]
    fn a_dropped_file_leaves_the_destination_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        fs::write(&path, b"old").unwrap();
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"half").unwrap();
        let temp = file.path().to_path_buf();
        assert!(temp.exists());
        drop(file);
        assert!(!temp.exists());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["a.json"]);
    }

    #[test]
    fn the_temporary_name_follows_the_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let name = TempName {
            prefix: ".tmp-",
            suffix: "-curves.png",
        };
        let file = AtomicFile::create_named(&dir.path().join("curves.png"), name).unwrap();
        let temp = file
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let random = temp
            .strip_prefix(".tmp-")
            .and_then(|r| r.strip_suffix("-curves.png"))
            .unwrap();
        assert_eq!(random.len(), RANDOM_LEN, "{temp}");
    }

    #[test]
    fn a_writer_that_opens_the_path_is_committed_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        let file = AtomicFile::create(&path).unwrap();
        fs::write(file.path(), b"<svg/>").unwrap();
        file.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"<svg/>");
    }

    #[test]
    fn a_symbolic_link_is_followed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        fs::write(&real, b"old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn a_dangling_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("missing.json", &link).unwrap();
        let err = write_atomic(&link, b"x").unwrap_err();
        assert!(
            err.to_string().starts_with("following the symbolic link "),
            "{err}"
        );
        assert!(!dir.path().join("missing.json").exists());
    }

    #[test]
    fn a_directory_or_a_device_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(dir.path(), b"x").unwrap_err();
        assert!(matches!(
            err,
            WriteError::NotAFile {
                what: "a directory",
                ..
            }
        ));
        assert!(
            err.to_string()
                .ends_with("is a directory; not replacing it"),
            "{err}"
        );
        let err = write_atomic(Path::new("/dev/null"), b"x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/null is not a regular file; not replacing it"
        );
    }

    #[test]
    fn a_missing_folder_names_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-folder");
        let err = write_atomic(&missing.join("a.json"), b"x").unwrap_err();
        assert_eq!(err.path(), missing);
        assert!(
            err.to_string().starts_with("creating a temporary file in "),
            "{err}"
        );
    }
}
