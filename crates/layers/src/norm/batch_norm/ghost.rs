//! Ghost batch normalization (Hoffer, Hubara & Soudry, *Train longer, generalize better:
//! closing the generalization gap in large batch training of neural networks*, NeurIPS 2017):
//! batch norm whose training statistics are those of small "ghost" batches inside each batch,
//! so that a large batch keeps the regularizing noise of small-batch statistics.
//!
//! The N samples of a batch are cut, in order, into G = ⌈N/v⌉ ghost batches of v samples (the
//! last one holds the N − (G − 1)·v left over). Each ghost batch g is batch norm in training
//! mode on its own, with its own μ_g, σ²_g over its M_g values per channel, and its own
//! backward; dγ and dβ add up over the ghost batches:
//!
//! ```text
//! y_g  = γ·(x_g − μ_g)/sqrt(σ²_g + eps) + β                   (batch norm's kernels, per ghost)
//! dx_g = batch norm's dx of ghost g        dγ = Σ_g dγ_g      dβ = Σ_g dβ_g
//! ```
//!
//! **One running estimate.** The running statistics are updated once per batch, with batch
//! norm's momentum rule, from the ghost statistics pooled by their sizes (M = Σ M_g):
//!
//! ```text
//! mean = Σ_g (M_g/M)·μ_g      unbiased var = Σ_g (M_g/M)·σ²_g·M_g/(M_g − 1)
//! ```
//!
//! the average of the estimates each ghost batch would give. With v ≥ N there is one ghost
//! batch and the layer is batch norm bit for bit (statistics, output, gradients and running
//! update). Eval mode is batch norm's.
//!
//! **Errors.** v = 0 is refused when the layer is built; a ghost batch with one value per
//! channel (a last ghost batch of one sample of (N, C) features) is batch norm's error, naming
//! that ghost batch's shape.

use ndarray::{ArrayD, ArrayViewD};
use norma_autograd::{Backward, BackwardContext, Var};
use norma_kernels::{BatchStats, KernelError};
use norma_tensor::{Tensor, TensorError};

use super::{
    replace_batch_norms, BatchNorm, BatchNormConfig, BatchNormInput, Features, Images, Replacement,
};
use crate::module::{Mode, Module};
use crate::norm::affine::{gradients_from_f64, kernel_error, AffineLayout};
use crate::{LayerError, Result, Sequential};

/// Ghost batch norm over the channels (dimension 1) of its input; see the module docs.
/// [`GhostBatchNorm1d`] takes (N, C) or (N, C, L), [`GhostBatchNorm2d`] (N, C, H, W).
///
/// - parameters and buffers: batch norm's (`weight`, `bias`, `running_mean`, `running_var`,
///   `num_batches_tracked`), so a checkpoint moves between the two layers
/// - training: statistics over ghost batches of `virtual_batch_size` samples; eval: the
///   running statistics
///
/// ```
/// use norma_autograd::Var;
/// use norma_layers::{BatchNormConfig, GhostBatchNorm1d, Module};
/// use norma_tensor::{Tensor, TensorError};
/// let mut gbn = GhostBatchNorm1d::new(1, 2)?;
/// // Two ghost batches, [0, 2] and [10, 14]: each is normalized on its own.
/// let x = Var::constant(Tensor::from_vec(&[4, 1], vec![0., 2., 10., 14.])?);
/// let y = gbn.forward(&x)?;
/// let y = y.value().as_slice();
/// assert!((y[0] + 1.0).abs() < 1e-4 && (y[2] + 1.0).abs() < 1e-4);
/// assert!(GhostBatchNorm1d::new(1, 0).is_err());
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub struct GhostBatchNorm<I: BatchNormInput> {
    bn: BatchNorm<I>,
    virtual_batch_size: usize,
}

/// Ghost batch norm of (N, C) or (N, C, L) features.
pub type GhostBatchNorm1d = GhostBatchNorm<Features>;
/// Ghost batch norm of the channels of (N, C, H, W) images.
pub type GhostBatchNorm2d = GhostBatchNorm<Images>;

