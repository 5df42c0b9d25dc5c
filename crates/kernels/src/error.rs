//! The kernels' error type (written by hand: this crate depends on ndarray, rayon and norma-simd
//! only).

use std::fmt;

/// Why a normalization kernel refused its inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelError {
    /// The input does not have a shape the kernel takes.
    UnsupportedShape { shape: Vec<usize> },
    /// The input is not contiguous in row-major order.
    NotContiguous { shape: Vec<usize> },
    /// Training statistics need at least two values per channel; this input has one.
    SingleValuePerChannel { shape: Vec<usize> },
    /// Statistics were to be finished from fewer than two values per channel (for example a
    /// batch split over processes whose shards add up to one value per channel).
    TooFewValues { count: usize },
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
    /// A statistic that cannot be used: a negative or non-finite variance, a non-finite mean.
    InvalidStatistic {
        name: &'static str,
        channel: usize,
        value: f64,
    },
    /// A group count that does not split the channels.
    Groups { channels: usize, groups: usize },
    /// A layer-norm shape that is not the trailing dimensions of the input.
    NormalizedShape {
        shape: Vec<usize>,
        normalized_shape: Vec<usize>,
    },
    /// A scalar argument out of its range.
    Argument { name: &'static str, reason: String },
}

impl KernelError {
    /// Whether the error says that training overflowed rather than that an input or argument
    /// was wrong: batch statistics computed from the input came out infinite or NaN (the input
    /// held huge or non-finite values, as after a step with far too large a learning rate).
    pub fn is_overflow(&self) -> bool {
        matches!(
            self,
            KernelError::InvalidStatistic { name: "batch statistics", value, .. } if !value.is_finite()
        )
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::UnsupportedShape { shape } => write!(
                f,
                "expected an input of shape (N, C), (N, C, L) or (N, C, H, W), got {shape:?}"
            ),
            KernelError::NotContiguous { shape } => {
                write!(f, "expected a contiguous row-major input, got a strided view of shape {shape:?}")
            }
            KernelError::SingleValuePerChannel { shape } => write!(
                f,
                "batch norm in training mode needs more than 1 value per channel to compute batch statistics, \
                 got input of shape {shape:?}; use a batch of at least 2, or eval mode"
            ),
            KernelError::TooFewValues { count } => write!(
                f,
                "batch statistics were to be finished from {count} value(s) per channel (summed over every shard of the batch), \
                 but a variance needs at least 2"
            ),
            KernelError::ChannelLength { name, expected, got } => {
                write!(f, "{name} has {got} values but {expected} are needed (one per channel)")
            }
            KernelError::ShapeMismatch { name, expected, got } => {
                write!(f, "{name} has shape {got:?}, expected {expected:?}")
            }
            KernelError::InvalidStatistic { name, channel, value } => {
                write!(f, "{name} of channel {channel} is {value}: a variance must be finite and non-negative, a mean finite")
            }
            KernelError::Groups { channels, groups } => write!(
                f,
                "{channels} channels cannot be split into {groups} groups: the number of groups must be positive and divide the channels"
            ),
            KernelError::NormalizedShape { shape, normalized_shape } => write!(
                f,
                "normalized_shape {normalized_shape:?} must be the trailing dimensions of the input (non-empty, no zero), got input of shape {shape:?}"
            ),
            KernelError::Argument { name, reason } => write!(f, "{name} {reason}"),
        }
    }
}

impl std::error::Error for KernelError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two "too few values" errors say different things: one names the input whose shape
    /// leaves one value per channel, the other the count of values the statistics were to be
    /// finished from (after shards were added up).
    #[test]
    fn too_few_values_errors_say_what_was_too_small() {
        let single = KernelError::SingleValuePerChannel { shape: vec![1, 6] }.to_string();
        let few = KernelError::TooFewValues { count: 1 }.to_string();
        assert_ne!(single, few);
        assert!(single.contains("more than 1 value per channel") && single.contains("[1, 6]"));
        assert!(single.contains("use a batch of at least 2, or eval mode"));
        assert_eq!(
            few,
            "batch statistics were to be finished from 1 value(s) per channel (summed over every \
             shard of the batch), but a variance needs at least 2"
        );
    }
}
