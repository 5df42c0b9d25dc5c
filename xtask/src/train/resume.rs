//! `--resume`: the stored `config.json` of a run, with only what may change taken from the
//! command line — the length of the run (`--epochs`, `--steps`), `--threads` and `--data-dir`.
//! Any other option given must match the stored value; all that do not are listed in one
//! error, so that a resumed run is always the experiment that was started.

use std::path::Path;

use crate::cli::choices::flag_value;

use crate::cli::choices::Models;
use crate::error::Error;
use crate::output::files;
use crate::output::report::fmt_lr;
use crate::train::args::TrainArgs;
use crate::train::config::TrainConfig;

/// The stored configuration of the run in `dir`, with `--epochs`, `--steps`, `--threads` and
/// `--data-dir` from the command line applied on top (each change is reported on stderr).
/// Any other option given must match the stored value; all that do not are listed in one
/// error.
pub fn resumed(dir: &Path, args: &TrainArgs) -> Result<TrainConfig, Error> {
    let path = dir.join("config.json");
    // Anything there that is not a regular file is refused by name when it is read.
    if !path.exists() {
        return Err(Error::Usage(format!(
            "--resume {}: no config.json there (not a train-lenet run folder)",
            dir.display()
        )));
    }
    check_own_run(dir, &path)?;
    let mut config: TrainConfig = files::read_json(&path)?;
    // A stored configuration may have been edited by hand.
    config
        .validate()
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let conflicts = conflicts(&config, args);
    if !conflicts.is_empty() {
        return Err(Error::Usage(format!(
            "--resume {}: a stored run keeps its configuration; leave out or match {}",
            dir.display(),
            conflicts.join(", ")
        )));
    }
    let mut changes = Vec::new();
    let first = config.runs.first().cloned();
    if let (Some(epochs), Some(first)) = (args.epochs, &first) {
        changes.push(format!("--epochs {epochs} (was {})", first.epochs));
    }
    match (args.steps, first.as_ref().and_then(|r| r.steps)) {
        (Some(s), was) => changes.push(format!(
            "--steps {s} (was {})",
            was.map_or("none".into(), |w| w.to_string())
        )),
        // A step limit is where a run paused, not part of the experiment: resuming drops it
        // unless it is given again.
        (None, Some(was)) => changes.push(format!("no step limit (was --steps {was})")),
        (None, None) => {}
    }
    for spec in &mut config.runs {
        if let Some(e) = args.epochs {
            spec.epochs = e;
        }
        spec.steps = args.steps;
    }
    if let Some(threads) = args.common.threads {
        changes.push(format!("--threads {threads}"));
        config.threads = Some(threads);
    }
    if let Some(data_dir) = args.common.data.absolute_data_dir()? {
        changes.push(format!("--data-dir {}", data_dir.display()));
        config.data_dir = Some(data_dir);
    }
    config.validate()?;
    if !changes.is_empty() {
        eprintln!("resuming {} with {}", dir.display(), changes.join(", "));
    }
    config.resumed.push(crate::cli::command_line::recorded());
    Ok(config)
}

/// The experiment (`lr-sweep`, `eval-mode`, ...) whose `config.json` is at `path`, if it is
/// one (a train-lenet run's has no `experiment` field); `None` for anything unreadable.
fn experiment_at(path: &Path) -> Option<String> {
    let config: serde_json::Value = files::read_json(path).ok()?;
    config.get("experiment")?.as_str().map(str::to_string)
}

/// Refuses, by name, a folder that is not a train-lenet run of its own: an experiment's folder
/// (`config`: its `config.json`), or a run inside one, whose tables and figures would not see
/// what the run trains on its own.
fn check_own_run(dir: &Path, config: &Path) -> Result<(), Error> {
    if let Some(experiment) = experiment_at(config) {
        return Err(Error::Usage(format!(
            "--resume {}: this is the folder of a `{experiment}` experiment, not of a \
             train-lenet run; experiments cannot be resumed yet: start `{experiment}` again \
             with a new --out",
            dir.display()
        )));
    }
    // An experiment's runs are its subfolders (eval-mode's model/) or theirs (lr-sweep's
    // runs/<run>/).
    for parent in dir.ancestors().skip(1).take(2) {
        if let Some(experiment) = experiment_at(&parent.join("config.json")) {
            return Err(Error::Usage(format!(
                "--resume {}: this run is part of the `{experiment}` experiment in {}, whose \
                 tables and figures would not include what it trains now; experiments cannot \
                 be resumed yet: start `{experiment}` again, or copy this folder elsewhere to \
                 continue the run on its own",
                dir.display(),
                parent.display()
            )));
        }
    }
    Ok(())
}

