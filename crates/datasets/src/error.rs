//! The one error type of `norma-datasets`: each variant is one kind of problem, names the file
//! (or every place looked), says what was wrong and, for data problems, how to get good data.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::DatasetKind;

/// Something went wrong while finding, downloading, validating or batching a dataset.
#[derive(Debug, Error)]
pub enum DatasetError {
    /// No place holds the data and it could not be downloaded; `looked` lists every place
    /// tried (each directory, and the URL with the reason the download failed).
    #[error("{} not found; looked in: {}. {}", .dataset, .looked.join("; "), .dataset.how_to_get())]
    NotFound {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// One line per place tried, with what was found there.
        looked: Vec<String>,
    },

    /// A directory holds some of the four files but not this one.
    #[error(
        "{}: missing file {}: the directory holds other {} files but not this one, neither extracted nor as .gz. {}",
        .dir.display(), .file.display(), .dataset, .dataset.how_to_get()
    )]
    MissingFile {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The directory that holds an incomplete set.
        dir: PathBuf,
        /// The expected path of the missing file (extracted name).
        file: PathBuf,
    },

    /// A directory is where a data file should be.
    #[error(
        "{} is a directory, not a file: move it away and put the {} file there, or pass the directory that holds the files",
        .file.display(), .dataset
    )]
    IsDirectory {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The path of the expected file.
        file: PathBuf,
    },

    /// A symbolic link is where a data file should be, and it leads nowhere: it points to
    /// itself (directly or through other links) or to something that does not exist.
    #[error(
        "{} is a symbolic link that cannot be resolved (loop or dangling): {source}. Point it at the {} file or remove it",
        .file.display(), .dataset
    )]
    BrokenSymlink {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The link.
        file: PathBuf,
        /// What the operating system reported when following it.
        #[source]
        source: io::Error,
    },

    /// A named pipe, socket or device is where a data file should be (norma never opens
    /// one: reading a pipe could block forever).
    #[error(
        "{} is not a regular file (a named pipe, socket or device): put the {} file itself there",
        .file.display(), .dataset
    )]
    SpecialFile {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The path of the expected file.
        file: PathBuf,
    },

    /// A data file exists but this user may not read it.
    #[error(
        "{} cannot be read: {source}. Give yourself read access (`chmod a+r`), or copy the {} files to a directory of yours and pass `--data-dir <dir>`",
        .file.display(), .dataset
    )]
    Unreadable {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The file.
        file: PathBuf,
        /// The operating system's error (permission denied).
        #[source]
        source: io::Error,
    },

    /// A data file has zero bytes (typically an interrupted copy).
    #[error("{}: the file is empty. Delete it and get it again. {}", .file.display(), .dataset.how_to_get())]
    EmptyFile {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The empty file.
        file: PathBuf,
    },

    /// A `.gz` file is not a valid gzip stream (corrupt or cut short).
    #[error("{}: not a valid gzip file ({reason}). Delete it and get it again. {}", .file.display(), .dataset.how_to_get())]
    CorruptGzip {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The `.gz` file.
        file: PathBuf,
        /// What the decoder reported.
        reason: String,
    },

    /// A file is shorter than its IDX header says (or too short to hold a header).
    #[error(
        "{}{}: truncated: {found} bytes where {expected} are needed. Delete it and get it again. {}",
        .file.display(), decompressed_note(.file), .dataset.how_to_get()
    )]
    Truncated {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The file (the `.gz` file when the problem is in its decompressed content).
        file: PathBuf,
        /// Bytes the header requires (or the header size itself).
        expected: u64,
        /// Bytes present.
        found: u64,
    },

    /// A file is longer than its IDX header says.
    #[error(
        "{}{}: {found} bytes where its header announces {expected}: there is extra data after the last item. Delete it and get it again. {}",
        .file.display(), decompressed_note(.file), .dataset.how_to_get()
    )]
    TrailingData {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The file (the `.gz` file when the problem is in its decompressed content).
        file: PathBuf,
        /// Bytes announced by the header.
        expected: u64,
        /// Bytes present.
        found: u64,
    },

    /// The IDX magic number is not the one of this kind of file (2051 images, 2049 labels).
    #[error(
        "{}: magic number {found} ({}) where {expected} ({}) was expected: this is not the right IDX file. {}",
        .file.display(), magic_meaning(*.found), magic_meaning(*.expected), .dataset.how_to_get()
    )]
    BadMagic {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The file.
        file: PathBuf,
        /// 2051 for an images file, 2049 for a labels file.
        expected: u32,
        /// The number read from the first four bytes.
        found: u32,
    },

    /// Images are not 28×28.
    #[error(
        "{}: images are {rows}×{cols} where 28×28 is required: this is not {}. {}",
        .file.display(), .dataset, .dataset.how_to_get()
    )]
    WrongDimensions {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The images file.
        file: PathBuf,
        /// Rows announced by the header.
        rows: u32,
        /// Columns announced by the header.
        cols: u32,
    },

    /// A file holds a number of items other than 60,000 (training) or 10,000 (test).
    #[error(
        "{}: {found} items where {} has {expected}: this is not the complete {} file. {}",
        .file.display(), .dataset, .dataset, .dataset.how_to_get()
    )]
    WrongCount {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The file.
        file: PathBuf,
        /// Items the file must hold.
        expected: usize,
        /// Items its header announces.
        found: usize,
    },

    /// The file is one of another dataset's published files (recognised by its SHA-256):
    /// Fashion-MNIST's files given as MNIST, or the other way round.
    #[error(
        "{} is {}'s {}, not {}'s: point --data-dir (or NORMA_DATA_DIR) at the {} files, or load it as {}",
        .file.display(), .found, file_label(.file), .dataset, .dataset, .found
    )]
    WrongDataset {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The dataset the file belongs to.
        found: DatasetKind,
        /// The file.
        file: PathBuf,
    },

    /// An images file and its labels file hold different numbers of items.
    #[error(
        "{} holds {image_count} images but {} holds {label_count} labels: the two files do not belong together. {}",
        .images.display(), .labels.display(), .dataset.how_to_get()
    )]
    CountMismatch {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The images file.
        images: PathBuf,
        /// The labels file.
        labels: PathBuf,
        /// Items in the images file.
        image_count: usize,
        /// Items in the labels file.
        label_count: usize,
    },

    /// A label is not a class index below 10.
    #[error(
        "{}: label {label} of item {index} is not a class index (0 to 9): the file is corrupt. {}",
        .file.display(), .dataset.how_to_get()
    )]
    LabelOutOfRange {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// The labels file.
        file: PathBuf,
        /// Position of the item (0-based).
        index: usize,
        /// The value found.
        label: u8,
    },

    /// A downloaded archive does not have its known SHA-256; nothing was kept under its name.
    #[error(
        "{url}: downloaded file has SHA-256 {actual} where {expected} was expected (corrupt transfer or a changed mirror); it was discarded and {} was not written. {}",
        .file.display(), .dataset.how_to_get()
    )]
    ChecksumMismatch {
        /// The dataset asked for.
        dataset: DatasetKind,
        /// Where it was downloaded from.
        url: String,
        /// The path it would have been saved to.
        file: PathBuf,
        /// The known SHA-256 (hex).
        expected: String,
        /// The SHA-256 of what was received (hex).
        actual: String,
    },

    /// A file system operation failed.
    #[error("{}: {action} failed: {source}", .path.display())]
    Io {
        /// What was being done, e.g. "reading" or "creating the cache directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A path is not valid UTF-8, which the IDX parser (the `mnist` crate) cannot open: a data
    /// file's, or a decompressed copy's in the cache.
    #[error(
        "{}: the path is not valid UTF-8, which the IDX parser cannot open; keep the data (--data-dir) and the cache directory (XDG_CACHE_HOME, HOME) under paths that are",
        .path.display()
    )]
    UnsupportedPath {
        /// The path.
        path: PathBuf,
    },

    /// An argument cannot be used (batch size 0, a validation split as large as the training set...).
    #[error("{0}")]
    InvalidArgument(String),
}

