//! [`LoadOptions`]: where to look for a dataset, whether and from where to download it, and
//! how to split it. Every place is injectable so tests can use temporary directories and a
//! local HTTP server.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::kind::DATA_DIR_ENV;
use crate::{DataFile, Dataset, DatasetError, DatasetKind, Result};

/// How to find, fetch and split a dataset. Start from [`LoadOptions::new`] (or
/// `FashionMnist::options()`), adjust, then call [`LoadOptions::load`].
///
/// Places are tried in this order, the first holding all four files wins:
/// 1. the explicit directory ([`LoadOptions::data_dir`], else the `NORMA_DATA_DIR`
///    environment variable), first its `<name>/` subfolder, then the directory itself. When
///    one is given it must hold the data: the search stops there with an error rather than
///    silently training on another copy;
/// 2. the local directory, `./data/<name>/` by default ([`LoadOptions::local_dir`]);
/// 3. the system directory, Debian's `/usr/share/datasets/fashion-mnist/` for Fashion-MNIST
///    ([`LoadOptions::system_dir`]);
/// 4. a download of the missing `.gz` archives into the local directory
///    ([`LoadOptions::download`]), each checked against its known SHA-256.
///
/// In each directory a file may be extracted (`train-images-idx3-ubyte`) or gzipped
/// (`train-images-idx3-ubyte.gz`); the extracted one is preferred when both exist.
///
/// Only the download writes into one of these directories (the local one; if it fails, the
/// directories it created are removed again when empty). `.gz` files are decompressed into
/// the user cache directory ([`LoadOptions::user_cache_dir`]), never beside the data.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub(crate) kind: DatasetKind,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) read_env: bool,
    pub(crate) local_dir: PathBuf,
    pub(crate) system_dir: Option<PathBuf>,
    pub(crate) download: bool,
    pub(crate) mirror: String,
    pub(crate) archive_sha256: [String; 4],
    pub(crate) timeout: Duration,
    pub(crate) user_cache_dir: Option<PathBuf>,
    pub(crate) validation: usize,
}

impl LoadOptions {
    /// The defaults for `kind`: no explicit directory (but `NORMA_DATA_DIR` is read),
    /// `./data/<name>/`, the system directory if the dataset has one, downloads enabled from
    /// the official mirror with the official checksums, a 30 s network timeout, no
    /// validation split.
    pub fn new(kind: DatasetKind) -> Self {
        LoadOptions {
            kind,
            data_dir: None,
            read_env: true,
            local_dir: Path::new("data").join(kind.name()),
            system_dir: kind.system_dir(),
            download: true,
            mirror: kind.default_mirror().to_string(),
            archive_sha256: kind.archive_sha256().map(str::to_string),
            timeout: Duration::from_secs(30),
            user_cache_dir: None,
            validation: 0,
        }
    }

    /// The dataset these options load.
    pub fn kind(&self) -> DatasetKind {
        self.kind
    }

