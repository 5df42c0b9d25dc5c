//! 2-D convolution layer.

use norma_autograd::{Param, Var};
use norma_tensor::{Rng, Tensor};

use crate::module::{join_name, Module};
use crate::{init, LayerError, Result};

/// Stride, zero padding and bias of a [`Conv2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    pub stride: usize,
    pub padding: usize,
    pub bias: bool,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            stride: 1,
            padding: 0,
            bias: true,
        }
    }
}

/// `y[n, o] = b[o] + Σ_c W[o, c] ⋆ x[n, c]` (cross-correlation, as in PyTorch)
///
/// - input `x`: (N, C_in, H, W)
/// - weight `W`: (C_out, C_in, k, k), Xavier-uniform initialised (fan_in = C_in·k², fan_out = C_out·k²)
/// - bias `b`: (C_out), zeros (optional)
/// - output: (N, C_out, (H + 2p − k)/s + 1, (W + 2p − k)/s + 1)
///
/// Runs on norma-tensor's direct convolution kernels (see `norma_tensor::Tensor::conv2d`).
pub struct Conv2d {
    weight: Param,
    bias: Option<Param>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// A `kernel`×`kernel` convolution from `in_channels` to `out_channels`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        config: Conv2dConfig,
        rng: &mut Rng,
    ) -> Result<Conv2d> {
        if in_channels == 0 || out_channels == 0 || kernel == 0 {
            return Err(LayerError::Config {
                layer: format!("Conv2d({in_channels}, {out_channels}, kernel={kernel})"),
                reason: "channels and kernel size must be positive".into(),
            });
        }
        let area = kernel * kernel;
        let weight = init::xavier_uniform(
            &[out_channels, in_channels, kernel, kernel],
            in_channels * area,
            out_channels * area,
            rng,
        );
        let bias = config.bias.then(|| Tensor::zeros(&[out_channels]));
        Self::from_tensors(weight, bias, config.stride, config.padding)
    }

    /// A convolution with the given weight (O, C, k, k) and optional bias (O).
    pub fn from_tensors(
        weight: Tensor,
        bias: Option<Tensor>,
        stride: usize,
        padding: usize,
    ) -> Result<Conv2d> {
        let s = weight.shape().to_vec();
        let ok = s.len() == 4 && s[2] == s[3] && bias.as_ref().is_none_or(|b| b.shape() == [s[0]]);
        if !ok || stride == 0 {
            return Err(LayerError::Config {
                layer: "Conv2d".into(),
                reason: format!(
                    "weight must be (O, C, k, k), bias (O) and stride positive; got {s:?}, {:?}, stride {stride}",
                    bias.as_ref().map(|b| b.shape().to_vec())
                ),
            });
        }
        Ok(Conv2d {
            weight: Param::new(weight),
            bias: bias.map(Param::new),
            stride,
            padding,
        })
    }

    /// The weight (C_out, C_in, k, k).
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The bias (C_out), if any.
    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }

    /// (stride, padding).
    pub fn stride_padding(&self) -> (usize, usize) {
        (self.stride, self.padding)
    }
}

impl Module for Conv2d {
    fn forward(&mut self, input: &Var) -> Result<Var> {
        let s = self.weight.shape();
        if input.shape().len() != 4 || input.shape()[1] != s[1] {
            return Err(LayerError::Input {
                layer: self.describe(),
                expected: format!("(N, {}, H, W)", s[1]),
                got: input.shape().to_vec(),
            });
        }
        let bias = self.bias.as_ref().map(Param::var);
        Ok(input.conv2d(&self.weight.var(), bias.as_ref(), self.stride, self.padding)?)
    }

    fn collect_params(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        out.push((join_name(prefix, "weight"), self.weight.clone()));
        if let Some(b) = &self.bias {
            out.push((join_name(prefix, "bias"), b.clone()));
        }
    }

    fn describe(&self) -> String {
        let s = self.weight.shape();
        format!(
            "Conv2d({}, {}, kernel={}, stride={}, padding={}, bias={})",
            s[1],
            s[0],
            s[2],
            self.stride,
            self.padding,
            self.bias.is_some()
        )
    }
}
