//! Average and max pooling (square window, no padding).
//! Derivatives: avg spreads g/k² over each window; max routes g to each window's maximum.

use norma_tensor::Tensor;

use crate::{Backward, BackwardContext, Result, Var};

struct AvgPoolBackward {
    kernel: usize,
    stride: usize,
}

impl Backward for AvgPoolBackward {
    fn name(&self) -> &'static str {
        "avg_pool2d"
    }
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let dx = ctx.grad_output().avg_pool2d_backward(
            ctx.input(0).shape(),
            self.kernel,
            self.stride,
        )?;
        Ok(vec![Some(dx)])
    }
}

struct MaxPoolBackward {
    kernel: usize,
    stride: usize,
    argmax: Vec<u32>,
}

impl Backward for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "max_pool2d"
    }
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let dx = ctx.grad_output().max_pool2d_backward(
            &self.argmax,
            ctx.input(0).shape(),
            self.kernel,
            self.stride,
        )?;
        Ok(vec![Some(dx)])
    }
}

impl Var {
    /// Average pooling of (N, C, H, W) over `kernel`×`kernel` windows every `stride` pixels.
    pub fn avg_pool2d(&self, kernel: usize, stride: usize) -> Result<Var> {
        let out = self.value().avg_pool2d(kernel, stride)?;
        Ok(Var::from_op(
            &[self],
            out,
            AvgPoolBackward { kernel, stride },
        ))
    }

    /// Max pooling of (N, C, H, W) over `kernel`×`kernel` windows every `stride` pixels.
    pub fn max_pool2d(&self, kernel: usize, stride: usize) -> Result<Var> {
        let pooled = self.value().max_pool2d(kernel, stride)?;
        let backward = MaxPoolBackward {
            kernel,
            stride,
            argmax: pooled.argmax,
        };
        Ok(Var::from_op(&[self], pooled.output, backward))
    }
}
