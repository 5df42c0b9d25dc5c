//! The derivatives of batch norm: the autograd operations recorded by the training and the
//! evaluation forward passes (see the formulas in the parent module).

use norma_autograd::{Backward, BackwardContext};
use norma_kernels::BatchStats;
use norma_tensor::Tensor;

use crate::norm::affine::{kernel_error, AffineLayout};
use crate::norm::sync_batch_norm::Synced;

/// Backward with batch statistics: the kernels' closed form, over every process when the
/// forward was synchronized.
pub(super) struct TrainBackward {
    pub(super) stats: BatchStats,
    pub(super) affine: AffineLayout,
    pub(super) sync: Option<Synced>,
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

/// Backward with fixed running statistics (eval mode).
pub(super) struct EvalBackward {
    pub(super) mean: Tensor,
    pub(super) var: Tensor,
    pub(super) eps: f32,
    pub(super) affine: AffineLayout,
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
            self.affine.gamma(ctx),
            self.eps,
        )
        .map_err(|e| kernel_error("batch_norm_eval", e))?;
        self.affine.gradients(g, ctx)
    }
}