    /// An explicit directory to look in first (e.g. from `--data-dir`). When `None`, the
    /// `NORMA_DATA_DIR` environment variable is used instead (unless disabled by
    /// [`LoadOptions::read_env`]).
    pub fn data_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.data_dir = dir;
        self
    }

    /// Whether `NORMA_DATA_DIR` is consulted when no explicit directory is given (default true).
    pub fn read_env(mut self, read: bool) -> Self {
        self.read_env = read;
        self
    }

    /// The local directory: searched after the explicit one, and where downloads are saved.
    /// Default `data/<name>` relative to the working directory.
    pub fn local_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.local_dir = dir.into();
        self
    }

    /// The system-wide directory searched after the local one (`None` to skip it).
    pub fn system_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.system_dir = dir;
        self
    }

    /// Whether missing files may be downloaded (default true).
    pub fn download(mut self, enabled: bool) -> Self {
        self.download = enabled;
        self
    }

    /// Base URL the archives are downloaded from; `/<file>.gz` is appended.
    pub fn mirror(mut self, url: impl Into<String>) -> Self {
        self.mirror = url.into();
        self
    }

    /// Expected SHA-256 (hex) of the four downloaded archives, in [`crate::DataFile::ALL`]
    /// order. Defaults to the official archives' checksums.
    pub fn archive_sha256(mut self, sha256: [String; 4]) -> Self {
        self.archive_sha256 = sha256;
        self
    }

    /// Network timeout for connecting and for each read of a download (default 30 s): a
    /// stalled transfer fails instead of hanging, a slow but moving one completes.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The cache directory `.gz` files are decompressed into (one folder per source
    /// directory inside it; data directories themselves are never written to).
    ///
    /// Default `$XDG_CACHE_HOME/norma/<name>`, else `$HOME/.cache/norma/<name>`; when neither
    /// variable holds an absolute path, or that directory cannot be created or written, each
    /// load decompresses into a temporary directory removed afterwards. A directory set here
    /// must be usable: failing to create it is an error.
    pub fn user_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.user_cache_dir = Some(dir.into());
        self
    }

    /// Number of training images to hold out as a validation split: the **last** `count`
    /// images of the training file (the file's order is already random), so the split is
    /// the same on every run. `0` (the default) means no validation split.
    pub fn validation(mut self, count: usize) -> Self {
        self.validation = count;
        self
    }

    /// Finds (or downloads), validates and loads the dataset.
    ///
    /// Options that cannot work (an empty path, a zero timeout, a checksum that is not 64
    /// hexadecimal digits, a validation split of the whole training set) are
    /// [`DatasetError::InvalidArgument`] before anything is read or written.
    pub fn load(&self) -> Result<Dataset> {
        self.check()?;
        crate::dataset::load(self)
    }

    /// Rejects options that cannot work (see [`LoadOptions::load`]).
    pub(crate) fn check(&self) -> Result<()> {
        let invalid = |msg: String| Err(DatasetError::InvalidArgument(msg));
        // An empty path joins to relative paths: it would quietly mean the working directory.
        let paths = [
            ("data directory (--data-dir)", self.data_dir.as_deref()),
            ("local directory", Some(self.local_dir.as_path())),
            ("system directory", self.system_dir.as_deref()),
            ("user cache directory", self.user_cache_dir.as_deref()),
        ];
        for (what, path) in paths {
            if path.is_some_and(|p| p.as_os_str().is_empty()) {
                return invalid(format!(
                    "the {what} is an empty path; name a directory (or leave it unset)"
                ));
            }
        }
        if self.timeout.is_zero() {
            return invalid("the network timeout must be longer than zero".to_string());
        }
        for (file, sha) in DataFile::ALL.iter().zip(&self.archive_sha256) {
            let sha = sha.trim();
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return invalid(format!(
                    "the expected SHA-256 of {} is not 64 hexadecimal digits: {sha:?}",
                    file.gz_name()
                ));
            }
        }
        let train_len = DataFile::TrainImages.expected_count();
        if self.validation >= train_len {
            return invalid(format!(
                "a validation split of {} images leaves no training image ({train_len} in all)",
                self.validation
            ));
        }
        Ok(())
    }

    /// The explicit directory in force and where it came from: the argument, else
    /// `NORMA_DATA_DIR` (empty counts as unset).
    pub(crate) fn explicit_dir(&self) -> Option<(PathBuf, crate::Origin)> {
        let env = if self.read_env {
            std::env::var_os(DATA_DIR_ENV)
        } else {
            None
        };
        explicit_dir(self.data_dir.as_deref(), env)
    }

    /// The cache directory set by [`LoadOptions::user_cache_dir`], if any.
    pub(crate) fn chosen_user_cache_dir(&self) -> Option<&Path> {
        self.user_cache_dir.as_deref()
    }

    /// The default cache directory of this dataset, from the environment (see
    /// [`LoadOptions::user_cache_dir`]); `None` when no absolute location is known.
    pub(crate) fn default_user_cache_dir(&self) -> Option<PathBuf> {
        user_cache_root(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
            .map(|root| root.join("norma").join(self.kind.name()))
    }
}

/// The user's cache directory following the XDG base directory rules: `$XDG_CACHE_HOME`, else
/// `$HOME/.cache`; a relative or empty value counts as unset.
pub(crate) fn user_cache_root(xdg: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    absolute(xdg).or_else(|| absolute(home).map(|home| home.join(".cache")))
}

