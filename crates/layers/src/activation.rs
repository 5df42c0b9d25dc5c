//! Elementwise activations: any shape in, same shape out.

use norma_autograd::Var;

use crate::module::Module;
use crate::Result;

/// `y = 1 / (1 + e^−x)`, elementwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sigmoid;

impl Module for Sigmoid {
    fn forward(&mut self, input: &Var) -> Result<Var> {
        Ok(input.sigmoid())
    }

    fn describe(&self) -> String {
        "Sigmoid".into()
    }
}

/// `y = max(x, 0)`, elementwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct Relu;

impl Module for Relu {
    fn forward(&mut self, input: &Var) -> Result<Var> {
        Ok(input.relu())
    }

    fn describe(&self) -> String {
        "ReLU".into()
    }
}
