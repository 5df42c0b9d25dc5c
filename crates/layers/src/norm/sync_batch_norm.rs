//! Synchronized batch norm (PyTorch's `SyncBatchNorm`): in a data-parallel job every process
//! normalizes its shard of the global batch with the statistics of the **global** batch, so
//! that K processes compute what one process computes on the whole batch.
//!
//! It is a [`crate::BatchNorm`] given a [`Communicator`] ([`crate::BatchNorm::synchronized`],
//! or [`convert_sync_batch_norm`] for a whole model, in place); `describe()` calls it
//! `SyncBatchNorm`, and its `state_dict` names are batch norm's (`weight`, `bias`,
//! `running_mean`, `running_var`, `num_batches_tracked`).
//!
//! ## Forward (training mode)
//!
//! Process r holds x_r, of shape (n_r, C, ...), m_r values per channel. Per channel:
//!
//! ```text
//! k      = the shift: process 0's first value of the channel (broadcast)
//! S_r    = (m_r, Σ(x_r − k), Σ(x_r − k)²)                    partial_sums, in f64
//! S      = Σ_r S_r = (M, Σd, Σd²)                            one all-reduce of 1 + 2C values
//! mean   = k + Σd/M        var = Σd²/M − (Σd/M)²              PartialSums::finish
//! y_r    = γ·(x_r − mean)/sqrt(var + eps) + β                normalize
//! ```
//!
//! Shards of any sizes are weighted by their counts (M = Σ m_r), so a last batch that does not
//! divide by K, or a shard of one sample, is handled exactly. A global batch with one value per
//! channel (M < 2) is batch norm's error, naming the global shape.
//!
//! **The shift.** Sums can be added only when taken around the same k, and k should be a value
//! of the channel: Σd² − (Σd)²/M then does not cancel for inputs with a large mean
//! (1e4 + N(0, 1)). Process 0's first value of each channel is such a value, and it is exactly
//! the shift single-process batch norm uses for the global batch (whose first sample is process
//! 0's first), so with one process the layer is bit for bit [`crate::BatchNorm`]. It costs a
//! broadcast of C values before the all-reduce (zeros when process 0's shard is empty, or when
//! its first value is not finite: the statistics then fail as batch norm's do).
//!
//! ## Backward
//!
//! With dy_r the output gradient on process r and x̂ = (x − mean)/sqrt(var + eps):
//!
//! ```text
//! G_r  = (Σdy_r, Σdy_r·(x_r − mean), Σdy_r²)                  grad_sums
//! G    = Σ_r G_r                                              one all-reduce of 3C values
//! dx_r = γ/sqrt(var + eps)·(dy_r − Σdy/M − x̂_r·Σdy·x̂/M)      backward_from_sums, with G
//! dγ_r = Σdy_r·x̂_r       dβ_r = Σdy_r                         this process's share only
//! ```
//!
//! dx_r is the exact gradient of Σ_r L_r (the sum of every process's loss) with respect to
//! x_r. dγ and dβ are, as in PyTorch, each process's share: the data-parallel gradient
//! all-reduce adds them up with every other parameter's gradient. With process r's loss scaled
//! to (n_r/N)·L_r (see `norma_distributed`'s data-parallel conventions), the summed gradients
//! are those of one process training on the global batch with the mean loss.
//!
//! ## Modes, faults
//!
//! Evaluation uses the running statistics and never communicates (without running statistics
//! it uses the local batch, as PyTorch). The running statistics are updated from the global
//! statistics, identically on every process (unbiased over M).
//!
//! Every process must run the same layers in the same order. A process whose input is wrong
//! still takes part in the exchange and flags its failure there: it gets its own error, every
//! other process a [`CommError::PeerFailed`] from the same layer, and no process is left
//! waiting.

use std::rc::Rc;

use norma_autograd::{AutogradError, OpError};
use norma_distributed::{CommError, Communicator};
use norma_kernels::{BatchStats, GradSums, Gradients, KernelError, PartialSums, TrainForward};
use norma_tensor::Tensor;

use crate::module::Module;
use crate::norm::affine::kernel_error;
use crate::norm::batch_norm::for_each_batch_norm_mut;
use crate::Result;

/// Makes every batch norm of `model` (BatchNorm1d and BatchNorm2d, at any depth) synchronized
/// over `comm`, in place, and returns their names (`bn1`, `block.bn`, ...) in model order. The
/// layers keep their parameter and buffer handles, so an optimizer built before still updates
/// them. PyTorch's `convert_sync_batchnorm`.
///
/// ```
/// use std::rc::Rc;
/// use norma_distributed::SingleProcess;
/// use norma_layers::{convert_sync_batch_norm, models, Module};
/// use norma_tensor::Rng;
/// let mut net = models::lenet_bn(models::Activation::Sigmoid, &mut Rng::seed_from_u64(0))?;
/// let names = convert_sync_batch_norm(&mut net, Rc::new(SingleProcess));
/// assert_eq!(names, ["bn1", "bn2", "bn3", "bn4"]);
/// assert!(net.describe().contains("(bn1): SyncBatchNorm(6, eps="));
/// # Ok::<(), norma_layers::LayerError>(())
/// ```
pub fn convert_sync_batch_norm(model: &mut dyn Module, comm: Rc<dyn Communicator>) -> Vec<String> {
    let mut names = Vec::new();
    for_each_batch_norm_mut(model, &mut |name, bn| {
        bn.synchronize(comm.clone());
        names.push(name.to_string());
    });
    names
}

