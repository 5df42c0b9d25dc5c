//! [`RunSpec`]: everything that defines one model's training run, as `config.json` stores it,
//! and the batches it trains on.

use std::path::PathBuf;

use norma_datasets::{Batches, Dataset, LastBatch, Order};
use norma_layers::models::ModelKind;
use serde::{Deserialize, Serialize};

use crate::cli::args::DEFAULT_PRECISE_BATCHES;
use crate::cli::choices::{
    default_lr, model_name, ActivationChoice, OptimizerChoice, PlacementChoice,
};
use crate::error::Error;

/// Samples per training batch unless an experiment says otherwise (d2l's 256).
pub const DEFAULT_BATCH_SIZE: usize = 256;

/// Everything that defines one model's training run (part of `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    #[serde(with = "model_name")]
    pub model: ModelKind,
    pub activation: ActivationChoice,
    pub optimizer: OptimizerChoice,
    pub lr: f64,
    pub momentum: f64,
    pub seed: u64,
    pub batch_size: usize,
    pub epochs: usize,
    pub shuffle: bool,
    /// Stop after this many optimizer steps in total.
    pub steps: Option<u64>,
    /// Start from these weights and buffers instead of a fresh initialisation.
    pub init: Option<PathBuf>,
    /// Training batches to recompute batch-norm statistics from for a second test accuracy
    /// after every epoch (see [`crate::run::precise`]); 0: none. Ignored without batch norm. Runs
    /// stored before it existed read as 0.
    #[serde(default)]
    pub precise_bn: usize,
    /// Where LeNet-BN's batch norms sit relative to the activations (runs stored before it
    /// existed had them before).
    #[serde(default)]
    pub placement: PlacementChoice,
}

impl RunSpec {
    /// d2l's recipe for `model` from `seed`: SGD without momentum at the default learning
    /// rate, batch 256, shuffled every epoch, no step limit, fresh weights. Experiments change
    /// fields from here.
    pub fn recipe(
        model: ModelKind,
        activation: ActivationChoice,
        seed: u64,
        epochs: usize,
    ) -> RunSpec {
        RunSpec {
            model,
            activation,
            optimizer: OptimizerChoice::Sgd,
            lr: default_lr(model, OptimizerChoice::Sgd),
            momentum: 0.0,
            seed,
            batch_size: DEFAULT_BATCH_SIZE,
            epochs,
            shuffle: true,
            steps: None,
            init: None,
            precise_bn: DEFAULT_PRECISE_BATCHES,
            placement: PlacementChoice::Before,
        }
    }

    /// The seed of epoch `epoch`'s shuffle: distinct per epoch, fixed by the run seed.
    pub fn epoch_seed(&self, epoch: usize) -> u64 {
        self.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// What happens to a last batch of a single sample: batch norm cannot normalise one
    /// sample, so it joins the batch before it; without batch norm it stays (which is what
    /// makes `--batch-size 1` possible for plain LeNet). For every batch size above 1 both
    /// rules give the same batches unless the last one holds a single sample.
    pub fn last_batch(&self) -> LastBatch {
        if self.model.has_batch_norm() || self.batch_size > 1 {
            LastBatch::MergeSingle
        } else {
            LastBatch::Keep
        }
    }

    /// The training batches of epoch `epoch` (0-based).
    pub fn epoch_batches<'a>(&self, data: &'a Dataset, epoch: usize) -> Result<Batches<'a>, Error> {
        let order = if self.shuffle {
            Order::Shuffled(self.epoch_seed(epoch))
        } else {
            Order::Sequential
        };
        Ok(data
            .train
            .batches(self.batch_size, order, self.last_batch())?)
    }
}
