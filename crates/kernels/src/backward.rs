//! Backward kernels: the closed-form gradient of batch norm.
//!
//! Training mode, per channel, with x̂ = (x − mean)·inv_std and M values:
//!
//! ```text
//! dβ = Σ dy
//! dγ = Σ dy·x̂
//! dx = γ·inv_std · (dy − mean(dy) − x̂·mean(dy·x̂))
//! ```
//!
//! (the mean and variance depend on every x, which is where the two subtracted terms come
//! from). One pass computes Σdy and Σdy·(x − mean) in f64, a second writes dx.
//!
//! Evaluation mode uses fixed running statistics, so dx = dy·γ/sqrt(running_var + eps).

use ndarray::{ArrayD, ArrayViewD};

use crate::forward::{eval_scale_shift, inv_std, BatchStats};
use crate::layout::{fill_output, reduce_then_map, BnShape};
use crate::sums::GradSums;
use crate::{check_channels, contiguous, KernelError};

/// Gradients of batch norm with respect to its input and affine parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients {
    /// ∂L/∂x, shaped like the input.
    pub dx: ArrayD<f32>,
    /// ∂L/∂γ per channel.
    pub dgamma: Vec<f32>,
    /// ∂L/∂β per channel.
    pub dbeta: Vec<f32>,
}

fn check_pair<'a>(
    x: &'a ArrayViewD<'_, f32>,
    dy: &'a ArrayViewD<'_, f32>,
) -> Result<(BnShape, &'a [f32], &'a [f32]), KernelError> {
    if x.shape() != dy.shape() {
        return Err(KernelError::ShapeMismatch {
            name: "output gradient",
            expected: x.shape().to_vec(),
            got: dy.shape().to_vec(),
        });
    }
    let (shape, xs) = contiguous(x)?;
    let (_, dys) = contiguous(dy)?;
    Ok((shape, xs, dys))
}

/// Training-mode gradient (see the module docs), given the forward input `x`, the output
/// gradient `dy`, the forward's [`BatchStats`] and γ (`None` means 1).
pub fn backward_train(
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    stats: &BatchStats,
    gamma: Option<&[f32]>,
) -> Result<Gradients, KernelError> {
    let (shape, xs, dys) = check_pair(&x, &dy)?;
    check_channels(shape, "mean", Some(&stats.mean))?;
    check_channels(shape, "mean_residual", Some(&stats.mean_residual))?;
    check_channels(shape, "inv_std", Some(&stats.inv_std))?;
    check_channels(shape, "gamma", gamma)?;
    let m = shape.per_channel() as f64;
    let mut dgamma = Vec::with_capacity(shape.channels);
    let mut dbeta = Vec::with_capacity(shape.channels);
    let dx = fill_output(x.raw_dim(), |dxs| {
        let constants = |ch: usize, [sum_dy, dot]: [f64; 2]| {
            let inv_std = stats.inv_std[ch] as f64;
            let g = gamma.map_or(1.0, |g| g[ch] as f64);
            dbeta.push(sum_dy as f32);
            dgamma.push((dot * inv_std) as f32);
            // dx = a·(dy − mean_dy − (x − mean)·k) with k = inv_std²·Σdy(x − mean)/M.
            let a = g * inv_std;
            let k = inv_std * inv_std * dot / m;
            let mean = (stats.mean[ch], stats.mean_residual[ch]);
            [mean.0, mean.1, a as f32, (sum_dy / m) as f32, k as f32]
        };
        reduce_then_map(
            shape,
            xs,
            dys,
            &stats.mean,
            &GradSums,
            dxs,
            constants,
            |x, dy, k| k[2] * (dy - k[3] - ((x - k[0]) - k[1]) * k[4]),
        )
    });
    Ok(Gradients { dx, dgamma, dbeta })
}

/// Evaluation-mode gradient: with fixed statistics, dx = dy·γ·inv_std, dγ = Σdy·x̂, dβ = Σdy,
/// where inv_std = 1/sqrt(running_var + eps) and x̂ = (x − running_mean)·inv_std.
pub fn backward_eval(
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    running_mean: &[f32],
    running_var: &[f32],
    gamma: Option<&[f32]>,
    eps: f32,
) -> Result<Gradients, KernelError> {
    let (shape, xs, dys) = check_pair(&x, &dy)?;
    check_channels(shape, "running_mean", Some(running_mean))?;
    check_channels(shape, "running_var", Some(running_var))?;
    check_channels(shape, "gamma", gamma)?;
    let scale_shift = eval_scale_shift(running_mean, running_var, gamma, None, eps);
    let mut dgamma = Vec::with_capacity(shape.channels);
    let mut dbeta = Vec::with_capacity(shape.channels);
    let dx = fill_output(x.raw_dim(), |dxs| {
        let constants = |ch: usize, [sum_dy, dot]: [f64; 2]| {
            dbeta.push(sum_dy as f32);
            dgamma.push((dot * inv_std(running_var[ch] as f64, eps)) as f32);
            [scale_shift[ch].0]
        };
        reduce_then_map(
            shape,
            xs,
            dys,
            running_mean,
            &GradSums,
            dxs,
            constants,
            |_, dy, k| dy * k[0],
        )
    });
    Ok(Gradients { dx, dgamma, dbeta })
}
