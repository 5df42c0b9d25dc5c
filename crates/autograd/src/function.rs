//! The extension point: how an operation tells the engine its derivative.
//!
//! Every built-in operation is written this way, and so can a crate above autograd add a
//! fused operation with its own kernels (norma-layers' batch norm does): compute the output
//! tensor yourself, then record it with [`Var::from_op`] together with a [`Backward`] value
//! holding whatever the derivative needs.
//!
//! ```
//! use norma_autograd::{Backward, BackwardContext, Param, Result, Var};
//! use norma_tensor::Tensor;
//!
//! /// y = x³, dy/dx = 3x².
//! struct Cube;
//! impl Backward for Cube {
//!     fn name(&self) -> &'static str { "cube" }
//!     fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
//!         let x = ctx.input(0);
//!         let dx = x.mul(x)?.mul_scalar(3.0).mul(ctx.grad_output())?;
//!         Ok(vec![Some(dx)])
//!     }
//! }
//!
//! let p = Param::new(Tensor::from_vec(&[2], vec![1.0, 2.0])?);
//! let x = p.var();
//! let y = Var::from_op(&[&x], x.value().map(|v| v * v * v), Cube);
//! y.sum_all()?.backward()?;
//! assert_eq!(p.grad().unwrap().as_slice(), &[3.0, 12.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use norma_tensor::Tensor;

use crate::{Result, Var};

/// The derivative of one recorded operation.
pub trait Backward: 'static {
    /// The operation's name, used in errors.
    fn name(&self) -> &'static str;

    /// Given the gradient of the loss with respect to this operation's output, returns the
    /// gradient with respect to each input, in input order: one entry per input, `None` where
    /// [`BackwardContext::needs_grad`] is false (computing it would be wasted work).
    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>>;
}

/// What a [`Backward`] can read: the forward inputs and output, and the output gradient.
pub struct BackwardContext<'a> {
    pub(crate) inputs: &'a [Var],
    pub(crate) output: &'a Tensor,
    pub(crate) grad_output: &'a Tensor,
}

impl BackwardContext<'_> {
    /// The value of input `i` in the forward pass.
    pub fn input(&self, i: usize) -> &Tensor {
        self.inputs[i].value()
    }

    /// Whether the gradient of input `i` is needed.
    pub fn needs_grad(&self, i: usize) -> bool {
        self.inputs[i].requires_grad()
    }

    /// The operation's forward output.
    pub fn output(&self) -> &Tensor {
        self.output
    }

    /// ∂loss/∂output.
    pub fn grad_output(&self) -> &Tensor {
        self.grad_output
    }

    /// Number of inputs.
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Computes `f()` only when input `i` needs a gradient: the usual shape of a backward.
    pub fn grad_if(&self, i: usize, f: impl FnOnce() -> Result<Tensor>) -> Result<Option<Tensor>> {
        if self.needs_grad(i) {
            f().map(Some)
        } else {
            Ok(None)
        }
    }
}
