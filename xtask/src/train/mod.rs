//! `cargo xtask train-lenet`: the batch-norm experiment. Trains LeNet and/or LeNet-BN, prints a
//! row per epoch, and writes metrics, plots, weights, the config and resumable checkpoints to
//! the run folder.
//!
//! The order of work is what keeps a user's files safe: every option is checked, the output
//! folder claimed (or, for `--resume`, every model's checkpoint loaded) and any `--init` file
//! read before the dataset is loaded, and nothing is written before all of that succeeded.
//!
//! - [`args`]: the command line; [`config`]: `config.json`; [`resume`]: what `--resume` keeps
//!   and what it may change;
//! - [`progress`] and [`checkpoint`]: where a model stands, saved and restored;
//! - [`trainer`]: the loop over epochs and steps;
//! - [`targets`]: epochs to a target accuracy and the train − test gap;
//! - [`curves`] and [`page`]: the run's chart and `report.html`.

pub mod args;
pub mod checkpoint;
pub mod config;
pub mod curves;
pub mod page;
pub mod progress;
pub mod resume;
pub mod targets;
pub mod trainer;

pub use args::TrainArgs;
pub use config::TrainConfig;
pub use trainer::ModelState;

use norma_datasets::Dataset;

use crate::model_run::ModelRun;
use crate::report::{self, RunRecord};
use crate::run_dir::RunDir;
use crate::signals::{self, Signal};
use crate::train::progress::Progress;
use crate::{experiment, html, setup, Error};

/// What [`execute`] did.
pub struct Outcome {
    /// Every model's record, in the configuration's order (also those not trained yet).
    pub records: Vec<RunRecord>,
    /// The signal that stopped training early, if any.
    pub stopped_by: Option<Signal>,
}

/// Runs `train-lenet`; returns the signal that interrupted it, if one did.
pub fn run(args: TrainArgs) -> Result<Option<Signal>, Error> {
    let (config, dir, states) = match &args.resume {
        Some(path) => {
            let dir = RunDir::existing("--resume", path)?;
            let config = resume::resumed(path, &args)?;
            setup::threads(config.threads)?;
            let states = load_states(&config, &dir)?;
            (config, dir, states)
        }
        None => {
            let config = config::from_args(&args)?;
            let dir = RunDir::create(args.common.out.as_deref(), "train-lenet-")?;
            setup::threads(config.threads)?;
            let states = new_states(&config)?;
            (config, dir, states)
        }
    };
    let Some(data) = experiment::load_data(
        config.dataset,
        config.data_dir.as_deref(),
        config.train_samples,
    )?
    else {
        // Stopped while the data loaded: nothing was written.
        return Ok(signals::received());
    };
    eprintln!(
        "writing to {} ({} threads)",
        dir.path().display(),
        rayon::current_num_threads()
    );
    let outcome = execute(&config, &dir, &data, states)?;
    println!("\n{}", report::summary(&outcome.records).text());
    if let Some(note) = report::accuracy_note(&outcome.records) {
        println!("{note}");
    }
    println!(
        "\nepochs to a test accuracy:\n{}",
        targets::epochs_to_target(&outcome.records).text()
    );
    println!(
        "train - test accuracy gap per epoch (test: precise BN where measured):\n{}",
        targets::gap_table(&outcome.records).text()
    );
    match outcome.stopped_by {
        Some(signal) => eprintln!(
            "interrupted by {}; checkpoints are in {}. Resume with:\n  cargo xtask train-lenet --resume {}",
            signal.name(),
            dir.file("checkpoint").display(),
            dir.path().display()
        ),
        None => eprintln!(
            "results in {} (open {} in a browser)",
            dir.path().display(),
            dir.file(html::REPORT).display()
        ),
    }
    Ok(outcome.stopped_by)
}

/// Every model of a new run, built from its seed or `--init` file (which fails fast on a file
/// that does not fit the model).
pub fn new_states(config: &TrainConfig) -> Result<Vec<ModelState>, Error> {
    config
        .runs
        .iter()
        .map(|spec| {
            Ok(ModelState {
                progress: Progress::fresh(spec),
                run: ModelRun::new(spec.clone())?,
            })
        })
        .collect()
}

/// Every model of a stored run, restored from its checkpoint; fails, before anything is
/// written, if any checkpoint is missing or broken or the new limits are already passed.
fn load_states(config: &TrainConfig, dir: &RunDir) -> Result<Vec<ModelState>, Error> {
    let mut states = Vec::new();
    for spec in &config.runs {
        // The weights come from the checkpoint: an --init file is not needed any more.
        let mut run = ModelRun::fresh(spec.clone())?;
        let name = spec.model.name();
        let progress = checkpoint::load(&checkpoint::dir(dir.path(), name), &mut run)?;
        progress.check_reachable(spec)?;
        states.push(ModelState { run, progress });
    }
    Ok(states)
}

/// Trains every model of `config` from `states` on `data`, writing all outputs into `dir`;
/// stops early (after saving checkpoints) on SIGINT or SIGTERM.
pub fn execute(
    config: &TrainConfig,
    dir: &RunDir,
    data: &Dataset,
    mut states: Vec<ModelState>,
) -> Result<Outcome, Error> {
    dir.write_json("config.json", config)?;
    for state in &states {
        // A new run has a checkpoint from the start: `--resume` never has to guess.
        let ckpt = checkpoint::dir(dir.path(), state.name());
        if !checkpoint::exists(&ckpt) {
            checkpoint::save(&ckpt, &state.run, &state.progress)?;
        }
    }
    println!("{}", report::table_header());
    let mut stopped_by = None;
    for i in 0..states.len() {
        stopped_by = trainer::train(&mut states[i], data, dir)?;
        let records: Vec<RunRecord> = states.iter().map(|s| s.progress.record.clone()).collect();
        report::write_metrics(dir, &records)?;
        if stopped_by.is_some() {
            break;
        }
    }
    let records: Vec<RunRecord> = states.into_iter().map(|s| s.progress.record).collect();
    let curves = curves::training_curves(dir, &records).transpose();
    page::page(config, &records, curves).write(dir)?;
    Ok(Outcome {
        records,
        stopped_by,
    })
}
