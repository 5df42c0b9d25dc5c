//! # norma-optim
//!
//! Optimizers over [`norma_autograd::Param`]s and learning-rate schedules.
//!
//! - [`Sgd`]: plain, momentum, Nesterov, L2 weight decay (PyTorch's `torch.optim.SGD`).
//! - [`Adam`] and AdamW (decoupled weight decay) (PyTorch's `Adam` / `AdamW`).
//! - [`Schedule`]: constant, step decay, cosine annealing.
//! - [`OptimizerState`]: an optimizer's typed state (its kind, per-parameter buffers, step
//!   counts) for exact resumption, as a safetensors file.
//!
//! Optimizers update the parameters they were given and nothing else: batch-norm running
//! statistics are buffers, not parameters, and are never touched. A parameter that received
//! no gradient in a step is left as it is.
//!
//! ```
//! use norma_autograd::Param;
//! use norma_optim::{Optimizer, Sgd, SgdConfig};
//! use norma_tensor::Tensor;
//!
//! // Minimise (w − 3)².
//! let w = Param::new(Tensor::scalar(0.0));
//! let mut opt = Sgd::new(vec![w.clone()], SgdConfig { lr: 0.1, ..SgdConfig::default() })?;
//! for _ in 0..100 {
//!     opt.zero_grad();
//!     let d = w.var().add_scalar(-3.0);
//!     d.mul(&d)?.sum_all()?.backward()?;
//!     opt.step()?;
//! }
//! assert!((w.value().item()? - 3.0).abs() < 1e-4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod adam;
mod schedule;
mod sgd;
mod state;

pub use adam::{Adam, AdamConfig};
pub use schedule::Schedule;
pub use sgd::{Sgd, SgdConfig};
pub use state::{OptimizerKind, OptimizerState, ParamState, StateError};

use norma_autograd::{AutogradError, Param};
use thiserror::Error;

/// An optimizer was configured with an unusable value.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum OptimError {
    /// A hyper-parameter is out of range (negative or NaN learning rate, momentum ≥ 1, ...).
    #[error("{optimizer}: {name} = {value} is invalid: {reason}")]
    Config {
        optimizer: &'static str,
        name: &'static str,
        value: f64,
        reason: &'static str,
    },
    /// A saved optimizer state does not fit this optimizer, or could not be read.
    #[error("optimizer state: {0}")]
    State(#[from] StateError),
    /// A gradient did not have its parameter's shape.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
}

impl From<norma_tensor::TensorError> for OptimError {
    fn from(e: norma_tensor::TensorError) -> Self {
        OptimError::Autograd(e.into())
    }
}

/// Result of an optimizer operation.
pub type Result<T> = std::result::Result<T, OptimError>;

/// Something that updates parameters from their gradients.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;

    /// The parameters being optimized.
    fn params(&self) -> &[Param];

    /// The current learning rate.
    fn lr(&self) -> f64;

    /// Changes the learning rate (schedules call this).
    fn set_lr(&mut self, lr: f64) -> Result<()>;

    /// Which optimizer this is, as its state records it.
    fn kind(&self) -> OptimizerKind;

    /// The optimizer's internal state (momentum buffers, moment estimates, step counts), for
    /// checkpoints that resume training exactly.
    fn state(&self) -> OptimizerState;

    /// Restores a state saved by [`Optimizer::state`] of an optimizer of the same kind over
    /// parameters of the same shapes.
    ///
    /// Errors: [`OptimError::State`] naming what does not fit (the kind, the parameter count,
    /// a slot, a shape); the optimizer is then unchanged.
    fn load_state(&mut self, state: &OptimizerState) -> Result<()>;

    /// Clears every parameter's gradient.
    fn zero_grad(&self) {
        for p in self.params() {
            p.zero_grad();
        }
    }
}

/// Checks that `value` is finite and within `[min, max)` (or `[min, max]` when `inclusive`).
fn check(
    optimizer: &'static str,
    name: &'static str,
    value: f64,
    min: f64,
    max: f64,
    inclusive: bool,
) -> Result<()> {
    let ok = value.is_finite() && value >= min && (value < max || (inclusive && value == max));
    if ok {
        Ok(())
    } else {
        let reason = match (inclusive, max.is_finite()) {
            (_, false) => {
                "must be finite and at least its minimum (learning rates and decays are >= 0)"
            }
            (true, true) => "must lie in its closed range",
            (false, true) => "must lie in its half-open range",
        };
        Err(OptimError::Config {
            optimizer,
            name,
            value,
            reason,
        })
    }
}
