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

/// A FIFO, a device or a huge file in place of a run's own file is refused in one line: a FIFO
/// progress.json used to hang `--resume`, a link to /dev/zero to fill memory.
#[test]
fn files_of_a_run_that_are_not_regular_are_refused_without_hanging() {
    if !have_data() {
        return;
    }
    let original = tempfile::tempdir().unwrap();
    train(
        original.path(),
        &[
            "--model",
            "lenet",
            "--train-samples",
            "256",
            "--batch-size",
            "128",
            "--epochs",
            "1",
        ],
    );
    for (file, kind) in [
        ("config.json", "fifo"),
        ("checkpoint/lenet/progress.json", "fifo"),
        ("checkpoint/lenet/optimizer.safetensors", "fifo"),
        ("checkpoint/lenet/progress.json", "zero"),
        ("checkpoint/lenet/optimizer.safetensors", "huge"),
    ] {
        let copy = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", original.path().display()))
            .arg(copy.path())
            .status()
            .unwrap();
        assert!(status.success());
        let target = copy.path().join(file);
        std::fs::remove_file(&target).unwrap();
        match kind {
            "fifo" => assert!(std::process::Command::new("mkfifo")
                .arg(&target)
                .status()
                .unwrap()
                .success()),
            "zero" => std::os::unix::fs::symlink("/dev/zero", &target).unwrap(),
            _ => std::fs::File::create(&target)
                .unwrap()
                .set_len(12 << 30)
                .unwrap(),
        }
        let mut child = common::command_in(
            copy.path(),
            &[
                "train-lenet",
                "--resume",
                copy.path().to_str().unwrap(),
                "--epochs",
                "2",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > std::time::Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("--resume with a {kind} {file} still runs after 60 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let expected: &[&str] = match kind {
            "huge" => &["optimizer.safetensors is 12884901888 bytes, more than the"],
            _ => &[
                file,
                "is a named pipe, socket or device, not a regular file",
            ],
        };
        failed_clearly(&out, &format!("{kind} {file}"), expected);
    }
}

#[test]
fn a_run_stopped_before_its_final_files_is_finished_by_resume() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--model",
        "lenet-bn",
        "--train-samples",
        "512",
        "--epochs",
        "1",
    ];
    train(dir.path(), &args);
    let precise = dir.path().join("lenet-bn-precise-bn.safetensors");
    let progress_path = dir.path().join("checkpoint/lenet-bn/progress.json");
    let want = std::fs::read(&precise).unwrap();
    // Both states a kill or a full disk can leave between the last step and the last file:
    // the checkpoint of the last epoch's end (status "running"), and the checkpoint the
    // final phase writes first (status "finishing").
    let finishing = serde_json::json!({"state": "finishing", "then": {"state": "completed"}});
    for status in [serde_json::json!({"state": "running"}), finishing] {
        let mut progress = json(&progress_path);
        progress["record"]["status"] = status.clone();
        std::fs::write(&progress_path, progress.to_string()).unwrap();
        std::fs::remove_file(&precise).unwrap();
        common::succeeds(&["train-lenet", "--resume", dir.path().to_str().unwrap()]);
        assert_eq!(std::fs::read(&precise).unwrap(), want, "from {status}");
        let progress = json(&progress_path);
        assert_eq!(
            progress["record"]["status"]["state"], "completed",
            "from {status}"
        );
        let metrics = json(&dir.path().join("metrics.json"));
        assert_eq!(metrics[0]["status"]["state"], "completed", "from {status}");
    }
}

