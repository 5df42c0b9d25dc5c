//! The "why batch norm works" experiments end to end on tiny budgets: `drift` (Ioffe &
//! Szegedy's Figure 1) and `smoothness` (Santurkar et al.'s Figure 4 and noisy batch norm).
//! With NORMA_REQUIRE_DATA=1 a missing Fashion-MNIST fails these tests instead of skipping
//! them.

mod common;

use std::path::Path;

use common::{assert_report, fails_clearly, have_data, json, no_data, succeeds};
use serde_json::Value;

const TINY: [&str; 2] = ["--train-samples", "600"];

fn drift(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["drift", "--out", out.to_str().unwrap()];
    args.extend_from_slice(&TINY);
    args.extend_from_slice(extra);
    succeeds(&args)
}

fn smoothness(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["smoothness", "--out", out.to_str().unwrap()];
    args.extend_from_slice(&TINY);
    args.extend_from_slice(extra);
    succeeds(&args)
}

fn model<'a>(results: &'a Value, name: &str) -> &'a Value {
    results
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == name)
        .unwrap_or_else(|| panic!("no {name} in {results}"))
}

fn steps_of(records: &Value) -> Vec<u64> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect()
}

/// The lines of `accuracy.csv` for `model`, without the model's name.
fn curve(dir: &Path, model: &str) -> Vec<String> {
    let prefix = format!("{model},");
    std::fs::read_to_string(dir.join("accuracy.csv"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(String::from)
        .collect()
}

/// A model of `drift.json`, by name.
fn drift_model<'a>(results: &'a Value, name: &str) -> &'a Value {
    let m = &results["models"][name];
    assert!(m.is_object(), "no {name} in {results}");
    m
}