impl<I: BatchNormInput> GhostBatchNorm<I> {
    /// A layer for `num_features` channels and ghost batches of `virtual_batch_size` samples,
    /// with batch norm's defaults.
    pub fn new(num_features: usize, virtual_batch_size: usize) -> Result<Self> {
        Self::with_config(num_features, virtual_batch_size, BatchNormConfig::default())
    }

    /// A layer with explicit batch-norm options.
    ///
    /// Errors: those of [`BatchNorm::with_config`]; a virtual batch size of 0.
    pub fn with_config(
        num_features: usize,
        virtual_batch_size: usize,
        config: BatchNormConfig,
    ) -> Result<Self> {
        Self::from_batch_norm(
            BatchNorm::with_config(num_features, config)?,
            virtual_batch_size,
        )
    }

    /// `bn` with ghost batches of `virtual_batch_size` samples: the same parameters and buffers
    /// (handles), options and mode. Ghost batch norm is not synchronized: a communicator `bn`
    /// had is dropped.
    ///
    /// Errors: a virtual batch size of 0.
    pub fn from_batch_norm(mut bn: BatchNorm<I>, virtual_batch_size: usize) -> Result<Self> {
        if virtual_batch_size == 0 {
            return Err(LayerError::Config {
                layer: format!("Ghost{}({})", I::NAME, bn.num_features),
                reason: "virtual_batch_size must be positive".into(),
            });
        }
        bn.sync = None;
        Ok(GhostBatchNorm {
            bn,
            virtual_batch_size,
        })
    }

    /// Samples per ghost batch v.
    pub fn virtual_batch_size(&self) -> usize {
        self.virtual_batch_size
    }

    /// The batch norm underneath: its options, parameters (`weight`, `bias`) and running
    /// statistics, as [`BatchNorm`]'s accessors give them.
    pub fn batch_norm(&self) -> &BatchNorm<I> {
        &self.bn
    }

    /// The batch norm underneath, mutably: its training-mode statistics are this layer's
    /// (precise statistics recompute them through this layer's forward).
    pub(crate) fn batch_norm_mut(&mut self) -> &mut BatchNorm<I> {
        &mut self.bn
    }

    /// Training mode: batch norm on each ghost batch, one running update.
    fn forward_train(&self, x: &Var) -> Result<Var> {
        let bn = &self.bn;
        let vars = bn.affine.vars();
        let (gamma, beta) = (vars.gamma(), vars.beta());
        let mut output = Vec::with_capacity(x.value().len());
        let mut stats = Vec::new();
        if x.shape()[0] == 0 {
            return Err(KernelError::SingleValuePerChannel {
                shape: x.shape().to_vec(),
            }
            .into());
        }
        for ghost in ghosts(x.value(), self.virtual_batch_size)? {
            let out = norma_kernels::forward_train(ghost, gamma, beta, bn.config.eps)?;
            append(&mut output, &out.output);
            stats.push(out.stats);
        }
        if let Some(running) = &bn.running {
            bn.update_running(running, &pooled(&stats)?)?;
        }
        let backward = GhostBackward {
            virtual_batch_size: self.virtual_batch_size,
            stats,
            affine: vars.layout(),
        };
        let y = Tensor::from_vec(x.shape(), output)?;
        Ok(vars.record(x, y, backward))
    }
}

/// `model` with every batch norm (BatchNorm1d and BatchNorm2d, inside nested `Sequential`s
/// too) made a ghost batch norm with virtual batches of `virtual_batch_size` samples
/// ([`GhostBatchNorm::from_batch_norm`]), under the same names and with the same weights and
/// `state_dict`.
///
/// Errors: a virtual batch size of 0, a batch norm inside a container other than `Sequential`
/// (named).
pub fn convert_ghost_batch_norm(
    model: Sequential,
    virtual_batch_size: usize,
) -> Result<Sequential> {
    replace_batch_norms(model, Replacement::Ghost(virtual_batch_size))
}

