//! Batch normalization: [`BatchNorm`], the layer behind [`BatchNorm1d`] and
//! [`BatchNorm2d`], and the autograd operation whose forward and backward are the fused
//! kernels of `norma-kernels`.
//!
//! Per channel c, with M values per channel in the batch (N for (N, C) inputs, N·L or N·H·W
//! otherwise):
//!
//! ```text
//! training:  y = γ_c · (x − μ_B) / sqrt(σ²_B + eps) + β_c      μ_B, σ²_B: batch mean, biased variance
//!            running_mean ← (1 − m)·running_mean + m·μ_B
//!            running_var  ← (1 − m)·running_var  + m·σ²_B·M/(M − 1)
//! eval:      y = γ_c · (x − running_mean) / sqrt(running_var + eps) + β_c
//! ```
//!
//! **Example-weighted inference** ([`BatchNorm::set_example_weight`], off by default): eval
//! mode mixes each example's own statistics into the running ones with a weight α (Summers &
//! Dinneen, 2020; the formulas are in `example_weighted.rs`).
//!
//! m is the momentum (0.1), or 1/num_batches_tracked when momentum is `None` (cumulative
//! average). This is PyTorch's convention, including the unbiased running variance.
//!
//! **Synchronized.** A layer given a communicator ([`BatchNorm::synchronized`],
//! [`crate::convert_sync_batch_norm`]) is PyTorch's `SyncBatchNorm`: in training mode μ_B, σ²_B
//! and M are those of the global batch of every process of a data-parallel job (see
//! [`crate::sync_batch_norm`]). Everything else — parameters, buffers, eval mode, the running
//! update — is this one layer.

use std::marker::PhantomData;
use std::rc::Rc;

use norma_autograd::{Param, Var};
use norma_distributed::Communicator;
use norma_tensor::Tensor;

use crate::module::{join_name, Buffer, CounterBuffer, Mode, Module, TensorBuffer};
use crate::norm::affine::{check_eps, Affine};
use crate::norm::sync_batch_norm::Synced;
use crate::{LayerError, Result};

/// The [`Module`] methods of a layer built on a batch norm (a field `bn`): its parameters,
/// buffers and mode are the batch norm's.
macro_rules! state_of_batch_norm {
    () => {
        fn collect_params(&self, prefix: &str, out: &mut Vec<(String, norma_autograd::Param)>) {
            self.bn.collect_params(prefix, out);
        }

        fn collect_buffers(&self, prefix: &str, out: &mut Vec<(String, crate::module::Buffer)>) {
            self.bn.collect_buffers(prefix, out);
        }

        fn set_mode(&mut self, mode: crate::module::Mode) {
            self.bn.set_mode(mode);
        }
    };
}

mod eval;
mod example_weighted;
mod find;
mod ghost;
mod kinds;
mod renorm;
mod train;

pub(crate) use eval::EvalBackward;
pub use example_weighted::set_example_weight;
pub(crate) use find::{
    as_batch_norm_mut, for_each_batch_norm_mut, for_each_running_stats_mut, replace_batch_norms,
    BatchNormLayer, Replacement,
};
pub use ghost::{convert_ghost_batch_norm, GhostBatchNorm, GhostBatchNorm1d, GhostBatchNorm2d};
pub use kinds::{BatchNorm1d, BatchNorm2d, BatchNormInput, Features, Images};
pub use renorm::{convert_batch_renorm, BatchRenorm, BatchRenorm1d, BatchRenorm2d, RenormConfig};

/// Options of a batch-norm layer; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root (1e-5).
    pub eps: f32,
    /// Weight of the new batch in the running statistics (0.1); `None` for a cumulative
    /// average over all batches seen.
    pub momentum: Option<f64>,
    /// Learnable γ (init 1) and β (init 0) (true).
    pub affine: bool,
    /// Keep running statistics and use them in eval mode (true). Without them, batch
    /// statistics are used in both modes.
    pub track_running_stats: bool,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            eps: 1e-5,
            momentum: Some(0.1),
            affine: true,
            track_running_stats: true,
        }
    }
}

