//! Group normalization over the channels of a sample.

use norma_autograd::{Backward, BackwardContext, Param, Var};
use norma_kernels::GroupStats;
use norma_tensor::Tensor;

use crate::module::Module;
use crate::norm::affine::{check_eps, kernel_error, Affine, AffineLayout};
use crate::{LayerError, Result};

/// Options of a [`GroupNorm`]; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupNormConfig {
    /// Added to the variance before the square root (1e-5).
    pub eps: f32,
    /// Learnable per-channel γ (init 1) and β (init 0) (true).
    pub affine: bool,
}

impl Default for GroupNormConfig {
    fn default() -> Self {
        GroupNormConfig {
            eps: 1e-5,
            affine: true,
        }
    }
}

/// Group normalization (Wu & He, 2018): the C channels of each sample are split into G groups
/// of C/G channels, and each (sample, group) is normalized with its own mean and biased
/// variance over its channels and positions, then scaled and shifted per channel:
///
/// `y = γ_c · (x − mean_{n,g}) / sqrt(var_{n,g} + eps) + β_c`
///
/// - input: (N, C, ...) with C = `num_channels` (images (N, C, H, W), features (N, C))
/// - parameters: `weight` γ (C), init 1; `bias` β (C), init 0 (with `affine`), PyTorch's names
/// - no running statistics: training and evaluation compute the same thing, a batch of one
///   sample is fine, and a sample's output does not depend on the rest of the batch — the
///   remedy for batch norm's small-batch problem
/// - G = 1 normalizes over all of (C, H, W) (layer norm with a per-channel affine); G = C
///   normalizes each channel alone (instance norm)
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{GroupNorm, Module};
/// use norma_tensor::{Rng, Tensor};
/// let mut gn = GroupNorm::new(2, 6)?;
/// let one_image = Var::constant(Tensor::rand_normal(&[1, 6, 5, 5], 3.0, 2.0, &mut Rng::seed_from_u64(0)));
/// let y = gn.forward(&one_image)?; // a batch of one is fine
/// assert!(y.value().mean_all().abs() < 1e-5);
/// assert!(GroupNorm::new(4, 6).is_err()); // 6 channels do not split into 4 groups
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub struct GroupNorm {
    num_groups: usize,
    num_channels: usize,
    config: GroupNormConfig,
    affine: Affine,
}

impl GroupNorm {
    /// `num_channels` channels in `num_groups` groups, with PyTorch's defaults (eps 1e-5,
    /// affine).
    pub fn new(num_groups: usize, num_channels: usize) -> Result<GroupNorm> {
        Self::with_config(num_groups, num_channels, GroupNormConfig::default())
    }

    /// A layer with explicit options.
    ///
    /// Errors: no channels or groups, a group count that does not divide the channels, a
    /// negative or non-finite eps.
    pub fn with_config(
        num_groups: usize,
        num_channels: usize,
        config: GroupNormConfig,
    ) -> Result<GroupNorm> {
        let bad = |reason: String| LayerError::Config {
            layer: format!("GroupNorm({num_groups}, {num_channels})"),
            reason,
        };
        if num_groups == 0 || num_channels == 0 || !num_channels.is_multiple_of(num_groups) {
            return Err(bad(format!(
                "num_channels ({num_channels}) must be a positive multiple of num_groups ({num_groups})"
            )));
        }
        check_eps(config.eps).map_err(bad)?;
        Ok(GroupNorm {
            num_groups,
            num_channels,
            config,
            affine: Affine::new(&[num_channels], config.affine, config.affine),
        })
    }

    /// Groups G.
    pub fn num_groups(&self) -> usize {
        self.num_groups
    }

    /// Channels C.
    pub fn num_channels(&self) -> usize {
        self.num_channels
    }

    /// γ (`weight`), if `affine`.
    pub fn weight(&self) -> Option<&Param> {
        self.affine.weight.as_ref()
    }

    /// β (`bias`), if `affine`.
    pub fn bias(&self) -> Option<&Param> {
        self.affine.bias.as_ref()
    }
}

impl Module for GroupNorm {
    fn forward(&mut self, x: &Var) -> Result<Var> {
        let shape = x.shape();
        if shape.len() < 2 || shape[1] != self.num_channels || shape[2..].contains(&0) {
            return Err(LayerError::Input {
                layer: self.describe(),
                expected: format!("(N, {}, ...)", self.num_channels),
                got: shape.to_vec(),
            });
        }
        let vars = self.affine.vars();
        let out = norma_kernels::group_norm_forward(
            x.value().view(),
            self.num_groups,
            vars.gamma(),
            vars.beta(),
            self.config.eps,
        )?;
        let backward = GroupNormBackward {
            stats: out.stats,
            affine: vars.layout(),
        };
        Ok(vars.record(x, Tensor::from_array(out.output), backward))
    }

    fn collect_params(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        self.affine.collect(prefix, out);
    }

    fn describe(&self) -> String {
        format!(
            "GroupNorm({}, {}, eps={}, affine={})",
            self.num_groups, self.num_channels, self.config.eps, self.config.affine
        )
    }
}

/// The kernels' closed-form gradient, with the forward's statistics.
struct GroupNormBackward {
    stats: GroupStats,
    affine: AffineLayout,
}

impl Backward for GroupNormBackward {
    fn name(&self) -> &'static str {
        "group_norm"
    }

    fn backward(&self, ctx: &BackwardContext<'_>) -> norma_autograd::Result<Vec<Option<Tensor>>> {
        let g = norma_kernels::group_norm_backward(
            ctx.input(0).view(),
            ctx.grad_output().view(),
            &self.stats,
            self.affine.gamma(ctx),
        )
        .map_err(|e| kernel_error("group_norm", e))?;
        self.affine.gradients(g, ctx)
    }
}
