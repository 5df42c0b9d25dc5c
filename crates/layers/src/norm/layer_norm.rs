//! Layer normalization over the last dimensions.

use norma_autograd::{Backward, BackwardContext, Param, Var};
use norma_kernels::GroupStats;
use norma_tensor::Tensor;

use crate::module::Module;
use crate::norm::affine::{check_eps, kernel_error, Affine, AffineLayout};
use crate::{LayerError, Result};

/// Options of a [`LayerNorm`]; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerNormConfig {
    /// Added to the variance before the square root (1e-5).
    pub eps: f32,
    /// Learnable element-wise γ (init 1) (true).
    pub elementwise_affine: bool,
    /// Learnable element-wise β (init 0), when `elementwise_affine` (true).
    pub bias: bool,
}

impl Default for LayerNormConfig {
    fn default() -> Self {
        LayerNormConfig {
            eps: 1e-5,
            elementwise_affine: true,
            bias: true,
        }
    }
}

/// Layer normalization (Ba, Kiros & Hinton, 2016), as PyTorch's `nn.LayerNorm`: the last
/// dimensions of the input, `normalized_shape`, hold D values per sample (or per position of
/// the leading dimensions), which are normalized by their own mean and biased variance and
/// then scaled and shifted element-wise:
///
/// `y = γ ⊙ (x − mean) / sqrt(var + eps) + β`
///
/// - input: (..., *normalized_shape), e.g. (N, 120) with `[120]`, or (N, 6, 24, 24) with
///   `[6, 24, 24]`
/// - parameters: `weight` γ and `bias` β of shape `normalized_shape` (with
///   `elementwise_affine`; `bias` can be turned off), PyTorch's names
/// - no running statistics and no dependence on the batch: training and evaluation agree, and
///   a batch of one is fine
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{LayerNorm, Module};
/// use norma_tensor::Tensor;
/// let mut ln = LayerNorm::new(&[3])?;
/// let x = Var::constant(Tensor::from_vec(&[1, 3], vec![1.0, 2.0, 6.0])?);
/// let y = ln.forward(&x)?; // mean 3, variance 14/3
/// assert!((y.value().as_slice()[2] - 1.3887).abs() < 1e-3);
/// assert!(ln.forward(&Var::constant(Tensor::ones(&[2, 4]))).is_err()); // wrong trailing shape
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub struct LayerNorm {
    normalized_shape: Vec<usize>,
    config: LayerNormConfig,
    affine: Affine,
}

impl LayerNorm {
    /// Normalization over the trailing `normalized_shape`, with PyTorch's defaults (eps 1e-5,
    /// element-wise γ and β).
    pub fn new(normalized_shape: &[usize]) -> Result<LayerNorm> {
        Self::with_config(normalized_shape, LayerNormConfig::default())
    }

    /// A layer with explicit options.
    ///
    /// Errors: an empty `normalized_shape` or one with a zero, a negative or non-finite eps.
    pub fn with_config(normalized_shape: &[usize], config: LayerNormConfig) -> Result<LayerNorm> {
        check_config("LayerNorm", normalized_shape, config.eps)?;
        let affine = config.elementwise_affine;
        Ok(LayerNorm {
            normalized_shape: normalized_shape.to_vec(),
            config,
            affine: Affine::new(normalized_shape, affine, affine && config.bias),
        })
    }

    /// The trailing shape normalized over.
    pub fn normalized_shape(&self) -> &[usize] {
        &self.normalized_shape
    }

    /// γ (`weight`), if `elementwise_affine`.
    pub fn weight(&self) -> Option<&Param> {
        self.affine.weight.as_ref()
    }

    /// β (`bias`), if `elementwise_affine` and `bias`.
    pub fn bias(&self) -> Option<&Param> {
        self.affine.bias.as_ref()
    }
}

impl Module for LayerNorm {
    fn forward(&mut self, x: &Var) -> Result<Var> {
        check_trailing(&self.describe(), x.shape(), &self.normalized_shape)?;
        let vars = self.affine.vars();
        let out = norma_kernels::layer_norm_forward(
            x.value().view(),
            &self.normalized_shape,
            vars.gamma(),
            vars.beta(),
            self.config.eps,
        )?;
        let backward = LayerNormBackward {
            name: "layer_norm",
            normalized_shape: self.normalized_shape.clone(),
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
            "LayerNorm(({},), eps={}, elementwise_affine={}, bias={})",
            dims(&self.normalized_shape),
            self.config.eps,
            self.config.elementwise_affine,
            self.config.bias
        )
    }
}

/// The check of layer and RMS norm's options: a non-empty `normalized_shape` without zeros, a
/// usable eps.
pub(crate) fn check_config(layer: &str, normalized_shape: &[usize], eps: f32) -> Result<()> {
    let bad = |reason: String| LayerError::Config {
        layer: format!("{layer}({normalized_shape:?})"),
        reason,
    };
    if normalized_shape.is_empty() || normalized_shape.contains(&0) {
        return Err(bad(
            "normalized_shape must be non-empty, without zeros".into()
        ));
    }
    check_eps(eps).map_err(bad)
}

/// The check of layer and RMS norm's input: its trailing dimensions are `normalized_shape`.
pub(crate) fn check_trailing(
    layer: &str,
    shape: &[usize],
    normalized_shape: &[usize],
) -> Result<()> {
    let k = normalized_shape.len();
    if shape.len() < k || shape[shape.len() - k..] != normalized_shape[..] {
        return Err(LayerError::Input {
            layer: layer.to_string(),
            expected: format!("(..., {})", dims(normalized_shape)),
            got: shape.to_vec(),
        });
    }
    Ok(())
}

/// `a, b, c` for a shape, as PyTorch prints a normalized shape.
pub(crate) fn dims(shape: &[usize]) -> String {
    shape
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kernels' closed-form gradient, with the forward's statistics; also RMS norm's, whose
/// statistics say they are not centred (`norma_kernels::rms_norm_backward`).
pub(crate) struct LayerNormBackward {
    pub name: &'static str,
    pub normalized_shape: Vec<usize>,
    pub stats: GroupStats,
    pub affine: AffineLayout,
}

impl Backward for LayerNormBackward {
    fn name(&self) -> &'static str {
        self.name
    }

    fn backward(&self, ctx: &BackwardContext<'_>) -> norma_autograd::Result<Vec<Option<Tensor>>> {
        let g = norma_kernels::layer_norm_backward(
            ctx.input(0).view(),
            ctx.grad_output().view(),
            &self.normalized_shape,
            &self.stats,
            self.affine.gamma(ctx),
        )
        .map_err(|e| kernel_error(self.name, e))?;
        self.affine.gradients(g, ctx)
    }
}
