//! [`ModelRun`]: one model with its optimizer, built from a [`RunSpec`], able to take a
//! training step and to evaluate.

use std::path::PathBuf;
use std::rc::Rc;

use norma_autograd::{no_grad, Var};
use norma_datasets::{Batch, Batches, Dataset, LastBatch, Order, Split};
use norma_distributed::Communicator;
use norma_layers::checkpoint;
use norma_layers::models::ModelKind;
use norma_layers::{convert_sync_batch_norm, Module, Sequential};
use norma_optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use norma_tensor::{Rng, Tensor};
use serde::{Deserialize, Serialize};

use crate::choices::{
    build_model, default_lr, model_name, ActivationChoice, OptimizerChoice, PlacementChoice,
};
use crate::signals::{self, Signal};
use crate::snapshot::Snapshot;
use crate::{divergence, precise, Error};

/// Samples per forward pass when evaluating (fixed, so that accuracies printed by `train-lenet`
/// and `eval` come from identical computations).
pub const EVAL_BATCH: usize = 500;

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
    /// after every epoch (see [`crate::precise`]); 0: none. Ignored without batch norm. Runs
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
            precise_bn: precise::DEFAULT_BATCHES,
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

/// One model being trained: network, optimizer, and the spec they came from.
pub struct ModelRun {
    pub spec: RunSpec,
    pub model: Sequential,
    pub optimizer: Box<dyn Optimizer>,
    /// Whether the model's batch norms are synchronized over a data-parallel job
    /// ([`ModelRun::synchronize`]).
    pub synchronized: bool,
}

/// Loss and correct predictions of one training step, and whether it diverged.
pub struct StepOutcome {
    pub loss: f32,
    pub correct: usize,
    /// Why the step diverged, if it did (then nothing of it was applied).
    pub diverged: Option<divergence::Cause>,
}

/// The forward half of every training step (of [`ModelRun`], [`crate::steps::StepRun`] and
/// the smoothness probe): see [`forward_loss`].
pub struct Forward {
    /// The batch's mean cross-entropy, to back-propagate.
    pub loss: Var,
    /// Its value.
    pub value: f32,
    /// The logits, (N, classes).
    pub logits: Var,
}

impl Forward {
    /// How many of the batch's samples are predicted right (`labels` as given to
    /// [`forward_loss`]).
    pub fn correct(&self, labels: &[usize]) -> Result<usize, Error> {
        let predicted = self.logits.value().argmax_rows()?;
        Ok(predicted.iter().zip(labels).filter(|(p, l)| p == l).count())
    }
}

/// `model` in training mode, its gradients cleared, `images` forward, and the mean
/// cross-entropy against `labels`.
pub fn forward_loss(
    model: &mut dyn Module,
    images: Tensor,
    labels: &[usize],
) -> Result<Forward, Error> {
    model.train();
    for p in model.parameters() {
        p.zero_grad();
    }
    let logits = model.forward(&Var::constant(images))?;
    let loss = logits.cross_entropy(labels)?;
    let value = loss.value().item()?;
    Ok(Forward {
        loss,
        value,
        logits,
    })
}

/// How a training step's gradient comes together: from this process's batch alone
/// ([`Alone`]), or summed over the processes of a data-parallel job
/// ([`crate::parallel::Replica`]). The training loop asks it, too, whether to stop and what to
/// do before each step and at the end.
pub trait Strategy {
    /// The part of the global `batch` this process trains on.
    fn shard(&mut self, batch: Batch) -> Result<Batch, Error>;

    /// Back-propagates `forward` (this process's batch, `labels`) so that every parameter
    /// gradient is that of the global batch's mean loss; returns the global batch's loss and
    /// correct predictions. Needs not back-propagate a loss that diverged (nothing of the step
    /// is applied then).
    fn backward(
        &mut self,
        model: &Sequential,
        forward: Forward,
        labels: &[usize],
    ) -> Result<(f32, usize), Error>;

    /// Whether a weight or a batch-norm statistic of `model` (on any process) overflowed to
    /// infinity or NaN after the update.
    fn overflowed(&mut self, model: &Sequential) -> Result<bool, Error>;

    /// The signal that stops training before the next step, if any.
    fn stop(&self) -> Option<Signal> {
        signals::received()
    }

