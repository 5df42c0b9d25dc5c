//! Backward kernels: the closed-form gradient of batch norm.
//!
//! Training mode, per channel, with d = x − mean, x̂ = d·inv_std and M values:
//!
//! ```text
//! dβ = Σ dy
//! dγ = Σ dy·x̂
//! dx = γ·inv_std · (dy − mean(dy) − x̂·mean(dy·x̂))
//!    = γ·inv_std · (dy − Σdy/M − d·Σdy·d / (M·(var + eps)))
//! ```
//!
//! (the mean and variance depend on every x, which is where the two subtracted terms come
//! from). One pass computes Σdy, Σdy·d and Σdy² in f64 around the exact (f64) mean; a second
//! writes dx.
//!
//! **Exactness.** dx is a difference of terms of the size of dy that can nearly cancel: with
//! two values per channel it is (dy − mean(dy))·eps/(var + eps), whenever dy is close to a
//! linear function of x̂ (the gradient of Σy²/2, say) it is small next to dy, and so it is when
//! dy is nearly constant. Evaluated in f32, the rounding of the terms (~1e-7·|dy|) would then
//! dominate the result. From the three sums the kernel knows Σdy² and Σdx² before writing dx
//! (see `precision::cancels`); when they differ by more than a factor 256 it evaluates the map in
//! f64 instead, which keeps dx within about 1e-6 of its largest value relative to float64
//! arithmetic. Ordinary batches stay on the f32 path.
//!
//! Evaluation mode uses fixed running statistics, so dx = dy·γ/sqrt(running_var + eps).

use ndarray::{ArrayD, ArrayViewD};

use ndarray::IxDyn;
use norma_simd::SimdLevel;

use super::statistics::BatchStats;
use crate::layout::{channel_sums, map_channels, BnShape};
use crate::precision::{cancels, inv_std, split};
use crate::{check, sums, Gradients, KernelError};

/// The per-channel sums of the training backward pass: Σdy, Σdy·(x − mean) and Σdy², in f64.
/// Like [`crate::PartialSums`] they add across shards of a batch (all-reduce
/// [`GradSums::to_flat`] between [`grad_sums`] and [`backward_from_sums`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GradSums {
    sum_dy: Vec<f64>,
    sum_dy_xmu: Vec<f64>,
    sum_dy_sq: Vec<f64>,
}

impl GradSums {
    /// Σdy per channel.
    pub fn sum_dy(&self) -> &[f64] {
        &self.sum_dy
    }

    /// Σdy·(x − mean) per channel.
    pub fn sum_dy_xmu(&self) -> &[f64] {
        &self.sum_dy_xmu
    }

    /// ∂L/∂γ = Σdy·x̂ per channel, for the statistics `stats`.
    pub fn dgamma(&self, stats: &BatchStats) -> Vec<f32> {
        (0..self.sum_dy.len())
            .map(|ch| (self.sum_dy_xmu[ch] * stats.inv_std(ch)) as f32)
            .collect()
    }

    /// ∂L/∂β = Σdy per channel.
    pub fn dbeta(&self) -> Vec<f32> {
        self.sum_dy.iter().map(|&v| v as f32).collect()
    }

    /// `[Σdy (C values), Σdy·(x − mean) (C), Σdy² (C)]`, for an all-reduce that adds buffers.
    pub fn to_flat(&self) -> Vec<f64> {
        [&self.sum_dy[..], &self.sum_dy_xmu, &self.sum_dy_sq].concat()
    }

    /// Sums from a buffer laid out as [`GradSums::to_flat`] writes it, for `channels` channels.
    pub fn from_flat(channels: usize, flat: &[f64]) -> Result<Self, KernelError> {
        if flat.len() != 3 * channels {
            return Err(KernelError::ChannelLength {
                name: "flat gradient sums",
                expected: 3 * channels,
                got: flat.len(),
            });
        }
        let c = channels;
        Ok(GradSums {
            sum_dy: flat[..c].to_vec(),
            sum_dy_xmu: flat[c..2 * c].to_vec(),
            sum_dy_sq: flat[2 * c..].to_vec(),
        })
    }
}

/// The backward sums of one batch (or shard) for the forward's statistics.
pub fn grad_sums(
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    stats: &BatchStats,
) -> Result<GradSums, KernelError> {
    let (shape, xs, dys) = check::bn_with_gradient(&x, &dy)?;
    check::length(shape.channels, "mean", Some(stats.mean()))?;
    Ok(centred_sums(shape, xs, dys, stats))
}

/// [`grad_sums`] of checked inputs.
fn centred_sums(shape: BnShape, xs: &[f32], dys: &[f32], stats: &BatchStats) -> GradSums {
    let totals = channel_sums(
        SimdLevel::current(),
        shape,
        xs,
        dys,
        stats.mean(),
        sums::GradTerms,
    );
    GradSums {
        sum_dy: totals.iter().map(|t| t[0]).collect(),
        sum_dy_xmu: totals.iter().map(|t| t[1]).collect(),
        sum_dy_sq: totals.iter().map(|t| t[2]).collect(),
    }
}

