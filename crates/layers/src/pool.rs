//! Average and max pooling layers (square windows, no padding), and global average pooling.

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

/// `y[n, c, 0, 0] = (1 / HW) Σ_{i,j} x[n, c, i, j]`: (N, C, H, W) → (N, C, 1, 1), PyTorch's
/// `nn.AdaptiveAvgPool2d(1)` (follow it with [`crate::Flatten`] for (N, C)). It ends the
/// ResNets of [`crate::models::resnet`]: one number per channel whatever the image size, so the
/// classifier needs no weights per position. Backward: every position receives `g[n, c] / HW`.
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{GlobalAvgPool2d, Module};
/// use norma_tensor::Tensor;
/// let x = Var::constant(Tensor::from_vec(&[1, 2, 1, 2], vec![1.0, 3.0, -2.0, 0.0])?);
/// let y = GlobalAvgPool2d.forward(&x)?;
/// assert_eq!(y.shape(), &[1, 2, 1, 1]);
/// assert_eq!(y.value().as_slice(), &[2.0, -1.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalAvgPool2d;

impl Module for GlobalAvgPool2d {
    fn forward(&mut self, input: &Var) -> Result<Var> {
        expect_4d(self.describe(), input)?;
        if input.shape()[2] == 0 || input.shape()[3] == 0 {
            return Err(LayerError::Input {
                layer: self.describe(),
                expected: "(N, C, H, W) with H, W > 0".into(),
                got: input.shape().to_vec(),
            });
        }
        Ok(input.mean_axes(&[2, 3], true)?)
    }

    fn describe(&self) -> String {
        "GlobalAvgPool2d (AdaptiveAvgPool2d(1))".into()
    }
}

#[cfg(test)]
mod tests {
    use norma_autograd::gradcheck::{check, GradCheck};
    use norma_tensor::{Rng, Tensor};

    use super::*;

    /// Default tolerances (see `norma_autograd::gradcheck`): the pool is linear, so central
    /// differences are exact up to f32 rounding of O(1) sums, far inside 5e-3 + 1%.
    #[test]
    fn global_average_pool_gradient_matches_finite_differences() {
        let x = Tensor::rand_normal(&[2, 3, 5, 4], 0.0, 1.0, &mut Rng::seed_from_u64(1));
        check(
            |v| {
                GlobalAvgPool2d
                    .forward(&v[0])
                    .map_err(|e| norma_autograd::AutogradError::Op {
                        op: "GlobalAvgPool2d",
                        source: norma_autograd::OpError::new(e),
                    })
            },
            &[x],
            &GradCheck::default(),
        )
        .unwrap();
    }

    #[test]
    fn global_average_pool_shape_values_and_errors() {
        let x = Tensor::rand_normal(&[3, 4, 7, 7], 0.0, 1.0, &mut Rng::seed_from_u64(2));
        let y = GlobalAvgPool2d.forward(&Var::constant(x.clone())).unwrap();
        assert_eq!(y.shape(), &[3, 4, 1, 1]);
        // Against an f64 mean of each (n, c) plane.
        for (plane, got) in x.as_slice().chunks(49).zip(y.value().as_slice()) {
            let want = plane.iter().map(|&v| v as f64).sum::<f64>() / 49.0;
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        let flat = Var::constant(Tensor::zeros(&[3, 4]));
        assert!(matches!(
            GlobalAvgPool2d.forward(&flat),
            Err(LayerError::Input { .. })
        ));
        let empty = Var::constant(Tensor::zeros(&[1, 1, 0, 3]));
        assert!(GlobalAvgPool2d.forward(&empty).is_err());
    }
}