#[test]
fn drift_probes_all_five_models_on_fixed_images_in_both_modes_and_reports() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("drift");
    let result = drift(
        &out,
        &[
            "--steps",
            "20",
            "--every",
            "5",
            "--lenet-steps",
            "12",
            "--lenet-every",
            "4",
        ],
    );
    let r = json(&out.join("drift.json"));
    let raw = std::fs::read_to_string(out.join("drift.json")).unwrap();
    assert!(
        raw.find("\"mlp-bn\":") < raw.find("\"lenet\":"),
        "in the order trained"
    );
    assert_eq!(r["probe"]["split"], "test");
    assert_eq!(r["probe"]["first_images"], 1000);
    assert_eq!(r["warmup_fraction"], 0.1);
    let names: Vec<&String> = r["models"].as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        // serde_json's map sorts the keys (the file keeps the order trained).
        // Models with batch norm are probed in training mode too.
        [
            "lenet",
            "lenet-bn",
            "lenet-bn-noisy",
            "lenet-bn-noisy-train-mode",
            "lenet-bn-train-mode",
            "mlp",
            "mlp-bn",
            "mlp-bn-train-mode"
        ]
    );
    for name in names {
        let m = drift_model(&r, name);
        let mlp = name.starts_with("mlp");
        let (budget, every) = if mlp { (20, 5) } else { (12, 4) };
        let expected: Vec<u64> = (0..=budget).step_by(every).collect();
        assert_eq!(steps_of(&m["curve"]), expected, "{name}");
        assert_eq!(m["ending"], "completed");
        assert_eq!(
            m["final_test_acc"],
            m["curve"][expected.len() - 1]["test_acc"]
        );
        // Probed at the steps of the test accuracy: the same weights.
        let layers = m["layers"].as_object().unwrap();
        let activations: Vec<String> = (1..=if mlp { 3 } else { 4 })
            .map(|i| format!("act{i}"))
            .collect();
        assert_eq!(
            layers.keys().collect::<Vec<_>>(),
            activations.iter().collect::<Vec<_>>()
        );
        for (layer, l) in layers {
            assert_eq!(steps_of(&l["records"]), expected, "{name} {layer}");
            // Warm-up: 10 % of the steps, so t0 is the first probe at or after it.
            let d = &l["drift"];
            assert_eq!(d["from_step"], every as u64, "{name} {layer}");
            assert_eq!(d["to_step"], budget, "{name} {layer}");
            let shift = d["median_shift"].as_f64().unwrap();
            assert!(shift >= 0.0 && shift.is_finite(), "{name} {layer}: {d}");
        }
        let s = m["drift"]["median_shift"].as_f64().unwrap();
        let mean = layers
            .values()
            .map(|l| l["drift"]["median_shift"].as_f64().unwrap())
            .sum::<f64>()
            / layers.len() as f64;
        assert!((s - mean).abs() < 1e-12, "{name}: {s} vs {mean}");
        assert_eq!(m["unit"].is_object(), mlp, "{name}");
    }
    // The probe set is the first 1000 test images: the MLP's first layer has 100 units.
    let act1 = &drift_model(&r, "mlp")["layers"]["act1"]["records"];
    assert_eq!(act1[0]["count"], 1000 * 100);
    let unit = &drift_model(&r, "mlp")["unit"];
    assert_eq!(
        (unit["layer"].as_str(), unit["unit"].as_u64()),
        (Some("act3"), Some(0))
    );
    assert_eq!(
        unit["records"][0]["count"], 1000,
        "one unit over the probe set"
    );
    let p = &unit["records"][3];
    assert!(p["p15"].as_f64() <= p["p50"].as_f64() && p["p50"].as_f64() <= p["p85"].as_f64());
    // Both MLPs start from the same linear weights, so at step 0 the first layer's
    // pre-activation differs only by the batch norm (in eval mode, running mean 0 and
    // variance 1: y = x / sqrt(1 + eps)), nearly the same numbers.
    let first = |name: &str| drift_model(&r, name)["layers"]["act1"]["records"][0].clone();
    let (plain, bn) = (first("mlp"), first("mlp-bn"));
    let close = |a: &Value, b: &Value| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-3;
    assert!(close(&plain["p50"], &bn["p50"]), "{plain} {bn}");
    // Noisy batch norm in eval mode is twice batch norm's output (the noise's expectation)
    // at step 0, before the two models' weights part.
    let first = |name: &str| drift_model(&r, name)["layers"]["act1"]["records"][0].clone();
    let (bn, noisy) = (first("lenet-bn"), first("lenet-bn-noisy"));
    let twice = |k: &str| {
        let (a, b) = (bn[k].as_f64().unwrap(), noisy[k].as_f64().unwrap());
        (2.0 * a - b).abs() < 1e-4 * (1.0 + b.abs())
    };
    assert!(twice("p15") && twice("p85"), "{bn} {noisy}");
    // In training mode batch norm normalizes the probe set with its own statistics: at step 0
    // (γ = 1, β = 0) every channel of its output has mean 0 and standard deviation 1, and so
    // has their union; the noisy model's noise moves it away.
    let bn = first("lenet-bn-train-mode");
    let (mean, std) = (bn["mean"].as_f64().unwrap(), bn["std"].as_f64().unwrap());
    assert!(mean.abs() < 1e-3 && (std - 1.0).abs() < 1e-2, "{bn}");
    let noisy = first("lenet-bn-noisy-train-mode");
    assert!(
        (noisy["std"].as_f64().unwrap() - 1.0).abs() > 0.05,
        "{noisy}"
    );
    let csv = std::fs::read_to_string(out.join("drift.csv")).unwrap();
    assert!(csv.starts_with("model,layer,unit,step,p15,p50,p85,mean,std,count\n"));
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("mlp,act3,0,")).count(),
        5
    );
    let measures = std::fs::read_to_string(out.join("drift-measures.csv")).unwrap();
    let lines: Vec<&str> = measures.lines().collect();
    assert_eq!(
        lines[0],
        "model,layer,unit,from_step,to_step,median_shift,spread_change"
    );
    // The two MLPs' unit and three layers, the three LeNets' four layers, and the training
    // views of the three models with batch norm.
    assert_eq!(lines.len(), 1 + 3 * 4 + 5 * 4, "{measures}");
    assert!(lines[1].starts_with("mlp,act3,0,5,20,"), "{measures}");
    for file in [
        "drift-mlp.png",
        "drift-mlp.svg",
        "drift-lenet.png",
        "drift-lenet.svg",
        "drift-lenet-training.png",
        "drift-lenet-training.svg",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    // Page-sized: two columns of 640 px for the MLP, three of 440 for the LeNets.
    for (file, width) in [("drift-mlp.svg", 1280), ("drift-lenet.svg", 1320)] {
        let svg = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(svg.contains(&format!("width=\"{width}\"")), "{file}");
    }
    let text = common::stdout(&result);
    assert!(
        text.contains("act3, unit 0") && text.contains("mean over activations"),
        "{text}"
    );
    assert_report(
        &out,
        &["drift", "median shift", "lenet-bn-noisy", "warm-up"],
    );
    assert_eq!(json(&out.join("config.json"))["experiment"], "drift");
}

