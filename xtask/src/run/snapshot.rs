//! [`Snapshot`]: a model's weights and buffers, put back bit for bit later. Used to undo a
//! training step that diverged ([`crate::run::model_run::ModelRun::step`]) and to evaluate with
//! precise batch-norm statistics without touching the moving averages training continues
//! with ([`crate::run::precise`]).

use std::rc::Rc;

use norma_layers::{Buffer, Module};
use norma_tensor::Tensor;

use crate::error::Error;

/// The weights and buffers of a model at one moment. Weights are kept as snapshots (no copy
/// unless they change afterwards); buffers are small and copied.
pub struct Snapshot {
    params: Vec<Rc<Tensor>>,
    buffers: Vec<Option<Tensor>>,
    counters: Vec<Option<i64>>,
}

impl Snapshot {
    pub fn take(model: &dyn Module) -> Snapshot {
        let buffers = model.named_buffers();
        Snapshot {
            params: model.parameters().iter().map(|p| p.value()).collect(),
            buffers: buffers
                .iter()
                .map(|(_, b)| match b {
                    Buffer::F32(t) => Some(t.get()),
                    Buffer::I64(_) => None,
                })
                .collect(),
            counters: buffers
                .iter()
                .map(|(_, b)| match b {
                    Buffer::I64(c) => Some(c.get()),
                    Buffer::F32(_) => None,
                })
                .collect(),
        }
    }

    /// Puts every weight and buffer back.
    pub fn restore(self, model: &dyn Module) -> Result<(), Error> {
        for (p, value) in model.parameters().iter().zip(self.params) {
            p.set_value(Rc::unwrap_or_clone(value))?;
        }
        let buffers = model.named_buffers();
        for (((_, b), t), c) in buffers.iter().zip(self.buffers).zip(self.counters) {
            match (b, t, c) {
                (Buffer::F32(buffer), Some(t), _) => buffer.set(t)?,
                (Buffer::I64(counter), _, Some(c)) => counter.set(c),
                _ => {}
            }
        }
        Ok(())
    }
}
