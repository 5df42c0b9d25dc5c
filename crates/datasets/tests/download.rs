//! Downloads against a local HTTP server on 127.0.0.1: success, 404, connection refused, a
//! corrupted archive, and completing an interrupted download.

mod common;

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use norma_datasets::{DataFile, DatasetError, FashionMnist, LoadOptions, Origin};

/// The four valid archives as served, by URL path under `/mirror/`.
fn archives() -> Vec<(DataFile, Vec<u8>)> {
    DataFile::ALL
        .into_iter()
        .map(|f| (f, fs::read(fixtures().gz.join(f.gz_name())).unwrap()))
        .collect()
}

fn serve(archives: &[(DataFile, Vec<u8>)]) -> Server {
    let files: HashMap<String, Vec<u8>> = archives
        .iter()
        .map(|(f, bytes)| (format!("/mirror/{}", f.gz_name()), bytes.clone()))
        .collect();
    Server::start(files)
}

fn checksums(archives: &[(DataFile, Vec<u8>)]) -> [String; 4] {
    DataFile::ALL.map(|f| {
        let (_, bytes) = archives.iter().find(|(g, _)| *g == f).unwrap();
        sha256_hex(bytes)
    })
}

/// Options that only download into `root/data/fashion-mnist` from `mirror`.
fn download_only(root: &Path, mirror: &str, sha: [String; 4]) -> LoadOptions {
    FashionMnist::options()
        .read_env(false)
        .local_dir(root.join("data").join("fashion-mnist"))
        .system_dir(None)
        .mirror(mirror)
        .archive_sha256(sha)
        .timeout(Duration::from_secs(10))
        .user_cache_dir(root.join("user-cache"))
}

#[test]
fn download_lands_verified_files_and_is_not_repeated() {
    let archives = archives();
    let server = serve(&archives);
    let root = scratch();
    let opts = download_only(
        root.path(),
        &format!("{}/mirror/", server.base_url),
        checksums(&archives),
    );
    let data = opts.load().unwrap();
    let local = root.path().join("data").join("fashion-mnist");
    assert_eq!(data.location.origin, Origin::Downloaded);
    assert_eq!(data.location.dir, local);
    assert_eq!(data.location.downloaded, 4);
    assert_eq!(data.location.decompressed, 4);
    assert_eq!(data.train.len(), 60_000);
    assert_eq!(data.test.len(), 10_000);
    for (file, bytes) in &archives {
        assert_eq!(&fs::read(local.join(file.gz_name())).unwrap(), bytes);
    }
    assert_eq!(
        listing(&local),
        [
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz"
        ],
        "no temporary file may be left, and no cache is written beside the data"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 4);

    let again = opts.load().unwrap();
    assert_eq!(again.location.origin, Origin::Local);
    assert_eq!(again.location.downloaded, 0);
    assert_eq!(again.location.decompressed, 0);
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        4,
        "nothing downloaded again"
    );
}

