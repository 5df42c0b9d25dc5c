//! [`ModelRun`]: one model with its optimizer, built from a [`RunSpec`], able to take a
//! training step and to evaluate.

use std::rc::Rc;

use norma_autograd::{no_grad, Var};
use norma_datasets::{Batch, Dataset, Split};
use norma_distributed::Communicator;
use norma_layers::checkpoint;
use norma_layers::{convert_sync_batch_norm, freeze_batch_norm, Module, Sequential};
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

/// Training images measured in eval mode after every epoch (the train half of
/// [`Evaluation`]): the first `TRAIN_SUBSET` of the training set the run trains on (after
/// `--train-samples`), all of them when there are fewer. A fixed subset, so that the epochs
/// compare; 10,000 like the test set, so that it costs what a test pass costs.
pub const TRAIN_SUBSET: usize = 10_000;

/// [`TRAIN_SUBSET`] in evaluation batches (it is a whole number of them).
const TRAIN_SUBSET_BATCHES: usize = TRAIN_SUBSET / EVAL_BATCH;
const _: () = assert!(TRAIN_SUBSET.is_multiple_of(EVAL_BATCH));

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
    /// names one, then its batch norms frozen if the spec freezes them: the checkpoint is a
    /// trained model's, whose statistics and affine the frozen layers keep) and its optimizer.
    pub fn new(spec: RunSpec) -> Result<ModelRun, Error> {
        let Some(init) = &spec.init else {
            return Self::fresh(spec);
        };
        let unfrozen = RunSpec {
            freeze_bn: false,
            ..spec.clone()
        };
        let model = unfrozen.build_model(&mut Rng::seed_from_u64(spec.seed))?;
        checkpoint::load(&model, init)?;
        let model = if spec.freeze_bn {
            freeze_batch_norm(model)?
        } else {
            model
        };
        Self::with_model(spec, model)
    }

    /// Builds the model from the seed only (frozen as the spec says), for weights that a
    /// checkpoint will replace.
    pub fn fresh(spec: RunSpec) -> Result<ModelRun, Error> {
        let model = spec.build_model(&mut Rng::seed_from_u64(spec.seed))?;
        Self::with_model(spec, model)
    }

    /// `model` with the optimizer of `spec` over its parameters.
    fn with_model(spec: RunSpec, model: Sequential) -> Result<ModelRun, Error> {
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

/// What [`ModelRun::evaluate`] measures of a model as it stands.
///
/// `test_acc` uses the moving-average statistics and `test_acc_precise`, for a model with
/// batch norm and `precise_bn` > 0, precise statistics. The losses and the training-subset
/// accuracy use the statistics of the headline accuracy (precise when measured, the running
/// ones otherwise), so that train and test numbers compare like for like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub test_acc: f64,
    pub test_acc_precise: Option<f64>,
    /// Training batches the precise statistics were averaged over.
    pub precise_batches: Option<usize>,
    /// Mean cross-entropy on the test set.
    pub test_loss: f64,
    /// Accuracy on the first [`TRAIN_SUBSET`] training images (all when there are fewer), in
    /// eval mode.
    pub train_acc: f64,
    /// Mean cross-entropy on the same images.
    pub train_loss: f64,
}

impl Evaluation {
    /// Records this evaluation of the final weights in `record`.
    pub fn record_final(&self, record: &mut RunRecord) {
        record.final_test_acc = Some(self.test_acc);
        record.final_test_acc_precise = self.test_acc_precise;
        record.precise_bn_batches = self.precise_batches;
        record.final_test_loss = Some(self.test_loss);
        record.final_eval_train_acc = Some(self.train_acc);
        record.final_eval_train_loss = Some(self.train_loss);
    }
}

