//! [`ModelRun`]: one model with its optimizer, built from a [`RunSpec`], able to take a
//! training step and to evaluate.

use std::rc::Rc;

use norma_autograd::{no_grad, Var};
use norma_datasets::{Batch, Dataset, Split};
use norma_distributed::Communicator;
use norma_layers::checkpoint;
use norma_layers::{convert_sync_batch_norm, Module, Sequential};
use norma_optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use norma_tensor::Rng;

use crate::cli::choices::OptimizerChoice;
use crate::cli::signals;
use crate::error::Error;
use crate::output::report::RunRecord;
use crate::run::snapshot::Snapshot;
use crate::run::spec::RunSpec;
use crate::run::step::{forward_loss, Alone, StepOutcome, Strategy};
use crate::run::{divergence, precise};

/// Samples per forward pass when evaluating (fixed, so that accuracies printed by `train-lenet`
/// and `eval` come from identical computations).
pub const EVAL_BATCH: usize = 500;

/// One model being trained: network, optimizer, and the spec they came from.
pub struct ModelRun {
    pub spec: RunSpec,
    pub model: Sequential,
    pub optimizer: Box<dyn Optimizer>,
    /// Whether the model's batch norms are synchronized over a data-parallel job
    /// ([`ModelRun::synchronize`]).
    pub synchronized: bool,
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
        let model = spec.build_model(&mut Rng::seed_from_u64(spec.seed))?;
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
        let passes = forward_loss(&mut self.model, images, &labels)
            .and_then(|forward| strategy.backward(&self.model, forward, &labels));
        let (loss, correct) = match passes {
            Ok(done) => done,
            // Batch statistics that overflowed: the step diverged (nothing of it applied; the
            // running statistics it may have updated are put back).
            Err(e) if strategy.overflow_is_divergence() && divergence::is_overflow(&e) => {
                before.restore(&self.model)?;
                return Ok(StepOutcome {
                    loss: f32::NAN,
                    correct: 0,
                    diverged: Some(divergence::Cause::State),
                });
            }
            Err(e) => return Err(e),
        };
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
        let copy = self
            .spec
            .build_model(&mut Rng::seed_from_u64(self.spec.seed))?;
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

impl Evaluation {
    /// Records this evaluation of the final weights in `record`.
    pub fn record_final(&self, record: &mut RunRecord) {
        record.final_test_acc = Some(self.test_acc);
        record.final_test_acc_precise = self.test_acc_precise;
        record.precise_bn_batches = self.precise_batches;
    }
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
        signals::check()?;
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
