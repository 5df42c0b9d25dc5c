//! Batch Renormalization (Ioffe, *Batch Renormalization: Towards Reducing Minibatch Dependence
//! in Batch-Normalized Models*, NeurIPS 2017): batch norm whose training output is corrected
//! towards what the moving averages would give, so that training and inference compute nearly
//! the same function even when batches are small or not i.i.d.
//!
//! Per channel, with the batch statistics μ_B, σ_B = sqrt(σ²_B + eps) over the M values of the
//! channel, and the moving averages μ, σ = sqrt(running_var + eps) before this batch:
//!
//! ```text
//! r  = clip(σ_B / σ, 1/r_max, r_max)          d = clip((μ_B − μ) / σ, −d_max, d_max)
//! x̂  = (x − μ_B) / σ_B                        y = γ·(r·x̂ + d) + β
//! ```
//!
//! r and d are constants of the backward pass (the paper's "stop gradient"), so the derivative
//! is batch norm's with γ·r in place of γ:
//!
//! ```text
//! dx = γ·r/σ_B·(dy − Σdy/M − x̂·Σ(dy·x̂)/M)      dγ = Σ dy·(r·x̂ + d) = r·Σdy·x̂ + d·Σdy      dβ = Σ dy
//! ```
//!
//! Both passes are batch norm's kernels: the statistics of `partial_sums` (f64, around a
//! shift), the normalization `normalize` with the per-channel affine (γ·r, γ·d + β), and
//! `backward_train` with γ·r. With r = 1 and d = 0 (r_max = 1, d_max = 0, the first steps of the
//! schedule) the layer is therefore batch norm bit for bit.
//!
//! **Moving averages.** The running mean and unbiased variance are updated after r and d are
//! taken, with batch norm's momentum rule, and evaluation is batch norm's eval mode. (The paper
//! averages σ rather than σ²; the variance is kept so that the buffers, the checkpoints and the
//! eval path are batch norm's.)
//!
//! **Schedule.** [`RenormConfig`]: plain batch norm (r_max = 1, d_max = 0) for the first
//! `warmup_steps` training batches, then r_max and d_max relaxed linearly to their final values,
//! reached at `r_max_at` and `d_max_at` batches (the paper: 5000, then r_max = 3 at 40k and
//! d_max = 5 at 25k steps). The step is the layer's `num_batches_tracked`, so it is saved and
//! restored with the checkpoint, and `reset_running_stats` starts the schedule again.
//!
//! **Synchronized.** [`BatchRenorm::synchronized`] takes μ_B, σ_B and M over every process of a
//! data-parallel job, exactly as synchronized batch norm does ([`crate::sync_batch_norm`]); r
//! and d are then the same on every process.

use std::rc::Rc;

use norma_autograd::{Backward, BackwardContext, Var};
use norma_distributed::Communicator;
use norma_kernels::{BatchStats, KernelError};
use norma_tensor::Tensor;

use super::{
    replace_batch_norms, BatchNorm, BatchNormConfig, BatchNormInput, Features, Images, Replacement,
};
use crate::module::{Mode, Module};
use crate::norm::affine::{kernel_error, AffineLayout};
use crate::{LayerError, Result, Sequential};

/// The r_max/d_max schedule of a [`BatchRenorm`]; the defaults are the paper's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenormConfig {
    /// Final bound on the scale correction r, at least 1 (3).
    pub r_max: f64,
    /// Final bound on the shift correction |d|, at least 0 (5).
    pub d_max: f64,
    /// Training batches of plain batch norm (r_max = 1, d_max = 0) before relaxing (5000).
    pub warmup_steps: u64,
    /// The batch at which r_max reaches its final value, at least `warmup_steps` (40 000).
    pub r_max_at: u64,
    /// The batch at which d_max reaches its final value, at least `warmup_steps` (25 000).
    pub d_max_at: u64,
}

impl Default for RenormConfig {
    fn default() -> Self {
        RenormConfig {
            r_max: 3.0,
            d_max: 5.0,
            warmup_steps: 5000,
            r_max_at: 40_000,
            d_max_at: 25_000,
        }
    }
}

