//! Where the data comes from: the search order over directories, what is found at each
//! file's path, and the download fallback. Decompression is in [`crate::cache`].

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::download::{self, FetchError};
use crate::{DataFile, DatasetError, DatasetKind, LoadOptions, Result};

/// Name of the cache folder that earlier versions of norma created next to `.gz` files.
///
/// It is no longer written (decompressed copies go to the user cache directory, see
/// [`LoadOptions::user_cache_dir`]); a leftover `.norma-cache/` can be deleted safely.
pub const CACHE_DIR_NAME: &str = ".norma-cache";

/// Which search step found the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The directory passed as an argument (`--data-dir`).
    Argument,
    /// The directory named by `NORMA_DATA_DIR`.
    EnvVar,
    /// The local directory (`./data/<name>/`), already holding the files.
    Local,
    /// The system directory (Debian's package).
    System,
    /// Downloaded during this load into the local directory.
    Downloaded,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Argument => "--data-dir",
            Origin::EnvVar => "NORMA_DATA_DIR",
            Origin::Local => "local data directory",
            Origin::System => "system directory",
            Origin::Downloaded => "downloaded",
        })
    }
}

/// Where a loaded dataset was found, for the experiment to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLocation {
    /// The directory holding the four files (absolute).
    pub dir: PathBuf,
    /// Which search step found it.
    pub origin: Origin,
    /// The four files actually parsed, in [`DataFile::ALL`] order: the extracted file, or
    /// its decompressed copy in the cache (the `.gz` file itself when it was decompressed
    /// into a temporary directory, which is gone once loading is done).
    pub files: [PathBuf; 4],
    /// The cache directory holding the decompressed copies of this source's `.gz` files
    /// (inside [`LoadOptions::user_cache_dir`]); `None` when every file was extracted or no
    /// cache directory could be used.
    pub cache_dir: Option<PathBuf>,
    /// Files decompressed by this load (0 when the cache was reused).
    pub decompressed: usize,
    /// Archives downloaded by this load.
    pub downloaded: usize,
}

impl fmt::Display for DataLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.dir.display(), self.origin)?;
        if let Some(cache) = &self.cache_dir {
            write!(f, ", decompressed copies in {}", cache.display())?;
        } else if self.decompressed > 0 {
            f.write_str(", decompressed into a temporary directory (no usable cache directory)")?;
        }
        Ok(())
    }
}

/// A data file as found in a directory.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub path: PathBuf,
    pub gz: bool,
}

/// The directory that holds the four files.
#[derive(Debug)]
pub(crate) struct Located {
    pub dir: PathBuf,
    pub origin: Origin,
    pub files: [SourceFile; 4],
    pub downloaded: usize,
}

enum Inspection {
    /// No usable directory at this path; says what is there instead.
    NoDir(String),
    Nothing,
    Partial {
        missing: DataFile,
        present: usize,
    },
    Complete([SourceFile; 4]),
    /// Something that cannot be a data file sits at a data file's path.
    Bad(DatasetError),
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What is at the path of a data file.
enum Entry {
    Absent,
    /// A regular file (possibly through a symbolic link) that can be opened.
    File,
    Bad(DatasetError),
}

/// Looks at `path` without reading it: only regular files are opened (a named pipe could
/// block forever), and each other kind of entry is its own error.
fn probe(kind: DatasetKind, path: &Path) -> Entry {
    let file = path.to_path_buf();
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => match File::open(path) {
            Ok(_) => Entry::File,
            Err(e) => Entry::Bad(DatasetError::access(kind, "opening", path, e)),
        },
        Ok(meta) if meta.is_dir() => Entry::Bad(DatasetError::IsDirectory {
            dataset: kind,
            file,
        }),
        Ok(_) => Entry::Bad(DatasetError::SpecialFile {
            dataset: kind,
            file,
        }),
        // `metadata` follows links, `symlink_metadata` does not: a link whose target cannot
        // be reached is told apart from nothing at all.
        Err(source) if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) => {
            Entry::Bad(DatasetError::BrokenSymlink {
                dataset: kind,
                file,
                source,
            })
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Entry::Absent
        }
        Err(e) => Entry::Bad(DatasetError::access(
            kind,
            "reading the metadata of",
            path,
            e,
        )),
    }
}

/// Why `dir` cannot be searched, in a few words, or `None` when it is a directory.
fn not_a_directory(dir: &Path) -> Option<String> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => None,
        Ok(meta) if meta.is_file() => Some("a file, not a directory".to_string()),
        Ok(_) => Some("not a directory".to_string()),
        Err(_) if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) => {
            Some("a symbolic link that cannot be resolved (loop or dangling)".to_string())
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Some("no such directory".to_string())
        }
        Err(e) => Some(format!("cannot be read: {e}")),
    }
}

/// The data file `file` in `dir`: the extracted one if it is a usable file, else the `.gz`
/// one; `Err` when neither is usable and something stands at one of their paths.
fn find_file(kind: DatasetKind, dir: &Path, file: DataFile) -> Result<Option<SourceFile>> {
    let raw = dir.join(file.file_name());
    let gz = dir.join(file.gz_name());
    let raw_problem = match probe(kind, &raw) {
        Entry::File => {
            return Ok(Some(SourceFile {
                path: raw,
                gz: false,
            }))
        }
        Entry::Absent => None,
        Entry::Bad(e) => Some(e),
    };
    // A folder named like the extracted file beside a good archive (some tools extract
    // `x.gz` into `x/`) does not stop the archive from being used.
    match (probe(kind, &gz), raw_problem) {
        (Entry::File, _) => Ok(Some(SourceFile { path: gz, gz: true })),
        (_, Some(e)) | (Entry::Bad(e), None) => Err(e),
        (Entry::Absent, None) => Ok(None),
    }
}

