//! The measures of [`super::measures`] on a network: x is the vector of all its weights, L the
//! mean cross-entropy of one batch in training mode (batch norm normalizes with the batch's
//! statistics, as in the training step the probe precedes).
//!
//! A probe runs forward and backward passes that training would not: each of them would move
//! batch norm's running statistics (and its batch counter). The model's weights and buffers
//! are therefore saved before the probe and put back bit for bit after it ([`Snapshot`]), so
//! the trajectory is the one a run without probes takes (tested below).

use norma_datasets::Batch;
use norma_layers::{Module, Sequential};
use norma_tensor::Tensor;

use crate::error::Error;
use crate::run::divergence;
use crate::run::snapshot::Snapshot;
use crate::run::step::forward_loss;
use crate::smoothness::measures::{self, GradientProbe};

/// Every weight of `model`, in parameter order, as one vector.
fn flatten(model: &Sequential) -> Vec<f64> {
    model
        .parameters()
        .iter()
        .flat_map(|p| {
            p.value()
                .as_slice()
                .iter()
                .map(|&v| f64::from(v))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Sets the weights of `model` from one vector in parameter order (rounded to f32).
fn set_weights(model: &Sequential, x: &[f64]) -> Result<(), Error> {
    let mut at = 0;
    for p in model.parameters() {
        let n = p.len();
        let values: Vec<f32> = x[at..at + n].iter().map(|&v| v as f32).collect();
        p.set_value(Tensor::from_vec(&p.shape(), values)?)?;
        at += n;
    }
    Ok(())
}

/// The batch's mean cross-entropy at the model's current weights, in training mode, and its
/// gradient with respect to every weight, flattened in parameter order.
/// A point where the batch statistics overflow (a far step along the gradient, or a run about
/// to diverge) has an infinite loss and gradient: the measures record it instead of failing.
fn loss_and_gradient(model: &mut Sequential, batch: &Batch) -> Result<(f64, Vec<f64>), Error> {
    let forward = match forward_loss(model, batch.images.clone(), &batch.labels).and_then(|f| {
        f.loss.backward()?;
        Ok(f)
    }) {
        Err(e) if divergence::is_overflow(&e) => {
            let len = model.parameters().iter().map(|p| p.len()).sum();
            return Ok((f64::INFINITY, vec![f64::INFINITY; len]));
        }
        forward => forward?,
    };
    let value = f64::from(forward.value);
    let mut grad = Vec::new();
    for p in &model.parameters() {
        match p.grad() {
            Some(g) => grad.extend(g.as_slice().iter().map(|&v| f64::from(v))),
            None => grad.extend(std::iter::repeat_n(0.0, p.len())),
        }
    }
    Ok((value, grad))
}

/// The measures at the model's current weights on `batch` for step sizes `etas`; the model is
/// left exactly as it was (weights, running statistics, batch counters).
pub fn probe_model(
    model: &mut Sequential,
    batch: &Batch,
    etas: &[f64],
) -> Result<GradientProbe, Error> {
    let saved = Snapshot::take(model);
    let x = flatten(model);
    let result = measures::probe(&x, etas, |point| {
        set_weights(model, point)?;
        loss_and_gradient(model, batch)
    });
    saved.restore(model)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tests::tiny_data;
    use crate::steps::StepRun;
    use norma_layers::models::{lenet_bn, Activation};
    use norma_layers::Buffer;
    use norma_tensor::Rng;

    /// Every weight and buffer of `model`, for bitwise comparison.
    fn state(model: &dyn Module) -> Vec<Vec<f64>> {
        let mut out: Vec<Vec<f64>> = model
            .parameters()
            .iter()
            .map(|p| p.value().as_slice().iter().map(|&v| f64::from(v)).collect())
            .collect();
        for (_, b) in model.named_buffers() {
            out.push(match b {
                Buffer::F32(t) => t.get().as_slice().iter().map(|&v| f64::from(v)).collect(),
                Buffer::I64(c) => vec![c.get() as f64],
            });
        }
        out
    }

    #[test]
    fn probes_leave_the_trajectory_exactly_as_without_them() {
        let data = tiny_data(48, 8);
        let build = || lenet_bn(Activation::Sigmoid, &mut Rng::seed_from_u64(5)).unwrap();
        let mut probed = StepRun::new(build(), 0.5, 16, 1, &data).unwrap();
        let mut plain = StepRun::new(build(), 0.5, 16, 1, &data).unwrap();
        let mut probes = Vec::new();
        for _ in 0..5 {
            let batch = probed.next_batch().unwrap();
            let before = state(&probed.model);
            probes.push(probe_model(&mut probed.model, &batch, &[0.25, 0.5, 1.0]).unwrap());
            assert_eq!(state(&probed.model), before, "the probe changed the model");
            probed.step(&batch).unwrap();
            let batch = plain.next_batch().unwrap();
            plain.step(&batch).unwrap();
        }
        assert_eq!(state(&probed.model), state(&plain.model));
        // The probes measured something: moving changes the loss and the gradient.
        for p in &probes {
            assert!(p.grad_norm > 0.0 && p.beta() > 0.0, "{p:?}");
            assert!(
                p.losses.iter().all(|l| l.is_finite() && *l != p.loss),
                "{p:?}"
            );
        }
    }

    #[test]
    fn the_loss_at_x_is_the_training_step_s_loss() {
        let data = tiny_data(32, 8);
        let model = lenet_bn(Activation::Sigmoid, &mut Rng::seed_from_u64(2)).unwrap();
        let mut run = StepRun::new(model, 0.5, 16, 0, &data).unwrap();
        let batch = run.next_batch().unwrap();
        let p = probe_model(&mut run.model, &batch, &[0.5]).unwrap();
        let loss = run.step(&batch).unwrap();
        assert_eq!(p.loss, f64::from(loss));
    }
}