impl RenormConfig {
    /// The bounds (r_max, d_max) in force at training batch `step` (0 for the first).
    pub fn bounds_at(&self, step: u64) -> (f64, f64) {
        let progress = |at: u64| {
            if step >= at {
                1.0
            } else if step <= self.warmup_steps {
                0.0
            } else {
                (step - self.warmup_steps) as f64 / (at - self.warmup_steps) as f64
            }
        };
        (
            1.0 + (self.r_max - 1.0) * progress(self.r_max_at),
            self.d_max * progress(self.d_max_at),
        )
    }

    fn check(&self) -> std::result::Result<(), String> {
        if !(self.r_max.is_finite() && self.r_max >= 1.0) {
            return Err(format!("r_max must be finite and >= 1, got {}", self.r_max));
        }
        if !(self.d_max.is_finite() && self.d_max >= 0.0) {
            return Err(format!("d_max must be finite and >= 0, got {}", self.d_max));
        }
        if self.r_max_at < self.warmup_steps || self.d_max_at < self.warmup_steps {
            return Err(format!(
                "r_max_at ({}) and d_max_at ({}) must not come before warmup_steps ({})",
                self.r_max_at, self.d_max_at, self.warmup_steps
            ));
        }
        Ok(())
    }
}

/// Batch Renormalization over the channels (dimension 1) of its input; see the module docs for
/// the formulas. [`BatchRenorm1d`] takes (N, C) or (N, C, L), [`BatchRenorm2d`] (N, C, H, W).
///
/// - parameters: `weight` γ (C), init 1; `bias` β (C), init 0 (with `affine`)
/// - buffers: `running_mean` (C), `running_var` (C), `num_batches_tracked` (int64 scalar), the
///   names of batch norm (and of torchrl's `BatchRenorm1d`)
/// - training: the corrected batch statistics; a batch with one value per channel is batch
///   norm's error. Eval: the running statistics, exactly batch norm's eval mode.
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{BatchNormConfig, BatchRenorm2d, Module, RenormConfig};
/// use norma_tensor::{Rng, Tensor};
/// let schedule = RenormConfig { warmup_steps: 0, r_max_at: 0, d_max_at: 0, ..RenormConfig::default() };
/// let mut brn = BatchRenorm2d::with_config(3, BatchNormConfig::default(), schedule)?;
/// let x = Var::constant(Tensor::rand_normal(&[2, 3, 4, 4], 5.0, 2.0, &mut Rng::seed_from_u64(0)));
/// // The running statistics start at mean 0, variance 1: r and d pull the output towards them.
/// let y = brn.forward(&x)?;
/// assert!(y.value().mean_all() > 1.0);
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub struct BatchRenorm<I: BatchNormInput> {
    bn: BatchNorm<I>,
    renorm: RenormConfig,
}

/// Batch Renormalization of (N, C) or (N, C, L) features.
pub type BatchRenorm1d = BatchRenorm<Features>;
/// Batch Renormalization of the channels of (N, C, H, W) images.
pub type BatchRenorm2d = BatchRenorm<Images>;

impl<I: BatchNormInput> BatchRenorm<I> {
    /// A layer for `num_features` channels with batch norm's defaults and the paper's schedule.
    pub fn new(num_features: usize) -> Result<Self> {
        Self::with_config(
            num_features,
            BatchNormConfig::default(),
            RenormConfig::default(),
        )
    }

    /// A layer with explicit options.
    ///
    /// Errors: those of [`BatchNorm::with_config`] and [`BatchRenorm::from_batch_norm`]
    /// (`track_running_stats` off, a bad schedule).
    pub fn with_config(
        num_features: usize,
        config: BatchNormConfig,
        renorm: RenormConfig,
    ) -> Result<Self> {
        Self::from_batch_norm(BatchNorm::with_config(num_features, config)?, renorm)
    }