/// The ghost batches of `x`, in order: views of runs of `v` samples, the last one shorter if v
/// does not divide N.
fn ghosts(x: &Tensor, v: usize) -> std::result::Result<Vec<ArrayViewD<'_, f32>>, TensorError> {
    let n = x.shape()[0];
    (0..n.div_ceil(v))
        .map(|g| x.samples(g * v, v.min(n - g * v)))
        .collect()
}

/// Appends `values` in row-major order (by slice: the kernels' outputs are contiguous, and an
/// element-by-element walk of a dynamic-rank array costs nanoseconds per value).
fn append(out: &mut Vec<f32>, values: &ArrayD<f32>) {
    match values.as_slice() {
        Some(slice) => out.extend_from_slice(slice),
        None => out.extend(values.iter()),
    }
}

/// The statistics the running update takes (module docs): a single ghost batch's own, or the
/// size-weighted pool of several, expressed as biased moments of M values whose unbiased
/// variance is the pooled one.
fn pooled(stats: &[BatchStats]) -> Result<BatchStats> {
    if let [one] = stats {
        return Ok(one.clone());
    }
    let total: usize = stats.iter().map(BatchStats::count).sum();
    let m = total as f64;
    let c = stats[0].channels();
    let mut mean = vec![0.0; c];
    let mut unbiased = vec![0.0; c];
    for s in stats {
        let w = s.count() as f64 / m;
        for (ch, u) in s.unbiased_var().iter().enumerate() {
            mean[ch] += w * s.mean()[ch];
            unbiased[ch] += w * u;
        }
    }
    let var = unbiased.iter().map(|u| u * (m - 1.0) / m).collect();
    Ok(BatchStats::new(total, mean, var, stats[0].eps())?)
}

impl<I: BatchNormInput> Module for GhostBatchNorm<I> {
    fn forward(&mut self, x: &Var) -> Result<Var> {
        self.bn.check_input_of(x.shape(), &|| self.describe())?;
        match self.bn.mode {
            Mode::Eval => self.bn.forward(x),
            Mode::Train => self.forward_train(x),
        }
    }

    state_of_batch_norm!();

    fn describe(&self) -> String {
        format!(
            "Ghost{}, virtual_batch_size={}",
            self.bn.describe().trim_end_matches(')'),
            self.virtual_batch_size
        ) + ")"
    }
}

/// Batch norm's backward on each ghost batch; dγ and dβ summed in f64.
struct GhostBackward {
    virtual_batch_size: usize,
    stats: Vec<BatchStats>,
    affine: AffineLayout,
}

impl Backward for GhostBackward {
    fn name(&self) -> &'static str {
        "ghost_batch_norm"
    }

    fn backward(&self, ctx: &BackwardContext<'_>) -> norma_autograd::Result<Vec<Option<Tensor>>> {
        let (x, dy, gamma) = (ctx.input(0), ctx.grad_output(), self.affine.gamma(ctx));
        let v = self.virtual_batch_size;
        let (xs, dys) = (ghosts(x, v)?, ghosts(dy, v)?);
        let c = self.stats[0].channels();
        let mut dx = Vec::with_capacity(x.len());
        let (mut dgamma, mut dbeta) = (vec![0.0f64; c], vec![0.0f64; c]);
        for ((x, dy), stats) in xs.into_iter().zip(dys).zip(&self.stats) {
            let g = norma_kernels::backward_train(x, dy, stats, gamma)
                .map_err(|e| kernel_error("ghost_batch_norm", e))?;
            append(&mut dx, &g.dx);
            for ch in 0..c {
                dgamma[ch] += g.dgamma[ch] as f64;
                dbeta[ch] += g.dbeta[ch] as f64;
            }
        }
        let dx = Tensor::from_vec(x.shape(), dx)?;
        let g = gradients_from_f64(dx, &dgamma, &dbeta);
        self.affine.gradients(g, ctx)
    }
}
