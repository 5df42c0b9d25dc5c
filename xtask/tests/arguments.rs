//! Bad command lines fail at once with one line naming the flag and the value, before any
//! data is loaded (every command here gets an empty `--data-dir`, so a check that came after
//! loading would report the missing data instead) and without creating anything.

mod common;

use common::{fails_clearly, no_data, save_weights, xtask};

/// `args` plus `--data-dir <empty folder>`.
fn fails_before_data(args: &[&str], expected: &[&str]) {
    let empty = no_data();
    let mut all = args.to_vec();
    all.extend(["--data-dir", empty.path().to_str().unwrap()]);
    fails_clearly(&all, expected);
}

#[test]
fn train_lenet_options_are_checked_first() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--batch-size", "0"], &["--batch-size must be at least 1"]),
        (
            &["--batch-size", "1"],
            &["--batch-size 1 cannot train batch norm (lenet-bn"],
        ),
        (
            &["--model", "lenet-bn", "--batch-size", "1"],
            &["cannot train batch norm"],
        ),
        (
            &["--train-samples", "100", "--batch-size", "200"],
            &["--batch-size 200 is larger than the training set (100 images)"],
        ),
        (
            &["--batch-size", "60001"],
            &["--batch-size 60001 is larger than the training set (60000 images)"],
        ),
        (
            &["--train-samples", "1"],
            &["--train-samples must be between 2 and 60000, got 1"],
        ),
        (
            &["--train-samples", "70000"],
            &["--train-samples", "got 70000"],
        ),
        (
            &["--lr", "-0.5"],
            &["--lr must be a positive number", "got -0.5"],
        ),
        (
            &["--lr", "NaN"],
            &["--lr must be a positive number", "got NaN"],
        ),
        (
            &["--lr", "inf"],
            &["--lr must be a positive number", "got inf"],
        ),
        (&["--lr", "1e39"], &["--lr", "f32", "got 1e39"]),
        (&["--lr", "1e-50"], &["--lr", "f32"]),
        (
            &["--optimizer", "adam", "--momentum", "0.9"],
            &["--momentum applies to --optimizer sgd only"],
        ),
        (&["--momentum", "1.5"], &["--momentum must be in [0, 1)"]),
        (
            &["--momentum", "0.99999999999"],
            &["--momentum must be in [0, 1)"],
        ),
        (&["--epochs", "0"], &["--epochs must be at least 1"]),
        (&["--steps", "0"], &["--steps must be at least 1"]),
        (&["--threads", "0"], &["--threads must be between 1 and"]),
        (
            &["--threads", "10000"],
            &["--threads must be between 1 and", "got 10000"],
        ),
        (
            &["--model", "resnet"],
            &["invalid value 'resnet' for '--model"],
        ),
        (&["--init", "/tmp"], &["--init holds one model's weights"]),
        (
            &["--init", "/tmp", "--model", "lenet"],
            &["--init /tmp is a directory, not a file"],
        ),
        (
            &["--init", "/nonexistent/w.safetensors", "--model", "lenet"],
            &["--init /nonexistent/w.safetensors: no such file"],
        ),
        (
            &["--resume", "/nonexistent/run"],
            &["--resume /nonexistent/run: no such directory"],
        ),
        (
            &["--resume", "/tmp"],
            &["--resume /tmp: no config.json there"],
        ),
        (
            &["--resume", "/tmp", "--out", "/tmp/x"],
            &["cannot be used with"],
        ),
        (&["--out", ""], &["a value is required for '--out"]),
        (
            &["--model", "lenet", "--placement", "after"],
            &["--placement moves batch norm, which lenet does not have"],
        ),
        (
            &["--placement", "sideways"],
            &["invalid value 'sideways' for '--placement"],
        ),
        (
            &["--precise-bn", "-1"],
            &["invalid value '-1' for '--precise-bn"],
        ),
    ];
    for (args, expected) in cases {
        fails_before_data(&[&["train-lenet"], *args].concat(), expected);
    }
}

#[test]
fn lr_sweep_options_are_checked_first() {
    fails_before_data(
        &["lr-sweep", "--lrs", "0.1", "-1"],
        &["every --lrs value must be a positive number"],
    );
    fails_before_data(&["lr-sweep", "--lrs", "1e39"], &["f32"]);
    fails_before_data(
        &["lr-sweep", "--lrs", "0.1", "1", "0.10"],
        &["--lrs lists 0.1 more than once"],
    );
    fails_before_data(
        &["lr-sweep", "--lrs", "0.1", "0.10000000001"],
        &["--lrs lists 0.10000000001 more than once (0.1 and 0.10000000001 are the same f32)"],
    );
    fails_before_data(
        &["lr-sweep", "--seeds", "0"],
        &["--seeds must be between 1 and 1000, got 0"],
    );
    for command in ["lr-sweep", "placement", "batch-size"] {
        fails_before_data(
            &[command, "--seeds", "18446744073709551615"],
            &["--seeds must be between 1 and 1000"],
        );
    }
    fails_before_data(
        &["lr-sweep", "--epochs", "0"],
        &["--epochs must be at least 1"],
    );
    fails_before_data(
        &["lr-sweep", "--batch-size", "1"],
        &["cannot train batch norm"],
    );
    fails_before_data(
        &["lr-sweep", "--threads", "100000"],
        &["--threads must be between 1 and"],
    );
    fails_before_data(
        &["lr-sweep", "--train-samples", "64", "--batch-size", "128"],
        &["--batch-size 128 is larger than the training set (64 images)"],
    );
}

