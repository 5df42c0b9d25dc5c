//! What every experiment shares, in one place:
//!
//! - the options: [`CommonArgs`] (`--threads`, `--dataset`, `--data-dir`, `--train-samples`,
//!   `--out`) and, for experiments repeated over seeds, [`SeedArgs`] (`--seed`, `--seeds`);
//! - the start-up order ([`start`]): options checked, output folder claimed, threads sized,
//!   signals watched, data loaded — so that a bad `--out` or a bad value is reported before the
//!   data loads, and nothing is written before all of that succeeded;
//! - training one configuration into a subfolder ([`Session::train`]), with `train-lenet`'s own
//!   loop, files and progress bars;
//! - `config.json` and `report.html` ([`Session::finish`]).

use std::path::PathBuf;

use norma_datasets::Dataset;
use serde::Serialize;

use crate::choices::{DataArgs, DatasetChoice};
use crate::html::Page;
use crate::model_run::RunSpec;
use crate::report::RunRecord;
use crate::run_dir::RunDir;
use crate::signals::{self, Signal};
use crate::train::{self, TrainConfig};
use crate::{checks, precise, setup, Error};

/// Options every experiment takes.
#[derive(Debug, Default, Clone, clap::Args, Serialize)]
pub struct CommonArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub data: DataArgs,
    /// Worker threads, at most 8 per core [default: one per core]. Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Train on the first N training images only (quick experiments and tests).
    #[arg(long)]
    pub train_samples: Option<usize>,
    /// Output folder; must be new or empty [default: runs/COMMAND-TIMESTAMP, or
    /// runs/COMMAND-TIMESTAMP-2, -3, ... if taken].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl CommonArgs {
    /// Checks `--threads` and `--train-samples`; returns the size of the training set that will
    /// be used.
    pub fn check(&self) -> Result<usize, Error> {
        checks::threads(self.threads)?;
        checks::train_samples(self.train_samples)
    }
}

/// `--precise-bn` of the experiments that train LeNet-BN and compare final accuracies.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct PreciseArgs {
    /// Measure LeNet-BN's test accuracy with batch-norm statistics recomputed from this many
    /// training batches (precise BN; 0: only with the moving averages kept during training).
    #[arg(long, allow_negative_numbers = true, default_value_t = precise::DEFAULT_BATCHES)]
    pub precise_bn: usize,
}

/// `--seed` and `--seeds` of an experiment repeated over seeds. The default number of seeds is
/// [`DEFAULT_SEEDS`]; a command that wants another sets it with
/// `#[command(mut_arg("seeds", |a| a.default_value("1")))]` on its arguments (a generic
/// default does not work: clap keeps the rendered default in one static for all instances).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct SeedArgs {
    /// The first seed (of the initialisation and the data order).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How many seeds to run: SEED, SEED + 1, ...
    #[arg(long, default_value_t = DEFAULT_SEEDS)]
    pub seeds: u64,
}

/// Seeds per experiment unless the command says otherwise.
pub const DEFAULT_SEEDS: u64 = 3;

impl SeedArgs {
    /// Checks that there is at least one seed and that the last one exists.
    pub fn check(&self) -> Result<(), Error> {
        checks::at_least_one("--seeds", self.seeds)?;
        if self.seed.checked_add(self.seeds - 1).is_none() {
            return Err(Error::Usage(format!(
                "--seed {} with --seeds {} goes past the largest seed ({})",
                self.seed,
                self.seeds,
                u64::MAX
            )));
        }
        Ok(())
    }

    /// The seeds, in order.
    pub fn list(&self) -> Vec<u64> {
        (0..self.seeds).map(|i| self.seed + i).collect()
    }
}

