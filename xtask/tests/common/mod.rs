//! Helpers shared by the command-line tests: running the binary, checking one-line failures,
//! and the real-data guard.
//!
//! Every command runs with its working directory in a temporary folder, so a default output
//! folder (`runs/<timestamp>`) can never land in the repository; tests pass `--out` inside
//! temporary directories anyway.

#![allow(dead_code)] // each test file uses a part of it

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use serde_json::Value;

/// The xtask binary, started in `cwd` with no `NORMA_DATA_DIR` from the environment.
pub fn command_in(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args).env("NORMA_DATA_DIR", "").current_dir(cwd);
    cmd
}

/// Runs xtask in a fresh temporary working directory.
pub fn xtask(args: &[&str]) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    let out = command_in(cwd.path(), args)
        .output()
        .expect("the xtask binary runs");
    assert!(
        !cwd.path().join("runs").exists(),
        "{args:?} left a runs/ folder in its working directory"
    );
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that `out` failed with a one-line message (its last stderr line) containing every
/// one of `expected`, without a panic.
pub fn failed_clearly(out: &Output, what: &str, expected: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "{what} succeeded:\n{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{what} panicked:\n{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = lines.last().copied().unwrap_or("");
    for e in expected {
        assert!(
            last.contains(e),
            "{what}: expected '{e}' in the last line, got:\n{err}"
        );
    }
}

/// Runs `args` and asserts a clear failure containing every one of `expected`.
pub fn fails_clearly(args: &[&str], expected: &[&str]) {
    failed_clearly(&xtask(args), &format!("{args:?}"), expected);
}

/// An empty folder to pass as `--data-dir`: a command that gets as far as loading data fails
/// on it, so an error about anything else proves that it was checked first.
pub fn no_data() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// True when the real Fashion-MNIST is available; fails the test if it is required but missing.
pub fn have_data() -> bool {
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

/// `train-lenet --out out extra...`, which must succeed.
pub fn train(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train-lenet", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    succeeds(&args)
}

/// Runs `args`, which must succeed.
pub fn succeeds(args: &[&str]) -> Output {
    let result = xtask(args);
    assert!(
        result.status.success(),
        "{args:?} failed:\n{}",
        stderr(&result)
    );
    result
}

pub fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The metrics of the run in `dir` without wall-clock fields, for comparing runs.
pub fn metrics_without_timing(dir: &Path) -> Value {
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

/// The bytes of `<model>.safetensors` in `dir`.
pub fn weights(dir: &Path, model: &str) -> Vec<u8> {
    std::fs::read(dir.join(format!("{model}.safetensors"))).unwrap()
}

/// Every file under `dir` with its bytes, to show that a failed command changed nothing.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Safetensors weights of a fresh model, for `--init` and `--weights`.
pub fn save_weights(path: &Path, batch_norm: bool) {
    let act = norma_layers::models::Activation::Sigmoid;
    let mut rng = norma_tensor::Rng::seed_from_u64(0);
    let model = if batch_norm {
        norma_layers::models::lenet_bn(act, &mut rng)
    } else {
        norma_layers::models::lenet(act, &mut rng)
    }
    .unwrap();
    norma_layers::checkpoint::save(&model, path).unwrap();
}

/// A LeNet-BN run of 1000 short epochs into `out`, started in `cwd` and returned once it has
/// printed its first epoch row, with the rest of its stdout.
pub fn long_run(cwd: &Path, out: &Path) -> (Child, Lines<BufReader<ChildStdout>>) {
    let args = [
        "train-lenet",
        "--model",
        "lenet-bn",
        "--train-samples",
        "1024",
        "--epochs",
        "1000",
        "--out",
        out.to_str().unwrap(),
    ];
    run_until(cwd, &args, "lenet-bn")
}

/// `args` started in `cwd`, returned once a line of its stdout starts with `prefix`, with the
/// rest of its stdout.
pub fn run_until(
    cwd: &Path,
    args: &[&str],
    prefix: &str,
) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = command_in(cwd, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with(prefix) {
            return (child, lines);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{args:?} ended without printing a line starting with {prefix:?}:\n{seen}");
}

/// `args` started in `cwd`, sent `signal` `wait` after a line of its stderr contains
/// `marker`; returns its exit code, all of its stderr and how long it took to end after the
/// signal.
pub fn signal_after_stderr(
    cwd: &Path,
    args: &[&str],
    marker: &str,
    wait: std::time::Duration,
    signal: libc::c_int,
) -> (Option<i32>, String, std::time::Duration) {
    let mut child = command_in(cwd, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut err = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        err.push_str(&line);
        err.push('\n');
        if line.contains(marker) {
            break;
        }
    }
    std::thread::sleep(wait);
    let sent = std::time::Instant::now();
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    for line in lines {
        err.push_str(&line.unwrap());
        err.push('\n');
    }
    let code = child.wait().unwrap().code();
    (code, err, sent.elapsed())
}

/// Asserts that `dir/report.html` is a complete page with at least one inline SVG figure,
/// nothing fetched from elsewhere, and each of `expected` in it.
pub fn assert_report(dir: &Path, expected: &[&str]) {
    let path = dir.join("report.html");
    let html = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", path.display());
    assert!(html.trim_end().ends_with("</html>"), "{}", path.display());
    assert!(
        html.contains("<svg") && html.contains("</svg>"),
        "no figure in {}",
        path.display()
    );
    for external in ["<script", "<link", "src=\"", "url("] {
        assert!(!html.contains(external), "{external} in {}", path.display());
    }
    for e in expected {
        assert!(html.contains(e), "'{e}' not in {}", path.display());
    }
}
