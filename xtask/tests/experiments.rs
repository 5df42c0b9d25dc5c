//! The brief's claims as experiments, end to end on small budgets: precise batch-norm
//! statistics in `train-lenet` (measured on the side, never changing training), epochs to a
//! target and the train − test gap, `placement`, `affine`, `eval-mode` and `batch-size`.

mod common;

use common::{assert_report, have_data, json, metrics_without_timing, stdout, succeeds, train};

/// The running statistics of a safetensors file, by name.
fn tensors(path: &std::path::Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    norma_layers::checkpoint::from_bytes(&bytes)
        .unwrap()
        .into_iter()
        .filter_map(|(name, value)| match value {
            norma_layers::checkpoint::StateValue::F32(t) => Some((name, t.as_slice().to_vec())),
            _ => None,
        })
        .collect()
}

#[test]
fn precise_statistics_are_measured_on_the_side_and_saved_apart() {
    if !have_data() {
        return;
    }
    let args = [
        "--model",
        "lenet-bn",
        "--train-samples",
        "1024",
        "--epochs",
        "2",
        "--seed",
        "4",
    ];
    let with = tempfile::tempdir().unwrap();
    let out = train(with.path(), &[&args[..], &["--precise-bn", "3"]].concat());
    let without = tempfile::tempdir().unwrap();
    train(
        without.path(),
        &[&args[..], &["--precise-bn", "0"]].concat(),
    );
    // Training is the same step for step: same weights, same running statistics, same
    // moving-average accuracy every epoch.
    assert!(
        common::weights(with.path(), "lenet-bn") == common::weights(without.path(), "lenet-bn"),
        "precise evaluation changed training"
    );
    let (a, b) = (
        metrics_without_timing(with.path()),
        metrics_without_timing(without.path()),
    );
    for (ea, eb) in a[0]["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b[0]["epochs"].as_array().unwrap())
    {
        assert_eq!(ea["train_loss"], eb["train_loss"]);
        assert_eq!(ea["test_acc"], eb["test_acc"]);
        assert!(ea["test_acc_precise"].as_f64().is_some(), "{ea}");
        assert!(eb["test_acc_precise"].is_null(), "{eb}");
    }
    assert_eq!(a[0]["precise_bn_batches"], 3);
    assert!(!without
        .path()
        .join("lenet-bn-precise-bn.safetensors")
        .exists());
    // The precise file has the trained weights and other statistics, averaged over 3 batches.
    let trained = tensors(&with.path().join("lenet-bn.safetensors"));
    let precise = tensors(&with.path().join("lenet-bn-precise-bn.safetensors"));
    assert_eq!(trained["conv1.weight"], precise["conv1.weight"]);
    assert_ne!(trained["bn1.running_mean"], precise["bn1.running_mean"]);
    let counter = norma_layers::checkpoint::from_bytes(
        &std::fs::read(with.path().join("lenet-bn-precise-bn.safetensors")).unwrap(),
    )
    .unwrap()
    .into_iter()
    .find(|(n, _)| n == "bn1.num_batches_tracked")
    .map(|(_, v)| v);
    assert_eq!(
        counter,
        Some(norma_layers::checkpoint::StateValue::I64(3)),
        "a cumulative average over 3 batches"
    );
    // The final comparison leads with the precise number and shows the other.
    let text = stdout(&out);
    let final_acc = a[0]["final_test_acc_precise"].as_f64().unwrap();
    let moving = a[0]["final_test_acc"].as_f64().unwrap();
    let summary: Vec<&str> = text
        .lines()
        .skip_while(|l| !(l.starts_with("model") && l.contains("moving-avg BN")))
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        summary[..6],
        [
            "lenet-bn",
            "1",
            summary[2],
            summary[3],
            &format!("{final_acc:.4}"),
            &format!("{moving:.4}")
        ],
        "{text}"
    );
    let csv = std::fs::read_to_string(with.path().join("metrics.csv")).unwrap();
    assert!(csv.starts_with("model,epoch,train_loss,train_acc,test_acc,test_acc_precise,"));
    assert_report(
        with.path(),
        &["precise BN", "moving-avg BN", "Epochs to a test accuracy"],
    );
}