    /// `bn` renormalized: the same parameters and buffers (handles, so an optimizer built on
    /// `bn` still updates them), options, mode and communicator, with the schedule `renorm`
    /// counted from `bn`'s `num_batches_tracked`.
    ///
    /// Errors: `bn` tracks no running statistics; a schedule with r_max < 1, d_max < 0, or
    /// bounds reached before the warm-up ends.
    pub fn from_batch_norm(bn: BatchNorm<I>, renorm: RenormConfig) -> Result<Self> {
        let bad = |reason: String| LayerError::Config {
            layer: format!("BatchRenorm{}({})", kind_suffix::<I>(), bn.num_features),
            reason,
        };
        if bn.running.is_none() {
            return Err(bad(
                "needs track_running_stats: r and d come from the moving averages".into(),
            ));
        }
        renorm.check().map_err(bad)?;
        Ok(BatchRenorm { bn, renorm })
    }

    /// The layer with training statistics over every process of `comm` (see the module docs).
    pub fn synchronized(mut self, comm: Rc<dyn Communicator>) -> Self {
        self.bn.synchronize(comm);
        self
    }

    /// The schedule.
    pub fn renorm_config(&self) -> RenormConfig {
        self.renorm
    }

    /// The batch norm underneath: its options, parameters (`weight`, `bias`) and running
    /// statistics, as [`BatchNorm`]'s accessors give them.
    pub fn batch_norm(&self) -> &BatchNorm<I> {
        &self.bn
    }

    /// The batch norm underneath, mutably: its training-mode statistics are this layer's
    /// (precise statistics recompute them through this layer's forward).
    pub(crate) fn batch_norm_mut(&mut self) -> &mut BatchNorm<I> {
        &mut self.bn
    }

    /// Mean 0, variance 1, no batch seen (the schedule starts again).
    pub fn reset_running_stats(&mut self) {
        self.bn.reset_running_stats();
    }

    /// Training mode: batch statistics corrected by r and d, then the running update.
    fn forward_train(&self, x: &Var, checked: Result<()>) -> Result<Var> {
        let bn = &self.bn;
        let running = bn.running.as_ref().ok_or_else(|| LayerError::Config {
            layer: self.describe(),
            reason: "has no running statistics".into(),
        })?;
        let eps = bn.config.eps;
        let stats = match &bn.sync {
            Some(sync) => sync.statistics(x.value(), checked, bn.num_features, eps)?,
            None => {
                checked?;
                batch_stats(x.value(), eps)?
            }
        };
        let step = u64::try_from(running.num_batches_tracked.get()).unwrap_or(0);
        let (r, d) = corrections(
            &stats,
            &running.mean.get(),
            &running.var.get(),
            self.renorm.bounds_at(step),
        )?;
        let vars = bn.affine.vars();
        let (gamma, beta) = (vars.gamma(), vars.beta());
        let c = bn.num_features;
        let g = |ch: usize| gamma.map_or(1.0, |g| g[ch] as f64);
        let scale: Vec<f32> = (0..c).map(|ch| (g(ch) * r[ch]) as f32).collect();
        let shift: Vec<f32> = (0..c)
            .map(|ch| (g(ch) * d[ch] + beta.map_or(0.0, |b| b[ch] as f64)) as f32)
            .collect();
        let output =
            norma_kernels::normalize(x.value().view(), &stats, Some(&scale), Some(&shift))?;
        bn.update_running(running, &stats)?;
        let backward = RenormBackward {
            stats,
            r,
            d,
            affine: vars.layout(),
            sync: bn.sync.clone(),
        };
        Ok(vars.record(x, Tensor::from_array(output), backward))
    }
}

/// `model` with every batch norm (BatchNorm1d and BatchNorm2d, inside nested `Sequential`s
/// too) renormalized with the schedule `renorm` ([`BatchRenorm::from_batch_norm`]), under the
/// same names: a LeNet-BN becomes a LeNet-BRN with the same weights and `state_dict`.
///
/// Errors: a batch norm without running statistics, a bad schedule, a batch norm inside a
/// container other than `Sequential` (named).
pub fn convert_batch_renorm(model: Sequential, renorm: RenormConfig) -> Result<Sequential> {
    replace_batch_norms(model, Replacement::Renorm(renorm))
}

/// "1d" or "2d", for names.
fn kind_suffix<I: BatchNormInput>() -> &'static str {
    I::NAME.trim_start_matches("BatchNorm")
}