/// The explicit directory: `arg` wins over the environment variable's value `env`.
pub(crate) fn explicit_dir(
    arg: Option<&Path>,
    env: Option<OsString>,
) -> Option<(PathBuf, crate::Origin)> {
    if let Some(dir) = arg {
        return Some((dir.to_path_buf(), crate::Origin::Argument));
    }
    env.filter(|v| !v.is_empty())
        .map(|v| (PathBuf::from(v), crate::Origin::EnvVar))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Origin;

    #[test]
    fn argument_wins_over_env_and_empty_env_is_unset() {
        let arg = Path::new("/from/arg");
        assert_eq!(
            explicit_dir(Some(arg), Some("/from/env".into())),
            Some((arg.to_path_buf(), Origin::Argument))
        );
        assert_eq!(
            explicit_dir(None, Some("/from/env".into())),
            Some((PathBuf::from("/from/env"), Origin::EnvVar))
        );
        assert_eq!(explicit_dir(None, Some("".into())), None);
        assert_eq!(explicit_dir(None, None), None);
    }

    #[test]
    fn defaults_per_dataset() {
        let f = LoadOptions::new(DatasetKind::FashionMnist);
        assert_eq!(f.local_dir, Path::new("data/fashion-mnist"));
        assert_eq!(
            f.system_dir.as_deref(),
            Some(Path::new("/usr/share/datasets/fashion-mnist"))
        );
        let m = LoadOptions::new(DatasetKind::Mnist);
        assert_eq!(m.local_dir, Path::new("data/mnist"));
        assert_eq!(m.system_dir, None);
        assert!(m.mirror.starts_with("https://"));
        assert_eq!(m.chosen_user_cache_dir(), None);
        let m = m.user_cache_dir("/c");
        assert_eq!(m.chosen_user_cache_dir(), Some(Path::new("/c")));
    }

    fn invalid(options: LoadOptions) -> String {
        match options.check() {
            Err(crate::DatasetError::InvalidArgument(msg)) => msg,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn unusable_options_are_rejected_before_anything_is_read() {
        let f = || LoadOptions::new(DatasetKind::FashionMnist);
        assert!(f().check().is_ok());
        // An empty path would silently mean the working directory.
        let msg = invalid(f().data_dir(Some(PathBuf::new())));
        assert!(
            msg.contains("data directory") && msg.contains("empty"),
            "{msg}"
        );
        assert!(invalid(f().local_dir("")).contains("local directory"));
        assert!(invalid(f().system_dir(Some("".into()))).contains("system directory"));
        assert!(invalid(f().user_cache_dir("")).contains("cache directory"));
        let msg = invalid(f().timeout(Duration::ZERO));
        assert!(msg.contains("timeout"), "{msg}");
        let mut sha = f().archive_sha256.clone();
        sha[2] = "abc".to_string();
        let msg = invalid(f().archive_sha256(sha));
        assert!(msg.contains("t10k-images-idx3-ubyte.gz"), "{msg}");
        assert!(msg.contains("\"abc\""), "{msg}");
        let upper = f().archive_sha256.clone().map(|h| h.to_uppercase());
        assert!(f().archive_sha256(upper).check().is_ok(), "hex in any case");
        let msg = invalid(f().validation(60_000));
        assert!(msg.contains("validation"), "{msg}");
    }

    #[test]
    fn user_cache_root_follows_xdg_then_home() {
        let root = |xdg: Option<&str>, home: Option<&str>| {
            user_cache_root(xdg.map(Into::into), home.map(Into::into))
        };
        assert_eq!(root(Some("/x"), Some("/h")), Some(PathBuf::from("/x")));
        assert_eq!(root(None, Some("/h")), Some(PathBuf::from("/h/.cache")));
        assert_eq!(
            root(Some("rel"), Some("/h")),
            Some(PathBuf::from("/h/.cache"))
        );
        assert_eq!(root(Some(""), None), None);
        assert_eq!(root(None, Some("relative-home")), None);
        assert_eq!(root(None, None), None);
    }
}
