//! Batch normalization over the channels of images.

use crate::batch_norm::{BatchNorm, Images};

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
/// Build it with [`BatchNorm::new`] (PyTorch's defaults) or [`BatchNorm::with_config`]. Place
/// it after a convolution and before the activation. [`crate::batch_norm`] documents the
/// running-update formulas.
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
pub type BatchNorm2d = BatchNorm<Images>;
