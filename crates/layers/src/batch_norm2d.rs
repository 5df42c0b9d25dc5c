//! Batch normalization over the channels of images.

use crate::batch_norm::{batch_norm_layer, BatchNorm};
use crate::Result;

/// Batch norm per channel of an (N, C, H, W) input: each channel is normalized with its mean
/// and biased variance over the batch and all pixels (M = N·H·W values), then scaled and
/// shifted:
///
/// `y = γ_c · (x − mean_c) / sqrt(var_c + eps) + β_c`
///
/// - parameters: `weight` γ (C), init 1; `bias` β (C), init 0 (with `affine`)
/// - buffers: `running_mean` (C), `running_var` (C), `num_batches_tracked` (int64 scalar)
/// - training: batch statistics; updates the running statistics (PyTorch's momentum rule,
///   unbiased variance). An input with one value per channel (N·H·W = 1) is an error.
/// - eval: running statistics; any batch size, including a single image.
///
/// Place it after a convolution and before the activation. The `batch_norm` module
/// documents the running-update formulas.
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{BatchNorm2d, Module};
/// use norma_tensor::{Rng, Tensor};
/// let mut bn = BatchNorm2d::new(6)?;
/// let x = Var::constant(Tensor::rand_normal(&[8, 6, 5, 5], 3.0, 2.0, &mut Rng::seed_from_u64(0)));
/// let y = bn.forward(&x)?;
/// assert!(y.value().mean_all().abs() < 1e-5);
/// bn.eval();
/// let one_image = Var::constant(Tensor::ones(&[1, 6, 5, 5]));
/// assert_eq!(bn.forward(&one_image)?.shape(), &[1, 6, 5, 5]);
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub struct BatchNorm2d {
    inner: BatchNorm,
}

impl BatchNorm2d {
    fn check_input(&self, shape: &[usize]) -> Result<()> {
        let c = self.inner.num_features;
        if shape.len() == 4 && shape[1] == c {
            Ok(())
        } else {
            Err(self.input_error(format!("(N, {c}, H, W)"), shape))
        }
    }
}

batch_norm_layer!(BatchNorm2d);
