//! norma's own temporary files: how they are named, and removing those a killed process left.
//!
//! Every file this crate writes (a download, a decompressed copy, a cache key) is written to a
//! temporary file in the destination's directory and then renamed over its final name, so a
//! final name always holds a complete file. A process killed in between leaves its temporary
//! file behind. Those are named `<prefix><6 random letters or digits><suffix>`, and a
//! *leftover* is a regular file matching one of these patterns that has not been modified for
//! [`STALE_AFTER`]: a live writer touches its file continually (a download gives up after 30 s
//! without data), so such a file belongs to a process that is gone. Nothing else is removed.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use norma_io::{AtomicFile, TempName, WriteError};

use crate::{DatasetError, Result};

/// How long a temporary file must have been left untouched to count as a leftover.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(60 * 60);

/// Random characters in a temporary name (the leftover patterns depend on it).
const RANDOM_LEN: usize = norma_io::RANDOM_LEN;

/// One naming pattern of temporary files.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TempKind {
    prefix: &'static str,
    suffix: &'static str,
}

/// An archive being downloaded, in the download directory.
pub(crate) const DOWNLOAD: TempKind = TempKind {
    prefix: ".download-",
    suffix: ".part",
};

/// A `.gz` file being decompressed, in the cache.
pub(crate) const DECOMPRESS: TempKind = TempKind {
    prefix: ".decompressing-",
    suffix: "",
};

/// A small file (a cache key) being written, in the cache.
pub(crate) const WRITE: TempKind = TempKind {
    prefix: ".writing-",
    suffix: "",
};

impl TempKind {
    /// Starts replacing `dest` atomically, through a temporary file of this kind in its folder;
    /// the temporary file is deleted when dropped unless committed.
    pub(crate) fn create_for(self, dest: &Path) -> Result<AtomicFile> {
        let name = TempName {
            prefix: self.prefix,
            suffix: self.suffix,
        };
        AtomicFile::create_named(dest, name).map_err(write_error)
    }

    /// Whether `name` is a name this kind of temporary file could have.
    fn matches(self, name: &str) -> bool {
        name.strip_prefix(self.prefix)
            .and_then(|rest| rest.strip_suffix(self.suffix))
            .is_some_and(|random| {
                random.len() == RANDOM_LEN && random.bytes().all(|b| b.is_ascii_alphanumeric())
            })
    }
}

/// A failed atomic write as this crate reports it.
pub(crate) fn write_error(error: WriteError) -> DatasetError {
    match error {
        WriteError::Io {
            action,
            path,
            source,
        } => DatasetError::io(action, path, source),
        not_a_file @ WriteError::NotAFile { .. } => {
            let path = not_a_file.path().to_path_buf();
            DatasetError::io(
                "replacing",
                path,
                std::io::Error::other(not_a_file.to_string()),
            )
        }
    }
}

/// Removes from `dir` the leftover temporary files of `kinds` (see the module docs) and
/// returns how many were removed.
///
/// Best effort: a leftover only costs disk space, so a directory that cannot be listed or a
/// file that cannot be removed is skipped silently.
pub(crate) fn remove_leftovers(dir: &Path, kinds: &[TempKind]) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !kinds.iter().any(|kind| kind.matches(name)) {
            continue;
        }
        // `DirEntry::metadata` does not follow symbolic links: a link is never removed.
        let stale = entry.metadata().is_ok_and(|meta| {
            meta.is_file()
                && meta
                    .modified()
                    .ok()
                    .and_then(|modified| now.duration_since(modified).ok())
                    .is_some_and(|age| age > STALE_AFTER)
        });
        if stale && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_only_their_pattern() {
        assert!(DOWNLOAD.matches(".download-aZ09bY.part"));
        assert!(!DOWNLOAD.matches(".download-aZ09bY"));
        assert!(!DOWNLOAD.matches(".download-aZ09b.part"));
        assert!(!DOWNLOAD.matches(".download-aZ0-bY.part"));
        assert!(!DOWNLOAD.matches("x.download-aZ09bY.part"));
        assert!(DECOMPRESS.matches(".decompressing-q1w2e3"));
        assert!(!DECOMPRESS.matches(".decompressing-q1w2e3.txt"));
        assert!(WRITE.matches(".writing-000000"));
        assert!(!WRITE.matches("train-images-idx3-ubyte"));
    }

    #[test]
    fn created_files_match_their_own_pattern() {
        let dir = tempfile::tempdir().unwrap();
        for kind in [DOWNLOAD, DECOMPRESS, WRITE] {
            let tmp = kind.create_for(&dir.path().join("file")).unwrap();
            let name = tmp.path().file_name().unwrap().to_str().unwrap();
            assert!(kind.matches(name), "{name}");
        }
    }

    #[test]
    fn only_old_files_of_the_given_kinds_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - 2 * STALE_AFTER;
        let make = |name: &str, modified: Option<SystemTime>| {
            let path = dir.path().join(name);
            let file = fs::File::create(&path).unwrap();
            if let Some(t) = modified {
                file.set_modified(t).unwrap();
            }
        };
        make(".download-aaaaaa.part", Some(old));
        make(".writing-bbbbbb", Some(old));
        make(".download-cccccc.part", None);
        make("train-images-idx3-ubyte", Some(old));
        fs::create_dir(dir.path().join(".download-dddddd.part")).unwrap();
        assert_eq!(remove_leftovers(dir.path(), &[DOWNLOAD]), 1);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".download-cccccc.part",
                ".download-dddddd.part",
                ".writing-bbbbbb",
                "train-images-idx3-ubyte"
            ]
        );
        assert_eq!(remove_leftovers(&dir.path().join("absent"), &[WRITE]), 0);
    }
}