#[test]
fn placement_options_are_checked_first() {
    fails_before_data(
        &["placement", "--activations", "relu", "relu"],
        &["--activations lists relu more than once"],
    );
    fails_before_data(
        &["placement", "--epochs", "0"],
        &["--epochs must be at least 1"],
    );
    fails_before_data(
        &["placement", "--seeds", "0"],
        &["--seeds must be between 1 and 1000, got 0"],
    );
    fails_before_data(
        &[
            "placement",
            "--seed",
            "18446744073709551615",
            "--seeds",
            "2",
        ],
        &["goes past the largest seed"],
    );
    fails_before_data(
        &["placement", "--lrs", "0"],
        &["every --lrs value must be a positive number"],
    );
    fails_before_data(
        &["placement", "--lrs", "1", "1"],
        &["--lrs lists 1 more than once"],
    );
    fails_before_data(
        &["placement", "--tune-epochs", "0"],
        &["--tune-epochs must be at least 1"],
    );
    fails_before_data(
        &["placement", "--validation", "0"],
        &["--validation must be at least 1"],
    );
    // The validation split comes out of the training images in use.
    fails_before_data(
        &["placement", "--train-samples", "600"],
        &["--validation 5000 leaves no training image (600 in all)"],
    );
    fails_before_data(
        &["placement", "--train-samples", "1"],
        &["--train-samples must be between 2 and 60000, got 1"],
    );
    fails_before_data(
        &["placement", "--threads", "100000"],
        &["--threads must be between 1 and"],
    );
}

#[test]
fn eval_mode_options_are_checked_first() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--batch-sizes", "0"],
            &[
                "every --batch-sizes value must be between 1 and 10000",
                "got 0",
            ],
        ),
        (&["--batch-sizes", "20000"], &["got 20000"]),
        (
            &["--batch-sizes", "2", "8", "2"],
            &["--batch-sizes lists 2 more than once"],
        ),
        (
            &["--orders", "0"],
            &["--orders must be between 1 and 1000, got 0"],
        ),
        (
            &["--orders", "4294967296"],
            &["--orders must be between 1 and 1000"],
        ),
        (
            &["--orders", "18446744073709551615"],
            &["--orders must be between 1 and 1000"],
        ),
        (&["--epochs", "0"], &["--epochs must be at least 1"]),
        (
            &["--weights", "/nonexistent.safetensors"],
            &["--weights /nonexistent.safetensors: no such file"],
        ),
        (
            &["--weights", "/tmp", "--epochs", "3"],
            &["cannot be used with"],
        ),
        (
            &["--threads", "100000"],
            &["--threads must be between 1 and"],
        ),
        (
            &["--precise-bn", "x"],
            &["invalid value 'x' for '--precise-bn"],
        ),
    ];
    for (args, expected) in cases {
        fails_before_data(&[&["eval-mode"], *args].concat(), expected);
    }
}

#[test]
fn eval_paths_are_checked_first() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("lenet.safetensors");
    save_weights(&weights, false);
    let w = weights.to_str().unwrap();
    let d = dir.path().to_str().unwrap();
    fails_before_data(
        &["eval", "--model", "lenet", "--weights", d],
        &["--weights", "is a directory, not a file"],
    );
    fails_before_data(
        &[
            "eval",
            "--model",
            "lenet",
            "--weights",
            "/nonexistent.safetensors",
        ],
        &["--weights /nonexistent.safetensors: no such file"],
    );
    fails_before_data(
        &[
            "eval",
            "--model",
            "lenet",
            "--weights",
            w,
            "--predictions",
            d,
        ],
        &["--predictions", "is a directory"],
    );
    let orphan = dir.path().join("missing/p.txt");
    fails_before_data(
        &[
            "eval",
            "--model",
            "lenet",
            "--weights",
            w,
            "--predictions",
            orphan.to_str().unwrap(),
        ],
        &["--predictions", "does not exist"],
    );
    fails_before_data(
        &[
            "eval",
            "--model",
            "lenet",
            "--weights",
            w,
            "--predictions",
            w,
        ],
        &["--predictions", "is the --weights file"],
    );
    fails_before_data(
        &[
            "eval",
            "--model",
            "lenet",
            "--weights",
            w,
            "--threads",
            "100000",
        ],
        &["--threads must be between 1 and"],
    );
    // The weights file is untouched.
    assert!(std::fs::metadata(&weights).unwrap().len() > 1000);
}

