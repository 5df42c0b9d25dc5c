//! What every experiment shares, in one place (their options are in [`crate::cli::args`]):
//!
//! - the start-up order ([`start`]): options checked, output folder claimed, threads sized,
//!   signals watched, data loaded — so that a bad `--out` or a bad value is reported before the
//!   data loads, and nothing is written before all of that succeeded;
//! - training one configuration into a subfolder ([`Session::train`]), with `train-lenet`'s own
//!   loop, files and progress bars;
//! - `config.json` and `report.html` ([`Session::finish`]).

use norma_datasets::Dataset;
use serde::Serialize;

use crate::cli::args::CommonArgs;
use crate::cli::choices::DatasetChoice;
use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::output::html::{self, Page};
use crate::output::report::RunRecord;
use crate::output::run_dir::RunDir;
use crate::run::setup;
use crate::run::spec::RunSpec;
use crate::train::{self, TrainConfig};

/// `config.json` of an experiment other than `train-lenet` (whose configuration is a
/// [`TrainConfig`]): its name, the command line and every option.
#[derive(Debug, Serialize)]
pub struct ExperimentConfig<'a, T: Serialize> {
    pub experiment: &'a str,
    pub command: Vec<String>,
    pub norma_version: &'static str,
    pub options: &'a T,
}

/// A session's data with its last `count` training images held out: the training set without
/// them, and them in place of the test set ([`Session::held_out`]).
pub struct HeldOut {
    pub count: usize,
    pub data: Dataset,
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
        self.train_on(parent, name, runs, None)
    }

    /// The session's data with its last `count` training images held out as a validation
    /// split that replaces the test set (see [`setup::evaluate_on_validation`]).
    pub fn held_out(&self, count: usize) -> Result<HeldOut, Error> {
        Ok(HeldOut {
            count,
            data: setup::evaluate_on_validation(self.data.clone(), count)?,
        })
    }

    /// [`Session::train`] on `held`: trained without the held-out images and evaluated on them,
    /// never on the test set (the run's `config.json` records the split, so `--resume` keeps it).
    pub fn train_held_out(
        &self,
        parent: &RunDir,
        name: &str,
        runs: Vec<RunSpec>,
        held: &HeldOut,
    ) -> Result<Result<Vec<RunRecord>, Signal>, Error> {
        self.train_on(parent, name, runs, Some(held))
    }

    fn train_on(
        &self,
        parent: &RunDir,
        name: &str,
        runs: Vec<RunSpec>,
        held: Option<&HeldOut>,
    ) -> Result<Result<Vec<RunRecord>, Signal>, Error> {
        let dir = parent.subdir(name)?;
        let mut config = TrainConfig::new(
            self.common.data.dataset(),
            self.common.data.absolute_data_dir()?,
            self.common.train_samples,
            self.common.threads,
            runs,
        );
        config.validation = held.map(|h| h.count);
        let data = held.map_or(&self.data, |h| &h.data);
        let states = train::new_states(&config)?;
        let outcome = train::execute(&config, &dir, data, states)?;
        match outcome.stopped_by {
            Some(signal) => {
                eprintln!(
                    "interrupted by {}; the finished runs are in {} (experiments cannot be \
                     resumed yet: start `{}` again with a new --out)",
                    signal.name(),
                    self.dir.path().display(),
                    self.name
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
            self.dir.file(html::REPORT).display()
        );
        Ok(())
    }
}

fn config<'a, T: Serialize>(experiment: &'a str, options: &'a T) -> ExperimentConfig<'a, T> {
    ExperimentConfig {
        experiment,
        command: crate::cli::command_line::recorded(),
        norma_version: env!("CARGO_PKG_VERSION"),
        options,
    }
}
