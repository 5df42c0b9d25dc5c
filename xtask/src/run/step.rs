//! The parts of a training step that every run shares: the forward half ([`forward_loss`]),
//! how the gradient comes together ([`Strategy`]: [`Alone`] in one process, or
//! [`crate::run::data_parallel::Replica`] in a data-parallel job) and what a step returns
//! ([`StepOutcome`]). [`crate::run::model_run::ModelRun::step_with`] puts them together.

use norma_autograd::Var;
use norma_datasets::Batch;
use norma_layers::{Module, Sequential};
use norma_tensor::Tensor;

use crate::cli::signals::{self, Signal};
use crate::error::Error;
use crate::run::divergence;

/// Loss and correct predictions of one training step, and whether it diverged.
pub struct StepOutcome {
    pub loss: f32,
    pub correct: usize,
    /// Why the step diverged, if it did (then nothing of it was applied).
    pub diverged: Option<divergence::Cause>,
}

/// The forward half of every training step (of `ModelRun`, the stepwise runs of `drift` and
/// `smoothness`, and the smoothness probe): see [`forward_loss`].
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
/// ([`crate::run::data_parallel::Replica`]). The training loop asks it, too, whether to stop
/// and what to do before each step and at the end.
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

    /// Whether an overflow error inside this process's forward or backward pass
    /// ([`divergence::is_overflow`]) is the step's divergence. True alone; a process of a
    /// data-parallel job could overflow where the others do not (local batch norm) and leave
    /// them waiting in a collective, so there the error ends the job instead.
    fn overflow_is_divergence(&self) -> bool {
        true
    }

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
