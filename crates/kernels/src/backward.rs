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
//! (see [`cancels`]); when they differ by more than [`CANCELLATION`] it evaluates the map in
//! f64 instead, which keeps dx within about 1e-6 of its largest value relative to float64
//! arithmetic. Ordinary batches stay on the f32 path.
//!
//! Evaluation mode uses fixed running statistics, so dx = dy·γ/sqrt(running_var + eps).

use ndarray::{ArrayD, ArrayViewD};

use crate::forward::check_running;
use crate::layout::{channel_sums, map_channels, BnShape};
use crate::stats::{inv_std, BatchStats};
use crate::{check_channels, contiguous, sums, KernelError};
use norma_simd::SimdLevel;

/// Σdy² / Σdx'² above which dx is computed in f64 (dx' is dx before the γ·inv_std factor): the
/// f32 path's rounding, a few ulps of |dy|, is then more than sqrt(256)·6e-8 ≈ 1e-6 of the
/// result's size.
const CANCELLATION: f64 = 256.0;

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

/// The backward sums of one batch (or shard) for the forward's statistics.
pub fn grad_sums(
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    stats: &BatchStats,
) -> Result<GradSums, KernelError> {
    let (shape, xs, dys) = check_pair(&x, &dy)?;
    check_channels(shape, "mean", Some(stats.mean()))?;
    let totals = channel_sums(
        SimdLevel::current(),
        shape,
        xs,
        dys,
        stats.mean(),
        sums::GradTerms,
    );
    Ok(GradSums {
        sum_dy: totals.iter().map(|t| t[0]).collect(),
        sum_dy_xmu: totals.iter().map(|t| t[1]).collect(),
        sum_dy_sq: totals.iter().map(|t| t[2]).collect(),
    })
}

/// Training-mode gradient (see the module docs), given the forward input `x`, the output
/// gradient `dy`, the forward's [`BatchStats`] and γ (`None` means 1).
pub fn backward_train(
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
    stats: &BatchStats,
    gamma: Option<&[f32]>,
) -> Result<Gradients, KernelError> {
    let sums = grad_sums(x.view(), dy.view(), stats)?;
    let dx = backward_from_sums(x, dy, stats, &sums, gamma)?;
    Ok(Gradients {
        dx,
        dgamma: sums.dgamma(stats),
        dbeta: sums.dbeta(),
    })
}

/// Whether a channel's (or group's) dx cancels so much that f32 evaluation would lose its
/// precision. The f32 path's rounding is a few ulps of the terms it subtracts, which are of the
/// size of the output gradient g; f64 is used when Σg² > [`CANCELLATION`] · Σdx'², both known in
/// closed form from the sums over the M values (Σd = 0, Σd² = M·var, with d = x − mean and g
/// the output gradient, γ-weighted for group norm):
///
/// ```text
/// Σdx'² = Σ(g − mean(g))² − (Σg·d)² / (M·(var + eps)) · (2 − var / (var + eps))
/// ```
///
/// This catches both ways dx can be small next to g: g nearly constant (g − mean(g) cancels,
/// or one value per group) and g nearly linear in x̂ (two values per channel, the gradient of
/// Σy²/2).
pub(crate) fn cancels(m: f64, var: f64, eps: f32, sum: f64, dot: f64, sum_sq: f64) -> bool {
    let ve = var + eps as f64;
    if !(sum_sq > 0.0 && ve > 0.0) {
        return false;
    }
    let centred = sum_sq - sum * sum / m;
    let result = centred - dot * dot / (m * ve) * (2.0 - var / ve);
    sum_sq > CANCELLATION * result
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
    let (shape, xs, dys) = check_pair(&x, &dy)?;
    let c = shape.channels;
    check_channels(shape, "mean", Some(stats.mean()))?;
    check_channels(shape, "gamma", gamma)?;
    if sums.sum_dy.len() != c {
        return Err(KernelError::ChannelLength {
            name: "gradient sums",
            expected: c,
            got: sums.sum_dy.len(),
        });
    }
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
        return Ok(map_channels(
            level,
            shape,
            x.raw_dim(),
            xs,
            dys,
            [stats.mean(), &a, &mean_dy, &k],
            |x, dy, [mean, a, mean_dy, k]| {
                (a * ((dy as f64 - mean_dy) - (x as f64 - mean) * k)) as f32
            },
        ));
    }
    let to_f32 = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let mean: Vec<f32> = to_f32(stats.mean());
    let residual: Vec<f32> = stats
        .mean()
        .iter()
        .map(|&m| (m - (m as f32) as f64) as f32)
        .collect();
    // x − mean is exact in f32 near the mean; the residual corrects for the mean's rounding.
    Ok(map_channels(
        level,
        shape,
        x.raw_dim(),
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
    ))
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
    let c = shape.channels;
    check_running(c, running_mean, running_var, eps)?;
    check_channels(shape, "gamma", gamma)?;
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
