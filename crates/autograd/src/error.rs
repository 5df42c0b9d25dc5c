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
    /// `backward_with()` was given an output gradient of another shape than the output.
    #[error(
        "backward_with(): the output has shape {output:?} but its gradient has shape {grad:?}"
    )]
    OutputGradShape {
        output: Vec<usize>,
        grad: Vec<usize>,
    },
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
    /// A parameter was updated from inside its own update.
    #[error("parameter is already being updated (Param::update called from inside an update of the same parameter)")]
    ParamBusy,
    /// An operation added through the extension point failed; `source` is its own error
    /// (downcast it to get the original type back).
    #[error("{op}: {source}")]
    Op { op: &'static str, source: OpError },
}

/// The error of an operation defined outside this crate, kept with its type (see
/// [`OpError::downcast_ref`]).
#[derive(Debug, Clone)]
pub struct OpError(std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl OpError {
    /// Wraps any error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        OpError(std::sync::Arc::new(error))
    }

    /// The original error, if it has type `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref::<E>()
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Two operation errors are equal when they say the same thing.
impl PartialEq for OpError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

/// Result of an autograd operation.
pub type Result<T> = std::result::Result<T, AutogradError>;