#[test]
fn a_relative_data_dir_is_stored_absolute_and_a_new_data_folder_is_noted() {
    if !have_data() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    // Two folders holding the same files (links to Debian's), and two working directories.
    let debian = std::path::Path::new(norma_datasets::DEBIAN_FASHION_MNIST_DIR);
    for copy in ["first/data", "second/data"] {
        let dir = root.path().join(copy);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(debian).unwrap() {
            let entry = entry.unwrap();
            std::os::unix::fs::symlink(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let out = root.path().join("run");
    let o = out.to_str().unwrap();
    let args = [
        "--model",
        "lenet-bn",
        "--train-samples",
        "512",
        "--epochs",
        "1",
    ];
    let started = common::command_in(
        &root.path().join("first"),
        &[
            &[
                "train-lenet",
                "--out",
                o,
                "--data-dir",
                "data",
                "--steps",
                "1",
            ],
            &args[..],
        ]
        .concat(),
    )
    .output()
    .unwrap();
    assert!(started.status.success(), "{}", common::stderr(&started));
    let config = json(&out.join("config.json"));
    let stored = root.path().join("first/data");
    assert_eq!(config["data_dir"], stored.to_str().unwrap(), "{config}");
    assert_eq!(
        config["data_found_in"],
        stored.to_str().unwrap(),
        "{config}"
    );
    // From another directory, the stored folder is still the one used...
    let resumed = common::command_in(
        &root.path().join("second"),
        &["train-lenet", "--resume", o, "--steps", "2"],
    )
    .output()
    .unwrap();
    assert!(resumed.status.success(), "{}", common::stderr(&resumed));
    assert!(
        !common::stderr(&resumed).contains("note: the data"),
        "{}",
        common::stderr(&resumed)
    );
    // ...and another folder is said.
    let moved = common::command_in(
        &root.path().join("second"),
        &[
            "train-lenet",
            "--resume",
            o,
            "--steps",
            "3",
            "--data-dir",
            "data",
        ],
    )
    .output()
    .unwrap();
    assert!(moved.status.success(), "{}", common::stderr(&moved));
    let err = common::stderr(&moved);
    let second = root.path().join("second/data");
    assert!(
        err.contains(&format!(
            "note: the data now comes from {}; the run was trained on data from {}",
            second.display(),
            stored.display()
        )),
        "{err}"
    );
    assert_eq!(
        json(&out.join("config.json"))["data_dir"],
        second.to_str().unwrap()
    );
}

#[test]
fn a_resume_with_another_optimizer_state_or_a_doubled_run_is_refused() {
    if !have_data() {
        return;
    }
    let run = |optimizer: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let args = [
            "--model",
            "lenet-bn",
            "--train-samples",
            "512",
            "--epochs",
            "1",
        ];
        train(dir.path(), &[&args[..], optimizer].concat());
        dir
    };
    let momentum = run(&["--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.1"]);
    let plain = run(&["--optimizer", "sgd", "--lr", "0.1"]);
    let adam = run(&["--optimizer", "adam", "--lr", "0.001"]);
    let state = |d: &tempfile::TempDir| d.path().join("checkpoint/lenet-bn/optimizer.safetensors");
    let refused = |dir: &tempfile::TempDir, expected: &[&str]| {
        let before = snapshot(dir.path());
        let d = dir.path().to_str().unwrap();
        let out = xtask(&["train-lenet", "--resume", d, "--epochs", "2"]);
        failed_clearly(&out, d, expected);
        assert!(
            snapshot(dir.path()) == before,
            "a refused resume changed the run"
        );
    };
    // Another optimizer's state in place of the run's own.
    for (into, from, expected) in [
        (&momentum, &adam, "adam"),
        (&adam, &momentum, "sgd"),
        (&momentum, &plain, "momentum"),
    ] {
        let own = std::fs::read(state(into)).unwrap();
        std::fs::copy(state(from), state(into)).unwrap();
        refused(into, &["optimizer.safetensors", expected]);
        std::fs::write(state(into), own).unwrap();
    }
    // config.json edited to another optimizer.
    let config_path = momentum.path().join("config.json");
    let original = std::fs::read(&config_path).unwrap();
    let mut config = json(&config_path);
    config["runs"][0]["optimizer"] = "adam".into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    refused(
        &momentum,
        &["config.json", "--momentum applies to --optimizer sgd only"],
    );
    config["runs"][0]["momentum"] = 0.0.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    refused(&momentum, &["optimizer.safetensors", "sgd"]);
    // Two entries for one model would share its checkpoint folder.
    let mut config: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let first = config["runs"][0].clone();
    config["runs"].as_array_mut().unwrap().push(first);
    std::fs::write(&config_path, config.to_string()).unwrap();
    refused(&momentum, &["config.json", "lists lenet-bn twice"]);
}
