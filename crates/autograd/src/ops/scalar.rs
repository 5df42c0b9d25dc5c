//! x + c and x · c for a constant c. Derivatives: g and g·c.

use norma_tensor::Tensor;

use crate::{Backward, BackwardContext, Result, Var};

struct AddScalar;

impl Backward for AddScalar {
    fn name(&self) -> &'static str {
        "add_scalar"
    }
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(ctx.grad_output().clone())])
    }
}

struct MulScalar(f32);

impl Backward for MulScalar {
    fn name(&self) -> &'static str {
        "mul_scalar"
    }
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(ctx.grad_output().mul_scalar(self.0))])
    }
}

impl Var {
    /// `self + c`.
    pub fn add_scalar(&self, c: f32) -> Var {
        Var::from_op(&[self], self.value().add_scalar(c), AddScalar)
    }

    /// `self · c`.
    pub fn mul_scalar(&self, c: f32) -> Var {
        Var::from_op(&[self], self.value().mul_scalar(c), MulScalar(c))
    }

    /// `−self`.
    pub fn neg(&self) -> Var {
        self.mul_scalar(-1.0)
    }
}
