//! Validation of IDX files (LeCun's format: a big-endian header, then one byte per pixel or
//! label) before anything is handed to the `mnist` crate, which panics on any surprise.
//!
//! Images are checked from their header and the file length alone (the payload of a
//! consistent file cannot be wrong: every byte is a valid pixel); labels are read in full
//! because each one must be a class index.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::kind::{IMAGE_LEN, IMAGE_SIDE, NUM_CLASSES};
use crate::{DataFile, DatasetError, DatasetKind, Result};

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub(crate) const IMAGES_MAGIC: u32 = 2051;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub(crate) const LABELS_MAGIC: u32 = 2049;
/// Header bytes of an images file: magic, count, rows, columns.
pub(crate) const IMAGES_HEADER: usize = 16;
/// Header bytes of a labels file: magic, count.
pub(crate) const LABELS_HEADER: usize = 8;

/// Bytes of the header of `file`.
pub(crate) fn header_len(file: DataFile) -> usize {
    if file.is_images() {
        IMAGES_HEADER
    } else {
        LABELS_HEADER
    }
}

/// Size in bytes of a correct `file`: header plus the expected number of items.
pub(crate) fn full_size(file: DataFile) -> u64 {
    let item = if file.is_images() { IMAGE_LEN } else { 1 };
    (header_len(file) + file.expected_count() * item) as u64
}

