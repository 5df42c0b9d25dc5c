//! Elementwise arithmetic with numpy broadcasting, scalar arithmetic and unary functions.
//!
//! Each unary function is a [`UnaryFn`]: its value `f` and its derivative `df` sit side by side,
//! so autograd needs no second copy of the calculus.

use ndarray::{IxDyn, Zip};

use crate::parallel::{map_into, update_with, zip3_map_into, zip_map_into};
use crate::{math, Result, Tensor, TensorError};

/// A scalar function applied elementwise, with its derivative.
pub trait UnaryFn: Sync {
    /// Name used in errors and debugging.
    const NAME: &'static str;
    /// The function.
    fn f(x: f32) -> f32;
    /// Its derivative, given both the input `x` and the output `y = f(x)`
    /// (whichever is cheaper; sigmoid uses `y`, ln uses `x`).
    fn df(x: f32, y: f32) -> f32;
}

/// e^x; d/dx = e^x.
pub struct Exp;
impl UnaryFn for Exp {
    const NAME: &'static str = "exp";
    #[inline(always)]
    fn f(x: f32) -> f32 {
        math::exp(x)
    }
    #[inline(always)]
    fn df(_x: f32, y: f32) -> f32 {
        y
    }
}

/// ln x; d/dx = 1/x.
pub struct Ln;
impl UnaryFn for Ln {
    const NAME: &'static str = "ln";
    #[inline(always)]
    fn f(x: f32) -> f32 {
        x.ln()
    }
    #[inline(always)]
    fn df(x: f32, _y: f32) -> f32 {
        1.0 / x
    }
}

/// σ(x) = 1 / (1 + e^-x); d/dx = σ(x)·(1 − σ(x)).
pub struct Sigmoid;
impl UnaryFn for Sigmoid {
    const NAME: &'static str = "sigmoid";
    #[inline(always)]
    fn f(x: f32) -> f32 {
        math::sigmoid(x)
    }
    #[inline(always)]
    fn df(_x: f32, y: f32) -> f32 {
        y * (1.0 - y)
    }
}

/// max(x, 0); d/dx = 1 for x > 0, else 0 (the subgradient at 0 is 0, as in PyTorch).
pub struct Relu;
impl UnaryFn for Relu {
    const NAME: &'static str = "relu";
    #[inline(always)]
    fn f(x: f32) -> f32 {
        x.max(0.0)
    }
    #[inline(always)]
    fn df(x: f32, _y: f32) -> f32 {
        if x > 0.0 {
            1.0
        } else {
            0.0
        }
    }
}

/// tanh x; d/dx = 1 − tanh²x.
pub struct Tanh;
impl UnaryFn for Tanh {
    const NAME: &'static str = "tanh";
    #[inline(always)]
    fn f(x: f32) -> f32 {
        x.tanh()
    }
    #[inline(always)]
    fn df(_x: f32, y: f32) -> f32 {
        1.0 - y * y
    }
}

/// The four broadcasting binary operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    /// The operation's name, for errors.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }

    #[inline(always)]
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
}

/// The shape two shapes broadcast to under numpy's rules (align trailing axes; each pair
/// must be equal or contain a 1).
pub fn broadcast_shape(op: &'static str, lhs: &[usize], rhs: &[usize]) -> Result<Vec<usize>> {
    let rank = lhs.len().max(rhs.len());
    let axis = |s: &[usize], i: usize| {
        let pad = rank - s.len();
        if i < pad {
            1
        } else {
            s[i - pad]
        }
    };
    (0..rank)
        .map(|i| match (axis(lhs, i), axis(rhs, i)) {
            (a, b) if a == b => Ok(a),
            (1, b) => Ok(b),
            (a, 1) => Ok(a),
            _ => Err(TensorError::Broadcast {
                op,
                lhs: lhs.to_vec(),
                rhs: rhs.to_vec(),
            }),
        })
        .collect()
}