fn inspect(kind: DatasetKind, dir: &Path) -> Inspection {
    if let Some(what) = not_a_directory(dir) {
        return Inspection::NoDir(what);
    }
    let mut found: [Option<SourceFile>; 4] = Default::default();
    for file in DataFile::ALL {
        match find_file(kind, dir, file) {
            Ok(source) => found[file.index()] = source,
            Err(e) => return Inspection::Bad(e),
        }
    }
    let present = found.iter().filter(|f| f.is_some()).count();
    match found {
        [Some(a), Some(b), Some(c), Some(d)] => Inspection::Complete([a, b, c, d]),
        _ if present == 0 => Inspection::Nothing,
        _ => {
            let missing = DataFile::ALL
                .into_iter()
                .zip(&found)
                .find(|(_, f)| f.is_none())
                .map_or(DataFile::TrainImages, |(file, _)| file);
            Inspection::Partial { missing, present }
        }
    }
}

/// The directories to search, in order, without repeats.
fn candidates(options: &LoadOptions) -> Vec<(PathBuf, Origin)> {
    let mut list: Vec<(PathBuf, Origin)> = Vec::new();
    if let Some((dir, origin)) = options.explicit_dir() {
        // A directory holding several datasets (one folder per name) and one holding the
        // files directly are both accepted; the named folder is more specific, so it goes first.
        list.push((dir.join(options.kind.name()), origin));
        list.push((dir, origin));
    }
    list.push((options.local_dir.clone(), Origin::Local));
    if let Some(dir) = &options.system_dir {
        list.push((dir.clone(), Origin::System));
    }
    let mut unique: Vec<(PathBuf, Origin)> = Vec::new();
    for (dir, origin) in list {
        let dir = absolute(&dir);
        if !unique.iter().any(|(d, _)| *d == dir) {
            unique.push((dir, origin));
        }
    }
    unique
}

/// Finds the directory holding the four files, downloading them as a last resort.
pub(crate) fn locate(options: &LoadOptions) -> Result<Located> {
    let kind = options.kind;
    let local = absolute(&options.local_dir);
    let mut looked = Vec::new();
    let all = candidates(options);
    // A directory the user named (--data-dir, NORMA_DATA_DIR) must hold the data: falling
    // back to another copy would silently train on data they did not ask for.
    let explicit = all
        .iter()
        .filter(|(_, o)| matches!(o, Origin::Argument | Origin::EnvVar))
        .count();
    for (i, (dir, origin)) in all.into_iter().enumerate() {
        if i == explicit && explicit > 0 {
            return Err(DatasetError::NotFound {
                dataset: kind,
                looked,
            });
        }
        let place = format!("{} ({origin})", dir.display());
        match inspect(kind, &dir) {
            Inspection::NoDir(what) => looked.push(format!("{place}: {what}")),
            Inspection::Bad(e) => return Err(e),
            Inspection::Nothing => looked.push(format!("{place}: none of the four files")),
            Inspection::Partial { missing, present } => {
                // An interrupted download leaves some archives in the local directory; the
                // download step below completes it. Anywhere else, an incomplete set is a
                // mistake worth reporting rather than silently skipping.
                if options.download && dir == local {
                    looked.push(format!(
                        "{place}: {present} of the 4 files, to be completed by download"
                    ));
                } else {
                    return Err(DatasetError::MissingFile {
                        dataset: kind,
                        file: dir.join(missing.file_name()),
                        dir,
                    });
                }
            }
            Inspection::Complete(files) => {
                return Ok(Located {
                    dir,
                    origin,
                    files,
                    downloaded: 0,
                })
            }
        }
    }
    if !options.download {
        looked.push("download: disabled".to_string());
        return Err(DatasetError::NotFound {
            dataset: kind,
            looked,
        });
    }
    let downloaded = match download::fetch_missing(options, &local) {
        Ok(n) => n,
        Err(FetchError::Unreachable { url, reason }) => {
            looked.push(format!("download {url}: {reason}"));
            return Err(DatasetError::NotFound {
                dataset: kind,
                looked,
            });
        }
        Err(FetchError::Fatal(e)) => return Err(e),
    };
    match inspect(kind, &local) {
        Inspection::Bad(e) => Err(e),
        Inspection::Complete(files) => Ok(Located {
            dir: local,
            origin: Origin::Downloaded,
            files,
            downloaded,
        }),
        // Only reachable if another process removes files while we download.
        _ => {
            looked.push(format!(
                "{}: files vanished after download",
                local.display()
            ));
            Err(DatasetError::NotFound {
                dataset: kind,
                looked,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_in_order_without_repeats() {
        let opts = LoadOptions::new(DatasetKind::FashionMnist)
            .read_env(false)
            .data_dir(Some("/d".into()))
            .local_dir("/d/fashion-mnist");
        let c = candidates(&opts);
        let dirs: Vec<_> = c.iter().map(|(d, o)| (d.to_str().unwrap(), *o)).collect();
        assert_eq!(
            dirs,
            [
                ("/d/fashion-mnist", Origin::Argument),
                ("/d", Origin::Argument),
                ("/usr/share/datasets/fashion-mnist", Origin::System),
            ]
        );
    }
}
