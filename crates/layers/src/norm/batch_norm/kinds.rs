//! The two kinds of batch norm, told apart by the inputs they take: [`BatchNorm1d`] over
//! features ((N, C) or (N, C, L)) and [`BatchNorm2d`] over the channels of images
//! ((N, C, H, W)). Everything else is the one layer [`BatchNorm`].

use super::BatchNorm;

mod sealed {
    pub trait Sealed {}
}

/// The inputs a batch-norm layer takes: [`Features`] for [`BatchNorm1d`], [`Images`]
/// for [`BatchNorm2d`]. Sealed: these are the only two.
pub trait BatchNormInput: sealed::Sealed + 'static {
    /// The layer's name, as PyTorch's class (`BatchNorm1d`).
    const NAME: &'static str;
    /// Whether `shape` is an input for `channels` channels.
    fn accepts(shape: &[usize], channels: usize) -> bool;
    /// The accepted shapes, for errors, e.g. `(N, 6, H, W)`.
    fn expected(channels: usize) -> String;
}

/// (N, C) or (N, C, L) inputs: [`BatchNorm1d`].
pub struct Features;
/// (N, C, H, W) inputs: [`BatchNorm2d`].
pub struct Images;

impl sealed::Sealed for Features {}
impl sealed::Sealed for Images {}

impl BatchNormInput for Features {
    const NAME: &'static str = "BatchNorm1d";
    fn accepts(shape: &[usize], channels: usize) -> bool {
        (shape.len() == 2 || shape.len() == 3) && shape[1] == channels
    }
    fn expected(c: usize) -> String {
        format!("(N, {c}) or (N, {c}, L)")
    }
}

impl BatchNormInput for Images {
    const NAME: &'static str = "BatchNorm2d";
    fn accepts(shape: &[usize], channels: usize) -> bool {
        shape.len() == 4 && shape[1] == channels
    }
    fn expected(c: usize) -> String {
        format!("(N, {c}, H, W)")
    }
}

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
