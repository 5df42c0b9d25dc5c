//! Finding the batch-norm layers of a model, whichever their kind: the one place that knows a
//! batch norm is a [`BatchNorm1d`] or a [`BatchNorm2d`]. Folding, synchronizing, recomputing
//! statistics and setting the example weight go through [`for_each_batch_norm_mut`] or
//! [`as_batch_norm_mut`]; freezing, renormalizing and ghosting a model's batch norms through
//! [`replace_batch_norms`].

use std::rc::Rc;

use norma_distributed::Communicator;

use super::{BatchNorm, BatchNorm1d, BatchNorm2d, BatchNormInput};
use std::any::Any;

use super::{GhostBatchNorm, RenormConfig};
use crate::module::{for_each_module_mut, join_name, Mode, Module};
use crate::norm::batch_norm::BatchRenorm;
use crate::norm::frozen_batch_norm::FrozenBatchNorm;
use crate::{
    BatchRenorm1d, BatchRenorm2d, GhostBatchNorm1d, GhostBatchNorm2d, LayerError, Result,
    Sequential,
};

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

/// The batch norm whose running statistics `module` updates in training mode, if any: a batch
/// norm itself, or the one underneath a Batch Renormalization or a ghost batch norm (their
/// training-mode forwards update it) — the statistics precise BN recomputes through the
/// layer's own forward.
pub(crate) fn running_stats_mut(module: &mut dyn Module) -> Option<&mut dyn BatchNormLayer> {
    // Each kind tested before borrowing (see `as_batch_norm_mut`).
    if module.is::<BatchRenorm1d>() {
        module
            .downcast_mut::<BatchRenorm1d>()
            .map(|l| l.batch_norm_mut() as &mut dyn BatchNormLayer)
    } else if module.is::<BatchRenorm2d>() {
        module
            .downcast_mut::<BatchRenorm2d>()
            .map(|l| l.batch_norm_mut() as &mut dyn BatchNormLayer)
    } else if module.is::<GhostBatchNorm1d>() {
        module
            .downcast_mut::<GhostBatchNorm1d>()
            .map(|l| l.batch_norm_mut() as &mut dyn BatchNormLayer)
    } else if module.is::<GhostBatchNorm2d>() {
        module
            .downcast_mut::<GhostBatchNorm2d>()
            .map(|l| l.batch_norm_mut() as &mut dyn BatchNormLayer)
    } else {
        as_batch_norm_mut(module)
    }
}

/// [`running_stats_mut`] of every layer inside `model`, depth first in model order, with its
/// full name.
pub(crate) fn for_each_running_stats_mut(
    model: &mut dyn Module,
    f: &mut dyn FnMut(&str, &mut dyn BatchNormLayer),
) {
    for_each_module_mut(model, &mut |name, module| {
        if let Some(bn) = running_stats_mut(module) {
            f(name, bn);
        }
    });
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

/// What the batch norms of a model can become ([`replace_batch_norms`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Replacement {
    /// [`FrozenBatchNorm`].
    Frozen,
    /// [`BatchRenorm`] with this schedule.
    Renorm(RenormConfig),
    /// [`GhostBatchNorm`] with this virtual batch size.
    Ghost(usize),
}

impl<I: BatchNormInput> BatchNorm<I> {
    /// The layer that replaces this batch norm, of the same input kind.
    fn replaced(self, by: Replacement) -> Result<Box<dyn Module>> {
        Ok(match by {
            Replacement::Frozen => Box::new(FrozenBatchNorm::from_batch_norm(&self)?),
            Replacement::Renorm(renorm) => Box::new(BatchRenorm::from_batch_norm(self, renorm)?),
            Replacement::Ghost(v) => Box::new(GhostBatchNorm::from_batch_norm(self, v)?),
        })
    }
}

/// `model` with every batch norm (BatchNorm1d and BatchNorm2d, inside nested `Sequential`s
/// too) replaced as `by` says, under the same name; every other layer is kept as it is.
///
/// Errors: a batch norm inside another container (a `BasicBlock`), which cannot be rebuilt
/// from outside, named rather than left unconverted; what replacing a batch norm refuses.
pub(crate) fn replace_batch_norms(model: Sequential, by: Replacement) -> Result<Sequential> {
    let mut out = Sequential::new();
    for (name, mut child) in model.into_children() {
        let child: Box<dyn Module> = if child.is::<BatchNorm2d>() {
            downcast::<BatchNorm2d>(child, &name)?.replaced(by)?
        } else if child.is::<BatchNorm1d>() {
            downcast::<BatchNorm1d>(child, &name)?.replaced(by)?
        } else if child.is::<Sequential>() {
            Box::new(replace_batch_norms(
                *downcast::<Sequential>(child, &name)?,
                by,
            )?)
        } else {
            let mut inside = Vec::new();
            for_each_batch_norm_mut(child.as_mut(), &mut |n, _| inside.push(join_name(&name, n)));
            if !inside.is_empty() {
                return Err(LayerError::Config {
                    layer: format!("layer '{name}' ({})", child.describe()),
                    reason: format!(
                        "holds batch norms ({}) in a container other than Sequential, which cannot be rebuilt",
                        inside.join(", ")
                    ),
                });
            }
            child
        };
        out.push(name, child);
    }
    Ok(out)
}

/// The layer `name` as the `T` it was just found to be.
fn downcast<T: Module>(module: Box<dyn Module>, name: &str) -> Result<Box<T>> {
    let any: Box<dyn Any> = module;
    any.downcast::<T>().map_err(|_| LayerError::Config {
        layer: format!("layer '{name}'"),
        reason: "is not the layer it was found to be".into(),
    })
}