/// Every option given in `args` whose value differs from `config`, as `--flag value (stored:
/// value)`.
fn conflicts(config: &TrainConfig, args: &TrainArgs) -> Vec<String> {
    let runs = &config.runs;
    let stored_models = Models::of(&runs.iter().map(|r| r.model).collect::<Vec<_>>());
    // (flag, value given, values stored)
    let checks: Vec<(&str, Option<String>, Vec<String>)> = vec![
        (
            "--model",
            args.model.map(|m| m.name().to_string()),
            // A run of lenet-gn or lenet-ln (a batch-size cell) has no --model value of its own.
            vec![stored_models.map_or_else(
                || {
                    let names: Vec<&str> = runs.iter().map(|r| r.model.name()).collect();
                    names.join(",")
                },
                |m| m.name().to_string(),
            )],
        ),
        (
            "--dataset",
            args.common.data.dataset.map(flag_value),
            vec![flag_value(config.dataset)],
        ),
        (
            "--train-samples",
            args.common.train_samples.map(|n| n.to_string()),
            vec![config.train_samples.map_or("all".into(), |n| n.to_string())],
        ),
        (
            "--batch-size",
            args.batch_size.map(|b| b.to_string()),
            runs.iter().map(|r| r.batch_size.to_string()).collect(),
        ),
        (
            "--lr",
            args.lr.map(fmt_lr),
            runs.iter().map(|r| fmt_lr(r.lr)).collect(),
        ),
        (
            "--optimizer",
            args.optimizer.map(flag_value),
            runs.iter().map(|r| flag_value(r.optimizer)).collect(),
        ),
        (
            "--momentum",
            args.momentum.map(|m| m.to_string()),
            runs.iter().map(|r| r.momentum.to_string()).collect(),
        ),
        (
            "--activation",
            args.activation.map(flag_value),
            runs.iter().map(|r| flag_value(r.activation)).collect(),
        ),
        (
            "--seed",
            args.seed.map(|s| s.to_string()),
            runs.iter().map(|r| r.seed.to_string()).collect(),
        ),
        (
            "--no-shuffle",
            args.no_shuffle.then(|| "given".to_string()),
            runs.iter()
                .map(|r| if r.shuffle { "not given" } else { "given" }.to_string())
                .collect(),
        ),
        (
            "--placement",
            args.placement.map(flag_value),
            runs.iter().map(|r| flag_value(r.placement)).collect(),
        ),
        (
            "--precise-bn",
            args.precise_bn.map(|k| k.to_string()),
            runs.iter().map(|r| r.precise_bn.to_string()).collect(),
        ),
        (
            "--init",
            args.init.as_ref().map(|p| p.display().to_string()),
            runs.iter()
                .map(|r| {
                    r.init
                        .as_ref()
                        .map_or("none".into(), |p| p.display().to_string())
                })
                .collect(),
        ),
    ];
    let mut out = Vec::new();
    for (flag, given, mut stored) in checks {
        let Some(given) = given else { continue };
        if stored.iter().all(|s| *s == given) {
            continue;
        }
        stored.dedup();
        let shown = if flag == "--no-shuffle" {
            flag.to_string()
        } else {
            format!("{flag} {given}")
        };
        out.push(format!("{shown} (stored: {})", stored.join(" / ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::from_args;

    fn stored() -> TrainConfig {
        from_args(&TrainArgs::default()).unwrap()
    }

    #[test]
    fn matching_or_absent_options_do_not_conflict() {
        let args = TrainArgs {
            model: Some(Models::BOTH),
            seed: Some(0),
            batch_size: Some(256),
            epochs: Some(20),
            steps: Some(5),
            common: crate::cli::args::CommonArgs {
                threads: Some(1),
                ..Default::default()
            },
            ..TrainArgs::default()
        };
        assert!(conflicts(&stored(), &args).is_empty());
    }

    #[test]
    fn every_conflicting_option_is_listed_with_its_stored_value() {
        let args = TrainArgs {
            lr: Some(0.05),
            seed: Some(9),
            no_shuffle: true,
            model: Some(Models::ALL[0]),
            ..TrainArgs::default()
        };
        let found = conflicts(&stored(), &args);
        assert_eq!(
            found,
            [
                "--model lenet (stored: both)",
                "--lr 0.05 (stored: 0.9 / 1)",
                "--seed 9 (stored: 0)",
                "--no-shuffle (stored: not given)",
            ]
        );
    }
}
