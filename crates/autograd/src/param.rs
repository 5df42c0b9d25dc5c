//! [`Param`]: a trainable tensor that outlives each step's graph.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use norma_tensor::Tensor;

use crate::{AutogradError, Result, Var};

/// A trainable tensor and its accumulated gradient, shared by handle.
///
/// Cloning a `Param` clones the handle: a model and its optimizer hold the same parameter.
/// Each step, [`Param::var`] puts the current value into a new graph; `backward()` adds into
/// [`Param::grad`]; the optimizer then updates the value in place with [`Param::update`].
///
/// Reading hands out snapshots, never borrows: [`Param::value`] and [`Param::grad`] return
/// reference-counted tensors that stay valid (and unchanged) while the parameter is updated,
/// so holding one across an optimizer step is fine. An update computes into a copy of the
/// value, which replaces it only if it kept its shape, so a failed update changes nothing.
#[derive(Clone)]
pub struct Param {
    inner: Rc<Inner>,
}

struct Inner {
    value: RefCell<Rc<Tensor>>,
    grad: RefCell<Option<Rc<Tensor>>>,
    requires_grad: Cell<bool>,
}

impl Param {
    /// A parameter with initial value `value`, trainable.
    pub fn new(value: Tensor) -> Param {
        Param {
            inner: Rc::new(Inner {
                value: RefCell::new(Rc::new(value)),
                grad: RefCell::new(None),
                requires_grad: Cell::new(true),
            }),
        }
    }

    /// This parameter as a leaf of the graph being recorded.
    pub fn var(&self) -> Var {
        Var::leaf(self)
    }

    /// The current value (a snapshot: later updates do not change it).
    pub fn value(&self) -> Rc<Tensor> {
        Rc::clone(&self.inner.value.borrow())
    }

    /// Changes the value with `f` (optimizers, initialisation). The shape must stay the same.
    ///
    /// Errors: `f` changed the shape (the parameter keeps its old value), or the parameter is
    /// already being updated (`update` called from inside `f` for the same parameter).
    pub fn update<R>(&self, f: impl FnOnce(&mut Tensor) -> R) -> Result<R> {
        let mut slot = self
            .inner
            .value
            .try_borrow_mut()
            .map_err(|_| AutogradError::ParamBusy)?;
        // `old` shares the tensor, so `make_mut` hands `f` a copy: the old value survives
        // whatever `f` does to it, to be put back if the update fails.
        let old = Rc::clone(&slot);
        let value = Rc::make_mut(&mut slot);
        let result = f(value);
        if value.shape() != old.shape() {
            let got = value.shape().to_vec();
            let expected = old.shape().to_vec();
            *slot = old;
            return Err(AutogradError::ParamShape { expected, got });
        }
        Ok(result)
    }

    /// Replaces the value with one of the same shape.
    pub fn set_value(&self, value: Tensor) -> Result<()> {
        let mut slot = self
            .inner
            .value
            .try_borrow_mut()
            .map_err(|_| AutogradError::ParamBusy)?;
        if slot.shape() != value.shape() {
            return Err(AutogradError::ParamShape {
                expected: slot.shape().to_vec(),
                got: value.shape().to_vec(),
            });
        }
        *slot = Rc::new(value);
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
    /// this parameter (a snapshot, like [`Param::value`]).
    pub fn grad(&self) -> Option<Rc<Tensor>> {
        self.inner.grad.borrow().clone()
    }

    /// Forgets the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.inner.grad.borrow_mut() = None;
    }

