//! Loading valid synthetic files: extracted and gzipped, scaling, labels, shapes, the
//! decompression cache, the validation split, the search order and the recorded location.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;
use norma_datasets::{
    DataFile, Dataset, DatasetKind, FashionMnist, Mnist, Origin, Split, CACHE_DIR_NAME,
};

fn check_content(data: &Dataset) {
    assert_eq!(data.train.images().shape(), &[60_000, 1, 28, 28]);
    assert_eq!(data.test.images().shape(), &[10_000, 1, 28, 28]);
    assert_eq!(data.train.len(), 60_000);
    assert_eq!(data.test.len(), 10_000);
    check_split(&data.train, DataFile::TrainImages, DataFile::TrainLabels, 0);
    check_split(&data.test, DataFile::TestImages, DataFile::TestLabels, 0);
}

/// Samples of `split` are items `offset..` of the files, scaled by 1/255.
fn check_split(split: &Split, images: DataFile, labels: DataFile, offset: usize) {
    let x = split.images().as_slice();
    for i in [0, 1, 2, split.len() / 2, split.len() - 1] {
        for j in [0, 1, 400, 783] {
            let expected = f32::from(pixel(images, offset + i, j)) / 255.0;
            assert_eq!(x[i * IMAGE_LEN + j], expected, "sample {i} pixel {j}");
        }
        assert_eq!(split.labels()[i], usize::from(label(labels, offset + i)));
    }
    let (min, max) = x
        .iter()
        .fold((1.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert_eq!(
        (min, max),
        (0.0, 1.0),
        "values in [0, 1]; pixels 0 and 255 map to 0 and 1"
    );
    assert!(split
        .class_counts(10)
        .iter()
        .all(|&c| c == split.len() / 10));
}

#[test]
fn extracted_files_load_correctly() {
    let dir = scratch();
    link_all(&fixtures().raw, dir.path());
    let data = only(DatasetKind::FashionMnist, dir.path()).load().unwrap();
    check_content(&data);
    assert!(data.validation.is_none());
    assert_eq!(data.location.dir, dir.path());
    assert_eq!(data.location.origin, Origin::Argument);
    assert_eq!(data.location.cache_dir, None);
    assert_eq!(data.location.decompressed, 0);
    assert_eq!(
        data.location.files[0],
        dir.path().join("train-images-idx3-ubyte")
    );
    assert!(!dir.path().join(CACHE_DIR_NAME).exists());
}

#[test]
fn gzipped_files_load_and_are_decompressed_once() {
    let dir = scratch();
    link_all(&fixtures().gz, dir.path());
    let opts = only(DatasetKind::FashionMnist, dir.path());
    let first = opts.load().unwrap();
    check_content(&first);
    let cache = first.location.cache_dir.clone().unwrap();
    assert!(
        cache.starts_with(dir.path().join("user-cache")),
        "the cache is in the user cache directory: {}",
        cache.display()
    );
    assert!(!dir.path().join(CACHE_DIR_NAME).exists());
    assert_eq!(first.location.decompressed, 4);
    assert_eq!(
        first.location.files[3],
        cache.join("t10k-labels-idx1-ubyte")
    );
    let mtime = |f: &str| fs::metadata(cache.join(f)).unwrap().modified().unwrap();
    let before = mtime("train-images-idx3-ubyte");

    let second = opts.load().unwrap();
    assert_eq!(second.location.decompressed, 0, "the cache must be reused");
    assert_eq!(mtime("train-images-idx3-ubyte"), before);
    assert_eq!(second.train, first.train);
    assert_eq!(second.test, first.test);

    // A changed source is decompressed again (here: the test labels, recompressed at another
    // level, so the archive differs in size while the content stays valid).
    let labels = valid_bytes(DataFile::TestLabels);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &labels).unwrap();
    replace(
        dir.path(),
        "t10k-labels-idx1-ubyte.gz",
        &enc.finish().unwrap(),
    );
    let third = opts.load().unwrap();
    assert_eq!(third.location.decompressed, 1);
    assert_eq!(third.test, first.test);
}

#[test]
fn data_directories_are_never_written_to_and_each_keeps_its_own_cache() {
    // The same archives in an explicit, a local and a system directory: each load reads its
    // own directory without writing a byte into it, and caches into the user cache directory.
    let root = scratch();
    let explicit = root.path().join("explicit");
    let local = root.path().join("local");
    let system = root.path().join("system");
    for d in [&explicit, &local, &system] {
        link_all(&fixtures().gz, d);
    }
    let cache = root.path().join("user-cache");
    let before: Vec<_> = [&explicit, &local, &system].map(|d| tree(d)).into();
    let opts = |explicit: Option<&Path>, local: &Path| {
        FashionMnist::options()
            .read_env(false)
            .data_dir(explicit.map(Path::to_path_buf))
            .local_dir(local)
            .system_dir(Some(system.clone()))
            .download(false)
            .user_cache_dir(&cache)
    };
    let cases = [
        (opts(Some(&explicit), &local), Origin::Argument),
        (opts(None, &local), Origin::Local),
        (opts(None, &root.path().join("none")), Origin::System),
    ];
    let mut entries = Vec::new();
    for (options, origin) in &cases {
        let data = options.load().unwrap();
        assert_eq!(data.location.origin, *origin);
        assert_eq!(data.location.decompressed, 4, "{origin}");
        let entry = data.location.cache_dir.clone().unwrap();
        assert!(entry.starts_with(&cache), "{}", entry.display());
        entries.push(entry);
    }
    entries.dedup();
    assert_eq!(entries.len(), 3, "one cache entry per source directory");
    // Alternating between the sources decompresses nothing again.
    for (options, origin) in &cases {
        assert_eq!(options.load().unwrap().location.decompressed, 0, "{origin}");
    }
    let after: Vec<_> = [&explicit, &local, &system].map(|d| tree(d)).into();
    assert_eq!(after, before, "no data directory was written to");
}

#[test]
fn concurrent_loads_of_the_same_archives_leave_a_correct_cache() {
    // Threads race through the same file-system steps as processes would: each decompresses
    // into its own temporary file and renames it over the cached name.
    let dir = scratch();
    link_all(&fixtures().gz, dir.path());
    let opts = only(DatasetKind::FashionMnist, dir.path());
    let start = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let loads: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    check_content(&opts.load().unwrap());
                })
            })
            .collect();
        for load in loads {
            load.join().unwrap();
        }
    });
    let again = opts.load().unwrap();
    assert_eq!(again.location.decompressed, 0, "the cache is complete");
    check_content(&again);
    let cache = again.location.cache_dir.unwrap();
    let mut expected: Vec<String> = DataFile::ALL
        .iter()
        .flat_map(|f| [f.file_name().to_string(), format!("{}.key", f.file_name())])
        .collect();
    expected.sort();
    assert_eq!(listing(&cache), expected, "no temporary file left");
}

