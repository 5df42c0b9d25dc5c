//! Precise batch-norm statistics for evaluation ("precise BN"; Wu & Johnson 2021, fvcore's
//! `update_bn_stats`, PyTorch's `swa_utils.update_bn`).
//!
//! At lr 1.0 LeNet-BN's weights move fast and the moving averages of the batch statistics
//! (momentum 0.1) lag them, so test accuracy with those averages swings by 10–40 points from
//! epoch to epoch. [`norma_layers::recompute_batch_norm_stats`] replaces them by a cumulative
//! average over K training batches run through the current weights.
//!
//! Which batches: the training split (as used for training, so `--train-samples` applies) in
//! one fixed order drawn from the run's seed — the same order after every epoch, distinct from
//! every epoch's training order — cut into batches of the training batch size with the
//! training rule for the last batch; the first K of them (all of them when there are fewer).
//! With the full training set and batch 256 that is 200 of 235 batches, 51,200 images.
//!
//! [`with_precise_stats`] evaluates with those statistics and then puts every buffer back bit
//! for bit, so training continues with its moving averages exactly as if nothing had happened
//! (it stays step for step identical to PyTorch, and `--resume` stays exact).

use norma_datasets::{Batches, Dataset, Order};
use norma_layers::{recompute_batch_norm_stats, Sequential};

use crate::cli::signals;
use crate::error::Error;
use crate::run::snapshot::Snapshot;
use crate::run::spec::RunSpec;

/// Mixed into the run's seed for the order of the precise-statistics batches ("PRECISEB"), so
/// that it differs from the weights' draws and from every epoch's training order.
const ORDER_SALT: u64 = 0x5052_4543_4953_4542;

/// The batches precise statistics are computed from (see the module docs), or `None` when the
/// spec asks for none: a model without batch norm, or `--precise-bn 0`.
pub fn batches<'a>(spec: &RunSpec, data: &'a Dataset) -> Result<Option<Batches<'a>>, Error> {
    if spec.precise_bn == 0 || !spec.tracks_batch_stats() {
        return Ok(None);
    }
    let order = Order::Shuffled(spec.seed ^ ORDER_SALT);
    Ok(Some(data.train.batches(
        spec.batch_size,
        order,
        spec.last_batch(),
    )?))
}

/// Replaces the batch-norm running statistics of `model` by their average over the first `k`
/// of `batches` (all of them when there are fewer); returns how many it averaged over. A
/// signal stops it between two batches with [`Error::Stopped`].
pub fn recompute(model: &mut Sequential, batches: Batches, k: usize) -> Result<usize, Error> {
    let mut stop = Ok(());
    let images = batches.map_while(|b| match signals::check() {
        Ok(()) => Some(b.images),
        Err(e) => {
            stop = Err(e);
            None
        }
    });
    let recomputed = recompute_batch_norm_stats(model, images, k);
    // The stop first: stopped before the first batch, the pass has "no batch" to average.
    stop?;
    Ok(recomputed?.batches)
}

/// Runs `f` on `model` with its batch-norm running statistics recomputed from the first `k`
/// of `batches`; afterwards every weight and buffer is exactly what it was. Returns what `f`
/// returned and the number of batches averaged over.
pub fn with_precise_stats<T>(
    model: &mut Sequential,
    batches: Batches,
    k: usize,
    f: impl FnOnce(&mut Sequential) -> Result<T, Error>,
) -> Result<(T, usize), Error> {
    let before = Snapshot::take(model);
    let result = recompute(model, batches, k).and_then(|used| Ok((f(model)?, used)));
    before.restore(model)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use norma_datasets::{LastBatch, Split};
    use norma_layers::models::{lenet_bn, Activation};
    use norma_layers::{Buffer, Module};
    use norma_tensor::{Rng, Tensor};

    /// Every buffer of `model` as numbers, for bitwise comparison.
    fn buffers(model: &dyn Module) -> Vec<(String, Vec<f64>)> {
        model
            .named_buffers()
            .into_iter()
            .map(|(name, b)| {
                let values = match b {
                    Buffer::F32(t) => t.get().as_slice().iter().map(|&v| f64::from(v)).collect(),
                    Buffer::I64(c) => vec![c.get() as f64],
                };
                (name, values)
            })
            .collect()
    }

    #[test]
    fn evaluation_sees_recomputed_statistics_and_training_keeps_its_own() {
        let mut rng = Rng::seed_from_u64(1);
        let mut model = lenet_bn(Activation::Sigmoid, &mut rng).unwrap();
        let images = Tensor::rand_uniform(&[40, 1, 28, 28], 0.0, 1.0, &mut rng);
        let split = Split::new(images, (0..40).map(|i| i % 10).collect()).unwrap();
        // Stale statistics: a few training-mode passes with the default momentum.
        model.train();
        for batch in split
            .batches(8, Order::Sequential, LastBatch::Keep)
            .unwrap()
        {
            model
                .forward(&norma_autograd::Var::constant(batch.images))
                .unwrap();
        }
        let before = buffers(&model);
        let batches = split
            .batches(8, Order::Shuffled(3), LastBatch::Keep)
            .unwrap();
        let (inside, used) =
            with_precise_stats(&mut model, batches, 3, |m| Ok(buffers(m))).unwrap();
        assert_eq!(used, 3);
        assert_eq!(
            buffers(&model),
            before,
            "every buffer is put back bit for bit"
        );
        let counter = |b: &[(String, Vec<f64>)]| {
            b.iter()
                .find(|(n, _)| n == "bn1.num_batches_tracked")
                .map(|(_, v)| v[0])
        };
        assert_eq!(
            counter(&inside),
            Some(3.0),
            "a cumulative average over 3 batches"
        );
        assert_eq!(counter(&before), Some(5.0));
        let mean =
            |b: &[(String, Vec<f64>)]| b.iter().find(|(n, _)| n == "bn1.running_mean").cloned();
        assert_ne!(mean(&inside), mean(&before));
        // More batches than there are: all of them.
        let batches = split
            .batches(8, Order::Shuffled(3), LastBatch::Keep)
            .unwrap();
        let (_, used) = with_precise_stats(&mut model, batches, 200, |_| Ok(())).unwrap();
        assert_eq!(used, 5);
        assert_eq!(buffers(&model), before);
    }
}
