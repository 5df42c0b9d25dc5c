//! [`RunSpec`]: everything that defines one model's training run, as `config.json` stores it,
//! and the batches it trains on.

use std::path::PathBuf;

use norma_datasets::{Batches, Dataset, LastBatch, Order};
use norma_layers::models::{LenetOptions, ModelKind, DEFAULT_GHOST_BATCH};
use norma_layers::{freeze_batch_norm, RenormConfig, Sequential};
use norma_tensor::Rng;
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
    /// For `lenet-brn`: the training steps Batch Renormalization's schedule is compressed into
    /// ([`renorm_schedule`]); `None`, the paper's schedule ([`RenormConfig::default`]). Left out
    /// of `config.json` when `None`, so runs of the other models store what they stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renorm_steps: Option<u64>,
    /// Learnable γ and β in the norms (true); `false` is PyTorch's `affine=False`
    /// ([`LenetOptions::affine`]). Left out of `config.json` when true, so runs with γ and β
    /// store what they stored, and runs stored before it existed read as true.
    #[serde(default = "affine_default", skip_serializing_if = "is_affine")]
    pub affine: bool,
    /// For `lenet-gbn`: samples per ghost batch; `None`, [`DEFAULT_GHOST_BATCH`]. Left out of
    /// `config.json` when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ghost_batch: Option<usize>,
    /// Every batch norm frozen ([`freeze_batch_norm`]) once the model is built: fixed
    /// statistics and affine, nothing of them trained, no precise statistics. Meant with
    /// [`RunSpec::init`] (the trained model to fine-tune), whose checkpoint is then a frozen
    /// model's. Left out of `config.json` when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freeze_bn: bool,
}

fn affine_default() -> bool {
    true
}

fn is_affine(affine: &bool) -> bool {
    *affine
}

/// Ioffe's schedule compressed into a run of `steps` training steps, with the paper's
/// proportions and final bounds: plain batch norm for the first eighth (the paper's 5000 of
/// 40 000 steps), then r_max relaxed to 3 at the last step (40 000) and d_max to 5 at five
/// eighths (25 000). The paper's own 5000-step warm-up would leave a short run plain batch norm
/// throughout (`batch-size`'s 2 epochs at batch 256 are 470 steps).
pub fn renorm_schedule(steps: u64) -> RenormConfig {
    let paper = RenormConfig::default();
    let warmup_steps = steps / 8;
    RenormConfig {
        warmup_steps,
        d_max_at: (steps * 5 / 8).max(warmup_steps),
        r_max_at: steps.max(warmup_steps),
        ..paper
    }
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
            renorm_steps: None,
            affine: true,
            ghost_batch: None,
            freeze_bn: false,
        }
    }

    /// Batch Renormalization's schedule for this run (used by `lenet-brn` only): compressed
    /// into [`RunSpec::renorm_steps`] steps, else the paper's.
    pub fn renorm(&self) -> RenormConfig {
        self.renorm_steps
            .map_or_else(RenormConfig::default, renorm_schedule)
    }

    /// The network of the spec, fresh from `rng`: its model, activation, placement, γ and β or
    /// not, (for `lenet-brn`) renorm schedule and (for `lenet-gbn`) ghost batch size; its batch
    /// norms frozen with [`RunSpec::freeze_bn`].
    pub fn build_model(&self, rng: &mut Rng) -> Result<Sequential, norma_layers::LayerError> {
        let options = LenetOptions {
            placement: self.placement.placement(),
            affine: self.affine,
            renorm: self.renorm(),
            ghost_batch: self.ghost_batch.unwrap_or(DEFAULT_GHOST_BATCH),
        };
        let model = self
            .model
            .build_with(self.activation.activation(), &options, rng)?;
        if self.freeze_bn {
            freeze_batch_norm(model)
        } else {
            Ok(model)
        }
    }

    /// Whether the run keeps batch-norm running statistics that precise statistics can
    /// replace: a model with batch norm (or a remedy of it) that is not frozen.
    pub fn tracks_batch_stats(&self) -> bool {
        self.model.has_batch_norm() && !self.freeze_bn
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renorm_schedule_keeps_the_papers_proportions() {
        let paper = RenormConfig::default();
        let s = renorm_schedule(40_000);
        assert_eq!(
            (s.warmup_steps, s.d_max_at, s.r_max_at),
            (paper.warmup_steps, paper.d_max_at, paper.r_max_at)
        );
        let s = renorm_schedule(470);
        assert_eq!((s.warmup_steps, s.d_max_at, s.r_max_at), (58, 293, 470));
        assert_eq!(s.bounds_at(58), (1.0, 0.0));
        assert_eq!(s.bounds_at(470), (paper.r_max, paper.d_max));
        // A run of one step: plain batch norm at step 0, the final bounds from step 1.
        let s = renorm_schedule(1);
        assert_eq!((s.warmup_steps, s.d_max_at, s.r_max_at), (0, 0, 1));
        let mut spec = RunSpec::recipe(ModelKind::LenetBrn, ActivationChoice::Sigmoid, 0, 1);
        assert_eq!(spec.renorm(), paper);
        spec.renorm_steps = Some(470);
        assert_eq!(spec.renorm(), renorm_schedule(470));
    }
}