impl Tensor {
    /// `self ∘ other` elementwise with broadcasting, for any [`BinaryOp`].
    pub fn binary(&self, other: &Tensor, op: BinaryOp) -> Result<Tensor> {
        if self.shape() == other.shape() {
            return Ok(Tensor::from_fill(self.shape(), |out| {
                zip_map_into(self.as_slice(), other.as_slice(), out, |a, b| {
                    op.apply(a, b)
                })
            }));
        }
        let shape = broadcast_shape(op.name(), self.shape(), other.shape())?;
        let dim = IxDyn(&shape);
        let mut out = Tensor::zeros(&shape);
        // Both broadcasts are valid: `shape` was derived from these two shapes.
        let a = self
            .array()
            .broadcast(dim.clone())
            .ok_or_else(|| self.broadcast_err(op, other))?;
        let b = other
            .array()
            .broadcast(dim)
            .ok_or_else(|| self.broadcast_err(op, other))?;
        Zip::from(&mut out.view_mut())
            .and(&a)
            .and(&b)
            .for_each(|o, &a, &b| *o = op.apply(a, b));
        Ok(out)
    }

    fn broadcast_err(&self, op: BinaryOp, other: &Tensor) -> TensorError {
        TensorError::Broadcast {
            op: op.name(),
            lhs: self.shape().to_vec(),
            rhs: other.shape().to_vec(),
        }
    }

