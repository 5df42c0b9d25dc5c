//! The differentiable operations on [`crate::Var`]: each file holds an operation's forward
//! (a call into norma-tensor) and its derivative, side by side.

mod binary;
mod conv;
mod loss;
mod matmul;
mod pool;
mod reduce;
mod scalar;
mod shape;
mod unary;
