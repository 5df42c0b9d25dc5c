//! Group normalization (Wu & He, 2018), and layer normalization through it.
//!
//! For an input (N, C, ...) with S positions per channel, split into G groups of C/G channels,
//! each (sample, group) is normalized over its M = (C/G)·S values and then scaled and shifted
//! per channel:
//!
//! ```text
//! y = γ_c · (x − μ_{n,g}) / sqrt(σ²_{n,g} + eps) + β_c        μ, σ²: mean, biased variance
//! ```
//!
//! G = 1 is layer norm over (C, ...) with a per-channel affine, G = C instance norm. RMS norm
//! ([`rms_norm_forward`]) is layer norm's computation without the centring: mean 0, and the
//! mean square in place of the variance. Layer norm
//! over the last dimensions with an element-wise affine (PyTorch's `nn.LayerNorm`) is the same
//! computation on the input seen as (N', D, 1) with G = 1: every row of D values is one group
//! and every element its own "channel" ([`layer_norm_forward`]).
//!
//! There are no running statistics: training and evaluation compute the same thing, a batch of
//! one is fine, and a sample's output never depends on the other samples of the batch.
//!
//! `forward.rs` holds the forward pass, `backward.rs` the gradient (its formula is there).
//!
//! The guarantees are those of the batch-norm kernels: statistics in f64 around a shift (a
//! value of the group), so inputs with a large mean keep their precision and a constant group
//! gives exactly β; dx evaluated in f64 when its terms cancel (`precision::cancels`); fixed work
//! pieces (`layout::fill`), so results are bitwise identical for any number of threads, and at
//! every SIMD level.

mod backward;
mod forward;

use ndarray::{ArrayD, ArrayViewD};

use crate::precision::inv_std;
use crate::{check, Gradients, KernelError};

/// Per-(sample, group) statistics of a group-norm forward pass, sample-major (sample n's G
/// groups at `n·G ..`).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStats {
    groups: usize,
    count: usize,
    mean: Vec<f64>,
    var: Vec<f64>,
    eps: f32,
    /// False for RMS norm: the mean is 0 and `var` the mean square.
    centred: bool,
}

impl GroupStats {
    /// Groups per sample G.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// M: values per group.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Mean per (sample, group), in f64 (0 for RMS norm).
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Biased variance per (sample, group), in f64 (the mean square for RMS norm).
    pub fn var(&self) -> &[f64] {
        &self.var
    }

    /// The eps added to the variance.
    pub fn eps(&self) -> f32 {
        self.eps
    }

    pub(crate) fn inv_std(&self, i: usize) -> f64 {
        inv_std(self.var[i], self.eps)
    }
}

/// Output and statistics of a group-norm or layer-norm forward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct NormForward {
    pub output: ArrayD<f32>,
    pub stats: GroupStats,
}

/// The input as N samples of C channels with S positions each, in G groups.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupShape {
    pub batch: usize,
    pub channels: usize,
    pub spatial: usize,
    pub groups: usize,
}

impl GroupShape {
    /// Channels per group, C/G.
    pub fn channels_per_group(&self) -> usize {
        self.channels / self.groups
    }

    /// M: values per group, (C/G)·S.
    pub fn group_len(&self) -> usize {
        self.channels_per_group() * self.spatial
    }
}

