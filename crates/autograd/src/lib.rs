//! # norma-autograd
//!
//! Reverse-mode automatic differentiation, define-by-run, over [`norma_tensor::Tensor`].
//!
//! - [`Param`]: a trainable tensor with its accumulated gradient; lives across steps.
//! - [`Var`]: a value in the graph being recorded. Each operation on `Var`s computes its result
//!   at once and records its inputs and derivative; the graph is rebuilt every step.
//! - [`Var::backward`] on a scalar loss walks the record in reverse, adding gradients into the
//!   parameters it reaches (and skipping inputs that need none).
//! - [`no_grad`]: the inference path, recording nothing.
//! - [`Backward`] and [`Var::from_op`]: the extension point. Every built-in operation in
//!   `ops/` is written with it, one file per family with forward and derivative side by side;
//!   crates above (batch norm in norma-layers) add fused operations the same way.
//! - [`gradcheck`]: compares gradients with central finite differences, for tests of any
//!   operation, built-in or not.
//!
//! ```
//! use norma_autograd::{Param, Var};
//! use norma_tensor::Tensor;
//!
//! let w = Param::new(Tensor::from_vec(&[2, 3], vec![0.1, -0.2, 0.3, 0.0, 0.5, -0.4])?);
//! let x = Var::constant(Tensor::ones(&[4, 3]));
//! let logits = x.linear(&w.var(), None)?;
//! let loss = logits.cross_entropy(&[0, 1, 1, 0])?;
//! loss.backward()?;
//! assert_eq!(w.grad().unwrap().shape(), &[2, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod function;
mod grad_mode;
pub mod gradcheck;
mod ops;
mod param;
mod var;

pub use error::{AutogradError, OpError, Result};
pub use function::{Backward, BackwardContext};
pub use grad_mode::{is_grad_enabled, no_grad};
pub use param::Param;
pub use var::Var;
