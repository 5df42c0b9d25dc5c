//! Where `.gz` files are decompressed when there is no usable user cache directory: no
//! `XDG_CACHE_HOME` and no `HOME`, or a default one that cannot be created.
//!
//! Alone in its test binary because it changes process-wide environment variables.

mod common;

use std::fs;

use common::*;
use norma_datasets::{DatasetError, FashionMnist, LoadOptions};

fn options(data: &std::path::Path, root: &std::path::Path) -> LoadOptions {
    FashionMnist::options()
        .read_env(false)
        .data_dir(Some(data.to_path_buf()))
        .local_dir(root.join("no-local"))
        .system_dir(None)
        .download(false)
}

#[test]
fn without_a_usable_cache_directory_gz_files_go_to_a_temporary_directory() {
    let root = scratch();
    let data_dir = root.path().join("data");
    link_all(&fixtures().gz, &data_dir);
    let before = tree(&data_dir);
    std::env::remove_var("XDG_CACHE_HOME");
    std::env::remove_var("HOME");

    let data = options(&data_dir, root.path()).load().unwrap();
    assert_eq!(data.location.cache_dir, None);
    assert_eq!(data.location.decompressed, 4);
    assert_eq!(data.train.len(), 60_000);
    let shown = data.location.to_string();
    assert!(shown.contains("temporary"), "{shown}");
    for file in &data.location.files {
        assert!(
            file.starts_with(&data_dir),
            "the temporary copies are gone, so the sources are named: {}",
            file.display()
        );
    }

    // A default cache directory that cannot be created (a file is in the way): the same.
    let blocker = root.path().join("a-file");
    fs::write(&blocker, b"in the way").unwrap();
    std::env::set_var("XDG_CACHE_HOME", blocker.join("cache"));
    let data = options(&data_dir, root.path()).load().unwrap();
    assert_eq!(data.location.cache_dir, None);
    assert_eq!(data.test.len(), 10_000);
    assert_eq!(
        tree(&data_dir),
        before,
        "the data directory was not written to"
    );

    // A cache directory the caller named must be usable: an error naming it.
    let named = blocker.join("named-cache");
    let e = options(&data_dir, root.path())
        .user_cache_dir(&named)
        .load()
        .unwrap_err();
    assert!(matches!(e, DatasetError::Io { .. }), "{e}");
    assert!(e.to_string().contains(&named.display().to_string()), "{e}");

    // No cache and no temporary folder: the error says which variables give it one.
    std::env::set_var("TMPDIR", root.path().join("nonexistent"));
    let e = options(&data_dir, root.path())
        .load()
        .unwrap_err()
        .to_string();
    std::env::remove_var("TMPDIR");
    std::env::remove_var("XDG_CACHE_HOME");
    assert!(
        e.starts_with(&format!(
            "{}: making a temporary folder",
            root.path().join("nonexistent").display()
        )),
        "{e}"
    );
    assert!(
        e.contains("point TMPDIR or XDG_CACHE_HOME at a folder you can write to"),
        "{e}"
    );
}
