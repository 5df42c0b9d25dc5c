//! Output folders: `--out` must be new or empty (nothing a user keeps is overwritten), default
//! folders are unique even for runs started in the same second, and a failed run leaves no
//! folder of its own behind.

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::{
    command_in, failed_clearly, fails_clearly, have_data, json, no_data, snapshot, stderr, xtask,
};

#[test]
fn an_out_folder_with_files_is_refused_before_anything_is_loaded() {
    let empty = no_data();
    let data_dir = empty.path().to_str().unwrap();
    let mine = tempfile::tempdir().unwrap();
    std::fs::write(mine.path().join("metrics.json"), "my own numbers").unwrap();
    std::fs::write(mine.path().join("sweep.csv"), "my own table").unwrap();
    let before = snapshot(mine.path());
    let m = mine.path().to_str().unwrap();
    fails_clearly(
        &["train-lenet", "--out", m, "--data-dir", data_dir],
        &["--out", "is not empty; give a new or empty folder"],
    );
    fails_clearly(
        &["lr-sweep", "--out", m, "--data-dir", data_dir],
        &["--out", "is not empty"],
    );
    // A folder holding a run points at --resume.
    std::fs::write(mine.path().join("config.json"), "{}").unwrap();
    fails_clearly(
        &[
            "train-lenet",
            "--lr",
            "0.05",
            "--seed",
            "9",
            "--out",
            m,
            "--data-dir",
            data_dir,
        ],
        &["is not empty", &format!("continue it with --resume {m}")],
    );
    std::fs::remove_file(mine.path().join("config.json")).unwrap();
    assert_eq!(snapshot(mine.path()), before, "the folder's files changed");

    let file = mine.path().join("sweep.csv");
    fails_clearly(
        &[
            "lr-sweep",
            "--out",
            file.to_str().unwrap(),
            "--data-dir",
            data_dir,
        ],
        &["--out", "exists and is not a directory"],
    );
    assert_eq!(snapshot(mine.path()), before);
}

#[test]
fn a_new_out_folder_that_could_not_be_used_is_removed_again() {
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("new-run");
    let empty = no_data();
    let result = xtask(&[
        "train-lenet",
        "--out",
        out.to_str().unwrap(),
        "--data-dir",
        empty.path().to_str().unwrap(),
    ]);
    failed_clearly(&result, "training on no data", &["error:"]);
    assert!(!out.exists(), "{} was left behind", out.display());
    // An empty folder the user made is theirs and stays.
    let made = parent.path().join("made");
    std::fs::create_dir(&made).unwrap();
    let result = xtask(&[
        "train-lenet",
        "--out",
        made.to_str().unwrap(),
        "--data-dir",
        empty.path().to_str().unwrap(),
    ]);
    assert!(!result.status.success());
    assert!(made.is_dir());
}

#[test]
fn runs_started_together_get_their_own_default_folders() {
    if !have_data() {
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    // Started at once, they almost always share the second of their default folder name.
    let children: Vec<_> = (0..3)
        .map(|seed| {
            let seed = seed.to_string();
            let mut cmd = command_in(
                cwd.path(),
                &[
                    "train-lenet",
                    "--model",
                    "lenet",
                    "--train-samples",
                    "64",
                    "--batch-size",
                    "32",
                    "--steps",
                    "1",
                    "--seed",
                    &seed,
                ],
            );
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cwd.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 3, "{dirs:?}");
    let mut seeds: Vec<u64> = dirs
        .iter()
        .map(|d| {
            let metrics = json(&d.join("metrics.json"));
            assert_eq!(
                metrics[0]["status"]["state"],
                "step_limit",
                "{}",
                d.display()
            );
            json(&d.join("config.json"))["runs"][0]["seed"]
                .as_u64()
                .unwrap()
        })
        .collect();
    seeds.sort();
    assert_eq!(seeds, [0, 1, 2], "each folder holds its own run");
}

#[test]
fn a_run_in_progress_cannot_be_resumed_twice() {
    if !have_data() {
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    let out = run.path().join("run");
    let (mut child, _lines) = common::long_run(cwd.path(), &out);
    let o = out.to_str().unwrap();
    let second = xtask(&["train-lenet", "--resume", o, "--epochs", "2000"]);
    // The first run is not needed any more.
    let _ = child.kill();
    let _ = child.wait();
    failed_clearly(
        &second,
        "a second run on the same folder",
        &[&format!(
            "--resume {o}: another xtask run is using this folder"
        )],
    );
}

#[test]
fn an_out_folder_that_cannot_be_used_is_named_before_the_data_loads() {
    let empty = no_data();
    let data_dir = empty.path().to_str().unwrap();
    let root = tempfile::tempdir().unwrap();
    // A link to a folder that does not exist.
    let link = root.path().join("link");
    std::os::unix::fs::symlink(root.path().join("missing"), &link).unwrap();
    for command in ["train-lenet", "drift"] {
        fails_clearly(
            &[
                command,
                "--out",
                link.to_str().unwrap(),
                "--data-dir",
                data_dir,
            ],
            &["is a link to", "missing, which does not exist"],
        );
    }
    // An empty folder this user cannot write into. Root ignores permission bits, so as root
    // the command runs as `nobody`, in folders everyone may enter.
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let open = |dir: &std::path::Path, mode| {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    open(root.path(), 0o777);
    open(empty.path(), 0o777);
    let locked = root.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    open(&locked, 0o555);
    // SAFETY: geteuid has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    // `nobody` may not be able to reach the build folder: a link or copy of the binary in the
    // open folder.
    let binary = root.path().join("xtask");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_xtask"), &binary).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_xtask"), &binary).unwrap();
    }
    for command in ["train-lenet", "placement"] {
        let mut cmd = std::process::Command::new(&binary);
        cmd.args([
            command,
            "--out",
            locked.to_str().unwrap(),
            "--data-dir",
            data_dir,
        ])
        .env("NORMA_DATA_DIR", "")
        .current_dir(root.path());
        if root_user {
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().unwrap();
        failed_clearly(
            &out,
            command,
            &[
                "--out",
                "cannot write into it",
                "give a folder you can write to",
            ],
        );
    }
    assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0);
}

#[test]
fn resume_names_what_the_folder_is_when_it_is_not_a_run_of_its_own() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("notes.txt");
    std::fs::write(&file, "mine").unwrap();
    fails_clearly(
        &["train-lenet", "--resume", file.to_str().unwrap()],
        &["notes.txt: not a directory (give the run's folder)"],
    );
    // An lr-sweep folder and one run inside it.
    let sweep = root.path().join("sweep");
    let cell = sweep.join("runs/lenet-bn-lr1-seed0");
    std::fs::create_dir_all(&cell).unwrap();
    std::fs::write(
        sweep.join("config.json"),
        r#"{"experiment": "lr-sweep", "command": [], "norma_version": "0", "options": {}}"#,
    )
    .unwrap();
    std::fs::write(cell.join("config.json"), "{}").unwrap();
    let before = snapshot(root.path());
    fails_clearly(
        &["train-lenet", "--resume", sweep.to_str().unwrap()],
        &["this is the folder of a `lr-sweep` experiment, not of a train-lenet run"],
    );
    fails_clearly(
        &["train-lenet", "--resume", cell.to_str().unwrap()],
        &[
            "this run is part of the `lr-sweep` experiment in",
            "copy this folder elsewhere to continue the run on its own",
        ],
    );
    assert_eq!(snapshot(root.path()), before);
}