#[test]
fn not_found_on_the_mirror() {
    let server = Server::start(HashMap::new());
    let root = scratch();
    let mirror = format!("{}/mirror", server.base_url);
    let e = download_only(root.path(), &mirror, checksums(&archives()))
        .load()
        .unwrap_err();
    assert!(matches!(e, DatasetError::NotFound { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("404"), "{msg}");
    assert!(
        msg.contains(&format!("{mirror}/train-images-idx3-ubyte.gz")),
        "{msg}"
    );
    assert!(
        !root.path().join("data").exists(),
        "the directories made for the download are removed"
    );
}

#[test]
fn connection_refused_lists_every_place_looked() {
    let root = scratch();
    let mirror = refused_mirror();
    let e = download_only(root.path(), &mirror, checksums(&archives()))
        .load()
        .unwrap_err();
    let DatasetError::NotFound { looked, .. } = &e else {
        panic!("expected NotFound, got {e}");
    };
    assert_eq!(looked.len(), 2, "{looked:?}"); // the local directory, then the download
    let msg = e.to_string();
    assert!(
        msg.contains(&root.path().join("data/fashion-mnist").display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{mirror}/train-images-idx3-ubyte.gz")),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    assert_eq!(
        listing(root.path()),
        Vec::<String>::new(),
        "nothing left behind"
    );
}

/// A mirror where nothing listens.
fn refused_mirror() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn a_failed_download_removes_the_directories_it_created_and_nothing_else() {
    let root = scratch();
    let sha = checksums(&archives());
    let fail = || {
        let e = download_only(root.path(), &refused_mirror(), sha.clone())
            .load()
            .unwrap_err();
        assert!(matches!(e, DatasetError::NotFound { .. }), "{e}");
    };
    // Nothing existed: `data/` and `data/fashion-mnist/` were made for the download.
    fail();
    assert!(!root.path().join("data").exists());

    // `data/` is the user's: it stays, with what it holds.
    let data = root.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("notes.txt"), b"mine").unwrap();
    fail();
    assert_eq!(listing(&data), ["notes.txt"]);

    // The download directory itself existed (empty): it stays.
    fs::create_dir(data.join("fashion-mnist")).unwrap();
    fail();
    assert_eq!(listing(&data), ["fashion-mnist", "notes.txt"]);
    assert!(listing(&data.join("fashion-mnist")).is_empty());
}

#[test]
fn leftover_partial_downloads_are_removed_and_nothing_else() {
    let archives = archives();
    let server = serve(&archives);
    let root = scratch();
    let local = root.path().join("data").join("fashion-mnist");
    fs::create_dir_all(&local).unwrap();
    // A download killed hours ago, one in progress in another process right now, and files
    // that only look similar.
    let stale = ".download-Ab12Cd.part";
    let kept = [".download-Xy34Zw.part", ".download-backup.txt", "my.part"];
    for name in std::iter::once(&stale).chain(&kept) {
        fs::write(local.join(name), b"partial").unwrap();
        if *name != kept[0] {
            age(&local.join(name), Duration::from_secs(2 * 3600));
        }
    }
    let data = download_only(
        root.path(),
        &format!("{}/mirror", server.base_url),
        checksums(&archives),
    )
    .load()
    .unwrap();
    assert_eq!(data.location.downloaded, 4);
    assert!(!local.join(stale).exists(), "{stale} must be removed");
    for name in kept {
        assert!(local.join(name).exists(), "{name} must be kept");
    }
}

#[test]
fn corrupted_archive_fails_its_checksum_and_is_not_kept() {
    let good = archives();
    let sha = checksums(&good);
    let mut served = good.clone();
    // Flip one byte of the test labels archive; its expected checksum stays the good one.
    let bad = &mut served[3].1;
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    let server = serve(&served);
    let root = scratch();
    let e = download_only(
        root.path(),
        &format!("{}/mirror", server.base_url),
        sha.clone(),
    )
    .load()
    .unwrap_err();
    let local = root.path().join("data").join("fashion-mnist");
    match &e {
        DatasetError::ChecksumMismatch {
            file,
            expected,
            actual,
            ..
        } => {
            assert_eq!(*file, local.join("t10k-labels-idx1-ubyte.gz"));
            assert_eq!(*expected, sha[3]);
            assert_eq!(*actual, sha256_hex(&served[3].1));
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    assert!(e.to_string().contains("t10k-labels-idx1-ubyte.gz"), "{e}");
    // The three good archives stay; the bad one left nothing, not even a temporary file.
    assert_eq!(
        listing(&local),
        [
            "t10k-images-idx3-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz"
        ]
    );

    // With the mirror fixed, the next load completes the interrupted download.
    drop(server);
    let server = serve(&good);
    let data = download_only(root.path(), &format!("{}/mirror", server.base_url), sha)
        .load()
        .unwrap();
    assert_eq!(data.location.origin, Origin::Downloaded);
    assert_eq!(data.location.downloaded, 1);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn incomplete_local_directory_without_download_is_a_missing_file() {
    let root = scratch();
    let local = root.path().join("data").join("fashion-mnist");
    link_all(&fixtures().gz, &local);
    fs::remove_file(local.join("train-labels-idx1-ubyte.gz")).unwrap();
    let e = download_only(root.path(), "http://127.0.0.1:9", checksums(&archives()))
        .download(false)
        .load()
        .unwrap_err();
    assert!(matches!(e, DatasetError::MissingFile { .. }), "{e}");
    assert!(e.to_string().contains("train-labels-idx1-ubyte"), "{e}");
}

#[test]
fn https_mirror_goes_through_tls_and_fails_cleanly() {
    // The server speaks plain HTTP, so the TLS handshake fails: this exercises the rustls
    // backend (built with the ring provider) and shows the failure is reported, not a panic.
    let server = Server::start(HashMap::new());
    let root = scratch();
    let mirror = server.base_url.replace("http://", "https://");
    let e = download_only(root.path(), &mirror, checksums(&archives()))
        .load()
        .unwrap_err();
    assert!(matches!(e, DatasetError::NotFound { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("{mirror}/train-images-idx3-ubyte.gz")),
        "{e}"
    );
    assert!(!root.path().join("data").exists());
}
