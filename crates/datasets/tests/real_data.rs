//! The real Fashion-MNIST from Debian's `dataset-fashion-mnist` package.
//!
//! Fails when the data is missing and `NORMA_REQUIRE_DATA=1` (as in CI, which installs the
//! package); otherwise a missing package only prints a note.

use std::fs;
use std::path::Path;

use norma_datasets::{
    DataFile, DatasetError, DatasetKind, FashionMnist, Mnist, Origin, DEBIAN_FASHION_MNIST_DIR,
};
use sha2::{Digest, Sha256};

/// SHA-256 and size of the decompressed IDX files, in `DataFile::ALL` order.
const DECOMPRESSED: [(&str, u64); 4] = [
    (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        47_040_016,
    ),
    (
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        60_008,
    ),
    (
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        7_840_016,
    ),
    (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        10_008,
    ),
];

fn debian_data_present() -> bool {
    let dir = Path::new(DEBIAN_FASHION_MNIST_DIR);
    DataFile::ALL
        .iter()
        .all(|f| dir.join(f.gz_name()).is_file() || dir.join(f.file_name()).is_file())
}

/// False (after a note) when the package is missing and the data is not required; a failure
/// when `NORMA_REQUIRE_DATA=1`.
fn debian_data_or_note() -> bool {
    if !debian_data_present() {
        let required = std::env::var("NORMA_REQUIRE_DATA").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "NORMA_REQUIRE_DATA=1 but Fashion-MNIST is not in {DEBIAN_FASHION_MNIST_DIR}: \
             run `apt-get install dataset-fashion-mnist`"
        );
        eprintln!(
            "note: skipping the real-data test: Fashion-MNIST is not in \
             {DEBIAN_FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist; set \
             NORMA_REQUIRE_DATA=1 to make this a failure)"
        );
        return false;
    }
    true
}

#[test]
fn real_fashion_mnist_from_the_debian_package() {
    if !debian_data_or_note() {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let opts = FashionMnist::options()
        .read_env(false)
        .local_dir(cache.path().join("no-local"))
        .download(false)
        .user_cache_dir(cache.path());
    let data = opts.load().unwrap();
    assert_eq!(data.location.origin, Origin::System);
    assert_eq!(data.location.dir, Path::new(DEBIAN_FASHION_MNIST_DIR));

    assert_eq!(data.train.images().shape(), &[60_000, 1, 28, 28]);
    assert_eq!(data.test.images().shape(), &[10_000, 1, 28, 28]);
    assert_eq!(data.train.class_counts(10), vec![6_000; 10]);
    assert_eq!(data.test.class_counts(10), vec![1_000; 10]);
    for split in [&data.train, &data.test] {
        let x = split.images().as_slice();
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(x.iter().copied().fold(0.0f32, f32::max), 1.0);
    }
    assert_eq!(data.class_names()[9], "Ankle boot");

    for (file, (sha, size)) in data.location.files.iter().zip(DECOMPRESSED) {
        let bytes = fs::read(file).unwrap();
        assert_eq!(bytes.len() as u64, size, "{}", file.display());
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, sha, "{}", file.display());
    }

    let again = opts.load().unwrap();
    assert_eq!(again.location.decompressed, 0, "the cache must be reused");
}

/// Fashion-MNIST's files, as Debian ships them (re-compressed archives) and extracted, are
/// refused by name when loaded as MNIST: nothing else in the files tells the two apart.
#[test]
fn fashion_mnist_files_are_refused_as_mnist() {
    if !debian_data_or_note() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let gz_dir = scratch.path().join("gz");
    let raw_dir = scratch.path().join("raw");
    fs::create_dir_all(&gz_dir).unwrap();
    fs::create_dir_all(&raw_dir).unwrap();
    for file in DataFile::ALL {
        let archive = Path::new(DEBIAN_FASHION_MNIST_DIR).join(file.gz_name());
        fs::copy(&archive, gz_dir.join(file.gz_name())).unwrap();
        let mut content = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(fs::File::open(&archive).unwrap()),
            &mut content,
        )
        .unwrap();
        fs::write(raw_dir.join(file.file_name()), content).unwrap();
    }
    for dir in [&gz_dir, &raw_dir] {
        let err = Mnist::options()
            .read_env(false)
            .data_dir(Some(dir.clone()))
            .download(false)
            .user_cache_dir(scratch.path().join("cache"))
            .load()
            .unwrap_err();
        assert!(
            matches!(
                err,
                DatasetError::WrongDataset {
                    dataset: DatasetKind::Mnist,
                    found: DatasetKind::FashionMnist,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("is Fashion-MNIST's file "),
            "{err}"
        );
        // Loaded as what they are, the same folders are fine.
        FashionMnist::options()
            .read_env(false)
            .data_dir(Some(dir.clone()))
            .download(false)
            .user_cache_dir(scratch.path().join("cache"))
            .load()
            .unwrap();
    }
}
