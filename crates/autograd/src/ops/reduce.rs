//! Sum and mean over axes. Derivative: the output gradient broadcast back over the reduced
//! axes (divided by their size for the mean).

use norma_tensor::Tensor;

use crate::{Backward, BackwardContext, Result, Var};

struct SumBackward {
    axes: Vec<usize>,
    scale: f32,
}

impl Backward for SumBackward {
    fn name(&self) -> &'static str {
        "sum"
    }

    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let shape = ctx.input(0).shape();
        let mut kept = shape.to_vec();
        for &a in &self.axes {
            kept[a] = 1;
        }
        let g = ctx.grad_output().reshape(&kept)?;
        Ok(vec![Some(g.broadcast_to(shape)?.mul_scalar(self.scale))])
    }
}

impl Var {
    fn reduce(&self, axes: &[usize], keep_dims: bool, mean: bool) -> Result<Var> {
        let value = self.value();
        let out = if mean {
            value.mean_axes(axes, keep_dims)?
        } else {
            value.sum_axes(axes, keep_dims)?
        };
        let count: usize = axes.iter().map(|&a| value.shape()[a]).product();
        let scale = if mean { 1.0 / count as f32 } else { 1.0 };
        let backward = SumBackward {
            axes: axes.to_vec(),
            scale,
        };
        Ok(Var::from_op(&[self], out, backward))
    }

    /// Sum over `axes` (kept with size 1 when `keep_dims`).
    pub fn sum_axes(&self, axes: &[usize], keep_dims: bool) -> Result<Var> {
        self.reduce(axes, keep_dims, false)
    }

    /// Mean over `axes` (kept with size 1 when `keep_dims`).
    pub fn mean_axes(&self, axes: &[usize], keep_dims: bool) -> Result<Var> {
        self.reduce(axes, keep_dims, true)
    }

    /// Sum of all elements, as a scalar (shape `[]`).
    pub fn sum_all(&self) -> Result<Var> {
        let all: Vec<usize> = (0..self.value().ndim()).collect();
        self.reduce(&all, false, false)
    }

    /// Mean of all elements, as a scalar (shape `[]`).
    pub fn mean_all(&self) -> Result<Var> {
        let all: Vec<usize> = (0..self.value().ndim()).collect();
        self.reduce(&all, false, true)
    }
}
