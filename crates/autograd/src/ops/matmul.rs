//! Matrix products.
//!
//! - `matmul`: C = A·B; dA = G·Bᵀ, dB = Aᵀ·G.
//! - `linear`: Y = X·Wᵀ + b (X: (N, in), W: (out, in), b: (out)); dX = G·W, dW = Gᵀ·X,
//!   db = Σ_rows G. One recorded node instead of three, no transposed copy of W.

use norma_tensor::{Tensor, TensorError};

use crate::{Backward, BackwardContext, Result, Var};

struct MatmulBackward;

impl Backward for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let (a, b, g) = (ctx.input(0), ctx.input(1), ctx.grad_output());
        let da = ctx.grad_if(0, || Ok(g.matmul_t(false, b, true)?))?;
        let db = ctx.grad_if(1, || Ok(a.matmul_t(true, g, false)?))?;
        Ok(vec![da, db])
    }
}

struct LinearBackward;

impl Backward for LinearBackward {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let (x, w, g) = (ctx.input(0), ctx.input(1), ctx.grad_output());
        let mut grads = vec![
            ctx.grad_if(0, || Ok(g.matmul(w)?))?,
            ctx.grad_if(1, || Ok(g.matmul_t(true, x, false)?))?,
        ];
        if ctx.num_inputs() == 3 {
            grads.push(ctx.grad_if(2, || Ok(g.sum_axes(&[0], false)?))?);
        }
        Ok(grads)
    }
}

impl Var {
    /// Matrix product of 2-D values.
    pub fn matmul(&self, other: &Var) -> Result<Var> {
        let out = self.value().matmul(other.value())?;
        Ok(Var::from_op(&[self, other], out, MatmulBackward))
    }

    /// Affine map `self · weightᵀ + bias` for `self` (N, in), `weight` (out, in), `bias` (out).
    pub fn linear(&self, weight: &Var, bias: Option<&Var>) -> Result<Var> {
        let mut out = self.value().matmul_t(false, weight.value(), true)?;
        let mut inputs = vec![self, weight];
        if let Some(b) = bias {
            let cols = out.shape()[1];
            if b.shape() != [cols] {
                return Err(TensorError::shape(
                    "linear",
                    format!("bias must have shape [{cols}]"),
                    &[self.shape(), weight.shape(), b.shape()],
                )
                .into());
            }
            for row in out.as_slice_mut().chunks_exact_mut(cols) {
                row.iter_mut()
                    .zip(b.value().as_slice())
                    .for_each(|(y, b)| *y += b);
            }
            inputs.push(b);
        }
        Ok(Var::from_op(&inputs, out, LinearBackward))
    }
}
