//! Example-weighted inference statistics (Summers & Dinneen, *Four Things Everyone Should Know
//! to Improve Batch Normalization*, ICLR 2020, "inference example weighing"): in eval mode each
//! example is normalized with the moving averages mixed with its own statistics, as in
//! training, where every example is part of the statistics it is normalized with.
//!
//! For example n and channel c, with the example's mean m and biased variance v over its K
//! values of the channel (K = L or H·W; K = 1, v = 0 for (N, C) features), the moving averages
//! μ, σ², and the weight α ∈ [0, 1], the first and second moments are mixed:
//!
//! ```text
//! μ_nc  = α·m + (1 − α)·μ
//! σ²_nc = α·E[x²] + (1 − α)·(σ² + μ²) − μ_nc²  =  α·v + (1 − α)·σ² + α·(1 − α)·(m − μ)²
//! y     = γ·(x − μ_nc)/sqrt(σ²_nc + eps) + β
//! ```
//!
//! (the right-hand form, free of cancellation, is the one computed). α = 0 is plain eval mode
//! (and runs batch norm's eval kernel); α = 1 is instance norm. The paper sets α by validation,
//! of the order of 1/batch size. Since μ_nc and σ²_nc depend on x, so does the derivative; with
//! x̂ = (x − μ_nc)/sqrt(σ²_nc + eps), per (n, c):
//!
//! ```text
//! dx = γ/sqrt(σ²_nc + eps)·(dy − α·mean(dy) − α·x̂·mean(dy·x̂))      dγ = Σ dy·x̂      dβ = Σ dy
//! ```
//!
//! The example statistics are the group-norm kernel's with one channel per group (f64, around
//! a shift); the mixing, the output and the derivative are evaluated in f64 in one sequential
//! pass, so the results do not depend on the number of threads.

use norma_autograd::{Backward, BackwardContext, Var};
use norma_kernels::GroupStats;
use norma_tensor::Tensor;

use super::{for_each_batch_norm_mut, BatchNorm, BatchNormInput};
use crate::module::Module;
use crate::norm::affine::{gradients_from_f64, AffineLayout};
use crate::{LayerError, Result};

/// Sets the example weight α of every batch norm of `model` (BatchNorm1d and BatchNorm2d, at
/// any depth; see [`BatchNorm::set_example_weight`]) and returns their names in model order.
///
/// Errors: α outside [0, 1] (nothing is changed).
pub fn set_example_weight(model: &mut dyn Module, alpha: f64) -> Result<Vec<String>> {
    check_alpha(alpha).map_err(|reason| LayerError::Config {
        layer: "set_example_weight".into(),
        reason,
    })?;
    let mut names = Vec::new();
    for_each_batch_norm_mut(model, &mut |name, bn| {
        bn.replace_example_weight(alpha);
        names.push(name.to_string());
    });
    Ok(names)
}

fn check_alpha(alpha: f64) -> std::result::Result<(), String> {
    if (0.0..=1.0).contains(&alpha) {
        Ok(())
    } else {
        Err(format!("the example weight must be in [0, 1], got {alpha}"))
    }
}

impl<I: BatchNormInput> BatchNorm<I> {
    /// The weight α of each example's own statistics in eval mode (0, plain eval, by default).
    pub fn example_weight(&self) -> f64 {
        self.example_weight
    }

    /// Sets α (see [`crate::batch_norm`]'s eval mode and the `example_weighted` docs): eval
    /// mode then normalizes each example with α·its own statistics + (1 − α)·the moving
    /// averages. Without running statistics eval uses the batch's, and α has no effect.
    ///
    /// Errors: α outside [0, 1].
    pub fn set_example_weight(&mut self, alpha: f64) -> Result<()> {
        check_alpha(alpha).map_err(|reason| LayerError::Config {
            layer: self.describe(),
            reason,
        })?;
        self.example_weight = alpha;
        Ok(())
    }

    /// Eval mode with α > 0 (module docs), given tracked running statistics.
    pub(super) fn forward_example_weighted(
        &self,
        x: &Var,
        running_mean: &Tensor,
        running_var: &Tensor,
    ) -> Result<Var> {
        let c = self.num_features;
        let example = norma_kernels::group_norm_forward(x.value().view(), c, None, None, 0.0)?;
        let mixed = Mixed::new(
            &example.stats,
            running_mean.as_slice(),
            running_var.as_slice(),
            self.example_weight,
            self.config.eps,
        )?;
        let vars = self.affine.vars();
        let (gamma, beta) = (vars.gamma(), vars.beta());
        let s = x.value().len() / (mixed.mean.len().max(1));
        let mut y = Vec::with_capacity(x.value().len());
        for (i, plane) in x.value().as_slice().chunks(s.max(1)).enumerate() {
            let ch = i % c;
            let g = gamma.map_or(1.0, |g| g[ch] as f64);
            let b = beta.map_or(0.0, |b| b[ch] as f64);
            let (mean, inv) = (mixed.mean[i], mixed.inv_std[i]);
            y.extend(
                plane
                    .iter()
                    .map(|&v| (g * (v as f64 - mean) * inv + b) as f32),
            );
        }
        let y = Tensor::from_vec(x.shape(), y)?;
        let backward = WeightedBackward {
            mixed,
            channels: c,
            affine: vars.layout(),
        };
        Ok(vars.record(x, y, backward))
    }
}