    /// `self + other` with broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Add)
    }

    /// `self - other` with broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Sub)
    }

    /// `self * other` elementwise with broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Mul)
    }

    /// `self / other` elementwise with broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Div)
    }

    /// Applies `f` to every element.
    pub fn map(&self, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
        Tensor::from_fill(self.shape(), |out| map_into(self.as_slice(), out, f))
    }

    /// `self + c`.
    pub fn add_scalar(&self, c: f32) -> Tensor {
        self.map(|x| x + c)
    }

    /// `self · c`.
    pub fn mul_scalar(&self, c: f32) -> Tensor {
        self.map(|x| x * c)
    }

    /// `-self`.
    pub fn neg(&self) -> Tensor {
        self.map(|x| -x)
    }

    /// Applies the [`UnaryFn`] `F` elementwise.
    pub fn unary<F: UnaryFn>(&self) -> Tensor {
        self.map(F::f)
    }

    /// The gradient of `F` at `input`: `grad_output · F'(input)`, given `output = F(input)`.
    pub fn unary_backward<F: UnaryFn>(
        input: &Tensor,
        output: &Tensor,
        grad_output: &Tensor,
    ) -> Result<Tensor> {
        if input.shape() != output.shape() || input.shape() != grad_output.shape() {
            return Err(TensorError::shape(
                F::NAME,
                "input, output and gradient must have one shape",
                &[input.shape(), output.shape(), grad_output.shape()],
            ));
        }
        Ok(Tensor::from_fill(input.shape(), |out| {
            zip3_map_into(
                input.as_slice(),
                output.as_slice(),
                grad_output.as_slice(),
                out,
                |x, y, g| g * F::df(x, y),
            )
        }))
    }

    /// e^x elementwise.
    pub fn exp(&self) -> Tensor {
        self.unary::<Exp>()
    }

    /// Natural logarithm elementwise.
    pub fn ln(&self) -> Tensor {
        self.unary::<Ln>()
    }

    /// Logistic sigmoid elementwise.
    pub fn sigmoid(&self) -> Tensor {
        self.unary::<Sigmoid>()
    }

    /// max(x, 0) elementwise.
    pub fn relu(&self) -> Tensor {
        self.unary::<Relu>()
    }

    /// tanh elementwise.
    pub fn tanh(&self) -> Tensor {
        self.unary::<Tanh>()
    }

    /// `self += alpha · x` in place (shapes must be equal): gradient accumulation and optimizer
    /// updates.
    pub fn axpy(&mut self, alpha: f32, x: &Tensor) -> Result<()> {
        if self.shape() != x.shape() {
            return Err(TensorError::shape(
                "axpy",
                "shapes must be equal",
                &[self.shape(), x.shape()],
            ));
        }
        if alpha == 1.0 {
            update_with(self.as_slice_mut(), x.as_slice(), |d, s| d + s);
        } else {
            update_with(self.as_slice_mut(), x.as_slice(), |d, s| d + alpha * s);
        }
        Ok(())
    }

    /// `self ·= c` in place.
    pub fn scale_in_place(&mut self, c: f32) {
        for x in self.as_slice_mut() {
            *x *= c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::from_vec(shape, data.to_vec()).unwrap()
    }

    #[test]
    fn broadcast_shapes() {
        assert_eq!(broadcast_shape("x", &[2, 3], &[3]).unwrap(), vec![2, 3]);
        assert_eq!(
            broadcast_shape("x", &[2, 1, 4], &[3, 1]).unwrap(),
            vec![2, 3, 4]
        );
        assert_eq!(broadcast_shape("x", &[], &[5]).unwrap(), vec![5]);
        let err = broadcast_shape("add", &[2, 3], &[2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "add: shapes [2, 3] and [2] cannot be broadcast together"
        );
    }

    #[test]
    fn binary_with_broadcasting() {
        let a = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let row = t(&[3], &[10., 20., 30.]);
        let col = t(&[2, 1], &[1., 2.]);
        assert_eq!(
            a.add(&row).unwrap().as_slice(),
            &[11., 22., 33., 14., 25., 36.]
        );
        assert_eq!(a.sub(&col).unwrap().as_slice(), &[0., 1., 2., 2., 3., 4.]);
        assert_eq!(a.mul(&col).unwrap().as_slice(), &[1., 2., 3., 8., 10., 12.]);
        assert_eq!(
            row.div(&a).unwrap().as_slice(),
            &[10., 10., 10., 2.5, 4., 5.]
        );
        assert!(a.add(&t(&[2], &[1., 2.])).is_err());
    }

    #[test]
    fn large_tensors_take_the_parallel_path() {
        let n = 3 * crate::parallel::CHUNK + 17;
        let a = Tensor::from_vec(&[n], (0..n).map(|i| i as f32).collect()).unwrap();
        let b = a.mul_scalar(2.0);
        let s = a.add(&b).unwrap();
        assert!(s
            .as_slice()
            .iter()
            .enumerate()
            .all(|(i, &v)| v == 3.0 * i as f32));
    }

    #[test]
    fn unary_functions() {
        let x = t(&[4], &[-1., 0., 0.5, 2.]);
        assert_eq!(x.relu().as_slice(), &[0., 0., 0.5, 2.]);
        for (y, x) in x.sigmoid().as_slice().iter().zip(x.as_slice()) {
            assert!((y - 1.0 / (1.0 + (-x).exp())).abs() < 1e-7);
        }
        for (y, x) in x.tanh().as_slice().iter().zip(x.as_slice()) {
            assert!((y - x.tanh()).abs() < 1e-7);
        }
        let e = x.exp();
        assert!((e.ln().as_slice()[3] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn unary_backward_checks_shapes() {
        let x = Tensor::zeros(&[3]);
        let err = Tensor::unary_backward::<Sigmoid>(&x, &x, &Tensor::zeros(&[4])).unwrap_err();
        assert!(err.to_string().starts_with("sigmoid:"), "{err}");
    }

    #[test]
    fn axpy_accumulates() {
        let mut a = t(&[2], &[1., 2.]);
        a.axpy(0.5, &t(&[2], &[2., 4.])).unwrap();
        assert_eq!(a.as_slice(), &[2., 4.]);
        assert!(a.axpy(1.0, &Tensor::zeros(&[3])).is_err());
    }
}