#[test]
fn leftover_temporary_files_in_the_cache_are_removed_and_nothing_else() {
    let dir = scratch();
    link_all(&fixtures().gz, dir.path());
    let opts = only(DatasetKind::FashionMnist, dir.path());
    let cache = opts.load().unwrap().location.cache_dir.unwrap();
    // What a process killed while decompressing leaves behind, hours ago ...
    let stale = [".decompressing-a1B2c3", ".writing-Zz9yX8"];
    // ... and what must stay: a temporary file being written right now by another process,
    // and files that are not norma's temporaries.
    let kept = [
        ".decompressing-q7W8e9",
        ".decompressing-notes.txt",
        "notes.txt",
    ];
    for name in stale.iter().chain(&kept) {
        fs::write(cache.join(name), b"partial").unwrap();
    }
    for name in stale.iter().chain(&kept[1..]) {
        age(&cache.join(name), Duration::from_secs(2 * 3600));
    }
    let data = opts.load().unwrap();
    assert_eq!(data.location.decompressed, 0);
    for name in stale {
        assert!(!cache.join(name).exists(), "{name} must be removed");
    }
    for name in kept {
        assert!(cache.join(name).exists(), "{name} must be kept");
    }
}

#[test]
fn cache_files_of_the_previous_layout_are_removed() {
    // Earlier versions cached straight into the user cache directory; such a copy is proven
    // to be norma's by its key file, and is removed. Anything else there stays.
    let dir = scratch();
    link_all(&fixtures().gz, dir.path());
    let user_cache = dir.path().join("user-cache");
    fs::create_dir_all(&user_cache).unwrap();
    let ours = ["train-images-idx3-ubyte", "train-images-idx3-ubyte.key"];
    fs::write(user_cache.join(ours[0]), b"old copy").unwrap();
    fs::write(
        user_cache.join(ours[1]),
        b"norma-datasets decompression cache v1\nsource=/x\nsize=1\nmodified=1.0\ndecompressed=8\n",
    )
    .unwrap();
    let theirs = [
        "t10k-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-images-idx3-ubyte.key",
    ];
    for name in theirs {
        fs::write(user_cache.join(name), b"not a norma key").unwrap();
    }
    only(DatasetKind::FashionMnist, dir.path()).load().unwrap();
    for name in ours {
        assert!(!user_cache.join(name).exists(), "{name} must be removed");
    }
    for name in theirs {
        assert!(user_cache.join(name).exists(), "{name} must be kept");
    }
}

