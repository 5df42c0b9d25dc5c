//! Data-parallel `train-lenet` under mpirun (issue 12): the same command trains the same model
//! at any process count with synchronized batch norm; per-process statistics do not; a process
//! that fails ends the job within seconds.
//!
//! Needs the cargo feature `mpi` and Open MPI's `mpirun` (this test launches it, on loopback):
//!
//! ```text
//! cargo test --release -p xtask --features mpi --test data_parallel -- --test-threads 1
//! ```
//!
//! How weights are compared: per tensor of the state dict, max |a − b| / max(max |b|, 1), at
//! most 1e-5 — relative for tensors with values of 1 or more, absolute for smaller ones. The
//! processes sum the gradient in another order than one process does, and 20 steps at lr 1.0
//! carry those rounding differences into every weight at about 1e-6 in absolute terms,
//! whatever the tensor's size: a purely relative rule would fail on small tensors (fc3's bias,
//! largest value 0.08, differs by 1.3e-6), and the biases before a batch norm (exact gradient
//! zero) hold nothing but rounding noise around 1e-7.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{have_data, stderr, stdout};
use norma_layers::checkpoint::{self, StateValue};

const TOL: f32 = 1e-5;
/// The precise statistics are recomputed by process 0 from weights that differ by up to TOL,
/// through four layers of activations: their variances carry that difference about twice over.
const PRECISE_TOL: f32 = 2e-5;

