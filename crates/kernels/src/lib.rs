//! # norma-kernels
//!
//! Normalization kernels, isolated from the rest of norma (they depend on `ndarray`, `rayon` and
//! the SIMD floor `norma-simd` only). Batch norm, for inputs of shape (N, C), (N, C, L) or
//! contiguous (N, C, H, W) (`src/batch_norm/`):
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
//! Group, layer and RMS norm ([`group_norm_forward`], [`layer_norm_forward`],
//! [`rms_norm_forward`] and their backward passes, `src/group_norm/`) run on the same piece
//! driver (`src/layout.rs`), the same sums (`src/sums.rs`) and the same precision devices
//! (`src/precision.rs`). Every input is checked once, at the public function, by
//! `src/check.rs`.
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

mod batch_norm;
mod check;
mod error;
mod group_norm;
mod layout;
mod precision;
mod sums;

pub use batch_norm::{
    backward_eval, backward_from_sums, backward_train, eval_scale_shift, forward_eval,
    forward_train, grad_sums, normalize, partial_sums, update_running_stats, BatchStats, GradSums,
    PartialSums, TrainForward,
};
pub use error::KernelError;
pub use group_norm::{
    group_norm_backward, group_norm_forward, layer_norm_backward, layer_norm_forward,
    rms_norm_backward, rms_norm_forward, GroupStats, NormForward,
};
pub use norma_simd::SimdLevel;

use ndarray::ArrayD;

/// Gradients of a normalization (batch, group or layer norm) with respect to its input and
/// affine parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients {
    /// ∂L/∂x, shaped like the input.
    pub dx: ArrayD<f32>,
    /// ∂L/∂γ per channel (per element for layer norm).
    pub dgamma: Vec<f32>,
    /// ∂L/∂β per channel (per element for layer norm).
    pub dbeta: Vec<f32>,
}
