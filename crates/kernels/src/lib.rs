//! # norma-kernels
//!
//! Batch-normalization kernels, isolated from the rest of norma (they depend on `ndarray` and
//! `rayon` only), for inputs of shape (N, C), (N, C, L) or contiguous (N, C, H, W):
//!
//! | kernel | computes |
//! | --- | --- |
//! | [`forward_train`] | per-channel batch mean and biased variance, `y = γ·(x − mean)/sqrt(var + eps) + β` |
//! | [`forward_eval`] | `y = (x − running_mean)·γ/sqrt(running_var + eps) + β` |
//! | [`backward_train`] | closed-form dx, dγ, dβ |
//! | [`backward_eval`] | dx, dγ, dβ with fixed statistics |
//! | [`update_running_stats`] | PyTorch's momentum (or cumulative) update, unbiased variance |
//! | [`eval_scale_shift`] | the eval-mode affine map, for folding batch norm into a layer |
//!
//! **Split across processes.** Each training kernel is a reduction followed by an elementwise
//! pass, and the reductions are exposed so that a batch spread over several processes
//! (synchronized batch norm) can add them up in between: [`partial_sums`] →
//! all-reduce [`PartialSums::to_flat`] → [`PartialSums::finish`] → [`normalize`] for the
//! forward, and [`grad_sums`] → all-reduce [`GradSums::to_flat`] → [`backward_from_sums`]
//! for the backward. [`forward_train`] and [`backward_train`] are exactly these steps on one
//! process.
//!
//! **Parallel and deterministic.** Work is split over rayon by channel and, within a channel,
//! by fixed runs of planes (or rows), with partial sums combined in a fixed order: results are
//! bitwise identical for any number of threads.
//!
//! **Fast on any x86-64.** The loops are compiled for SSE2, AVX2 and AVX-512 and the widest
//! the CPU supports is chosen when they run ([`SimdLevel`]); all three give the same bits.
//!
//! **Stable and exact in f32.** Statistics are accumulated in f64 around a per-channel shift,
//! so inputs with a large mean (1e4 + N(0, 1)) still normalize to unit variance, a constant
//! channel produces exactly β, and the gradient stays exact where its terms cancel.
//!
//! ```
//! use ndarray::{ArrayD, IxDyn};
//! let x = ArrayD::from_shape_vec(IxDyn(&[4, 1]), vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
//! let out = norma_kernels::forward_train(x.view(), None, None, 0.0)?;
//! assert_eq!(out.stats.mean(), &[2.5]);
//! assert_eq!(out.stats.var(), &[1.25]);
//! # Ok::<(), norma_kernels::KernelError>(())
//! ```

mod backward;
mod error;
mod forward;
mod group_norm;
mod layout;
mod running;
mod stats;
mod sums;

pub use backward::{
    backward_eval, backward_from_sums, backward_train, grad_sums, GradSums, Gradients,
};
pub use error::KernelError;
pub use forward::{eval_scale_shift, forward_eval, forward_train, normalize, TrainForward};
pub use group_norm::{
    group_norm_backward, group_norm_forward, layer_norm_backward, layer_norm_forward, GroupStats,
    NormForward,
};
pub use norma_simd::SimdLevel;
pub use running::update_running_stats;
pub use stats::{partial_sums, BatchStats, PartialSums};

use layout::BnShape;
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
fn check_channels<T>(
    shape: BnShape,
    name: &'static str,
    v: Option<&[T]>,
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
