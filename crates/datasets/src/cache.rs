//! The cache of decompressed `.gz` files.
//!
//! The `mnist` crate parses extracted IDX files only, so each `.gz` source is decompressed
//! once into the user's cache directory and reused while the source is unchanged. Data
//! directories are never written to: they may belong to a package manager or to the user.
//!
//! Layout: `<cache>/<entry>/<file>` and `<file>.key`, where `<cache>` is
//! [`LoadOptions::user_cache_dir`] (default `$XDG_CACHE_HOME/norma/<name>`, else
//! `$HOME/.cache/norma/<name>`) and `<entry>` is one folder per source directory, named after
//! it plus a hash of its full path (`fashion-mnist-1f0c9a4e2b7d3c58`): two copies of a dataset
//! never overwrite each other's cache, and alternating between them decompresses nothing again.
//! A full entry is the size of the extracted dataset (55 MB for either dataset); deleting the
//! cache at any time is safe.
//!
//! Each key file records the source's canonical path, size and modification time and the
//! decompressed size, so a changed source is decompressed again and a damaged copy is noticed.
//!
//! Concurrency: every file is written to a temporary file and renamed over its final name,
//! data before key, so a cached name always holds a complete decompression. Two processes
//! decompressing the same source at once each rename an identical complete file, and both end
//! with a correct cache. Temporary files left by a killed process are removed later (see
//! [`crate::tempfiles`]).
//!
//! When no cache directory is known (neither variable set) or the default one cannot be
//! created or written, a load decompresses into a temporary directory removed afterwards.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

use crate::download::to_hex;
use crate::identity::{self, Hashing};
use crate::idx::{self, FileSet};
use crate::source::Located;
use crate::tempfiles::{self, write_error, DECOMPRESS, WRITE};
use crate::{DataFile, DatasetError, DatasetKind, LoadOptions, Result};

/// First line of every key file; also proves that a file in the cache is norma's.
/// v2: copies are made only of files checked not to be another dataset's ([`identity`]), so
/// v1 copies are made again.
const KEY_HEADER: &str = "norma-datasets decompression cache v2";
/// What every version's first line starts with.
const KEY_FAMILY: &str = "norma-datasets decompression cache v";

/// Where one load decompresses its `.gz` files.
#[derive(Debug)]
pub(crate) enum CacheDir {
    /// An entry of the user's cache directory, kept for later loads.
    Persistent(PathBuf),
    /// A directory deleted when this value is dropped (no usable cache directory).
    Temporary(tempfile::TempDir),
}

impl CacheDir {
    fn path(&self) -> &Path {
        match self {
            CacheDir::Persistent(dir) => dir,
            CacheDir::Temporary(dir) => dir.path(),
        }
    }
}

/// The four files made readable, and where their decompressed copies are.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// What to parse and what to name in errors.
    pub files: FileSet,
    /// Where `.gz` files were decompressed (`None` when every file was extracted). Keep it
    /// alive until parsing is done: a temporary directory is deleted with it.
    pub cache: Option<CacheDir>,
    /// Files decompressed by this load (0 when the cache was reused).
    pub decompressed: usize,
}

/// Makes every file readable as extracted IDX: extracted sources are used in place, `.gz`
/// sources are decompressed into the cache unless an up-to-date copy is already there.
pub(crate) fn prepare(options: &LoadOptions, located: &Located) -> Result<Prepared> {
    let shown = located.files.clone().map(|f| f.path);
    let mut read = shown.clone();
    let mut cache: Option<CacheDir> = None;
    let mut decompressed = 0;
    for file in DataFile::ALL {
        let source = &located.files[file.index()];
        if !source.gz {
            identity::check_file(options.kind, file, &source.path)?;
            continue;
        }
        let dir = match &cache {
            Some(dir) => dir,
            None => cache.insert(open_cache(options, &located.dir)?),
        };
        let (path, fresh) = cached_copy(options.kind, file, &source.path, dir.path())?;
        read[file.index()] = path;
        decompressed += usize::from(fresh);
    }
    Ok(Prepared {
        files: FileSet { read, shown },
        cache,
        decompressed,
    })
}

