//! 2-D convolution y = conv2d(x, W) + b (see `Tensor::conv2d` for the formula and shapes).
//! Derivatives: dx = conv2d_backward_input(g, W), (dW, db) = conv2d_backward_params(g, x);
//! each is computed only when needed (the first layer never needs dx).

use norma_tensor::Tensor;

use crate::{Backward, BackwardContext, Result, Var};

struct Conv2dBackward {
    stride: usize,
    padding: usize,
}

impl Backward for Conv2dBackward {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let (x, w, g) = (ctx.input(0), ctx.input(1), ctx.grad_output());
        let dx = ctx.grad_if(0, || {
            Ok(g.conv2d_backward_input(w, x.shape(), self.stride, self.padding)?)
        })?;
        let has_bias = ctx.num_inputs() == 3;
        let (dw, db) = if ctx.needs_grad(1) || (has_bias && ctx.needs_grad(2)) {
            let (dw, db) = g.conv2d_backward_params(x, w.shape(), self.stride, self.padding)?;
            (Some(dw), Some(db))
        } else {
            (None, None)
        };
        let mut grads = vec![dx, dw];
        if has_bias {
            grads.push(db);
        }
        Ok(grads)
    }
}

impl Var {
    /// 2-D convolution of `self` (N, C, H, W) with `weight` (O, C, kh, kw) and optional `bias`
    /// (O), with the given stride and zero padding → (N, O, OH, OW).
    pub fn conv2d(
        &self,
        weight: &Var,
        bias: Option<&Var>,
        stride: usize,
        padding: usize,
    ) -> Result<Var> {
        let out = self
            .value()
            .conv2d(weight.value(), bias.map(Var::value), stride, padding)?;
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        Ok(Var::from_op(
            &inputs,
            out,
            Conv2dBackward { stride, padding },
        ))
    }
}