/// The mixed statistics per (sample, channel), sample-major, and α.
struct Mixed {
    mean: Vec<f64>,
    inv_std: Vec<f64>,
    alpha: f64,
}

impl Mixed {
    /// μ_nc and 1/sqrt(σ²_nc + eps) from the examples' statistics and the moving averages.
    ///
    /// Errors: moving averages that cannot be used (a negative or non-finite variance, a
    /// non-finite mean), or mixed statistics that are not finite (an input that overflows).
    fn new(
        example: &GroupStats,
        running_mean: &[f32],
        running_var: &[f32],
        alpha: f64,
        eps: f32,
    ) -> Result<Mixed> {
        let c = running_mean.len();
        let (mut mean, mut inv_std) = (Vec::new(), Vec::new());
        for (i, (&m, &v)) in example.mean().iter().zip(example.var()).enumerate() {
            let ch = i % c;
            let (mu, var) = (running_mean[ch] as f64, running_var[ch] as f64);
            let invalid = |name, value| norma_kernels::KernelError::InvalidStatistic {
                name,
                channel: ch,
                value,
            };
            if !(var >= 0.0 && var.is_finite()) {
                return Err(invalid("running_var", var).into());
            }
            if !mu.is_finite() {
                return Err(invalid("running_mean", mu).into());
            }
            let mixed_var =
                alpha * v + (1.0 - alpha) * var + alpha * (1.0 - alpha) * (m - mu).powi(2);
            let inv = 1.0 / (mixed_var + eps as f64).sqrt();
            if !(inv.is_finite() && m.is_finite()) {
                return Err(invalid("batch statistics", mixed_var).into());
            }
            mean.push(alpha * m + (1.0 - alpha) * mu);
            inv_std.push(inv);
        }
        Ok(Mixed {
            mean,
            inv_std,
            alpha,
        })
    }
}

/// The derivative of module docs, per (sample, channel) plane, in f64.
struct WeightedBackward {
    mixed: Mixed,
    channels: usize,
    affine: AffineLayout,
}

impl Backward for WeightedBackward {
    fn name(&self) -> &'static str {
        "batch_norm_example_weighted"
    }

    fn backward(&self, ctx: &BackwardContext<'_>) -> norma_autograd::Result<Vec<Option<Tensor>>> {
        let (x, dy, gamma) = (ctx.input(0), ctx.grad_output(), self.affine.gamma(ctx));
        let (c, alpha) = (self.channels, self.mixed.alpha);
        let s = (x.len() / self.mixed.mean.len().max(1)).max(1);
        let (mut dgamma, mut dbeta) = (vec![0.0f64; c], vec![0.0f64; c]);
        let mut dx = Vec::with_capacity(x.len());
        let planes = x.as_slice().chunks(s).zip(dy.as_slice().chunks(s));
        for (i, (xs, dys)) in planes.enumerate() {
            let ch = i % c;
            let (mean, inv) = (self.mixed.mean[i], self.mixed.inv_std[i]);
            let xhat = |v: f32| (v as f64 - mean) * inv;
            let sum_dy: f64 = dys.iter().map(|&d| d as f64).sum();
            let sum_dy_xhat: f64 = xs.iter().zip(dys).map(|(&v, &d)| d as f64 * xhat(v)).sum();
            dgamma[ch] += sum_dy_xhat;
            dbeta[ch] += sum_dy;
            let k = s as f64;
            let a = gamma.map_or(1.0, |g| g[ch] as f64) * inv;
            dx.extend(xs.iter().zip(dys).map(|(&v, &d)| {
                (a * (d as f64 - alpha * sum_dy / k - alpha * xhat(v) * sum_dy_xhat / k)) as f32
            }));
        }
        let dx = Tensor::from_vec(x.shape(), dx)?;
        let g = gradients_from_f64(dx, &dgamma, &dbeta);
        self.affine.gradients(g, ctx)
    }
}
