//! The error type of `norma-layers`.

use norma_autograd::AutogradError;
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
    /// A batch-norm kernel refused its input (for example one value per channel in training).
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The autograd engine or a tensor operation failed.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
}

impl From<TensorError> for LayerError {
    fn from(e: TensorError) -> Self {
        LayerError::Autograd(e.into())
    }
}

/// Result of a layer operation.
pub type Result<T> = std::result::Result<T, LayerError>;