#[test]
fn bench_options_are_checked_first() {
    fails_before_data(
        &["bench", "--batch-size", "0"],
        &["--batch-size must be at least 1"],
    );
    fails_before_data(
        &["bench", "--batch-size", "1"],
        &["cannot train batch norm"],
    );
    fails_before_data(
        &["bench", "--batch-size", "100000"],
        &["is larger than the training set"],
    );
    fails_before_data(&["bench", "--steps", "0"], &["--steps must be at least 1"]);
    fails_before_data(
        &["bench", "--threads", "100000"],
        &["--threads must be between 1 and"],
    );
}

#[test]
fn unknown_commands_and_missing_data_give_one_line() {
    fails_clearly(&["frobnicate"], &["unrecognized subcommand"]);
    let empty = no_data();
    // Gets as far as the data, which is not there; leaves no run folder behind (checked by
    // `xtask`).
    let out = xtask(&[
        "train-lenet",
        "--data-dir",
        empty.path().to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    common::failed_clearly(&out, "train-lenet on an empty --data-dir", &["error:"]);
}

#[test]
fn help_documents_the_exit_status_of_an_interrupted_run() {
    let out = xtask(&["train-lenet", "--help"]);
    let text = common::stdout(&out);
    assert!(out.status.success());
    assert!(text.contains("130") && text.contains("143"), "{text}");
}

#[test]
fn an_init_file_that_does_not_fit_the_model_is_rejected_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.safetensors");
    // LeNet weights given to LeNet-BN: every bn tensor is missing, fc1 has the wrong shape.
    save_weights(&file, false);
    let f = file.to_str().unwrap();
    fails_before_data(
        &["train-lenet", "--model", "lenet-bn", "--init", f],
        &["does not fit the model"],
    );
    std::fs::write(&file, b"not a checkpoint").unwrap();
    fails_before_data(
        &["train-lenet", "--model", "lenet", "--init", f],
        &["not a valid safetensors file"],
    );
}

#[test]
fn batch_size_options_are_checked_first() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--batch-sizes", "0"],
            &["every --batch-sizes value must be at least 1, got 0"],
        ),
        (
            &["--batch-sizes", "4,8,4"],
            &["--batch-sizes lists 4 more than once"],
        ),
        (
            &["--train-samples", "100", "--batch-sizes", "2", "128"],
            &["--batch-sizes 128 is larger than the training set (100 images)"],
        ),
        (
            &["--batch-sizes", "60001"],
            &["--batch-sizes 60001 is larger than the training set (60000 images)"],
        ),
        (
            &["--norms", "batch,instance"],
            &["invalid value 'instance' for '--norms"],
        ),
        (
            &["--norms", "group", "layer", "group"],
            &["--norms lists group more than once"],
        ),
        (&["--epochs", "0"], &["--epochs must be at least 1"]),
        (
            &["--seeds", "0"],
            &["--seeds must be between 1 and 1000, got 0"],
        ),
        (
            &["--lr-rule", "cubic"],
            &["invalid value 'cubic' for '--lr-rule"],
        ),
        (
            &["--train-samples", "1"],
            &["--train-samples must be between 2 and 60000, got 1"],
        ),
        (
            &["--threads", "100000"],
            &["--threads must be between 1 and"],
        ),
    ];
    for (args, expected) in cases {
        fails_before_data(&[&["batch-size"], *args].concat(), expected);
    }
}

/// Without the cargo feature `mpi`, asking for data-parallel training is one line naming the
/// feature (the README's commands need no MPI).
#[cfg(not(feature = "mpi"))]
#[test]
fn data_parallel_options_need_the_mpi_feature() {
    fails_before_data(
        &["train-lenet", "--bn", "sync"],
        &[
            "--bn: this build of norma has no MPI support",
            "--features mpi",
        ],
    );
    // Started by a launcher as one of several processes: each would train alone.
    let out = common::command_in(
        tempfile::tempdir().unwrap().path(),
        &["train-lenet", "--steps", "1"],
    )
    .env("OMPI_COMM_WORLD_SIZE", "2")
    .output()
    .unwrap();
    common::failed_clearly(
        &out,
        "train-lenet as one of 2",
        &["one of 2 processes", "--features mpi"],
    );
    // Other commands are not data-parallel.
    let out = common::command_in(tempfile::tempdir().unwrap().path(), &["eval-mode"])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .unwrap();
    common::failed_clearly(
        &out,
        "eval-mode as one of 2",
        &["only train-lenet runs data-parallel"],
    );
}

