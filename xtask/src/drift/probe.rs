//! The fixed probe of `drift`: the same images, every K steps, through the model, summarizing
//! the input of every activation.
//!
//! Ioffe & Szegedy's Figure 1 follows a fixed set of inputs, so that the lines move only
//! because the weights below moved; percentiles of each training batch would move with the
//! batch too. The probe set is the first [`PROBE_IMAGES`] test images: fixed in advance, the
//! same for every model and seed, and never trained on. Two views:
//!
//! - [`Probe::measure`], eval mode (running statistics, noise replaced by its expectation):
//!   what inference sees. It runs without a graph and neither updates batch-norm statistics
//!   nor draws noise.
//! - [`Probe::measure_training_view`], training mode: batch norm normalizes with the probe
//!   set's own statistics and noisy batch norm's noise is drawn, as a training step sees its
//!   inputs — Santurkar et al.'s view, in which noisy batch norm's inputs move at every step.
//!   The statistics it updates are put back and the noise comes from the probe's own
//!   generator, not the layer's.
//!
//! Either way the training trajectory is bitwise the one of a run without probes (the next
//! step switches back to training mode).

use norma_autograd::{no_grad, Var};
use norma_datasets::Split;
use norma_layers::{Module, Relu, Sequential, ShiftNoise, Sigmoid, Summary};
use norma_tensor::{Rng, Tensor};

use crate::error::Error;
use crate::run::snapshot::Snapshot;

/// Images in the probe set (the first of the test split; fewer if the test split is smaller).
pub const PROBE_IMAGES: usize = 1000;

/// The probe set's images.
pub struct Probe {
    images: Tensor,
}

/// One probe of one model: the whole input of each activation (all units, positions and probe
/// images) and, if asked, the input of one unit of one activation over the probe images.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// (activation name, summary), in the model's order.
    pub layers: Vec<(String, Summary)>,
    pub unit: Option<Summary>,
}

impl Probe {
    /// The first [`PROBE_IMAGES`] images of `test`.
    ///
    /// Errors: an empty test split.
    pub fn new(test: &Split) -> Result<Probe, Error> {
        let batch = test
            .eval_batches(PROBE_IMAGES.min(test.len()).max(1))?
            .next()
            .ok_or_else(|| Error::Usage("the test split is empty: nothing to probe".into()))?;
        Ok(Probe {
            images: batch.images,
        })
    }

    /// Images probed.
    pub fn len(&self) -> usize {
        self.images.shape().first().copied().unwrap_or(0)
    }

    /// The probe set through `model` in eval mode, child by child, without a graph; `unit`
    /// = (activation name, column) also summarizes that column of a (N, units) input.
    /// Leaves `model` in eval mode (training steps switch back).
    pub fn measure(
        &self,
        model: &mut Sequential,
        unit: Option<(&str, usize)>,
    ) -> Result<Measurement, Error> {
        model.eval();
        self.walk(model, unit, |child, x| Ok(child.forward(x)?))
    }

    /// The probe set through `model` in training mode, as [`Probe::measure`] otherwise:
    /// batch norm uses the probe set's statistics (the running statistics it updates are
    /// restored afterwards, bit for bit) and each [`ShiftNoise`] draws its scale and shift
    /// from a generator forked from `noise` instead of its own, so that the layer's noise
    /// sequence, and with it the training trajectory, stays untouched. Leaves `model` in eval
    /// mode.
    pub fn measure_training_view(
        &self,
        model: &mut Sequential,
        unit: Option<(&str, usize)>,
        noise: &mut Rng,
    ) -> Result<Measurement, Error> {
        let before = Snapshot::take(model);
        model.train();
        let result = self.walk(model, unit, |child, x| {
            match child.downcast_ref::<ShiftNoise>() {
                Some(layer) => {
                    let mut stand_in =
                        ShiftNoise::new(layer.channels(), layer.config(), noise.fork())?;
                    Ok(stand_in.forward(x)?)
                }
                None => Ok(child.forward(x)?),
            }
        });
        model.eval();
        before.restore(model)?;
        result
    }

    /// The probe set through `model`'s children, each applied by `forward` without a graph,
    /// the input of every activation summarized on the way.
    fn walk(
        &self,
        model: &mut Sequential,
        unit: Option<(&str, usize)>,
        mut forward: impl FnMut(&mut dyn Module, &Var) -> Result<Var, Error>,
    ) -> Result<Measurement, Error> {
        let mut out = Measurement {
            layers: Vec::new(),
            unit: None,
        };
        let mut x = Var::constant(self.images.clone());
        for (name, child) in model.children_mut() {
            if child.is::<Sigmoid>() || child.is::<Relu>() {
                let input = x.value();
                if let Some(s) = Summary::of(input.as_slice()) {
                    out.layers.push((name.to_string(), s));
                }
                if let Some((_, column)) = unit.filter(|(layer, _)| *layer == name) {
                    out.unit = column_summary(input, column);
                }
            }
            x = no_grad(|| forward(child, &x))?;
        }
        Ok(out)
    }
}

/// The summary of column `column` of a (N, units) tensor (`None` for another shape).
fn column_summary(input: &Tensor, column: usize) -> Option<Summary> {
    let shape = input.shape();
    if shape.len() != 2 || column >= shape[1] {
        return None;
    }
    let values: Vec<f32> = input
        .as_slice()
        .iter()
        .skip(column)
        .step_by(shape[1])
        .copied()
        .collect();
    Summary::of(&values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tests::tiny_data;
    use norma_tensor::Rng;

    #[test]
    fn a_column_is_one_unit_over_the_batch() {
        // (3, 2): column 1 holds 10, 20, 30.
        let t = Tensor::from_vec(&[3, 2], vec![0.0, 10.0, 5.0, 20.0, 9.0, 30.0]).unwrap();
        let m = column_summary(&t, 1).unwrap();
        assert_eq!((m.p15, m.p50, m.p85, m.mean), (10.0, 20.0, 30.0, 20.0));
        assert_eq!(m.count, 3);
        assert!(column_summary(&t, 2).is_none());
    }

    #[test]
    fn the_probe_summarizes_every_activation_on_the_fixed_images() {
        let data = tiny_data(20, 12);
        let probe = Probe::new(&data.test).unwrap();
        assert_eq!(probe.len(), 12);
        let rng = &mut Rng::seed_from_u64(0);
        let mut model = norma_layers::models::mlp(&[5, 4], true, 0.1, rng).unwrap();
        let m = probe.measure(&mut model, Some(("act2", 3))).unwrap();
        let names: Vec<&str> = m.layers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["act1", "act2"]);
        assert_eq!(m.layers[0].1.count, 12 * 5);
        assert_eq!(m.unit.unwrap().count, 12);
        // The same images, the same weights: the same numbers.
        assert_eq!(probe.measure(&mut model, Some(("act2", 3))).unwrap(), m);
    }
}
