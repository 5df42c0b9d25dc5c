//! [`ModelRun`]: one model with its optimizer, built from a [`RunSpec`], able to take a
//! training step and to evaluate.

use std::path::PathBuf;
use std::rc::Rc;

use norma_autograd::{no_grad, Var};
use norma_datasets::{Batch, Batches, Dataset, LastBatch, Order, Split};
use norma_distributed::Communicator;
use norma_layers::checkpoint;
use norma_layers::{convert_sync_batch_norm, Module, Sequential};
use norma_optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use norma_tensor::{Rng, Tensor};
use serde::{Deserialize, Serialize};

use crate::choices::{
    build_model, default_lr, ActivationChoice, ModelChoice, OptimizerChoice, PlacementChoice,
};
use crate::parallel::{self, Job};
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
    pub model: ModelChoice,
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
        model: ModelChoice,
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

    /// One optimizer step on `batch` in training mode (forward, mean cross-entropy, backward,
    /// update). A step that diverges — a diverged loss (see [`divergence::diverged`]), or
    /// weights or batch-norm statistics that overflow to infinity or NaN — is undone: the
    /// weights and running statistics stay those of the last good step.
    pub fn step(&mut self, batch: Batch) -> Result<StepOutcome, Error> {
        let before = Snapshot::take(&self.model);
        self.model.train();
        self.optimizer.zero_grad();
        let logits = self.model.forward(&Var::constant(batch.images))?;
        let loss = logits.cross_entropy(&batch.labels)?;
        let loss_value = loss.value().item()?;
        let correct = count_correct(logits.value(), &batch.labels)?;
        let mut diverged = divergence::diverged(loss_value).then_some(divergence::Cause::Loss);
        if diverged.is_none() {
            loss.backward()?;
            self.optimizer.step()?;
            diverged = divergence::overflowed(&self.model).then_some(divergence::Cause::State);
        }
        if diverged.is_some() {
            before.restore(&self.model)?;
        }
        Ok(StepOutcome {
            loss: loss_value,
            correct,
            diverged,
        })
    }

    /// Makes the model's batch norms synchronized over `comm` (statistics of the global batch).
    pub fn synchronize(&mut self, comm: Rc<dyn Communicator>) {
        self.synchronized = !convert_sync_batch_norm(&mut self.model, comm).is_empty();
    }

    /// [`ModelRun::step`] in a data-parallel job (collective; see [`crate::parallel`]): this
    /// process's shard of the global `batch` forward and backward with its loss weighted by
    /// its share of the batch, then ONE all-reduce of the flat buffer [every parameter
    /// gradient, weighted loss, correct count, stop flag], whose sum is the gradient of the
    /// global batch's mean loss; then the optimizer step, identical on every process. Whether
    /// the step diverged is decided on the global loss (and, with per-process batch-norm
    /// statistics, on every process's buffers: one more all-reduce of one value), so every
    /// process undoes it or none does. `stop` is this process's wish to stop (a signal); the
    /// returned flag says whether any process has one.
    pub fn step_data_parallel(
        &mut self,
        batch: Batch,
        job: &Job,
        stop: bool,
    ) -> Result<(StepOutcome, bool), Error> {
        let comm = job.comm().as_ref();
        let (shard, global) = parallel::shard_of(batch, comm)?;
        let weight = shard.labels.len() as f32 / global as f32;
        let before = Snapshot::take(&self.model);
        self.model.train();
        self.optimizer.zero_grad();
        let logits = self.model.forward(&Var::constant(shard.images))?;
        let loss = logits.cross_entropy(&shard.labels)?;
        let local_loss = loss.value().item()?;
        let correct = count_correct(logits.value(), &shard.labels)?;
        // Always backward: synchronized batch norm communicates in it, and whether the step
        // diverged is known only from the global loss.
        loss.mul_scalar(weight).backward()?;
        let params = self.model.parameters();
        let total: usize = params.iter().map(|p| p.len()).sum();
        let mut flat = Vec::with_capacity(total + 3);
        for p in &params {
            match p.grad() {
                Some(g) => flat.extend_from_slice(g.as_slice()),
                None => flat.resize(flat.len() + p.len(), 0.0),
            }
        }
        flat.extend([
            local_loss * weight,
            correct as f32,
            f32::from(u8::from(stop)),
        ]);
        comm.all_reduce_sum_f32(&mut flat)?;
        let (loss_value, correct, stop_any) = (flat[total], flat[total + 1], flat[total + 2]);
        let mut diverged = divergence::diverged(loss_value).then_some(divergence::Cause::Loss);
        if diverged.is_none() {
            let mut offset = 0;
            for p in &params {
                let len = p.len();
                if p.requires_grad() {
                    p.set_grad(Tensor::from_vec(
                        &p.shape(),
                        flat[offset..offset + len].to_vec(),
                    )?)?;
                }
                offset += len;
            }
            self.optimizer.step()?;
            let mut overflowed = [f64::from(u8::from(divergence::overflowed(&self.model)))];
            if !job.synchronizes() {
                // Per-process running statistics: one process's may overflow alone.
                comm.all_reduce_sum_f64(&mut overflowed)?;
            }
            diverged = (overflowed[0] > 0.0).then_some(divergence::Cause::State);
        }
        if diverged.is_some() {
            before.restore(&self.model)?;
        }
        Ok((
            StepOutcome {
                loss: loss_value,
                correct: correct as usize,
                diverged,
            },
            stop_any > 0.0,
        ))
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

fn count_correct(logits: &norma_tensor::Tensor, labels: &[usize]) -> Result<usize, Error> {
    let predicted = logits.argmax_rows()?;
    Ok(predicted.iter().zip(labels).filter(|(p, l)| p == l).count())
}
