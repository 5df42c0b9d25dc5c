//! `cargo xtask depth` end to end on a tiny budget: its files, its seeds, its argument checks
//! before the data loads, and its stop on SIGINT.

mod common;

use common::{assert_report, fails_clearly, have_data, json, no_data, succeeds};

fn run(out: &std::path::Path, extra: &[&str]) {
    let mut args = vec![
        "depth",
        "--depths",
        "8",
        "--train-samples",
        "600",
        "--test-samples",
        "100",
        "--steps",
        "6",
        "--every",
        "3",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    succeeds(&args);
}

#[test]
fn depth_writes_every_output_for_every_model_and_seed() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d");
    run(&out, &["--seed", "4", "--seeds", "2"]);
    for file in [
        "config.json",
        "depth.json",
        "depth.csv",
        "curves.csv",
        "depth-error.svg",
        "depth-error.png",
        "depth-loss.svg",
        "depth-drift.svg",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    assert_report(
        &out,
        &[
            "plain8-none",
            "plain8-batch",
            "resnet8-batch",
            "β-smoothness",
        ],
    );
    let runs = json(&out.join("depth.json"));
    let runs = runs.as_array().unwrap();
    // Three networks per seed, seeds 4 and 5.
    assert_eq!(runs.len(), 6);
    let mut seen: Vec<(String, u64)> = runs
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap().to_string(),
                r["seed"].as_u64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    let mut expected: Vec<(String, u64)> = ["plain8-batch", "plain8-none", "resnet8-batch"]
        .iter()
        .flat_map(|m| [(m.to_string(), 4), (m.to_string(), 5)])
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    for r in runs {
        let steps: Vec<u64> = r["curve"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["step"].as_u64().unwrap())
            .collect();
        if r["ending"] == "completed" {
            assert_eq!(steps, [0, 3, 6], "{r}");
        }
        // Stage inputs: the first seed's plain nets only.
        let observed = !r["layers"].as_array().unwrap().is_empty();
        let plain = r["model"].as_str().unwrap().starts_with("plain");
        assert_eq!(observed, plain && r["seed"] == 4, "{}", r["model"]);
        // Smoothness probes: the deepest plain nets (here depth 8) on every seed, before
        // steps 0 and 3, each with the nine step sizes.
        let probes = r["probes"].as_array().map_or(0, Vec::len);
        assert_eq!(probes, if plain { 2 } else { 0 }, "{}", r["model"]);
        if plain {
            let p = &r["probes"][1];
            assert_eq!(p["step"], 3);
            assert_eq!(p["etas"].as_array().unwrap().len(), 9, "{p}");
            assert!(p["beta"].as_f64().unwrap() > 0.0, "{p}");
        }
    }
    let smooth = std::fs::read_to_string(out.join("smoothness.csv")).unwrap();
    let lines: Vec<&str> = smooth.lines().collect();
    assert!(
        lines[0].starts_with("model,seeds,train_loss,train_loss_min,train_loss_max,loss_range,")
    );
    assert_eq!(lines.len(), 3, "{smooth}");
    assert!(
        lines[1].starts_with("plain8-none,2,") && lines[2].starts_with("plain8-batch,2,"),
        "{smooth}"
    );
    let csv = std::fs::read_to_string(out.join("depth.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(
        csv.lines().nth(1).unwrap().starts_with("plain8-none,8,2,"),
        "{csv}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("curves.csv"))
            .unwrap()
            .lines()
            .count(),
        1 + 6 * 3
    );

    // The same seed gives the same curves; the seeds differ from each other.
    let again = dir.path().join("again");
    run(&again, &["--seed", "5", "--seeds", "1"]);
    let curve = |runs: &serde_json::Value, seed: u64| {
        runs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == "resnet8-batch" && r["seed"] == seed)
            .unwrap()["curve"]
            .clone()
    };
    let first = json(&out.join("depth.json"));
    assert_eq!(curve(&first, 5), curve(&json(&again.join("depth.json")), 5));
    assert_ne!(curve(&first, 4), curve(&first, 5));

    // Augmentation is off by default; asked for, it trains on other images (another curve),
    // is recorded in config.json and said on the page.
    let augmented = dir.path().join("augmented");
    run(
        &augmented,
        &[
            "--seed",
            "5",
            "--seeds",
            "1",
            "--crop-padding",
            "2",
            "--flip",
        ],
    );
    let config = json(&augmented.join("config.json"));
    assert_eq!(
        (
            config["options"]["crop_padding"].as_u64(),
            config["options"]["flip"].as_bool()
        ),
        (Some(2), Some(true))
    );
    assert_eq!(json(&out.join("config.json"))["options"]["crop_padding"], 0);
    assert_ne!(
        curve(&first, 5),
        curve(&json(&augmented.join("depth.json")), 5)
    );
    assert_report(
        &augmented,
        &["padded by 2 pixels and cropped back at random"],
    );
}

#[test]
fn depth_options_are_checked_before_the_data_loads() {
    let empty = no_data();
    let data = empty.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--depths", "9"], "--depths 9 is not of the form 6n + 2"),
        (&["--depths", "8,8"], "--depths lists 8 more than once"),
        (&["--steps", "0"], "--steps must be at least 1"),
        (&["--momentum", "1"], "--momentum must be in [0, 1)"),
        (
            &["--seeds", "0"],
            "--seeds must be between 1 and 1000, got 0",
        ),
        (
            &["--test-samples", "0"],
            "--test-samples must be at least 1",
        ),
        (&["--batch-size", "1"], "--batch-size"),
        (
            &["--crop-padding", "29"],
            "--crop-padding 29 is larger than the 28×28 images",
        ),
    ];
    for (args, expected) in cases {
        let all = [&["depth"][..], args, &["--data-dir", data]].concat();
        fails_clearly(&all, &[expected]);
    }
}

#[test]
fn depth_stops_on_sigint_with_status_130() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d");
    let (code, err, _) = common::signal_after_stderr(
        dir.path(),
        &[
            "depth",
            "--depths",
            "32",
            "--steps",
            "100000",
            "--out",
            out.to_str().unwrap(),
        ],
        "== 1/",
        std::time::Duration::from_secs(2),
        libc::SIGINT,
    );
    assert_eq!(code, Some(130), "stderr:\n{err}");
    assert!(err.contains("stopped by SIGINT"), "{err}");
    assert!(!out.join("depth.json").exists());
}
