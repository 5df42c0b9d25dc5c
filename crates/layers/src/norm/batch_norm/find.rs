//! Finding the batch-norm layers of a model, whichever their kind: the one place that knows a
//! batch norm is a [`BatchNorm1d`] or a [`BatchNorm2d`]. Folding, synchronizing and
//! recomputing statistics and freezing all go through [`for_each_batch_norm_mut`] or [`as_batch_norm_mut`].

use std::rc::Rc;

use norma_distributed::Communicator;

use super::{BatchNorm, BatchNorm1d, BatchNorm2d, BatchNormInput};
use crate::module::{for_each_module_mut, Mode, Module};
use crate::norm::frozen_batch_norm::FrozenBatchNorm;
use crate::Result;

/// What the model-wide operations need of a batch norm, whatever its input kind.
pub(crate) trait BatchNormLayer: Module {
    /// [`BatchNorm::synchronize`].
    fn synchronize(&mut self, comm: Rc<dyn Communicator>);
    /// [`BatchNorm::eval_scale_shift`].
    fn eval_scale_shift(&self) -> Result<Option<Vec<(f32, f32)>>>;
    /// Whether the layer keeps running statistics.
    fn tracks_running_stats(&self) -> bool;
    /// [`BatchNorm::mode`].
    fn mode(&self) -> Mode;
    /// [`BatchNorm::reset_running_stats`].
    fn reset_running_stats(&mut self);
    /// Sets a momentum taken from a valid configuration (no check), returning the previous one.
    fn replace_momentum(&mut self, momentum: Option<f64>) -> Option<f64>;
    /// Sets an example weight checked to be in [0, 1].
    fn replace_example_weight(&mut self, alpha: f64);
    /// [`FrozenBatchNorm::from_batch_norm`], as a module of the same input kind.
    fn frozen(&self) -> Result<Box<dyn Module>>;
}

impl<I: BatchNormInput> BatchNormLayer for BatchNorm<I> {
    fn synchronize(&mut self, comm: Rc<dyn Communicator>) {
        BatchNorm::synchronize(self, comm);
    }

    fn eval_scale_shift(&self) -> Result<Option<Vec<(f32, f32)>>> {
        BatchNorm::eval_scale_shift(self)
    }

    fn tracks_running_stats(&self) -> bool {
        self.running.is_some()
    }

    fn mode(&self) -> Mode {
        self.mode
    }

    fn reset_running_stats(&mut self) {
        BatchNorm::reset_running_stats(self);
    }

    fn replace_momentum(&mut self, momentum: Option<f64>) -> Option<f64> {
        std::mem::replace(&mut self.config.momentum, momentum)
    }

    fn replace_example_weight(&mut self, alpha: f64) {
        self.example_weight = alpha;
    }

    fn frozen(&self) -> Result<Box<dyn Module>> {
        Ok(Box::new(FrozenBatchNorm::<I>::from_batch_norm(self)?))
    }
}

/// `module` as a batch norm, if it is one.
pub(crate) fn as_batch_norm_mut(module: &mut dyn Module) -> Option<&mut dyn BatchNormLayer> {
    // Tested before borrowing: a borrow returned from one branch would outlive the other.
    if module.is::<BatchNorm2d>() {
        module
            .downcast_mut::<BatchNorm2d>()
            .map(|bn| bn as &mut dyn BatchNormLayer)
    } else {
        module
            .downcast_mut::<BatchNorm1d>()
            .map(|bn| bn as &mut dyn BatchNormLayer)
    }
}

/// Calls `f` on every batch norm inside `model` (and on `model` itself if it is one), depth
/// first in model order, each with its full name (`bn1`, `block.bn`, ...).
pub(crate) fn for_each_batch_norm_mut(
    model: &mut dyn Module,
    f: &mut dyn FnMut(&str, &mut dyn BatchNormLayer),
) {
    for_each_module_mut(model, &mut |name, module| {
        if let Some(bn) = as_batch_norm_mut(module) {
            f(name, bn);
        }
    });
}
