//! `cargo xtask` as a user runs it on the real data (the Debian Fashion-MNIST): training runs
//! produce their files, learn, reproduce across thread counts, agree with `eval`, and stop
//! cleanly when they diverge.
//!
//! Tests that need the dataset fail when `NORMA_REQUIRE_DATA=1` and it is missing (CI sets
//! it); otherwise they print a note and return.

mod common;

use std::path::PathBuf;

use common::{have_data, json, metrics_without_timing, stderr, train, weights, xtask};

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
    // Nothing but the outputs: no temporary files left.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "checkpoint",
            "config.json",
            "curves.png",
            "curves.svg",
            "lenet-bn-precise-bn.safetensors",
            "lenet-bn.safetensors",
            "metrics.csv",
            "metrics.json",
            "report.html",
            "targets.csv"
        ]
    );
    // The epochs-to-target table as a program reads it.
    let targets = std::fs::read_to_string(dir.path().join("targets.csv")).unwrap();
    assert!(
        targets.starts_with("model,≥ 0.80 from epoch,")
            && targets.contains("\nlenet-bn (precise BN),"),
        "{targets}"
    );
    common::assert_report(dir.path(), &["Final comparison", "lenet-bn"]);
    let net = norma_layers::models::lenet_bn(
        norma_layers::models::Activation::Sigmoid,
        &mut norma_tensor::Rng::seed_from_u64(9),
    )
    .unwrap();
    norma_layers::checkpoint::load(&net, &dir.path().join("lenet-bn.safetensors")).unwrap();
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
        stdout.contains("confusion matrix") && stdout.contains("9 Ankle boot"),
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
fn a_diverging_run_is_stopped_and_recorded_not_crashed() {
    if !have_data() {
        return;
    }
    // Plain sigmoid LeNet at an absurd rate: the loss reaches ~1e7 but stays finite; it is
    // stopped all the same, and the advice includes batch norm.
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--model",
        "lenet",
        "--lr",
        "1e6",
        "--train-samples",
        "1024",
        "--epochs",
        "1",
    ];
    let out = train(dir.path(), &args);
    let err = stderr(&out);
    assert!(
        err.contains("Lower --lr") && err.contains("use batch norm"),
        "{err}"
    );
    let metrics = json(&dir.path().join("metrics.json"));
    assert_eq!(metrics[0]["status"]["state"], "diverged", "{metrics}");
    // Resuming a run with a diverged model keeps it as it is.
    common::succeeds(&[
        "train-lenet",
        "--resume",
        dir.path().to_str().unwrap(),
        "--epochs",
        "2",
    ]);
    let metrics = json(&dir.path().join("metrics.json"));
    assert_eq!(metrics[0]["status"]["state"], "diverged", "{metrics}");
    // LeNet-BN at an absurd rate: no advice to use the batch norm it has.
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--model",
        "lenet-bn",
        "--lr",
        "1e30",
        "--train-samples",
        "1024",
        "--epochs",
        "1",
    ];
    let out = train(dir.path(), &args);
    let err = stderr(&out);
    assert!(
        err.contains("Lower --lr") && !err.contains("batch norm"),
        "{err}"
    );
    let metrics = json(&dir.path().join("metrics.json"));
    assert_eq!(metrics[0]["status"]["state"], "diverged", "{metrics}");
}

/// Batch statistics that overflow inside a step (LeNet-BN with ReLU at an absurd rate: the
/// next forward pass meets infinite activations) are the divergence rule's, not an internal
/// error: the model is marked diverged, the run finishes, and a resume keeps it. In `train-lenet`
/// and in `placement`, which trains through the same step.
#[test]
fn overflowing_batch_statistics_are_divergence() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--model",
        "lenet-bn",
        "--activation",
        "relu",
        "--lr",
        "1e20",
        "--train-samples",
        "1024",
        "--epochs",
        "1",
    ];
    let out = train(dir.path(), &args);
    let err = stderr(&out);
    assert!(err.contains("overflowed to infinity or NaN"), "{err}");
    assert!(!err.contains("batch statistics of channel"), "{err}");
    let metrics = json(&dir.path().join("metrics.json"));
    assert_eq!(metrics[0]["status"]["state"], "diverged", "{metrics}");
    common::succeeds(&[
        "train-lenet",
        "--resume",
        dir.path().to_str().unwrap(),
        "--epochs",
        "2",
    ]);
    let metrics = json(&dir.path().join("metrics.json"));
    assert_eq!(metrics[0]["status"]["state"], "diverged", "{metrics}");

    let out_dir = tempfile::tempdir().unwrap();
    let placement = out_dir.path().join("p");
    common::succeeds(&[
        "placement",
        "--lrs",
        "1e30",
        "--train-samples",
        "512",
        "--validation",
        "100",
        "--epochs",
        "1",
        "--tune-epochs",
        "1",
        "--out",
        placement.to_str().unwrap(),
    ]);
    assert!(placement.join("report.html").is_file());
    // Every tuning run diverged (seeds 1, diverged 1); the only rate is still chosen.
    let grid = std::fs::read_to_string(placement.join("placement-grid.csv")).unwrap();
    assert_eq!(grid.lines().count(), 5, "{grid}");
    assert!(
        grid.lines().skip(1).all(|l| l.ends_with(",1,1,true")),
        "{grid}"
    );
}

#[test]
fn plain_lenet_trains_with_batches_of_one() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    train(
        dir.path(),
        &[
            "--model",
            "lenet",
            "--batch-size",
            "1",
            "--train-samples",
            "64",
            "--steps",
            "5",
        ],
    );
    let progress = json(&dir.path().join("checkpoint/lenet/progress.json"));
    assert_eq!(progress["global_step"], 5);
    assert_eq!(progress["seen"], 5, "one sample per step");
}

#[test]
fn a_sweep_labels_its_runs_with_the_rule_that_stops_training() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    common::succeeds(&[
        "lr-sweep",
        "--model",
        "lenet",
        "--lrs",
        "0.01",
        "1e6",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--train-samples",
        "512",
        "--out",
        out.to_str().unwrap(),
    ]);
    let runs = json(&out.join("sweep.json"));
    let outcomes: Vec<(&str, f64)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["outcome"].as_str().unwrap(), r["lr"].as_f64().unwrap()))
        .collect();
    assert_eq!(outcomes, [("stalled", 0.01), ("diverged", 1e6)], "{runs}");
    let one = json(&out.join("runs/lenet-lr1000000-seed0/metrics.json"));
    assert_eq!(one[0]["status"]["state"], "diverged");
    for file in ["sweep.csv", "sweep.png", "sweep.svg", "config.json"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    common::assert_report(&out, &["lr-sweep", "1e6", "stalled", "diverged"]);
    common::assert_report(&out.join("runs/lenet-lr0.01-seed0"), &["Final comparison"]);
}