fn be_u32(head: &[u8], offset: usize) -> Option<u32> {
    let bytes = head.get(offset..offset + 4)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Checks the header of an IDX `file` against the file's total length and returns the
/// number of items it announces.
///
/// `head` holds the first bytes of the file (at least the header, or the whole file when it
/// is shorter); `total` is the file's length. `shown` is the path named in errors.
pub(crate) fn check_header(
    dataset: DatasetKind,
    shown: &Path,
    file: DataFile,
    head: &[u8],
    total: u64,
) -> Result<usize> {
    let header = header_len(file);
    let truncated = |expected: u64| DatasetError::Truncated {
        dataset,
        file: shown.to_path_buf(),
        expected,
        found: total,
    };
    if total == 0 {
        return Err(DatasetError::EmptyFile {
            dataset,
            file: shown.to_path_buf(),
        });
    }
    // The magic number is checked before the header length so that a small file of the wrong
    // kind (an HTML error page, a labels file in place of images) is reported as such.
    let magic = be_u32(head, 0).ok_or_else(|| truncated(header as u64))?;
    let expected_magic = if file.is_images() {
        IMAGES_MAGIC
    } else {
        LABELS_MAGIC
    };
    if magic != expected_magic {
        return Err(DatasetError::BadMagic {
            dataset,
            file: shown.to_path_buf(),
            expected: expected_magic,
            found: magic,
        });
    }
    if total < header as u64 || head.len() < header {
        return Err(truncated(header as u64));
    }
    let count = be_u32(head, 4).ok_or_else(|| truncated(header as u64))?;
    let item_len = if file.is_images() {
        let rows = be_u32(head, 8).ok_or_else(|| truncated(header as u64))?;
        let cols = be_u32(head, 12).ok_or_else(|| truncated(header as u64))?;
        if rows as usize != IMAGE_SIDE || cols as usize != IMAGE_SIDE {
            return Err(DatasetError::WrongDimensions {
                dataset,
                file: shown.to_path_buf(),
                rows,
                cols,
            });
        }
        IMAGE_LEN as u64
    } else {
        1
    };
    // u32 × 784 + 16 cannot overflow u64.
    let needed = header as u64 + u64::from(count) * item_len;
    if total < needed {
        return Err(truncated(needed));
    }
    if total > needed {
        return Err(DatasetError::TrailingData {
            dataset,
            file: shown.to_path_buf(),
            expected: needed,
            found: total,
        });
    }
    Ok(count as usize)
}

/// Checks that every label is a class index; `labels` is the payload after the header.
pub(crate) fn check_labels(dataset: DatasetKind, shown: &Path, labels: &[u8]) -> Result<()> {
    match labels
        .iter()
        .position(|&label| usize::from(label) >= NUM_CLASSES)
    {
        Some(index) => Err(DatasetError::LabelOutOfRange {
            dataset,
            file: shown.to_path_buf(),
            index,
            label: labels[index],
        }),
        None => Ok(()),
    }
}

/// Reads the first `len` bytes of `path` (fewer if the file is shorter) and its total length.
pub(crate) fn read_head(dataset: DatasetKind, path: &Path, len: usize) -> Result<(Vec<u8>, u64)> {
    let file = File::open(path).map_err(|e| DatasetError::access(dataset, "opening", path, e))?;
    let total = file
        .metadata()
        .map_err(|e| DatasetError::io("reading the size of", path, e))?
        .len();
    let mut head = Vec::with_capacity(len);
    file.take(len as u64)
        .read_to_end(&mut head)
        .map_err(|e| DatasetError::access(dataset, "reading", path, e))?;
    Ok((head, total))
}

/// The four files of a dataset, ready to parse: `read` is what is opened (a decompressed
/// copy for `.gz` sources), `shown` is what errors name (the file the user has).
#[derive(Debug, Clone)]
pub(crate) struct FileSet {
    pub read: [PathBuf; 4],
    pub shown: [PathBuf; 4],
}

/// Validates the four files of `dataset` so that parsing them cannot fail: each header,
/// then that images and labels agree, then the expected counts, then every label.
pub(crate) fn validate_set(dataset: DatasetKind, files: &FileSet) -> Result<()> {
    let mut counts = [0usize; 4];
    for file in DataFile::ALL {
        let i = file.index();
        let (head, total) = read_head(dataset, &files.read[i], header_len(file))?;
        counts[i] = check_header(dataset, &files.shown[i], file, &head, total)?;
    }
    for (images, labels) in [
        (DataFile::TrainImages, DataFile::TrainLabels),
        (DataFile::TestImages, DataFile::TestLabels),
    ] {
        let (ni, nl) = (counts[images.index()], counts[labels.index()]);
        if ni != nl {
            return Err(DatasetError::CountMismatch {
                dataset,
                images: files.shown[images.index()].clone(),
                labels: files.shown[labels.index()].clone(),
                image_count: ni,
                label_count: nl,
            });
        }
    }
    for file in DataFile::ALL {
        let found = counts[file.index()];
        if found != file.expected_count() {
            return Err(DatasetError::WrongCount {
                dataset,
                file: files.shown[file.index()].clone(),
                expected: file.expected_count(),
                found,
            });
        }
    }
    for file in [DataFile::TrainLabels, DataFile::TestLabels] {
        let path = &files.read[file.index()];
        let bytes =
            std::fs::read(path).map_err(|e| DatasetError::access(dataset, "reading", path, e))?;
        let payload = bytes.get(LABELS_HEADER..).unwrap_or(&[]);
        check_labels(dataset, &files.shown[file.index()], payload)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DS: DatasetKind = DatasetKind::FashionMnist;

    fn images_file(count: u32, rows: u32, cols: u32, payload: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [IMAGES_MAGIC, count, rows, cols] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.resize(IMAGES_HEADER + payload, 7);
        v
    }

    fn labels_file(labels: &[u8]) -> Vec<u8> {
        let mut v = LABELS_MAGIC.to_be_bytes().to_vec();
        v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        v.extend_from_slice(labels);
        v
    }

    fn check(file: DataFile, bytes: &[u8]) -> Result<usize> {
        check_header(DS, Path::new("f"), file, bytes, bytes.len() as u64)
    }

    #[test]
    fn sizes_of_the_real_files() {
        assert_eq!(full_size(DataFile::TrainImages), 47_040_016);
        assert_eq!(full_size(DataFile::TrainLabels), 60_008);
        assert_eq!(full_size(DataFile::TestImages), 7_840_016);
        assert_eq!(full_size(DataFile::TestLabels), 10_008);
    }

    #[test]
    fn consistent_headers_give_their_counts() {
        let img = images_file(3, 28, 28, 3 * IMAGE_LEN);
        assert_eq!(check(DataFile::TestImages, &img).unwrap(), 3);
        let lbl = labels_file(&[0, 9, 4]);
        assert_eq!(check(DataFile::TrainLabels, &lbl).unwrap(), 3);
        assert!(check_labels(DS, Path::new("f"), &lbl[8..]).is_ok());
    }

    #[test]
    fn each_header_fault_has_its_variant() {
        let e = check(DataFile::TrainImages, &[]).unwrap_err();
        assert!(matches!(e, DatasetError::EmptyFile { .. }), "{e}");
        let e = check(DataFile::TrainImages, &[0, 0]).unwrap_err();
        assert!(matches!(e, DatasetError::Truncated { found: 2, .. }), "{e}");
        let e = check(DataFile::TrainImages, &labels_file(&[1])).unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::BadMagic {
                    expected: 2051,
                    found: 2049,
                    ..
                }
            ),
            "{e}"
        );
        let e = check(DataFile::TrainImages, &images_file(1, 28, 28, 0)[..10]).unwrap_err();
        assert!(
            matches!(e, DatasetError::Truncated { expected: 16, .. }),
            "{e}"
        );
        let e = check(DataFile::TrainImages, &images_file(1, 32, 28, 32 * 28)).unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::WrongDimensions {
                    rows: 32,
                    cols: 28,
                    ..
                }
            ),
            "{e}"
        );
        let e = check(DataFile::TrainImages, &images_file(2, 28, 28, IMAGE_LEN)).unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::Truncated {
                    expected: 1584,
                    found: 800,
                    ..
                }
            ),
            "{e}"
        );
        let e = check(
            DataFile::TrainImages,
            &images_file(1, 28, 28, IMAGE_LEN + 1),
        )
        .unwrap_err();
        assert!(matches!(e, DatasetError::TrailingData { .. }), "{e}");
        let e = check_labels(DS, Path::new("f"), &[1, 2, 10, 3]).unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::LabelOutOfRange {
                    index: 2,
                    label: 10,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("f: label 10 of item 2"), "{e}");
    }

    #[test]
    fn messages_name_the_file_and_say_how_to_get_the_data() {
        let e = check_header(
            DS,
            Path::new("/x/train-images-idx3-ubyte.gz"),
            DataFile::TrainImages,
            &[0; 16],
            16,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/x/train-images-idx3-ubyte.gz"), "{msg}");
        assert!(
            msg.contains("apt-get install dataset-fashion-mnist"),
            "{msg}"
        );
        assert!(msg.contains("NORMA_DATA_DIR"), "{msg}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any mutation of a header byte, and any truncation, returns a value (never panics),
        /// and only mutations that keep the header consistent are accepted.
        #[test]
        fn mutated_or_truncated_headers_never_panic(
            images in any::<bool>(),
            pos in 0usize..16,
            byte in any::<u8>(),
            cut in proptest::option::of(0usize..2000),
        ) {
            let file = if images { DataFile::TestImages } else { DataFile::TestLabels };
            let mut bytes = if images {
                images_file(2, 28, 28, 2 * IMAGE_LEN)
            } else {
                labels_file(&[3; 100])
            };
            let pos = pos % header_len(file);
            bytes[pos] = byte;
            if let Some(cut) = cut {
                bytes.truncate(cut.min(bytes.len()));
            }
            let result = check(file, &bytes);
            if let Ok(count) = result {
                let item = if images { IMAGE_LEN } else { 1 };
                prop_assert_eq!(bytes.len(), header_len(file) + count * item);
            }
            if !images {
                let _ = check_labels(DS, Path::new("f"), bytes.get(8..).unwrap_or(&[]));
            }
        }

        /// Arbitrary bytes, with an arbitrary claimed total length, never panic.
        #[test]
        fn arbitrary_heads_never_panic(
            head in proptest::collection::vec(any::<u8>(), 0..24),
            total in any::<u64>(),
            images in any::<bool>(),
        ) {
            let file = if images { DataFile::TrainImages } else { DataFile::TrainLabels };
            let _ = check_header(DS, Path::new("f"), file, &head, total);
        }
    }
}