#[test]
fn twenty_epochs_report_epochs_to_target_and_the_gap_for_both_models() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = train(
        dir.path(),
        &[
            "--train-samples",
            "512",
            "--batch-size",
            "128",
            "--epochs",
            "20",
            "--precise-bn",
            "2",
        ],
    );
    let text = stdout(&out);
    let metrics = json(&dir.path().join("metrics.json"));
    for run in metrics.as_array().unwrap() {
        assert_eq!(run["epochs"].as_array().unwrap().len(), 20, "{run}");
    }
    // One row per model (two for LeNet-BN: precise and moving averages), a cell per target.
    let targets: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("epochs to a test accuracy"))
        .skip(2)
        .take(3)
        .collect();
    assert!(targets[0].starts_with("lenet "), "{text}");
    assert!(targets[1].starts_with("lenet-bn (precise BN)"), "{text}");
    assert!(targets[2].starts_with("lenet-bn (moving-avg BN)"), "{text}");
    for row in &targets {
        assert!(row.ends_with(" 20"), "epochs run: {row}");
    }
    // The gap table has all 20 epochs, and its numbers are train minus test accuracy.
    let gap: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("train - test accuracy gap"))
        .skip(2)
        .collect();
    assert!(gap[19].starts_with("20 "), "{text}");
    let last = &metrics[1]["epochs"][19];
    // Train accuracy in eval mode on the fixed training subset (here all 512 images), not the
    // training-mode mean over the epoch.
    let eval_train = last["eval_train_acc"].as_f64().unwrap();
    assert_ne!(Some(eval_train), last["train_acc"].as_f64(), "{last}");
    let expected = eval_train - last["test_acc_precise"].as_f64().unwrap();
    assert!(
        gap[19].trim_end().ends_with(&format!("{expected:+.4}")),
        "{}",
        gap[19]
    );
    assert_report(
        dir.path(),
        &["Train - test accuracy gap", "first epoch from which"],
    );
}

