//! Flattening of everything after the batch axis.

use norma_autograd::Var;

use crate::module::Module;
use crate::{LayerError, Result};

/// (N, d1, d2, ...) → (N, d1·d2·...), row-major (PyTorch's `nn.Flatten()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Flatten;

impl Module for Flatten {
    fn forward(&mut self, input: &Var) -> Result<Var> {
        if input.shape().is_empty() {
            return Err(LayerError::Input {
                layer: self.describe(),
                expected: "at least one axis (N, ...)".into(),
                got: vec![],
            });
        }
        Ok(input.flatten()?)
    }

    fn describe(&self) -> String {
        "Flatten".into()
    }
}
