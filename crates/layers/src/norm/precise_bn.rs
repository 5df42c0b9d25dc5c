//! Recomputing batch-norm running statistics after training ("precise BN").
//!
//! During training each batch-norm layer keeps an exponential moving average of the batch
//! statistics (momentum 0.1). When the weights move fast — LeNet-BN at learning rate 1.0 — the
//! average lags the weights, and evaluation normalizes with statistics of a network that no
//! longer exists: test accuracy can swing by 10–40 points from one epoch to the next.
//! Recomputing the statistics with the final weights removes the lag (Wu & Johnson,
//! *Rethinking "Batch" in BatchNorm*, 2021; fvcore's `update_bn_stats`; PyTorch's
//! `torch.optim.swa_utils.update_bn`).
//!
//! [`recompute_batch_norm_stats`] does what PyTorch's `update_bn` does, per batch-norm layer:
//! reset the running statistics (mean 0, variance 1, `num_batches_tracked` 0), switch to a
//! cumulative average (momentum `None`), run the batches through the model in training mode
//! without recording a graph, then restore each layer's momentum and mode. Afterwards
//!
//! ```text
//! running_mean = (1/K) Σ_k mean_k            running_var = (1/K) Σ_k var_k · M_k/(M_k − 1)
//! num_batches_tracked = K
//! ```
//!
//! over the K batches (mean_k, var_k: batch k's mean and biased variance of the layer's input,
//! M_k its values per channel). With batches of equal size the running mean is exactly the
//! mean of all K batches' activations; the running variance is the average within-batch
//! unbiased variance, the quantity the training-mode normalization divided by.
//!
//! Batch Renormalization and ghost batch norm keep their statistics in the batch norm
//! underneath; they are recomputed the same way through the layer's own training-mode forward
//! (ghost batch norm: each batch's pooled ghost statistics; renorm: its schedule counts from
//! `num_batches_tracked` 0 again, so the first batches are plain batch norm).

use norma_autograd::{no_grad, Var};
use norma_tensor::Tensor;

use crate::norm::batch_norm::{for_each_running_stats_mut, BatchNormLayer};
use crate::{LayerError, Mode, Module, Result};

/// What [`recompute_batch_norm_stats`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreciseBnReport {
    /// Batch-norm layers whose statistics were recomputed (those tracking running statistics),
    /// by name.
    pub layers: Vec<String>,
    /// Batches averaged over.
    pub batches: usize,
}

/// Saved settings of one batch-norm layer, restored afterwards.
struct Saved {
    momentum: Option<f64>,
    mode: Mode,
}

/// Recomputes the running statistics of every batch-norm layer of `model` from the first
/// `max_batches` of `batches` (see the module docs). Only batch-norm layers change mode for
/// the passes; other layers keep theirs (call `model.eval()` first to compute the statistics
/// with dropout off, as the model will run at inference).
///
/// Errors: `max_batches` of 0, an empty iterator, or an error of a forward pass (for example a
/// batch with one value per channel). The layers' momentum and mode are restored in every case;
/// after an error the running statistics hold the batches seen before it.
pub fn recompute_batch_norm_stats(
    model: &mut dyn Module,
    batches: impl IntoIterator<Item = Tensor>,
    max_batches: usize,
) -> Result<PreciseBnReport> {
    if max_batches == 0 {
        return Err(LayerError::Config {
            layer: "recompute_batch_norm_stats".into(),
            reason: "needs at least one batch (max_batches is 0)".into(),
        });
    }
    let mut saved: Vec<(String, Saved)> = Vec::new();
    for_each_running_stats_mut(model, &mut |name, bn| saved.extend(prepare(name, bn)));
    let mut seen = 0;
    let mut result = Ok(());
    for batch in batches.into_iter().take(max_batches) {
        if let Err(e) = no_grad(|| model.forward(&Var::constant(batch))) {
            result = Err(e);
            break;
        }
        seen += 1;
    }
    let mut restore = saved.iter();
    for_each_running_stats_mut(model, &mut |name, bn| put_back(name, bn, &mut restore));
    result?;
    if seen == 0 {
        return Err(LayerError::Config {
            layer: "recompute_batch_norm_stats".into(),
            reason: "no batch was given".into(),
        });
    }
    Ok(PreciseBnReport {
        layers: saved.into_iter().map(|(name, _)| name).collect(),
        batches: seen,
    })
}

/// Resets one layer's statistics for a cumulative average in training mode; `None` for a layer
/// without running statistics (nothing to recompute).
fn prepare(name: &str, bn: &mut dyn BatchNormLayer) -> Option<(String, Saved)> {
    if !bn.tracks_running_stats() {
        return None;
    }
    let saved = Saved {
        momentum: bn.replace_momentum(None),
        mode: bn.mode(),
    };
    bn.reset_running_stats();
    bn.set_mode(Mode::Train);
    Some((name.to_string(), saved))
}

/// Restores a layer prepared by [`prepare`] (layers are visited in the same order).
fn put_back<'a>(
    name: &str,
    bn: &mut dyn BatchNormLayer,
    saved: &mut impl Iterator<Item = &'a (String, Saved)>,
) {
    if !bn.tracks_running_stats() {
        return;
    }
    if let Some((saved_name, s)) = saved.next() {
        debug_assert_eq!(saved_name, name);
        bn.replace_momentum(s.momentum);
        bn.set_mode(s.mode);
    }
}
