//! The one error type of `norma-tensor`: every variant names the operation and the shapes involved.

use thiserror::Error;

/// A tensor operation was given inputs it cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TensorError {
    /// The number of values does not match the requested shape.
    #[error("{op}: {len} values do not fill shape {shape:?} ({expected} elements)")]
    DataLength {
        op: &'static str,
        shape: Vec<usize>,
        len: usize,
        expected: usize,
    },
    /// Two shapes cannot be broadcast together (numpy rules: trailing axes equal or 1).
    #[error("{op}: shapes {lhs:?} and {rhs:?} cannot be broadcast together")]
    Broadcast {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    /// A shape does not fit the operation (wrong rank, mismatched inner dimensions, ...).
    #[error("{op}: {reason} (got shapes {shapes:?})")]
    Shape {
        op: &'static str,
        reason: String,
        shapes: Vec<Vec<usize>>,
    },
    /// An axis index is out of range, repeated, or not a permutation.
    #[error("{op}: invalid axes {axes:?} for a tensor of shape {shape:?}")]
    Axes {
        op: &'static str,
        axes: Vec<usize>,
        shape: Vec<usize>,
    },
    /// A class label is not smaller than the number of classes.
    #[error("{op}: label {label} at row {row} is out of range for {classes} classes")]
    Label {
        op: &'static str,
        label: usize,
        row: usize,
        classes: usize,
    },
    /// A hyper-parameter of an operation (kernel size, stride, ...) is unusable.
    #[error("{op}: {reason}")]
    Argument { op: &'static str, reason: String },
}

impl TensorError {
    /// Shorthand for [`TensorError::Shape`].
    pub fn shape(op: &'static str, reason: impl Into<String>, shapes: &[&[usize]]) -> Self {
        TensorError::Shape {
            op,
            reason: reason.into(),
            shapes: shapes.iter().map(|s| s.to_vec()).collect(),
        }
    }
}

/// Result of a tensor operation.
pub type Result<T> = std::result::Result<T, TensorError>;
