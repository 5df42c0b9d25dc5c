//! The [`Module`] trait, train/eval [`Mode`], and [`Buffer`]s (non-trainable state).

use std::any::Any;
use std::cell::{Ref, RefCell, RefMut};
use std::rc::Rc;

use norma_autograd::{Param, Var};
use norma_tensor::Tensor;

use crate::Result;

/// Whether layers behave as in training (batch statistics, dropout) or inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// The value of a buffer: a float tensor, or an integer counter (PyTorch's int64 scalars such
/// as `num_batches_tracked`).
#[derive(Debug, Clone, PartialEq)]
pub enum BufferValue {
    F32(Tensor),
    I64(i64),
}

/// Non-trainable state that belongs in a checkpoint (running statistics), shared by handle like
/// [`Param`]: the layer updates it, checkpoints read and write it.
#[derive(Debug, Clone)]
pub struct Buffer(Rc<RefCell<BufferValue>>);

impl Buffer {
    /// A buffer holding `value`.
    pub fn new(value: BufferValue) -> Buffer {
        Buffer(Rc::new(RefCell::new(value)))
    }

    /// The current value.
    pub fn get(&self) -> Ref<'_, BufferValue> {
        self.0.borrow()
    }

    /// The current value, mutable.
    pub fn get_mut(&self) -> RefMut<'_, BufferValue> {
        self.0.borrow_mut()
    }

    /// The float tensor, if this is a float buffer.
    pub fn tensor(&self) -> Option<Ref<'_, Tensor>> {
        Ref::filter_map(self.0.borrow(), |v| match v {
            BufferValue::F32(t) => Some(t),
            BufferValue::I64(_) => None,
        })
        .ok()
    }
}

/// Joins a parent's prefix and a child's name with a dot, as PyTorch's `state_dict` does.
pub fn join_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A layer or a model: a forward computation on autograd values plus its named state.
///
/// Names are visited in a stable order (construction order), prefixed PyTorch-style
/// (`conv1.weight`), so that checkpoints and optimizers see the same list every time.
pub trait Module: Any {
    /// Computes the output for `input`, recording the graph when gradients are enabled.
    /// Takes `&mut self` because training updates state (batch-norm running statistics).
    fn forward(&mut self, input: &Var) -> Result<Var>;

    /// Appends this module's trainable parameters, named under `prefix`.
    fn collect_params(&self, _prefix: &str, _out: &mut Vec<(String, Param)>) {}

    /// Appends this module's buffers, named under `prefix`.
    fn collect_buffers(&self, _prefix: &str, _out: &mut Vec<(String, Buffer)>) {}

    /// Switches this module and every child to `mode`.
    fn set_mode(&mut self, _mode: Mode) {}

    /// A one-line description, e.g. `Linear(in=400, out=120, bias=true)`.
    fn describe(&self) -> String;

    /// The module as `Any`, to inspect concrete layer types (BN folding does).
    fn as_any(&self) -> &dyn Any;

    /// Consumes the boxed module as `Box<dyn Any>`, to take a concrete layer back out.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;

    /// Training mode.
    fn train(&mut self) {
        self.set_mode(Mode::Train);
    }

    /// Inference mode.
    fn eval(&mut self) {
        self.set_mode(Mode::Eval);
    }

    /// Every trainable parameter with its full name, in a stable order.
    fn named_parameters(&self) -> Vec<(String, Param)> {
        let mut out = Vec::new();
        self.collect_params("", &mut out);
        out
    }

    /// The trainable parameters, in the order of [`Module::named_parameters`].
    fn parameters(&self) -> Vec<Param> {
        self.named_parameters()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// Every buffer with its full name, in a stable order.
    fn named_buffers(&self) -> Vec<(String, Buffer)> {
        let mut out = Vec::new();
        self.collect_buffers("", &mut out);
        out
    }

    /// Number of trainable scalars.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Param::len).sum()
    }
}

/// Implements the `Any` plumbing of [`Module`] for a concrete type.
#[macro_export]
macro_rules! impl_any {
    () => {
        fn as_any(&self) -> &dyn ::std::any::Any {
            self
        }
        fn into_any(self: Box<Self>) -> Box<dyn ::std::any::Any> {
            self
        }
    };
}
