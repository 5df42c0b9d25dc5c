//! The kernels' error type (written by hand: this crate depends on ndarray and rayon only).

use std::fmt;

/// Why a batch-norm kernel refused its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// The input is not (N, C), (N, C, L) or (N, C, H, W).
    UnsupportedShape { shape: Vec<usize> },
    /// The input is not contiguous in row-major order.
    NotContiguous { shape: Vec<usize> },
    /// Training statistics need at least two values per channel.
    SingleValuePerChannel { shape: Vec<usize> },
    /// A per-channel vector has the wrong length.
    ChannelLength {
        name: &'static str,
        expected: usize,
        got: usize,
    },
    /// Two tensors that must have one shape do not.
    ShapeMismatch {
        name: &'static str,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::UnsupportedShape { shape } => write!(
                f,
                "batch norm expects an input of shape (N, C), (N, C, L) or (N, C, H, W), got {shape:?}"
            ),
            KernelError::NotContiguous { shape } => {
                write!(f, "batch norm expects a contiguous row-major input, got a strided view of shape {shape:?}")
            }
            KernelError::SingleValuePerChannel { shape } => write!(
                f,
                "batch norm in training mode needs more than 1 value per channel to compute batch statistics, \
                 got input of shape {shape:?}; use a batch of at least 2, or eval mode"
            ),
            KernelError::ChannelLength { name, expected, got } => {
                write!(f, "batch norm: {name} has {got} values but the input has {expected} channels")
            }
            KernelError::ShapeMismatch { name, expected, got } => {
                write!(f, "batch norm: {name} has shape {got:?}, expected {expected:?}")
            }
        }
    }
}

impl std::error::Error for KernelError {}
