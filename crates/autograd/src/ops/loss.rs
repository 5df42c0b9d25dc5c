//! Log-softmax over rows and mean cross-entropy with integer labels.
//!
//! - log_softmax: y = x − logΣexp(x); dx = g − softmax(x)·Σg.
//! - cross_entropy: L = −mean_n log_softmax(x_n)[label_n]; dx = g·(softmax(x) − onehot)/N.

use norma_tensor::Tensor;

use crate::{Backward, BackwardContext, Result, Var};

struct LogSoftmaxBackward;

impl Backward for LogSoftmaxBackward {
    fn name(&self) -> &'static str {
        "log_softmax"
    }
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(
            ctx.grad_output().log_softmax_backward(ctx.output())?,
        )])
    }
}

struct CrossEntropyBackward {
    labels: Vec<usize>,
}

impl Backward for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.grad_output().item()?;
        Ok(vec![Some(
            ctx.input(0).cross_entropy_backward(&self.labels, g)?,
        )])
    }
}

impl Var {
    /// Row-wise log-softmax of (N, K) logits.
    pub fn log_softmax(&self) -> Result<Var> {
        let out = self.value().log_softmax()?;
        Ok(Var::from_op(&[self], out, LogSoftmaxBackward))
    }

    /// Mean cross-entropy of (N, K) logits against `labels` (N class indices), as a scalar.
    pub fn cross_entropy(&self, labels: &[usize]) -> Result<Var> {
        let loss = self.value().cross_entropy(labels)?;
        let backward = CrossEntropyBackward {
            labels: labels.to_vec(),
        };
        Ok(Var::from_op(&[self], Tensor::scalar(loss), backward))
    }
}