impl ModelRun {
    /// Test accuracy with the running statistics and, if `precise` and the spec asks for it,
    /// with precise statistics (computed on the side: the model is left exactly as it was);
    /// test loss, training-subset accuracy and loss with the headline statistics (see
    /// [`Evaluation`]).
    pub fn evaluate(&mut self, data: &Dataset, precise: bool) -> Result<Evaluation, Error> {
        let test = score(&mut self.model, &data.test, usize::MAX)?;
        let batches = if precise {
            precise::batches(&self.spec, data)?
        } else {
            None
        };
        let Some(batches) = batches else {
            let train = score(&mut self.model, &data.train, TRAIN_SUBSET_BATCHES)?;
            return Ok(Evaluation {
                test_acc: test.acc,
                test_acc_precise: None,
                precise_batches: None,
                test_loss: test.loss,
                train_acc: train.acc,
                train_loss: train.loss,
            });
        };
        let mut copy = self.evaluation_model()?;
        let model = copy.as_mut().unwrap_or(&mut self.model);
        let ((precise_test, train), used) =
            precise::with_precise_stats(model, batches, self.spec.precise_bn, |m| {
                Ok((
                    score(m, &data.test, usize::MAX)?,
                    score(m, &data.train, TRAIN_SUBSET_BATCHES)?,
                ))
            })?;
        Ok(Evaluation {
            test_acc: test.acc,
            test_acc_precise: Some(precise_test.acc),
            precise_batches: Some(used),
            test_loss: precise_test.loss,
            train_acc: train.acc,
            train_loss: train.loss,
        })
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
    Ok(score(model, split, usize::MAX)?.predicted)
}

/// What one pass of [`score`] over a split measured.
pub struct Scores {
    /// The predicted class of every sample seen, in order.
    pub predicted: Vec<usize>,
    /// The fraction predicted right.
    pub acc: f64,
    /// The mean cross-entropy.
    pub loss: f64,
}

/// The first `batches` evaluation batches of `split` (of [`EVAL_BATCH`] samples, in file
/// order; all when there are fewer) in eval mode without recording a graph: predicted
/// classes, accuracy and mean cross-entropy. Eval mode reads the batch-norm statistics and
/// changes no buffer, so the model is left as it was (but in eval mode).
pub fn score(model: &mut dyn Module, split: &Split, batches: usize) -> Result<Scores, Error> {
    model.eval();
    let mut predicted = Vec::with_capacity(split.len().min(batches.saturating_mul(EVAL_BATCH)));
    let (mut correct, mut loss_sum) = (0usize, 0.0f64);
    for batch in split.eval_batches(EVAL_BATCH)?.take(batches) {
        signals::check()?;
        let logits = no_grad(|| model.forward(&Var::constant(batch.images)))?;
        let loss = no_grad(|| logits.cross_entropy(&batch.labels))?;
        loss_sum += f64::from(loss.value().item()?) * batch.labels.len() as f64;
        let classes = logits.value().argmax_rows()?;
        correct += classes
            .iter()
            .zip(&batch.labels)
            .filter(|(p, l)| p == l)
            .count();
        predicted.extend(classes);
    }
    let n = predicted.len().max(1) as f64;
    Ok(Scores {
        acc: correct as f64 / n,
        loss: loss_sum / n,
        predicted,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::choices::ActivationChoice;
    use crate::steps::tests::tiny_data;
    use norma_layers::models::ModelKind;

    fn run() -> ModelRun {
        let mut spec = RunSpec::recipe(ModelKind::LenetBn, ActivationChoice::Sigmoid, 3, 1);
        spec.batch_size = 16;
        spec.precise_bn = 2;
        ModelRun::new(spec).unwrap()
    }

    fn batch(data: &Dataset, first: usize) -> Batch {
        data.train.eval_batches(16).unwrap().nth(first).unwrap()
    }

    #[test]
    fn evaluating_changes_nothing_that_training_sees() {
        let data = tiny_data(48, 40);
        let (mut measured, mut alone) = (run(), run());
        for r in [&mut measured, &mut alone] {
            r.step(batch(&data, 0)).unwrap();
        }
        let before = state_bytes(&measured.model).unwrap();
        let precise = measured.evaluate(&data, true).unwrap();
        let running = measured.evaluate(&data, false).unwrap();
        assert_eq!(state_bytes(&measured.model).unwrap(), before);
        // The next step is the same bit for bit as without the evaluations.
        let (a, b) = (
            measured.step(batch(&data, 1)).unwrap(),
            alone.step(batch(&data, 1)).unwrap(),
        );
        assert_eq!(a.loss.to_bits(), b.loss.to_bits());
        assert_eq!(
            state_bytes(&measured.model).unwrap(),
            state_bytes(&alone.model).unwrap()
        );
        // Losses and the train subset follow the headline statistics: precise when measured.
        assert_eq!(precise.test_acc, running.test_acc);
        assert!(precise.test_acc_precise.is_some() && running.test_acc_precise.is_none());
        assert_ne!(precise.test_loss, running.test_loss);
        assert_ne!(precise.train_loss, running.train_loss);
        for e in [precise, running] {
            assert!(e.test_loss.is_finite() && e.train_loss.is_finite(), "{e:?}");
            assert!((0.0..=1.0).contains(&e.train_acc), "{e:?}");
        }
    }

    #[test]
    fn a_score_reads_the_first_batches_and_agrees_with_predict() {
        let data = tiny_data(1200, 10);
        let mut r = run();
        let first = score(&mut r.model, &data.train, 2).unwrap();
        assert_eq!(first.predicted.len(), 2 * EVAL_BATCH);
        let all = score(&mut r.model, &data.train, usize::MAX).unwrap();
        assert_eq!(all.predicted, r.predict(&data.train).unwrap());
        assert_eq!(all.predicted[..2 * EVAL_BATCH], first.predicted[..]);
        let labels = &data.train.labels()[..2 * EVAL_BATCH];
        assert_eq!(first.acc, accuracy(&first.predicted, labels));
        // Cross-entropy of 10 classes near the start: about ln 10.
        assert!((first.loss - 10f64.ln()).abs() < 0.5, "{}", first.loss);
    }

    #[test]
    fn a_frozen_run_keeps_the_trained_statistics_and_affine_and_trains_the_rest() {
        let data = tiny_data(48, 40);
        let mut trained = run();
        trained.step(batch(&data, 0)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("lenet-bn.safetensors");
        std::fs::write(&weights, state_bytes(&trained.model).unwrap()).unwrap();
        let spec = RunSpec {
            init: Some(weights),
            freeze_bn: true,
            ..trained.spec.clone()
        };
        assert!(!spec.tracks_batch_stats());
        let mut frozen = ModelRun::new(spec.clone()).unwrap();
        let state = |m: &Sequential| norma_layers::checkpoint::state_dict(m);
        let before = state(&frozen.model);
        // The frozen layers hold the trained model's buffers and γ, β.
        for name in [
            "bn1.running_mean",
            "bn3.running_var",
            "bn4.weight",
            "bn2.bias",
        ] {
            assert_eq!(before[name], state(&trained.model)[name], "{name}");
        }
        assert!(!before.contains_key("bn1.num_batches_tracked"));
        frozen.step(batch(&data, 1)).unwrap();
        let after = state(&frozen.model);
        for (name, value) in &before {
            let moved = after[name] != *value;
            assert_eq!(moved, !name.starts_with("bn"), "{name}");
        }
        // Resuming builds the same frozen model from the seed.
        let fresh = ModelRun::fresh(spec).unwrap();
        assert_eq!(
            state(&fresh.model).keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>()
        );
    }
}