/// The statistics of one process's batch, with batch norm's error for one value per channel.
pub(super) fn batch_stats(x: &Tensor, eps: f32) -> Result<BatchStats> {
    let sums = norma_kernels::partial_sums(x.view(), None)?;
    if sums.count() < 2 {
        return Err(KernelError::SingleValuePerChannel {
            shape: x.shape().to_vec(),
        }
        .into());
    }
    Ok(sums.finish(eps)?)
}

/// r and d per channel (module docs), in f64, from the batch statistics and the moving
/// averages before this batch, clipped to `(r_max, d_max)`.
///
/// Errors: moving averages that cannot be used (a negative or non-finite variance, a
/// non-finite mean, σ = 0).
fn corrections(
    stats: &BatchStats,
    running_mean: &Tensor,
    running_var: &Tensor,
    (r_max, d_max): (f64, f64),
) -> Result<(Vec<f64>, Vec<f64>)> {
    let eps = stats.eps() as f64;
    let (mut r, mut d) = (Vec::new(), Vec::new());
    for ch in 0..stats.channels() {
        let (mean, var) = (
            running_mean.as_slice()[ch] as f64,
            running_var.as_slice()[ch] as f64,
        );
        let sigma = (var + eps).sqrt();
        let invalid = |name, value| KernelError::InvalidStatistic {
            name,
            channel: ch,
            value,
        };
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(invalid("running_var", var).into());
        }
        if !mean.is_finite() {
            return Err(invalid("running_mean", mean).into());
        }
        let sigma_b = 1.0 / stats.inv_std(ch);
        r.push((sigma_b / sigma).clamp(1.0 / r_max, r_max));
        d.push(((stats.mean()[ch] - mean) / sigma).clamp(-d_max, d_max));
    }
    Ok((r, d))
}

impl<I: BatchNormInput> Module for BatchRenorm<I> {
    fn forward(&mut self, x: &Var) -> Result<Var> {
        let checked = self.bn.check_input_of(x.shape(), &|| self.describe());
        match self.bn.mode {
            Mode::Eval => {
                checked?;
                self.bn.forward(x)
            }
            Mode::Train => self.forward_train(x, checked),
        }
    }

    state_of_batch_norm!();

    fn describe(&self) -> String {
        let s = &self.renorm;
        let sync = if self.bn.sync.is_some() { "Sync" } else { "" };
        format!(
            "{sync}BatchRenorm{}({}, eps={}, momentum={}, affine={}, r_max={}, d_max={}, warmup_steps={}, r_max_at={}, d_max_at={})",
            kind_suffix::<I>(),
            self.bn.num_features,
            self.bn.config.eps,
            self.bn.config.momentum.map_or("None".to_string(), |m| m.to_string()),
            self.bn.config.affine,
            s.r_max,
            s.d_max,
            s.warmup_steps,
            s.r_max_at,
            s.d_max_at
        )
    }
}

/// Batch norm's backward with γ·r, and dγ = r·Σdy·x̂ + d·Σdy (module docs).
struct RenormBackward {
    stats: BatchStats,
    r: Vec<f64>,
    d: Vec<f64>,
    affine: AffineLayout,
    sync: Option<super::Synced>,
}

impl Backward for RenormBackward {
    fn name(&self) -> &'static str {
        "batch_renorm"
    }

    fn backward(&self, ctx: &BackwardContext<'_>) -> norma_autograd::Result<Vec<Option<Tensor>>> {
        let (x, dy, gamma) = (ctx.input(0), ctx.grad_output(), self.affine.gamma(ctx));
        let scale: Vec<f32> = (0..self.r.len())
            .map(|ch| (gamma.map_or(1.0, |g| g[ch] as f64) * self.r[ch]) as f32)
            .collect();
        let mut g = match &self.sync {
            Some(sync) => sync.backward(x, dy, &self.stats, Some(&scale))?,
            None => norma_kernels::backward_train(x.view(), dy.view(), &self.stats, Some(&scale))
                .map_err(|e| kernel_error("batch_renorm", e))?,
        };
        for ch in 0..self.r.len() {
            g.dgamma[ch] =
                (self.r[ch] * g.dgamma[ch] as f64 + self.d[ch] * g.dbeta[ch] as f64) as f32;
        }
        self.affine.gradients(g, ctx)
    }
}
