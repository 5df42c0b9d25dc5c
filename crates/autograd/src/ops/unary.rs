//! f(x) elementwise for every [`UnaryFn`] of norma-tensor; derivative g · f'(x), with `f` and
//! `f'` defined together in `norma_tensor::elementwise`.

use std::marker::PhantomData;

use norma_tensor::{Exp, Ln, Relu, Sigmoid, Tanh, Tensor, UnaryFn};

use crate::{Backward, BackwardContext, Result, Var};

struct UnaryBackward<F>(PhantomData<F>);

impl<F: UnaryFn + 'static> Backward for UnaryBackward<F> {
    fn name(&self) -> &'static str {
        F::NAME
    }

    fn backward(&self, ctx: &BackwardContext<'_>) -> Result<Vec<Option<Tensor>>> {
        let dx = Tensor::unary_backward::<F>(ctx.input(0), ctx.output(), ctx.grad_output())?;
        Ok(vec![Some(dx)])
    }
}

impl Var {
    /// Applies the elementwise function `F` (with its derivative).
    pub fn unary<F: UnaryFn + 'static>(&self) -> Var {
        Var::from_op(
            &[self],
            self.value().unary::<F>(),
            UnaryBackward::<F>(PhantomData),
        )
    }

    /// e^x.
    pub fn exp(&self) -> Var {
        self.unary::<Exp>()
    }

    /// ln x.
    pub fn ln(&self) -> Var {
        self.unary::<Ln>()
    }

    /// 1 / (1 + e^−x).
    pub fn sigmoid(&self) -> Var {
        self.unary::<Sigmoid>()
    }

    /// max(x, 0).
    pub fn relu(&self) -> Var {
        self.unary::<Relu>()
    }

    /// tanh x.
    pub fn tanh(&self) -> Var {
        self.unary::<Tanh>()
    }
}