#[test]
fn smoothness_probes_both_models_without_changing_their_trajectory() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smoothness");
    smoothness(
        &out,
        &[
            "--steps",
            "20",
            "--every",
            "5",
            "--eval-every",
            "5",
            "--lr",
            "1",
        ],
    );
    let results = json(&out.join("smoothness.json"));
    let r = &results["models"];
    for name in ["lenet", "lenet-bn"] {
        let m = model(r, name);
        assert_eq!(steps_of(&m["probes"]), [0, 5, 10, 15], "{name}");
        let losses: Vec<f64> = m["batch_losses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(losses.len(), 20, "{name}");
        for p in m["probes"].as_array().unwrap() {
            let etas: Vec<f64> = p["etas"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            // Nine step sizes, ¼ to 4 times the lr, a factor √2 apart.
            assert_eq!(etas.len(), 9);
            for (k, eta) in etas.iter().enumerate() {
                let expected = 0.25 * 2f64.powf(k as f64 / 2.0);
                assert!((eta - expected).abs() < 1e-12, "{etas:?}");
            }
            // The probe at x after s steps measures the loss step s + 1 trains on; its
            // training loss is the mean of the 50 steps around it (here all 20).
            let step = p["step"].as_u64().unwrap() as usize;
            // (The batch losses are stored as the f32 they are.)
            assert_eq!(
                p["loss"].as_f64().unwrap() as f32,
                losses[step] as f32,
                "{p}"
            );
            let mean = losses.iter().sum::<f64>() / 20.0;
            assert!(
                (p["train_loss"].as_f64().unwrap() - mean).abs() < 1e-6,
                "{p}"
            );
            let (lo, hi) = (
                p["loss_min"].as_f64().unwrap(),
                p["loss_max"].as_f64().unwrap(),
            );
            assert!(lo <= hi && lo > 0.0, "{p}");
            let beta = p["beta"].as_f64().unwrap();
            assert!(beta > 0.0 && beta.is_finite(), "{p}");
            // β is the largest gradient change per distance moved.
            let norm = p["grad_norm"].as_f64().unwrap();
            let ratios = etas
                .iter()
                .zip(p["grad_changes"].as_array().unwrap())
                .map(|(e, c)| c.as_f64().unwrap() / (e * norm));
            let max = ratios.fold(f64::MIN, f64::max);
            assert!((beta - max).abs() <= 1e-12 * max, "{p}");
        }
    }
    assert!(model(r, "lenet-bn-noisy")["probes"]
        .as_array()
        .unwrap()
        .is_empty());
    // The noise took effect: same initial weights and batches as LeNet-BN, other accuracies.
    assert_ne!(
        curve(&out, "lenet-bn")[1..],
        curve(&out, "lenet-bn-noisy")[1..]
    );
    // The noisy model is tested twice at every point: with the noise's expectation (its
    // curve) and with the noise left out; the two differ (the next layer's input halves).
    let noisy = model(r, "lenet-bn-noisy");
    let steps = |c: &Value| -> Vec<u64> {
        c.as_array()
            .unwrap()
            .iter()
            .map(|p| p["step"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        steps(&noisy["noise_left_out"]),
        steps(&noisy["curve"]),
        "{noisy}"
    );
    let left_out = curve(&out, "lenet-bn-noisy, noise left out at test");
    assert_eq!(left_out.len(), noisy["curve"].as_array().unwrap().len());
    assert_ne!(left_out[1..], curve(&out, "lenet-bn-noisy")[1..]);
    assert!(model(r, "lenet-bn")["noise_left_out"]
        .as_array()
        .unwrap()
        .is_empty());
    // The headline numbers at fixed pointers: the noisy model's final accuracies (with the
    // noise's expectation and with it left out) and training loss, the probed models' medians.
    let last = |c: &Value| c.as_array().unwrap().last().unwrap()["test_acc"].clone();
    let s = &results["summary"];
    assert_eq!(s["lenet-bn-noisy"]["final_test_acc"], last(&noisy["curve"]));
    assert_eq!(
        s["lenet-bn-noisy"]["final_test_acc_noise_left_out"],
        last(&noisy["noise_left_out"])
    );
    let noisy_losses = noisy["batch_losses"].as_array().unwrap();
    let mean = noisy_losses
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum::<f64>()
        / 20.0;
    let final_loss = s["lenet-bn-noisy"]["final_train_loss"].as_f64().unwrap();
    assert!((final_loss - mean).abs() < 1e-6, "{final_loss} {mean}");
    assert!(s["lenet-bn-noisy"].get("median").is_none());
    for name in ["lenet", "lenet-bn"] {
        let median = &s[name]["median"];
        for measure in [
            "train_loss",
            "loss_range",
            "gradient_change",
            "beta",
            "grad_norm",
        ] {
            let v = median[measure].as_f64().unwrap_or(f64::NAN);
            assert!(v > 0.0 && v.is_finite(), "{name} {measure}: {median}");
        }
        assert!(s[name].get("final_test_acc_noise_left_out").is_none());
    }
    // Every level has its place, reached or not (null), with the ratio where both reach it.
    let levels: Vec<String> = results["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_f64().unwrap().to_string())
        .collect();
    assert_eq!(levels, ["1", "0.7", "0.55", "0.45"]);
    for level in &levels {
        let row = &results["at_loss"][level];
        for key in ["lenet", "lenet-bn", "ratio"] {
            assert!(row.get(key).is_some(), "{level} {key}: {row}");
        }
        assert_eq!(
            row["ratio"].is_null(),
            row["lenet"].is_null() || row["lenet-bn"].is_null(),
            "{row}"
        );
    }
    // The same LeNet-BN trained by drift (same seed, lr 1.0, batches and evaluation steps,
    // no probes) follows the same trajectory: the probes changed nothing.
    let plain = dir.path().join("drift");
    drift(
        &plain,
        &[
            "--steps",
            "5",
            "--lenet-steps",
            "20",
            "--every",
            "5",
            "--lenet-every",
            "5",
        ],
    );
    assert_eq!(curve(&out, "lenet-bn").len(), 5);
    assert_eq!(curve(&out, "lenet-bn"), curve(&plain, "lenet-bn"));
    let csv = std::fs::read_to_string(out.join("smoothness.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 4, "{csv}");
    assert!(csv.starts_with("model,step,train_loss,loss,"), "{csv}");
    let at_loss = std::fs::read_to_string(out.join("at-loss.csv")).unwrap();
    assert!(at_loss.starts_with("level,model,probes,train_loss,loss_range,"));
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 1 + 3, "{summary}");
    for file in [
        "smoothness.png",
        "smoothness.svg",
        "smoothness-at-loss.png",
        "smoothness-at-loss.svg",
        "noisy-bn.png",
        "noisy-bn.svg",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    assert_report(
        &out,
        &[
            "smoothness",
            "Noisy batch norm",
            "U(1, 3)",
            "β",
            "At equal training loss",
        ],
    );
}

#[test]
fn bad_options_fail_before_any_data_or_folder() {
    let data = no_data();
    let d = data.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let o = out.to_str().unwrap();
    fails_clearly(
        &["drift", "--steps", "0", "--data-dir", d, "--out", o],
        &["--steps must be at least 1"],
    );
    fails_clearly(
        &["drift", "--init-std", "-1", "--data-dir", d, "--out", o],
        &["--init-std", "-1"],
    );
    fails_clearly(
        &[
            "drift",
            "--train-samples",
            "100",
            "--data-dir",
            d,
            "--out",
            o,
        ],
        &["--train-samples 100", "256"],
    );
    fails_clearly(
        &["smoothness", "--every", "0", "--data-dir", d, "--out", o],
        &["--every must be at least 1"],
    );
    fails_clearly(
        &[
            "smoothness",
            "--eval-every",
            "0",
            "--data-dir",
            d,
            "--out",
            o,
        ],
        &["--eval-every must be at least 1"],
    );
    fails_clearly(
        &["smoothness", "--lr", "0", "--data-dir", d, "--out", o],
        &["--lr must be a positive"],
    );
    assert!(!out.exists());
}

#[test]
fn overflow_ends_a_stepwise_run_as_divergence_not_as_an_error() {
    if !have_data() {
        return;
    }
    let diverged = |results: &Value, name: &str| {
        let ending = &model(results, name)["ending"];
        assert!(ending.get("non-finite-loss").is_some(), "{name}: {ending}");
    };
    // A rate or initial weights so large that batch norm's statistics overflow in the first
    // steps (they used to stop the command with "running_var of channel 0 is inf").
    for extra in [["--lr", "1e30"], ["--init-std", "1e30"]] {
        let out = tempfile::tempdir().unwrap();
        let args = [
            &extra[..],
            &["--steps", "20", "--lenet-steps", "4", "--every", "5"],
        ]
        .concat();
        drift(out.path(), &args);
        let results = json(&out.path().join("drift.json"));
        let ending = &drift_model(&results, "mlp-bn")["ending"];
        assert!(ending.get("non-finite-loss").is_some(), "{ending}");
    }
    let out = tempfile::tempdir().unwrap();
    smoothness(
        out.path(),
        &["--lr", "1e30", "--steps", "20", "--every", "5"],
    );
    let results = json(&out.path().join("smoothness.json"));
    diverged(&results["models"], "lenet-bn");
    assert_report(out.path(), &["lenet-bn"]);
}
