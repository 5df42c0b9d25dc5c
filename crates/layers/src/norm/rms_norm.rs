//! Root-mean-square normalization over the last dimensions.

use norma_autograd::{Param, Var};
use norma_tensor::Tensor;

use crate::module::Module;
use crate::norm::affine::Affine;
use crate::norm::layer_norm::{check_config, check_trailing, dims, LayerNormBackward};
use crate::Result;

/// Options of an [`RmsNorm`]; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsNormConfig {
    /// Added to the mean square before the square root; `None` (the default) is PyTorch's
    /// `eps=None`, the machine epsilon of f32 (`f32::EPSILON`, 1.19e-7).
    pub eps: Option<f32>,
    /// Learnable element-wise γ (init 1) (true).
    pub elementwise_affine: bool,
}

impl Default for RmsNormConfig {
    fn default() -> Self {
        RmsNormConfig {
            eps: None,
            elementwise_affine: true,
        }
    }
}

/// RMS normalization (Zhang & Sennrich, *Root Mean Square Layer Normalization*, NeurIPS 2019),
/// as PyTorch's `nn.RMSNorm`: the D values of the trailing `normalized_shape` are divided by
/// their root mean square and scaled element-wise, without centring and without a bias:
///
/// `y = γ ⊙ x / sqrt(mean(x²) + eps)`
///
/// - input: (..., *normalized_shape)
/// - parameters: `weight` γ of shape `normalized_shape` (with `elementwise_affine`), PyTorch's
///   name
/// - no running statistics and no batch dependence; y is invariant to scaling x by any c > 0
///   (up to eps)
///
/// Runs on the layer-norm kernels without their centring (`norma_kernels::rms_norm_forward`,
/// and layer norm's backward node, which the statistics switch to RMS norm's derivative): the
/// mean square in f64, bitwise identical for any thread count.
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{Module, RmsNorm};
/// use norma_tensor::Tensor;
/// let mut rms = RmsNorm::new(&[2])?;
/// let x = Var::constant(Tensor::from_vec(&[1, 2], vec![3.0, 4.0])?);
/// let y = rms.forward(&x)?; // divided by sqrt((9 + 16)/2)
/// assert!((y.value().as_slice()[1] - 4.0 / 12.5f32.sqrt()).abs() < 1e-5);
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub struct RmsNorm {
    normalized_shape: Vec<usize>,
    eps: f32,
    config: RmsNormConfig,
    affine: Affine,
}

impl RmsNorm {
    /// Normalization over the trailing `normalized_shape`, with PyTorch's defaults (eps of
    /// f32, element-wise γ).
    pub fn new(normalized_shape: &[usize]) -> Result<RmsNorm> {
        Self::with_config(normalized_shape, RmsNormConfig::default())
    }

    /// A layer with explicit options.
    ///
    /// Errors: an empty `normalized_shape` or one with a zero, a negative or non-finite eps.
    pub fn with_config(normalized_shape: &[usize], config: RmsNormConfig) -> Result<RmsNorm> {
        let eps = config.eps.unwrap_or(f32::EPSILON);
        check_config("RMSNorm", normalized_shape, eps)?;
        let affine = config.elementwise_affine;
        Ok(RmsNorm {
            normalized_shape: normalized_shape.to_vec(),
            eps,
            config,
            affine: Affine::new(normalized_shape, affine, false),
        })
    }

    /// The trailing shape normalized over.
    pub fn normalized_shape(&self) -> &[usize] {
        &self.normalized_shape
    }

    /// The eps in use.
    pub fn eps(&self) -> f32 {
        self.eps
    }

    /// γ (`weight`), if `elementwise_affine`.
    pub fn weight(&self) -> Option<&Param> {
        self.affine.weight.as_ref()
    }
}

impl Module for RmsNorm {
    fn forward(&mut self, x: &Var) -> Result<Var> {
        check_trailing(&self.describe(), x.shape(), &self.normalized_shape)?;
        let vars = self.affine.vars();
        let out = norma_kernels::rms_norm_forward(
            x.value().view(),
            &self.normalized_shape,
            vars.gamma(),
            self.eps,
        )?;
        let backward = LayerNormBackward {
            name: "rms_norm",
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
        let eps = self
            .config
            .eps
            .map_or("None".to_string(), |e| e.to_string());
        format!(
            "RMSNorm(({},), eps={eps}, elementwise_affine={})",
            dims(&self.normalized_shape),
            self.config.elementwise_affine
        )
    }
}
