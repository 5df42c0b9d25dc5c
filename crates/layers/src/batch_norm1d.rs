//! Batch normalization over features.

use crate::batch_norm::{BatchNorm, Features};

/// Batch norm per feature: for input (N, C) (or (N, C, L)), each of the C features is
/// normalized with its mean and biased variance over the batch (and L), then scaled and
/// shifted:
///
/// `y = γ · (x − mean) / sqrt(var + eps) + β`
///
/// - parameters: `weight` γ (C), init 1; `bias` β (C), init 0 (with `affine`)
/// - buffers: `running_mean` (C), `running_var` (C), `num_batches_tracked` (int64 scalar)
/// - training: batch statistics; updates the running statistics (PyTorch's momentum rule,
///   unbiased variance). A batch with one value per feature (N = 1 for (N, C)) is an error.
/// - eval: running statistics; any batch size, including 1.
///
/// Build it with [`BatchNorm::new`] (PyTorch's defaults) or [`BatchNorm::with_config`]. Place
/// it after a linear layer and before the activation. [`crate::batch_norm`] documents the
/// running-update formulas.
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{BatchNorm1d, Module};
/// use norma_tensor::Tensor;
/// let mut bn = BatchNorm1d::new(3)?;
/// let x = Var::constant(Tensor::from_vec(&[2, 3], vec![1., 2., 3., 3., 2., 1.])?);
/// let y = bn.forward(&x)?; // per feature: mean 0, variance 1 (up to eps)
/// assert!((y.value().as_slice()[0] + 1.0).abs() < 1e-4);
/// let one = Var::constant(Tensor::ones(&[1, 3]));
/// assert!(bn.forward(&one).is_err()); // training needs more than one value per feature
/// bn.eval();
/// assert!(bn.forward(&one).is_ok()); // eval uses the running statistics
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub type BatchNorm1d = BatchNorm<Features>;