/// Training-mode gradient (see the module docs), given the forward input `x`, the output
/// gradient `dy`, the forward's [`BatchStats`] and γ (`None` means 1).
pub fn backward_train(
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    stats: &BatchStats,
    gamma: Option<&[f32]>,
) -> Result<Gradients, KernelError> {
    let (shape, xs, dys) = check::bn_with_gradient(&x, &dy)?;
    check::length(shape.channels, "mean", Some(stats.mean()))?;
    check::length(shape.channels, "gamma", gamma)?;
    let sums = centred_sums(shape, xs, dys, stats);
    let dx = dx_from_sums(shape, x.raw_dim(), xs, dys, stats, &sums, gamma);
    Ok(Gradients {
        dx,
        dgamma: sums.dgamma(stats),
        dbeta: sums.dbeta(),
    })
}

fn needs_f64(stats: &BatchStats, sums: &GradSums, ch: usize) -> bool {
    cancels(
        stats.count() as f64,
        stats.var()[ch],
        stats.eps(),
        sums.sum_dy[ch],
        sums.sum_dy_xmu[ch],
        sums.sum_dy_sq[ch],
    )
}

/// dx of training mode from backward sums that may cover more than this shard (the all-reduced
/// sums of every process, with `stats` finished from the all-reduced [`crate::PartialSums`]).
pub fn backward_from_sums(
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    stats: &BatchStats,
    sums: &GradSums,
    gamma: Option<&[f32]>,
) -> Result<ArrayD<f32>, KernelError> {
    let (shape, xs, dys) = check::bn_with_gradient(&x, &dy)?;
    let c = shape.channels;
    check::length(c, "mean", Some(stats.mean()))?;
    check::length(c, "gamma", gamma)?;
    check::length(c, "gradient sums", Some(&sums.sum_dy))?;
    Ok(dx_from_sums(
        shape,
        x.raw_dim(),
        xs,
        dys,
        stats,
        sums,
        gamma,
    ))
}

/// [`backward_from_sums`] of checked inputs.
fn dx_from_sums(
    shape: BnShape,
    dims: IxDyn,
    xs: &[f32],
    dys: &[f32],
    stats: &BatchStats,
    sums: &GradSums,
    gamma: Option<&[f32]>,
) -> ArrayD<f32> {
    let c = shape.channels;
    let m = stats.count() as f64;
    // dx = a·(dy − mean_dy − d·k) with a = γ·inv_std and k = Σdy·d / (M·(var + eps)).
    let a: Vec<f64> = (0..c)
        .map(|ch| gamma.map_or(1.0, |g| g[ch] as f64) * stats.inv_std(ch))
        .collect();
    let mean_dy: Vec<f64> = sums.sum_dy.iter().map(|s| s / m).collect();
    let k: Vec<f64> = (0..c)
        .map(|ch| {
            let i = stats.inv_std(ch);
            sums.sum_dy_xmu[ch] * i * i / m
        })
        .collect();
    let level = SimdLevel::current();
    if (0..c).any(|ch| needs_f64(stats, sums, ch)) {
        return map_channels(
            level,
            shape,
            dims,
            xs,
            dys,
            [stats.mean(), &a, &mean_dy, &k],
            |x, dy, [mean, a, mean_dy, k]| {
                (a * ((dy as f64 - mean_dy) - (x as f64 - mean) * k)) as f32
            },
        );
    }
    let to_f32 = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let (mean, residual): (Vec<f32>, Vec<f32>) = stats.mean().iter().map(|&m| split(m)).unzip();
    // x − mean is exact in f32 near the mean; the residual corrects for the mean's rounding.
    map_channels(
        level,
        shape,
        dims,
        xs,
        dys,
        [
            &mean,
            &residual,
            &to_f32(&a),
            &to_f32(&mean_dy),
            &to_f32(&k),
        ],
        |x, dy, [mean, r, a, mean_dy, k]| a * (dy - mean_dy - ((x - mean) - r) * k),
    )
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
    let (shape, xs, dys) = check::bn_with_gradient(&x, &dy)?;
    let c = shape.channels;
    check::running(c, running_mean, running_var, eps)?;
    check::length(c, "gamma", gamma)?;
    let centre: Vec<f64> = running_mean.iter().map(|&m| m as f64).collect();
    let level = SimdLevel::current();
    let totals = channel_sums(level, shape, xs, dys, &centre, sums::GradTerms);
    let inv: Vec<f64> = running_var
        .iter()
        .map(|&v| inv_std(v as f64, eps))
        .collect();
    let scale: Vec<f32> = (0..c)
        .map(|ch| (gamma.map_or(1.0, |g| g[ch] as f64) * inv[ch]) as f32)
        .collect();
    let dx = map_channels(
        level,
        shape,
        x.raw_dim(),
        xs,
        dys,
        [&scale],
        |_, dy, [a]| dy * a,
    );
    Ok(Gradients {
        dx,
        dgamma: (0..c).map(|ch| (totals[ch][1] * inv[ch]) as f32).collect(),
        dbeta: totals.iter().map(|t| t[0] as f32).collect(),
    })
}
