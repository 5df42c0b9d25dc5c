//! [`Param`]: a trainable tensor that outlives each step's graph.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::rc::Rc;

use norma_tensor::Tensor;

use crate::{AutogradError, Result, Var};

/// A trainable tensor and its accumulated gradient, shared by handle.
///
/// Cloning a `Param` clones the handle: a model and its optimizer hold the same parameter.
/// Each step, [`Param::var`] puts the current value into a new graph; `backward()` adds into
/// [`Param::grad`]; the optimizer then updates the value in place.
#[derive(Clone)]
pub struct Param {
    inner: Rc<Inner>,
}

struct Inner {
    value: RefCell<Tensor>,
    grad: RefCell<Option<Tensor>>,
    requires_grad: Cell<bool>,
}

impl Param {
    /// A parameter with initial value `value`, trainable.
    pub fn new(value: Tensor) -> Param {
        Param {
            inner: Rc::new(Inner {
                value: RefCell::new(value),
                grad: RefCell::new(None),
                requires_grad: Cell::new(true),
            }),
        }
    }

    /// This parameter as a leaf of the graph being recorded.
    pub fn var(&self) -> Var {
        Var::leaf(self)
    }

    /// The current value.
    pub fn value(&self) -> Ref<'_, Tensor> {
        self.inner.value.borrow()
    }

    /// The current value, mutable (for optimizers and initialisation).
    pub fn value_mut(&self) -> RefMut<'_, Tensor> {
        self.inner.value.borrow_mut()
    }

    /// Replaces the value with one of the same shape.
    pub fn set_value(&self, value: Tensor) -> Result<()> {
        let mut current = self.inner.value.borrow_mut();
        if current.shape() != value.shape() {
            return Err(AutogradError::ParamShape {
                expected: current.shape().to_vec(),
                got: value.shape().to_vec(),
            });
        }
        *current = value;
        Ok(())
    }

    /// The value's shape.
    pub fn shape(&self) -> Vec<usize> {
        self.inner.value.borrow().shape().to_vec()
    }

    /// Number of scalar values.
    pub fn len(&self) -> usize {
        self.inner.value.borrow().len()
    }

    /// True for a parameter with no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The gradient accumulated since the last [`Param::zero_grad`], if any backward reached
    /// this parameter.
    pub fn grad(&self) -> Option<Ref<'_, Tensor>> {
        Ref::filter_map(self.inner.grad.borrow(), Option::as_ref).ok()
    }

    /// Forgets the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.inner.grad.borrow_mut() = None;
    }

    /// Whether backward computes a gradient for this parameter (true unless frozen).
    pub fn requires_grad(&self) -> bool {
        self.inner.requires_grad.get()
    }

    /// Freezes (`false`) or unfreezes (`true`) the parameter.
    pub fn set_requires_grad(&self, requires_grad: bool) {
        self.inner.requires_grad.set(requires_grad);
    }

    /// True if both handles refer to the same parameter.
    pub fn ptr_eq(&self, other: &Param) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn accumulate_grad(&self, grad: Tensor) -> Result<()> {
        let mut slot = self.inner.grad.borrow_mut();
        match slot.as_mut() {
            Some(acc) => acc.axpy(1.0, &grad)?,
            None => *slot = Some(grad),
        }
        Ok(())
    }
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Param({:?})", self.inner.value.borrow())
    }
}
