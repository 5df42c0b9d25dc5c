//! Batch norm with the running statistics (eval mode), and its derivative. The statistics are
//! constants here, so the layer is a per-channel affine map:
//!
//! ```text
//! forward:   y  = γ·(x − running_mean)/sqrt(running_var + eps) + β
//! backward:  dx = γ/sqrt(running_var + eps)·dy
//!            dγ = Σ dy·(x − running_mean)/sqrt(running_var + eps)      dβ = Σ dy
//! ```

use norma_autograd::{Backward, BackwardContext, Var};
use norma_tensor::Tensor;

use super::{BatchNorm, BatchNormInput};
use crate::norm::affine::{kernel_error, AffineLayout};
use crate::Result;

impl<I: BatchNormInput> BatchNorm<I> {
    /// Eval mode: the running statistics (mixed with each example's own when the example
    /// weight is set, see `example_weighted.rs`). A layer that does not track them uses the batch's
    /// own statistics, as PyTorch does, and never communicates: evaluation is local.
    pub(super) fn forward_eval(&self, x: &Var, checked: Result<()>) -> Result<Var> {
        let Some(running) = &self.running else {
            return self.forward_batch_stats(x, checked, None, None);
        };
        checked?;
        let (mean, var) = (running.mean.get(), running.var.get());
        if self.example_weight > 0.0 {
            return self.forward_example_weighted(x, &mean, &var);
        }
        let vars = self.affine.vars();
        let eps = self.config.eps;
        let output = norma_kernels::forward_eval(
            x.value().view(),
            mean.as_slice(),
            var.as_slice(),
            vars.gamma(),
            vars.beta(),
            eps,
        )?;
        let backward = EvalBackward {
            mean,
            var,
            eps,
            affine: vars.layout(),
            fixed_gamma: None,
        };
        Ok(vars.record(x, Tensor::from_array(output), backward))
    }
}

/// Backward with fixed running statistics (eval mode); also frozen batch norm's, whose γ is
/// a constant (`fixed_gamma`) rather than an input of the op.
pub(crate) struct EvalBackward {
    pub mean: Tensor,
    pub var: Tensor,
    pub eps: f32,
    pub affine: AffineLayout,
    pub fixed_gamma: Option<Tensor>,
}

impl Backward for EvalBackward {
    fn name(&self) -> &'static str {
        "batch_norm_eval"
    }

    fn backward(&self, ctx: &BackwardContext<'_>) -> norma_autograd::Result<Vec<Option<Tensor>>> {
        let g = norma_kernels::backward_eval(
            ctx.input(0).view(),
            ctx.grad_output().view(),
            self.mean.as_slice(),
            self.var.as_slice(),
            self.fixed_gamma
                .as_ref()
                .map(Tensor::as_slice)
                .or(self.affine.gamma(ctx)),
            self.eps,
        )
        .map_err(|e| kernel_error("batch_norm_eval", e))?;
        self.affine.gradients(g, ctx)
    }
}