/// The rows of a csv file after its header, split at commas.
fn csv_rows(path: &std::path::Path) -> Vec<Vec<String>> {
    let csv = std::fs::read_to_string(path).unwrap();
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

/// Whether `acc` is a whole number of hundredths: an accuracy over 100 images can only be.
fn over_100_images(acc: f64) -> bool {
    let scaled = acc * 100.0;
    (scaled - scaled.round()).abs() < 1e-6
}

#[test]
fn placement_tunes_each_configuration_on_held_out_images_then_tests_it() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("placement");
    let o = out.to_str().unwrap();
    let result = succeeds(&[
        "placement",
        "--activations",
        "relu",
        "--lrs",
        "1",
        "0.1",
        "--tune-epochs",
        "1",
        "--epochs",
        "1",
        "--seeds",
        "2",
        "--train-samples",
        "512",
        "--validation",
        "100",
        "--precise-bn",
        "2",
        "--out",
        o,
    ]);
    // The grid: each configuration at each rate (increasing), one chosen per configuration,
    // the one of the best median validation accuracy.
    let grid = csv_rows(&out.join("placement-grid.csv"));
    assert_eq!(grid.len(), 4, "{grid:?}");
    let summary = json(&out.join("placement.json"));
    for (config, rows) in ["before", "after"].iter().zip(grid.chunks(2)) {
        assert_eq!(rows[0][..3], ["relu", config, "0.1"], "{grid:?}");
        assert_eq!(rows[1][2], "1", "{grid:?}");
        let median = |r: &Vec<String>| r[3].parse::<f64>().unwrap();
        let chosen: Vec<&Vec<String>> = rows.iter().filter(|r| r[8] == "true").collect();
        assert_eq!(chosen.len(), 1, "{grid:?}");
        assert!(
            rows.iter().all(|r| median(r) <= median(chosen[0])),
            "{grid:?}"
        );
        let lr: f64 = chosen[0][2].parse().unwrap();
        let entry = &summary["configs"][format!("relu-{config}")];
        assert_eq!(entry["chosen_lr"], lr, "{entry}");
        assert_eq!(entry["validation_acc_median"], median(chosen[0]), "{entry}");
        let test = &entry["test_acc"];
        let (lo, mid, hi) = (
            test["min"].as_f64(),
            test["median"].as_f64(),
            test["max"].as_f64(),
        );
        assert!(lo <= mid && mid <= hi && lo.is_some(), "{entry}");
        // The final runs train at the chosen rate, on all images, and are tested on the test set.
        for seed in 0..2 {
            let run = out.join(format!("runs/relu-{config}-seed{seed}"));
            let config_json = json(&run.join("config.json"));
            assert_eq!(config_json["runs"][0]["lr"], lr);
            assert_eq!(config_json["runs"][0]["placement"], *config);
            assert!(config_json.get("validation").is_none(), "{config_json}");
        }
    }
    // The tuning runs never see the test set: they hold the last 100 training images out and
    // are evaluated on them, so every accuracy they report is a whole number of hundredths
    // (over the 10 000 test images it would almost never be).
    let tuning: Vec<_> = std::fs::read_dir(out.join("tuning")).unwrap().collect();
    assert_eq!(tuning.len(), 8);
    for entry in tuning {
        let run = entry.unwrap().path();
        assert_eq!(json(&run.join("config.json"))["validation"], 100);
        let metrics = json(&run.join("metrics.json"));
        for key in ["final_test_acc", "final_test_acc_precise"] {
            let acc = metrics[0][key].as_f64().unwrap();
            assert!(over_100_images(acc), "{}: {key} {acc}", run.display());
        }
    }
    let finals = csv_rows(&out.join("placement-runs.csv"));
    assert_eq!(finals.len(), 4, "{finals:?}");
    let off_grid = finals
        .iter()
        .filter(|r| !over_100_images(r[4].parse().unwrap()))
        .count();
    assert!(off_grid > 0, "{finals:?}");
    for (row, (placement, seed)) in finals.iter().zip([
        ("before", "0"),
        ("after", "0"),
        ("before", "1"),
        ("after", "1"),
    ]) {
        assert_eq!(
            (row[1].as_str(), row[3].as_str()),
            (placement, seed),
            "{finals:?}"
        );
        assert_eq!(row[7], "ok", "{finals:?}");
    }
    assert_eq!(csv_rows(&out.join("placement.csv")).len(), 2);
    // Same seed, same initial weights: the two placements differ in the order of layers only,
    // so a different result shows the placement took effect.
    let before = json(&out.join("tuning/relu-before-lr1-seed0/metrics.json"));
    let after = json(&out.join("tuning/relu-after-lr1-seed0/metrics.json"));
    assert_ne!(
        before[0]["epochs"][0]["train_loss"],
        after[0]["epochs"][0]["train_loss"]
    );
    let text = stdout(&result);
    assert!(text.contains("relu, BN before activation"), "{text}");
    assert!(text.contains("relu, BN after activation"), "{text}");
    assert_report(
        &out,
        &[
            "placement",
            "Final test accuracy at each configuration",
            "Validation accuracy after 1 epochs",
            "2 seeds",
        ],
    );
    for figure in ["placement", "placement-grid"] {
        assert!(out.join(format!("{figure}.png")).is_file(), "{figure}");
    }
    assert_eq!(json(&out.join("config.json"))["experiment"], "placement");
}