/// `mpirun -np K xtask ARGS` (K = 0: xtask without mpirun) in `cwd`, on loopback, with `env`
/// set for every process; killed after 120 s.
fn launch(cwd: &Path, np: usize, args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let xtask = env!("CARGO_BIN_EXE_xtask");
    let mut cmd = if np == 0 {
        Command::new(xtask)
    } else {
        let mut c = Command::new("mpirun");
        c.args(["--allow-run-as-root", "--oversubscribe", "-np"])
            .arg(np.to_string())
            .arg(xtask);
        c
    };
    cmd.args(args)
        .current_dir(cwd)
        .env("NORMA_DATA_DIR", "")
        .env("OMPI_MCA_btl_tcp_if_include", "lo")
        .env("OMPI_MCA_oob_tcp_if_include", "lo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_deadline(cmd, Duration::from_secs(120))
}

fn run_with_deadline(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = cmd.spawn().expect("mpirun and xtask start");
    loop {
        if child
            .try_wait()
            .expect("the child can be waited for")
            .is_some()
        {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} did not end within {limit:?} (a hang):\n{}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output is collected");
    (out, start.elapsed())
}

/// Runs and asserts success.
fn train(cwd: &Path, np: usize, args: &[&str]) -> Output {
    let (out, _) = launch(cwd, np, args, &[]);
    assert!(
        out.status.success(),
        "np {np} {args:?} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// Every tensor of a saved state dict as f32 values (counters included).
fn state(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    checkpoint::from_bytes(&bytes)
        .unwrap()
        .into_iter()
        .map(|(name, value)| {
            let values = match value {
                StateValue::F32(t) => t.as_slice().to_vec(),
                StateValue::I64(c) => vec![c as f32],
                _ => panic!("{name}: unexpected dtype"),
            };
            (name, values)
        })
        .collect()
}

/// The largest difference between two state dicts, per the rule in the module docs: returns
/// (worst relative difference, its tensor).
fn difference(a: &Path, b: &Path) -> (f32, String) {
    let (a, b) = (state(a), state(b));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the state dicts name different tensors"
    );
    let mut worst = (0.0f32, String::new());
    for (name, want) in &b {
        let got = &a[name];
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = got
            .iter()
            .zip(want)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        let d = diff / scale.max(1.0);
        if d > worst.0 || !d.is_finite() {
            worst = (d, name.clone());
        }
    }
    worst
}

fn steps(batch: &str, samples: &str, precise: &str) -> Vec<String> {
    [
        "train-lenet",
        "--model",
        "lenet-bn",
        "--no-shuffle",
        "--steps",
        "20",
        "--batch-size",
        batch,
        "--train-samples",
        samples,
        "--precise-bn",
        precise,
        "--threads",
        "1",
        "--init",
        "init/lenet-bn.safetensors",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn with<'a>(base: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

/// Weights from 2 steps of training (running statistics included) for every run to start from.
fn make_init(cwd: &Path) {
    train(
        cwd,
        0,
        &[
            "train-lenet",
            "--model",
            "lenet-bn",
            "--steps",
            "2",
            "--train-samples",
            "1024",
            "--precise-bn",
            "0",
            "--threads",
            "1",
            "--out",
            "init",
        ],
    );
}

#[test]
fn synchronized_batch_norm_trains_as_one_process_at_any_process_count() {
    if !have_data() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    make_init(cwd);
    let weights = |run: &str| cwd.join(run).join("lenet-bn.safetensors");

    // Batch 256 over 2 processes (128 + 128); one process is the MPI build without mpirun.
    // Precise statistics from 5 batches, computed by process 0 alone.
    let b256 = steps("256", "5120", "5");
    train(cwd, 0, &with(&b256, &["--out", "one"]));
    let out = train(cwd, 2, &with(&b256, &["--out", "sync2"]));
    let (d, name) = difference(&weights("sync2"), &weights("one"));
    println!("np 2, --bn sync vs one process: largest difference {d:.2e} ({name})");
    assert!(d <= TOL, "np 2 sync differs by {d:e} in {name}");
    let precise = |run: &str| cwd.join(run).join("lenet-bn-precise-bn.safetensors");
    let (d, name) = difference(&precise("sync2"), &precise("one"));
    println!("np 2, --bn sync vs one process, precise statistics: {d:.2e} ({name})");
    assert!(
        d <= PRECISE_TOL,
        "np 2 sync precise statistics differ by {d:e} in {name}"
    );
    // Only process 0 prints (its last line once) and writes.
    let printed = stdout(&out);
    assert_eq!(
        printed.matches("lenet-bn: stopped (step limit)").count(),
        1,
        "{printed}"
    );
    assert_eq!(stderr(&out).matches("writing to").count(), 1);
    assert!(stderr(&out).contains("data-parallel over 2 processes"));
    let config = std::fs::read_to_string(cwd.join("sync2/config.json")).unwrap();
    assert!(config.contains("\"processes\": 2") && config.contains("\"bn\": \"sync\""));

    // Per-process statistics change the training.
    train(cwd, 2, &with(&b256, &["--bn", "local", "--out", "local2"]));
    let (d, name) = difference(&weights("local2"), &weights("one"));
    println!("np 2, --bn local vs one process: largest difference {d:.2e} ({name})");
    assert!(
        d > 1e-3,
        "--bn local should train differently, but differs by only {d:e}"
    );

    // A batch of 250 over 3 processes: shards of 84, 83 and 83.
    let b250 = steps("250", "5000", "0");
    train(cwd, 0, &with(&b250, &["--out", "one250"]));
    train(cwd, 3, &with(&b250, &["--out", "sync3"]));
    let (d, name) = difference(&weights("sync3"), &weights("one250"));
    println!("np 3, batch 250, --bn sync vs one process: largest difference {d:.2e} ({name})");
    assert!(d <= TOL, "np 3 sync differs by {d:e} in {name}");

    // Resumed: 10 steps on 2 processes, the other 10 on 3 — still one process's training.
    let mut first = with(&b256, &["--out", "resumed"]);
    let at = first.iter().position(|a| *a == "20").unwrap();
    first[at] = "10";
    train(cwd, 2, &first);
    let out = train(
        cwd,
        3,
        &["train-lenet", "--resume", "resumed", "--steps", "20"],
    );
    let (d, name) = difference(&weights("resumed"), &weights("one"));
    println!("np 2 then resumed on np 3 vs one process: largest difference {d:.2e} ({name})");
    assert!(d <= TOL, "the resumed run differs by {d:e} in {name}");
    assert!(stderr(&out).contains("data-parallel over 3 processes"));
    // A run with per-process statistics keeps its process count.
    let (out, _) = launch(
        cwd,
        3,
        &["train-lenet", "--resume", "local2", "--steps", "30"],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("resume it with mpirun -np 2"),
        "{}",
        stderr(&out)
    );
}

/// Runs a job of 2 with `env` and `mpmd` and asserts it fails within 30 s with every one of
/// `expected` in its stderr.
fn fails_fast(cwd: &Path, what: &str, args: &[&str], env: &[(&str, &str)], expected: &[&str]) {
    let (out, took) = launch(cwd, 2, args, env);
    let err = stderr(&out);
    println!("{what}: exit {:?} after {took:.1?}", out.status.code());
    assert!(!out.status.success(), "{what}: the job succeeded:\n{err}");
    assert!(took < Duration::from_secs(30), "{what}: took {took:?}");
    for e in expected {
        assert!(err.contains(e), "{what}: expected '{e}' in:\n{err}");
    }
}

#[test]
fn a_failing_process_ends_the_job_within_seconds() {
    if !have_data() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let args = [
        "train-lenet",
        "--model",
        "lenet-bn",
        "--steps",
        "200",
        "--train-samples",
        "2048",
        "--precise-bn",
        "0",
        "--threads",
        "1",
        "--out",
    ];
    let run =
        |out: &'static str| -> Vec<&'static str> { args.iter().copied().chain([out]).collect() };
    fails_fast(
        cwd,
        "a panic on process 1",
        &run("panic"),
        &[("NORMA_FAULT", "1:3:panic")],
        &["process 1 of 2 panicked; aborting all 2 processes"],
    );
    fails_fast(
        cwd,
        "an error on process 1",
        &run("error"),
        &[("NORMA_FAULT", "1:3:error")],
        &["process 1 of 2 failed: NORMA_FAULT: an error injected at step 3"],
    );
    fails_fast(
        cwd,
        "process 1 killed",
        &run("kill"),
        &[("NORMA_FAULT", "1:3:kill")],
        &["signal 9"],
    );
    // Bad data on process 1: its NORMA_DATA_DIR is an empty folder (mpirun's MPMD form gives
    // each process its own environment).
    let empty = tempfile::tempdir().unwrap();
    let dir = format!("NORMA_DATA_DIR={}", empty.path().display());
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", "1"])
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(run("data"))
        .args([":", "-np", "1", "-x", &dir])
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(run("data"))
        .current_dir(cwd)
        .env("NORMA_DATA_DIR", "")
        .env("OMPI_MCA_btl_tcp_if_include", "lo")
        .env("OMPI_MCA_oob_tcp_if_include", "lo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (out, took) = run_with_deadline(cmd, Duration::from_secs(120));
    let err = stderr(&out);
    println!(
        "bad data on process 1: exit {:?} after {took:.1?}",
        out.status.code()
    );
    assert!(!out.status.success(), "the job succeeded:\n{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        err.contains("process 1 of 2 failed: Fashion-MNIST not found"),
        "{err}"
    );
}
