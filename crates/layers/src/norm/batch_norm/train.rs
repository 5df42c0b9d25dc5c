//! Batch norm with the statistics of the batch (training mode, and eval mode without running
//! statistics), and its derivative:
//!
//! ```text
//! forward:   y  = γ·x̂ + β              x̂ = (x − μ_B)/sqrt(σ²_B + eps)   per channel, over M values
//! backward:  dx = γ/sqrt(σ²_B + eps)·(dy − Σdy/M − x̂·Σ(dy·x̂)/M)
//!            dγ = Σ dy·x̂               dβ = Σ dy
//! ```
//!
//! Synchronized, μ_B, σ²_B, M and the sums of dx are those of the global batch (see
//! [`crate::sync_batch_norm`]).

use norma_autograd::{Backward, BackwardContext, Var};
use norma_kernels::BatchStats;
use norma_tensor::Tensor;

use super::{BatchNorm, BatchNormInput, RunningStats};
use crate::norm::affine::{kernel_error, AffineLayout};
use crate::norm::sync_batch_norm::Synced;
use crate::Result;

impl<I: BatchNormInput> BatchNorm<I> {
    /// Training mode: the batch's statistics (the global batch's when synchronized), which
    /// also go into the running statistics when they are tracked.
    pub(super) fn forward_train(&self, x: &Var, checked: Result<()>) -> Result<Var> {
        self.forward_batch_stats(x, checked, self.sync.as_ref(), self.running.as_ref())
    }

    /// Normalizes `x` with its batch statistics, over every process of `sync` if given, and
    /// adds them to `running` if given. `checked` is the verdict on `x`'s shape: a
    /// synchronized layer still takes part in the exchange with a wrong input, to report the
    /// failure to the other processes there.
    pub(super) fn forward_batch_stats(
        &self,
        x: &Var,
        checked: Result<()>,
        sync: Option<&Synced>,
        running: Option<&RunningStats>,
    ) -> Result<Var> {
        let vars = self.affine.vars();
        let (gamma, beta, eps) = (vars.gamma(), vars.beta(), self.config.eps);
        let out = match sync {
            Some(sync) => sync.forward(x.value(), checked, self.num_features, gamma, beta, eps)?,
            None => {
                checked?;
                norma_kernels::forward_train(x.value().view(), gamma, beta, eps)?
            }
        };
        if let Some(running) = running {
            self.update_running(running, &out.stats)?;
        }
        let backward = TrainBackward {
            stats: out.stats,
            affine: vars.layout(),
            sync: sync.cloned(),
        };
        Ok(vars.record(x, Tensor::from_array(out.output), backward))
    }

    /// Adds one batch's statistics to the running statistics (the momentum rule of the
    /// parent module's docs; a cumulative average when the momentum is `None`).
    pub(super) fn update_running(&self, running: &RunningStats, stats: &BatchStats) -> Result<()> {
        let batches = running.num_batches_tracked.increment();
        let factor = self.config.momentum.unwrap_or(1.0 / batches as f64);
        running.mean.update(|mean| {
            running
                .var
                .update(|var| norma_kernels::update_running_stats(mean, var, stats, factor))
        })?;
        Ok(())
    }
}

/// Backward with batch statistics: the kernels' closed form, over every process when the
/// forward was synchronized.
struct TrainBackward {
    stats: BatchStats,
    affine: AffineLayout,
    sync: Option<Synced>,
}

impl Backward for TrainBackward {
    fn name(&self) -> &'static str {
        "batch_norm"
    }

    fn backward(&self, ctx: &BackwardContext<'_>) -> norma_autograd::Result<Vec<Option<Tensor>>> {
        let (x, dy, gamma) = (ctx.input(0), ctx.grad_output(), self.affine.gamma(ctx));
        let g = match &self.sync {
            Some(sync) => sync.backward(x, dy, &self.stats, gamma)?,
            None => norma_kernels::backward_train(x.view(), dy.view(), &self.stats, gamma)
                .map_err(|e| kernel_error("batch_norm", e))?,
        };
        self.affine.gradients(g, ctx)
    }
}
