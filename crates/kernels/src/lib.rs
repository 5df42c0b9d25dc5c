//! # norma-kernels
//!
//! Batch-normalization kernels, isolated from the rest of norma (they depend on `ndarray` and
//! `rayon` only), for inputs of shape (N, C), (N, C, L) or contiguous (N, C, H, W):
//!
//! | kernel | computes |
//! | --- | --- |
//! | [`forward_train`] | per-channel batch mean and biased variance, `y = γ·(x − mean)/sqrt(var + eps) + β` |
//! | [`forward_eval`] | `y = x·scale + shift` with the running statistics folded into scale and shift |
//! | [`backward_train`] | closed-form dx, dγ, dβ |
//! | [`backward_eval`] | dx, dγ, dβ with fixed statistics |
//! | [`update_running_stats`] | PyTorch's momentum (or cumulative) update, unbiased variance |
//!
//! **Parallel and deterministic.** Work is split over rayon by channel and, within a channel,
//! by fixed runs of planes (or rows), with partial sums combined in a fixed order: results are
//! bitwise identical for any number of threads. See `layout.rs`.
//!
//! **Stable in f32.** Statistics are accumulated in f64 around a per-channel shift, so inputs
//! with a large mean (1e4 + N(0, 1)) still normalize to unit variance, and a constant channel
//! produces exactly β.
//!
//! ```
//! use ndarray::{ArrayD, IxDyn};
//! let x = ArrayD::from_shape_vec(IxDyn(&[4, 1]), vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
//! let out = norma_kernels::forward_train(x.view(), None, None, 0.0)?;
//! assert_eq!(out.stats.mean, vec![2.5]);
//! assert_eq!(out.stats.var, vec![1.25]);
//! # Ok::<(), norma_kernels::KernelError>(())
//! ```

mod backward;
mod error;
mod forward;
pub mod layout;
mod running;
pub mod sums;

pub use backward::{backward_eval, backward_train, Gradients};
pub use error::KernelError;
pub use forward::{eval_scale_shift, forward_eval, forward_train, BatchStats, TrainForward};
pub use layout::BnShape;
pub use running::update_running_stats;

use ndarray::ArrayViewD;

/// The input's (N, C, S) shape and its values, if it is contiguous row-major.
fn contiguous<'a>(x: &'a ArrayViewD<'_, f32>) -> Result<(BnShape, &'a [f32]), KernelError> {
    let shape = BnShape::from_dims(x.shape())?;
    let data = x.as_slice().ok_or_else(|| KernelError::NotContiguous {
        shape: x.shape().to_vec(),
    })?;
    Ok((shape, data))
}

/// Checks that an optional per-channel vector has one value per channel.
fn check_channels(
    shape: BnShape,
    name: &'static str,
    v: Option<&[f32]>,
) -> Result<(), KernelError> {
    match v {
        Some(v) if v.len() != shape.channels => Err(KernelError::ChannelLength {
            name,
            expected: shape.channels,
            got: v.len(),
        }),
        _ => Ok(()),
    }
}