/// Result of this crate's operations.
pub type Result<T> = std::result::Result<T, DatasetError>;

/// "file" plus the file's name, for messages that already show its path.
fn file_label(path: &std::path::Path) -> String {
    match path.file_name() {
        Some(name) => format!("file {}", name.to_string_lossy()),
        None => "file".to_string(),
    }
}

impl DatasetError {
    /// Shorthand for [`DatasetError::Io`].
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        DatasetError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// The error of `action` on a data file: [`DatasetError::Unreadable`] when permission was
    /// denied, [`DatasetError::Io`] otherwise.
    pub(crate) fn access(
        dataset: DatasetKind,
        action: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> Self {
        if source.kind() == io::ErrorKind::PermissionDenied {
            DatasetError::Unreadable {
                dataset,
                file: path.into(),
                source,
            }
        } else {
            DatasetError::io(action, path, source)
        }
    }
}

/// First two bytes of every gzip stream.
const GZIP_MAGIC: u32 = 0x1f8b;

fn magic_meaning(magic: u32) -> &'static str {
    match magic {
        crate::idx::IMAGES_MAGIC => "IDX images",
        crate::idx::LABELS_MAGIC => "IDX labels",
        _ if magic >> 16 == GZIP_MAGIC => {
            "a gzip archive: give it the .gz extension and norma will decompress it"
        }
        _ => "not an IDX images or labels file",
    }
}

fn decompressed_note(file: &std::path::Path) -> &'static str {
    if file.extension().is_some_and(|ext| ext == "gz") {
        " (decompressed content)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denied_is_unreadable_and_other_errors_stay_io() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let e = DatasetError::access(DatasetKind::Mnist, "opening", "/d/f", denied);
        assert!(matches!(e, DatasetError::Unreadable { .. }), "{e}");
        assert!(e.to_string().starts_with("/d/f cannot be read: "), "{e}");
        let other = io::Error::from(io::ErrorKind::Interrupted);
        let e = DatasetError::access(DatasetKind::Mnist, "opening", "/d/f", other);
        assert!(matches!(e, DatasetError::Io { .. }), "{e}");
    }

    #[test]
    fn a_gzip_magic_number_says_to_rename_the_file() {
        assert!(magic_meaning(0x1f8b_0808).contains(".gz"));
        assert_eq!(magic_meaning(7), "not an IDX images or labels file");
    }
}
