//! The [`Module`] trait, train/eval [`Mode`], and [`Buffer`]s (non-trainable state).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use norma_autograd::{Param, Var};
use norma_tensor::Tensor;

use crate::{LayerError, Result};

/// Whether layers behave as in training (batch statistics, dropout) or inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// Non-trainable state that belongs in a checkpoint (running statistics), shared by handle like
/// [`Param`]: the layer updates it, checkpoints read and write it. Its kind (an f32 tensor or an
/// i64 counter) and, for tensors, its shape are fixed when it is created.
#[derive(Debug, Clone)]
pub enum Buffer {
    /// A float tensor (`running_mean`, `running_var`).
    F32(TensorBuffer),
    /// An integer counter stored as an int64 scalar (`num_batches_tracked`).
    I64(CounterBuffer),
}

impl Buffer {
    /// The dtype name as safetensors spells it (`F32`, `I64`).
    pub fn dtype_name(&self) -> &'static str {
        match self {
            Buffer::F32(_) => "F32",
            Buffer::I64(_) => "I64",
        }
    }

    /// The shape: the tensor's, or `[]` for a counter.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Buffer::F32(t) => t.shape(),
            Buffer::I64(_) => Vec::new(),
        }
    }
}

/// A float tensor buffer of fixed shape. Reads return copies and writes check the shape, so no
/// borrow is ever handed out.
#[derive(Debug, Clone)]
pub struct TensorBuffer(Rc<RefCell<Tensor>>);

impl TensorBuffer {
    /// A buffer holding `value`; its shape is fixed from now on.
    pub fn new(value: Tensor) -> TensorBuffer {
        TensorBuffer(Rc::new(RefCell::new(value)))
    }

    /// A copy of the current value.
    pub fn get(&self) -> Tensor {
        self.0.borrow().clone()
    }

    /// The shape.
    pub fn shape(&self) -> Vec<usize> {
        self.0.borrow().shape().to_vec()
    }

    /// Replaces the value; errors (changing nothing) when the shape differs.
    pub fn set(&self, value: Tensor) -> Result<()> {
        let mut slot = self.0.borrow_mut();
        if slot.shape() != value.shape() {
            return Err(LayerError::BufferShape {
                expected: slot.shape().to_vec(),
                got: value.shape().to_vec(),
            });
        }
        *slot = value;
        Ok(())
    }

    /// Runs `f` on the values in place (for layers updating their statistics).
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut [f32]) -> R) -> R {
        f(self.0.borrow_mut().as_slice_mut())
    }
}

/// An integer counter buffer (PyTorch's int64 scalars such as `num_batches_tracked`).
#[derive(Debug, Clone, Default)]
pub struct CounterBuffer(Rc<Cell<i64>>);

impl CounterBuffer {
    /// A counter starting at `value`.
    pub fn new(value: i64) -> CounterBuffer {
        CounterBuffer(Rc::new(Cell::new(value)))
    }

    /// The current count.
    pub fn get(&self) -> i64 {
        self.0.get()
    }

    /// Sets the count.
    pub fn set(&self, value: i64) {
        self.0.set(value);
    }

    /// Adds one (saturating) and returns the new count.
    pub fn increment(&self) -> i64 {
        let n = self.0.get().saturating_add(1);
        self.0.set(n);
        n
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

    /// The direct children with their names (containers override this; layers have none).
    fn children_mut(&mut self) -> Vec<(&str, &mut dyn Module)> {
        Vec::new()
    }

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

/// The concrete layer behind a `dyn Module`, as [`Any`] offers it: `Module: Any`, so a
/// `&dyn Module` is a `&dyn Any` (trait upcasting) and no implementer writes any plumbing.
/// These methods are on `dyn Module` itself, so that they always look at the layer — never at
/// a `Box<dyn Module>` holding it, which a coercion of `&Box<dyn Module>` would.
impl dyn Module {
    /// Whether the layer is a `T`.
    pub fn is<T: Module>(&self) -> bool {
        let any: &dyn Any = self;
        any.is::<T>()
    }

    /// The layer as a `T`, if it is one.
    pub fn downcast_ref<T: Module>(&self) -> Option<&T> {
        let any: &dyn Any = self;
        any.downcast_ref::<T>()
    }

    /// The layer as a mutable `T`, if it is one.
    pub fn downcast_mut<T: Module>(&mut self) -> Option<&mut T> {
        let any: &mut dyn Any = self;
        any.downcast_mut::<T>()
    }
}

/// Calls `f` on `module` and on every module inside it, depth first, each with its full name
/// (`""` for `module` itself, `"bn1"`, `"block.conv"`, ...).
pub fn for_each_module_mut(module: &mut dyn Module, f: &mut dyn FnMut(&str, &mut dyn Module)) {
    fn visit(prefix: &str, module: &mut dyn Module, f: &mut dyn FnMut(&str, &mut dyn Module)) {
        f(prefix, module);
        for (name, child) in module.children_mut() {
            visit(&join_name(prefix, name), child, f);
        }
    }
    visit("", module, f);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Relu, Sigmoid};

    #[test]
    fn a_boxed_layer_is_seen_through_its_box() {
        let mut boxed: Box<dyn Module> = Box::new(Relu);
        assert!(boxed.is::<Relu>());
        assert!(!boxed.is::<Sigmoid>());
        assert!(boxed.downcast_ref::<Relu>().is_some());
        assert!(boxed.downcast_mut::<Sigmoid>().is_none());
    }
}
