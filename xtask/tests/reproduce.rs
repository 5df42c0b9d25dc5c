//! `cargo xtask reproduce --quick`: the whole pipeline — every experiment behind
//! docs/experiments.md on tiny budgets, then the document rendered from their results — end to
//! end, its resume and its stop on a signal. With NORMA_REQUIRE_DATA=1 a missing Fashion-MNIST
//! fails these tests instead of skipping them.

mod common;

use std::io::BufRead;

use common::{command_in, failed_clearly, have_data, json, stderr, xtask};

#[test]
fn quick_reproduce_runs_every_section_and_renders_the_document_from_its_results() {
    if !have_data() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("r");
    let o = out.to_str().unwrap();
    let run = xtask(&["reproduce", "--quick", "--out", o]);
    assert!(run.status.success(), "{}", stderr(&run));
    let err = stderr(&run);
    assert!(err.contains("[23/23] depth/seeds"), "{err}");
    assert!(err.contains("left)"), "progress with an estimate: {err}");
    let doc = std::fs::read_to_string(out.join("experiments.md")).unwrap();
    assert!(!doc.contains("{{"), "every directive is replaced:\n{doc}");
    assert!(doc.contains("3 seeds)"), "{doc}");
    // Every figure the document shows is in the folder.
    let figures: Vec<&str> = doc
        .split("![")
        .skip(1)
        .filter_map(|f| {
            f.split_once("](")
                .map(|(_, rest)| &rest[..rest.find(')').unwrap()])
        })
        .collect();
    assert!(figures.len() >= 10, "{figures:?}");
    for file in figures {
        assert!(out.join(file).is_file(), "{file}");
    }
    // The numbers are the results': seed 1's LeNet-BN accuracy is in the range printed.
    let acc = json(&out.join("train/seed1/metrics.json"))[1]["final_test_acc_precise"]
        .as_f64()
        .unwrap();
    assert!(doc.contains(&format!("{acc:.4}")), "{acc} not in:\n{doc}");
    assert_eq!(json(&out.join("reproduce.json"))["quick"], true);

    // Resuming a finished folder runs nothing again and renders the same document.
    let again = xtask(&["reproduce", "--quick", "--resume", o]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(!stderr(&again).contains("[1/"), "{}", stderr(&again));
    assert_eq!(
        std::fs::read_to_string(out.join("experiments.md")).unwrap(),
        doc
    );
    // A resume with other budgets is refused.
    failed_clearly(
        &xtask(&["reproduce", "--resume", o]),
        "resume without --quick",
        &["was started with --quick; give the same"],
    );
}

#[test]
fn a_signal_stops_reproduce_and_resume_reruns_only_what_did_not_finish() {
    if !have_data() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("r");
    let o = out.to_str().unwrap();
    let mut child = command_in(
        root.path(),
        &["reproduce", "--quick", "--only", "drift", "--out", o],
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut err = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        err.push_str(&line);
        err.push('\n');
        if line.starts_with("[2/3]") {
            break;
        }
    }
    // SAFETY: sending a signal to our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    for line in lines {
        err.push_str(&line.unwrap());
        err.push('\n');
    }
    assert_eq!(child.wait().unwrap().code(), Some(143), "{err}");
    assert!(err.contains(&format!("--resume {o}")), "{err}");
    assert!(out.join("drift/seed0.done.json").is_file());
    assert!(!out.join("drift/seed1.done.json").exists(), "{err}");
    let resumed = xtask(&["reproduce", "--quick", "--only", "drift", "--resume", o]);
    let text = stderr(&resumed);
    assert!(resumed.status.success(), "{text}");
    assert!(
        !text.contains("[1/3]") && text.contains("[2/3] drift/seed1"),
        "{text}"
    );
    let doc = std::fs::read_to_string(out.join("experiments.md")).unwrap();
    assert!(doc.contains("](drift/seed0/drift-mlp.svg)"), "{doc}");
    assert!(
        doc.contains(
            "*Not yet regenerated on today's code: `cargo xtask reproduce --only batch-size`"
        ),
        "only the section run: {doc}"
    );
}

/// docs/experiments.md is what the template renders from the results committed beside it in
/// docs/experiments/ (`cargo xtask reproduce --publish` writes both; `--check --write` after
/// editing the template), and that folder holds nothing the document does not cite.
#[test]
fn the_committed_document_is_what_the_template_renders_from_the_committed_results() {
    let check = xtask(&["reproduce", "--check"]);
    assert!(check.status.success(), "{}", stderr(&check));
}
