//! Which dataset a file is, recognised by its SHA-256.
//!
//! Fashion-MNIST and MNIST have the same file names, sizes and headers, so nothing in a file
//! says which of the two it holds. Their published files do have known checksums: the official
//! `.gz` archives ([`DatasetKind::archive_sha256`]) and the extracted IDX files (which stay the
//! same when a distribution re-compresses the archives, as Debian's package does). A file whose
//! checksum is one of *another* dataset's known files is refused by name; a file that matches
//! no known checksum (a copy made some other way, a modified set) is accepted as before.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::download::to_hex;
use crate::{DataFile, DatasetError, DatasetKind, Result};

/// SHA-256 of the extracted IDX files, in [`DataFile::ALL`] order, where known. Fashion-MNIST's
/// were computed from the official archives' content (Debian's `dataset-fashion-mnist` holds
/// the same bytes); MNIST's extracted files have no checksum here, so an extracted MNIST set is
/// not recognised (its archives are).
fn extracted_sha256(kind: DatasetKind) -> Option<[&'static str; 4]> {
    match kind {
        DatasetKind::FashionMnist => Some([
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ]),
        DatasetKind::Mnist => None,
    }
}

/// The dataset whose published `file` (archive or extracted) has this checksum, if any.
pub(crate) fn recognise(file: DataFile, sha256: &str) -> Option<DatasetKind> {
    [DatasetKind::FashionMnist, DatasetKind::Mnist]
        .into_iter()
        .find(|&kind| {
            let archive = kind.archive_sha256()[file.index()];
            let extracted = extracted_sha256(kind).map(|known| known[file.index()]);
            sha256.eq_ignore_ascii_case(archive)
                || extracted.is_some_and(|known| sha256.eq_ignore_ascii_case(known))
        })
}

/// Refuses `path` (the dataset's `file`, with this checksum) when it is another dataset's.
pub(crate) fn check(kind: DatasetKind, file: DataFile, path: &Path, sha256: &str) -> Result<()> {
    match recognise(file, sha256) {
        Some(found) if found != kind => Err(DatasetError::WrongDataset {
            dataset: kind,
            found,
            file: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Checks an extracted file in place: reads it once, in pieces, through the hash.
pub(crate) fn check_file(kind: DatasetKind, file: DataFile, path: &Path) -> Result<()> {
    let input =
        std::fs::File::open(path).map_err(|e| DatasetError::access(kind, "opening", path, e))?;
    let mut reader = Hashing::new(input);
    io::copy(&mut reader, &mut io::sink()).map_err(|e| DatasetError::io("reading", path, e))?;
    check(kind, file, path, &reader.finish())
}

/// A reader that hashes every byte it passes on.
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The lower-case hex SHA-256 of everything read so far.
    pub(crate) fn finish(self) -> String {
        to_hex(&self.hasher.finalize())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_known_checksum_names_its_dataset() {
        for kind in [DatasetKind::FashionMnist, DatasetKind::Mnist] {
            for file in DataFile::ALL {
                let archive = kind.archive_sha256()[file.index()];
                assert_eq!(recognise(file, archive), Some(kind));
                assert_eq!(recognise(file, &archive.to_uppercase()), Some(kind));
                // A checksum of another file of the same dataset is not this file's.
                let other = DataFile::ALL[(file.index() + 1) % 4];
                assert_eq!(recognise(other, archive), None);
            }
        }
        let extracted = extracted_sha256(DatasetKind::FashionMnist).unwrap();
        assert_eq!(
            recognise(DataFile::TrainImages, extracted[0]),
            Some(DatasetKind::FashionMnist)
        );
        assert_eq!(recognise(DataFile::TrainImages, &"0".repeat(64)), None);
    }

    #[test]
    fn another_datasets_file_is_refused_by_name_and_an_unknown_one_accepted() {
        let path = Path::new("/data/train-images-idx3-ubyte.gz");
        let fashion = DatasetKind::FashionMnist.archive_sha256()[0];
        let err = check(DatasetKind::Mnist, DataFile::TrainImages, path, fashion).unwrap_err();
        assert!(matches!(
            err,
            DatasetError::WrongDataset {
                dataset: DatasetKind::Mnist,
                found: DatasetKind::FashionMnist,
                ..
            }
        ));
        let text = err.to_string();
        assert!(
            text.starts_with("/data/train-images-idx3-ubyte.gz is Fashion-MNIST's"),
            "{text}"
        );
        assert!(text.contains("not MNIST's"), "{text}");
        check(
            DatasetKind::FashionMnist,
            DataFile::TrainImages,
            path,
            fashion,
        )
        .unwrap();
        check(
            DatasetKind::Mnist,
            DataFile::TrainImages,
            path,
            &"ab".repeat(32),
        )
        .unwrap();
    }

    #[test]
    fn the_hashing_reader_hashes_what_it_passes_on() {
        let mut reader = Hashing::new(&b"abc"[..]);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(
            reader.finish(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
