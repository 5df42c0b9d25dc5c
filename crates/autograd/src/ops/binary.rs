//! a ∘ b for ∘ in {+, −, ×, ÷}, with broadcasting.
//!
//! Derivatives (each summed back down to the input's shape when it was broadcast):
//! d(a+b) = (g, g); d(a−b) = (g, −g); d(a·b) = (g·b, g·a); d(a/b) = (g/b, −g·a/b²).

use norma_tensor::{BinaryOp, Tensor};

use crate::{Backward, BackwardContext, Result, Var};

struct BinaryBackward(BinaryOp);

impl Backward for BinaryBackward {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let (a, b, g) = (ctx.input(0), ctx.input(1), ctx.grad_output());
        let da = ctx.grad_if(0, || {
            let full = match self.0 {
                BinaryOp::Add | BinaryOp::Sub => g.clone(),
                BinaryOp::Mul => g.mul(b)?,
                BinaryOp::Div => g.div(b)?,
            };
            reduce_to(full, a.shape())
        })?;
        let db = ctx.grad_if(1, || {
            let full = match self.0 {
                BinaryOp::Add => g.clone(),
                BinaryOp::Sub => g.neg(),
                BinaryOp::Mul => g.mul(a)?,
                BinaryOp::Div => g.mul(a)?.div(&b.mul(b)?)?.neg(),
            };
            reduce_to(full, b.shape())
        })?;
        Ok(vec![da, db])
    }
}

/// `full` summed over the axes an input of `shape` was broadcast along; moved, not copied,
/// when nothing was broadcast (a residual connection's sum: every step, both inputs).
fn reduce_to(full: Tensor, shape: &[usize]) -> Result<Tensor> {
    if full.shape() == shape {
        Ok(full)
    } else {
        Ok(full.sum_to_shape(shape)?)
    }
}

impl Var {
    fn binary(&self, other: &Var, op: BinaryOp) -> Result<Var> {
        let out = self.value().binary(other.value(), op)?;
        Ok(Var::from_op(&[self, other], out, BinaryBackward(op)))
    }

    /// `self + other` with broadcasting.
    pub fn add(&self, other: &Var) -> Result<Var> {
        self.binary(other, BinaryOp::Add)
    }

    /// `self − other` with broadcasting.
    pub fn sub(&self, other: &Var) -> Result<Var> {
        self.binary(other, BinaryOp::Sub)
    }

    /// `self · other` elementwise with broadcasting.
    pub fn mul(&self, other: &Var) -> Result<Var> {
        self.binary(other, BinaryOp::Mul)
    }

    /// `self / other` elementwise with broadcasting.
    pub fn div(&self, other: &Var) -> Result<Var> {
        self.binary(other, BinaryOp::Div)
    }
}
