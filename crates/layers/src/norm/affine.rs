//! What the normalization layers share: their optional affine parameters (γ `weight`, β
//! `bias`) and the autograd plumbing around a normalization kernel, whose inputs are
//! [x, γ?, β?] and whose kernels return dx, dγ, dβ together.

use norma_autograd::{Backward, BackwardContext, OpError, Param, Var};
use norma_kernels::{Gradients, KernelError};
use norma_tensor::Tensor;

use crate::module::join_name;

/// γ (init 1) and β (init 0) of a normalization layer, each optional.
pub(crate) struct Affine {
    pub weight: Option<Param>,
    pub bias: Option<Param>,
}

impl Affine {
    /// Parameters of `shape`, present as asked.
    pub fn new(shape: &[usize], weight: bool, bias: bool) -> Affine {
        Affine {
            weight: weight.then(|| Param::new(Tensor::ones(shape))),
            bias: bias.then(|| Param::new(Tensor::zeros(shape))),
        }
    }

    /// The graph inputs of one forward pass: the parameters as leaves.
    pub fn vars(&self) -> AffineVars {
        AffineVars {
            weight: self.weight.as_ref().map(Param::var),
            bias: self.bias.as_ref().map(Param::var),
        }
    }

    /// `prefix.weight`, `prefix.bias` (those present), PyTorch's names.
    pub fn collect(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        if let Some(w) = &self.weight {
            out.push((join_name(prefix, "weight"), w.clone()));
        }
        if let Some(b) = &self.bias {
            out.push((join_name(prefix, "bias"), b.clone()));
        }
    }
}

/// The affine parameters of one forward pass.
pub(crate) struct AffineVars {
    pub weight: Option<Var>,
    pub bias: Option<Var>,
}

impl AffineVars {
    /// γ's values, if any.
    pub fn gamma(&self) -> Option<&[f32]> {
        self.weight.as_ref().map(|w| w.value().as_slice())
    }

    /// β's values, if any.
    pub fn beta(&self) -> Option<&[f32]> {
        self.bias.as_ref().map(|b| b.value().as_slice())
    }

    /// The op's inputs in order: x, then γ and β when present.
    pub fn inputs<'a>(&'a self, x: &'a Var) -> Vec<&'a Var> {
        let mut inputs = vec![x];
        inputs.extend(self.weight.as_ref());
        inputs.extend(self.bias.as_ref());
        inputs
    }

    /// The op's output `y` in the graph, over the inputs [x, γ?, β?], with its derivative.
    pub fn record(&self, x: &Var, y: Tensor, backward: impl Backward) -> Var {
        Var::from_op(&self.inputs(x), y, backward)
    }

    /// Which inputs the op has beyond x.
    pub fn layout(&self) -> AffineLayout {
        AffineLayout {
            weight: self.weight.is_some(),
            bias: self.bias.is_some(),
        }
    }
}

/// Which of γ and β an op's inputs hold (after x, in that order).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AffineLayout {
    pub weight: bool,
    pub bias: bool,
}

impl AffineLayout {
    /// γ's values in a backward pass, if the op has it.
    pub fn gamma<'a>(&self, ctx: &'a BackwardContext<'_>) -> Option<&'a [f32]> {
        self.weight.then(|| ctx.input(1).as_slice())
    }

    /// Splits kernel gradients into the op's input order [x, γ?, β?], each shaped like its
    /// input, computing only those needed.
    pub fn gradients(
        &self,
        g: Gradients,
        ctx: &BackwardContext<'_>,
    ) -> norma_autograd::Result<Vec<Option<Tensor>>> {
        let mut out = vec![ctx.needs_grad(0).then(|| Tensor::from_array(g.dx))];
        let mut next = 1;
        for (present, values) in [(self.weight, g.dgamma), (self.bias, g.dbeta)] {
            if present {
                let shape = ctx.input(next).shape().to_vec();
                out.push(
                    ctx.needs_grad(next)
                        .then(|| Tensor::from_vec(&shape, values))
                        .transpose()?,
                );
                next += 1;
            }
        }
        Ok(out)
    }
}

/// Gradients whose parameter sums were accumulated in f64 (over several kernel calls, or by
/// a layer's own loop).
pub(crate) fn gradients_from_f64(dx: Tensor, dgamma: &[f64], dbeta: &[f64]) -> Gradients {
    Gradients {
        dx: dx.into_array(),
        dgamma: dgamma.iter().map(|&v| v as f32).collect(),
        dbeta: dbeta.iter().map(|&v| v as f32).collect(),
    }
}

/// The check of every normalization layer's eps, as the reason of a configuration error.
pub(crate) fn check_eps(eps: f32) -> Result<(), String> {
    if eps >= 0.0 && eps.is_finite() {
        Ok(())
    } else {
        Err(format!("eps must be finite and non-negative, got {eps}"))
    }
}

/// A kernel error inside a backward pass, kept typed (it comes out as
/// [`crate::LayerError::Kernel`]).
pub(crate) fn kernel_error(op: &'static str, e: KernelError) -> norma_autograd::AutogradError {
    norma_autograd::AutogradError::Op {
        op,
        source: OpError::new(e),
    }
}
