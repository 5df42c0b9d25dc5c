//! Where the data comes from: the search order over directories, the download fallback, and
//! the cache of decompressed `.gz` files.
//!
//! The cache sits in `<dir>/.norma-cache/` when that can be written, else in the user cache
//! directory; the system directory is never written to (it belongs to the package manager).
//! Each cached file has a key file recording the source's path, size and modification time
//! and the decompressed size, so a changed source is decompressed again and a damaged cache
//! file is noticed.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::download::{self, FetchError};
use crate::idx::{self, FileSet};
use crate::{DataFile, DatasetError, DatasetKind, LoadOptions, Result};

/// Name of the cache folder created next to `.gz` files.
pub const CACHE_DIR_NAME: &str = ".norma-cache";

const KEY_HEADER: &str = "norma-datasets decompression cache v1";

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
    /// its decompressed copy in the cache.
    pub files: [PathBuf; 4],
    /// The cache directory used for `.gz` files, if any file was gzipped.
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
    NoDir,
    Nothing,
    Partial { missing: DataFile, present: usize },
    Complete([SourceFile; 4]),
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn inspect(dir: &Path) -> Inspection {
    if !dir.is_dir() {
        return Inspection::NoDir;
    }
    let found = DataFile::ALL.map(|file| {
        let raw = dir.join(file.file_name());
        let gz = dir.join(file.gz_name());
        if raw.is_file() {
            Some(SourceFile {
                path: raw,
                gz: false,
            })
        } else if gz.is_file() {
            Some(SourceFile { path: gz, gz: true })
        } else {
            None
        }
    });
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
        match inspect(&dir) {
            Inspection::NoDir => looked.push(format!("{place}: no such directory")),
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
    match inspect(&local) {
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

/// Makes every file readable as extracted IDX: extracted sources are used in place, `.gz`
/// sources are decompressed into the cache unless an up-to-date copy is already there.
pub(crate) fn prepare(
    options: &LoadOptions,
    located: &Located,
) -> Result<(FileSet, Option<PathBuf>, usize)> {
    let shown = located.files.clone().map(|f| f.path);
    let mut read = shown.clone();
    let mut cache_dir = None;
    let mut decompressed = 0;
    for file in DataFile::ALL {
        let source = &located.files[file.index()];
        if !source.gz {
            continue;
        }
        let cache = match &cache_dir {
            Some(dir) => dir,
            None => cache_dir.insert(choose_cache_dir(options, located)?),
        };
        let (path, fresh) = cached_copy(options.kind, file, &source.path, cache)?;
        read[file.index()] = path;
        decompressed += usize::from(fresh);
    }
    Ok((FileSet { read, shown }, cache_dir, decompressed))
}

fn choose_cache_dir(options: &LoadOptions, located: &Located) -> Result<PathBuf> {
    if located.origin != Origin::System {
        let beside = located.dir.join(CACHE_DIR_NAME);
        if is_writable_dir(&beside) {
            return Ok(beside);
        }
    }
    let user = options.resolved_user_cache_dir();
    fs::create_dir_all(&user)
        .map_err(|e| DatasetError::io("creating the cache directory", &user, e))?;
    Ok(user)
}

/// True when `dir` exists (or can be created) and a file can be created in it; as root,
/// permission bits say nothing, so this tries instead of inspecting modes.
fn is_writable_dir(dir: &Path) -> bool {
    fs::create_dir_all(dir).is_ok() && tempfile::tempfile_in(dir).is_ok()
}

/// The cache key of `source`: its identity and version, without the decompressed size.
fn source_key(source: &Path) -> Result<String> {
    let meta =
        fs::metadata(source).map_err(|e| DatasetError::io("reading the size of", source, e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(
            || "unknown".to_string(),
            |d| format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        );
    let canonical = fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
    Ok(format!(
        "{KEY_HEADER}\nsource={}\nsize={}\nmodified={modified}\n",
        canonical.display(),
        meta.len()
    ))
}

/// Whether `cached` is the decompression of the source described by `key`.
fn cache_is_fresh(cached: &Path, key_file: &Path, key: &str) -> bool {
    if key.contains("modified=unknown") {
        return false;
    }
    let Ok(stored) = fs::read_to_string(key_file) else {
        return false;
    };
    let Some(size) = stored
        .strip_prefix(key)
        .and_then(|rest| rest.strip_prefix("decompressed="))
        .and_then(|rest| rest.trim_end().parse::<u64>().ok())
    else {
        return false;
    };
    fs::metadata(cached).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// Returns the decompressed copy of `source` in `cache` and whether it was (re)made now.
fn cached_copy(
    kind: DatasetKind,
    file: DataFile,
    source: &Path,
    cache: &Path,
) -> Result<(PathBuf, bool)> {
    let cached = cache.join(file.file_name());
    let key_file = cache.join(format!("{}.key", file.file_name()));
    let key = source_key(source)?;
    if cache_is_fresh(&cached, &key_file, &key) {
        return Ok((cached, false));
    }
    let size = decompress(kind, file, source, &cached)?;
    write_atomically(&key_file, format!("{key}decompressed={size}\n").as_bytes())?;
    Ok((cached, true))
}

fn gzip_error(kind: DatasetKind, source: &Path, e: io::Error) -> DatasetError {
    match e.kind() {
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            DatasetError::CorruptGzip {
                dataset: kind,
                file: source.to_path_buf(),
                reason: e.to_string(),
            }
        }
        _ => DatasetError::io("reading", source, e),
    }
}

/// Decompresses `source` into `dest` (through a temporary file, so `dest` is complete or
/// absent) and returns the decompressed size.
///
/// Output is capped at the size of a correct file so that a wrong or hostile archive cannot
/// fill the disk; past the cap the bytes are only counted, and the header decides the error.
fn decompress(kind: DatasetKind, file: DataFile, source: &Path, dest: &Path) -> Result<u64> {
    let input = File::open(source).map_err(|e| DatasetError::io("opening", source, e))?;
    let source_len = input
        .metadata()
        .map_err(|e| DatasetError::io("reading the size of", source, e))?
        .len();
    if source_len == 0 {
        return Err(DatasetError::EmptyFile {
            dataset: kind,
            file: source.to_path_buf(),
        });
    }
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".decompressing-")
        .tempfile_in(dir)
        .map_err(|e| DatasetError::io("creating a temporary file in", dir, e))?;
    let mut decoder = MultiGzDecoder::new(BufReader::new(input));
    let cap = idx::full_size(file);
    let header = idx::header_len(file);
    let mut head = Vec::with_capacity(header);
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(gzip_error(kind, source, e)),
        };
        let chunk = &buf[..n];
        if head.len() < header {
            let take = (header - head.len()).min(n);
            head.extend_from_slice(&chunk[..take]);
        }
        if total + n as u64 <= cap {
            tmp.write_all(chunk)
                .map_err(|e| DatasetError::io("writing", tmp.path(), e))?;
        }
        total += n as u64;
    }
    if total > cap {
        let count = idx::check_header(kind, source, file, &head, total)?;
        return Err(DatasetError::WrongCount {
            dataset: kind,
            file: source.to_path_buf(),
            expected: file.expected_count(),
            found: count,
        });
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| DatasetError::io("writing", tmp.path(), e))?;
    tmp.persist(dest)
        .map_err(|e| DatasetError::io("renaming a temporary file to", dest, e.error))?;
    Ok(total)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".writing-")
        .tempfile_in(dir)
        .map_err(|e| DatasetError::io("creating a temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| DatasetError::io("writing", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| DatasetError::io("renaming a temporary file to", path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn labels(n: u32) -> Vec<u8> {
        let mut v = idx::LABELS_MAGIC.to_be_bytes().to_vec();
        v.extend_from_slice(&n.to_be_bytes());
        v.extend((0..n).map(|i| (i % 10) as u8));
        v
    }

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

    #[test]
    fn decompression_is_cached_and_redone_when_the_source_changes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("t10k-labels-idx1-ubyte.gz");
        fs::write(&src, gz(&labels(10_000))).unwrap();
        let cache = dir.path().join("cache");
        fs::create_dir(&cache).unwrap();
        let kind = DatasetKind::Mnist;
        let (path, fresh) = cached_copy(kind, DataFile::TestLabels, &src, &cache).unwrap();
        assert!(fresh);
        assert_eq!(fs::read(&path).unwrap(), labels(10_000));
        let (_, fresh) = cached_copy(kind, DataFile::TestLabels, &src, &cache).unwrap();
        assert!(!fresh, "an unchanged source must reuse the cache");

        // A damaged cache file (wrong size) is noticed and rebuilt.
        fs::write(&path, b"junk").unwrap();
        let (_, fresh) = cached_copy(kind, DataFile::TestLabels, &src, &cache).unwrap();
        assert!(fresh);
        assert_eq!(fs::read(&path).unwrap(), labels(10_000));

        // A changed source (other size) is decompressed again.
        fs::write(&src, gz(&labels(9_999))).unwrap();
        let (path, fresh) = cached_copy(kind, DataFile::TestLabels, &src, &cache).unwrap();
        assert!(fresh);
        assert_eq!(fs::read(&path).unwrap(), labels(9_999));
    }

    #[test]
    fn oversized_archives_are_not_written_out() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("t10k-labels-idx1-ubyte.gz");
        fs::write(&src, gz(&labels(20_000))).unwrap();
        let dest = dir.path().join("out");
        let e = decompress(DatasetKind::Mnist, DataFile::TestLabels, &src, &dest).unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::WrongCount {
                    expected: 10_000,
                    found: 20_000,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!dest.exists());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn corrupt_and_cut_archives_are_corrupt_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let good = gz(&labels(10_000));
        let src = dir.path().join("t10k-labels-idx1-ubyte.gz");
        let dest = dir.path().join("out");
        let cases: Vec<Vec<u8>> = vec![
            b"this is not gzip at all".to_vec(),
            good[..good.len() / 2].to_vec(),
            {
                let mut v = good.clone();
                let mid = v.len() / 2;
                v[mid] ^= 0xff;
                v[mid + 1] ^= 0x55;
                v
            },
            {
                // Damaged CRC in the trailer.
                let mut v = good.clone();
                let end = v.len() - 8;
                v[end] ^= 1;
                v
            },
        ];
        for bytes in cases {
            fs::write(&src, &bytes).unwrap();
            let e = decompress(DatasetKind::Mnist, DataFile::TestLabels, &src, &dest).unwrap_err();
            assert!(matches!(e, DatasetError::CorruptGzip { .. }), "{e}");
            assert!(e.to_string().contains("t10k-labels-idx1-ubyte.gz"), "{e}");
            assert!(!dest.exists());
        }
    }
}