#[test]
fn affine_trains_with_and_without_gamma_and_beta_and_the_latter_has_none() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("affine");
    let result = succeeds(&[
        "affine",
        "--activations",
        "relu",
        "--epochs",
        "1",
        "--seeds",
        "2",
        "--train-samples",
        "512",
        "--precise-bn",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    for file in [
        "affine.json",
        "affine.csv",
        "affine-gamma-beta.csv",
        "affine.png",
        "affine.svg",
        "affine-gamma-beta.png",
        "affine-gamma-beta.svg",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let csv = std::fs::read_to_string(out.join("affine.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    for (row, (prefix, params)) in rows.iter().zip([
        ("relu,affine,0,", ",8,ok"),
        ("relu,no-affine,0,", ",0,ok"),
        ("relu,affine,1,", ",8,ok"),
        ("relu,no-affine,1,", ",0,ok"),
    ]) {
        assert!(row.starts_with(prefix) && row.ends_with(params), "{csv}");
    }
    // The invariant, in the saved weights themselves: without affine no batch norm has a
    // weight or bias; with it every one has both, and training moved them from 1 and 0.
    let is_gamma_beta = |n: &str| n.starts_with("bn") && !n.contains("running");
    let without = tensors(&out.join("runs/relu-no-affine-seed1/lenet-bn.safetensors"));
    assert!(without.contains_key("bn1.running_mean"));
    assert!(
        !without.keys().any(|n| is_gamma_beta(n)),
        "{:?}",
        without.keys()
    );
    let with = tensors(&out.join("runs/relu-affine-seed1/lenet-bn.safetensors"));
    assert_eq!(with.keys().filter(|n| is_gamma_beta(n)).count(), 8);
    assert!(with["bn1.weight"].iter().any(|&g| g != 1.0));
    // Everything else has the same names and shapes in both.
    let rest = |t: &std::collections::BTreeMap<String, Vec<f32>>| -> Vec<(String, usize)> {
        t.iter()
            .filter(|(n, _)| !is_gamma_beta(n))
            .map(|(n, v)| (n.clone(), v.len()))
            .collect()
    };
    assert_eq!(rest(&with), rest(&without));
    let config = json(&out.join("runs/relu-no-affine-seed1/config.json"));
    assert_eq!(config["runs"][0]["affine"], false);
    let config = json(&out.join("runs/relu-affine-seed1/config.json"));
    assert!(config["runs"][0].get("affine").is_none(), "{config}");
    // The JSON: runs, the spread over seeds, and every learned γ and β.
    let results = json(&out.join("affine.json"));
    assert_eq!(results["runs"][1]["norm_parameters"], 0);
    assert_eq!(results["runs"][1]["affine"], false);
    let summary = &results["summary"][0]["final_test_acc"];
    assert!(summary["min"].as_f64().unwrap() <= summary["median"].as_f64().unwrap());
    assert!(summary["median"].as_f64().unwrap() <= summary["max"].as_f64().unwrap());
    assert_eq!(results["gamma_beta"].as_array().unwrap().len(), 2);
    assert_eq!(results["gamma_beta"][0]["layers"][2]["layer"], "bn3");
    assert_eq!(
        results["gamma_beta"][0]["layers"][2]["gamma"]
            .as_array()
            .unwrap()
            .len(),
        120
    );
    let per_channel = std::fs::read_to_string(out.join("affine-gamma-beta.csv")).unwrap();
    assert_eq!(per_channel.lines().count(), 1 + 2 * (6 + 16 + 120 + 84));
    let text = stdout(&result);
    assert!(text.contains("relu, no γ, β"), "{text}");
    assert_report(&out, &["affine", "Final test accuracy", "learned γ and β"]);
    assert_eq!(json(&out.join("config.json"))["experiment"], "affine");
}

#[test]
fn eval_mode_trains_a_model_and_shows_what_training_mode_does_to_predictions() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval-mode");
    let result = succeeds(&[
        "eval-mode",
        "--epochs",
        "1",
        "--train-samples",
        "1024",
        "--batch-sizes",
        "1",
        "2",
        "500",
        "--orders",
        "2",
        "--precise-bn",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    // The model it trained is a train-lenet run of its own.
    let model = json(&out.join("model/metrics.json"));
    assert_eq!(model[0]["model"], "lenet-bn");
    assert_eq!(model[0]["epochs"].as_array().unwrap().len(), 1);
    let r = json(&out.join("eval-mode.json"));
    // A batch of one image cannot be normalized in training mode (BatchNorm1d).
    let one = &r["train"][0];
    assert_eq!(one["batch_size"], 1);
    assert!(
        one["error"]
            .as_str()
            .unwrap()
            .contains("more than 1 value per channel"),
        "{one}"
    );
    // Eval mode: the class never depends on the batch; training mode: it does.
    for e in r["eval"].as_array().unwrap() {
        assert_eq!(e["depends_on_company"], 0.0, "{e}");
        assert_eq!(e["differs_from_alone"], 0.0, "{e}");
    }
    let two = &r["train"][1];
    assert!(two["error"].is_null());
    assert!(two["differs_from_alone"].as_f64().unwrap() > 0.05, "{two}");
    assert!(
        two["depends_on_company"].as_f64().unwrap()
            > r["train"][2]["depends_on_company"].as_f64().unwrap(),
        "smaller batches, more dependence: {r}"
    );
    assert_eq!(r["eval_precise"][1], 3, "{r}");
    // The class-sorted stream and the overwritten statistics, at every batch size.
    let by_class = r["train_by_class"].as_array().unwrap();
    assert_eq!(by_class.len(), 3, "{r}");
    // Overwritten by a shuffled and by a class-sorted pass.
    let mut accuracies = Vec::new();
    for key in ["overwritten", "overwritten_by_class"] {
        let overwritten = r[key].as_array().unwrap();
        assert_eq!(overwritten.len(), 3, "{key}: {r}");
        assert!(overwritten[0]["error"]
            .as_str()
            .unwrap()
            .contains("value per channel"));
        for o in &overwritten[1..] {
            let acc = o["eval_accuracy"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&acc), "{o}");
            accuracies.push(acc);
        }
    }
    assert_ne!(
        accuracies[..2],
        accuracies[2..],
        "the passes leave other statistics: {r}"
    );
    let csv = std::fs::read_to_string(out.join("eval-mode.csv")).unwrap();
    assert_eq!(
        csv.lines()
            .filter(|l| l.starts_with("eval-after-sorted-pass,"))
            .count(),
        3,
        "{csv}"
    );
    assert!(by_class[1]["error"].is_null(), "{r}");
    assert!(
        by_class[1]["depends_on_company"].as_f64().unwrap() > 0.0,
        "sorted batches change classes too: {r}"
    );
    let text = stdout(&result);
    assert!(text.contains("fails (see below)"), "{text}");
    assert!(text.contains("training mode with batches of 1: "), "{text}");
    for file in [
        "eval-mode.csv",
        "eval-mode.png",
        "eval-mode.svg",
        "config.json",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    assert_report(&out, &["eval-mode", "class depends on the company"]);
}

#[test]
fn eval_mode_takes_weights_and_refuses_weights_of_another_model() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("bn.safetensors");
    common::save_weights(&weights, true);
    let out = dir.path().join("out");
    succeeds(&[
        "eval-mode",
        "--weights",
        weights.to_str().unwrap(),
        "--batch-sizes",
        "100",
        "--orders",
        "1",
        "--precise-bn",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!out.join("model").exists(), "nothing trained");
    let r = json(&out.join("eval-mode.json"));
    assert!(r["eval_precise"].is_null(), "{r}");
    assert_eq!(r["train"].as_array().unwrap().len(), 1);
    // LeNet weights are not LeNet-BN's: refused before any folder or data.
    let plain = dir.path().join("plain.safetensors");
    common::save_weights(&plain, false);
    let refused = dir.path().join("refused");
    common::fails_clearly(
        &[
            "eval-mode",
            "--weights",
            plain.to_str().unwrap(),
            "--out",
            refused.to_str().unwrap(),
        ],
        &["does not fit the model"],
    );
    assert!(!refused.exists());
}

/// The cell of `norm` at `batch` in `batch-size.json`.
fn cell<'a>(r: &'a serde_json::Value, norm: &str, batch: u64) -> &'a serde_json::Value {
    r.as_array()
        .unwrap()
        .iter()
        .find(|c| c["norm"] == norm && c["batch_size"] == batch)
        .unwrap_or_else(|| panic!("no cell {norm} at {batch} in {r}"))
}

#[test]
fn batch_size_trains_every_normalization_and_batch_norm_fails_on_one_image() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("batch-size");
    // 513 = 256·2 + 1 = 2·256 + 1: at batch sizes 2 and 256 the last batch of every epoch
    // would hold a single image.
    let result = succeeds(&[
        "batch-size",
        "--train-samples",
        "513",
        "--batch-sizes",
        "1,2,256",
        "--epochs",
        "1",
        "--precise-bn-images",
        "512",
        // Ghosts of 100 at batch 256 (and 257); at 1 and 2 ghost batch norm is batch norm.
        "--ghost-batch",
        "100",
        "--out",
        out.to_str().unwrap(),
    ]);
    let r = json(&out.join("batch-size.json"));
    assert_eq!(r.as_array().unwrap().len(), 16, "{r}");
    // Batch norm on one image: the cell holds the error BatchNorm returned, not a crash.
    let bn1 = cell(&r, "batch", 1);
    assert_eq!(bn1["outcome"], "cannot train", "{bn1}");
    assert_eq!(bn1["reason"], "one value per channel", "{bn1}");
    let error = bn1["error"].as_str().unwrap();
    assert!(
        error.contains("more than 1 value per channel") && error.contains("[1, 120]"),
        "{error}"
    );
    assert!(bn1["final_test_acc"].is_null());
    assert!(!out.join("runs/lenet-bn-b1-seed0").exists());
    // So does Batch Renormalization, which starts from the batch statistics.
    let brn1 = cell(&r, "renorm", 1);
    assert_eq!(brn1["outcome"], "cannot train", "{brn1}");
    assert_eq!(brn1["reason"], "one value per channel", "{brn1}");
    // Every other normalization trains on one image at a time, one step per image.
    for norm in ["none", "group", "layer"] {
        let c = cell(&r, norm, 1);
        assert_eq!(c["steps_per_epoch"], 513, "{c}");
        assert!(c["final_test_acc"].as_f64().is_some(), "{c}");
        assert!(c["error"].is_null(), "{c}");
    }
    // The last image of an epoch joins the batch before it (255 batches of 2 and one of 3;
    // 256 and 257), so batch norm trains at 2 and 256 where a batch of one would follow.
    for (norm, model, batch, steps, precise_batches) in [
        ("batch", "lenet-bn", 2, 256, 256),
        ("batch", "lenet-bn", 256, 2, 2),
        ("renorm", "lenet-brn", 2, 256, 256),
        ("renorm", "lenet-brn", 256, 2, 2),
    ] {
        let c = cell(&r, norm, batch);
        assert_eq!(c["steps_per_epoch"], steps, "{c}");
        assert_ne!(c["outcome"], "cannot train", "{c}");
        assert!(c["final_test_acc"].as_f64().is_some(), "{c}");
        assert!(c["final_test_acc_moving_avg"].as_f64().is_some(), "{c}");
        let metrics = json(&out.join(format!("runs/{model}-b{batch}-seed0/metrics.json")));
        assert_eq!(
            metrics[0]["precise_bn_batches"], precise_batches,
            "{metrics}"
        );
    }
    // Learning rates scale linearly from batch 256: 0.9 for lenet, 1.0 for the others.
    assert_eq!(cell(&r, "none", 2)["lr"], 0.9 * 2.0 / 256.0);
    assert_eq!(cell(&r, "group", 2)["lr"], 2.0 / 256.0);
    assert_eq!(cell(&r, "layer", 256)["lr"], 1.0);
    let config = json(&out.join("runs/lenet-gn-b2-seed0/config.json"));
    assert_eq!(config["runs"][0]["model"], "lenet-gn");
    assert_eq!(config["runs"][0]["batch_size"], 2);
    assert!(config["runs"][0].get("renorm_steps").is_none(), "{config}");
    // Renorm's schedule is compressed into the cell's own steps (1 epoch of 256 batches).
    let config = json(&out.join("runs/lenet-brn-b2-seed0/config.json"));
    assert_eq!(config["runs"][0]["model"], "lenet-brn");
    assert_eq!(config["runs"][0]["renorm_steps"], 256);
    assert_eq!(cell(&r, "renorm", 2)["lr"], 2.0 / 256.0);
    // Example-weighted inference: batch norm at the smallest batches only, α = 1/b, from the
    // trained weights (an accuracy of its own, not a copy of the moving averages' column).
    let bn2 = cell(&r, "batch", 2);
    assert_eq!(bn2["example_weight"], 0.5, "{bn2}");
    let weighted = bn2["final_test_acc_example_weighted"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&weighted), "{bn2}");
    for (norm, batch) in [("batch", 256), ("batch", 1), ("renorm", 2), ("group", 2)] {
        let c = cell(&r, norm, batch);
        assert!(c["final_test_acc_example_weighted"].is_null(), "{c}");
        assert!(c["example_weight"].is_null(), "{c}");
    }
    let text = stdout(&result);
    assert!(
        text.contains("cannot train: one value per channel"),
        "{text}"
    );
    assert!(text.contains("lenet-bn (precise BN)"), "{text}");
    assert!(text.contains("lenet-brn (precise BN)"), "{text}");
    assert!(text.contains("lenet-brn (moving avg)"), "{text}");
    assert!(
        text.contains("lenet-bn (example-weighted, α = 1/b)"),
        "{text}"
    );
    // Ghost batch norm at 256 only, with its ghost size in the cell's config.
    let gbn = cell(&r, "ghost", 256);
    assert!(gbn["final_test_acc"].as_f64().is_some(), "{gbn}");
    let config = json(&out.join("runs/lenet-gbn-b256-seed0/config.json"));
    assert_eq!(config["runs"][0]["ghost_batch"], 100, "{config}");
    assert!(!out.join("runs/lenet-gbn-b2-seed0").exists());
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(summary.contains("= lenet-bn"), "{summary}");
    assert!(summary.contains("lenet-gbn (precise BN)"), "{summary}");
    let remedies = std::fs::read_to_string(out.join("remedies.csv")).unwrap();
    assert_eq!(remedies.lines().count(), 4, "{remedies}");
    // LeNet-BN trained at 256 fine-tuned at batch 2, live and frozen, from its precise
    // statistics; the frozen run stores --freeze-bn and the weights it started from.
    let tuned = json(&out.join("fine-tune.json"));
    let tuned = &tuned[0];
    assert_eq!(
        (
            tuned["trained_batch"].as_u64(),
            tuned["batch_size"].as_u64()
        ),
        (Some(256), Some(2))
    );
    assert_eq!(
        tuned["before_acc"],
        cell(&r, "batch", 256)["final_test_acc"],
        "{tuned}"
    );
    for key in ["live_acc", "live_acc_moving_avg", "frozen_acc"] {
        assert!(tuned[key].as_f64().is_some(), "{key}: {tuned}");
    }
    let frozen = json(&out.join("runs/lenet-bn-b256-frozen-b2-seed0/config.json"));
    assert_eq!(frozen["runs"][0]["freeze_bn"], true, "{frozen}");
    assert!(frozen["runs"][0]["init"]
        .as_str()
        .unwrap()
        .ends_with("lenet-bn-b256-seed0/lenet-bn-precise-bn.safetensors"));
    let live = json(&out.join("runs/lenet-bn-b256-finetune-b2-seed0/config.json"));
    assert!(live["runs"][0].get("freeze_bn").is_none(), "{live}");
    let csv = std::fs::read_to_string(out.join("batch-size.csv")).unwrap();
    assert_eq!(csv.lines().count(), 17, "{csv}");
    assert!(csv.contains("\nrenorm,lenet-brn,2,0,"), "{csv}");
    assert!(csv.contains(&format!(",{weighted},0.5,")), "{csv}");
    assert!(
        csv.contains(",cannot train,\"one value per channel\","),
        "{csv}"
    );
    for file in ["batch-size.png", "batch-size.svg", "config.json"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    assert_report(
        &out,
        &[
            "batch-size",
            "cannot train: one value per channel",
            "[1, 120]",
            "Batch Renormalization (Ioffe 2017)",
            "example-weighted inference statistics (Summers &amp; Dinneen 2020)",
        ],
    );
    assert_eq!(json(&out.join("config.json"))["experiment"], "batch-size");
    // A cell's weights are the model's: eval gives the cell's accuracy.
    let gn = cell(&r, "group", 2);
    let eval = succeeds(&[
        "eval",
        "--model",
        "lenet-gn",
        "--weights",
        out.join("runs/lenet-gn-b2-seed0/lenet-gn.safetensors")
            .to_str()
            .unwrap(),
    ]);
    let expected = format!(
        "test accuracy {:.4}",
        gn["final_test_acc"].as_f64().unwrap()
    );
    assert!(stdout(&eval).contains(&expected), "{}", stdout(&eval));
    // A cell is a train-lenet run. Resumed in place it would leave the experiment's tables
    // stale, so it is refused; copied out, train-lenet --resume continues it.
    let inside = out.join("runs/lenet-ln-b2-seed0");
    common::fails_clearly(
        &["train-lenet", "--resume", inside.to_str().unwrap()],
        &["this run is part of the `batch-size` experiment"],
    );
    let ln = dir.path().join("lenet-ln-alone");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&inside)
        .arg(&ln)
        .status()
        .unwrap();
    assert!(copied.success());
    succeeds(&[
        "train-lenet",
        "--resume",
        ln.to_str().unwrap(),
        "--epochs",
        "2",
    ]);
    let metrics = json(&ln.join("metrics.json"));
    assert_eq!(metrics[0]["model"], "lenet-ln");
    assert_eq!(
        metrics[0]["epochs"].as_array().unwrap().len(),
        2,
        "{metrics}"
    );
    common::fails_clearly(
        &[
            "train-lenet",
            "--resume",
            ln.to_str().unwrap(),
            "--model",
            "lenet",
        ],
        &["--model lenet", "lenet-ln"],
    );
    // Same seed, same result: one cell again, alone.
    let again = dir.path().join("again");
    succeeds(&[
        "batch-size",
        "--train-samples",
        "513",
        "--batch-sizes",
        "2",
        "--norms",
        "group",
        "--epochs",
        "1",
        "--out",
        again.to_str().unwrap(),
    ]);
    let a = json(&again.join("batch-size.json"));
    assert_eq!(
        a[0]["final_test_acc"],
        cell(&r, "group", 2)["final_test_acc"]
    );
    assert_eq!(
        a[0]["max_batch_loss"],
        cell(&r, "group", 2)["max_batch_loss"]
    );
}
