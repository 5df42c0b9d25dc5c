//! `config.json`: everything needed to rerun an experiment, built from the command line for a
//! new run ([`from_args`]); `--resume` reads it back (see [`super::resume`]).

use std::path::PathBuf;

use norma_datasets::Dataset;
use serde::{Deserialize, Serialize};

use crate::cli::args::{absolute, DEFAULT_PRECISE_BATCHES};
use crate::cli::checks;
use crate::cli::choices::{default_lr, ActivationChoice, DatasetChoice, Models, OptimizerChoice};
use crate::error::Error;
use crate::output::files;
use crate::run::data_parallel::DataParallel;
use crate::run::setup;
use crate::run::spec::{RunSpec, DEFAULT_BATCH_SIZE};
use crate::train::args::TrainArgs;

/// Epochs when `--epochs` is not given.
pub const DEFAULT_EPOCHS: usize = 10;

/// Everything needed to rerun an experiment (`config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub dataset: DatasetChoice,
    pub data_dir: Option<PathBuf>,
    pub train_samples: Option<usize>,
    pub threads: Option<usize>,
    pub runs: Vec<RunSpec>,
    /// The command line that produced this configuration.
    pub command: Vec<String>,
    pub norma_version: String,
    /// The processes of a data-parallel run and its `--bn` (absent for one process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_parallel: Option<DataParallel>,
    /// The command lines that continued the run with `--resume`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed: Vec<Vec<String>>,
    /// The folder the data was last loaded from (absolute), wherever the search found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_found_in: Option<PathBuf>,
    /// Images held out from the end of the training set (after `train_samples`) as a
    /// validation split, evaluated on instead of the test set (`placement`'s tuning runs choose
    /// a learning rate without seeing the test set); absent for the usual runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<usize>,
}

impl TrainConfig {
    /// A configuration of `runs` started by this process's command line.
    pub fn new(
        dataset: DatasetChoice,
        data_dir: Option<PathBuf>,
        train_samples: Option<usize>,
        threads: Option<usize>,
        runs: Vec<RunSpec>,
    ) -> TrainConfig {
        TrainConfig {
            dataset,
            data_dir,
            train_samples,
            threads,
            runs,
            command: crate::cli::command_line::recorded(),
            norma_version: env!("CARGO_PKG_VERSION").to_string(),
            data_parallel: None,
            resumed: Vec::new(),
            data_found_in: None,
            validation: None,
        }
    }

    /// The loaded `data` as this configuration trains and evaluates on it: with the validation
    /// split in place of the test set when [`TrainConfig::validation`] asks for one.
    pub fn data_split(&self, data: Dataset) -> Result<Dataset, Error> {
        match self.validation {
            Some(count) => setup::evaluate_on_validation(data, count),
            None => Ok(data),
        }
    }

    /// Records where `data` was loaded from; says so when a resumed run found its data in
    /// another folder than last time (another `--data-dir`, `NORMA_DATA_DIR` or working
    /// directory): the files may differ.
    pub fn note_data_source(&mut self, data: &Dataset) {
        let found = std::path::absolute(&data.location.dir).unwrap_or(data.location.dir.clone());
        if let Some(before) = self.data_found_in.as_ref().filter(|&b| *b != found) {
            eprintln!(
                "note: the data now comes from {}; the run was trained on data from {} until now",
                found.display(),
                before.display()
            );
        }
        self.data_found_in = Some(found);
    }

    /// Checks every run against the checks of the command line (a stored `config.json` may
    /// have been edited by hand).
    pub fn validate(&self) -> Result<(), Error> {
        if self.runs.is_empty() {
            return Err(Error::Usage("the configuration has no runs".into()));
        }
        checks::threads(self.threads)?;
        let mut train_len = checks::train_samples(self.train_samples)?;
        if let Some(count) = self.validation {
            setup::check_validation(count, train_len)?;
            train_len -= count;
        }
        for (i, spec) in self.runs.iter().enumerate() {
            // Each run has its checkpoint folder by model name: two would share one.
            if self.runs[..i].iter().any(|r| r.model == spec.model) {
                return Err(Error::Usage(format!(
                    "the configuration lists {} twice; a run holds each model once",
                    spec.model.name()
                )));
            }
            checks::at_least_one("--epochs", spec.epochs as u64)?;
            if let Some(steps) = spec.steps {
                checks::at_least_one("--steps", steps)?;
            }
            checks::batch_size(spec.batch_size, &[spec.model], train_len)?;
            checks::learning_rate("--lr", spec.lr)?;
            checks::momentum(
                (spec.momentum != 0.0).then_some(spec.momentum),
                spec.optimizer,
            )?;
        }
        Ok(())
    }
}

/// The configuration of a new run from the command line, with defaults applied.
pub fn from_args(args: &TrainArgs) -> Result<TrainConfig, Error> {
    let models = args.model.unwrap_or(Models::BOTH).models();
    let optimizer = args.optimizer.unwrap_or(OptimizerChoice::Sgd);
    if let Some(lr) = args.lr {
        checks::learning_rate("--lr", lr)?;
    }
    checks::momentum(args.momentum, optimizer)?;
    if args.init.is_some() && models.len() > 1 {
        return Err(Error::Usage(
            "--init holds one model's weights: add --model lenet or --model lenet-bn".into(),
        ));
    }
    if args.placement.is_some() && !models.iter().any(|m| m.has_batch_norm()) {
        return Err(Error::Usage(
            "--placement moves batch norm, which lenet does not have; use --model lenet-bn or both"
                .into(),
        ));
    }
    if args.freeze_bn && !models.iter().all(|m| m.has_batch_norm()) {
        return Err(Error::Usage(
            "--freeze-bn freezes batch norms, which lenet does not have; use --model lenet-bn"
                .into(),
        ));
    }
    if let Some(init) = &args.init {
        files::check_input_file("--init", init)?;
    }
    let init = args
        .init
        .as_deref()
        .map(|p| absolute("--init", p))
        .transpose()?;
    let runs = models
        .into_iter()
        .map(|model| RunSpec {
            model,
            activation: args.activation.unwrap_or(ActivationChoice::Sigmoid),
            optimizer,
            lr: args.lr.unwrap_or_else(|| default_lr(model, optimizer)),
            momentum: args.momentum.unwrap_or(0.0),
            seed: args.seed.unwrap_or(0),
            batch_size: args.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
            epochs: args.epochs.unwrap_or(DEFAULT_EPOCHS),
            shuffle: !args.no_shuffle,
            steps: args.steps,
            init: init.clone(),
            precise_bn: args.precise_bn.unwrap_or(DEFAULT_PRECISE_BATCHES),
            placement: args.placement.unwrap_or_default(),
            renorm_steps: None,
            affine: true,
            ghost_batch: None,
            freeze_bn: args.freeze_bn,
        })
        .collect();
    let common = &args.common;
    let config = TrainConfig::new(
        common.data.dataset(),
        common.data.absolute_data_dir()?,
        common.train_samples,
        common.threads,
        runs,
    );
    config.validate()?;
    Ok(config)
}
