//! Errors of the autograd engine.

use norma_tensor::TensorError;
use thiserror::Error;

/// What went wrong while recording or differentiating a graph.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AutogradError {
    /// A tensor operation rejected its inputs.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// `backward()` was called on a value that is not a scalar.
    #[error("backward() needs a scalar (one-element) output, got shape {shape:?}")]
    NotScalar { shape: Vec<usize> },
    /// An operation's backward returned the wrong number of gradients.
    #[error("{op}: backward returned {got} gradients for {expected} inputs")]
    GradientCount {
        op: &'static str,
        expected: usize,
        got: usize,
    },
    /// An operation's backward returned a gradient whose shape differs from its input's.
    #[error(
        "{op}: gradient for input {input} has shape {got:?}, but the input has shape {expected:?}"
    )]
    GradientShape {
        op: &'static str,
        input: usize,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A parameter was given a value of the wrong shape.
    #[error("parameter has shape {expected:?}; cannot set a value of shape {got:?}")]
    ParamShape {
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// An operation added through the extension point failed for its own reasons.
    #[error("{op}: {reason}")]
    Op { op: &'static str, reason: String },
}

/// Result of an autograd operation.
pub type Result<T> = std::result::Result<T, AutogradError>;
