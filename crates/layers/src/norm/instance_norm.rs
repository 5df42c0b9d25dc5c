//! Instance normalization over the positions of each channel of each sample.

use norma_autograd::{Param, Var};
use norma_kernels::KernelError;

use crate::module::Module;
use crate::norm::group_norm::{GroupNorm, GroupNormConfig};
use crate::{LayerError, Result};

/// Options of an [`InstanceNorm`]; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceNormConfig {
    /// Added to the variance before the square root (1e-5).
    pub eps: f32,
    /// Learnable per-channel γ (init 1) and β (init 0) (false, as PyTorch).
    pub affine: bool,
}

impl Default for InstanceNormConfig {
    fn default() -> Self {
        InstanceNormConfig {
            eps: 1e-5,
            affine: false,
        }
    }
}

/// Instance normalization (Ulyanov, Vedaldi & Lempitsky, *Instance Normalization: The Missing
/// Ingredient for Fast Stylization*, 2016), as PyTorch's `nn.InstanceNorm1d`/`nn.InstanceNorm2d`:
/// each channel of each sample is normalized with its own mean and biased variance over its
/// positions, then scaled and shifted per channel:
///
/// `y = γ_c · (x − mean_{n,c}) / sqrt(var_{n,c} + eps) + β_c`
///
/// - input: (N, C, L) for [`InstanceNorm1d`], (N, C, H, W) for [`InstanceNorm2d`], with more
///   than one position (PyTorch's rule)
/// - parameters: `weight` γ (C) and `bias` β (C) with `affine` (off by default), PyTorch's names
/// - no running statistics (PyTorch's default `track_running_stats=False`; tracking them is not
///   offered): training and evaluation agree, a batch of one is fine
///
/// It is group norm with one channel per group, and runs on the group-norm kernels (f64
/// statistics, bitwise identical for any thread count).
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{InstanceNorm2d, Module};
/// use norma_tensor::{Rng, Tensor};
/// let mut inorm = InstanceNorm2d::new(3)?;
/// let x = Var::constant(Tensor::rand_normal(&[1, 3, 4, 4], 5.0, 2.0, &mut Rng::seed_from_u64(0)));
/// let y = inorm.forward(&x)?;
/// let first: f32 = y.value().as_slice()[..16].iter().sum();
/// assert!(first.abs() < 1e-4); // each (sample, channel) has mean 0
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub struct InstanceNorm<const D: usize> {
    num_features: usize,
    config: InstanceNormConfig,
    inner: GroupNorm,
}

/// Instance norm of (N, C, L) sequences.
pub type InstanceNorm1d = InstanceNorm<1>;
/// Instance norm of (N, C, H, W) images.
pub type InstanceNorm2d = InstanceNorm<2>;

impl<const D: usize> InstanceNorm<D> {
    /// A layer for `num_features` channels with PyTorch's defaults (eps 1e-5, no affine).
    pub fn new(num_features: usize) -> Result<Self> {
        Self::with_config(num_features, InstanceNormConfig::default())
    }

    /// A layer with explicit options.
    ///
    /// Errors: no channels, a negative or non-finite eps.
    pub fn with_config(num_features: usize, config: InstanceNormConfig) -> Result<Self> {
        let gn = GroupNormConfig {
            eps: config.eps,
            affine: config.affine,
        };
        let inner =
            GroupNorm::with_config(num_features, num_features, gn).map_err(|e| match e {
                LayerError::Config { reason, .. } => LayerError::Config {
                    layer: format!("InstanceNorm{D}d({num_features})"),
                    reason,
                },
                other => other,
            })?;
        Ok(InstanceNorm {
            num_features,
            config,
            inner,
        })
    }

    /// γ (`weight`), if `affine`.
    pub fn weight(&self) -> Option<&Param> {
        self.inner.weight()
    }

    /// β (`bias`), if `affine`.
    pub fn bias(&self) -> Option<&Param> {
        self.inner.bias()
    }
}

impl<const D: usize> Module for InstanceNorm<D> {
    fn forward(&mut self, x: &Var) -> Result<Var> {
        let shape = x.shape();
        if shape.len() != 2 + D || shape[1] != self.num_features || shape[2..].contains(&0) {
            let positions = if D == 1 { "L" } else { "H, W" };
            return Err(LayerError::Input {
                layer: self.describe(),
                expected: format!("(N, {}, {positions})", self.num_features),
                got: shape.to_vec(),
            });
        }
        if shape[2..].iter().product::<usize>() < 2 {
            return Err(KernelError::SingleValuePerChannel {
                shape: shape.to_vec(),
            }
            .into());
        }
        self.inner.forward(x)
    }

    fn collect_params(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        self.inner.collect_params(prefix, out);
    }

    fn describe(&self) -> String {
        format!(
            "InstanceNorm{D}d({}, eps={}, affine={}, track_running_stats=false)",
            self.num_features, self.config.eps, self.config.affine
        )
    }
}
