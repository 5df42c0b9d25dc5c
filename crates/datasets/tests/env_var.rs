//! `NORMA_DATA_DIR` is read by the crate, and an explicit directory argument wins over it.
//!
//! Alone in its test binary because it sets a process-wide environment variable.

mod common;

use common::*;
use norma_datasets::{FashionMnist, Origin, DATA_DIR_ENV};

#[test]
fn env_var_is_used_and_the_argument_wins() {
    let root = scratch();
    let from_env = root.path().join("from-env");
    let from_arg = root.path().join("from-arg");
    link_all(&fixtures().raw, &from_env);
    link_all(&fixtures().raw, &from_arg);
    std::env::set_var(DATA_DIR_ENV, &from_env);
    let opts = || {
        FashionMnist::options()
            .local_dir(root.path().join("no-local"))
            .system_dir(None)
            .download(false)
    };
    let data = opts().load().unwrap();
    assert_eq!(data.location.origin, Origin::EnvVar);
    assert_eq!(data.location.dir, from_env);
    assert!(data.location.to_string().contains("NORMA_DATA_DIR"));

    let data = opts().data_dir(Some(from_arg.clone())).load().unwrap();
    assert_eq!(data.location.origin, Origin::Argument);
    assert_eq!(data.location.dir, from_arg);

    // `FashionMnist::load` passes its argument the same way (found before any download).
    let data = FashionMnist::load(Some(&from_arg)).unwrap();
    assert_eq!(data.location.origin, Origin::Argument);
    assert_eq!(data.location.dir, from_arg);

    let e = opts().read_env(false).load().unwrap_err();
    assert!(
        !e.to_string().contains(&from_env.display().to_string()),
        "with read_env(false) the variable is ignored: {e}"
    );
    std::env::remove_var(DATA_DIR_ENV);
}
