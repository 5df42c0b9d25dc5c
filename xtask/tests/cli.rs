//! `cargo xtask` as a user runs it: bad arguments fail with one clear line, and real training
//! runs (on the Debian Fashion-MNIST) produce their files, learn, resume exactly, reproduce
//! across thread counts, and agree with `eval`.
//!
//! Tests that need the dataset fail when `NORMA_REQUIRE_DATA=1` and it is missing (CI sets
//! it); otherwise they print a note and return.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("NORMA_DATA_DIR", "")
        .output()
        .expect("the xtask binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails with `args`, a non-zero status and a one-line message containing `expected`.
fn fails_clearly(args: &[&str], expected: &str) {
    let out = xtask(args);
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{args:?} panicked:\n{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = lines.last().copied().unwrap_or("");
    assert!(
        last.contains(expected),
        "{args:?}: expected '{expected}' in the last line, got:\n{err}"
    );
}

#[test]
fn bad_arguments_give_one_clear_line_and_a_failure_status() {
    fails_clearly(
        &["train-lenet", "--batch-size", "0"],
        "--batch-size must be at least 1",
    );
    fails_clearly(
        &["train-lenet", "--batch-size", "1"],
        "--batch-size 1 cannot train batch norm",
    );
    fails_clearly(
        &["train-lenet", "--model", "lenet-bn", "--batch-size", "1"],
        "cannot train batch norm",
    );
    fails_clearly(
        &["train-lenet", "--lr", "-0.5"],
        "--lr must be a positive finite number, got -0.5",
    );
    fails_clearly(
        &["train-lenet", "--lr", "NaN"],
        "--lr must be a positive finite number, got NaN",
    );
    fails_clearly(
        &["train-lenet", "--lr", "inf"],
        "--lr must be a positive finite number",
    );
    fails_clearly(
        &["train-lenet", "--model", "resnet"],
        "invalid value 'resnet' for '--model",
    );
    fails_clearly(
        &["train-lenet", "--epochs", "0"],
        "--epochs must be at least 1",
    );
    fails_clearly(
        &["train-lenet", "--momentum", "1.5"],
        "--momentum must be in [0, 1)",
    );
    fails_clearly(
        &["train-lenet", "--threads", "0"],
        "--threads must be at least 1",
    );
    fails_clearly(
        &["train-lenet", "--resume", "/nonexistent/run"],
        "no config.json there",
    );
    fails_clearly(
        &[
            "train-lenet",
            "--init",
            "/nonexistent/w.safetensors",
            "--model",
            "lenet",
        ],
        "no such file",
    );
    fails_clearly(
        &["train-lenet", "--init", "/tmp"],
        "--init holds one model's weights",
    );
    fails_clearly(
        &[
            "eval",
            "--model",
            "lenet",
            "--weights",
            "/nonexistent.safetensors",
        ],
        "no such file",
    );
    fails_clearly(&["lr-sweep", "--lrs", "0.1", "-1"], "positive finite");
    fails_clearly(&["frobnicate"], "unrecognized subcommand");
}

#[test]
fn a_data_dir_without_the_files_names_what_is_missing() {
    let empty = tempfile::tempdir().unwrap();
    let out = xtask(&[
        "train-lenet",
        "--data-dir",
        empty.path().to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("error:"), "{err}");
}

#[test]
fn an_init_file_that_does_not_fit_the_model_is_rejected_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.safetensors");
    // LeNet weights given to LeNet-BN: every bn tensor is missing, fc1 has the wrong shape.
    let lenet = norma_layers::models::lenet(
        norma_layers::models::Activation::Sigmoid,
        &mut norma_tensor::Rng::seed_from_u64(0),
    )
    .unwrap();
    norma_layers::checkpoint::save(&lenet, &file).unwrap();
    fails_clearly(
        &[
            "train-lenet",
            "--model",
            "lenet-bn",
            "--init",
            file.to_str().unwrap(),
        ],
        "does not fit the model",
    );
    std::fs::write(&file, b"not a checkpoint").unwrap();
    fails_clearly(
        &[
            "train-lenet",
            "--model",
            "lenet",
            "--init",
            file.to_str().unwrap(),
        ],
        "not a valid safetensors file",
    );
}

/// True when the real Fashion-MNIST is available; fails the test if it is required but missing.
fn have_data() -> bool {
    let present = Path::new(norma_datasets::DEBIAN_FASHION_MNIST_DIR)
        .join("train-images-idx3-ubyte.gz")
        .is_file();
    if !present {
        assert!(
            std::env::var("NORMA_REQUIRE_DATA").as_deref() != Ok("1"),
            "NORMA_REQUIRE_DATA=1 but Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
        );
        eprintln!("note: Fashion-MNIST not installed; skipping a test that trains on it");
    }
    present
}

fn train(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train-lenet", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let result = xtask(&args);
    assert!(
        result.status.success(),
        "{args:?} failed:\n{}",
        stderr(&result)
    );
    result
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The metrics without wall-clock fields, for comparing runs.
fn metrics_without_timing(dir: &Path) -> Value {
    let mut m = json(&dir.join("metrics.json"));
    for run in m.as_array_mut().unwrap() {
        for epoch in run["epochs"].as_array_mut().unwrap() {
            let e = epoch.as_object_mut().unwrap();
            e.remove("seconds");
            e.remove("samples_per_sec");
        }
    }
    m
}

fn weights(dir: &Path, model: &str) -> Vec<u8> {
    std::fs::read(dir.join(format!("{model}.safetensors"))).unwrap()
}

#[test]
fn lenet_bn_learns_fashion_mnist_in_a_few_hundred_steps() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = train(dir.path(), &["--model", "lenet-bn", "--steps", "300"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("train loss") && stdout.contains("lenet-bn"),
        "{stdout}"
    );
    let metrics = json(&dir.path().join("metrics.json"));
    let acc = metrics[0]["final_test_acc"].as_f64().unwrap();
    assert!(acc > 0.7, "test accuracy after 300 steps: {acc}");
    assert_eq!(metrics[0]["status"]["state"], "step_limit");
    // Every output exists and parses.
    let config = json(&dir.path().join("config.json"));
    assert_eq!(config["runs"][0]["lr"], 1.0);
    assert_eq!(config["runs"][0]["batch_size"], 256);
    let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert!(csv.starts_with("model,epoch,train_loss"));
    assert_eq!(
        csv.lines().count(),
        2,
        "one full epoch (235 steps) before the limit:\n{csv}"
    );
    for plot in ["curves.png", "curves.svg"] {
        assert!(
            std::fs::metadata(dir.path().join(plot)).unwrap().len() > 1000,
            "{plot}"
        );
    }
    let net = norma_layers::models::lenet_bn(
        norma_layers::models::Activation::Sigmoid,
        &mut norma_tensor::Rng::seed_from_u64(9),
    )
    .unwrap();
    norma_layers::checkpoint::load(&net, &dir.path().join("lenet-bn.safetensors")).unwrap();
}

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
    // Stopped at an epoch boundary, then extended.
    let paused = tempfile::tempdir().unwrap();
    train(paused.path(), &[&common[..], &["--epochs", "1"]].concat());
    train(
        paused.path(),
        &["--resume", paused.path().to_str().unwrap(), "--epochs", "2"],
    );
    // Stopped in the middle of the first epoch (8 steps per epoch), then resumed.
    let mid = tempfile::tempdir().unwrap();
    train(
        mid.path(),
        &[&common[..], &["--epochs", "2", "--steps", "5"]].concat(),
    );
    train(mid.path(), &["--resume", mid.path().to_str().unwrap()]);
    let want = metrics_without_timing(straight.path());
    for dir in [paused.path(), mid.path()] {
        assert_eq!(metrics_without_timing(dir), want, "{}", dir.display());
        assert!(
            weights(dir, "lenet-bn") == weights(straight.path(), "lenet-bn"),
            "weights differ"
        );
    }
}

#[test]
fn results_are_identical_on_one_and_two_threads() {
    if !have_data() {
        return;
    }
    let runs: Vec<PathBuf> = ["1", "2"]
        .iter()
        .map(|threads| {
            let dir = tempfile::tempdir().unwrap().keep();
            train(
                &dir,
                &[
                    "--train-samples",
                    "1024",
                    "--epochs",
                    "1",
                    "--seed",
                    "5",
                    "--threads",
                    threads,
                ],
            );
            dir
        })
        .collect();
    assert_eq!(
        metrics_without_timing(&runs[0]),
        metrics_without_timing(&runs[1])
    );
    for model in ["lenet", "lenet-bn"] {
        assert!(
            weights(&runs[0], model) == weights(&runs[1], model),
            "{model} weights differ between 1 and 2 threads"
        );
    }
    for dir in runs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn eval_reproduces_the_accuracy_printed_by_training() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    train(
        dir.path(),
        &[
            "--model",
            "lenet-bn",
            "--train-samples",
            "2048",
            "--epochs",
            "1",
        ],
    );
    let acc = json(&dir.path().join("metrics.json"))[0]["final_test_acc"]
        .as_f64()
        .unwrap();
    let predictions = dir.path().join("predictions.txt");
    let weights = dir.path().join("lenet-bn.safetensors");
    let out = xtask(&[
        "eval",
        "--model",
        "lenet-bn",
        "--weights",
        weights.to_str().unwrap(),
        "--predictions",
        predictions.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("test accuracy {acc:.4}")),
        "training said {acc}, eval said:\n{stdout}"
    );
    assert!(
        stdout.contains("confusion matrix") && stdout.contains("Ankle boot"),
        "{stdout}"
    );
    let lines: Vec<usize> = std::fs::read_to_string(&predictions)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(lines.len(), 10_000);
    assert!(lines.iter().all(|&p| p < 10));
}

#[test]
fn a_diverging_run_is_recorded_not_crashed() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Unbounded ReLU activations and an absurd rate overflow within a few steps.
    let args = [
        "--model",
        "lenet",
        "--activation",
        "relu",
        "--lr",
        "1e6",
        "--train-samples",
        "1024",
        "--epochs",
        "1",
    ];
    let out = train(dir.path(), &args);
    let err = stderr(&out);
    assert!(err.contains("Lower --lr"), "{err}");
    let metrics = json(&dir.path().join("metrics.json"));
    assert_eq!(metrics[0]["status"]["state"], "diverged", "{metrics}");
}