    /// Called before global step `step` (0-based).
    fn before_step(&mut self, _step: u64) -> Result<(), Error> {
        Ok(())
    }

    /// Called when a model's training has ended for good, with its final weights.
    fn finish(&mut self, _model: &Sequential) -> Result<(), Error> {
        Ok(())
    }

    /// One line for the log that says how the run is spread over processes, if it is.
    fn describe(&self) -> Option<String> {
        None
    }

    /// The command that starts xtask again, for the `--resume` hint.
    fn launcher(&self) -> String {
        "cargo xtask".to_string()
    }
}

/// One process training alone: the plain step.
pub struct Alone;

impl Strategy for Alone {
    fn shard(&mut self, batch: Batch) -> Result<Batch, Error> {
        Ok(batch)
    }

    fn backward(
        &mut self,
        _model: &Sequential,
        forward: Forward,
        labels: &[usize],
    ) -> Result<(f32, usize), Error> {
        let correct = forward.correct(labels)?;
        if !divergence::diverged(forward.value) {
            forward.loss.backward()?;
        }
        Ok((forward.value, correct))
    }

    fn overflowed(&mut self, model: &Sequential) -> Result<bool, Error> {
        Ok(divergence::overflowed(model))
    }
}

impl ModelRun {
    /// Builds the model (Xavier-uniform from the seed, then the `init` checkpoint if the spec
    /// names one) and its optimizer.
    pub fn new(spec: RunSpec) -> Result<ModelRun, Error> {
        let run = Self::fresh(spec)?;
        if let Some(init) = &run.spec.init {
            checkpoint::load(&run.model, init)?;
        }
        Ok(run)
    }

    /// Builds the model from the seed only, for weights that a checkpoint will replace.
    pub fn fresh(spec: RunSpec) -> Result<ModelRun, Error> {
        let model = build_model(
            spec.model,
            spec.activation,
            spec.placement,
            &mut Rng::seed_from_u64(spec.seed),
        )?;
        let params = model.parameters();
        let optimizer: Box<dyn Optimizer> = match spec.optimizer {
            OptimizerChoice::Sgd => Box::new(Sgd::new(
                params,
                SgdConfig {
                    lr: spec.lr,
                    momentum: spec.momentum,
                    ..SgdConfig::default()
                },
            )?),
            OptimizerChoice::Adam => Box::new(Adam::new(
                params,
                AdamConfig {
                    lr: spec.lr,
                    ..AdamConfig::default()
                },
            )?),
        };
        Ok(ModelRun {
            spec,
            model,
            optimizer,
            synchronized: false,
        })
    }

    /// One optimizer step on `batch` in training mode, in one process: [`ModelRun::step_with`]
    /// [`Alone`].
    pub fn step(&mut self, batch: Batch) -> Result<StepOutcome, Error> {
        self.step_with(batch, &mut Alone)
    }

    /// One optimizer step on `batch` in training mode: forward and mean cross-entropy
    /// ([`forward_loss`]), the gradients as `strategy` brings them together (back-propagated
    /// alone, or summed over a data-parallel job), the update. A step that diverges — a
    /// diverged loss (see [`divergence::diverged`]), or weights or batch-norm statistics that
    /// overflow to infinity or NaN — is undone: the weights and running statistics stay those
    /// of the last good step.
    pub fn step_with<S: Strategy + ?Sized>(
        &mut self,
        batch: Batch,
        strategy: &mut S,
    ) -> Result<StepOutcome, Error> {
        let before = Snapshot::take(&self.model);
        let Batch { images, labels } = strategy.shard(batch)?;
        let forward = forward_loss(&mut self.model, images, &labels)?;
        let (loss, correct) = strategy.backward(&self.model, forward, &labels)?;
        let mut diverged = divergence::diverged(loss).then_some(divergence::Cause::Loss);
        if diverged.is_none() {
            self.optimizer.step()?;
            diverged = strategy
                .overflowed(&self.model)?
                .then_some(divergence::Cause::State);
        }
        if diverged.is_some() {
            before.restore(&self.model)?;
        }
        Ok(StepOutcome {
            loss,
            correct,
            diverged,
        })
    }