/// Running statistics and their batch counter, typed: two f32 tensors of one value per
/// channel and an i64 counter.
#[derive(Debug, Clone)]
struct RunningStats {
    mean: TensorBuffer,
    var: TensorBuffer,
    num_batches_tracked: CounterBuffer,
}

impl RunningStats {
    fn new(channels: usize) -> RunningStats {
        RunningStats {
            mean: TensorBuffer::new(Tensor::zeros(&[channels])),
            var: TensorBuffer::new(Tensor::ones(&[channels])),
            num_batches_tracked: CounterBuffer::new(0),
        }
    }
}

/// Batch normalization over the channels (dimension 1) of its input; see the module docs for
/// the formulas and [`BatchNorm1d`] / [`BatchNorm2d`] for the two kinds.
///
/// - parameters: `weight` γ (C), init 1; `bias` β (C), init 0 (with `affine`)
/// - buffers: `running_mean` (C), `running_var` (C), `num_batches_tracked` (int64 scalar)
///   (with `track_running_stats`)
/// - synchronized (with a communicator): training statistics over every process's input
pub struct BatchNorm<I: BatchNormInput> {
    num_features: usize,
    config: BatchNormConfig,
    affine: Affine,
    running: Option<RunningStats>,
    mode: Mode,
    /// Set: training statistics are those of the global batch of every process.
    sync: Option<Synced>,
    /// α of example-weighted inference (0: plain eval mode).
    example_weight: f64,
    input: PhantomData<I>,
}

impl<I: BatchNormInput> BatchNorm<I> {
    /// A layer for `num_features` channels with PyTorch's defaults (eps 1e-5, momentum 0.1,
    /// affine, tracking running statistics), in training mode.
    pub fn new(num_features: usize) -> Result<Self> {
        Self::with_config(num_features, BatchNormConfig::default())
    }

    /// A layer with explicit options.
    ///
    /// Errors: no channels, a negative or non-finite eps, a momentum outside [0, 1].
    pub fn with_config(num_features: usize, config: BatchNormConfig) -> Result<Self> {
        let bad = |reason: String| LayerError::Config {
            layer: format!("{}({num_features})", I::NAME),
            reason,
        };
        if num_features == 0 {
            return Err(bad("num_features must be positive".into()));
        }
        check_eps(config.eps).map_err(bad)?;
        check_momentum(config.momentum).map_err(bad)?;
        let c = num_features;
        Ok(BatchNorm {
            num_features,
            config,
            affine: Affine::new(&[c], config.affine, config.affine),
            running: config.track_running_stats.then(|| RunningStats::new(c)),
            mode: Mode::Train,
            sync: None,
            example_weight: 0.0,
            input: PhantomData,
        })
    }

    /// The layer as PyTorch's `SyncBatchNorm`: in training mode, statistics over the global
    /// batch of every process of `comm` (see [`crate::sync_batch_norm`]). The parameters and
    /// buffers stay the same handles.
    pub fn synchronized(mut self, comm: Rc<dyn Communicator>) -> Self {
        self.synchronize(comm);
        self
    }

    /// [`BatchNorm::synchronized`] in place (what [`crate::convert_sync_batch_norm`] does).
    pub fn synchronize(&mut self, comm: Rc<dyn Communicator>) {
        self.sync = Some(Synced::new(comm));
    }

    /// The communicator of a synchronized layer.
    pub fn communicator(&self) -> Option<&Rc<dyn Communicator>> {
        self.sync.as_ref().map(Synced::communicator)
    }

    /// Number of channels C.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// The options the layer was built with (momentum as currently set).
    pub fn config(&self) -> BatchNormConfig {
        self.config
    }

    /// Training or evaluation.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// γ (`weight`), if `affine`.
    pub fn weight(&self) -> Option<&Param> {
        self.affine.weight.as_ref()
    }

    /// β (`bias`), if `affine`.
    pub fn bias(&self) -> Option<&Param> {
        self.affine.bias.as_ref()
    }

    /// The running mean, if running statistics are tracked.
    pub fn running_mean(&self) -> Option<Tensor> {
        self.running.as_ref().map(|r| r.mean.get())
    }

