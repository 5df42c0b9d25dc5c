//! Frozen batch norm (torchvision's `FrozenBatchNorm2d`): batch norm with fixed statistics and
//! a fixed affine, all four buffers, none trained. Detection and segmentation models fine-tune
//! this way at batches of 1–2 images, where batch statistics are useless and updating γ and β
//! from them would drift.
//!
//! ```text
//! y  = weight·(x − running_mean)/sqrt(running_var + eps) + bias      in both modes
//! dx = weight/sqrt(running_var + eps)·dy                              (no parameter gradients)
//! ```
//!
//! Both passes are batch norm's eval-mode kernels (`forward_eval`, `backward_eval`), so a frozen
//! layer computes exactly what the batch norm it was made from computes in eval mode.
//! [`freeze_batch_norm`] turns every batch norm of a trained model into one.

use std::marker::PhantomData;

use norma_autograd::Var;
use norma_tensor::Tensor;

use crate::module::{join_name, Buffer, Module, TensorBuffer};
use crate::norm::affine::{check_eps, AffineLayout};
use crate::norm::batch_norm::{
    replace_batch_norms, BatchNorm, BatchNormInput, EvalBackward, Features, Images, Replacement,
};
use crate::{LayerError, Result, Sequential};

/// Batch norm with fixed statistics and affine; see the module docs.
/// [`FrozenBatchNorm1d`] takes (N, C) or (N, C, L), [`FrozenBatchNorm2d`] (N, C, H, W).
///
/// - buffers: `weight` (C), `bias` (C), `running_mean` (C), `running_var` (C), torchvision's
///   names and order; no parameters, so an optimizer never sees them
/// - the same function in training and eval mode, for any batch size
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{FrozenBatchNorm2d, Module};
/// use norma_tensor::Tensor;
/// let mut frozen = FrozenBatchNorm2d::new(3)?; // mean 0, variance 1, weight 1, bias 0
/// let x = Var::constant(Tensor::ones(&[1, 3, 2, 2]));
/// let y = frozen.forward(&x)?;
/// assert!((y.value().as_slice()[0] - 1.0).abs() < 1e-4);
/// assert!(frozen.parameters().is_empty());
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub struct FrozenBatchNorm<I: BatchNormInput> {
    num_features: usize,
    eps: f32,
    weight: TensorBuffer,
    bias: TensorBuffer,
    running_mean: TensorBuffer,
    running_var: TensorBuffer,
    input: PhantomData<I>,
}

/// Frozen batch norm of (N, C) or (N, C, L) features.
pub type FrozenBatchNorm1d = FrozenBatchNorm<Features>;
/// Frozen batch norm of the channels of (N, C, H, W) images (torchvision's `FrozenBatchNorm2d`).
pub type FrozenBatchNorm2d = FrozenBatchNorm<Images>;

impl<I: BatchNormInput> FrozenBatchNorm<I> {
    /// A layer for `num_features` channels with eps 1e-5 and torchvision's initial buffers
    /// (weight 1, bias 0, mean 0, variance 1).
    pub fn new(num_features: usize) -> Result<Self> {
        Self::with_eps(num_features, 1e-5)
    }

    /// A layer with an explicit eps.
    ///
    /// Errors: no channels, a negative or non-finite eps.
    pub fn with_eps(num_features: usize, eps: f32) -> Result<Self> {
        let bad = |reason: String| LayerError::Config {
            layer: format!("Frozen{}({num_features})", I::NAME),
            reason,
        };
        if num_features == 0 {
            return Err(bad("num_features must be positive".into()));
        }
        check_eps(eps).map_err(bad)?;
        let c = [num_features];
        Ok(FrozenBatchNorm {
            num_features,
            eps,
            weight: TensorBuffer::new(Tensor::ones(&c)),
            bias: TensorBuffer::new(Tensor::zeros(&c)),
            running_mean: TensorBuffer::new(Tensor::zeros(&c)),
            running_var: TensorBuffer::new(Tensor::ones(&c)),
            input: PhantomData,
        })
    }

    /// The frozen copy of `bn`: its running statistics, its γ and β (1 and 0 without an
    /// affine), its eps. Later changes to `bn` do not reach the copy.
    ///
    /// Errors: `bn` keeps no running statistics (there is nothing to freeze).
    pub fn from_batch_norm(bn: &BatchNorm<I>) -> Result<Self> {
        let (Some(mean), Some(var)) = (bn.running_mean(), bn.running_var()) else {
            return Err(LayerError::Config {
                layer: bn.describe(),
                reason: "has no running statistics to freeze".into(),
            });
        };
        let frozen = Self::with_eps(bn.num_features(), bn.config().eps)?;
        frozen.running_mean.set(mean)?;
        frozen.running_var.set(var)?;
        if let Some(w) = bn.weight() {
            frozen.weight.set(Tensor::clone(&w.value()))?;
        }
        if let Some(b) = bn.bias() {
            frozen.bias.set(Tensor::clone(&b.value()))?;
        }
        Ok(frozen)
    }

    /// The fixed (weight, bias, running_mean, running_var).
    pub fn buffers(&self) -> [Tensor; 4] {
        [
            self.weight.get(),
            self.bias.get(),
            self.running_mean.get(),
            self.running_var.get(),
        ]
    }
}

impl<I: BatchNormInput> Module for FrozenBatchNorm<I> {
    fn forward(&mut self, x: &Var) -> Result<Var> {
        if !I::accepts(x.shape(), self.num_features) {
            return Err(LayerError::Input {
                layer: self.describe(),
                expected: I::expected(self.num_features),
                got: x.shape().to_vec(),
            });
        }
        let [weight, bias, mean, var] = self.buffers();
        let y = norma_kernels::forward_eval(
            x.value().view(),
            mean.as_slice(),
            var.as_slice(),
            Some(weight.as_slice()),
            Some(bias.as_slice()),
            self.eps,
        )?;
        let backward = EvalBackward {
            mean,
            var,
            eps: self.eps,
            affine: AffineLayout {
                weight: false,
                bias: false,
            },
            fixed_gamma: Some(weight),
        };
        Ok(Var::from_op(&[x], Tensor::from_array(y), backward))
    }

    fn collect_buffers(&self, prefix: &str, out: &mut Vec<(String, Buffer)>) {
        for (name, buffer) in [
            ("weight", &self.weight),
            ("bias", &self.bias),
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ] {
            out.push((join_name(prefix, name), Buffer::F32(buffer.clone())));
        }
    }

    fn describe(&self) -> String {
        format!("Frozen{}({}, eps={})", I::NAME, self.num_features, self.eps)
    }
}

/// Returns `model` with every batch norm (BatchNorm1d and BatchNorm2d, inside nested
/// `Sequential`s too) replaced by its frozen copy under the same name, so the `state_dict`
/// keeps its keys except `num_batches_tracked` (torchvision's frozen layers have none), and
/// γ, β leave the parameters. torchvision's `FrozenBatchNorm2d.convert_frozen_batchnorm`.
///
/// Build the optimizer after freezing: the frozen buffers are no parameters any more.
///
/// Errors: a batch norm without running statistics; a batch norm inside a container other
/// than `Sequential` (a `BasicBlock`), which is named rather than left unfrozen.
pub fn freeze_batch_norm(model: Sequential) -> Result<Sequential> {
    replace_batch_norms(model, Replacement::Frozen)
}
