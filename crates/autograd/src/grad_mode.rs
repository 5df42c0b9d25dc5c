//! Switching graph recording off for inference.

use std::cell::Cell;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// True unless inside [`no_grad`] on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(Cell::get)
}

/// Runs `f` without recording a graph: every value computed inside is a constant, parameters
/// included, and nothing is kept for a backward pass. The inference path.
///
/// ```
/// use norma_autograd::{no_grad, Param};
/// use norma_tensor::Tensor;
/// let w = Param::new(Tensor::ones(&[3]));
/// let y = no_grad(|| w.var().sigmoid());
/// assert!(!y.requires_grad());
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GRAD_ENABLED.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GRAD_ENABLED.with(|g| g.replace(false)));
    f()
}