    /// Makes the model's batch norms synchronized over `comm` (statistics of the global batch).
    pub fn synchronize(&mut self, comm: Rc<dyn Communicator>) {
        self.synchronized = !convert_sync_batch_norm(&mut self.model, comm).is_empty();
    }

    /// The model for evaluating off the job: the model itself, or for a synchronized one a
    /// plain copy (same weights and buffers, batch norm without a communicator), so that
    /// precise statistics run on process 0 alone compute what they compute in one process.
    fn evaluation_model(&mut self) -> Result<Option<Sequential>, Error> {
        if !self.synchronized {
            return Ok(None);
        }
        let copy = build_model(
            self.spec.model,
            self.spec.activation,
            self.spec.placement,
            &mut Rng::seed_from_u64(self.spec.seed),
        )?;
        checkpoint::load_bytes(
            &copy,
            &state_bytes(&self.model)?,
            std::path::Path::new("the trained model"),
        )?;
        Ok(Some(copy))
    }

    /// Predicted class of every sample of `split`, in eval mode without recording a graph.
    pub fn predict(&mut self, split: &Split) -> Result<Vec<usize>, Error> {
        predict(&mut self.model, split)
    }
}

/// Test accuracy of a model as it stands, with its moving-average statistics and, for a model
/// with batch norm and `precise_bn` > 0, with precise statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub test_acc: f64,
    pub test_acc_precise: Option<f64>,
    /// Training batches the precise statistics were averaged over.
    pub precise_batches: Option<usize>,
}

impl ModelRun {
    /// Test accuracy with the running statistics and, if `precise` and the spec asks for it,
    /// with precise statistics (computed on the side: the model is left exactly as it was).
    pub fn evaluate(&mut self, data: &Dataset, precise: bool) -> Result<Evaluation, Error> {
        let labels = data.test.labels();
        let test_acc = accuracy(&self.predict(&data.test)?, labels);
        let mut eval = Evaluation {
            test_acc,
            test_acc_precise: None,
            precise_batches: None,
        };
        let batches = if precise {
            precise::batches(&self.spec, data)?
        } else {
            None
        };
        if let Some(batches) = batches {
            let mut copy = self.evaluation_model()?;
            let model = copy.as_mut().unwrap_or(&mut self.model);
            let (predicted, used) =
                precise::with_precise_stats(model, batches, self.spec.precise_bn, |m| {
                    predict(m, &data.test)
                })?;
            eval.test_acc_precise = Some(accuracy(&predicted, labels));
            eval.precise_batches = Some(used);
        }
        Ok(eval)
    }

    /// The state dict with precise batch-norm statistics, as safetensors bytes, if the spec
    /// asks for precise statistics (the model is left exactly as it was).
    pub fn precise_state_bytes(&mut self, data: &Dataset) -> Result<Option<Vec<u8>>, Error> {
        let Some(batches) = precise::batches(&self.spec, data)? else {
            return Ok(None);
        };
        let mut copy = self.evaluation_model()?;
        let model = copy.as_mut().unwrap_or(&mut self.model);
        let (bytes, _) =
            precise::with_precise_stats(model, batches, self.spec.precise_bn, |m| state_bytes(m))?;
        Ok(Some(bytes))
    }
}

/// A model's state dict as safetensors bytes (the format of `<model>.safetensors`).
pub fn state_bytes(model: &dyn Module) -> Result<Vec<u8>, Error> {
    checkpoint::to_bytes(&checkpoint::state_dict(model)).map_err(|source| Error::Format {
        what: "model state".into(),
        source,
    })
}

/// Predicted class of every sample of `split` (eval mode, no graph).
pub fn predict(model: &mut dyn Module, split: &Split) -> Result<Vec<usize>, Error> {
    model.eval();
    let mut out = Vec::with_capacity(split.len());
    for batch in split.eval_batches(EVAL_BATCH)? {
        let logits = no_grad(|| model.forward(&Var::constant(batch.images)))?;
        out.extend(logits.value().argmax_rows()?);
    }
    Ok(out)
}

/// Fraction of `predictions` equal to `labels`.
pub fn accuracy(predictions: &[usize], labels: &[usize]) -> f64 {
    let correct = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    correct as f64 / labels.len().max(1) as f64
}
