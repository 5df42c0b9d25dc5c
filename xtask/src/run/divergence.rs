//! When a training run has diverged — one rule for `train-lenet` (which stops the run) and
//! `lr-sweep` (which labels it): a batch loss that is not finite or above [`DIVERGED_LOSS`]
//! = 100.
//!
//! The mean cross-entropy of a fresh network is near ln 10 ≈ 2.3 (uniform guesses over ten
//! classes); a batch loss of 100 means the correct classes get a probability of e^-100 on
//! average: the logits have blown up. The bound is set by what runs that still learn reach.
//! Largest batch loss, full Fashion-MNIST, batch 256 (3 epochs and seeds 0–2 for lr ≤ 10, 1
//! epoch and seeds 0–1 above):
//!
//! | lr | LeNet | end | LeNet-BN | end |
//! | --- | --- | --- | --- | --- |
//! | 0.1–1 | 2.4–2.9 | chance or learns | 2.4–2.5 | learns |
//! | 3 | 4.8–5.0 | 2 of 3 at chance | 9.8–12.1 | learns (0.75–0.82) |
//! | 10 | 8.9–13.4 | at chance | 20.9–23.8 | learns (0.79–0.80) |
//! | 30 | 63–83 | at chance (epoch loss 20) | 44–54 | 0.19–0.40 after 1 epoch |
//! | 100 | 1000–1137 | at chance | 148–176 | at chance (epoch loss 36) |
//! | 1000 | 24,000 | at chance | 1400–1600 | at chance |
//!
//! LeNet-BN spikes to 24 at lr 10 and 54 at lr 30 and still learns, so no bound can call plain
//! LeNet's 13 at lr 10 diverged without stopping LeNet-BN's best runs: 100 leaves room above
//! every run that learns (and for single confidently wrong samples at small batch sizes) and
//! catches every run whose loss grew by orders of magnitude (lr ≥ 100, or 1e6 where the loss
//! reaches 1e7). Plain LeNet at lr 3–10 therefore ends "stalled" in the sweep: at chance, its
//! sigmoids saturated, with a largest batch loss of 5–13 that `sweep.json` records.

use norma_autograd::AutogradError;
use norma_kernels::KernelError;
use norma_layers::{Buffer, Module};
use norma_tensor::Tensor;

use crate::error::Error;
use crate::output::report::{RunRecord, Status};

/// Final accuracy below which a run that did not diverge stalled (chance is 0.1 on ten
/// classes).
pub const CHANCE_BELOW: f64 = 0.2;

/// How a finished run ended, for the experiments that label runs (`lr-sweep`, `batch-size`):
/// `diverged` (stopped by the rule of this module), `stalled` (a final test accuracy below
/// [`CHANCE_BELOW`] without diverging: too small a step to leave the plateau, or saturated
/// sigmoids) or `ok`.
pub fn outcome(record: &RunRecord) -> &'static str {
    match record.status {
        Status::Diverged { .. } => "diverged",
        _ if record.headline_acc().unwrap_or(0.0) < CHANCE_BELOW => "stalled",
        _ => "ok",
    }
}

/// Why a step diverged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The batch loss is not finite or above [`DIVERGED_LOSS`].
    Loss,
    /// A weight or a batch-norm statistic became infinite or NaN (the loss can stay finite:
    /// batch norm rescales huge activations).
    State,
}

/// Whether any parameter or float buffer of `model` holds an infinity or a NaN.
pub fn overflowed(model: &dyn Module) -> bool {
    let finite = |t: &Tensor| t.as_slice().iter().all(|v| v.is_finite());
    model.parameters().iter().any(|p| !finite(&p.value()))
        || model
            .named_buffers()
            .iter()
            .any(|(_, b)| matches!(b, Buffer::F32(t) if !finite(&t.get())))
}

/// Whether `error`, raised inside a training step, is an overflow (batch statistics that came
/// out infinite or NaN) rather than a bug or a bad input: the step diverged.
pub fn is_overflow(error: &Error) -> bool {
    match error {
        Error::Layer(e) => e.is_overflow(),
        Error::Autograd(AutogradError::Op { source, .. }) => source
            .downcast_ref::<KernelError>()
            .is_some_and(KernelError::is_overflow),
        _ => false,
    }
}

/// A batch loss above this means the run diverged (see the module docs).
pub const DIVERGED_LOSS: f32 = 100.0;

/// Whether a batch loss means the run diverged: not finite, or above [`DIVERGED_LOSS`].
pub fn diverged(loss: f32) -> bool {
    !loss.is_finite() || loss > DIVERGED_LOSS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        for ok in [0.0, 2.3, 24.0, 54.0, 100.0] {
            assert!(!diverged(ok), "{ok}");
        }
        for bad in [100.5, 1.4e7, f32::INFINITY, f32::NAN] {
            assert!(diverged(bad), "{bad}");
        }
    }
}
