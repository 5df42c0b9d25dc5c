//! Average and max pooling layers (square windows, no padding).

use norma_autograd::Var;

use crate::module::Module;
use crate::{LayerError, Result};

fn check(layer: String, kernel: usize, stride: usize) -> Result<()> {
    if kernel == 0 || stride == 0 {
        return Err(LayerError::Config {
            layer,
            reason: "kernel and stride must be positive".into(),
        });
    }
    Ok(())
}

fn expect_4d(layer: String, input: &Var) -> Result<()> {
    if input.shape().len() != 4 {
        return Err(LayerError::Input {
            layer,
            expected: "(N, C, H, W)".into(),
            got: input.shape().to_vec(),
        });
    }
    Ok(())
}

/// `y[n, c, i, j] = mean of the k×k window of x[n, c] at (i·s, j·s)`;
/// (N, C, H, W) → (N, C, (H − k)/s + 1, (W − k)/s + 1).
#[derive(Debug, Clone, Copy)]
pub struct AvgPool2d {
    kernel: usize,
    stride: usize,
}

impl AvgPool2d {
    /// Windows of `kernel`×`kernel` every `stride` pixels (LeNet: 2 and 2).
    pub fn new(kernel: usize, stride: usize) -> Result<AvgPool2d> {
        check(format!("AvgPool2d({kernel}, {stride})"), kernel, stride)?;
        Ok(AvgPool2d { kernel, stride })
    }
}

impl Module for AvgPool2d {
    fn forward(&mut self, input: &Var) -> Result<Var> {
        expect_4d(self.describe(), input)?;
        Ok(input.avg_pool2d(self.kernel, self.stride)?)
    }

    fn describe(&self) -> String {
        format!("AvgPool2d(kernel={}, stride={})", self.kernel, self.stride)
    }
}

/// `y[n, c, i, j] = max of the k×k window of x[n, c] at (i·s, j·s)`;
/// (N, C, H, W) → (N, C, (H − k)/s + 1, (W − k)/s + 1).
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    kernel: usize,
    stride: usize,
}

impl MaxPool2d {
    /// Windows of `kernel`×`kernel` every `stride` pixels.
    pub fn new(kernel: usize, stride: usize) -> Result<MaxPool2d> {
        check(format!("MaxPool2d({kernel}, {stride})"), kernel, stride)?;
        Ok(MaxPool2d { kernel, stride })
    }
}

impl Module for MaxPool2d {
    fn forward(&mut self, input: &Var) -> Result<Var> {
        expect_4d(self.describe(), input)?;
        Ok(input.max_pool2d(self.kernel, self.stride)?)
    }

    fn describe(&self) -> String {
        format!("MaxPool2d(kernel={}, stride={})", self.kernel, self.stride)
    }
}
