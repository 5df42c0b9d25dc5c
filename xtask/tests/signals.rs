#![cfg(unix)]
//! SIGINT and SIGTERM stop training after the current step, or its final phase between two
//! batches: the checkpoint is saved, the resume command printed, and the exit status is 130 or
//! 143; the run then resumes.

mod common;

use std::io::Read;

use common::{have_data, json, long_run, run_until, succeeds};

/// Starts a long LeNet-BN run, sends `signal` once its first epoch row is printed, and
/// checks what the run leaves.
fn stops_cleanly_on(signal: libc::c_int, status: i32) {
    let cwd = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    let out = run.path().join("run");
    let o = out.to_str().unwrap();
    let (mut child, lines) = long_run(cwd.path(), &out);
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(status), "stderr:\n{err}");
    assert!(err.contains(&format!("--resume {o}")), "{err}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    let progress = json(&out.join("checkpoint/lenet-bn/progress.json"));
    assert_eq!(
        progress["record"]["status"]["state"], "interrupted",
        "{progress}"
    );
    let steps = progress["global_step"].as_u64().unwrap();
    assert!(steps >= 4, "{progress}");
    // And the run continues from there.
    let more = (steps + 2).to_string();
    succeeds(&["train-lenet", "--resume", o, "--steps", &more]);
    let progress = json(&out.join("checkpoint/lenet-bn/progress.json"));
    assert_eq!(progress["global_step"].as_u64(), Some(steps + 2));
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_130() {
    if have_data() {
        stops_cleanly_on(libc::SIGINT, 130);
    }
}

#[test]
fn sigterm_saves_a_checkpoint_and_exits_143() {
    if have_data() {
        stops_cleanly_on(libc::SIGTERM, 143);
    }
}

#[test]
fn a_signal_in_the_final_phase_stops_it_and_resume_writes_what_is_missing() {
    if !have_data() {
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    let out = run.path().join("run");
    let o = out.to_str().unwrap();
    // A run of one step: its final phase evaluates, prints the "stopped (step limit)" line,
    // then recomputes precise statistics over 200 batches of 256 images for
    // lenet-bn-precise-bn.safetensors — a window of a second or more for the signal.
    let args = [
        "train-lenet",
        "--model",
        "lenet-bn",
        "--steps",
        "1",
        "--out",
        o,
    ];
    let (mut child, lines) = run_until(cwd.path(), &args, "lenet-bn: stopped");
    // SAFETY: sending a signal to our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let _: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143), "stderr:\n{err}");
    assert!(err.contains(&format!("--resume {o}")), "{err}");
    let precise = out.join("lenet-bn-precise-bn.safetensors");
    assert!(!precise.exists(), "the precise pass was stopped");
    let status = |path: &str| json(&out.join(path));
    let progress = status("checkpoint/lenet-bn/progress.json");
    assert_eq!(
        progress["record"]["status"]["state"], "finishing",
        "{progress}"
    );
    assert_eq!(
        progress["record"]["status"]["then"]["state"], "step_limit",
        "{progress}"
    );
    // (Without --steps, --resume would go on training: a step limit holds for one command.)
    succeeds(&["train-lenet", "--resume", o, "--steps", "1"]);
    assert!(precise.is_file(), "--resume writes the missing file");
    let progress = status("checkpoint/lenet-bn/progress.json");
    assert_eq!(
        progress["record"]["status"]["state"], "step_limit",
        "{progress}"
    );
    assert_eq!(progress["global_step"], 1, "no step was taken again");
    let metrics = status("metrics.json");
    assert_eq!(metrics[0]["status"]["state"], "step_limit", "{metrics}");
}

#[test]
fn eval_mode_stops_on_sigterm_while_it_predicts() {
    if !have_data() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("bn.safetensors");
    common::save_weights(&weights, true);
    let out = dir.path().join("eval-mode");
    // 1000 orders of the test set in batches of 2: about half an hour of predictions. Then
    // 3 s into the passes that follow "predicting": precise statistics, each image alone, then
    // the orders (which the old check, made only between batch sizes, let run to their end).
    let (code, err, took) = common::signal_after_stderr(
        dir.path(),
        &[
            "eval-mode",
            "--weights",
            weights.to_str().unwrap(),
            "--batch-sizes",
            "2",
            "--orders",
            "1000",
            "--out",
            out.to_str().unwrap(),
        ],
        "== predicting the test set",
        std::time::Duration::from_secs(3),
        libc::SIGTERM,
    );
    assert_eq!(code, Some(143), "stderr:\n{err}");
    assert!(
        took < std::time::Duration::from_secs(30),
        "it stopped only after {took:?}"
    );
    assert!(
        err.contains("eval-mode stopped by SIGTERM while predicting"),
        "{err}"
    );
    assert!(
        !err.contains("checkpoint"),
        "no checkpoint is promised: {err}"
    );
    assert!(!out.join("eval-mode.json").exists());
}
