//! The options that several commands share: [`CommonArgs`] (`--threads`, `--dataset`,
//! `--data-dir`, `--train-samples`, `--out`), [`DataArgs`], [`PreciseArgs`] (`--precise-bn`)
//! and, for experiments repeated over seeds, [`SeedArgs`] (`--seed`, `--seeds`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::checks;
use crate::cli::choices::DatasetChoice;
use crate::error::Error;

/// `--dataset` and `--data-dir`, shared by every command.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct DataArgs {
    /// The dataset [default: fashion-mnist].
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetChoice>,
    /// Folder holding the four IDX files (.gz or extracted) [default: $NORMA_DATA_DIR,
    /// ./data/DATASET/, Debian's package, then a download].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl DataArgs {
    /// The dataset given, or Fashion-MNIST.
    pub fn dataset(&self) -> DatasetChoice {
        self.dataset.unwrap_or(DatasetChoice::FashionMnist)
    }

    /// `--data-dir` as an absolute path, the form a run stores: a relative one would name
    /// another folder when the run is resumed from another directory.
    pub fn absolute_data_dir(&self) -> Result<Option<PathBuf>, Error> {
        self.data_dir
            .as_deref()
            .map(|dir| absolute("--data-dir", dir))
            .transpose()
    }
}

/// `path` (given as `flag`) made absolute against the working directory, without touching
/// the file system otherwise (no link is resolved; the path need not exist yet).
pub fn absolute(flag: &str, path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|e| Error::Usage(format!("{flag} {}: {e}", path.display())))
}

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

/// Batches precise batch-norm statistics are averaged over when `--precise-bn` is not given
/// (see [`crate::run::precise`]).
pub const DEFAULT_PRECISE_BATCHES: usize = 200;

/// `--precise-bn` of the experiments that train LeNet-BN and compare final accuracies.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct PreciseArgs {
    /// Measure LeNet-BN's test accuracy with batch-norm statistics recomputed from this many
    /// training batches (precise BN; 0: only with the moving averages kept during training).
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_PRECISE_BATCHES)]
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
    /// How many seeds to run: SEED, SEED + 1, ... (1 to 1000; each seed is a whole set of
    /// runs).
    #[arg(long, default_value_t = DEFAULT_SEEDS)]
    pub seeds: u64,
}

/// Seeds per experiment unless the command says otherwise.
pub const DEFAULT_SEEDS: u64 = 3;

/// The most `--seeds`: every seed repeats all of an experiment's runs (minutes each), and the
/// list of seeds is kept in memory, so more than this is a typo, not an experiment.
pub const MAX_SEEDS: u64 = 1000;

impl SeedArgs {
    /// Checks that there is at least one seed and that the last one exists.
    pub fn check(&self) -> Result<(), Error> {
        checks::count_between("--seeds", self.seeds, 1, MAX_SEEDS)?;
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
            .contains("--seeds must be between 1 and 1000, got 0"));
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
