//! Fully connected layer.

use norma_autograd::{Param, Var};
use norma_tensor::{Rng, Tensor};

use crate::module::{join_name, Module};
use crate::{init, LayerError, Result};

/// `y = x · Wᵀ + b`
///
/// - input `x`: (N, in_features)
/// - weight `W`: (out_features, in_features), Xavier-uniform initialised
/// - bias `b`: (out_features), zeros (optional)
/// - output `y`: (N, out_features)
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{Linear, Module};
/// use norma_tensor::{Rng, Tensor};
/// let mut fc = Linear::new(4, 3, &mut Rng::seed_from_u64(0))?;
/// let y = fc.forward(&Var::constant(Tensor::ones(&[2, 4])))?;
/// assert_eq!(y.shape(), &[2, 3]);
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub struct Linear {
    weight: Param,
    bias: Option<Param>,
}

impl Linear {
    /// A layer with bias, Xavier-uniform weights and zero bias.
    pub fn new(in_features: usize, out_features: usize, rng: &mut Rng) -> Result<Linear> {
        Self::with_bias(in_features, out_features, true, rng)
    }

    /// A layer with or without bias (a bias right before batch norm is redundant).
    pub fn with_bias(
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Linear> {
        if in_features == 0 || out_features == 0 {
            return Err(LayerError::Config {
                layer: format!("Linear(in={in_features}, out={out_features})"),
                reason: "feature counts must be positive".into(),
            });
        }
        let weight =
            init::xavier_uniform(&[out_features, in_features], in_features, out_features, rng);
        let bias = bias.then(|| Tensor::zeros(&[out_features]));
        Self::from_tensors(weight, bias)
    }

    /// A layer with the given weight (out, in) and optional bias (out).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        let shape = weight.shape().to_vec();
        if shape.len() != 2 || bias.as_ref().is_some_and(|b| b.shape() != [shape[0]]) {
            return Err(LayerError::Config {
                layer: "Linear".into(),
                reason: format!(
                    "weight must be (out, in) and bias (out), got {shape:?} and {:?}",
                    bias.as_ref().map(|b| b.shape().to_vec())
                ),
            });
        }
        Ok(Linear {
            weight: Param::new(weight),
            bias: bias.map(Param::new),
        })
    }

    /// The weight W (out_features, in_features).
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The bias b (out_features), if any.
    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }

    /// (in_features, out_features).
    pub fn features(&self) -> (usize, usize) {
        let s = self.weight.shape();
        (s[1], s[0])
    }
}

impl Module for Linear {
    fn forward(&mut self, input: &Var) -> Result<Var> {
        let (fin, _) = self.features();
        if input.shape().len() != 2 || input.shape()[1] != fin {
            return Err(LayerError::Input {
                layer: self.describe(),
                expected: format!("(N, {fin})"),
                got: input.shape().to_vec(),
            });
        }
        let bias = self.bias.as_ref().map(Param::var);
        Ok(input.linear(&self.weight.var(), bias.as_ref())?)
    }

    fn collect_params(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        out.push((join_name(prefix, "weight"), self.weight.clone()));
        if let Some(b) = &self.bias {
            out.push((join_name(prefix, "bias"), b.clone()));
        }
    }

    fn describe(&self) -> String {
        let (fin, fout) = self.features();
        format!("Linear(in={fin}, out={fout}, bias={})", self.bias.is_some())
    }
}
