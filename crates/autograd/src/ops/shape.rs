//! Reshape and permute. Derivatives: the output gradient reshaped back, or permuted by the
//! inverse permutation.

use norma_tensor::Tensor;

use crate::{Backward, BackwardContext, Result, Var};

struct ReshapeBackward;

impl Backward for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(ctx.grad_output().reshape(ctx.input(0).shape())?)])
    }
}

struct PermuteBackward {
    inverse: Vec<usize>,
}

impl Backward for PermuteBackward {
    fn name(&self) -> &'static str {
        "permute"
    }
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(ctx.grad_output().permute(&self.inverse)?)])
    }
}

impl Var {
    /// The same values under a new shape with the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Var> {
        let out = self.value().reshape(shape)?;
        Ok(Var::from_op(&[self], out, ReshapeBackward))
    }

    /// Flattens all axes after the first: (N, d1, d2, ...) → (N, d1·d2·...).
    pub fn flatten(&self) -> Result<Var> {
        let shape = self.shape();
        let n = shape.first().copied().unwrap_or(1);
        let rest = shape.iter().skip(1).product();
        self.reshape(&[n, rest])
    }

    /// Reorders axes: axis `i` of the result is axis `axes[i]` of `self`.
    pub fn permute(&self, axes: &[usize]) -> Result<Var> {
        let out = self.value().permute(axes)?;
        let inverse = Tensor::inverse_permutation(axes);
        Ok(Var::from_op(&[self], out, PermuteBackward { inverse }))
    }

    /// Transpose of a 2-D value.
    pub fn t(&self) -> Result<Var> {
        self.value().expect_rank("transpose", 2)?;
        self.permute(&[1, 0])
    }
}
