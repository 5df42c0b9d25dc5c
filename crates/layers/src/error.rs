//! The error type of `norma-layers`.

use norma_autograd::AutogradError;
use norma_distributed::CommError;
use norma_kernels::KernelError;
use norma_tensor::TensorError;
use thiserror::Error;

/// A layer was built with unusable settings or given an input it cannot take.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LayerError {
    /// An input of the wrong shape, named with what the layer expects.
    #[error("{layer}: expected input {expected}, got shape {got:?}")]
    Input {
        layer: String,
        expected: String,
        got: Vec<usize>,
    },
    /// A constructor argument that cannot work (zero sizes, probabilities outside [0, 1), ...).
    #[error("{layer}: {reason}")]
    Config { layer: String, reason: String },
    /// A depth the CIFAR ResNet family cannot have: `6n + 2` layers with n ≥ 1 blocks per stage
    /// (8, 14, 20, 32, 44, 56, 110, ...).
    #[error("{model}: depth {depth} is not 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...)")]
    Depth { model: &'static str, depth: usize },
    /// A normalization kernel refused its input (for example one value per channel in
    /// training), in the forward or the backward pass.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A buffer was given a value of another shape.
    #[error("buffer has shape {expected:?}; cannot set a value of shape {got:?}")]
    BufferShape {
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A synchronized layer could not communicate, or another process failed at the same step
    /// (in the forward or the backward pass).
    #[error(transparent)]
    Distributed(#[from] CommError),
    /// The autograd engine or a tensor operation failed.
    #[error(transparent)]
    Autograd(AutogradError),
}

impl LayerError {
    /// Whether the error says that training overflowed (see [`KernelError::is_overflow`]):
    /// the training loop's divergence rule, not a bug or a bad input.
    pub fn is_overflow(&self) -> bool {
        matches!(self, LayerError::Kernel(k) if k.is_overflow())
    }
}

/// Kernel and communication errors raised inside a backward pass travel through autograd
/// wrapped in an [`AutogradError::Op`]; they come out as [`LayerError::Kernel`] and
/// [`LayerError::Distributed`] again.
impl From<AutogradError> for LayerError {
    fn from(e: AutogradError) -> Self {
        if let AutogradError::Op { source, .. } = &e {
            if let Some(k) = source.downcast_ref::<KernelError>() {
                return LayerError::Kernel(k.clone());
            }
            if let Some(c) = source.downcast_ref::<CommError>() {
                return LayerError::Distributed(c.clone());
            }
        }
        LayerError::Autograd(e)
    }
}

impl From<TensorError> for LayerError {
    fn from(e: TensorError) -> Self {
        LayerError::Autograd(e.into())
    }
}

/// Result of a layer operation.
pub type Result<T> = std::result::Result<T, LayerError>;