/// The cache entry for the `.gz` files of `source_dir` (see the module docs), created if
/// needed, with leftovers of killed processes and of the previous layout removed.
fn open_cache(options: &LoadOptions, source_dir: &Path) -> Result<CacheDir> {
    if let Some(root) = options.chosen_user_cache_dir() {
        let entry = root.join(entry_name(source_dir));
        fs::create_dir_all(&entry)
            .map_err(|e| DatasetError::io("creating the cache directory", &entry, e))?;
        return Ok(tidy(root, entry, source_dir));
    }
    if let Some(root) = options.default_user_cache_dir() {
        let entry = root.join(entry_name(source_dir));
        // As root, permission bits say nothing, so writability is tried, not inspected.
        let usable = fs::create_dir_all(&entry)
            .and_then(|()| tempfile::tempfile_in(&entry))
            .is_ok();
        if usable {
            return Ok(tidy(&root, entry, source_dir));
        }
    }
    tempfile::Builder::new()
        .prefix("norma-decompressed-")
        .tempdir()
        .map(CacheDir::Temporary)
        .map_err(|e| {
            // The cache was not usable either: say how to give the load somewhere to write.
            let action = "making a temporary folder to decompress into (no cache folder was \
                          usable either; point TMPDIR or XDG_CACHE_HOME at a folder you can write to)";
            DatasetError::io(action, std::env::temp_dir(), e)
        })
}

/// Removes what killed processes left in `entry` and the previous layout's copies in `root`,
/// and returns `entry` as the cache.
fn tidy(root: &Path, entry: PathBuf, source_dir: &Path) -> CacheDir {
    tempfiles::remove_leftovers(&entry, &[DECOMPRESS, WRITE]);
    remove_previous_layout(root, source_dir);
    CacheDir::Persistent(entry)
}

/// The name of the cache entry of `source_dir`: its last component (for people looking at
/// the cache) and 16 hex digits of the SHA-256 of its canonical path (to tell copies apart).
fn entry_name(source_dir: &Path) -> String {
    let canonical = fs::canonicalize(source_dir).unwrap_or_else(|_| source_dir.to_path_buf());
    let hash = to_hex(&Sha256::digest(canonical.as_os_str().as_encoded_bytes()));
    let label: String = canonical
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(32)
        .collect();
    let label = label.trim_start_matches('.');
    let label = if label.is_empty() { "data" } else { label };
    format!("{label}-{}", &hash[..16])
}

/// Removes the decompressed copies that earlier versions kept directly in `root`: a file is
/// removed only together with its key file, and only when the key proves it is norma's.
fn remove_previous_layout(root: &Path, source_dir: &Path) {
    // A root that is itself the data directory holds the user's files, not a cache.
    if fs::canonicalize(root).ok() == fs::canonicalize(source_dir).ok() {
        return;
    }
    for file in DataFile::ALL {
        let copy = root.join(file.file_name());
        let key = root.join(format!("{}.key", file.file_name()));
        let is_file = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
        let ours = is_file(&key)
            && fs::read_to_string(&key).is_ok_and(|text| text.starts_with(KEY_FAMILY));
        if ours && (!copy.exists() || is_file(&copy)) {
            let _ = fs::remove_file(&copy);
            let _ = fs::remove_file(&key);
        }
    }
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
    let input = File::open(source).map_err(|e| DatasetError::access(kind, "opening", source, e))?;
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
    let mut tmp = DECOMPRESS.create_for(dest)?;
    // Both the archive and its content are hashed on the way: either may be another
    // dataset's known file (a distribution's re-compressed archive has new archive bytes).
    let mut decoder = MultiGzDecoder::new(BufReader::new(Hashing::new(input)));
    let mut content = Sha256::new();
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
        content.update(chunk);
        if head.len() < header {
            let take = (header - head.len()).min(n);
            head.extend_from_slice(&chunk[..take]);
        }
        if total + n as u64 <= cap {
            tmp.write_all(chunk).map_err(write_error)?;
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
    let archive_sha256 = decoder.into_inner().into_inner().finish();
    identity::check(kind, file, source, &archive_sha256)?;
    identity::check(kind, file, source, &to_hex(&content.finalize()))?;
    tmp.commit().map_err(write_error)?;
    Ok(total)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = WRITE.create_for(path)?;
    tmp.write_all(bytes).map_err(write_error)?;
    tmp.commit().map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write as _;

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
    fn entry_names_tell_directories_apart_and_stay_readable() {
        let a = entry_name(Path::new("/srv/x/fashion-mnist"));
        let b = entry_name(Path::new("/srv/y/fashion-mnist"));
        assert!(a.starts_with("fashion-mnist-"), "{a}");
        assert_eq!(a.len(), "fashion-mnist-".len() + 16);
        assert_ne!(a, b);
        assert_eq!(a, entry_name(Path::new("/srv/x/fashion-mnist")));
        assert!(entry_name(Path::new("/")).starts_with("data-"));
        assert!(entry_name(Path::new("/d/..hidden dir!")).starts_with("hiddendir-"));
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