#[test]
fn extracted_and_gzipped_files_can_be_mixed() {
    let dir = scratch();
    link_all(&fixtures().raw, dir.path());
    fs::remove_file(dir.path().join("t10k-images-idx3-ubyte")).unwrap();
    fs::hard_link(
        fixtures().gz.join("t10k-images-idx3-ubyte.gz"),
        dir.path().join("t10k-images-idx3-ubyte.gz"),
    )
    .unwrap();
    let data = only(DatasetKind::FashionMnist, dir.path()).load().unwrap();
    check_content(&data);
    assert_eq!(data.location.decompressed, 1);
}

#[test]
fn validation_split_is_the_last_training_images() {
    let dir = scratch();
    link_all(&fixtures().raw, dir.path());
    let data = only(DatasetKind::FashionMnist, dir.path())
        .validation(5_000)
        .load()
        .unwrap();
    assert_eq!(data.train.images().shape(), &[55_000, 1, 28, 28]);
    let validation = data.validation.as_ref().unwrap();
    assert_eq!(validation.images().shape(), &[5_000, 1, 28, 28]);
    assert_eq!(data.test.len(), 10_000);
    for i in [0, 4_999] {
        assert_eq!(
            validation.images().as_slice()[i * IMAGE_LEN + 5],
            f32::from(pixel(DataFile::TrainImages, 55_000 + i, 5)) / 255.0
        );
        assert_eq!(
            validation.labels()[i],
            usize::from(label(DataFile::TrainLabels, 55_000 + i))
        );
    }
    assert_eq!(
        data.train.labels()[54_999],
        usize::from(label(DataFile::TrainLabels, 54_999))
    );

    let e = only(DatasetKind::FashionMnist, dir.path())
        .validation(60_000)
        .load()
        .unwrap_err();
    assert!(
        matches!(e, norma_datasets::DatasetError::InvalidArgument(_)),
        "{e}"
    );
}

#[test]
fn class_names_of_both_datasets() {
    assert_eq!(
        FashionMnist::class_names(),
        &[
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot"
        ]
    );
    assert_eq!(
        Mnist::class_names(),
        &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    );
    let dir = scratch();
    link_all(&fixtures().raw, dir.path());
    let data = only(DatasetKind::Mnist, dir.path()).load().unwrap();
    assert_eq!(data.kind, DatasetKind::Mnist);
    assert_eq!(data.class_names()[7], "7");
}

#[test]
fn search_order_explicit_subfolder_then_explicit_else_local_then_system() {
    let root = scratch();
    let explicit = root.path().join("explicit");
    let local = root.path().join("local");
    let system = root.path().join("system");
    for d in [&local, &system] {
        link_all(&fixtures().raw, d);
    }
    let opts = |explicit: Option<&std::path::Path>| {
        FashionMnist::options()
            .read_env(false)
            .data_dir(explicit.map(|p| p.to_path_buf()))
            .local_dir(&local)
            .system_dir(Some(system.clone()))
            .download(false)
            .user_cache_dir(root.path().join("cache"))
    };
    let data = opts(None).load().unwrap();
    assert_eq!(data.location.origin, Origin::Local);
    assert_eq!(data.location.dir, local);

    fs::remove_dir_all(&local).unwrap();
    let data = opts(None).load().unwrap();
    assert_eq!(data.location.origin, Origin::System);
    assert_eq!(data.location.dir, system);

    // An explicit directory without the files is an error, not a silent fall-through.
    fs::create_dir_all(&explicit).unwrap();
    let e = opts(Some(&explicit)).load().unwrap_err();
    assert!(
        e.to_string().contains(&explicit.display().to_string()),
        "{e}"
    );

    link_all(&fixtures().raw, &explicit);
    let data = opts(Some(&explicit)).load().unwrap();
    assert_eq!(data.location.origin, Origin::Argument);
    assert_eq!(data.location.dir, explicit);

    // A `<name>/` folder inside the explicit directory is preferred to the directory itself.
    let named = explicit.join("fashion-mnist");
    link_all(&fixtures().gz, &named);
    let data = opts(Some(&explicit)).load().unwrap();
    assert_eq!(data.location.dir, named);
    assert!(data.location.to_string().contains("--data-dir"));
}

#[test]
fn system_directory_is_never_written_to() {
    let root = scratch();
    let system = root.path().join("system");
    link_all(&fixtures().gz, &system);
    let cache = root.path().join("user-cache");
    let data = FashionMnist::options()
        .read_env(false)
        .local_dir(root.path().join("nothing"))
        .system_dir(Some(system.clone()))
        .download(false)
        .user_cache_dir(&cache)
        .load()
        .unwrap();
    assert_eq!(data.location.origin, Origin::System);
    let entry = data.location.cache_dir.clone().unwrap();
    assert!(entry.starts_with(&cache), "{}", entry.display());
    assert!(!system.join(CACHE_DIR_NAME).exists());
    assert!(entry.join("train-images-idx3-ubyte").is_file());
    let shown = data.location.to_string();
    assert!(shown.contains(&entry.display().to_string()), "{shown}");
}
