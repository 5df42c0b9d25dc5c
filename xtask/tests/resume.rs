//! `--resume`: a stored run continues exactly, keeps its configuration, and a resume that
//! cannot load everything fails before writing anything.

mod common;

use common::{
    failed_clearly, have_data, json, metrics_without_timing, snapshot, stdout, train, weights,
    xtask,
};

#[test]
fn a_resumed_run_ends_exactly_where_an_uninterrupted_one_does() {
    if !have_data() {
        return;
    }
    let common = [
        "--model",
        "lenet-bn",
        "--train-samples",
        "2048",
        "--seed",
        "3",
        "--optimizer",
        "sgd",
        "--momentum",
        "0.9",
        "--lr",
        "0.1",
    ];
    let straight = tempfile::tempdir().unwrap();
    train(straight.path(), &[&common[..], &["--epochs", "2"]].concat());
    // Stopped at an epoch boundary, then extended (repeating the stored options is fine).
    let paused = tempfile::tempdir().unwrap();
    train(paused.path(), &[&common[..], &["--epochs", "1"]].concat());
    let p = paused.path().to_str().unwrap();
    common::succeeds(
        &[
            &["train-lenet", "--resume", p, "--epochs", "2"],
            &common[..],
        ]
        .concat(),
    );
    // Stopped in the middle of the first epoch (8 steps per epoch), then resumed.
    let mid = tempfile::tempdir().unwrap();
    train(
        mid.path(),
        &[&common[..], &["--epochs", "2", "--steps", "5"]].concat(),
    );
    common::succeeds(&["train-lenet", "--resume", mid.path().to_str().unwrap()]);
    let want = metrics_without_timing(straight.path());
    for dir in [paused.path(), mid.path()] {
        assert_eq!(metrics_without_timing(dir), want, "{}", dir.display());
        assert!(
            weights(dir, "lenet-bn") == weights(straight.path(), "lenet-bn"),
            "weights differ"
        );
    }
    let config = json(&paused.path().join("config.json"));
    assert_eq!(config["runs"][0]["epochs"], 2);
    assert_eq!(config["resumed"].as_array().unwrap().len(), 1, "{config}");
}

#[test]
fn a_resume_that_cannot_go_ahead_changes_nothing() {
    if !have_data() {
        return;
    }
    let run = tempfile::tempdir().unwrap();
    let dir = run.path();
    let d = dir.to_str().unwrap();
    train(
        dir,
        &[
            "--train-samples",
            "512",
            "--batch-size",
            "128",
            "--epochs",
            "1",
        ],
    );
    let before = snapshot(dir);
    let refused = |args: &[&str], expected: &[&str]| {
        let out = xtask(args);
        failed_clearly(&out, &format!("{args:?}"), expected);
        assert!(
            !stdout(&out).contains("train loss"),
            "{args:?} started training:\n{}",
            stdout(&out)
        );
        assert!(snapshot(dir) == before, "{args:?} changed the run's files");
    };
    // The old run is not an output folder, and its configuration cannot change.
    refused(
        &["train-lenet", "--lr", "0.05", "--seed", "9", "--out", d],
        &["is not empty", "--resume"],
    );
    refused(
        &["train-lenet", "--resume", d, "--lr", "0.05", "--seed", "9"],
        &["--lr 0.05 (stored: 0.9 / 1)", "--seed 9 (stored: 0)"],
    );
    refused(
        &[
            "train-lenet",
            "--resume",
            d,
            "--precise-bn",
            "5",
            "--placement",
            "after",
        ],
        &[
            "--placement after (stored: before)",
            "--precise-bn 5 (stored: 200)",
        ],
    );
    // Limits below what was done.
    refused(
        &["train-lenet", "--resume", d, "--steps", "2"],
        &["--steps 2 is below the saved progress (lenet has taken 4 steps)"],
    );
    refused(
        &["train-lenet", "--resume", d, "--epochs", "0"],
        &["--epochs must be at least 1"],
    );
    // A corrupt checkpoint of the second model: nothing is trained or written, not even the
    // first model's epoch.
    let bn_model = dir.join("checkpoint/lenet-bn/model.safetensors");
    std::fs::write(&bn_model, b"garbage").unwrap();
    let before = snapshot(dir);
    let out = xtask(&["train-lenet", "--resume", d, "--epochs", "2"]);
    failed_clearly(
        &out,
        "resume with a corrupt checkpoint",
        &["lenet-bn", "model.safetensors"],
    );
    assert!(!stdout(&out).contains("train loss"), "{}", stdout(&out));
    assert!(
        snapshot(dir) == before,
        "a failed resume changed the run's files"
    );
    // No checkpoint at all is an error, not a fresh start.
    std::fs::remove_dir_all(dir.join("checkpoint")).unwrap();
    let before = snapshot(dir);
    let out = xtask(&["train-lenet", "--resume", d, "--epochs", "2"]);
    failed_clearly(&out, "resume without checkpoints", &["no checkpoint in"]);
    assert!(snapshot(dir) == before);
}