/// An argument that is not UTF-8 is refused in one line by every command, before anything runs
/// (it used to panic in `std::env::args`, in some commands after the data had loaded).
#[test]
fn a_non_utf8_argument_is_one_line_in_every_command() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"runs/\xff\xfe");
    let commands = [
        "train-lenet",
        "lr-sweep",
        "eval",
        "placement",
        "eval-mode",
        "batch-size",
        "drift",
        "smoothness",
        "depth",
        "bench",
    ];
    for command in commands {
        for flag in ["--out", "--data-dir"] {
            let cwd = tempfile::tempdir().unwrap();
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
                .arg(command)
                .arg(flag)
                .arg(bad)
                .current_dir(cwd.path())
                .output()
                .unwrap();
            common::failed_clearly(
                &out,
                &format!("{command} {flag} <non-UTF-8>"),
                &["argument 3 (runs/", "is not valid UTF-8"],
            );
            assert_eq!(out.status.code(), Some(2), "{command} {flag}");
            assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
        }
    }
}

/// RAYON_NUM_THREADS is held to the --threads bound: 3000 used to start 3000 threads and print
/// nothing for minutes.
#[test]
fn rayon_num_threads_follows_the_threads_rule() {
    let cases: &[(&str, &[&str])] = &[
        (
            "3000",
            &["RAYON_NUM_THREADS must be between 1 and", "got 3000"],
        ),
        (
            "many",
            &["RAYON_NUM_THREADS must be a whole number of threads, got 'many'"],
        ),
        ("-1", &["RAYON_NUM_THREADS must be a whole number"]),
    ];
    for (value, expected) in cases {
        for command in ["train-lenet", "bench", "eval-mode", "drift"] {
            let cwd = tempfile::tempdir().unwrap();
            let out = common::command_in(cwd.path(), &[command])
                .env("RAYON_NUM_THREADS", value)
                .output()
                .unwrap();
            common::failed_clearly(
                &out,
                &format!("{command} RAYON_NUM_THREADS={value}"),
                expected,
            );
            assert_eq!(out.status.code(), Some(2));
        }
    }
}

/// bench's counts are bounded as its --help says (a warm-up and step count whose sum overflowed
/// used to panic with an index out of bounds).
#[test]
fn bench_counts_are_bounded() {
    let huge = u64::MAX.to_string();
    fails_clearly(
        &["bench", "--synthetic", "--warmup", &huge, "--steps", "1"],
        &["--warmup must be between 0 and 100000, got 18446744073709551615"],
    );
    fails_clearly(
        &["bench", "--synthetic", "--steps", "100001"],
        &["--steps must be between 1 and 100000, got 100001"],
    );
    let help = common::stdout(&xtask(&["bench", "--help"]));
    assert!(
        help.contains("1 to 100000") && help.contains("0 to 100000"),
        "{help}"
    );
    // Within the bounds, RAYON_NUM_THREADS sets the count where --threads does not.
    let cwd = tempfile::tempdir().unwrap();
    let out = common::command_in(
        cwd.path(),
        &[
            "bench",
            "--synthetic",
            "--model",
            "lenet",
            "--steps",
            "1",
            "--warmup",
            "0",
        ],
    )
    .env("RAYON_NUM_THREADS", "1")
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        common::stdout(&out).contains(", 1 threads"),
        "{}",
        common::stdout(&out)
    );
}

/// bench times a deep network with --net, reports its peak memory, and refuses a bad name or
/// a --net beside --model.
#[test]
fn bench_times_a_deep_network_and_its_memory() {
    let text = common::stdout(&xtask(&[
        "bench",
        "--synthetic",
        "--net",
        "resnet8-batch",
        "--batch-size",
        "8",
        "--steps",
        "2",
        "--warmup",
        "0",
    ]));
    let row = text
        .lines()
        .find(|l| l.starts_with("resnet8-batch "))
        .unwrap_or_else(|| panic!("{text}"));
    let median: f64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(median > 0.0, "{row}");
    let memory = text
        .lines()
        .find_map(|l| l.strip_prefix("peak resident memory while stepping: "))
        .unwrap_or_else(|| panic!("{text}"));
    let mib: f64 = memory.trim_end_matches(" MiB").parse().unwrap();
    assert!(mib > 1.0, "{memory}");
    fails_clearly(
        &["bench", "--synthetic", "--net", "resnet9-batch"],
        &["resnet9-batch"],
    );
    fails_clearly(
        &[
            "bench",
            "--synthetic",
            "--net",
            "resnet8-batch",
            "--model",
            "lenet",
        ],
        &["--model"],
    );
}