/// What a synchronized batch norm adds: the communicator its statistics go through.
#[derive(Clone)]
pub(crate) struct Synced {
    comm: Rc<dyn Communicator>,
}

/// The error of a step in which `failed` other processes failed.
fn peer_failed(failed: usize, step: &'static str) -> CommError {
    CommError::PeerFailed { step, failed }
}

impl Synced {
    pub fn new(comm: Rc<dyn Communicator>) -> Synced {
        Synced { comm }
    }

    pub fn communicator(&self) -> &Rc<dyn Communicator> {
        &self.comm
    }

    /// Training forward over the global batch (see the module docs); `checked` is the layer's
    /// verdict on this process's input, `channels` the layer's C (buffers have the same length
    /// on every process whatever the input).
    pub fn forward(
        &self,
        x: &Tensor,
        checked: Result<()>,
        channels: usize,
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        eps: f32,
    ) -> Result<TrainForward> {
        let stats = self.statistics(x, checked, channels, eps)?;
        let output = norma_kernels::normalize(x.view(), &stats, gamma, beta)?;
        Ok(TrainForward { output, stats })
    }

    /// The statistics of the global batch (the forward's two exchanges), for layers that
    /// normalize with them in their own way (batch renormalization).
    pub fn statistics(
        &self,
        x: &Tensor,
        checked: Result<()>,
        channels: usize,
        eps: f32,
    ) -> Result<BatchStats> {
        const STEP: &str = "SyncBatchNorm forward";
        let comm = self.comm.as_ref();
        // [process 0 failed, the shift (C values)]
        let mut head = vec![0.0f32; 1 + channels];
        if comm.rank() == 0 {
            match &checked {
                Err(_) => head[0] = 1.0,
                Ok(()) => first_values(x, &mut head[1..]),
            }
        }
        comm.broadcast_f32(0, &mut head)?;
        if head[0] != 0.0 {
            checked?;
            return Err(peer_failed(1, STEP).into());
        }
        let shift = &head[1..];
        let local = checked.and_then(|()| Ok(norma_kernels::partial_sums(x.view(), Some(shift))?));
        // [processes that failed, count, Σd (C), Σd² (C)]
        let mut flat = vec![0.0f64; 2 + 2 * channels];
        match &local {
            Ok(sums) => flat[1..].copy_from_slice(&sums.to_flat()),
            Err(_) => flat[0] = 1.0,
        }
        comm.all_reduce_sum_f64(&mut flat)?;
        local?;
        if flat[0] != 0.0 {
            return Err(peer_failed(flat[0] as usize, STEP).into());
        }
        let sums = PartialSums::from_flat(shift, &flat[1..])?;
        if sums.count() < 2 {
            return Err(KernelError::SingleValuePerChannel {
                shape: global_shape(x.shape(), sums.count()),
            }
            .into());
        }
        Ok(sums.finish(eps)?)
    }

    /// Training backward over the global batch: dx from the summed gradient sums, dγ and dβ
    /// over this process's shard (see the module docs).
    pub fn backward(
        &self,
        x: &Tensor,
        dy: &Tensor,
        stats: &BatchStats,
        gamma: Option<&[f32]>,
    ) -> norma_autograd::Result<Gradients> {
        const STEP: &str = "SyncBatchNorm backward";
        let comm_error = |e: CommError| AutogradError::Op {
            op: "sync_batch_norm",
            source: OpError::new(e),
        };
        let c = stats.channels();
        let local = norma_kernels::grad_sums(x.view(), dy.view(), stats);
        // [processes that failed, Σdy (C), Σdy·(x − mean) (C), Σdy² (C)]
        let mut flat = vec![0.0f64; 1 + 3 * c];
        match &local {
            Ok(sums) => flat[1..].copy_from_slice(&sums.to_flat()),
            Err(_) => flat[0] = 1.0,
        }
        self.comm
            .all_reduce_sum_f64(&mut flat)
            .map_err(comm_error)?;
        let local = local.map_err(|e| kernel_error("sync_batch_norm", e))?;
        if flat[0] != 0.0 {
            return Err(comm_error(peer_failed(flat[0] as usize, STEP)));
        }
        let global =
            GradSums::from_flat(c, &flat[1..]).map_err(|e| kernel_error("sync_batch_norm", e))?;
        let dx = norma_kernels::backward_from_sums(x.view(), dy.view(), stats, &global, gamma)
            .map_err(|e| kernel_error("sync_batch_norm", e))?;
        Ok(Gradients {
            dx,
            dgamma: local.dgamma(stats),
            dbeta: local.dbeta(),
        })
    }
}

/// The first value of each channel of `x` ((N, C, ...), contiguous, C = `out.len()`) where
/// the shard has one and it is finite; 0 otherwise.
fn first_values(x: &Tensor, out: &mut [f32]) {
    let spatial: usize = x.shape().iter().skip(2).product();
    if x.shape().first().is_some_and(|&n| n > 0) && spatial > 0 {
        for (ch, slot) in out.iter_mut().enumerate() {
            let v = x.as_slice().get(ch * spatial).copied().unwrap_or(0.0);
            *slot = if v.is_finite() { v } else { 0.0 };
        }
    }
}

/// The shape of a global batch of `count` values per channel, of which `local` is a shard:
/// the local shape with the samples N = count / (values per sample and channel).
fn global_shape(local: &[usize], count: usize) -> Vec<usize> {
    let mut shape = local.to_vec();
    let spatial: usize = local.iter().skip(2).product();
    if let Some(n) = shape.first_mut() {
        *n = count.checked_div(spatial).unwrap_or(0);
    }
    shape
}