    /// Replaces the accumulated gradient with `grad` (same shape as the value), e.g. with
    /// gradients summed over the processes of a data-parallel job.
    pub fn set_grad(&self, grad: Tensor) -> Result<()> {
        let shape = self.shape();
        if grad.shape() != shape.as_slice() {
            return Err(AutogradError::ParamShape {
                expected: shape,
                got: grad.shape().to_vec(),
            });
        }
        *self.inner.grad.borrow_mut() = Some(Rc::new(grad));
        Ok(())
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
            Some(acc) => Rc::make_mut(acc).axpy(1.0, &grad)?,
            None => *slot = Some(Rc::new(grad)),
        }
        Ok(())
    }
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Param({:?})", self.inner.value.borrow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_value_is_shared_and_survives_later_updates() {
        let p = Param::new(Tensor::from_vec(&[2], vec![1.0, 2.0]).unwrap());
        let v = p.var();
        // Recording shares the parameter's tensor instead of copying it...
        assert!(std::ptr::eq(v.value(), &*p.value()));
        // ...and an update or a new value leaves the recorded one as it was.
        p.update(|t| t.as_slice_mut()[0] = 5.0).unwrap();
        assert_eq!(v.value().as_slice(), &[1.0, 2.0]);
        assert_eq!(p.value().as_slice(), &[5.0, 2.0]);
        p.set_value(Tensor::zeros(&[2])).unwrap();
        assert_eq!(v.value().as_slice(), &[1.0, 2.0]);
    }

    #[test]
    fn a_set_gradient_replaces_the_accumulated_one_and_keeps_its_shape() {
        let p = Param::new(Tensor::ones(&[2]));
        p.var().sum_all().unwrap().backward().unwrap();
        p.set_grad(Tensor::from_vec(&[2], vec![3.0, -1.0]).unwrap())
            .unwrap();
        assert_eq!(p.grad().unwrap().as_slice(), &[3.0, -1.0]);
        let err = p.set_grad(Tensor::ones(&[3])).unwrap_err();
        assert!(matches!(err, AutogradError::ParamShape { .. }), "{err}");
        assert_eq!(p.grad().unwrap().as_slice(), &[3.0, -1.0]);
    }

    #[test]
    fn snapshots_survive_updates_without_panicking() {
        let p = Param::new(Tensor::ones(&[3]));
        let before = p.value();
        p.update(|v| v.as_slice_mut()[0] = 5.0).unwrap();
        assert_eq!(
            before.as_slice(),
            &[1.0, 1.0, 1.0],
            "the snapshot is unchanged"
        );
        assert_eq!(p.value().as_slice(), &[5.0, 1.0, 1.0]);
        p.var().sum_all().unwrap().backward().unwrap();
        let g = p.grad().unwrap();
        p.var().sum_all().unwrap().backward().unwrap();
        assert_eq!(
            g.as_slice(),
            &[1.0; 3],
            "the gradient snapshot is unchanged"
        );
        assert_eq!(p.grad().unwrap().as_slice(), &[2.0; 3]);
    }

    #[test]
    fn updates_keep_the_shape_and_refuse_reentry() {
        let p = Param::new(Tensor::ones(&[2, 2]));
        let err = p.update(|v| *v = Tensor::ones(&[3])).unwrap_err();
        assert!(matches!(err, AutogradError::ParamShape { .. }), "{err}");
        assert_eq!(p.shape(), vec![2, 2]);
        let q = p.clone();
        let inner = p.update(|_| q.update(|_| ())).unwrap();
        assert_eq!(inner, Err(AutogradError::ParamBusy));
        assert!(p.set_value(Tensor::ones(&[4])).is_err());
    }

    #[test]
    fn a_failed_update_keeps_the_old_values() {
        let old = vec![1.0, -2.0, 3.5, 0.25];
        let p = Param::new(Tensor::from_vec(&[2, 2], old.clone()).unwrap());
        // The update writes into the values before it changes the shape: both are undone.
        let err = p
            .update(|v| {
                v.as_slice_mut()[0] = 99.0;
                *v = Tensor::ones(&[3]);
            })
            .unwrap_err();
        assert!(matches!(err, AutogradError::ParamShape { .. }), "{err}");
        assert_eq!(p.shape(), vec![2, 2]);
        assert_eq!(p.value().as_slice(), old.as_slice());
        // With a snapshot alive, too.
        let snapshot = p.value();
        assert!(p.update(|v| *v = Tensor::zeros(&[4])).is_err());
        assert_eq!(p.value().as_slice(), old.as_slice());
        assert_eq!(snapshot.as_slice(), old.as_slice());
        // A successful update still lands.
        p.update(|v| v.as_slice_mut()[1] = 7.0).unwrap();
        assert_eq!(p.value().as_slice(), &[1.0, 7.0, 3.5, 0.25]);
    }
}