/// `0–2` for consecutive seeds, else the list.
pub fn seed_range(seeds: &[u64]) -> String {
    match seeds {
        [one] => one.to_string(),
        [first, .., last] if last - first + 1 == seeds.len() as u64 => format!("{first}–{last}"),
        _ => seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// `config.json` of an experiment other than `train-lenet` (whose configuration is a
/// [`TrainConfig`]): its name, the command line and every option.
#[derive(Debug, Serialize)]
pub struct ExperimentConfig<'a, T: Serialize> {
    pub experiment: &'a str,
    pub command: Vec<String>,
    pub norma_version: &'static str,
    pub options: &'a T,
}

/// A started experiment: its name, output folder, data and options.
pub struct Session {
    /// The command (`placement`, `lr-sweep`, ...).
    pub name: &'static str,
    pub dir: RunDir,
    pub data: Dataset,
    pub common: CommonArgs,
}

/// Starts experiment `command` (its options already checked): claims the output folder
/// (`--out`, or a new `runs/<command>-<timestamp>`), sizes the thread pool, watches for
/// SIGINT/SIGTERM and loads the data. `None` when a signal arrived while the data loaded
/// (nothing was written; the caller returns [`signals::received`]).
pub fn start(command: &'static str, common: &CommonArgs) -> Result<Option<Session>, Error> {
    common.check()?;
    let dir = RunDir::create(common.out.as_deref(), &format!("{command}-"))?;
    setup::threads(common.threads)?;
    let Some(data) = load_data(
        common.data.dataset(),
        common.data.data_dir.as_deref(),
        common.train_samples,
    )?
    else {
        return Ok(None);
    };
    eprintln!(
        "writing to {} ({} threads)",
        dir.path().display(),
        rayon::current_num_threads()
    );
    Ok(Some(Session {
        name: command,
        dir,
        data,
        common: common.clone(),
    }))
}

/// Watches for signals and loads the data (see [`setup::load_data`]); `None` when a signal
/// arrived meanwhile.
pub fn load_data(
    dataset: DatasetChoice,
    data_dir: Option<&std::path::Path>,
    train_samples: Option<usize>,
) -> Result<Option<Dataset>, Error> {
    signals::watch();
    let data = setup::load_data(dataset, data_dir, train_samples)?;
    if let Some(signal) = signals::received() {
        eprintln!("{}: stopped before training", signal.name());
        return Ok(None);
    }
    Ok(Some(data))
}

impl Session {
    /// Writes `config.json`: the experiment's name, the command line and `options`.
    pub fn write_config(&self, options: &impl Serialize) -> Result<(), Error> {
        self.dir
            .write_json("config.json", &config(self.name, options))
    }

    /// Trains `runs` in a new subfolder `name` of `parent` as one `train-lenet` run (its own
    /// `config.json`, metrics, weights, checkpoints, curves and `report.html`; `train-lenet
    /// --resume` continues it). Returns the records, or the signal that stopped training (after
    /// saying where the finished runs are).
    pub fn train(
        &self,
        parent: &RunDir,
        name: &str,
        runs: Vec<RunSpec>,
    ) -> Result<Result<Vec<RunRecord>, Signal>, Error> {
        let dir = parent.subdir(name)?;
        let config = TrainConfig::new(
            self.common.data.dataset(),
            self.common.data.data_dir.clone(),
            self.common.train_samples,
            self.common.threads,
            runs,
        );
        let states = train::new_states(&config)?;
        let outcome = train::execute(&config, &dir, &self.data, states)?;
        match outcome.stopped_by {
            Some(signal) => {
                eprintln!(
                    "interrupted by {}; the finished runs are in {} (this experiment cannot be \
                     resumed; the interrupted run can, with train-lenet --resume {})",
                    signal.name(),
                    self.dir.path().display(),
                    dir.path().display()
                );
                Ok(Err(signal))
            }
            None => Ok(Ok(outcome.records)),
        }
    }

    /// Adds the configuration to `page`, writes it as `report.html` and says where the results
    /// are.
    pub fn finish(&self, mut page: Page, options: &impl Serialize) -> Result<(), Error> {
        page.config(&config(self.name, options));
        page.write(&self.dir)?;
        eprintln!(
            "results in {} (open {} in a browser)",
            self.dir.path().display(),
            self.dir.file(crate::html::REPORT).display()
        );
        Ok(())
    }
}

fn config<'a, T: Serialize>(experiment: &'a str, options: &'a T) -> ExperimentConfig<'a, T> {
    ExperimentConfig {
        experiment,
        command: std::env::args().collect(),
        norma_version: env!("CARGO_PKG_VERSION"),
        options,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_count_up_from_the_first_and_stay_in_range() {
        let s = SeedArgs { seed: 5, seeds: 3 };
        assert_eq!(s.list(), [5, 6, 7]);
        s.check().unwrap();
        let none = SeedArgs { seed: 0, seeds: 0 };
        assert!(none
            .check()
            .unwrap_err()
            .to_string()
            .contains("--seeds must be at least 1"));
        let past = SeedArgs {
            seed: u64::MAX,
            seeds: 2,
        };
        assert!(past.check().unwrap_err().to_string().contains("goes past"));
        SeedArgs {
            seed: u64::MAX,
            seeds: 1,
        }
        .check()
        .unwrap();
    }

    #[test]
    fn seed_ranges_are_short() {
        assert_eq!(seed_range(&[0, 1, 2]), "0–2");
        assert_eq!(seed_range(&[4]), "4");
        assert_eq!(seed_range(&[0, 2]), "0, 2");
    }
}