    /// The running (unbiased) variance, if running statistics are tracked.
    pub fn running_var(&self) -> Option<Tensor> {
        self.running.as_ref().map(|r| r.var.get())
    }

    /// Training batches seen since the running statistics were last reset, if tracked.
    pub fn num_batches_tracked(&self) -> Option<i64> {
        self.running.as_ref().map(|r| r.num_batches_tracked.get())
    }

    /// Changes the momentum (`None`: cumulative average from now on).
    ///
    /// Errors: a momentum outside [0, 1].
    pub fn set_momentum(&mut self, momentum: Option<f64>) -> Result<()> {
        check_momentum(momentum).map_err(|reason| LayerError::Config {
            layer: self.describe(),
            reason,
        })?;
        self.config.momentum = momentum;
        Ok(())
    }

    /// PyTorch's `reset_running_stats`: mean 0, variance 1, no batch seen.
    pub fn reset_running_stats(&mut self) {
        if let Some(r) = &self.running {
            r.mean.update(|m| m.fill(0.0));
            r.var.update(|v| v.fill(1.0));
            r.num_batches_tracked.set(0);
        }
    }

    /// The per-channel `(scale, shift)` eval mode applies (`y = x·scale + shift`), if running
    /// statistics are tracked (for folding into a preceding layer).
    ///
    /// Errors: running statistics that cannot be used (a negative variance).
    pub fn eval_scale_shift(&self) -> Result<Option<Vec<(f32, f32)>>> {
        let Some(running) = &self.running else {
            return Ok(None);
        };
        let gamma = self.weight().map(Param::value);
        let beta = self.bias().map(Param::value);
        Ok(Some(norma_kernels::eval_scale_shift(
            running.mean.get().as_slice(),
            running.var.get().as_slice(),
            gamma.as_ref().map(|g| g.as_slice()),
            beta.as_ref().map(|b| b.as_slice()),
            self.config.eps,
        )?))
    }

    /// The verdict on an input's shape: one of the layer's kind with C channels.
    fn check_input(&self, shape: &[usize]) -> Result<()> {
        self.check_input_of(shape, &|| self.describe())
    }

    /// [`BatchNorm::check_input`] for a layer built on this one, named by `describe`.
    fn check_input_of(&self, shape: &[usize], describe: &dyn Fn() -> String) -> Result<()> {
        if I::accepts(shape, self.num_features) {
            return Ok(());
        }
        Err(LayerError::Input {
            layer: describe(),
            expected: I::expected(self.num_features),
            got: shape.to_vec(),
        })
    }
}

fn check_momentum(momentum: Option<f64>) -> std::result::Result<(), String> {
    match momentum {
        Some(m) if !(0.0..=1.0).contains(&m) => Err(format!("momentum must be in [0, 1], got {m}")),
        _ => Ok(()),
    }
}

impl<I: BatchNormInput> Module for BatchNorm<I> {
    /// Training: the batch's statistics, folded into the running statistics. Eval: the
    /// running statistics. The input's shape is checked once, here.
    fn forward(&mut self, x: &Var) -> Result<Var> {
        let checked = self.check_input(x.shape());
        match self.mode {
            Mode::Train => self.forward_train(x, checked),
            Mode::Eval => self.forward_eval(x, checked),
        }
    }

    fn collect_params(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        self.affine.collect(prefix, out);
    }

    fn collect_buffers(&self, prefix: &str, out: &mut Vec<(String, Buffer)>) {
        if let Some(r) = &self.running {
            out.push((
                join_name(prefix, "running_mean"),
                Buffer::F32(r.mean.clone()),
            ));
            out.push((join_name(prefix, "running_var"), Buffer::F32(r.var.clone())));
            out.push((
                join_name(prefix, "num_batches_tracked"),
                Buffer::I64(r.num_batches_tracked.clone()),
            ));
        }
    }

    fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let momentum = c.momentum.map_or("None".to_string(), |m| m.to_string());
        let name = if self.sync.is_some() {
            "SyncBatchNorm"
        } else {
            I::NAME
        };
        format!(
            "{name}({}, eps={}, momentum={momentum}, affine={}, track_running_stats={})",
            self.num_features, c.eps, c.affine, c.track_running_stats
        )
    }
}