/// Group normalization of `x` (N, C, ...), contiguous, with `num_groups` groups and an optional
/// per-channel affine (`gamma`, `beta` of C values; `None` means 1 and 0). See the module docs.
///
/// Errors: an input of rank below 2, with no channel or no position, not contiguous; a group
/// count that is 0 or does not divide C; affine vectors of the wrong length; a bad eps.
pub fn group_norm_forward(
    x: ArrayViewD<'_, f32>,
    num_groups: usize,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> Result<NormForward, KernelError> {
    let shape = check::group_shape(x.shape(), num_groups)?;
    checked_forward(shape, x, gamma, beta, eps, true)
}

/// Layer normalization over the trailing dimensions `normalized_shape` of `x` (PyTorch's
/// `nn.LayerNorm(normalized_shape)`): each slice of D = ∏ normalized_shape values is normalized
/// by its own mean and variance, then scaled and shifted element-wise by `gamma` and `beta` (D
/// values each, laid out as `normalized_shape`; `None` means 1 and 0).
///
/// Errors: `normalized_shape` empty, with a zero, or not the trailing dimensions of `x`; affine
/// vectors of the wrong length; a non-contiguous input; a bad eps.
pub fn layer_norm_forward(
    x: ArrayViewD<'_, f32>,
    normalized_shape: &[usize],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> Result<NormForward, KernelError> {
    let shape = check::layer_shape(x.shape(), normalized_shape)?;
    checked_forward(shape, x, gamma, beta, eps, true)
}

/// RMS normalization over the trailing dimensions `normalized_shape` of `x` (PyTorch's
/// `nn.RMSNorm(normalized_shape)`): each slice of D = ∏ normalized_shape values is divided by
/// its root mean square, then scaled element-wise by `gamma` (D values; `None` means 1):
/// `y = γ ⊙ x / sqrt(mean(x²) + eps)`. The statistics ([`GroupStats`]) hold mean 0 and the
/// mean square in place of the variance, in f64 (sums around 0: no shift is needed, the
/// statistic is not a difference).
///
/// Errors: as [`layer_norm_forward`].
pub fn rms_norm_forward(
    x: ArrayViewD<'_, f32>,
    normalized_shape: &[usize],
    gamma: Option<&[f32]>,
    eps: f32,
) -> Result<NormForward, KernelError> {
    let shape = check::layer_shape(x.shape(), normalized_shape)?;
    checked_forward(shape, x, gamma, None, eps, false)
}

/// The gradient of [`rms_norm_forward`]: dx and dγ (D values; dβ is Σdy, what a bias would
/// get), with x̂ = x/sqrt(mean(x²) + eps) and g = γ·dy:
/// `dx = (g − x̂·mean(g·x̂))/sqrt(mean(x²) + eps)`.
pub fn rms_norm_backward(
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    normalized_shape: &[usize],
    stats: &GroupStats,
    gamma: Option<&[f32]>,
) -> Result<Gradients, KernelError> {
    layer_norm_backward(x, dy, normalized_shape, stats, gamma)
}

/// The gradient of [`group_norm_forward`]: dx, and dγ, dβ per channel (computed even without an
/// affine, where they are the gradients an affine would get).
pub fn group_norm_backward(
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    stats: &GroupStats,
    gamma: Option<&[f32]>,
) -> Result<Gradients, KernelError> {
    let shape = check::group_shape(x.shape(), stats.groups)?;
    checked_backward(shape, x, dy, stats, gamma)
}

/// The gradient of [`layer_norm_forward`]: dx, and dγ, dβ of D values.
pub fn layer_norm_backward(
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    normalized_shape: &[usize],
    stats: &GroupStats,
    gamma: Option<&[f32]>,
) -> Result<Gradients, KernelError> {
    let shape = check::layer_shape(x.shape(), normalized_shape)?;
    checked_backward(shape, x, dy, stats, gamma)
}

/// The checks every forward pass shares after its shape, then the forward pass (`centred`:
/// group and layer norm; not: RMS norm).
fn checked_forward(
    shape: GroupShape,
    x: ArrayViewD<'_, f32>,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
    centred: bool,
) -> Result<NormForward, KernelError> {
    let xs = check::contiguous(&x)?;
    check::length(shape.channels, "gamma", gamma)?;
    check::length(shape.channels, "beta", beta)?;
    check::eps(eps)?;
    Ok(forward::forward(
        shape,
        x.raw_dim(),
        xs,
        gamma,
        beta,
        eps,
        centred,
    ))
}

/// The checks both backward passes share after their shape, then the backward pass.
fn checked_backward(
    shape: GroupShape,
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    stats: &GroupStats,
    gamma: Option<&[f32]>,
) -> Result<Gradients, KernelError> {
    let (xs, dys) = check::with_gradient(&x, &dy)?;
    check::length(shape.channels, "gamma", gamma)?;
    check::group_stats(shape, stats.groups, stats.count, stats.mean.len())?;
    Ok(backward::backward(
        shape,
        x.raw_dim(),
        xs,
        dys,
        stats,
        gamma,
    ))
}

/// γ, or ones when there is none.
fn gamma_or_ones(c: usize, gamma: Option<&[f32]>) -> std::borrow::Cow<'_, [f32]> {
    gamma.map_or_else(|| vec![1.0; c].into(), Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn small_example_by_hand() {
        // One sample, 2 channels of 2 positions, 1 group: values 1, 3 | 5, 7 → mean 4, var 5.
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 2, 2]), vec![1.0f32, 3.0, 5.0, 7.0]).unwrap();
        let out =
            group_norm_forward(x.view(), 1, Some(&[1.0, 2.0]), Some(&[0.0, 1.0]), 0.0).unwrap();
        assert_eq!(out.stats.mean(), &[4.0]);
        assert_eq!(out.stats.var(), &[5.0]);
        let s = 5.0f32.sqrt();
        let want = [-3.0 / s, -1.0 / s, 2.0 / s + 1.0, 6.0 / s + 1.0];
        for (g, w) in out.output.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    #[test]
    fn rms_norm_by_hand() {
        // Rows [3, 4] (mean square 12.5) and [0, 2] (2), eps 0, γ = [1, 2].
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![3.0f32, 4.0, 0.0, 2.0]).unwrap();
        let out = rms_norm_forward(x.view(), &[2], Some(&[1.0, 2.0]), 0.0).unwrap();
        assert_eq!(out.stats.mean(), &[0.0, 0.0]);
        assert_eq!(out.stats.var(), &[12.5, 2.0]);
        let r = 12.5f32.sqrt();
        let want = [3.0 / r, 8.0 / r, 0.0, 4.0 / 2.0f32.sqrt()];
        for (g, w) in out.output.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        // dy = 1 on the second row only: dx = (g − x̂·mean(g·x̂))·inv with g = γ, x̂ = [0, √2].
        let dy = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![0.0f32, 0.0, 1.0, 1.0]).unwrap();
        let g =
            rms_norm_backward(x.view(), dy.view(), &[2], &out.stats, Some(&[1.0, 2.0])).unwrap();
        let (inv, xh) = (1.0 / 2.0f64.sqrt(), [0.0, 2.0f64.sqrt()]);
        let mean_gx = (1.0 * xh[0] + 2.0 * xh[1]) / 2.0;
        let want = [(1.0 - xh[0] * mean_gx) * inv, (2.0 - xh[1] * mean_gx) * inv];
        for (got, w) in g.dx.iter().skip(2).zip(want) {
            assert!((*got as f64 - w).abs() < 1e-6, "{got} vs {w}");
        }
        assert_eq!(&g.dx.as_slice().unwrap()[..2], &[0.0, 0.0]);
    }

    #[test]
    fn bad_groups_and_shapes_are_errors() {
        let x = ArrayD::<f32>::zeros(IxDyn(&[2, 6, 3]));
        for groups in [0, 4, 7] {
            let err = group_norm_forward(x.view(), groups, None, None, 1e-5).unwrap_err();
            assert_eq!(
                err,
                KernelError::Groups {
                    channels: 6,
                    groups
                }
            );
        }
        let flat = ArrayD::<f32>::zeros(IxDyn(&[6]));
        assert!(group_norm_forward(flat.view(), 1, None, None, 1e-5).is_err());
        assert!(layer_norm_forward(x.view(), &[6], None, None, 1e-5).is_err());
        assert!(layer_norm_forward(x.view(), &[], None, None, 1e-5).is_err());
        assert!(layer_norm_forward(x.view(), &[6, 3], Some(&[1.0; 3]), None, 1e-5).is_err());
        let ok = layer_norm_forward(x.view(), &[6, 3], Some(&[1.0; 18]), None, 1e-5).unwrap();
        assert_eq!(ok.stats.mean().len(), 2);
    }
}
